import Foundation
import Testing
@testable import Topology

/// The repository root, for the bundled labs.
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

func labFiles() throws -> [String] {
    let dir = repoRoot.appendingPathComponent("Labs")
    return try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".topo") }.sorted()
        .map { dir.appendingPathComponent($0).path }
}

/// Parse `text` expecting failure; return the diagnostics.
func diagnostics(_ text: String) -> [Diagnostic] {
    do {
        _ = try Topology.parse(text, file: "t.topo")
        Issue.record("expected the topology to be rejected")
        return []
    } catch let e as TopologyError {
        return e.diagnostics
    } catch {
        Issue.record("unexpected error \(error)")
        return []
    }
}

/// A valid two-node base to which tests add one mistake.
func base(client extra: String = "", links: String = "  - [client:eth0, isp1:eth0]\n", header: String = "") -> String {
    """
    lab: t
    \(header)nodes:
      client:
        interfaces:
          eth0: [198.51.100.10/25, 198.51.100.11/25]
    \(extra)  isp1:
        forwarding: true
        interfaces:
          eth0: [198.51.100.1/25]
    links:
    \(links)
    """
}

@Suite struct ValidFiles {
    @Test func everyBundledLabParses() throws {
        let files = try labFiles()
        #expect(files.count >= 3)
        for f in files {
            let t = try Topology.load(path: f)
            #expect(!t.nodes.isEmpty, "\(f)")
        }
    }

