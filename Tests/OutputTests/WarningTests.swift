import Testing
import Topology
@testable import Checks

/// `validate`'s warnings, each at its place in the file; a fixed file has none.
struct WarningTests {
    static let lab = """
        lab: pw-lint
        nodes:
          a:
            interfaces: {eth0: [192.0.2.1/30], eth1: [192.0.2.9/30]}
            routes: [default via 192.0.2.2, 198.51.100.0/24 via 192.0.2.10]
          b:
            forwarding: true
            interfaces: {eth0: [192.0.2.5/30], eth1: [198.51.100.1/24]}
          c:
            interfaces: {eth0: [192.0.2.10/30], eth1: [198.51.100.2/24]}
            listen: [80, 8080]
        links:
          - [a:eth0, b:eth0]
          - [a:eth1, c:eth0]
          - [b:eth1, c:eth1]
        checks:
          - name: no expectation
            from: a
            connect: 198.51.100.2:80
          - name: source routed
            from: a
            connect: 198.51.100.2:80
            source-route: {loose: [192.0.2.10]}
            expect: {result: established}
        """

    @Test func eachWarningAtItsPlace() throws {
        let w = TopologyWarnings.of(try Topology.parse(Self.lab, file: "w.topo"))
        let found = w.map { "\($0.location) \($0.message.prefix(40))" }
        #expect(w.allSatisfy { $0.severity == .warning && $0.hint != nil }, "\(found)")
        #expect(w.map(\.location.description) == ["5:26", "11:18", "13:14", "17:5", "20:5"], "\(found)")
        #expect(w[0].message.contains("gateway 192.0.2.2") && w[0].message.contains("no") == true)
        #expect(w[1].message.contains("port 8080"))
        #expect(w[2].message.contains("b:eth0") && w[2].message.contains("shares no subnet"))
        #expect(w[3].message.contains("has no `expect`"))
        #expect(w[4].message.contains("a (the sender") && w[4].message.contains(", c do not accept"))
    }

    @Test func theFixedLabHasNone() throws {
        let fixed = Self.lab
            .replacingOccurrences(of: "192.0.2.5/30", with: "192.0.2.2/30")
            .replacingOccurrences(of: "listen: [80, 8080]", with: "listen: [80]\n    source-route: true")
            .replacingOccurrences(of: "    interfaces: {eth0: [192.0.2.1/30]", with: "    source-route: true\n    interfaces: {eth0: [192.0.2.1/30]")
            .replacingOccurrences(of: "    connect: 198.51.100.2:80\n  - name: source", with: "    connect: 198.51.100.2:80\n    expect: {result: established}\n  - name: source")
        let w = TopologyWarnings.of(try Topology.parse(fixed, file: "w.topo"))
        #expect(w.isEmpty, "\(w.map(\.description))")
    }

    /// A source route that is expected to time out is meant; a listener on the node's own ephemeral range holds it.
    @Test func meantOnesAreNotWarned() throws {
        let t = try Topology.parse(Self.lab.replacingOccurrences(of: "source-route: {loose: [192.0.2.10]}\n    expect: {result: established}",
                                                                  with: "source-route: {loose: [192.0.2.10]}\n    expect: {result: timeout}")
            .replacingOccurrences(of: "    listen: [80, 8080]", with: "    listen: [80, 8080]\n    sysctl: {net.ipv4.ip_local_port_range: \"8080 8081\"}"), file: "w.topo")
        let w = TopologyWarnings.of(t)
        #expect(!w.contains { $0.message.contains("source route") || $0.message.contains("8080") }, "\(w.map(\.description))")
    }

    /// Every bundled lab but policy (whose server listens on 443 for no check) is warning-free.
    @Test func bundledLabs() throws {
        for path in GraphTests.labs {
            let w = TopologyWarnings.of(try Topology.load(path: path))
            #expect(path.hasSuffix("policy.topo") ? w.count == 1 : w.isEmpty, "\(path): \(w.map(\.description))")
        }
    }

    @Test func renderedLikeErrors() throws {
        let t = try Topology.parse(Self.lab, file: "w.topo")
        let text = TopologyError(file: "w.topo", source: t.source, diagnostics: TopologyWarnings.of(t)).rendered()
        #expect(text.contains("w.topo:13:14: warning: b:eth0 (192.0.2.5/30) shares no subnet"))
        #expect(text.contains(" 13 |   - [a:eth0, b:eth0]\n    |              ^~~~~~\n   hint: "))
        #expect(text.hasSuffix("5 warnings in w.topo"))
    }
}
