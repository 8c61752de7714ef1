import Engine
import NetCore
import SystemPackage

// MARK: ip_route_input_slow — input routes (`ip route get DEST from SRC iif DEV`)

extension FibResolver {
    /// The packet's protocol and ports as an input lookup's flow carries them (`fib4_rules_early_flow_dissect`): only
    /// when a rule needs them, and ports only for TCP and UDP (the flow dissector finds none in other protocols).
    /// `reversed` for `__fib_validate_source`'s lookup back to the source.
    func dissected(_ flow: Flow, reversed: Bool = false) -> (proto: UInt8, sport: UInt16, dport: UInt16) {
        guard rulesRequireFlowDissect else { return (0, 0, 0) }
        let proto = flow.proto.rawValue
        guard flow.proto.hasPorts else { return (proto, 0, 0) }
        return reversed ? (proto, flow.destinationPort, flow.sourcePort) : (proto, flow.sourcePort, flow.destinationPort)
    }

    /// The answer for a packet from `flow.source` to `flow.destination` arriving on `inputDevice`, with its trace.
    public func decideInput(_ flow: Flow, inputDevice: String, traced: Bool = true) -> RouteDecision {
        var trace = Tracer(traced)
        var all: [ResolvedRoute]? = []
        var refused: [Errno] = []
        let o = routeInput(flow, inputDevice: inputDevice, trace: &trace, candidates: &all, refusedLegs: &refused)
        var d = RouteDecision(result: o.result, candidates: all ?? [], rule: o.rule.map { rules[$0] },
                              route: o.route.map { snapshot.routes[$0] }, trace: trace.lines)
        if case .success = o.result { d.candidateErrors = refused }
        return d
    }

