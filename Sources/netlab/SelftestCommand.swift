import ArgumentParser
import Foundation
import NetLab

struct Selftest: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Differential tests against the running kernel.",
                                                    subcommands: [SelftestRoute.self, SelftestConnect.self])
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
    @Option(help: "Lab names: PREFIX-0, PREFIX-1, ... (default st<seed mod 1000>).") var prefix: String?
    @Flag(help: "Print one JSON summary.") var json = false

    func validate() throws {
        try validatePrefix(prefix)
        if lab != nil, prefix != nil { throw ValidationError("--prefix names random labs; --lab tests a lab that is up: give one") }
    }

    func run() throws {
        try Terminal.requireRoot("selftest route")
        var random = EngineRandom(seed: seed)
        var total = RouteSelftest.Result()
        var namespaces = 0
        var linksDown = 0, primariesDeleted = 0
        func test(_ topology: Topology) throws {
            for node in topology.nodes {
                let ns = NetworkNamespace(named: topology.namespace(of: node.name))
                try settleCarrier(ns)
                let snap = try RoutingSnapshot.read(ns)
                let dests = destinations(topology)
                let qs = RouteSelftest.queries(snapshot: snap, destinations: dests, random: &random, count: lookups)
                let r = try RouteSelftest.run(qs, in: ns)
                namespaces += 1
                total.add(r)
                for d in r.disagreements { try writeRepro(topology, node: node.name, d) }
                Terminal.progress("lookups", total.lookups, total.lookups)
            }
        }
        if let lab {
            try test(try Terminal.labThatIsUp(lab))
        } else {
            for k in 0..<topologies {
                let t = try Topology.parse(RandomTopology(seed: seed &+ UInt64(k), name: "\(prefix ?? "st\(seed % 1000)")-\(k)").text,
                                           file: "random-\(seed)-\(k).topo")
                try takeDownLeftover(t.lab, file: t.file)
                try LabController.up(t)
                defer { try? LabController.down(lab: t.lab) }
                // Some links down: the end goes down and its peer loses carrier (dead and linkdown nexthops; nexthop
                // objects on either end are removed). linkwatch tells the peer up to a second later: wait for it, so
                // the snapshot and the kernel see the same state.
                var peersLosingCarrier: [(node: String, iface: String)] = []
                for node in t.nodes where random.below(3) == 0 {
                    guard let iface = node.interfaces.filter({ $0.kind == .veth }).randomElement(using: &random) else { continue }
                    let s = try NetlinkSocket(in: NetworkNamespace(named: t.namespace(of: node.name)))
                    if let l = try s.links.list().first(where: { $0.name == iface.name }) {
                        try s.links.set(index: l.index, name: l.name, up: false)
                        linksDown += 1
                        if let link = t.links.first(where: { $0.ends.count == 2 && $0.ends.contains { $0.node == node.name && $0.interface == iface.name } }),
                           let peer = link.ends.first(where: { !($0.node == node.name && $0.interface == iface.name) }) {
                            peersLosingCarrier.append((peer.node, peer.interface))
                        }
                    }
                }
                for p in peersLosingCarrier {
                    let s = try NetlinkSocket(in: NetworkNamespace(named: t.namespace(of: p.node)))
                    for _ in 0..<150 {   // IFF_RUNNING, not carrier: linkwatch clears it just before the NETDEV_CHANGE handlers
                        guard let l = try s.links.list().first(where: { $0.name == p.iface }), l.flags & 0x40 != 0 else { break }
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
                    primariesDeleted += 1
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
                try test(t)
            }
        }
        Terminal.endProgress()
        let line = "\(total.agreements)/\(count(total.lookups, "lookup")) agree over \(count(namespaces, "namespace"))" +
            (lab == nil ? " (\(linksDown) links taken down, \(primariesDeleted) primaries deleted live)" : "")
        if json {
            struct Summary: Encodable { var lookups, agreements, namespaces, disagreements: Int; var outcomes: [String: Int] }
            try Terminal.printJSON(Summary(lookups: total.lookups, agreements: total.agreements, namespaces: namespaces,
                                           disagreements: total.disagreements.count, outcomes: total.outcomes))
        } else {
            print(line)
            for s in total.outcomeSummary { print("  " + s) }
            for d in total.disagreements.prefix(20) { print(d.text(withTrace: false)) }
            if !total.disagreements.isEmpty { print("reproductions in \(reproDir)/") }
        }
        if !total.disagreements.isEmpty { throw ExitStatus.failed }
    }

    /// Wait until linkwatch has handled every carrier change of the namespace, so routes marked linkdown and nexthop
    /// objects flushed are in the snapshot and in the kernel alike. Under load linkwatch can lag well over a second.
    func settleCarrier(_ ns: NetworkNamespace) throws {
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
    func destinations(_ t: Topology) -> [IPv4Address] {
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

    func writeRepro(_ t: Topology, node: String, _ c: RouteComparison) throws {
        _ = try Terminal.outputDirectory(reproDir, option: "--repro-dir")
        let base = "\(reproDir)/\(t.lab)-\(node)-\(c.query.destination)-\(abs(c.query.words.hashValue) % 100000)"
        try Terminal.write(t.source, to: .file(base + ".topo"))
        var r = c.report(withTrace: true)
        r.query = "node \(node): \(r.query)"
        try Terminal.write(try Reports.jsonText(r) + "\n", to: .file(base + ".json"))
    }
}

/// `netlab selftest connect`: the engine against kernel connects on random labs with random checks (labs no test has
/// seen). Every check runs on the wire twice (engine, kernel); any difference is written as a one-check `.topo`.
struct SelftestConnect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "connect",
        abstract: "Compare engine and kernel connects on random labs; disagreements become one-check .topo files.",
        discussion: "Exit status: 0 every connect agreed, 1 a disagreement (reproductions written), 2 bad input.")
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(help: "Random labs to build, one after the other.") var labs: Int = 3
    @Option(help: "Nodes per lab.") var nodes: Int = 6
    @Option(help: "Random connects per lab.") var checks: Int = 12
    @Option(help: "Directory for reproductions (a .topo holding the lab and the one check).") var reproDir: String = "connect-repros"
    @Option(help: "Lab names: PREFIX-0, PREFIX-1, ... (default sc<seed mod 1000>).") var prefix: String?
    /// The option's first name, still read.
    @Option(help: .hidden) var namePrefix: String?
    @Option(help: "Also write each generated lab (with all its checks) into this directory.") var writeLabs: String?
    @Flag(help: "Print one JSON summary.") var json = false

    func validate() throws {
        guard (2...40).contains(nodes) else { throw ValidationError("--nodes must be 2...40") }
        try validatePrefix(prefix ?? namePrefix)
        guard labs >= 1, checks >= 1 else { throw ValidationError("--labs and --checks must be at least 1") }
    }

    func run() throws {
        try Terminal.requireRoot("selftest connect")
        Interrupts.trap()
        var connects = 0, agreements = 0, namespaces = 0, labsRun = 0
        var outcomes: [String: Int] = [:]
        var waited: [String: Int64] = [:]
        var classes: [String: Int] = [:]
        var failures: [String] = []
        let started = Date()
        for k in 0..<labs {
            if Interrupts.signal != nil { break }
            let gen = RandomConnectLab(seed: seed &+ UInt64(k), name: "\(prefix ?? namePrefix ?? "sc\(seed % 1000)")-\(k)", nodes: nodes, checks: checks)
            let file = "random-connect-\(seed &+ UInt64(k)).topo"
            let topology = try Topology.parse(gen.text, file: file)
            if let dir = writeLabs {
                _ = try Terminal.outputDirectory(dir, option: "--write-labs")
                try Terminal.write(gen.text, to: .file("\(dir)/\(file)"))
            }
            try takeDownLeftover(topology.lab, file: topology.file)
            try LabController.up(topology)
            defer { _ = try? LabController.down(lab: topology.lab) }
            namespaces += topology.nodes.count
            let session = try LabSession(topology: topology, fresh: true)
            defer {
                for (k, v) in session.cache.waited { waited[k, default: 0] += v }
                session.close()
            }
            let run = CheckRunner.run(topology, session: session, progress: { i, n, c, r in
                if r == nil { Terminal.progress("lab \(k + 1)/\(labs): \(c.name)", i, n) }
            }, interrupted: { Interrupts.signal != nil })
            Terminal.endProgress()
            labsRun += 1
            for (i, r) in run.results.enumerated() {
                // A connect cut short by Ctrl-C is neither an agreement nor a difference.
                if Interrupts.signal != nil, r.failures.contains(where: { $0.contains("interrupted") }) { continue }
                connects += 1
                outcomes[r.engine.map { s in s.errno ?? s.result } ?? "not run", default: 0] += 1
                if r.kernel?.time_wait != nil { classes["TIME_WAIT taken over", default: 0] += 1 }
                if r.kernel?.errno == "EADDRNOTAVAIL", topology.checks[i].bindAddress == nil { classes["no ephemeral port (EADDRNOTAVAIL)", default: 0] += 1 }
                if r.kernel?.reply?.hasPrefix("ICMP") == true {
                    classes[topology.nodes.contains { $0.sysctls.contains { $0.key == "net.ipv4.icmp_ratelimit" } } ? "ICMP error" : "ICMP error at default rate limits", default: 0] += 1
                }
                if r.notes.contains(where: { $0.contains("TIME_WAIT") || $0.contains("ICMP") }) {
                    classes["runs repeated for shared state", default: 0] += 1
                }
                if r.passed {
                    agreements += 1
                    continue
                }
                _ = try Terminal.outputDirectory(reproDir, option: "--repro-dir")
                let path = "\(reproDir)/\(topology.lab)-c\(i).topo"
                let why = r.failures.map { "# " + $0 }.joined(separator: "\n")
                try Terminal.write("# netlab selftest connect --seed \(seed &+ UInt64(k)) --labs 1 --nodes \(nodes) --checks \(checks): engine and kernel disagreed\n\(why)\n"
                     + gen.text(onlyCheck: i), to: .file(path))
                failures.append("\(topology.lab) \(r.name): \(r.failures.joined(separator: "; ")) → \(path)")
            }
            Terminal.note("lab \(k + 1)/\(labs) \(topology.lab): \(run.passed)/\(count(run.results.count, "connect")) agree (\(String(format: "%.1f", run.seconds)) s)")
        }
        let seconds = Date().timeIntervalSince(started)
        if json {
            struct Summary: Encodable { var connects, agreements, labs, namespaces, seconds: Int }
            try Terminal.printJSON(Summary(connects: connects, agreements: agreements, labs: labsRun, namespaces: namespaces,
                                           seconds: Int(seconds)))
        } else {
            print("\(agreements)/\(count(connects, "connect")) agree over \(count(labsRun, "lab")) (\(count(namespaces, "namespace"))) in \(String(format: "%.0f", seconds)) s")
            print("engine outcomes: " + outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            if !classes.isEmpty {
                print("classes drawn: " + classes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            }
            if !waited.isEmpty {
                print("waited for shared lab state: " + waited.sorted { $0.key < $1.key }
                    .map { String(format: "%@ %.1f s", $0.key, Double($0.value) / 1e9) }.joined(separator: ", "))
            }
            for f in failures { print("  ✘ " + f) }
            if !failures.isEmpty { print("reproduce one with `netlab check FILE`") }
        }
        if let sig = Interrupts.signal { Terminal.error("interrupted"); throw ExitCode(128 + sig) }
        if !failures.isEmpty { throw ExitStatus.failed }
    }
}

/// `--prefix` of both selftests: lab names PREFIX-0, PREFIX-1, ... must be lab names (docs/topology.md).
func validatePrefix(_ p: String?) throws {
    guard let p else { return }
    if !LabNames.isLab(p + "-0") || p.count > 16 {
        throw ValidationError("--prefix: 1 to 16 characters from a-z, 0-9 and '-', starting with a letter (labs are named PREFIX-0, PREFIX-1, ...)")
    }
}

/// A lab of a selftest's name that is up: one an earlier run of this selftest left (its journal names the same
/// generated file) is taken down; anyone else's lab is left alone and the run stops (exit 1), naming --prefix.
func takeDownLeftover(_ lab: String, file: String) throws {
    guard let j = try? Journal.read(lab: lab) else {
        // An unreadable journal: `down` finds this lab's namespaces by their mark, and touches nothing else.
        if (try? Journal.path(lab: lab)).map({ FileManager.default.fileExists(atPath: $0) }) ?? false { _ = try? LabController.down(lab: lab) }
        return
    }
    guard URL(fileURLWithPath: j.file).lastPathComponent == URL(fileURLWithPath: file).lastPathComponent else {
        Terminal.error("lab \(lab) is up from \(j.file), not made by this selftest; it is left alone")
        Terminal.hint("give another --prefix")
        throw ExitStatus.failed
    }
    _ = try LabController.down(lab: lab)
}
