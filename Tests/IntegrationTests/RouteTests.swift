import Foundation
import NetLab
import Testing

@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct RouteResolution {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    /// Every node of every bundled lab, every destination in the lab with every selector: resolver == kernel.
    @Test(arguments: try! FileManager.default.contentsOfDirectory(atPath: repoRoot.appendingPathComponent("Labs").path)
            .filter { $0.hasSuffix(".topo") }.sorted())
    func resolverAgreesWithTheKernelOnEveryBundledLab(_ lab: String) throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/\(lab)").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let r = try netlab("selftest", "route", "--lab", f.name, "--repro-dir", f.directory + "/repros")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("lookups agree"), "\(r.stdout)")
    }

    /// Random multi-homed namespaces (links taken down at random) with a fixed seed, as CI runs it.
    @Test func differentialFuzzOnRandomNamespaces() throws {
        let dir = NSTemporaryDirectory() + "netlab-repros-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try netlab("selftest", "route", "--seed", "7", "--topologies", "6", "--lookups", "100", "--repro-dir", dir, "--json")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["lookups"] as? Int == 3000 && json["agreements"] as? Int == 3000, "\(json)")
        #expect(json["namespaces"] as? Int == 30)
        #expect(!FileManager.default.fileExists(atPath: "/run/netns/st7-0-n0"), "random labs are taken down")
    }

    /// fib_rule_tests.sh, scenario by scenario: the kernel shows table 100 exactly where the selftest expects, and
    /// the resolver agrees with it on every lookup.
    @Test func fibRuleTestsScenarios() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Tests/IntegrationTests/Labs/fibrules.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let d = IPv4Address(203, 0, 113, 2)
        let cases: [(String, RouteQuery, Bool)] = [
            ("oif", RouteQuery(destination: d, device: "eth0"), true), ("oif", RouteQuery(destination: d, device: "lo"), false),
            ("tos", RouteQuery(destination: d, tos: 0x10), true), ("tos", RouteQuery(destination: d, tos: 0x20), false),
            ("mark", RouteQuery(destination: d, mark: 0x64), true), ("mark", RouteQuery(destination: d, mark: 0x63), false),
            ("uid", RouteQuery(destination: d, uid: 100), true), ("uid", RouteQuery(destination: d, uid: 101), false),
            ("ports", RouteQuery(destination: d, sourcePort: 666, destinationPort: 777), true),
            ("ports", RouteQuery(destination: d, sourcePort: 666, destinationPort: 778), false),
            ("range", RouteQuery(destination: d, sourcePort: 100, destinationPort: 400), true),
            ("range", RouteQuery(destination: d, sourcePort: 100, destinationPort: 401), false),
            ("tcp", RouteQuery(destination: d, proto: 6), true), ("tcp", RouteQuery(destination: d, proto: 17), false),
            ("icmp", RouteQuery(destination: d, proto: 1), true), ("icmp", RouteQuery(destination: d, proto: 6), false),
            ("dscp", RouteQuery(destination: d, tos: 0xfc), true), ("dscp", RouteQuery(destination: d, tos: 0xf4), false),
            ("notmark", RouteQuery(destination: d, mark: 0x63), true), ("notmark", RouteQuery(destination: d, mark: 0x64), false),
        ]
        for (node, q, viaTable100) in cases {
            let c = try RouteComparison.run(q, in: NetworkNamespace(named: "\(f.name)-\(node)"))
            #expect(c.agree, "\(node): \(c.text(withTrace: true))")
            if viaTable100 {
                #expect(c.kernel.table == 100 && c.kernel.gateway == "198.51.100.2", "\(node) \(q.words): \(c.kernel)")
            } else {
                #expect(c.kernel.error == "ENETUNREACH" || (c.kernel.table != 100 && c.kernel.error == nil), "\(node) \(q.words): \(c.kernel)")
            }
        }
    }

    /// `netlab route --connect`: the source comes from lookup #1, the egress from the lookup with the real ports, and
    /// both agree with a real kernel connect.
    @Test func routeCommandComparesWithAKernelConnect() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let r = try netlab("route", "--lab", f.name, "client", "192.0.2.80", "--from", "203.0.113.10", "--json")
        let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(r.status == 0 && j["agree"] as? Bool == true, "\(r.stdout)")
        #expect((j["engine"] as? [String: Any])?["dev"] as? String == "eth1")
        let c = try netlab("route", "--lab", f.name, "client", "192.0.2.80", "--connect", "--json")
        let cj = try #require(try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as? [String: Any])
        #expect(c.status == 0 && cj["agree"] as? Bool == true, "\(c.stdout)")
        #expect((cj["kernel"] as? [String: Any])?["source"] as? String == "198.51.100.10")
        let bad = try netlab("route", "--lab", f.name, "client", "192.0.2.80", "--dev", "eth9", "--json")
        let bj = try #require(try JSONSerialization.jsonObject(with: Data(bad.stdout.utf8)) as? [String: Any])
        #expect((bj["kernel"] as? [String: Any])?["error"] as? String == "ENODEV" && bj["agree"] as? Bool == true, "\(bad.stdout)")
    }
}