    /// Mirrors `ip_route_input_rcu()` → `ip_route_input_slow()` in net/ipv4/route.c (with `ip_mkroute_input`,
    /// `__mkroute_input` and `fib_validate_source`), as `inet_rtm_getroute` runs it for `ip route get ... iif DEV`.
    /// Martian sources and destinations and failed source validation answer EINVAL (the kernel's drop reasons
    /// become EINVAL there); a failed lookup answers its errno with forwarding on, EHOSTUNREACH with it off.
    /// `refusedLegs` collects the errors of equal-cost legs whose source validation fails while another's passes.
    func routeInput(_ flow: Flow, inputDevice: String, trace: inout Tracer, candidates: inout [ResolvedRoute]?,
                    refusedLegs: inout [Errno]) -> Outcome {
        let saddr = flow.source, daddr = flow.destination
        func fail(_ e: Errno, _ why: @autoclosure () -> String) -> Outcome {
            trace.add(why())
            return (.failure(e), nil, nil)
        }
        func delivered(_ kind: ResolvedRoute.Kind, _ res: FibResult?, _ why: String) -> Outcome {
            trace.add(why)
            let lo = linkByIndex[loopbackIndex]
            let alias = res.map { fib.aliases[$0.alias] }
            let r = resolved(daddr, saddr, name: lo?.name ?? "lo", mtu: Int(lo?.mtu ?? 65536), gateway: nil, kind: kind,
                             alias: alias, table: res?.table ?? 0, explanation: "")
            candidates?.append(r)
            return (.success(r), res?.rule, alias.map { Int($0.route) })
        }
        guard let dev = linkByName[inputDevice] else { return fail(Errno(rawValue: 19), "iif \(inputDevice) does not exist: ENODEV") }
        let conf = deviceSettings[dev.index] ?? snapshot.ipv4Settings(of: dev.name)
        if daddr.isMulticast {
            // ip_route_input_rcu: only groups the device joined are taken in; every device joins all-hosts.
            guard daddr == IPv4Address(224, 0, 0, 1), dev.isUp else {
                return fail(.invalidArgument, "\(daddr) is multicast and \(dev.name) has not joined it: EINVAL")
            }
            if saddr.isMulticast || saddr.value == UInt32.max || (saddr.isLoopback && !routeLocalnet(dev.index)) {
                return fail(.invalidArgument, "martian source \(saddr) for multicast input: EINVAL")
            }
            if saddr != .any, case .failure(let e) = fibValidateSource(flow, src: saddr, dst: .any, oif: 0, dev: dev, conf: conf, trace: &trace) {
                return fail(e, "fib_validate_source refused \(saddr): EINVAL")
            }
            return delivered(.multicast, nil, "\(daddr) is all-hosts, joined by \(dev.name): delivered locally (ip_route_input_mc)")
        }
        if saddr.isMulticast || saddr.value == UInt32.max {
            return fail(.invalidArgument, "martian source \(saddr) (multicast or limited broadcast): EINVAL")
        }
        /// `brd_input`: the table is the lookup's when a broadcast route matched, none for 255.255.255.255.
        func brdInput(_ res: FibResult?) -> Outcome {
            if saddr != .any, case .failure(let e) = fibValidateSource(flow, src: saddr, dst: .any, oif: 0, dev: dev, conf: conf, trace: &trace) {
                return fail(e, "fib_validate_source refused \(saddr) for a broadcast: EINVAL")
            }
            return delivered(.broadcast, res, "\(daddr) is broadcast: delivered locally (brd_input)")
        }
        if daddr.value == UInt32.max || (saddr == .any && daddr == .any) { return brdInput(nil) }
        if saddr.value >> 24 == 0 { return fail(.invalidArgument, "martian source \(saddr) (0.0.0.0/8): EINVAL") }
        if daddr.value >> 24 == 0 { return fail(.invalidArgument, "martian destination \(daddr) (0.0.0.0/8): EINVAL") }
        if daddr.isLoopback {
            if !routeLocalnet(dev.index) { return fail(.invalidArgument, "martian destination \(daddr) (loopback, route_localnet off): EINVAL") }
        } else if saddr.isLoopback, !routeLocalnet(dev.index) {
            return fail(.invalidArgument, "martian source \(saddr) (loopback, route_localnet off): EINVAL")
        }
        let l4 = dissected(flow)
        let key = Key(daddr: daddr, saddr: saddr, oif: 0, iif: dev.index, mark: flow.mark, tos: flow.tos & 0xfc, scope: 0,
                      proto: l4.proto, sport: l4.sport, dport: l4.dport, uid: 0)
        trace.add("input from \(saddr) on \(dev.name): fib_lookup with iif \(dev.name), uid 0\(rulesRequireFlowDissect ? "" : ", no protocol or ports (no rule needs them)")")
        let res: FibResult
        switch fibLookup(key, trace: &trace) {
        case .failure(let e):
            if !conf.forwarding { return fail(.noRouteToHost, "no route (\(errnoName(e))) and forwarding is off on \(dev.name): EHOSTUNREACH") }
            return fail(e, "no route: \(errnoName(e))")
        case .success(let r): res = r
        }
        let alias = fib.aliases[res.alias]
        var bcForward = false
        if alias.type == .broadcast {
            if !conf.bcForwarding { return brdInput(res) }
            bcForward = true
            trace.add("broadcast route and bc_forwarding on \(dev.name): forwarded")
        }
        if alias.type == .local {
            if case .failure(let e) = fibValidateSource(flow, src: saddr, dst: daddr, oif: 0, dev: dev, conf: conf, trace: &trace) {
                return fail(e, "fib_validate_source refused \(saddr): EINVAL")
            }
            return delivered(.local, res, "\(daddr) is local: delivered (local_input, dev lo)")
        }
        if !bcForward {
            if !conf.forwarding { return fail(.noRouteToHost, "forwarding is off on \(dev.name): EHOSTUNREACH") }
            if alias.type != .unicast { return fail(.invalidArgument, "martian destination: a \(alias.type.rawValue) route: EINVAL") }
        }
        // ip_mkroute_input: multipath picks a leg by the packet's hash (unseen but with a seed and policy 0: the
        // addresses); __mkroute_input then validates the source against the leg's device.
        var legs = [res.nexthop]
        if alias.group != 0 {
            legs = nexthopSelectPath(alias, key, inputPolicy1: true, trace: &trace)
        } else if alias.nexthops.count > 1 {
            if let h = multipathHash, h.policy == 0, !alias.nexthops.contains(where: { fib.nexthops[Int($0)].linkdown }),
               let leg = fibSelectMultipath(alias, hash: fibMultipathHash(key, seed: h.seed, policy: 0), saddr: .any) {
                legs = [leg]
                trace.add("fib_multipath_hash (policy 0, seed \(h.seed)): leg \(leg - Int(alias.nexthops.lowerBound) + 1) of \(alias.nexthops.count)")
            } else {
                legs = alias.nexthops.map(Int.init).filter { !fib.nexthops[$0].dead }
                trace.add("ip_mkroute_input: \(legs.count) live legs; the packet's multipath hash picks one")
            }
        }
        var first: ResolvedRoute?
        var refused: Errno?
        for n in legs {
            let nh = fib.nexthops[n]
            var t = Tracer(trace.enabled)
            if case .failure(let e) = fibValidateSource(flow, src: saddr, dst: daddr, oif: nh.index, dev: dev, conf: conf, trace: &t) {
                if refused == nil { refused = e; trace.add(contentsOf: t) }
                refusedLegs.append(e)
                continue
            }
            let link = nh.link >= 0 ? snapshot.links[Int(nh.link)] : nil
            let r = resolved(daddr, saddr, name: link?.name ?? "?", mtu: Int(link?.mtu ?? 1500),
                             gateway: nh.gateway != .any ? nh.gateway : nil, kind: bcForward ? .broadcast : .unicast,
                             alias: alias, table: res.table, explanation: "")
            if first == nil {
                first = r
                trace.add(contentsOf: t)
                trace.add("forwarded out of \(r.device)\(r.gateway.map { " via \($0)" } ?? "")")
            }
            if candidates == nil { break }
            candidates!.append(r)
        }
        guard let first else { return fail(refused ?? .invalidArgument, "fib_validate_source refused \(saddr) on every leg: EINVAL") }
        return (.success(first), res.rule, Int(alias.route))
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
