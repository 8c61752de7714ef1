import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import Topology

/// `netlab check` and `netlab connect` on real labs: the engine on the wire, the kernel beside it, reports CI reads.
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct CheckCommandTests {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    struct Report: Decodable {
        struct Side: Decodable { var source: String?; var dev: String?; var via: String?; var result: String; var errno: String?; var path: [String] }
        struct Result: Decodable { var name: String; var passed: Bool; var failures: [String]; var engine: Side?; var kernel: Side?; var pcap: String?; var notes: [String]; var sweep: Sweep? }
        struct Sweep: Decodable { struct Cell: Decodable { var values: [String]; var result: Result }; var dimensions: [String]; var cells: [Cell] }
        struct Step: Decodable { var index: Int; var kind: String; var status: String; var started: Double; var converged: Double?; var check: Result? }
        struct Experiment: Decodable { var name: String; var passed: Bool; var steps: [Step] }
        var results: [Result]
        var passed: Int
        var failed: Int
        var experiments: [Experiment]?
    }

    func decode(_ path: String) throws -> Report {
        try JSONDecoder().decode(Report.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Every check of every bundled lab passes, with the kernel's connect (getsockname, capture) agreeing with the
    /// engine's; reports and pcaps are written; the lab is gone afterwards.
    @Test(arguments: try! FileManager.default.contentsOfDirectory(atPath: repoRoot.appendingPathComponent("Labs").path)
            .filter { $0.hasSuffix(".topo") }.sorted())
    func bundledLabPassesEveryCheckAndAgreesWithTheKernel(_ lab: String) throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/\(lab)").path)
        let d = f.directory
        let r = try netlab("check", f.file, "--json-file", "\(d)/r.json", "--junit", "\(d)/j.xml", "--markdown", "\(d)/r.md",
                           "--html", "\(d)/r.html", "--pcap-dir", "\(d)/pcap")
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let topology = try Topology.load(path: f.file)
        let report = try decode("\(d)/r.json")
        #expect(report.results.count == topology.checks.count && report.failed == 0)
        // A swept check's cells are checks of their own: each compared with the kernel's connect.
        for (r, check) in zip(report.results, topology.checks) { #expect((r.sweep?.cells.count ?? 0) == check.cells.count, "\(r.name)") }
        for c in report.results.flatMap({ r in r.sweep.map { $0.cells.map(\.result) } ?? [r] }) {
            #expect(c.passed, "\(c.name): \(c.failures)")
            let e = try #require(c.engine), k = try #require(c.kernel, "\(c.name): no kernel run")
            #expect(e.result == k.result && e.errno == k.errno, "\(c.name)")
            if e.result == "established" { #expect(e.source == k.source && e.path == k.path && !e.path.isEmpty, "\(c.name)") }
            // Equal-cost legs: when the kernel's hash chose another leg than the engine's first, the engine ran again
            // on the kernel's leg (a note), and what is reported is that run: the same leg.
            if c.notes.contains(where: { $0.contains("equal-cost leg") }) {
                #expect(e.dev == k.dev && e.via == k.via, "\(c.name): \(c.notes)")
            }
            let pcap = try #require(c.pcap)
            let head = try Data(contentsOf: URL(fileURLWithPath: pcap)).prefix(4)
            #expect(Array(head) == [0x0A, 0x0D, 0x0D, 0x0A], "\(pcap) is not pcapng")
        }
        // Experiments: every step passed, in order, and every connect in them agreed with the kernel's.
        #expect((report.experiments ?? []).count == topology.experiments.count)
        for e in report.experiments ?? [] {
            #expect(e.passed, "experiment \(e.name): \(e.steps.filter { $0.status != "passed" }.map(\.index))")
            #expect(e.steps.map(\.index) == Array(1...e.steps.count) && e.steps.map(\.started) == e.steps.map(\.started).sorted())
            for s in e.steps where s.kind == "check" || s.kind == "wait-until" {
                let c = try #require(s.check, "\(e.name) step \(s.index)")
                let eng = try #require(c.engine), k = try #require(c.kernel, "\(e.name) step \(s.index): no kernel run")
                #expect(eng.result == k.result && eng.source == k.source && eng.dev == k.dev && eng.path == k.path, "\(e.name) step \(s.index)")
                if s.kind == "wait-until" { #expect(s.converged != nil) }
            }
        }
        // JUnit: one testcase per check, no failures.
        let xml = try XMLDocument(contentsOf: URL(fileURLWithPath: "\(d)/j.xml"))
        // One testcase per check, and per step of each experiment (a suite of its own).
        let steps = topology.experiments.reduce(0) { $0 + $1.steps.count }
        let cases = topology.checks.reduce(0) { $0 + max(1, $1.cells.count) }
        #expect(try xml.nodes(forXPath: "//testcase").count == cases + steps)
        #expect(try xml.nodes(forXPath: "//testsuite").count == 1 + topology.experiments.count)
        #expect(try xml.nodes(forXPath: "//failure").isEmpty && xml.nodes(forXPath: "//skipped").isEmpty)
        let html = try String(contentsOfFile: "\(d)/r.html", encoding: .utf8)
        // Self-contained: inline SVG, no external scripts, styles or images.
        #expect(html.components(separatedBy: "<svg").count == cases + 2)
        #expect(!html.contains("<script") && !html.contains("<link ") && !html.contains("<img"))
        #expect(try String(contentsOfFile: "\(d)/r.md", encoding: .utf8).contains("\(topology.checks.count)/\(topology.checks.count) passed"))
        #expect(f.namespaces().isEmpty, "left behind: \(f.namespaces())")
        #expect(!FileManager.default.fileExists(atPath: f.journal))
    }

    /// A check whose expectation is wrong fails with exit 1 and says what was expected and what happened.
    @Test func wrongExpectationFailsWithBothValues() throws {
        let cut = try dualhome(checks: """
          - name: expects the wrong device
            from: client
            connect: 192.0.2.80:80
            expect: {dev: eth1, path: [client, isp2, core, server]}
        """)
        let f = try LabFixture(text: cut, base: "wrong")
        let r = try netlab("check", f.file, "--junit", "\(f.directory)/j.xml")
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("dev: expected eth1, engine eth0"))
        let junit = try String(contentsOfFile: "\(f.directory)/j.xml", encoding: .utf8)
        #expect(junit.contains("<failure") && junit.contains("path: expected client → isp2 → core → server"))
        #expect(f.namespaces().isEmpty)
    }

    /// Bad input: exit 2, FILE:LINE:COL and a hint, and nothing is created.
    @Test func badCheckIsRejectedBeforeAnythingIsBuilt() throws {
        let f = try LabFixture(text: try bundledLab("dualhome").replacingOccurrences(of: "connect: 192.0.2.80:81", with: "connect: 10.1.2.3:81"), base: "bad")
        let r = try netlab("check", f.file)
        #expect(r.status == 2)
        #expect(r.stderr.contains("\(f.file):") && r.stderr.contains("outside the lab's address space") && r.stderr.contains("hint:"))
        #expect(f.namespaces().isEmpty)
    }

    /// `netlab connect --netns` on any namespace; the guard table is removed afterwards (nft reads it independently).
    @Test func connectOnANamedNamespaceLeavesNoGuard() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.file) }
        let r = try netlab("connect", "--netns", "\(f.name)-client", "192.0.2.80:81", "--kernel", "--json")
        #expect(r.status == 3, "refused, and both agree: \(r.stdout)\(r.stderr)")
        let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(j["agree"] as? Bool == true)
        let engine = try #require(j["engine"] as? [String: Any]), kernel = try #require(j["kernel"] as? [String: Any])
        #expect(engine["result"] as? String == "refused" && kernel["errno"] as? String == "ECONNREFUSED")
        let tables = try run("/usr/bin/env", ["ip", "netns", "exec", "\(f.name)-client", "nft", "list", "tables"])
        #expect(tables.status == 0 && !tables.stdout.contains("netlab_guard"), "\(tables.stdout)\(tables.stderr)")
    }

    /// Ctrl-C in the middle of a check: the run stops, the lab it brought up is taken down, exit 128+SIGINT.
    @Test func interruptedCheckLeavesNothingBehind() throws {
        let cut = try dualhome(checks: """
          - name: a long silent drop
            from: client
            connect: 192.0.2.121:80
        """)
        let f = try LabFixture(text: cut, base: "intr")
        let p = try startNetlab(["check", f.file])
        var waited = 0
        while f.namespaces().isEmpty && waited < 100 { usleep(20_000); waited += 1 }
        usleep(1_500_000)
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 130)
        #expect(f.namespaces().isEmpty, "left behind: \(f.namespaces())")
        #expect(!FileManager.default.fileExists(atPath: f.journal))
    }
}

