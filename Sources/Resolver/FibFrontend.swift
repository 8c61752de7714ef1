import Engine
import NetCore
import SystemPackage

// MARK: net/ipv4/fib_frontend.c — source validation and address types

extension CompiledFib {
    /// Mirrors `__inet_dev_addr_type()` (net/ipv4/fib_frontend.c) for the local table: 0.0.0.0 and
    /// 255.255.255.255 are broadcast (`ipv4_is_zeronet`, `ipv4_is_lbcast`; 0.1.2.3 is unicast: bind() refuses it), 224.0.0.0/4 multicast, anything else the type of the local table's longest
    /// match (`fib_table_lookup`, scope universe), unicast when nothing matches.
    func inetAddrType(_ address: IPv4Address) -> RouteType {
        if address == .any || address.value == UInt32.max { return .broadcast }   // ipv4_is_zeronet: 0.0.0.0 only
        if address.isMulticast { return .multicast }
        guard let slot = fib.slot(of: RoutingTable.local) else { return .unicast }
        var quiet = Tracer(false)
        let k = Key(daddr: address, saddr: .any, oif: 0, iif: 0, mark: 0, tos: 0, scope: 0, proto: 0, sport: 0, dport: 0, uid: 0)
        guard case .success(let r) = tableLookup(slot, k, trace: &quiet) else { return .unicast }
        return fib.aliases[r.alias].type
    }

    /// Mirrors `fib_validate_source()` and `__fib_validate_source()` (net/ipv4/fib_frontend.c): is `src` a valid source
    /// for a packet to `dst` arriving on `dev` and leaving by `oif` (0 for local delivery)? The reverse lookup (to
    /// `src`, from `dst`, iif `oif` or lo) must find a unicast route (local only with accept_local); with rp_filter 1
    /// its nexthops must use `dev`, with rp_filter 0 or 2 failing lookups are fine only when rp_filter is 0.
    func fibValidateSource(_ flow: Flow, src: IPv4Address, dst: IPv4Address, oif: Int32, dev: LinkInfo, conf: IPv4DeviceSettings,
                           trace: inout Tracer) -> Result<Void, Errno> {
        let rpf = conf.rpFilter
        if rpf == 0, dev.index != oif || !conf.sendRedirects {
            if conf.acceptLocal { return .success(()) }
            if !(hasCustomLocalRoutes || customRules) {
                if localAddresses.contains(src) {
                    trace.add("fib_validate_source: \(src) is an address of this namespace: martian source")
                    return .failure(.invalidArgument)
                }
                return .success(())
            }
        }
        let l4 = dissected(flow, reversed: true)
        let k = Key(daddr: src, saddr: dst, oif: 0, iif: oif != 0 ? oif : loopbackIndex, mark: conf.srcValidMark ? flow.mark : 0,
                    tos: flow.tos & 0xfc, scope: 0, proto: l4.proto, sport: l4.sport, dport: l4.dport, uid: 0)
        var quiet = Tracer(false)
        guard case .success(let res) = fibLookup(k, trace: &quiet) else {
            if rpf != 0 { trace.add("fib_validate_source: no route back to \(src) (rp_filter \(rpf)): refused"); return .failure(.invalidArgument) }
            return .success(())
        }
        let alias = fib.aliases[res.alias]
        if alias.type != .unicast {
            if alias.type != .local || !conf.acceptLocal {
                trace.add("fib_validate_source: the way back to \(src) is a \(alias.type.rawValue) route: martian source")
                return .failure(.invalidArgument)
            }
        }
        let devMatch = alias.nexthops.contains { fib.nexthops[Int($0)].index == dev.index } ||
            (alias.type == .local && dev.index == loopbackIndex)
        if devMatch { return .success(()) }
        if (addressesByIndex[dev.index] ?? []).isEmpty {
            if rpf != 0 { trace.add("fib_validate_source: \(dev.name) has no address (rp_filter \(rpf)): refused"); return .failure(.invalidArgument) }
            return .success(())
        }
        if rpf == 1 {
            trace.add("fib_validate_source: the way back to \(src) is not through \(dev.name) (rp_filter 1, strict): refused")
            return .failure(.invalidArgument)
        }
        return .success(())
    }
}
