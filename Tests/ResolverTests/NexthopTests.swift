import Engine
import NetCore
import Resolver
import SystemPackage
import Testing

/// A namespace measured on Linux 6.18 with iproute2 (the expectations are the kernel's `ip route get` answers):
///   eth0 198.51.100.1/24, 203.0.113.1/24 brd 203.0.113.77; eth1 198.51.100.129/25
///   ip nexthop add id 10 via 198.51.100.2 dev eth0; id 11 via 198.51.100.130 dev eth1; id 12 group 10/11
///   ip route add 192.0.2.208/28 nhid 12; 192.0.2.0/28 via 198.51.100.1 dev eth0; 192.0.2.224/28 nhid 13 (blackhole)
///   sysctl net.ipv4.fib_multipath_hash_seed=12345 (policy 0)
func measuredNamespace(legacyGroup: Bool = false) -> RoutingSnapshot {
    let a = { (s: String) in IPv4Address(s)! }
    let p = { (s: String) in IPv4Prefix(s)! }
    let links = [LinkInfo(index: 1, name: "lo", flags: 0x9, mtu: 65536, master: 0, kind: nil, group: 0, carrier: true),
                 LinkInfo(index: 2, name: "eth0", flags: 0x1003, mtu: 1500, master: 0, kind: "veth", group: 0, carrier: true),
                 LinkInfo(index: 3, name: "eth1", flags: 0x1003, mtu: 1500, master: 0, kind: "veth", group: 0, carrier: true)]
    let addresses = [AddressInfo(index: 1, prefix: p("127.0.0.1/8"), scope: 254, flags: 0x80),
                     AddressInfo(index: 2, prefix: p("198.51.100.1/24"), scope: 0, flags: 0x80),
                     AddressInfo(index: 2, prefix: p("203.0.113.1/24"), scope: 0, flags: 0x80),
                     AddressInfo(index: 3, prefix: p("198.51.100.129/25"), scope: 0, flags: 0x80)]
    func local(_ d: String, _ dev: Int32, _ type: RouteType = .local) -> RouteInfo {
        RouteInfo(table: 255, type: type, scope: type == .local ? 254 : 253, proto: 2, destination: p(d + "/32"),
                  prefsrc: a(d), nexthops: [NexthopInfo(gateway: nil, index: dev)])
    }
    var group = RouteInfo(destination: p("192.0.2.208/28"),
                          nexthops: [NexthopInfo(gateway: a("198.51.100.2"), index: 2), NexthopInfo(gateway: a("198.51.100.130"), index: 3)],
                          multipath: true)
    if !legacyGroup { group.nexthopID = 12 }
    let loopback = RouteInfo(table: 255, type: .local, scope: 254, proto: 2, destination: p("127.0.0.0/8"), prefsrc: a("127.0.0.1"),
                             nexthops: [NexthopInfo(gateway: nil, index: 1)])
    let routes = [loopback, local("127.0.0.1", 1), local("198.51.100.1", 2), local("203.0.113.1", 2), local("198.51.100.129", 3),
                  local("198.51.100.255", 2, .broadcast), local("203.0.113.77", 2, .broadcast), local("203.0.113.255", 2, .broadcast),
                  RouteInfo(scope: 253, proto: 2, destination: p("198.51.100.0/24"), prefsrc: a("198.51.100.1"), nexthops: [NexthopInfo(gateway: nil, index: 2)]),
                  RouteInfo(scope: 253, proto: 2, destination: p("198.51.100.128/25"), prefsrc: a("198.51.100.129"), nexthops: [NexthopInfo(gateway: nil, index: 3)]),
                  RouteInfo(scope: 253, proto: 2, destination: p("203.0.113.0/24"), prefsrc: a("203.0.113.1"), nexthops: [NexthopInfo(gateway: nil, index: 2)]),
                  RouteInfo(destination: p("0.0.0.0/0"), nexthops: [NexthopInfo(gateway: a("198.51.100.2"), index: 2)]),
                  RouteInfo(destination: p("192.0.2.0/28"), nexthops: [NexthopInfo(gateway: a("198.51.100.1"), index: 2)]),
                  RouteInfo(destination: p("192.0.2.224/28"), nexthopID: 13),
                  group]
    var rules = [RuleInfo(), RuleInfo(), RuleInfo()]
    for (i, (pref, table)) in [(UInt32(0), UInt32(255)), (32766, 254), (32767, 253)].enumerated() { rules[i].priority = pref; rules[i].table = table }
    let objects = [NexthopObject(id: 10, gateway: a("198.51.100.2"), index: 2, scope: 253),
                   NexthopObject(id: 11, gateway: a("198.51.100.130"), index: 3, scope: 253),
                   NexthopObject(id: 12, group: [.init(id: 10), .init(id: 11)]),
                   NexthopObject(id: 13, blackhole: true)]
    return RoutingSnapshot(links: links, addresses: addresses, routes: routes, rules: rules,
                           sysctls: ["net.ipv4.fib_multipath_hash_seed": "12345", "net.ipv4.fib_multipath_hash_policy": "0"],
                           nexthopObjects: objects)
}

