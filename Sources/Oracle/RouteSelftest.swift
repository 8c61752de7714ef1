import Engine
import Foundation
import NetCore
import Netlink
import Resolver
import Topology

/// Differential testing of the resolver against the kernel: many lookups in a namespace, every disagreement kept.
public struct RouteSelftest {
    public struct Result: Sendable {
        public var lookups = 0
        public var agreements = 0
        public var disagreements: [RouteComparison] = []
        /// What the kernel answered, by kind of lookup: "output via gateway", "output on-link", "output local",
        /// "output ENETUNREACH", "connect ENETUNREACH", "input forwarded",
        /// "input delivered", "input EINVAL", ... (so a run shows what it exercised).
        public var outcomes: [String: Int] = [:]
        public init() {}
        public mutating func add(_ other: Result) {
            lookups += other.lookups
            agreements += other.agreements
            disagreements += other.disagreements
            outcomes.merge(other.outcomes, uniquingKeysWith: +)
        }
        /// "input 5200 (forwarded 1100, delivered 900, EINVAL 2500, ...)" and the same for output.
        public var outcomeSummary: [String] {
            ["output", "input", "connect"].compactMap { side in
                let mine = outcomes.filter { $0.key.hasPrefix(side + " ") }
                guard !mine.isEmpty else { return nil }
                let parts = mine.sorted { $0.value > $1.value }.map { "\($0.key.dropFirst(side.count + 1)) \($0.value)" }
                return "\(side) lookups: \(mine.values.reduce(0, +)) (\(parts.joined(separator: ", ")))"
            }
        }
    }

    /// Queries that exercise a namespace: each destination plainly and with every selector the rules may test.
    public static func queries(snapshot: RoutingSnapshot, destinations: [IPv4Address], random: inout EngineRandom,
                               count: Int? = nil) -> [RouteQuery] {
        let locals = snapshot.addresses.map(\.prefix.address).filter { !$0.isLoopback }
        let devices = snapshot.links.map(\.name)
        var out: [RouteQuery] = []
        for d in destinations {
            out.append(RouteQuery(destination: d))
            out.append(RouteQuery(destination: d, proto: .udp))
            for s in locals { out.append(RouteQuery(destination: d, source: s)) }
            for dev in devices { out.append(RouteQuery(destination: d, device: dev)) }
            for m: UInt32 in [1, 2, 3, 0x13] { out.append(RouteQuery(destination: d, mark: m)) }
            out.append(RouteQuery(destination: d, tos: 0x10))
            out.append(RouteQuery(destination: d, destinationPort: 443))
            out.append(RouteQuery(destination: d, sourcePort: 1500, destinationPort: 80))
            out.append(RouteQuery(destination: d, uid: 1500))
            // Connect's route decisions (a kernel connect beside ConnectRoute.decide): plainly, from each own
            // address, bound to each device, with a mark and a tos.
            var c = RouteQuery(destination: d)
            c.connect = true
            out.append(c)
            for s in locals { var q = c; q.source = s; out.append(q) }
            for dev in devices { var q = c; q.device = dev; out.append(q) }
            var m = c; m.mark = 1; out.append(m)
            var t = c; t.tos = 0x10; out.append(t)
            // Input lookups: a packet to d arriving on each device, from another lab address (forwarded or
            // delivered), from none, and from one of the namespace's own (a martian unless accept_local).
            let others = destinations.filter { $0 != d }
            for (k, dev) in devices.enumerated() {
                if !others.isEmpty { out.append(RouteQuery(destination: d, source: others[(k + out.count) % others.count], inputDevice: dev)) }
                if !locals.isEmpty { out.append(RouteQuery(destination: d, source: locals[(k + out.count) % locals.count], inputDevice: dev)) }
            }
        }
        guard let n = count else { return out }
        // A random sample, with random combinations of selectors.
        var sample: [RouteQuery] = []
        for _ in 0..<n {
            var q = out[Int(random.below(UInt32(out.count)))]
            if random.below(3) == 0, !locals.isEmpty, q.inputDevice == nil { q.source = locals[Int(random.below(UInt32(locals.count)))] }
            if random.below(4) == 0 { q.mark = random.below(16) }
            if random.below(5) == 0 { q.tos = [0, 0x10, 0x20][Int(random.below(3))] }
            if random.below(4) == 0 { q.destinationPort = [22, 80, 443, 500][Int(random.below(4))] }
            if random.below(6) == 0 { q.sourcePort = UInt16(900 + random.below(1200)) }
            if random.below(6) == 0, !q.connect { q.proto = [IPProtocol.tcp, .udp, .icmp][Int(random.below(3))] }
            if q.connect { q.uid = 0 }
            sample.append(q)
        }
        return sample
    }

