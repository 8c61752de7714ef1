import Engine
import NetCore
import SystemPackage

/// A namespace's routing state compiled once for lookups (the one-time build): devices and addresses indexed, the
/// tables as `FibTables` with each nexthop's cached source and liveness, the rules as `CompiledRule`s, each device's
/// IPv4 settings. The lookups are extensions of this value in the files named after the kernel's (see `FibResolver`).
struct CompiledFib: Sendable {
    let snapshot: RoutingSnapshot
    var fib: FibTables
    let linkByIndex: [Int32: LinkInfo]
    let linkByName: [String: LinkInfo]
    let addressesByIndex: [Int32: [AddressInfo]]
    let localAddresses: Set<IPv4Address>
    let rules: [RuleInfo]
    /// The rules as plain data (no strings), so walking them costs no reference counting.
    var compiledRules: [CompiledRule]
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
    /// The multipath hash when the namespace makes it knowable: `fib_multipath_hash_seed` set (non-zero), policy 0
    /// (L3) or 1 (L4), `fib_multipath_use_neigh` off. Nil: the hash is unseen and every live leg is a candidate.
    let multipathHash: (seed: UInt32, policy: Int)?
    /// Resilient groups' buckets by route (index in the snapshot's routes): each bucket's member as a leg offset.
    var resilientBuckets: [Int: [Int]] = [:]
    /// Neighbour entries by (address, ifindex): valid or not (`nexthop_is_good_nh` for group members).
    var neighbourState: [UInt64: Bool] = [:]

    init(snapshot: RoutingSnapshot) {
        self.snapshot = snapshot
        linkByIndex = Dictionary(snapshot.links.map { ($0.index, $0) }, uniquingKeysWith: { a, _ in a })
        linkByName = Dictionary(snapshot.links.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        addressesByIndex = Dictionary(grouping: snapshot.addresses, by: \.index)
        localAddresses = Set(snapshot.addresses.map(\.prefix.address))
        rules = snapshot.rules.sorted { ($0.priority ?? 0) < ($1.priority ?? 0) }
        let byName = linkByName
        let rs = rules
        compiledRules = rs.map { r in
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
        for i in compiledRules.indices { compiledRules[i].tableSlot = fib.slot(of: compiledRules[i].table) ?? -1 }
        mergedSlots = [RoutingTable.local, RoutingTable.main].compactMap { fib.slot(of: $0) }
        let f = fib
        mergedLengths = Set(mergedSlots.flatMap { s in f.tables[s].lengthRange.map { Int(f.lengths[$0]) } }).sorted(by: >)
    }

    /// Take the neighbour table as it is now (connects change it: a gateway that does not answer ARP goes
    /// INCOMPLETE, then FAILED, and `nexthop_is_good_nh` skips it).
    mutating func updateNeighbours(_ neighbours: [NeighbourInfo]) {
        neighbourState = Dictionary(neighbours.map { (UInt64($0.address.value) << 32 | UInt64(UInt32(bitPattern: $0.index)), $0.isValid) },
                                    uniquingKeysWith: { a, _ in a })
    }

    func routeLocalnet(_ index: Int32) -> Bool { deviceSettings[index]?.routeLocalnet ?? false }

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
}