struct NexthopGroups {
    let a = { (s: String) in IPv4Address(s)! }

    /// nexthop_select_path_hthr: the hash alone picks the member, also when the flow's source is one member's own
    /// (the legacy multipath would take that member). Expectations: the kernel's answers on the measured namespace.
    @Test(arguments: [("192.0.2.209", "198.51.100.129", "eth0"), ("192.0.2.209", "198.51.100.1", "eth1"),
                      ("192.0.2.211", "198.51.100.129", "eth1"), ("192.0.2.211", "198.51.100.1", "eth0"),
                      ("192.0.2.213", "198.51.100.1", "eth1"), ("192.0.2.214", "198.51.100.129", "eth0")])
    func groupMemberFollowsTheHashNotTheSource(_ dst: String, _ src: String, _ dev: String) throws {
        let r = FibResolver(snapshot: measuredNamespace())
        let route = try r.outputRoute(Flow(destination: a(dst), source: a(src))).get()
        #expect(route.device == dev)
        #expect(route.gateway == a(dev == "eth0" ? "198.51.100.2" : "198.51.100.130"))
    }

    /// The same routes as legacy multipath prefer the leg holding the source: the test can fail.
    @Test func legacyMultipathPrefersTheSourcesLeg() throws {
        let r = FibResolver(snapshot: measuredNamespace(legacyGroup: true))
        #expect(try r.outputRoute(Flow(destination: a("192.0.2.209"), source: a("198.51.100.129"))).get().device == "eth1")
    }

    /// A member whose gateway's neighbour failed is skipped (nexthop_is_good_nh); the first good one is taken.
    @Test func failedNeighbourMemberIsSkipped() throws {
        var s = measuredNamespace()
        s.neighbours = [NeighbourInfo(index: 2, address: a("198.51.100.2"), state: 0x20)]
        let r = FibResolver(snapshot: s)
        #expect(try r.outputRoute(Flow(destination: a("192.0.2.209"), source: a("198.51.100.129"))).get().device == "eth1")
    }

    @Test func blackholeNexthopObjectIsEINVAL() {
        let r = FibResolver(snapshot: measuredNamespace())
        #expect(throws: Errno.invalidArgument) { try r.outputRoute(Flow(destination: a("192.0.2.225"))).get() }
    }

    /// `via 198.51.100.1 dev eth0` where 198.51.100.1 is eth0's own address: the kernel answers
    /// `192.0.2.5 dev eth0 src 198.51.100.1` (host-scope nexthop, no gateway).
    @Test func ownAddressAsGatewayIsOnLink() throws {
        let r = FibResolver(snapshot: measuredNamespace())
        let route = try r.outputRoute(Flow(destination: a("192.0.2.5"))).get()
        #expect(route.device == "eth0" && route.gateway == nil && route.source == a("198.51.100.1"))
    }
}

/// connect() to the special destinations on the measured namespace: the kernel's connect answered ENETUNREACH for
/// the directed broadcast, an explicit `broadcast`, 255.255.255.255 and multicast, and connected (lo) to 0.0.0.0.
struct ConnectRouteDecisions {
    @Test(arguments: ["198.51.100.255", "203.0.113.77", "203.0.113.255", "255.255.255.255", "224.0.0.5", "239.1.1.1"])
    func broadcastAndMulticastAreENETUNREACH(_ d: String) {
        let r = FibResolver(snapshot: measuredNamespace())
        let c = ConnectRoute.decide(ConnectRouteQuery(destination: IPv4Address(d)!, destinationPort: 80), resolver: r) { _, _, _ in .success(40000) }
        guard case .failure(let e) = c.result else { Issue.record("connect to \(d) got a route"); return }
        #expect(e == .networkUnreachable)
        #expect(c.port == nil, "no port is chosen for a refused route")
    }

    @Test func zeroDestinationConnectsToLoopback() throws {
        let r = FibResolver(snapshot: measuredNamespace())
        let c = ConnectRoute.decide(ConnectRouteQuery(destination: .any, destinationPort: 80), resolver: r) { _, _, _ in .success(40000) }
        let route = try c.result.get()
        #expect(route.device == "lo" && c.source == IPv4Address(127, 0, 0, 1) && c.destination == IPv4Address(127, 0, 0, 1))
    }
}
