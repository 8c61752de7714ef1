import Engine
import Foundation
import NetCore
import Netlink
import Resolver
import SystemPackage

/// Resolver lookups per second against the kernel's RTM_GETROUTE in the same run, on a namespace with 10,000 routes
/// (100 tables of 100 prefixes inside 192.0.2.0/24 and 203.0.113.0/24) and 100 fwmark rules. Needs root.
enum RouteBench {
    static func run(rounds: Int = 5) throws -> String {
        let name = "nlbench-\(getpid())"
        let ns = try NetworkNamespace.create(named: name)
        defer { try? NetworkNamespace.delete(named: name) }
        let s = try NetlinkSocket(in: ns)
        let fd = try ns.open()
        defer { try? fd.close() }
        try s.links.addVeth(name: "eth0", namespace: fd.rawValue, peer: "eth1", peerNamespace: fd.rawValue)
        let links = try s.links.list()
        for l in links where !l.isUp { try s.links.set(index: l.index, name: l.name, up: true) }
        let eth0 = links.first { $0.name == "eth0" }!.index
        try s.addresses.add(index: eth0, device: "eth0", prefix: IPv4Prefix(IPv4Address(198, 51, 100, 1), 24))
        // 100 distinct prefixes per table: /32s, /28s and /26s spread over the two ranges.
        var prefixes: [IPv4Prefix] = []
        for base in [IPv4Address(192, 0, 2, 0).value, IPv4Address(203, 0, 113, 0).value] {
            for k in stride(from: 0, to: 256, by: 6) { prefixes.append(IPv4Prefix(IPv4Address(base + UInt32(k)), 32)) }
            for k in stride(from: 0, to: 256, by: 32) { prefixes.append(IPv4Prefix(IPv4Address(base + UInt32(k)), 28)) }
        }
        prefixes = Array(prefixes.prefix(100))
        let t0 = Date()
        for t in 0..<100 {
            for p in prefixes {
                try s.routes.add(RouteInfo(table: UInt32(1000 + t), destination: p.canonical,
                                           nexthops: [NexthopInfo(gateway: IPv4Address(198, 51, 100, UInt8(2 + t % 50)), index: eth0)]),
                                 text: "\(p) table \(1000 + t)")
            }
            var r = RuleInfo()
            r.priority = UInt32(100 + t)
            r.fwmark = UInt32(t + 1)
            r.table = UInt32(1000 + t)
            try s.rules.add(r, text: "fwmark \(t + 1) lookup \(1000 + t)")
        }
        let buildTime = Date().timeIntervalSince(t0)
        // Snapshot time.
        var snapTimes: [Double] = []
        var snapshot: RoutingSnapshot!
        for _ in 0..<5 {
            let a = Date()
            snapshot = try RoutingSnapshot.read(socket: s, namespace: ns)
            snapTimes.append(Date().timeIntervalSince(a))
        }
        var buildTimes: [Double] = []
        var resolver = FibResolver(snapshot: snapshot)
        for _ in 0..<5 {
            let a = Date()
            resolver = FibResolver(snapshot: snapshot)
            buildTimes.append(Date().timeIntervalSince(a))
        }
        // The same lookups for both: random destinations in the ranges, random marks (rules walked: about 50 each).
        var rng = EngineRandom(seed: 1)
        let flows: [Flow] = (0..<20_000).map { _ in
            let base = rng.below(2) == 0 ? IPv4Address(192, 0, 2, 0).value : IPv4Address(203, 0, 113, 0).value
            return Flow(destination: IPv4Address(base + rng.below(256)), mark: rng.below(101), proto: .tcp, destinationPort: 80)
        }
        var agree = 0
        let e0 = DispatchTime.now().uptimeNanoseconds
        var sink = 0
        for _ in 0..<rounds { for f in flows { if case .success(let r) = resolver.outputRoute(f) { sink &+= Int(r.source.value & 1) } } }
        let engineNs = Double(DispatchTime.now().uptimeNanoseconds - e0) / Double(rounds * flows.count)
        let k0 = DispatchTime.now().uptimeNanoseconds
        for f in flows.prefix(5_000) {
            let k = s.routeGet(destination: f.destination, mark: f.mark, proto: .tcp, destinationPort: 80)
            switch (k, resolver.outputRoute(f)) {
            case (.success(let a), .success(let r)):
                if a.gateway == r.gateway && a.source == r.source && a.table == r.table { agree += 1 }
            case (.failure(let a), .failure(let b)): if a == b { agree += 1 }
            default: break
            }
        }
        let kernelNs = Double(DispatchTime.now().uptimeNanoseconds - k0) / 5_000
        _ = sink
        let snap = snapTimes.sorted()[2]
        func f0(_ x: Double) -> String { String(format: "%.0f", x) }
        return """
        | route lookups (10,000 routes, 100 rules, 100 tables) | result | baseline (same run) | ratio |
        |---|---:|---:|---:|
        | resolver, one core | \(f0(1e9 / engineNs)) lookups/s (\(f0(engineNs)) ns) | kernel RTM_GETROUTE round trips: \(f0(1e9 / kernelNs))/s | \(String(format: "%.1f", kernelNs / engineNs))× |
        | snapshot of the namespace (10,000 routes, 103 rules) | \(String(format: "%.1f", snap * 1000)) ms | building it through netlink: \(String(format: "%.0f", buildTime * 1000)) ms | |
        | resolver built from the snapshot (tables, rules, nh_saddr) | \(String(format: "%.1f", buildTimes.sorted()[2] * 1000)) ms | | |

        (The resolver and the kernel agree on \(agree) of the 5000 lookups timed on the kernel side: source, gateway, table or errno.)
        """
    }
}