    /// Run `queries` in `namespace` through the resolver and RTM_GETROUTE.
    public static func run(_ queries: [RouteQuery], in namespace: NetworkNamespace) throws -> Result {
        let socket = try NetlinkSocket(in: namespace)
        let resolver = FibResolver(snapshot: try RoutingSnapshot.read(socket: socket, namespace: namespace))
        var r = Result()
        for q in queries {
            let c = try RouteComparison.run(q, resolver: resolver, socket: socket, namespace: namespace, connect: q.connect)
            r.lookups += 1
            if c.agree { r.agreements += 1 } else { r.disagreements.append(c) }
            let side = q.connect ? "connect" : q.inputDevice == nil ? "output" : "input"
            let what = c.kernel.error ?? (side == "input" ? (c.kernel.dev == "lo" ? "delivered" : "forwarded") : c.kernel.dev == "lo" ? "local" : c.kernel.gateway != nil ? "via gateway" : "on-link")
            r.outcomes[side + " " + what, default: 0] += 1
        }
        return r
    }
}

extension RouteSelftest {
    /// What a random lab was put through before its lookups.
    public struct Perturbation: Sendable {
        public var linksDown = 0
        public var primariesDeleted = 0
        public init() {}
    }

    /// Test every node of `topology` (a lab that is up): carrier settled, every lab destination and the special ones,
    /// all combinations or a random sample of `lookups` per node. `node` is called with each node's result.
    public static func test(_ topology: Topology, random: inout EngineRandom, lookups: Int?,
                            node: (_ name: String, _ result: Result) throws -> Void) throws {
        for n in topology.nodes {
            let ns = NetworkNamespace(named: topology.namespace(of: n.name))
            try settleCarrier(ns)
            let snap = try RoutingSnapshot.read(ns)
            let qs = queries(snapshot: snap, destinations: destinations(topology), random: &random, count: lookups)
            try node(n.name, try run(qs, in: ns))
        }
    }

    /// Change a random lab that is up the way live networks change: some links down (dead and linkdown nexthops) and
    /// some primary addresses deleted, each waited out until the kernel's handlers ran.
    public static func perturb(_ t: Topology, random: inout EngineRandom) throws -> Perturbation {
        var p = Perturbation()
        // Some links down: the end goes down and its peer loses carrier (dead and linkdown nexthops; nexthop
        // objects on either end are removed). linkwatch tells the peer up to a second later: wait for it, so
        // the snapshot and the kernel see the same state.
        var peersLosingCarrier: [(node: String, iface: String)] = []
        for node in t.nodes where random.below(3) == 0 {
            guard let iface = node.interfaces.filter({ $0.kind == .veth }).randomElement(using: &random) else { continue }
            let s = try NetlinkSocket(in: NetworkNamespace(named: t.namespace(of: node.name)))
            if let l = try s.links.list().first(where: { $0.name == iface.name }) {
                try s.links.set(index: l.index, name: l.name, up: false)
                p.linksDown += 1
                if let link = t.links.first(where: { $0.ends.count == 2 && $0.ends.contains { $0.node == node.name && $0.interface == iface.name } }),
                   let peer = link.ends.first(where: { !($0.node == node.name && $0.interface == iface.name) }) {
                    peersLosingCarrier.append((peer.node, peer.interface))
                }
            }
        }
        for peer in peersLosingCarrier {
            let s = try NetlinkSocket(in: NetworkNamespace(named: t.namespace(of: peer.node)))
            for _ in 0..<150 {   // IFF_RUNNING, not carrier: linkwatch clears it just before the NETDEV_CHANGE handlers
                guard let l = try s.links.list().first(where: { $0.name == peer.iface }), l.flags & 0x40 != 0 else { break }
                usleep(20_000)
            }
        }
        if !peersLosingCarrier.isEmpty { usleep(100_000) }   // the handlers run right after, under rtnl
        // Some primaries deleted live: with promote_secondaries (the generator sets it on some nodes) a
        // secondary of the subnet becomes primary, otherwise the secondaries go with it.
        for node in t.nodes where random.below(3) == 0 {
            // Not an address some route or nexthop uses as its gateway: the kernel fixed that nexthop's scope
            // (host) when it was added, and no dump shows it.
            let gateways = Set(node.routes.flatMap { $0.nexthops.compactMap(\.gateway) } + node.nexthopObjects.compactMap(\.gateway))
            guard let iface = node.interfaces.first(where: { i in i.kind == .veth && i.addresses.count > 1 &&
                !i.addresses.contains { gateways.contains($0.address) } &&
                i.addresses.contains { a in a.prefix.length < 32 && i.addresses.contains { $0.address != a.address && $0.subnet == a.subnet } } })
            else { continue }
            let s = try NetlinkSocket(in: NetworkNamespace(named: t.namespace(of: node.name)))
            guard let l = try s.links.list().first(where: { $0.name == iface.name }),
                  let primary = try s.addresses.list().first(where: { $0.index == l.index && !$0.isSecondary && $0.prefix.length < 32 })
            else { continue }
            try s.addresses.delete(index: l.index, device: l.name, prefix: primary.prefix)
            p.primariesDeleted += 1
            // Each multipath leg caches its source (nh_saddr) and refreshes it only when a lookup without a
            // source uses that leg after an address change (fib_result_prefsrc, dev_addr_genid); until then
            // fib_select_multipath compares the flow's source with the stale one — history no snapshot shows.
            // A lookup through each leg (oif = its device) refreshes them all, so both sides see one state.
            for r in try s.routes.list() where r.nexthops.count > 1 {
                for h in r.nexthops {
                    _ = s.routeGet(destination: IPv4Address(r.destination.network.value | 1), outputIndex: h.index,
                                   mark: 0, tos: r.tos)
                }
            }
        }
        return p
    }

