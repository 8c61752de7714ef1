import Driver
import Engine
import Files
import Foundation
import Lab
import Netlink
import Oracle
import Topology

/// Where a selftest's reproductions go: the directory is made at the first one (`directory` problems are bad input,
/// `write` problems a failed run).
public enum ReproductionError: Error {
    case directory(FileProblem)
    case write(FileProblem)
}

func writeReproduction(_ text: String, to path: String, directory: String, option: String) throws {
    do { _ = try OutputDirectory.prepare(directory, option: option) } catch { throw ReproductionError.directory(error) }
    do { try OutputTarget.file(path).write(text) } catch { throw ReproductionError.write(error) }
}

/// `netlab selftest route` on random labs: each built (a leftover of an earlier run taken down), perturbed, every
/// node's lookups compared with the kernel's, every disagreement written as a `.topo` and the lookup.
public struct RouteSelftestRun {
    public var seed: UInt64
    public var topologies: Int
    public var lookups: Int?
    public var prefix: String
    public var reproDirectory: String
    public init(seed: UInt64, topologies: Int, lookups: Int?, prefix: String, reproDirectory: String) {
        self.seed = seed; self.topologies = topologies; self.lookups = lookups; self.prefix = prefix; self.reproDirectory = reproDirectory
    }

    public struct Summary: Sendable {
        public var total = RouteSelftest.Result()
        public var namespaces = 0
        public var perturbation = RouteSelftest.Perturbation()
    }

    /// Test the nodes of a lab that is up (`topology`), or random labs when nil. `progress` after every node.
    public func run(lab topology: Topology?, progress: (Summary) -> Void) throws -> Summary {
        var random = EngineRandom(seed: seed)
        var s = Summary()
        func test(_ t: Topology) throws {
            try RouteSelftest.test(t, random: &random, lookups: lookups) { node, r in
                s.namespaces += 1
                s.total.add(r)
                for d in r.disagreements { try writeRepro(t, node: node, d) }
                progress(s)
            }
        }
        if let topology { try test(topology); return s }
        for k in 0..<topologies {
            let t = try Topology.parse(RandomTopology(seed: seed &+ UInt64(k), name: "\(prefix)-\(k)").text, file: "random-\(seed)-\(k).topo")
            let session = try LabSession.open(t, bringUp: .fresh(leftover: .madeFrom(file: t.file)))
            defer { try? session.end() }
            let p = try RouteSelftest.perturb(t, random: &random)
            s.perturbation.linksDown += p.linksDown
            s.perturbation.primariesDeleted += p.primariesDeleted
            try test(t)
        }
        return s
    }

    func writeRepro(_ t: Topology, node: String, _ c: RouteComparison) throws {
        let base = "\(reproDirectory)/\(t.lab)-\(node)-\(c.query.destination)-\(abs(c.query.words.hashValue) % 100000)"
        try writeReproduction(t.source, to: base + ".topo", directory: reproDirectory, option: "--repro-dir")
        var r = c.report(withTrace: true)
        r.query = "node \(node): \(r.query)"
        try writeReproduction(try Reports.jsonText(r) + "\n", to: base + ".json", directory: reproDirectory, option: "--repro-dir")
    }
}

/// `netlab selftest connect`: random labs with random checks (labs no test has seen), one after the other; every
/// check runs on the wire twice (engine, kernel) and any difference is written as a one-check `.topo`.
public struct ConnectSelftestRun {
    public var seed: UInt64
    public var labs: Int
    public var nodes: Int
    public var checks: Int
    public var prefix: String
    public var reproDirectory: String
    /// Also write each generated lab (with all its checks) into this directory.
    public var writeLabs: String?
    public init(seed: UInt64, labs: Int, nodes: Int, checks: Int, prefix: String, reproDirectory: String, writeLabs: String?) {
        self.seed = seed; self.labs = labs; self.nodes = nodes; self.checks = checks; self.prefix = prefix
        self.reproDirectory = reproDirectory; self.writeLabs = writeLabs
    }

