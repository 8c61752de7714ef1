import Engine
import NetCore
import SystemPackage

/// Why a lookup ended as it did, step by step.
public struct RouteDecision: Sendable {
    public var result: Result<ResolvedRoute, Errno>
    /// Every answer the kernel may give (equal-cost legs it picks by a hash we cannot see); one when determined.
    public var candidates: [ResolvedRoute]
    /// Errors some of those legs give instead (an input route whose source fails validation on one leg only).
    public var candidateErrors: [Errno] = []
    public var rule: RuleInfo?
    public var route: RouteInfo?
    public var trace: [String]
}

/// Linux's IPv4 output route lookup over a `RoutingSnapshot`: `ip_route_output_key_hash_rcu`, `fib_lookup` with
/// policy rules, `fib_table_lookup`, `fib_select_path`, `inet_select_addr`. Implements the engine's `RouteResolver`.
public struct FibResolver: RouteResolver, Sendable {
    public let snapshot: RoutingSnapshot
    var fib: FibTables
    let linkByIndex: [Int32: LinkInfo]
    let linkByName: [String: LinkInfo]
    let addressesByIndex: [Int32: [AddressInfo]]
    let localAddresses: Set<IPv4Address>
    let rules: [RuleInfo]
    /// The rules as plain data (no strings), so walking them costs no reference counting.
    var compiled: [CompiledRule]
    /// Each device's IPv4 settings (`IN_DEV_*` of all and the device), by ifindex, computed once.
    let deviceSettings: [Int32: IPv4DeviceSettings]
    let customRules: Bool
    /// Without custom rules: the local and main tables' slots (local first) and their prefix lengths merged.
    var mergedSlots: [Int] = []
    var mergedLengths: [Int] = []
    let loopbackIndex: Int32
    /// `net->ipv4.fib_has_custom_local_routes`: a route added to the local table from user space (not by the kernel
    /// for an address), which makes `fib_validate_source` look an input source up in full.
    let hasCustomLocalRoutes: Bool
    /// `fib_rules_require_fldissect`: a rule tests the protocol or ports and does not only apply to local output; an
    /// input lookup then sees the packet's protocol and ports, otherwise they are 0.
    let rulesRequireFlowDissect: Bool

    /// The equal-cost leg to answer when a lookup has several (by device and next hop): the kernel's multipath hash
    /// is unseen, so a driver that saw which leg the kernel took can ask the engine to take the same one. Nil: the
    /// first leg, as listed.
    public var preferredLeg: Leg?
    /// The multipath hash when the namespace makes it knowable: `fib_multipath_hash_seed` set (non-zero), policy 0
    /// (L3) or 1 (L4), `fib_multipath_use_neigh` off. Nil: the hash is unseen and every live leg is a candidate.
    let multipathHash: (seed: UInt32, policy: Int)?
    /// Resilient groups' buckets by route (index in the snapshot's routes): each bucket's member as a leg offset.
    var resilientBuckets: [Int: [Int]] = [:]
    /// Neighbour entries by (address, ifindex): valid or not (`nexthop_is_good_nh` for group members).
    var neighbourState: [UInt64: Bool] = [:]

