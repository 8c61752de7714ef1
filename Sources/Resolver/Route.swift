import Engine
import NetCore
import SystemPackage

// MARK: net/ipv4/route.c — output lookups (`ip route get DEST [from SRC] [oif DEV] [mark M] [tos T] ...`)

extension CompiledFib {
    typealias Outcome = (result: Result<ResolvedRoute, Errno>, rule: Int?, route: Int?)

    /// Mirrors `ip_route_output_key_hash_rcu()` in net/ipv4/route.c. `candidates`, when not nil, collects every leg
    /// the kernel may pick (equal-cost multipath); the engine's path passes nil and allocates nothing.
    func route(_ flow: Flow, preferredLeg: Leg? = nil, trace: inout Tracer, candidates: inout [ResolvedRoute]?) -> Outcome {
        func fail(_ e: Errno, _ why: @autoclosure () -> String) -> Outcome {
            trace.add(why())
            return (.failure(e), nil, nil)
        }
        func made(_ daddr: IPv4Address, _ saddr: IPv4Address, _ index: Int32, gateway: IPv4Address?, kind: ResolvedRoute.Kind,
                  alias: FibAlias?, table: UInt32?, rule: Int?) -> Outcome {
            let dev = linkByIndex[index]
            let r = resolved(daddr, saddr, name: dev?.name ?? "?", mtu: Int(dev?.mtu ?? 1500), gateway: gateway, kind: kind,
                             alias: alias, table: table, explanation: trace.enabled ? trace.lines.joined(separator: "; ") : "")
            candidates?.append(r)
            return (.success(r), rule, alias.map { Int($0.route) })
        }
        let scope: UInt8 = flow.dontRoute ? 253 : 0
        var saddr = flow.source
        var daddr = flow.destination
        var oif: LinkInfo?
        if saddr != .any {
            // ipv4_is_zeronet is 0.0.0.0 alone (excluded above): another 0.0.0.0/8 source is a unicast address
            // that is not local, ENETUNREACH below.
            if saddr.isMulticast || saddr.value == UInt32.max {
                return fail(.invalidArgument, "saddr \(saddr) is multicast or broadcast: EINVAL")
            }
            if !localAddresses.contains(saddr) {
                return fail(.networkUnreachable, "saddr \(saddr) is not an address of this namespace (__ip_dev_find): ENETUNREACH")
            }
            if flow.outputDevice == nil, daddr.isMulticast || daddr.value == UInt32.max,
               let owner = snapshot.addresses.first(where: { $0.prefix.address == saddr }), let dev = linkByIndex[owner.index] {
                trace.add("\(daddr) is multicast/broadcast with saddr set: out of \(dev.name), the device holding \(saddr), no FIB lookup")
                return made(daddr, saddr, dev.index, gateway: nil, kind: daddr.isMulticast ? .multicast : .broadcast, alias: nil, table: 0, rule: nil)
            }
        }
        if let name = flow.outputDevice {
            guard let dev = linkByName[name] else { return fail(Errno(rawValue: 19), "oif \(name) does not exist: ENODEV") }
            guard dev.isUp else { return fail(.networkUnreachable, "oif \(name) is down: ENETUNREACH") }
            oif = dev
            let localMulticast = daddr.value >> 8 == 0xE00000    // 224.0.0.0/24
            if localMulticast || daddr.value == UInt32.max || flow.proto == 2 {
                if saddr == .any { saddr = inetSelectAddr(dev.index, dst: .any, scope: 253, trace: &trace) }
                trace.add("\(daddr) is link-local multicast/broadcast with oif \(name): straight out of it")
                return made(daddr, saddr, dev.index, gateway: nil, kind: daddr.isMulticast ? .multicast : .broadcast, alias: nil, table: 0, rule: nil)
            }
            if saddr == .any, daddr.isMulticast { saddr = inetSelectAddr(dev.index, dst: .any, scope: scope, trace: &trace) }
            if saddr == .any, daddr == .any { saddr = inetSelectAddr(dev.index, dst: .any, scope: 254, trace: &trace) }
        }
        if daddr == .any {
            daddr = saddr != .any ? saddr : IPv4Address(127, 0, 0, 1)
            if saddr == .any { saddr = daddr }
            trace.add("daddr 0.0.0.0 → \(daddr), dev lo (RTN_LOCAL)")
            return made(daddr, saddr, loopbackIndex, gateway: nil, kind: .local, alias: nil, table: nil, rule: nil)
        }
        let key = Key(daddr: daddr, saddr: saddr, oif: oif?.index ?? 0, iif: loopbackIndex, mark: flow.mark, tos: flow.tos & 0xfc,
                      scope: scope, proto: flow.proto.rawValue, sport: flow.sourcePort, dport: flow.destinationPort, uid: flow.uid,
                      anySport: flow.anySourcePort)
        let res: FibResult
        switch fibLookup(key, trace: &trace) {
        case .failure(let e):
            if let dev = oif {
                // The destination is assumed on-link through the bound device.
                if saddr == .any { saddr = inetSelectAddr(dev.index, dst: .any, scope: 253, trace: &trace) }
                trace.add("no route (\(errnoName(e))) but oif \(dev.name) is set: assume \(daddr) is on-link")
                if saddr.isLoopback, dev.flags & 0x8 == 0, !routeLocalnet(dev.index) {
                    return fail(.invalidArgument, "no route; oif \(dev.name) with loopback saddr \(saddr): EINVAL (__mkroute_output)")
                }
                // __mkroute_output: the type follows the destination (RTN_MULTICAST / RTN_BROADCAST).
                let kind: ResolvedRoute.Kind = daddr.value == UInt32.max ? .broadcast : daddr.isMulticast ? .multicast : .unicast
                return made(daddr, saddr, dev.index, gateway: nil, kind: kind, alias: nil, table: nil, rule: nil)
            }
            return fail(e, "fib_lookup: \(errnoName(e))")
        case .success(let r): res = r
        }
        let alias = fib.aliases[res.alias]
        if alias.type == .local {
            if saddr == .any { saddr = alias.prefsrc != .any ? alias.prefsrc : daddr }
            trace.add("local destination: dev lo, saddr \(saddr)")
            return made(daddr, saddr, loopbackIndex, gateway: nil, kind: .local, alias: alias, table: res.table, rule: res.rule)
        }
        // fib_select_path: with oif set, the nexthop is the one fib_table_lookup kept.
        var legs: [Int] = []     // empty: the one nexthop fib_table_lookup kept
        if oif == nil {
            if alias.nexthops.count > 1 {
                legs = selectMultipath(alias, key, saddr: saddr, trace: &trace)
            } else if trace.enabled, res.prefixLength == 0, let slot = fib.slot(of: res.table), fib.tables[slot].defaults > 1,
                      alias.type == .unicast {
                let same = fib.aliases(slot: slot, length: 0, network: 0).filter { n in
                    let a = fib.aliases[Int(n)]
                    return snapshot.routes[Int(a.route)].metric == snapshot.routes[Int(alias.route)].metric && a.nexthops.count == 1 &&
                        fib.nexthops[Int(a.nexthops.lowerBound)].gateway != .any && a.scope == alias.scope
                }
                if same.count > 1 {
                    trace.add("fib_select_default: \(same.count) equal-metric defaults; the first is kept unless its gateway's neighbour is dead")
                }
            }
        }
        if legs.count > 1, let want = preferredLeg, let k = legs.firstIndex(where: { n in
            let nh = fib.nexthops[n]
            return nh.link >= 0 && snapshot.links[Int(nh.link)].name == want.device && (nh.gateway != .any ? nh.gateway : daddr) == want.nextHop
        }) {
            legs.insert(legs.remove(at: k), at: 0)
            trace.add("equal-cost leg dev \(want.device) via \(want.nextHop) first, as asked (the kernel's hash chose it)")
        }
        let kind: ResolvedRoute.Kind = daddr.value == UInt32.max || alias.type == .broadcast ? .broadcast : daddr.isMulticast ? .multicast : .unicast
        var first: ResolvedRoute?
        var finalTrace = trace
        for k in 0..<max(legs.count, 1) {
            let nh = fib.nexthops[legs.isEmpty ? res.nexthop : legs[k]]
            var s = saddr
            var t = Tracer(trace.enabled)
            if s == .any {
                if alias.prefsrc != .any {
                    s = alias.prefsrc
                    t.add("saddr \(s): the route's prefsrc")
                } else {
                    s = nh.saddr     // FIB_RES_PREFSRC: the nexthop's cached inet_select_addr
                    if t.enabled { _ = inetSelectAddr(nh.index, dst: nh.gateway != .any ? nh.gateway : nh.hostScopeGateway, scope: alias.scope, trace: &t) }
                }
            }
            if s.isLoopback, (linkByIndex[nh.index]?.flags ?? 0) & 0x8 == 0, !routeLocalnet(nh.index) {
                if k == 0 { return fail(.invalidArgument, "loopback saddr \(s) on a non-loopback device: EINVAL") }
                continue
            }
            let link = nh.link >= 0 ? snapshot.links[Int(nh.link)] : nil
            if k == 0, nh.hostScopeGateway != .any {
                t.add("gateway \(nh.hostScopeGateway) is an address of \(link?.name ?? "?"): nexthop scope host (fib_check_nh_v4_gw), no gateway (rt_set_nexthop): on-link")
            }
            // __mkroute_output drops the route's nexthop (fi = NULL) for broadcast, and for multicast matched by a
            // route shorter than /4 (the default): those leave the device without a gateway.
            let keepsNexthop = kind == .unicast || (kind == .multicast && res.prefixLength >= 4 && alias.type != .broadcast)
            let r = resolved(daddr, s, name: link?.name ?? "?", mtu: Int(link?.mtu ?? 1500),
                             gateway: keepsNexthop && nh.gateway != .any ? nh.gateway : nil, kind: kind,
                             alias: alias, table: res.table, explanation: "")
            if k == 0 { finalTrace.add(contentsOf: t); first = r }
            if candidates == nil { break }   // the engine needs one answer; `netlab route` wants every candidate
            candidates!.append(r)
            if saddr == .any, alias.prefsrc == .any, nh.saddrAfterAddressChange != .any {
                var other = r
                other.source = nh.saddrAfterAddressChange
                candidates!.append(other)
                if k == 0 {
                    finalTrace.add("saddr \(nh.saddrAfterAddressChange) instead if an address changed since the nexthop object was made (nh_saddr recomputed at the route's scope, fib_result_prefsrc)")
                }
            }
        }
        trace = finalTrace
        guard let first else { return fail(.networkUnreachable, "no usable nexthop") }
        return (.success(first), res.rule, Int(alias.route))
    }