    public struct Summary: Sendable {
        public var connects = 0, agreements = 0, namespaces = 0, labs = 0
        /// The engine's outcomes by errno name (or result).
        public var outcomes: [String: Int] = [:]
        /// What the labs drew that is worth counting (TIME_WAIT takeovers, ICMP errors, runs repeated).
        public var classes: [String: Int] = [:]
        /// Time waited for shared lab state, by what.
        public var waited: [String: Int64] = [:]
        /// `lab check: failures → reproduction`.
        public var failures: [String] = []
        public var seconds: Double = 0
    }

    /// `checkProgress(lab, check, index, total)` before each check, `labDone(lab, run)` after each lab.
    public func run(checkProgress: @escaping (Int, Check, Int, Int) -> Void, labDone: (Int, String, CheckRun) -> Void,
                    interrupted: () -> Bool) throws -> Summary {
        var s = Summary()
        let started = Date()
        for k in 0..<labs {
            if interrupted() { break }
            let gen = RandomConnectLab(seed: seed &+ UInt64(k), name: "\(prefix)-\(k)", nodes: nodes, checks: checks)
            let file = "random-connect-\(seed &+ UInt64(k)).topo"
            let topology = try Topology.parse(gen.text, file: file)
            if let dir = writeLabs { try writeReproduction(gen.text, to: "\(dir)/\(file)", directory: dir, option: "--write-labs") }
            let session = try LabSession.open(topology, bringUp: .fresh(leftover: .madeFrom(file: topology.file)))
            defer {
                for (k, v) in session.cache.waited { s.waited[k, default: 0] += v }
                try? session.end()
            }
            s.namespaces += topology.nodes.count
            let run = CheckRunner.run(topology, session: session, progress: { i, n, c, r in
                if r == nil { checkProgress(k, c, i, n) }
            }, interrupted: interrupted)
            s.labs += 1
            for (i, r) in run.results.enumerated() {
                // A connect cut short by Ctrl-C is neither an agreement nor a difference.
                if r.problems.contains(where: \.isInterrupted) { continue }
                s.connects += 1
                classify(r, topology.checks[i], topology, into: &s)
                if r.passed {
                    s.agreements += 1
                    continue
                }
                let path = "\(reproDirectory)/\(topology.lab)-c\(i).topo"
                let why = r.failures.map { "# " + $0 }.joined(separator: "\n")
                try writeReproduction("# netlab selftest connect --seed \(seed &+ UInt64(k)) --labs 1 --nodes \(nodes) --checks \(checks): engine and kernel disagreed\n\(why)\n"
                    + gen.text(onlyCheck: i), to: path, directory: reproDirectory, option: "--repro-dir")
                s.failures.append("\(topology.lab) \(r.name): \(r.failures.joined(separator: "; ")) → \(path)")
            }
            labDone(k, topology.lab, run)
        }
        s.seconds = Date().timeIntervalSince(started)
        return s
    }

    /// Count what a connect drew, from its typed outcomes.
    func classify(_ r: CheckResult, _ check: Check, _ topology: Topology, into s: inout Summary) {
        let engine = r.verdict?.engine, kernel = r.verdict?.kernel
        s.outcomes[engine.map { e in e.errno?.name ?? e.result.kind } ?? "not run", default: 0] += 1
        if kernel?.reusedTimeWait != nil { s.classes["TIME_WAIT taken over", default: 0] += 1 }
        if kernel?.errno == .addressNotAvailable, check.bindAddress == nil { s.classes["no ephemeral port (EADDRNOTAVAIL)", default: 0] += 1 }
        if kernel?.repliedWithICMP == true {
            s.classes[topology.nodes.contains { $0.sysctls.contains { $0.key == "net.ipv4.icmp_ratelimit" } } ? "ICMP error" : "ICMP error at default rate limits", default: 0] += 1
        }
        if r.verdict?.notes.contains(where: \.isAboutSharedState) == true { s.classes["runs repeated for shared state", default: 0] += 1 }
    }
}