    @Test func dualhomeModelHoldsWhatTheFileSays() throws {
        let t = try Topology.load(path: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        #expect(t.lab == "dualhome")
        #expect(t.tables.map(\.name) == ["isp1", "isp2"] && t.tables.map(\.id) == [101, 102])
        let client = try #require(t.node("client"))
        #expect(client.interface("eth0")?.addresses.map(\.prefix.description) == ["198.51.100.10/25", "198.51.100.11/25"])
        #expect(client.interface("lo")?.kind == .loopback)
        let r = client.routes[0]
        #expect(r.destination.length == 0 && r.metric == 100 && r.table == RoutingTable.main)
        #expect(r.nexthops.first?.gateway == IPv4Address(198, 51, 100, 1) && r.nexthops.first?.dev == "eth0")
        #expect(client.routes[1].src == IPv4Address(203, 0, 113, 10) && client.routes[4].table == 102)
        #expect(client.rules[1].from == IPv4Prefix("203.0.113.10") && client.rules[1].action == .lookup(102) && client.rules[1].pref == 110)
        #expect(t.links[1].mtu == 1400)
        #expect(t.node("isp1")?.forwarding == true && client.forwarding == false)
        #expect(t.node("server")?.listen == [80])
        // An interface named only in links exists without addresses.
        #expect(t.node("isp1")?.interface("eth1")?.addresses.count == 1)
    }

    @Test func stringAndMapFormsOfARouteAgree() throws {
        let extra = """
            routes:
              - 192.0.2.0/26 nexthop via 198.51.100.1 dev eth0 weight 1 nexthop via 198.51.100.1 dev eth0 weight 2
              - {to: 192.0.2.64/26, nexthops: [{via: 198.51.100.1, dev: eth0, weight: 1}, {via: 198.51.100.1, dev: eth0, weight: 2}]}
              - unreachable 192.0.2.128/27
              - {to: 192.0.2.160/27, type: unreachable}
              - local 192.0.2.200

        """
        let t = try Topology.parse(base(client: extra))
        let rs = try #require(t.node("client")).routes
        #expect(rs[0].nexthops == rs[1].nexthops.map { var n = $0; n.location = rs[0].nexthops[rs[1].nexthops.firstIndex(of: $0)!].location; n.devLocation = rs[0].nexthops[rs[1].nexthops.firstIndex(of: $0)!].devLocation; return n })
        #expect(rs[0].isMultipath && rs[1].isMultipath && rs[1].nexthops.map(\.weight) == [1, 2])
        #expect(rs[2].type == .unreachable && rs[3].type == .unreachable && rs[2].nexthops.isEmpty)
        #expect(rs[4].type == .local && rs[4].table == RoutingTable.local)
        #expect(rs[1].text == "192.0.2.64/26 nexthop via 198.51.100.1 dev eth0 weight 1 nexthop via 198.51.100.1 dev eth0 weight 2")
    }

    @Test func everyRuleSelectorAndAction() throws {
        let extra = """
            rules:
              - not from 198.51.100.0/25 to 192.0.2.0/24 iif lo oif eth0 fwmark 0x10/0xff tos 0x10 ipproto tcp sport 1000-2000 dport 443 uidrange 100-200 lookup 100 pref 10
              - dscp 46 goto 30 pref 20
              - {pref: 30, action: nop}
              - {to: 192.0.2.224/27, action: blackhole, pref: 300}
              - lookup main suppress_prefixlength 0 pref 40
              - prohibit pref 50
              - unreachable pref 60

        """
        let t = try Topology.parse(base(client: extra))
        let r = try #require(t.node("client")).rules
        #expect(r[0].invert && r[0].from == IPv4Prefix("198.51.100.0/25") && r[0].to == IPv4Prefix("192.0.2.0/24"))
        #expect(r[0].iif == "lo" && r[0].oif == "eth0" && r[0].fwmark == 0x10 && r[0].fwmask == 0xff && r[0].tos == 0x10)
        #expect(r[0].ipproto == 6 && r[0].sport == PortRange(start: 1000, end: 2000) && r[0].dport == PortRange(start: 443, end: 443))
        #expect(r[0].uidrange == 100...200 && r[0].action == .lookup(100) && r[0].pref == 10)
        #expect(r[1].dscp == 46 && r[1].action == .goto(30))
        #expect(r[2].action == .nop && r[3].action == .blackhole && r[3].to == IPv4Prefix("192.0.2.224/27"))
        #expect(r[4].suppressPrefixLength == 0 && r[4].action == .lookup(RoutingTable.main))
        #expect(r[5].action == .prohibit && r[6].action == .unreachable)
    }

    @Test func addressFlagsAndInterfaceMapForm() throws {
        let extra = """
            interfaces:
              eth0: [198.51.100.10/25]
              eth2: {addresses: ["192.0.2.129/28 scope link", "192.0.2.130/28 noprefixroute metric 7"], mtu: 9000}

        """
        let text = base(client: extra, links: "  - [client:eth0, isp1:eth0]\n  - [client:eth2, isp1:eth2]\n").replacingOccurrences(of: "    interfaces:\n      eth0: [198.51.100.10/25, 198.51.100.11/25]\n", with: "")
        let t = try Topology.parse(text, file: "t.topo")
        let e2 = try #require(t.node("client")?.interface("eth2"))
        #expect(e2.mtu == 9000 && e2.addresses[0].scope == .link && e2.addresses[1].noprefixroute && e2.addresses[1].metric == 7)
        #expect(e2.up && t.node("client")?.interface("eth0")?.up == true)
        let down = try Topology.parse(text.replacingOccurrences(of: "mtu: 9000}", with: "mtu: 9000, up: false}"), file: "t.topo")
        #expect(down.node("client")?.interface("eth2")?.up == false)
    }
}

@Suite struct BadFiles {
    /// One expected diagnostic: line, column and words in the message.
    func expectOne(_ text: String, line: Int, column: Int, _ words: String, hint: String? = nil,
                   sourceLocation: SourceLocation_ = #_sourceLocation) {
        let d = diagnostics(text)
        let hit = d.first { $0.location.line == line && $0.location.column == column && $0.message.contains(words) }
        #expect(hit != nil, "wanted \(line):\(column) \(words); got \(d.map(\.description))", sourceLocation: sourceLocation)
        if let hint, let hit { #expect(hit.hint?.contains(hint) == true, "hint: \(hit.hint ?? "none")", sourceLocation: sourceLocation) }
    }

    @Test func unknownKeySuggestsTheNearest() {
        expectOne(base(client: "    fowarding: true\n"), line: 6, column: 5, "unknown key \"fowarding\"", hint: "did you mean \"forwarding\"?")
    }
    @Test func interfaceUpMustBeABoolean() {
        let t = base().replacingOccurrences(of: "      eth0: [198.51.100.10/25, 198.51.100.11/25]",
                                            with: "      eth0: {addresses: [198.51.100.10/25], up: sometimes}")
        expectOne(t, line: 5, column: 49, "up must be true or false, not \"sometimes\"")
    }
    @Test func badPrefix() {
        expectOne(base().replacingOccurrences(of: "198.51.100.11/25", with: "198.51.100.11/33"), line: 5, column: 32, "is not an IPv4 address with a prefix length")
    }
    @Test func interfaceNameOver15Bytes() {
        let t = base(links: "  - [client:eth0, isp1:eth0]\n  - [client:averyveryverylong0, isp1:eth1]\n")
        expectOne(t, line: 12, column: 13, "18 bytes; Linux allows at most 15")
    }
    @Test func unsafeNodeName() {
        expectOne(base().replacingOccurrences(of: "  isp1:\n", with: "  ../isp1:\n").replacingOccurrences(of: "isp1:eth0]", with: "x:eth0]"),
                  line: 6, column: 3, "unsafe as a file name under /run/netns")
    }
    @Test func duplicateNode() {
        let t = base() + "\n" // the second `isp1:` under nodes
        let dup = t.replacingOccurrences(of: "links:", with: "  isp1:\n    forwarding: true\nlinks:")
        expectOne(dup, line: 10, column: 3, "duplicate key \"isp1\"")
    }
    @Test func duplicateAddressInOneNodeAndAcrossNodes() {
        let same = base().replacingOccurrences(of: "198.51.100.11/25", with: "198.51.100.10/25")
        expectOne(same, line: 5, column: 32, "declared twice in node client")
        let across = base().replacingOccurrences(of: "198.51.100.1/25", with: "198.51.100.11/25")
        expectOne(across, line: 9, column: 14, "already used by node client")
    }
    @Test func linkEndOnUnknownNode() {
        expectOne(base(links: "  - [client:eth0, isp2:eth0]\n"), line: 11, column: 19, "names node \"isp2\", which is not declared",
                  hint: "did you mean \"isp1:eth0\"?")
    }
    @Test func routeWithUnknownDevAndTable() {
        expectOne(base(client: "    routes: [default via 198.51.100.1 dev eth1]\n"), line: 6, column: 43, "uses dev eth1", hint: "did you mean \"eth0\"?")
        expectOne(base(client: "    routes: [default via 198.51.100.1 table isp9]\n"), line: 6, column: 45, "unknown routing table \"isp9\"")
    }
    @Test func gatewayOnNoConnectedSubnetUnlessOnlink() {
        expectOne(base(client: "    routes: [default via 203.0.113.1]\n"), line: 6, column: 26, "is on no connected subnet", hint: "onlink")
        #expect(throws: Never.self) { try Topology.parse(base(client: "    routes: [default via 203.0.113.1 dev eth0 onlink]\n")) }
    }
    @Test func ruleNamingUnknownTable() {
        expectOne(base(client: "    rules: [from 198.51.100.10 lookup isp3 pref 5]\n", header: "tables: {isp1: 101}\n"),
                  line: 7, column: 39, "unknown routing table \"isp3\"", hint: "did you mean \"isp1\"?")
    }
    @Test func addressOutsideTheLabRanges() {
        expectOne(base().replacingOccurrences(of: "198.51.100.11/25", with: "10.0.0.1/8"), line: 5, column: 32, "outside the lab's address ranges")
    }
    @Test func yamlSyntaxError() {
        expectOne("lab: t\nnodes:\n  a: [\n", line: 4, column: 1, "not valid YAML")
    }
    @Test func everyErrorIsReportedAtOnce() {
        let text = base(client: "    fowarding: true\n    routes: [default via 203.0.113.1, unreachable 192.0.2.1/24]\n")
        let d = diagnostics(text)
        #expect(d.count >= 3, "\(d)")
    }
    @Test func renderedMessageNamesFileLineColumnAndShowsTheLine() throws {
        do {
            _ = try Topology.parse(base(client: "    fowarding: true\n"), file: "lab.topo")
            Issue.record("expected failure")
        } catch let e as TopologyError {
            let lines = e.rendered().split(separator: "\n").map(String.init)
            #expect(lines[0] == "lab.topo:6:5: error: unknown key \"fowarding\" in node client")
            #expect(lines[1] == " 6 |     fowarding: true")
            #expect(lines[2] == "   |     ^~~~~~~~~")
            #expect(lines[3] == "   hint: did you mean \"forwarding\"?")
        }
    }
    @Test func routeWithHostBitsAndErrorTypeWithGateway() {
        expectOne(base(client: "    routes: [192.0.2.1/24 via 198.51.100.1]\n"), line: 6, column: 14, "has host bits set", hint: "192.0.2.0/24")
        expectOne(base(client: "    routes: [blackhole 192.0.2.0/24 via 198.51.100.1]\n"), line: 6, column: 41, "has no gateway or device")
    }
    @Test func routeMetricsOutOfRange() {
        expectOne(base(client: "    routes: [192.0.2.0/24 via 198.51.100.1 mtu 50]\n"), line: 6, column: 48, "below IPv4's minimum of 68", hint: "68-65535")
        expectOne(base(client: "    routes: [192.0.2.0/24 via 198.51.100.1 hoplimit 0]\n"), line: 6, column: 53, "not a TTL", hint: "1-255")
        expectOne(base(client: "    routes: [192.0.2.0/24 via 198.51.100.1 hoplimit 256]\n"), line: 6, column: 53, "from 0 to 255")
    }
    @Test func routeHoplimitIsKept() throws {
        let t = try Topology.parse(base(client: "    routes: [192.0.2.0/24 via 198.51.100.1 mtu 1300 hoplimit 9]\n"))
        let r = try #require(t.nodes.first { $0.name == "client" }?.routes.first)
        #expect(r.hoplimit == 9 && r.mtu == 1300)
        let text = r.iprouteText { String($0) }
        #expect(text.contains("hoplimit 9"), "\(text)")
    }
    @Test func backwardGotoAndEcnTos() {
        expectOne(base(client: "    rules: [goto 10 pref 20]\n"), line: 6, column: 18, "jumps backwards")
        expectOne(base(client: "    rules: [tos 0x11 lookup main pref 5]\n"), line: 6, column: 17, "ECN bits")
    }
    @Test func routeRepeatingAConnectedRoute() {
        expectOne(base(client: "    routes: [198.51.100.0/25 dev eth0]\n"), line: 6, column: 14, "connected route the kernel already adds")
    }
    @Test func interfaceInNoLink() {
        expectOne(base().replacingOccurrences(of: "198.51.100.11/25]\n", with: "198.51.100.11/25]\n      eth5: [192.0.2.1/24]\n"),
                  line: 6, column: 7, "is in no link")
    }
}

typealias SourceLocation_ = Testing.SourceLocation

@Suite struct Documentation {
    /// Every ```yaml block in docs/topology.md that starts with `lab:` is a valid topology.
    @Test func topologyDocExamplesParse() throws {
        let doc = try String(contentsOf: repoRoot.appendingPathComponent("docs/topology.md"), encoding: .utf8)
        let blocks = doc.components(separatedBy: "```yaml\n").dropFirst().map { $0.components(separatedBy: "```")[0] }
            .filter { $0.hasPrefix("lab:") }
        #expect(blocks.count >= 3)
        for b in blocks {
            #expect(throws: Never.self) { try Topology.parse(b, file: "docs/topology.md") }
        }
    }
}