    public init(snapshot: RoutingSnapshot) {
        self.snapshot = snapshot
        linkByIndex = Dictionary(snapshot.links.map { ($0.index, $0) }, uniquingKeysWith: { a, _ in a })
        linkByName = Dictionary(snapshot.links.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        addressesByIndex = Dictionary(grouping: snapshot.addresses, by: \.index)
        localAddresses = Set(snapshot.addresses.map(\.prefix.address))
        rules = snapshot.rules.sorted { ($0.priority ?? 0) < ($1.priority ?? 0) }
        let byName = linkByName
        let rs = rules
        compiled = rs.map { r in
            CompiledRule(r, index: { byName[$0]?.index ?? -1 }, goto: r.goto.flatMap { g in rs.firstIndex { $0.priority == g } } ?? -1)
        }
        let defaults: [(UInt32, UInt32)] = [(0, 255), (32766, 254), (32767, 253)]
        customRules = !(rules.count == 3 && zip(rules, defaults).allSatisfy { r, d in
            r.priority == d.0 && r.table == d.1 && r.action == .toTable && r.from == nil && r.to == nil && r.iif == nil && r.oif == nil &&
                r.fwmark == nil && !r.invert && r.tos == 0 && r.dscp == nil && r.ipproto == nil && r.sport == nil && r.dport == nil &&
                r.uidrange == nil && r.suppressPrefixLength == nil
        })
        let s = snapshot
        deviceSettings = Dictionary(snapshot.links.map { ($0.index, s.ipv4Settings(of: $0.name)) }, uniquingKeysWith: { a, _ in a })
        loopbackIndex = snapshot.links.first(where: \.isLoopback)?.index ?? 1
        hasCustomLocalRoutes = snapshot.routes.contains { $0.type == .local && $0.proto != 2 }
        rulesRequireFlowDissect = customRules && rs.contains { r in r.iif != "lo" && (r.ipproto != nil || r.sport != nil || r.dport != nil) }
        let mp = snapshot.multipathSettings
        multipathHash = mp.hashSeed != 0 && mp.hashPolicy <= 1 && !mp.useNeigh ? (mp.hashSeed, mp.hashPolicy) : nil
        // The tables last: each nexthop caches its source and liveness, which need the fields above.
        fib = FibTables()
        let slotOfLink = Dictionary(snapshot.links.indices.map { (snapshot.links[$0].index, Int32($0)) }, uniquingKeysWith: { a, _ in a })
        let me = self
        // fib_check_nh_v4_gw: a gateway is looked up (scope link or narrower, oif = the nexthop's device) when the
        // route is added; a local route there (the gateway is an address of that device) gives the nexthop host
        // scope, and rt_set_nexthop then uses no gateway. Nexthop objects dump their scope.
        let localOn = Set(snapshot.routes.filter { $0.table == RoutingTable.local && $0.type == .local && $0.destination.length == 32 }
            .compactMap { r in r.nexthops.first.map { UInt64(r.destination.address.value) << 32 | UInt64(UInt32(bitPattern: $0.index)) } })
        // Routes using nexthop objects take the object's nexthops (a blackhole object makes a blackhole route:
        // fib_table_lookup → nexthop_is_blackhole → EINVAL).
        let objects = Dictionary(snapshot.nexthopObjects.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var groups: [Int: UInt8] = [:]
        var buckets: [Int: [Int]] = [:]
        let routes = snapshot.routes.enumerated().map { n, r0 -> RouteInfo in
            guard let id = r0.nexthopID, let o = objects[id] else { return r0 }
            var r = r0
            func hop(_ o: NexthopObject, weight: Int) -> NexthopInfo {
                NexthopInfo(gateway: o.gateway, index: o.index, weight: weight, flags: o.flags, scope: o.scope)
            }
            if o.blackhole { r.type = .blackhole; r.nexthops = []; return r }
            if o.isGroup {
                let members = o.group.filter { objects[$0.id] != nil }
                r.nexthops = members.map { hop(objects[$0.id]!, weight: $0.weight) }
                groups[n] = o.resilient ? 2 : 1
                if o.resilient, !o.buckets.isEmpty {
                    let position = Dictionary(members.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { a, _ in a })
                    let legs = o.buckets.map { position[$0] ?? -1 }
                    if !legs.contains(-1) { buckets[n] = legs }
                }
            } else {
                r.nexthops = [hop(o, weight: 1)]
            }
            return r
        }
        resilientBuckets = buckets
        fib = FibTables(routes: routes, nexthopGroups: groups) { r, nh in
            var quiet = Tracer(false)
            // nh_create_ipv4 caches a nexthop object's source at its own scope − 1 (link → site: no link-scope
            // address; host → link: one is eligible); once an address changes (dev_addr_genid), fib_result_prefsrc
            // recomputes it at the route's scope, as for a route's own nexthops.
            let objectScope: UInt8? = nh.scope.map { $0 == 0 ? 0 : $0 - 1 }
            let host = nh.gateway.map { g in nh.scope.map { $0 == 254 } ?? localOn.contains(UInt64(g.value) << 32 | UInt64(UInt32(bitPattern: nh.index))) } ?? false
            return FibNexthop(gateway: host ? .any : nh.gateway ?? .any, hostScopeGateway: host ? nh.gateway! : .any, index: nh.index, link: slotOfLink[nh.index] ?? -1, dead: me.isDead(nh),
                              linkdownIgnored: nh.linkdown && me.ignoreLinkdown(nh.index), linkdown: nh.linkdown, weight: nh.weight,
                              upperBound: -1,
                              saddr: me.inetSelectAddr(nh.index, dst: nh.gateway ?? .any, scope: objectScope ?? r.scope, trace: &quiet),
                              saddrAfterAddressChange: objectScope.map { sc in
                                  let other = me.inetSelectAddr(nh.index, dst: nh.gateway ?? .any, scope: r.scope, trace: &quiet)
                                  return other == me.inetSelectAddr(nh.index, dst: nh.gateway ?? .any, scope: sc, trace: &quiet) ? .any : other
                              } ?? .any)
        }
        updateNeighbours(snapshot.neighbours)
        for i in compiled.indices { compiled[i].tableSlot = fib.slot(of: compiled[i].table) ?? -1 }
        mergedSlots = [RoutingTable.local, RoutingTable.main].compactMap { fib.slot(of: $0) }
        let f = fib
        mergedLengths = Set(mergedSlots.flatMap { s in f.tables[s].lengthRange.map { Int(f.lengths[$0]) } }).sorted(by: >)
    }

    /// Mirrors `__inet_dev_addr_type()` (net/ipv4/fib_frontend.c) for the local table: 0.0.0.0/8 and
    /// 255.255.255.255 are broadcast, 224.0.0.0/4 multicast, anything else the type of the local table's longest
    /// match (`fib_table_lookup`, scope universe), unicast when nothing matches.
    public func inetAddrType(_ address: IPv4Address) -> RouteType {
        if address.value >> 24 == 0 || address.value == UInt32.max { return .broadcast }
        if address.isMulticast { return .multicast }
        guard let slot = fib.slot(of: RoutingTable.local) else { return .unicast }
        var quiet = Tracer(false)
        let k = Key(daddr: address, saddr: .any, oif: 0, iif: 0, mark: 0, tos: 0, scope: 0, proto: 0, sport: 0, dport: 0, uid: 0)
        guard case .success(let r) = tableLookup(slot, k, trace: &quiet) else { return .unicast }
        return fib.aliases[r.alias].type
    }

    public func outputRoute(_ flow: Flow) -> Result<ResolvedRoute, Errno> {
        var trace = Tracer(false)
        var none: [ResolvedRoute]?
        return route(flow, trace: &trace, candidates: &none).result
    }

    /// The answer with its trace, the rule and route that gave it, and every leg the kernel may pick.
    public func decide(_ flow: Flow, traced: Bool = true) -> RouteDecision {
        var trace = Tracer(traced)
        var all: [ResolvedRoute]? = []
        let o = route(flow, trace: &trace, candidates: &all)
        return RouteDecision(result: o.result, candidates: all ?? [], rule: o.rule.map { rules[$0] },
                             route: o.route.map { snapshot.routes[$0] }, trace: trace.lines)
    }

    typealias Outcome = (result: Result<ResolvedRoute, Errno>, rule: Int?, route: Int?)

    // MARK: ip_route_output_key_hash_rcu

    /// Mirrors `ip_route_output_key_hash_rcu()` in net/ipv4/route.c. `candidates`, when not nil, collects every leg
    /// the kernel may pick (equal-cost multipath); the engine's path passes nil and allocates nothing.
    func route(_ flow: Flow, trace: inout Tracer, candidates: inout [ResolvedRoute]?) -> Outcome {
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
            if saddr.isMulticast || saddr.value == UInt32.max || saddr.value >> 24 == 0 {
                return fail(.invalidArgument, "saddr \(saddr) is multicast, broadcast or 0.0.0.0/8: EINVAL")
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

    func routeLocalnet(_ index: Int32) -> Bool { deviceSettings[index]?.routeLocalnet ?? false }

    func resolved(_ daddr: IPv4Address, _ saddr: IPv4Address, name: String, mtu: Int, gateway: IPv4Address?, kind: ResolvedRoute.Kind,
                  alias: FibAlias?, table: UInt32?, explanation: String) -> ResolvedRoute {
        ResolvedRoute(destination: daddr, source: saddr, device: name, deviceMTU: mtu,
                      gateway: gateway, kind: kind, mtu: alias?.mtu.map(Int.init), advmss: alias?.advmss.map(Int.init),
                      hoplimit: alias?.hoplimit.map(Int.init), table: table, explanation: explanation)
    }

    // MARK: fib_lookup and rules

    struct Key {
        var daddr, saddr: IPv4Address
        var oif, iif: Int32
        var mark: UInt32
        var tos, scope, proto: UInt8
        var sport, dport: UInt16
        var uid: UInt32
        /// FLOWI_FLAG_ANY_SPORT: the source port is not chosen yet (the L4 multipath hash then uses a random one).
        var anySport = false
    }

    /// `struct fib_result` as positions: the alias and nexthop in `fib`, the table, the prefix length, the rule.
    struct FibResult {
        var alias: Int
        var nexthop: Int
        var table: UInt32
        var prefixLength: Int
        var rule: Int?
    }

    /// Mirrors `fib_lookup()` (include/net/ip_fib.h) and, with custom rules, `__fib_lookup` → `fib_rules_lookup`.
    func fibLookup(_ k: Key, trace: inout Tracer) -> Result<FibResult, Errno> {
        if !customRules {
            // No custom rules: main (merged with local), then default.
            var r = mergedLookup(k, trace: &trace)
            // The local table lives inside main until the first custom rule (fib_unmerge): results say main.
            if case .success(var m) = r, m.table == RoutingTable.local { m.table = RoutingTable.main; r = .success(m) }
            if case .failure = r, let slot = fib.slot(of: RoutingTable.default) { r = tableLookup(slot, k, trace: &trace) }
            if case .failure(let e) = r, e.rawValue == eagain { return .failure(.networkUnreachable) }
            return r
        }
        var i = 0
        var jumps = 0
        while i < compiled.count {
            if trace.enabled {
                if let why = compiled[i].mismatch(k) { trace.add("rule \(compiled[i].priority): no match (\(why))"); i += 1; continue }
            } else {
                i = nextMatch(from: i, k)
                if i == compiled.count { break }
            }
            let c = compiled[i]
            switch c.action {
            case .goto:
                guard c.gotoIndex >= 0, jumps < 32 else {
                    trace.add("rule \(c.priority): goto has no target rule: skipped")
                    i += 1
                    continue
                }
                trace.add("rule \(c.priority): goto \(compiled[c.gotoIndex].priority)")
                jumps += 1
                i = c.gotoIndex
                continue
            case .nop:
                trace.add("rule \(c.priority): nop")
                i += 1
                continue
            case .unreachable: trace.add("rule \(c.priority): unreachable → ENETUNREACH"); return .failure(.networkUnreachable)
            case .prohibit: trace.add("rule \(c.priority): prohibit → EACCES"); return .failure(.permissionDenied)
            case .blackhole: trace.add("rule \(c.priority): blackhole → EINVAL"); return .failure(.invalidArgument)
            case .toTable:
                guard c.tableSlot >= 0 else {
                    trace.add("rule \(c.priority): lookup table \(c.table): no such table, continue")
                    i += 1
                    continue
                }
                var sub = Tracer(trace.enabled)
                switch tableLookup(c.tableSlot, k, trace: &sub) {
                case .failure(let e) where e.rawValue == eagain:
                    trace.add("rule \(c.priority): lookup table \(c.table): no match\(sub.lines.isEmpty ? "" : " (" + sub.lines.joined(separator: "; ") + ")"), continue")
                    i += 1
                    continue
                case .failure(let e):
                    trace.add(contentsOf: sub)
                    trace.add("rule \(c.priority): lookup table \(c.table): \(errnoName(e))")
                    return .failure(e)
                case .success(var r):
                    if c.suppressPrefix >= 0, r.prefixLength <= c.suppressPrefix {
                        trace.add("rule \(c.priority): lookup table \(c.table) found /\(r.prefixLength), suppressed (suppress_prefixlength \(c.suppressPrefix))")
                        i += 1
                        continue
                    }
                    if c.suppressIfgroup >= 0, linkByIndex[fib.nexthops[r.nexthop].index]?.group == UInt32(c.suppressIfgroup) {
                        trace.add("rule \(c.priority): suppressed (suppress_ifgroup \(c.suppressIfgroup))")
                        i += 1
                        continue
                    }
                    trace.add(contentsOf: sub)
                    trace.add("rule \(c.priority): lookup table \(c.table) → \(snapshot.routes[Int(fib.aliases[r.alias].route)].destination.routeDescription)")
                    r.rule = i
                    return .success(r)
                }
            case .unspecified, .reserved3, .reserved4:
                // fib4_rule_action: -EINVAL for an action it does not know; fib_rules_lookup goes on (only -EAGAIN
                // continues in the kernel, but such a rule cannot be added: fib_nl2rule refuses FR_ACT_UNSPEC).
                i += 1
            }
        }
        trace.add("no rule matched: ENETUNREACH")
        return .failure(.networkUnreachable)
    }

    /// The first rule from `i` on whose selectors match (`compiled.count` if none): the walk of `fib_rules_lookup`,
    /// reading each rule in place.
    @inline(__always) func nextMatch(from i: Int, _ k: Key) -> Int {
        compiled.withUnsafeBufferPointer { b in
            var j = i
            while j < b.count, !b[j].matches(k) { j += 1 }
            return j
        }
    }

    /// One table (the rules' path): no merging. Mirrors `fib_table_lookup()` (net/ipv4/fib_trie.c).
    func tableLookup(_ slot: Int, _ k: Key, trace: inout Tracer) -> Result<FibResult, Errno> {
        let t = fib.tables[slot]
        for n in t.lengthRange {
            let len = Int(fib.lengths[n])
            let mask: UInt32 = len == 0 ? 0 : UInt32.max << UInt32(32 - len)
            let aliases = fib.aliases(slot: slot, length: len, network: k.daddr.value & mask)
            if aliases.isEmpty { continue }
            if let r = pick(aliases, table: t.id, len: len, k, trace: &trace) { return r }
        }
        return .failure(Errno(rawValue: eagain))
    }

    /// The first usable alias of one prefix, or nil to backtrack: `fib_table_lookup`'s inner loop.
    func pick(_ aliases: Range<Int32>, table: UInt32, len: Int, _ k: Key, trace: inout Tracer) -> Result<FibResult, Errno>? {
        for a in aliases {
            let r = fib.aliases[Int(a)]
            if r.tos != 0, r.tos & 0xfc != k.tos { continue }
            if r.scope < k.scope { continue }
            switch r.type {
            case .unreachable: trace.add("table \(table): \(describe(r)) is unreachable → EHOSTUNREACH"); return .failure(.noRouteToHost)
            case .prohibit: trace.add("table \(table): \(describe(r)) is prohibit → EACCES"); return .failure(.permissionDenied)
            case .blackhole: trace.add("table \(table): \(describe(r)) is blackhole → EINVAL"); return .failure(.invalidArgument)
            case .throw: trace.add("table \(table): throw \(describe(r))"); return .failure(Errno(rawValue: eagain))
            default: break
            }
            if r.allDead { continue }
            for n in r.nexthops {
                let nh = fib.nexthops[Int(n)]
                if nh.dead || nh.linkdownIgnored { continue }
                if k.oif != 0, nh.index != k.oif { continue }
                trace.add("table \(table): \(describe(r))\(snapshot.routes[Int(r.route)].metric != 0 ? " metric \(snapshot.routes[Int(r.route)].metric)" : "") (longest match /\(len))")
                return .success(FibResult(alias: Int(a), nexthop: Int(n), table: table, prefixLength: len, rule: nil))
            }
        }
        return nil
    }

    func describe(_ a: FibAlias) -> String { snapshot.routes[Int(a.route)].destination.routeDescription }

    /// `fib_table_lookup()` over local and main merged (no custom rules: the local table lives inside main).
    func mergedLookup(_ k: Key, trace: inout Tracer) -> Result<FibResult, Errno> {
        for len in mergedLengths {
            let mask: UInt32 = len == 0 ? 0 : UInt32.max << UInt32(32 - len)
            for slot in mergedSlots {
                let aliases = fib.aliases(slot: slot, length: len, network: k.daddr.value & mask)
                if aliases.isEmpty { continue }
                if let r = pick(aliases, table: fib.tables[slot].id, len: len, k, trace: &trace) { return r }
            }
        }
        return .failure(Errno(rawValue: eagain))
    }

    /// Really dead (RTNH_F_DEAD in the kernel). The dump also shows DEAD on a linkdown nexthop of a device that is up
    /// when ignore_routes_with_linkdown is on (`fib_nexthop_info`); that one is only linkdown.
    func isDead(_ nh: NexthopInfo) -> Bool {
        guard nh.dead else { return false }
        if nh.linkdown, ignoreLinkdown(nh.index), linkByIndex[nh.index]?.isUp == true { return false }
        return true
    }

    func ignoreLinkdown(_ index: Int32) -> Bool { deviceSettings[index]?.ignoreRoutesWithLinkdown ?? false }

    /// Mirrors `fib_select_path` → `fib_multipath_hash` + `fib_select_multipath()`. When the hash is knowable
    /// (`multipathHash`), exactly the kernel's leg; otherwise the legs the kernel may pick: the live ones, and with a
    /// source set those whose own source (`nh_saddr`) is it, as the selection prefers them (6.16+). Answers positions
    /// in `fib.nexthops`.
    func selectMultipath(_ r: FibAlias, _ k: Key, saddr: IPv4Address, trace: inout Tracer) -> [Int] {
        if r.group != 0 { return nexthopSelectPath(r, k, trace: &trace) }
        if let h = multipathHash, !r.nexthops.contains(where: { fib.nexthops[Int($0)].linkdown }), h.policy == 0 || !k.anySport {
            let hash = fibMultipathHash(k, seed: h.seed, policy: h.policy)
            if let leg = fibSelectMultipath(r, hash: hash, saddr: saddr) {
                trace.add("fib_multipath_hash (policy \(h.policy), seed \(h.seed)) = \(hash): leg \(leg - Int(r.nexthops.lowerBound) + 1) of \(r.nexthops.count) (upper bound \(fib.nexthops[leg].upperBound))")
                return [leg]
            }
        }
        // Dead legs are out. A linkdown leg is out of the hash only if ignore_routes_with_linkdown was on when its
        // carrier changed (fib_rebalance runs on that event, not on the sysctl): unseen, so it stays a candidate.
        let live = r.nexthops.map(Int.init).filter { !fib.nexthops[$0].dead }
        if trace.enabled, r.nexthops.contains(where: { fib.nexthops[Int($0)].linkdownIgnored }) {
            trace.add("fib_select_multipath: linkdown legs kept as candidates (their hash weight was fixed when the carrier changed)")
        }
        if saddr != .any {
            let mine = live.filter { fib.nexthops[$0].saddr == saddr }
            if !mine.isEmpty {
                trace.add("fib_select_multipath: \(mine.count) of \(live.count) legs have nh_saddr \(saddr)\(mine.count == 1 ? ": determined" : ": hash decides")")
                return mine
            }
        }
        trace.add("fib_select_multipath: \(live.count) live legs; the multipath hash (seed unseen) picks one")
        return live
    }

    /// True when a route uses a nexthop object group, whose member choice reads neighbour state.
    public var usesNexthopGroups: Bool { fib.aliases.contains { $0.group != 0 } }

    /// Take the neighbour table as it is now (connects change it: a gateway that does not answer ARP goes
    /// INCOMPLETE, then FAILED, and `nexthop_is_good_nh` skips it).
    public mutating func updateNeighbours(_ neighbours: [NeighbourInfo]) {
        neighbourState = Dictionary(neighbours.map { (UInt64($0.address.value) << 32 | UInt64(UInt32(bitPattern: $0.index)), $0.isValid) },
                                    uniquingKeysWith: { a, _ in a })
    }

    /// `nexthop_is_good_nh()` (net/ipv4/nexthop.c): a member is good unless its gateway has a neighbour entry on its
    /// device in a state outside NUD_VALID (incomplete, failed). No sysctl changes this for nexthop objects.
    func nexthopIsGood(_ nh: FibNexthop) -> Bool {
        let g = nh.gateway != .any ? nh.gateway : nh.hostScopeGateway
        return neighbourState[UInt64(g.value) << 32 | UInt64(UInt32(bitPattern: nh.index))] ?? true
    }

    /// Mirrors `fib_select_multipath()` → `nexthop_path_fib_result()` → `nexthop_select_path()` for a route using a
    /// nexthop object group: the flow hash (`fib_multipath_hash`, the same as the legacy path's) against each member's
    /// hash-threshold upper bound (`nexthop_select_path_hthr`), skipping members that are not good and falling back to
    /// the first good one — never the legacy preference for the leg whose source is the flow's. Resilient groups pick
    /// bucket `hash % buckets` (`nexthop_select_path_res`, no liveness check), as the snapshot read the buckets.
    /// Answers positions in `fib.nexthops`.
    /// `inputPolicy1`: an input lookup, whose L4 hash (policy 1) reads the packet and stays unseen.
    func nexthopSelectPath(_ r: FibAlias, _ k: Key, inputPolicy1: Bool = false, trace: inout Tracer) -> [Int] {
        let members = r.nexthops.map(Int.init)
        let good = members.filter { nexthopIsGood(fib.nexthops[$0]) }
        if r.group == 1, let h = multipathHash, h.policy == 0 || (!k.anySport && !inputPolicy1) {
            let hash = fibMultipathHash(k, seed: h.seed, policy: h.policy)
            var chosen = good.first ?? members[0]
            for n in good where Int64(hash) <= fib.nexthops[n].upperBound { chosen = n; break }
            trace.add("nexthop_select_path_hthr: fib_multipath_hash (policy \(h.policy), seed \(h.seed)) = \(hash): member \(chosen - members[0] + 1) of \(members.count) (upper bound \(fib.nexthops[chosen].upperBound))\(good.count < members.count ? "; \(members.count - good.count) not good (neighbour failed)" : "")")
            return [chosen]
        }
        if r.group == 2, let h = multipathHash, h.policy == 0 || (!k.anySport && !inputPolicy1), let b = resilientBuckets[Int(r.route)] {
            let hash = fibMultipathHash(k, seed: h.seed, policy: h.policy)
            let leg = members[b[Int(hash) % b.count]]
            trace.add("nexthop_select_path_res: fib_multipath_hash (policy \(h.policy), seed \(h.seed)) = \(hash): bucket \(Int(hash) % b.count) of \(b.count) → member \(leg - members[0] + 1)")
            return [leg]
        }
        if r.group == 2 {
            trace.add("nexthop_select_path_res: the hash (unseen) picks a bucket; any member may hold it")
            return members
        }
        trace.add("nexthop_select_path: group; the hash (seed unseen) picks one of \(good.count) good members")
        return good.isEmpty ? [members[0]] : good
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

    /// `fib_select_multipath()` as the running kernel has it (6.18: a score per leg, 2 for nh_saddr == saddr, 1 for
    /// hash <= upper bound; the best, first on ties; measured against RTM_GETROUTE with a source no leg has).
    func fibSelectMultipath(_ r: FibAlias, hash: Int32, saddr: IPv4Address) -> Int? {
        var best: Int?
        var score = -1
        for n in r.nexthops {
            let bound = fib.nexthops[Int(n)].upperBound
            if bound == -1 { continue }
            var s = 0
            if saddr != .any, fib.nexthops[Int(n)].saddr == saddr { s += 2 }
            if Int64(hash) <= bound { s += 1 }
            if score < s {
                best = Int(n)
                if s == 3 || (saddr == .any && s == 1) { return best }
                score = s
            }
        }
        return best
    }

    // MARK: inet_select_addr

    /// Mirrors `inet_select_addr()` in net/ipv4/devinet.c: primaries of `dev` in list order within `scope`, the one
    /// whose subnet holds `dst` first; else any device's primary that is not link-scoped, lo first.
    func inetSelectAddr(_ index: Int32, dst: IPv4Address, scope: UInt8, trace: inout Tracer) -> IPv4Address {
        let name = linkByIndex[index]?.name ?? "#\(index)"
        let localnet: UInt8 = routeLocalnet(index) ? 253 : 255
        var first: IPv4Address?
        for a in addressesByIndex[index] ?? [] where !a.isSecondary && min(a.scope, localnet) <= scope {
            if dst != .any, a.subnet.contains(dst) {     // inet_ifa_match: against IFA_ADDRESS (the peer, if any)
                trace.add("saddr \(a.prefix.address): primary of \(name) whose subnet holds \(dst) (inet_select_addr)")
                return a.prefix.address
            }
            if first == nil { first = a.prefix.address }
        }
        if let f = first {
            trace.add("saddr \(f): first primary of \(name) within scope (inet_select_addr)")
            return f
        }
        for l in snapshot.links.sorted(by: { $0.index < $1.index }) {
            for a in addressesByIndex[l.index] ?? [] where !a.isSecondary && a.scope != 253 && a.scope <= scope {
                trace.add("saddr \(a.prefix.address): \(name) has none; first primary of \(l.name) (inet_select_addr fallback)")
                return a.prefix.address
            }
        }
        trace.add("saddr 0.0.0.0: no address to choose")
        return .any
    }
}

let eagain: Int32 = 11

/// Trace lines, built only when asked for: a lookup without a trace allocates no strings.
struct Tracer {
    let enabled: Bool
    var lines: [String] = []
    init(_ enabled: Bool) { self.enabled = enabled }
    @inline(__always) mutating func add(_ line: @autoclosure () -> String) { if enabled { lines.append(line()) } }
    mutating func add(contentsOf other: Tracer) { if enabled { lines += other.lines } }
}

func errnoName(_ e: Errno) -> String { e.name }
