import Foundation
import NetLab
import Testing
import Engine

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
        let f = PrefixFixture(tag: "st")
        let dir = f.directory + "/repros"
        let r = try netlab("selftest", "route", "--seed", "7", "--topologies", "6", "--lookups", "100", "--repro-dir", dir,
                           "--prefix", f.prefix, "--json")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["lookups"] as? Int == 3000 && json["agreements"] as? Int == 3000, "\(json)")
        #expect(json["namespaces"] as? Int == 30)
        #expect(f.namespaces().isEmpty, "random labs are taken down: \(f.namespaces())")
    }

    /// With `fib_multipath_hash_seed` set the resolver names the kernel's exact equal-cost leg (one answer, the
    /// kernel's); with the seed back to 0 (random, unseen) both legs are candidates again.
    @Test func multipathHashWithASeedGivesTheKernelsLeg() throws {
        let text = """
            lab: mphash
            nodes:
              h:
                sysctl: {net.ipv4.fib_multipath_hash_seed: 987654321, net.ipv4.fib_multipath_hash_policy: 1}
                interfaces:
                  eth0: [198.51.100.1/24]
                  eth1: [203.0.113.1/24]
                routes:
                  - 192.0.2.0/24 nexthop via 198.51.100.2 dev eth0 weight 1 nexthop via 203.0.113.2 dev eth1 weight 2
              r:
                interfaces:
                  eth0: [198.51.100.2/24]
                  eth1: [203.0.113.2/24]
            links:
              - [h:eth0, r:eth0]
              - [h:eth1, r:eth1]
            """
        let f = try LabFixture(text: text, base: "mphash")
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        func ask(_ dest: String, _ port: Int) throws -> [String: Any] {
            let r = try netlab("route", f.name, "h", dest, "--ipproto", "tcp", "--sport", "40000", "--dport", String(port), "--json")
            return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
        }
        var devices = Set<String>()
        for k in 1...24 {
            let j = try ask("192.0.2.\(k)", 80 + k)
            #expect(j["agree"] as? Bool == true, "\(j)")
            #expect((j["candidates"] as? [Any])?.isEmpty ?? true, "one answer when the hash is known: \(j)")
            devices.insert(((j["kernel"] as? [String: Any])?["dev"] as? String) ?? "")
        }
        #expect(devices == ["eth0", "eth1"], "the hash spreads over both legs: \(devices)")
        _ = try run("/usr/bin/env", ["ip", "netns", "exec", "\(f.name)-h", "sysctl", "-qw", "net.ipv4.fib_multipath_hash_seed=0"])
        let j = try ask("192.0.2.1", 81)
        #expect(j["agree"] as? Bool == true && (j["candidates"] as? [Any])?.count == 2, "\(j)")
    }

    /// fib_rule_tests.sh, scenario by scenario: the kernel shows table 100 exactly where the selftest expects, and
    /// the resolver agrees with it on every lookup.
    @Test func fibRuleTestsScenarios() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Tests/IntegrationTests/Labs/fibrules.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let d = IPv4Address(203, 0, 113, 2)
        let from = IPv4Address(198, 51, 100, 3)
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
            // Input lookups (ip_route_input_slow): scenario 2's iif rule, and scenario 4's tos rule on input routes.
            ("iif", RouteQuery(destination: d, source: from, inputDevice: "eth0"), true),
            ("iif", RouteQuery(destination: d, source: from, inputDevice: "lo"), false),
            ("iif", RouteQuery(destination: d, source: IPv4Address(198, 51, 100, 4), inputDevice: "eth0"), false),
        ] + [0x10, 0x11, 0x12, 0x13, 0x20].map { tos in
            ("tos", RouteQuery(destination: d, source: from, tos: UInt8(tos), inputDevice: "eth0"), tos != 0x20)
        }
        for (node, q, viaTable100) in cases {
            let c = try RouteComparison.run(q, in: NetworkNamespace(named: "\(f.name)-\(node)"))
            #expect(c.agree, "\(node): \(c.text(withTrace: true))")
            if viaTable100 {
                #expect(c.kernel.table == 100 && c.kernel.gateway == "198.51.100.2", "\(node) \(q.words): \(c.kernel)")
            } else {
                #expect(c.kernel.error == "ENETUNREACH" || (c.kernel.table != 100 && c.kernel.error == nil), "\(node) \(q.words): \(c.kernel)")
            }
            if q.inputDevice != nil, viaTable100 { #expect(c.kernel.dev == "eth0" && c.kernel.source == "198.51.100.3", "\(c.kernel)") }
        }
    }

    /// fib_rule_tests.sh scenario 12: a real TCP connect with IP_TOS finds the route only through the tos rule.
    @Test func tosRuleDecidesARealConnect() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Tests/IntegrationTests/Labs/fibrules.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let ns = NetworkNamespace(named: "\(f.name)-dsconn")
        for tos: UInt8 in [0x04, 0x05, 0x06, 0x07, 0x20] {
            let c = try RouteComparison.run(RouteQuery(destination: IPv4Address(203, 0, 113, 11), tos: tos, destinationPort: 80),
                                            in: ns, connect: true)
            #expect(c.agree, "tos \(tos): \(c.text(withTrace: true))")
            if tos == 0x20 { #expect(c.kernel.error == "ENETUNREACH", "\(c.kernel)") }
            else { #expect(c.kernel.error == nil && c.kernel.dev == "eth0" && c.kernel.table == 101, "tos \(tos): \(c.kernel)") }
        }
    }

    /// Input routes under every source-validation setting: forwarding on and off, rp_filter 0, 1 (strict) and 2
    /// (loose), accept_local; each input lookup (every device, sources near and far, local and spoofed) agrees with
    /// RTM_GETROUTE with RTA_IIF, and the kernel facts the settings are for hold.
    @Test func inputRoutesUnderSourceValidation() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Tests/IntegrationTests/Labs/input.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let ns = NetworkNamespace(named: "\(f.name)-r")
        func sysctl(_ kv: String) throws { try run("/usr/bin/env", ["ip", "netns", "exec", ns.name, "sysctl", "-qw", kv]) }
        let dests = ["192.0.2.5", "192.0.2.70", "192.0.2.130", "192.0.2.201", "192.0.2.209", "192.0.2.217", "198.51.100.1",
                     "198.51.100.255", "203.0.113.2", "203.0.113.9", "255.255.255.255", "224.0.0.1", "10.0.0.1"].map { IPv4Address($0)! }
        let sources = ["198.51.100.7", "198.51.100.99", "203.0.113.2", "192.0.2.40", "192.0.2.9", "198.51.100.1", "203.0.113.9"]
            .map { IPv4Address($0)! }
        func get(_ d: String, _ s: String, _ dev: String) throws -> RouteAnswer {
            let c = try RouteComparison.run(RouteQuery(destination: IPv4Address(d)!, source: IPv4Address(s)!, inputDevice: dev), in: ns)
            #expect(c.agree, "\(c.text(withTrace: true))")
            return c.kernel
        }
        var kinds = Set<String>()
        for (forwarding, rp, acceptLocal) in [(1, 0, 0), (1, 1, 0), (1, 2, 0), (1, 0, 1), (0, 0, 0), (1, 1, 1)] {
            try sysctl("net.ipv4.conf.all.forwarding=\(forwarding)")
            try sysctl("net.ipv4.conf.all.rp_filter=\(rp)")
            try sysctl("net.ipv4.conf.all.accept_local=\(acceptLocal)")
            let step = "forwarding \(forwarding), rp_filter \(rp), accept_local \(acceptLocal)"
            var queries: [RouteQuery] = []
            for d in dests { for s in sources { for dev in ["eth0", "eth1", "lo"] {
                queries.append(RouteQuery(destination: d, source: s, inputDevice: dev))
                queries.append(RouteQuery(destination: d, source: s, tos: 0x10, proto: 17, sourcePort: 53, destinationPort: 4000, inputDevice: dev))
            } } }
            let r = try RouteSelftest.run(queries, in: ns)
            let bad = r.disagreements.prefix(5).map { $0.text(withTrace: true) }
            #expect(bad.isEmpty, "\(step): \(r.disagreements.count) disagreements, first: \(bad.joined(separator: "\n"))")
            kinds.formUnion(r.outcomes.keys)
            // What each setting is for, as the kernel does it.
            let spoofed = try get("192.0.2.5", "192.0.2.9", "eth0")    // the way back to 192.0.2.9 is eth1
            if forwarding == 0 { #expect(spoofed.error == "EHOSTUNREACH", "\(step): \(spoofed)") }
            else if rp == 1 { #expect(spoofed.error == "EINVAL", "\(step): strict rp_filter refuses: \(spoofed)") }
            else { #expect(spoofed.dev == "eth1" && spoofed.gateway == "203.0.113.2", "\(step): \(spoofed)") }
            let own = try get("198.51.100.1", "203.0.113.9", "eth0")   // a packet claiming r's own address
            if acceptLocal == 1 && rp != 1 { #expect(own.dev == "lo", "\(step): \(own)") } else { #expect(own.error == "EINVAL", "\(step): \(own)") }
        }
        #expect(kinds.isSuperset(of: ["input forwarded", "input delivered", "input EINVAL", "input EHOSTUNREACH", "input EACCES",
                                      "input ENETUNREACH"]), "\(kinds)")
    }

    /// `netlab route --connect`: the source comes from lookup #1, the egress from the lookup with the real ports, and
    /// both agree with a real kernel connect.
    @Test func routeCommandComparesWithAKernelConnect() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let r = try netlab("route", f.name, "client", "192.0.2.80", "--from", "203.0.113.10", "--json")
        let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(r.status == 0 && j["agree"] as? Bool == true, "\(r.stdout)")
        #expect((j["engine"] as? [String: Any])?["dev"] as? String == "eth1")
        let c = try netlab("route", f.name, "client", "192.0.2.80", "--connect", "--json")
        let cj = try #require(try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as? [String: Any])
        #expect(c.status == 0 && cj["agree"] as? Bool == true, "\(c.stdout)")
        #expect((cj["kernel"] as? [String: Any])?["source"] as? String == "198.51.100.10")
        let bad = try netlab("route", f.name, "client", "192.0.2.80", "--dev", "eth9", "--json")
        let bj = try #require(try JSONSerialization.jsonObject(with: Data(bad.stdout.utf8)) as? [String: Any])
        #expect((bj["kernel"] as? [String: Any])?["error"] as? String == "ENODEV" && bj["agree"] as? Bool == true, "\(bad.stdout)")
    }
}