    /// Wait until linkwatch has handled every carrier change of the namespace, so routes marked linkdown and nexthop
    /// objects flushed are in the snapshot and in the kernel alike. Under load linkwatch can lag well over a second.
    public static func settleCarrier(_ ns: NetworkNamespace) throws {
        let s = try NetlinkSocket(in: ns)
        var waited = false
        for _ in 0..<200 {
            // As `up` settles (Controller.settleCarrier): IFF_RUNNING still set on a device without carrier, or a
            // route through it not yet marked linkdown, means linkwatch has not run its handlers.
            let links = try s.links.list()
            let lost = Set(links.filter { $0.isUp && !$0.carrier }.map(\.index))
            var pending = links.contains { lost.contains($0.index) && $0.flags & 0x40 != 0 }
            if !pending, !lost.isEmpty {
                pending = try s.routes.list().contains { r in
                    r.table != 255 && r.type == .unicast && r.nexthops.contains { lost.contains($0.index) && !$0.linkdown && !$0.dead }
                }
            }
            guard pending else { break }
            waited = true
            usleep(20_000)
        }
        if waited { usleep(100_000) }   // the NETDEV_CHANGE handlers run right after the operstate changes
    }

    /// Every address in the lab, hosts inside every route's prefix, plus addresses in no subnet, broadcast and multicast.
    public static func destinations(_ t: Topology) -> [IPv4Address] {
        var d = Set(t.nodes.flatMap { $0.addresses.map(\.address.address) })
        // One host inside every route's prefix (and its last address), so every route — multipath, error types,
        // prefsrc — is the longest match of some lookup.
        for r in t.nodes.flatMap(\.routes) where r.destination.length > 0 {
            let p = r.destination.canonical
            d.insert(p.length == 32 ? p.address : IPv4Address(p.address.value + 1))
            d.insert(IPv4Address(p.address.value | ~p.mask))
            // Equal-cost legs: several hosts, so the multipath hash is exercised on several inputs.
            if r.nexthops.count > 1 || r.nexthopID != nil, p.length <= 28 {
                let size = ~p.mask &+ 1
                for k in 1...6 { d.insert(IPv4Address(p.address.value + size / 7 * UInt32(k))) }
            }
        }
        for extra in ["192.0.2.99", "192.0.2.210", "192.0.2.230", "192.0.2.245", "198.51.100.200", "203.0.113.250", "224.0.0.5", "255.255.255.255",
                      "0.0.0.0", "127.0.0.1", "127.1.2.3", "239.1.2.3", "192.0.2.150", "192.0.2.165", "192.0.2.180", "192.0.2.186", "192.0.2.40"] {
            d.insert(IPv4Address(extra)!)
        }
        // Destinations the kernel treats specially: each subnet's network and directed-broadcast address, explicit
        // broadcasts and peers (own addresses and other devices' are among the lab's addresses above).
        for a in t.nodes.flatMap({ $0.addresses.map(\.address) }) {
            let p = a.subnet
            d.insert(p.address)
            d.insert(IPv4Address(p.address.value | ~p.mask))
            if let b = a.broadcast { d.insert(b) }
            if let q = a.peer { d.insert(q) }
        }
        return d.sorted()
    }

}
