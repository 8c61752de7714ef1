import ArgumentParser
import Foundation
import NetLab

struct Selftest: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Differential tests against the running kernel.",
                                                    subcommands: [SelftestRoute.self])
}

/// `netlab selftest route`: the resolver against RTM_GETROUTE, on a lab that is up or on random labs built for it.
struct SelftestRoute: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "route",
        abstract: "Compare the resolver with the kernel on many lookups; disagreements become reproductions.")
    @Option(help: "Test the nodes of a lab that is up instead of random labs.") var lab: String?
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Random topologies to build.") var topologies: Int = 10
    @Option(help: "Lookups per node (random sample); all combinations when omitted with --lab.") var lookups: Int?
    @Option(help: "Directory for reproductions (.topo plus the lookup).") var reproDir: String = "route-repros"
    @Flag(help: "Print one JSON summary.") var json = false

    func run() throws {
        try Terminal.requireRoot("selftest route")
        var random = EngineRandom(seed: seed)
        var total = RouteSelftest.Result()
        var namespaces = 0
        func test(_ topology: Topology) throws {
            for node in topology.nodes {
                let ns = NetworkNamespace(named: topology.namespace(of: node.name))
                let snap = try RoutingSnapshot.read(ns)
                let dests = destinations(topology)
                let qs = RouteSelftest.queries(snapshot: snap, destinations: dests, random: &random, count: lookups)
                let r = try RouteSelftest.run(qs, in: ns)
                namespaces += 1
                total.lookups += r.lookups
                total.agreements += r.agreements
                for d in r.disagreements {
                    total.disagreements.append(d)
                    try writeRepro(topology, node: node.name, d)
                }
                Terminal.progress("lookups", total.lookups, total.lookups)
            }
        }
        if let lab {
            guard let j = try Journal.read(lab: lab) else { Terminal.error("lab \(lab) is not up"); throw ExitStatus.failed }
            try test(try Topology.parse(j.source, file: j.file))
        } else {
            for k in 0..<topologies {
                let t = try Topology.parse(RandomTopology(seed: seed &+ UInt64(k), name: "st\(seed % 1000)-\(k)").text,
                                           file: "random-\(seed)-\(k).topo")
                try? LabController.down(lab: t.lab)
                try LabController.up(t)
                defer { try? LabController.down(lab: t.lab) }
                // Some links down: the end goes down and its peer loses carrier (dead and linkdown nexthops).
                for node in t.nodes where random.below(3) == 0 {
                    guard let iface = node.interfaces.filter({ $0.kind == .veth }).randomElement(using: &random) else { continue }
                    let s = try NetlinkSocket(in: NetworkNamespace(named: t.namespace(of: node.name)))
                    if let l = try s.links.list().first(where: { $0.name == iface.name }) {
                        try s.links.set(index: l.index, name: l.name, up: false)
                    }
                }
                try test(t)
            }
        }
        Terminal.endProgress()
        let line = "\(total.agreements)/\(total.lookups) lookups agree over \(namespaces) namespaces"
        if json {
            print("{\"lookups\": \(total.lookups), \"agreements\": \(total.agreements), \"namespaces\": \(namespaces), \"disagreements\": \(total.disagreements.count)}")
        } else {
            print(line)
            for d in total.disagreements.prefix(20) { print(d.text(withTrace: false)) }
            if !total.disagreements.isEmpty { print("reproductions in \(reproDir)/") }
        }
        if !total.disagreements.isEmpty { throw ExitStatus.failed }
    }

    /// Every address in the lab, hosts inside every route's prefix, plus addresses in no subnet, broadcast and multicast.
    func destinations(_ t: Topology) -> [IPv4Address] {
        var d = Set(t.nodes.flatMap { $0.addresses.map(\.address.address) })
        // One host inside every route's prefix (and its last address), so every route — multipath, error types,
        // prefsrc — is the longest match of some lookup.
        for r in t.nodes.flatMap(\.routes) where r.destination.length > 0 {
            let p = r.destination.canonical
            d.insert(p.length == 32 ? p.address : IPv4Address(p.address.value + 1))
            d.insert(IPv4Address(p.address.value | ~p.mask))
        }
        for extra in ["192.0.2.99", "192.0.2.210", "192.0.2.230", "192.0.2.245", "198.51.100.200", "203.0.113.250", "224.0.0.5", "255.255.255.255"] {
            d.insert(IPv4Address(extra)!)
        }
        return d.sorted()
    }

    func writeRepro(_ t: Topology, node: String, _ c: RouteComparison) throws {
        try FileManager.default.createDirectory(atPath: reproDir, withIntermediateDirectories: true)
        let base = "\(reproDir)/\(t.lab)-\(node)-\(c.query.destination)-\(abs(c.query.words.hashValue) % 100000)"
        try t.source.write(toFile: base + ".topo", atomically: true, encoding: .utf8)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        var r = c.report(withTrace: true)
        r.query = "node \(node): \(r.query)"
        try enc.encode(r).write(to: URL(fileURLWithPath: base + ".json"))
    }
}
