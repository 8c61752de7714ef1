import Foundation
import Testing
@testable import Topology

/// `experiments:` and the words of `netlab set` parse into the model; each mistake is reported at its place with a
/// hint; a change's effect on the declared state is what the kernel does.
@Suite struct ExperimentParserTests {
    /// The bundled isp-failover lab without its experiments.
    func lab() throws -> String {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Labs/isp-failover.topo").path
        return try String(contentsOfFile: path, encoding: .utf8).components(separatedBy: "experiments:")[0]
    }

    func with(_ experiments: String) throws -> String { try lab() + "experiments:\n" + experiments }

    func topology() throws -> Topology { try Topology.parse(try lab(), file: "t.topo") }

    /// The line of `needle` in `text` (1-based), so expectations follow the file.
    func line(_ needle: String, in text: String) -> Int {
        (text.components(separatedBy: "\n").firstIndex { $0.contains(needle) } ?? -1) + 1
    }

    @Test func everyStepKindReachesTheModel() throws {
        let text = try with("""
          - name: all kinds
            continue-on-failure: true
            steps:
              - check: default route uses ISP1
              - set: client route add "192.0.2.0/25 via 203.0.113.1 metric 5"
              - wait: 200ms
              - wait-until: {check: inline one, within: 1.5s}
              - check: {name: inline one, from: client, connect: 192.0.2.80:80, expect: {dev: eth1}}
              - set: client link eth0 down --both
              - set: client sysctl net.ipv4.conf.all.rp_filter=2
        """)
        let t = try Topology.parse(text, file: "t.topo")
        let e = try #require(t.experiments.first)
        #expect(e.name == "all kinds" && e.continueOnFailure && e.steps.count == 7)
        #expect(e.steps.map(\.kindName) == ["check", "set", "wait", "wait-until", "check", "set", "set"])
        guard case .check(let c) = e.steps[0].kind else { Issue.record("not a check"); return }
        #expect(c.name == "default route uses ISP1" && c.expect.dev == "eth0")
        guard case .set(let r) = e.steps[1].kind, case .route(.add, let route) = r.action else { Issue.record("not a route add"); return }
        #expect(r.node == "client" && route.destination == IPv4Prefix("192.0.2.0/25") && route.metric == 5
                && route.nexthops.first?.gateway == IPv4Address("203.0.113.1"))
        #expect(r.words == ["route", "add", "192.0.2.0/25 via 203.0.113.1 metric 5"])
        guard case .wait(let ms) = e.steps[2].kind else { Issue.record("not a wait"); return }
        #expect(ms == 200)
        guard case .waitUntil(let w, let within) = e.steps[3].kind else { Issue.record("not a wait-until"); return }
        #expect(w.name == "inline one" && w.expect.dev == "eth1" && within == 1500)
        guard case .set(let l) = e.steps[5].kind, case .link("eth0", false, true) = l.action else { Issue.record("not link down --both"); return }
        guard case .set(let s) = e.steps[6].kind, case .sysctl("net.ipv4.conf.all.rp_filter", "2") = s.action else { Issue.record("not a sysctl"); return }
        #expect(e.steps[0].location.line == line("- check: default route uses ISP1", in: text))
    }

    @Test func mistakesPointAtTheirPlace() throws {
        let text = try with("""
          - name: broken
            steps:
              - check: default route uses ISP3
              - set: client lnk eth0 down
              - set: client link eth7 down
              - set: client route add "default via 8.8.8.8"
              - set: client route add "default va 203.0.113.1"
              - wait: soon
              - wait-until: {check: default route uses ISP1}
              - sleep: 1s
          - name: broken
            steps: []
        """)
        let d = try diagnostics(text)
        func at(_ needle: String, _ word: String) -> (line: Int, column: Int) {
            let l = line(needle, in: text)
            let col = text.components(separatedBy: "\n")[l - 1].range(of: word).map { text.components(separatedBy: "\n")[l - 1].distance(from: text.components(separatedBy: "\n")[l - 1].startIndex, to: $0.lowerBound) + 1 } ?? 0
            return (l, col)
        }
        func expectDiagnostic(_ needle: String, _ word: String, _ message: String, hint: String? = nil) {
            let want = at(needle, word)
            let found = d.first { $0.location.line == want.line && $0.location.column == want.column && $0.message.contains(message) }
            #expect(found != nil, "no \"\(message)\" at \(want): \(d.map { "\($0.location) \($0.message)" })")
            if let hint, let found { #expect(found.hint?.contains(hint) == true, "\(found.hint ?? "no hint")") }
        }
        expectDiagnostic("ISP3", "default route uses ISP3", "no check is named", hint: "did you mean \"default route uses ISP1\"?")
        expectDiagnostic("lnk", "lnk", "unknown change \"lnk\"", hint: "did you mean \"link\"?")
        expectDiagnostic("eth7", "eth7", "node client has no interface \"eth7\"", hint: "did you mean")
        expectDiagnostic("8.8.8.8", "8.8.8.8", "outside the lab's address ranges")
        expectDiagnostic("default va", "va ", "unknown word \"va\" in route", hint: "did you mean \"via\"?")
        expectDiagnostic("wait: soon", "soon", "is not a duration", hint: "200ms")
        expectDiagnostic("{check: default route uses ISP1}", "wait-until:", "needs `within:`")
        expectDiagnostic("sleep: 1s", "sleep", "unknown key \"sleep\" in a step")
        #expect(d.contains { $0.message.contains("experiment name \"broken\" is already used") })
        #expect(d.contains { $0.message.contains("has no steps") })
    }

    func diagnostics(_ text: String) throws -> [Diagnostic] {
        do { _ = try Topology.parse(text, file: "t.topo") } catch let e as TopologyError { return e.diagnostics }
        Issue.record("expected the file to be rejected")
        return []
    }

    /// A step's change is checked against the state the steps before it leave, not only the file's.
    @Test func changesFollowTheStepsBefore() throws {
        let ok = try with("""
          - name: listen again
            steps:
              - set: server unlisten 80
              - set: server listen 80
        """)
        let t = try Topology.parse(ok, file: "t.topo")
        guard case .set(let c) = t.experiments[0].steps[0].kind, case .listen(80, false) = c.action else { Issue.record("not unlisten 80"); return }
        let bad = try with("""
          - name: listen twice
            steps:
              - set: server listen 80
        """)
        let d = try diagnostics(bad)
        #expect(d.count == 1 && d[0].message == "node server already listens on port 80" && d[0].hint == "it listens on 80")
    }

    /// A sweep expands into cells in row-major order; expect-table rows give per-cell expectations over `expect:`.
    @Test func sweepCellsAndTheirExpectations() throws {
        let t = try Topology.parse(try lab().replacingOccurrences(of: "checks:\n", with: """
        checks:
          - name: matrix
            from: client
            sweep: {connect: [192.0.2.80:80, 192.0.2.80:81], mark: [0, 0x1], bind: [0.0.0.0, 203.0.113.10:40000]}
            expect: {result: established}
            expect-table:
              - {connect: 192.0.2.80:81, expect: {result: refused}}
              - {connect: 192.0.2.80:81, mark: 0x1, expect: {dev: eth1}}

        """), file: "t.topo")
        let c = try #require(t.checks.first { $0.name == "matrix" })
        let cells = c.cells
        #expect(cells.count == 8 && c.sweep?.dimensions.map(\.dimension) == [.connect, .mark, .bind])
        #expect(cells.map { $0.values.joined(separator: " ") }.prefix(3) == ["192.0.2.80:80 0 0.0.0.0", "192.0.2.80:80 0 203.0.113.10:40000", "192.0.2.80:80 0x1 0.0.0.0"])
        let last = cells[7].check
        #expect(last.port == 81 && last.mark == 1 && last.bindAddress == IPv4Address("203.0.113.10") && last.bindPort == 40000)
        #expect(last.expect.result == .refused && last.expect.dev == "eth1" && last.sweep == nil)
        #expect(cells[0].check.expect.result == .established && cells[0].check.expect.dev == nil && cells[0].check.bindAddress == nil)
        #expect(cells[5].check.name == "matrix [connect=192.0.2.80:81 mark=0 bind=203.0.113.10:40000]" && cells[5].check.expect.dev == nil)
        // Mistakes: a node that is not one, a device a swept source lacks, a table row naming an unswept value.
        let d = try diagnostics(try lab().replacingOccurrences(of: "checks:\n", with: """
        checks:
          - name: bad
            sweep: {from: [client, clint], dev: [eth0, eth5], connect: [192.0.2.80:80]}
            expect-table:
              - {dev: eth9, expect: {dev: eth0}}
              - {dev: eth0}

        """))
        #expect(d.contains { $0.message == "sweep source \"clint\" is not a node of this lab" && $0.hint == "did you mean \"client\"?" })
        #expect(d.contains { $0.message == "node client has no interface \"eth5\"" })
        #expect(d.contains { $0.message == "dev \"eth9\" is not one of the swept values" })
        #expect(d.contains { $0.message == "a row of expect-table needs `expect:`" })
        #expect(!d.contains { $0.message.contains("needs `from:`") || $0.message.contains("needs `connect:") })
    }

    @Test func durations() {
        #expect(parseDuration("200ms") == 200 && parseDuration("5s") == 5000 && parseDuration("1.5s") == 1500 && parseDuration("0s") == 0)
        #expect(parseDuration("5") == nil && parseDuration("-1s") == nil && parseDuration("11m") == nil && parseDuration("601s") == nil)
    }

    /// `netlab set`'s words: a quoted route is one word; a wrong word is named at its column of the command line.
    @Test func commandLineWords() throws {
        let t = try topology()
        let c = try LiveChange.parse(words: ["client", "rule", "del", "from 203.0.113.10 lookup isp2 pref 110"], topology: t)
        guard case .rule(false, let r) = c.action else { Issue.record("not a rule del"); return }
        #expect(r.from == IPv4Prefix("203.0.113.10/32") && r.pref == 110 && r.action == .lookup(102))
        #expect(c.text == "client rule del \"from 203.0.113.10 lookup isp2 pref 110\"")
        let cases: [([String], Int, String)] = [
            (["client", "link", "eth0", "sideways"], 18, "\"sideways\" is not `down` or `up`"),
            (["client", "carrier", "lo", "off"], 16, "is on no link"),
            (["client", "address", "add", "eth0", "10.0.0.1/8"], 25, "outside the lab's address ranges"),
            (["client", "address", "add", "eth1", "192.0.2.80/25"], 25, "already node server's"),
            (["client", "route", "add", "default via 203.0.113.1 metrc 5"], 43, "unknown word \"metrc\""),
            (["client", "sysctl", "kernel.panic=1"], 15, "is not a net.* key"),
            (["client", "sysctl", "net.ipv4.ip_forward"], 15, "needs `=VALUE`"),
            (["nobody", "link", "eth0", "down"], 1, "not a node of lab ispfo"),
            (["client"], 7, "what should change on client?"),
            (["client", "link", "eth0", "down", "--all"], 23, "unexpected \"--all\""),
        ]
        for (words, column, message) in cases {
            do {
                _ = try LiveChange.parse(words: words, topology: t)
                Issue.record("\(words) was accepted")
            } catch {
                #expect(!error.diagnostics.isEmpty && error.diagnostics[0].location.column == column && error.diagnostics[0].message.contains(message),
                        "\(words): \(error.diagnostics.map { "\($0.location) \($0.message)" })")
            }
        }
    }

    /// What a change leaves, in the model: the kernel's consequences included.
    @Test func changesLeaveTheKernelsState() throws {
        var t = try topology()
        func apply(_ words: String...) throws { t.apply(try LiveChange.parse(words: words, topology: t)) }
        let client = { t.node("client")! }
        try apply("client", "link", "eth0", "down", "--both")
        #expect(client().interface("eth0")?.up == false && t.node("isp1")?.interface("eth0")?.up == false)
        try apply("client", "carrier", "eth1", "off")
        #expect(client().interface("eth1")?.up == true && t.node("isp2")?.interface("eth0")?.up == false)
        // replace: same table, destination, TOS and metric → replaced; otherwise added.
        try apply("client", "route", "replace", "default via 203.0.113.1 dev eth1 metric 200 mtu 1300")
        #expect(client().routes.filter { $0.destination.length == 0 && $0.table == 254 }.count == 2)
        #expect(client().routes.first { $0.metric == 200 }?.mtu == 1300)
        try apply("client", "route", "replace", "default via 203.0.113.1 metric 300")
        #expect(client().routes.filter { $0.destination.length == 0 && $0.table == 254 }.count == 3)
        // del without a metric removes the lowest-metric match (the kernel's first).
        try apply("client", "route", "del", "default")
        #expect(client().routes.filter { $0.table == 254 }.compactMap(\.metric).sorted() == [200, 300])
        // Deleting a primary deletes the secondaries of its subnet (no promote_secondaries), and routes using it as src.
        try apply("client", "address", "add", "eth0", "198.51.100.11/25")
        try apply("client", "route", "add", "192.0.2.0/25 via 198.51.100.1 src 198.51.100.10 metric 7")
        try apply("client", "address", "del", "eth0", "198.51.100.10/25")
        #expect(client().interface("eth0")?.addresses.isEmpty == true)
        #expect(!client().routes.contains { $0.metric == 7 })
        try apply("client", "rule", "del", "pref 110")
        #expect(client().rules.map(\.pref) == [100])
        try apply("client", "sysctl", "net.ipv4.conf.all.rp_filter=2")
        #expect(client().sysctls.filter { $0.key == "net.ipv4.conf.all.rp_filter" }.map(\.value) == ["2"])
    }
}