    func resolved(_ daddr: IPv4Address, _ saddr: IPv4Address, name: String, mtu: Int, gateway: IPv4Address?, kind: ResolvedRoute.Kind,
                  alias: FibAlias?, table: UInt32?, explanation: String) -> ResolvedRoute {
        ResolvedRoute(destination: daddr, source: saddr, device: name, deviceMTU: mtu,
                      gateway: gateway, kind: kind, mtu: alias?.mtu.map(Int.init), advmss: alias?.advmss.map(Int.init),
                      hoplimit: alias?.hoplimit.map(Int.init), table: table, explanation: explanation)
    }

    /// Mirrors `fib_multipath_hash()` (net/ipv4/route.c) for an output lookup (no skb) with policy 0 (addresses) or
    /// 1 (addresses, protocol, ports): `struct flow_keys` zeroed, the fields set, `__flow_hash_consistentify`, SipHash
    /// over the 48 bytes from `basic` (`flow_keys_hash_length` for IPv4) keyed by `fib_multipath_hash_construct_key`,
    /// 0 → 1, then `>> 1`. The layout is the running kernel's (6.18): measured against RTM_GETROUTE.
    func fibMultipathHash(_ k: Key, seed: UInt32, policy: Int) -> Int32 {
        var data = [UInt8](repeating: 0, count: 48)
        var src = k.saddr.value, dst = k.daddr.value
        // __flow_hash_consistentify compares the big-endian values as native (little-endian) integers.
        if dst.byteSwapped < src.byteSwapped { swap(&src, &dst) }
        func put32(_ v: UInt32, _ at: Int) { for i in 0..<4 { data[at + i] = UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32(i))) } }
        put32(src, 36)
        put32(dst, 40)
        if policy == 1 {
            data[2] = k.proto                           // basic.ip_proto
        }
        // Ports for TCP and UDP only: RTM_GETROUTE with ipproto icmp hashes none (measured), the ICMP type and code
        // sharing the ports' place in the flow (they are 0 there).
        if policy == 1, k.proto == 6 || k.proto == 17 {
            var sp = k.sport, dp = k.dport
            if dp.byteSwapped < sp.byteSwapped { swap(&sp, &dp) }
            data[28] = UInt8(sp >> 8); data[29] = UInt8(truncatingIfNeeded: sp)   // ports.src
            data[30] = UInt8(dp >> 8); data[31] = UInt8(truncatingIfNeeded: dp)   // ports.dst
        }
        let key = UInt64(seed) << 32 | UInt64(seed)
        var h = UInt32(truncatingIfNeeded: SipHash.hash(data, key: SipKey(key, key)))
        if h == 0 { h = 1 }
        return Int32(h >> 1)
    }
}