@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct FibTestsScenarios {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    /// Every query of the battery agrees with the kernel in the namespace as it is now.
    func allAgree(_ ns: NetworkNamespace, _ step: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let snap = try RoutingSnapshot.read(ns)
        var rng = EngineRandom(seed: 1)
        let dests = ["203.0.113.1", "203.0.113.77", "198.51.100.200", "192.0.2.20", "192.0.2.2", "198.51.100.2", "192.0.2.1"]
            .map { IPv4Address($0)! }
        let r = try RouteSelftest.run(RouteSelftest.queries(snapshot: snap, destinations: dests, random: &rng), in: ns)
        #expect(r.disagreements.isEmpty, "\(step): \(r.disagreements.map { $0.text(withTrace: true) }.joined(separator: "\n"))",
                sourceLocation: sourceLocation)
        #expect(r.lookups > 50, sourceLocation: sourceLocation)
    }

    func get(_ ns: NetworkNamespace, _ q: RouteQuery) throws -> RouteComparison { try RouteComparison.run(q, in: ns) }

    /// ipv4_mpath_balance: with hash policy 1 and the seed unseen, 20 TCP connects through the kernel spread over both
    /// legs; the engine, beside each, takes the kernel's leg and agrees field by field (source, device, next hop, the
    /// path observed on the wire). ipv4_mpath_balance_preferred: a source no leg has leaves both legs possible, and
    /// the kernel uses both over many destinations.
    @Test func multipathBalanceOverTwentyConnects() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Tests/IntegrationTests/Labs/fibtests.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        var devices = Set<String>()
        for _ in 0..<20 {
            let r = try netlab("connect", f.name, "h", "203.0.113.5:80", "--kernel", "--json")
            let j = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
            let k = try #require(j["kernel"] as? [String: Any]), e = try #require(j["engine"] as? [String: Any])
            #expect(r.status == 0 && j["agree"] as? Bool == true, "\(r.stdout)")
            #expect(k["result"] as? String == "established" && e["result"] as? String == "established", "\(r.stdout)")
            let dev = k["dev"] as? String ?? "?"
            devices.insert(dev)
            // The source is the chosen leg's own (nh_saddr), and the SYN reached that leg's peer.
            let expected: (String, String) = dev == "eth0" ? ("198.51.100.1", "p0") : ("192.0.2.1", "p1")
            #expect(k["source"] as? String == expected.0 && (k["path"] as? [String])?.last == expected.1, "\(k)")
        }
        #expect(devices == ["eth0", "eth1"], "20 connects use both legs: \(devices)")
        let h = NetworkNamespace(named: "\(f.name)-h")
        var preferred = Set<String>()
        for k in 1...32 {
            let c = try get(h, RouteQuery(destination: IPv4Address(203, 0, 113, UInt8(k)), source: IPv4Address(192, 0, 2, 100)))
            #expect(c.agree && c.candidates.count == 2, "\(c.text(withTrace: true))")
            preferred.insert(c.kernel.dev ?? "?")
        }
        #expect(preferred == ["eth0", "eth1"], "from an address no leg has, both legs: \(preferred)")
    }

    @Test func fibTestsStepByStep() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Tests/IntegrationTests/Labs/fibtests.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let h = NetworkNamespace(named: "\(f.name)-h")
        let d = IPv4Address(203, 0, 113, 1)
        try allAgree(h, "baseline")
        // ipv4_mpath_balance_preferred: the source decides the leg.
        #expect(try get(h, RouteQuery(destination: d, source: IPv4Address(198, 51, 100, 1))).kernel.dev == "eth0")
        #expect(try get(h, RouteQuery(destination: d, source: IPv4Address(192, 0, 2, 1))).kernel.dev == "eth1")
        // ipv4_addr_metric: the prefix route carries the address's metric.
        let routes = try ipJSON("-4", "-n", h.name, "route", "show", "192.0.2.16/28")
        #expect(routes.first?["metric"] as? Int == 257, "\(routes)")
        // ipv4_route_metrics: the route's mtu reaches the resolved route.
        let resolver = FibResolver(snapshot: try RoutingSnapshot.read(h))
        if case .success(let r) = resolver.outputRoute(Flow(destination: IPv4Address(198, 51, 100, 200))) { #expect(r.mtu == 1400) }
        else { Issue.record("no route to 198.51.100.200") }
        // Carrier off on eth1 (its peer goes down): routes stay, flagged linkdown, still used...
        try run("/usr/bin/env", ["ip", "-n", "\(f.name)-p1", "link", "set", "eth0", "down"])
        try allAgree(h, "carrier off")
        #expect(try get(h, RouteQuery(destination: d, device: "eth1")).kernel.dev == "eth1")
        // ...unless ignore_routes_with_linkdown.
        try run("/usr/bin/env", ["ip", "netns", "exec", h.name, "sysctl", "-qw", "net.ipv4.conf.all.ignore_routes_with_linkdown=1"])
        try allAgree(h, "carrier off, ignore_routes_with_linkdown")
        try run("/usr/bin/env", ["ip", "netns", "exec", h.name, "sysctl", "-qw", "net.ipv4.conf.all.ignore_routes_with_linkdown=0"])
        try run("/usr/bin/env", ["ip", "-n", "\(f.name)-p1", "link", "set", "eth0", "up"])
        // Device down: the eth0 leg is dead; oif eth0 fails, oif eth1 works.
        try run("/usr/bin/env", ["ip", "-n", h.name, "link", "set", "eth0", "down"])
        try allAgree(h, "eth0 down")
        #expect(try get(h, RouteQuery(destination: d, device: "eth0")).kernel.error == "ENETUNREACH")
        #expect(try get(h, RouteQuery(destination: d, device: "eth1")).kernel.dev == "eth1")
        // ipv4_del_addr: deleting the address a route names as its source removes the route.
        #expect(try get(h, RouteQuery(destination: IPv4Address(198, 51, 100, 70))).kernel.source == "192.0.2.20")
        try run("/usr/bin/env", ["ip", "-n", h.name, "addr", "del", "192.0.2.20/28", "dev", "eth2"])
        try allAgree(h, "192.0.2.20 deleted")
        #expect(try get(h, RouteQuery(destination: IPv4Address(198, 51, 100, 70))).kernel.error == "ENETUNREACH")
        // Device removed: the whole multipath route goes.
        try run("/usr/bin/env", ["ip", "-n", h.name, "link", "del", "eth1"])
        try allAgree(h, "eth1 deleted")
        #expect(try get(h, RouteQuery(destination: d)).kernel.error == "ENETUNREACH")
    }
}