/// `netlab selftest connect`: random labs and connects no test has seen, engine against kernel, nothing left behind.
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct SelftestConnectTests {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    struct Summary: Decodable { var connects: Int; var agreements: Int; var labs: Int; var namespaces: Int }

    @Test func randomLabsAgreeWithTheKernel() throws {
        let f = PrefixFixture(tag: "sc")
        let (prefix, dir) = (f.prefix, f.directory)
        func leftovers() -> [String] { f.namespaces() }
        let r = try netlab("selftest", "connect", "--seed", "11", "--labs", "2", "--nodes", "5", "--checks", "8",
                           "--prefix", prefix, "--repro-dir", dir + "/repros", "--write-labs", dir, "--json")
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let s = try JSONDecoder().decode(Summary.self, from: Data(r.stdout.utf8))
        #expect(s.connects == 16 && s.agreements == 16 && s.labs == 2 && s.namespaces == 10)
        // The labs it ran are written and are valid topologies with their checks.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".topo") }
        #expect(files.count == 2)
        for f in files { #expect(try Topology.load(path: "\(dir)/\(f)").checks.count == 8) }
        #expect(leftovers().isEmpty, "left behind: \(leftovers())")
        #expect(!FileManager.default.fileExists(atPath: dir + "/repros"))
    }

    /// Ctrl-C during a connect: exit 130, the lab taken down, and the cut-short connect is no difference.
    @Test func interruptedSelftestLeavesNothingBehind() throws {
        let f = PrefixFixture(tag: "si")
        let (prefix, dir) = (f.prefix, f.directory)
        func leftovers() -> [String] { f.namespaces() }
        let p = try startNetlab(["selftest", "connect", "--seed", "5", "--labs", "3", "--checks", "10", "--prefix", prefix,
                                 "--repro-dir", dir])
        var waited = 0
        while leftovers().isEmpty && waited < 200 { usleep(20_000); waited += 1 }
        usleep(2_500_000)
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 130)
        #expect(leftovers().isEmpty, "left behind: \(leftovers())")
        #expect(!FileManager.default.fileExists(atPath: dir), "an interrupted connect is not a disagreement")
    }

    @Test func badOptionsExitTwo() throws {
        let r = try netlab("selftest", "connect", "--nodes", "1")
        #expect(r.status == 2 && r.stderr.contains("--nodes must be 2...40"), "\(r.stderr)")
        let p = try netlab("selftest", "connect", "--prefix", "no/slash")
        #expect(p.status == 2 && p.stderr.contains("--prefix"), "\(p.stderr)")
        let q = try netlab("selftest", "route", "--prefix", "Bad_")
        #expect(q.status == 2 && q.stderr.contains("--prefix"), "\(q.stderr)")
        // Out of range for SO_MARK / IP_TOS: a usage error, not a crash.
        let m = try netlab("connect", "--netns", "none", "192.0.2.80:80", "--mark", "0x1ffffffff")
        #expect(m.status == 2 && m.stderr.contains("--mark must be a number from 0 to 0xffffffff"), "\(m.stderr)")
        let t = try netlab("route", "--netns", "none", "192.0.2.80", "--tos", "300")
        #expect(t.status == 2 && t.stderr.contains("--tos must be a number from 0 to 255"), "\(t.stderr)")
    }
}
