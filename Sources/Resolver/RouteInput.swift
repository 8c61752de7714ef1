import Engine
import NetCore
import SystemPackage

// MARK: net/ipv4/route.c — input routes (`ip route get DEST from SRC iif DEV`)

extension CompiledFib {
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
        // ipv4_is_zeronet (include/linux/in.h) is 0.0.0.0 alone (measured on 6.18: the rest of 0.0.0.0/8 is unicast).
        if saddr == .any { return fail(.invalidArgument, "martian source 0.0.0.0: EINVAL") }
        if daddr == .any { return fail(.invalidArgument, "martian destination 0.0.0.0: EINVAL") }
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
}
