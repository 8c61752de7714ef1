import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import NetLab

/// Experiments through `netlab check`: steps in order on a lab in the file's state, a failing step stopping its
/// experiment, exit codes, and each experiment as a JUnit suite.
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct ExperimentCommandTests {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    /// The isp-failover lab with these experiments instead of its own.
    func lab(_ experiments: String) throws -> LabFixture {
        let text = try bundledLab("isp-failover").components(separatedBy: "experiments:")[0] + "experiments:\n" + experiments
        return try LabFixture(text: text, base: "pxexp", name: "it\(Int.random(in: 1000...9999))-pxexp")
    }

    func junit(_ path: String) throws -> XMLDocument { try XMLDocument(contentsOf: URL(fileURLWithPath: path)) }

    @Test func passingAndFailingExperiments() throws {
        let f = try lab("""
          - name: failover passes
            steps:
              - check: default route uses ISP1
              - set: client link eth0 down
              - wait-until: {check: {name: on ISP2, from: client, connect: 192.0.2.80:80, expect: {source: 203.0.113.10, dev: eth1}}, within: 5s}
              - set: client link eth0 up
              - wait: 100ms
              - wait-until: {check: default route uses ISP1, within: 5s}
          - name: wrong expectation stops
            steps:
              - set: client link eth0 down
              - check: default route uses ISP1
              - set: client link eth0 up
          - name: refused change goes on
            continue-on-failure: true
            steps:
              - set: client route add "default via 192.0.2.1 metric 9"
              - check: default route uses ISP1
        """)
        let d = f.directory
        let r = try netlab("check", f.file, "--junit", "\(d)/j.xml", "--json-file", "\(d)/r.json")
        #expect(r.status == 1, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("experiment failover passes: passed") && r.stdout.contains("experiment wrong expectation stops: FAILED"))
        // The lab is rebuilt before an experiment once one changed it: the second starts from the file, so its
        // first step can take eth0 down again; the third finds eth0 up although the second stopped with it down.
        #expect(r.stdout.contains("experiment wrong expectation stops (lab rebuilt"))
        let xml = try junit("\(d)/j.xml")
        let suites = try xml.nodes(forXPath: "//testsuite") as! [XMLElement]
        #expect(suites.count == 4)
        let pass = try #require(suites.first { $0.attribute(forName: "name")?.stringValue?.hasSuffix("experiment failover passes") == true })
        #expect(pass.attribute(forName: "tests")?.stringValue == "6" && pass.attribute(forName: "failures")?.stringValue == "0")
        let names = (try pass.nodes(forXPath: "testcase") as! [XMLElement]).compactMap { $0.attribute(forName: "name")?.stringValue }
        #expect(names == ["01 check: default route uses ISP1", "02 set: client link eth0 down", "03 wait-until: on ISP2 (within 5s)",
                          "04 set: client link eth0 up", "05 wait: 100ms", "06 wait-until: default route uses ISP1 (within 5s)"])
        let out = try pass.nodes(forXPath: "testcase[3]/system-out").first?.stringValue ?? ""
        #expect(out.contains("started at +") && out.contains("converged after"), "\(out)")
        let stop = try #require(suites.first { $0.attribute(forName: "name")?.stringValue?.hasSuffix("experiment wrong expectation stops") == true })
        #expect(stop.attribute(forName: "failures")?.stringValue == "1" && stop.attribute(forName: "skipped")?.stringValue == "1")
        #expect(try stop.nodes(forXPath: "testcase[2]/failure").count == 1 && stop.nodes(forXPath: "testcase[3]/skipped").count == 1)
        let goOn = try #require(suites.first { $0.attribute(forName: "name")?.stringValue?.hasSuffix("experiment refused change goes on") == true })
        #expect(goOn.attribute(forName: "failures")?.stringValue == "1" && goOn.attribute(forName: "skipped")?.stringValue == "0")
        let refusal = try goOn.nodes(forXPath: "testcase[1]/failure").first?.stringValue ?? ""
        #expect(refusal.contains("Nexthop has invalid gateway"), "\(refusal)")
        #expect(try goOn.nodes(forXPath: "testcase[2]/failure").isEmpty)
        // JSON: steps in order with their times; wait-until reports its convergence; the whole fits check's schema.
        let text = try String(contentsOfFile: "\(d)/r.json", encoding: .utf8)
        #expect(JSONSchema.problems("check", text).isEmpty, "\(JSONSchema.problems("check", text))")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(d)/r.json"))) as? [String: Any]
        let experiments = try #require(json?["experiments"] as? [[String: Any]])
        #expect(experiments.map { $0["passed"] as? Bool } == [true, false, false])
        let steps = try #require(experiments[0]["steps"] as? [[String: Any]])
        let started = steps.compactMap { $0["started"] as? Double }
        #expect(started.count == 6 && started == started.sorted())
        #expect(steps[2]["converged"] is Double && steps[2]["attempts"] as? Int ?? 0 >= 1)
        #expect((steps[4]["seconds"] as? Double ?? 0) >= 0.1)
        #expect(f.namespaces().isEmpty, "left behind: \(f.namespaces())")
    }

    /// `--experiment NAME` runs that one only (no check); a name that is not there is bad input.
    @Test func oneExperimentByName() throws {
        let f = try lab("""
          - name: only this
            steps:
              - check: default route uses ISP1
          - name: not this
            steps:
              - check: {name: fails, from: client, connect: 192.0.2.80:80, expect: {dev: eth1}}
        """)
        let r = try netlab("check", f.file, "--experiment", "only this", "--junit", "\(f.directory)/j.xml")
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(!r.stdout.contains("checks passed") && !r.stdout.contains("not this"))
        #expect(try junit("\(f.directory)/j.xml").nodes(forXPath: "//testcase").count == 1)
        let bad = try netlab("check", f.file, "--experiment", "only tis")
        #expect(bad.status == 2 && bad.stderr.contains("did you mean \"only this\"?"), "\(bad.stderr)")
        #expect(f.namespaces().isEmpty)
    }

    /// The Swift API's example: failover and back through `Lab.with`, engine and kernel agreeing, no drift after; the
    /// lab is gone afterwards, and after a SIGINT part-way (exit 130).
    @Test func swiftAPIExampleRunsAndCleansUp() throws {
        let binary = URL(fileURLWithPath: try netlabBinary()).deletingLastPathComponent().appendingPathComponent("netlab-failover-example").path
        try #require(FileManager.default.isExecutableFile(atPath: binary), "swift build first")
        let name = "it\(Int.random(in: 1000...9999))-pxapi"
        defer {
            for ns in ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []) where ns.hasPrefix(name + "-") {
                _ = try? run("/usr/bin/env", ["ip", "netns", "del", ns])
            }
        }
        let lab = repoRoot.appendingPathComponent("Labs/isp-failover.topo").path
        let r = try run(binary, [lab, name])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("failover: by ISP2 (203.0.113.10, eth1) after") && r.stdout.contains("no drift"), "\(r.stdout)")
        func left() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []).filter { $0.hasPrefix(name + "-") } }
        #expect(left().isEmpty && LabFixture.files(ofLab: name).isEmpty)
        // Ctrl-C part-way: the lab comes down before the process exits.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = [lab, name]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(10)
        while FileManager.default.fileExists(atPath: "/run/netlab/\(name).json") == false, Date() < deadline { usleep(10_000) }
        usleep(300_000)
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 130 || p.terminationStatus == 0, "exit \(p.terminationStatus)")
        #expect(left().isEmpty && LabFixture.files(ofLab: name).isEmpty, "left \(left())")
    }

    /// A step that never converges fails after its bound, with the attempts it made.
    @Test func waitUntilGivesUpAfterItsBound() throws {
        let f = try lab("""
          - name: never
            steps:
              - wait-until: {check: {name: impossible, from: client, connect: 192.0.2.80:80, expect: {dev: eth1}}, within: 400ms}
        """)
        let start = Date()
        let r = try netlab("check", f.file, "--experiment", "never")
        #expect(r.status == 1)
        #expect(r.stdout.contains("not converged within 0.4 s"), "\(r.stdout)")
        #expect(Date().timeIntervalSince(start) < 10)
    }
}
