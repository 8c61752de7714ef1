import Testing
@testable import Topology

/// `nexthops:` (ip nexthop add words), `nhid` on routes, `peer` and `broadcast` on addresses.
@Suite struct NexthopSyntax {
    let lab = """
        lab: t
        nodes:
          h:
            interfaces:
              eth0: ["198.51.100.1/24 broadcast 198.51.100.77", "203.0.113.1/24"]
              eth1: ["192.0.2.1/32 peer 192.0.2.2"]
            nexthops:
              - id 1 via 198.51.100.2 dev eth0
              - id 2 via 192.0.2.2 dev eth1
              - id 3 via 198.51.100.1 dev eth0
              - id 10 group 1,3/2/3
              - id 11 blackhole
            routes:
              - 192.0.2.128/27 nhid 10
              - 192.0.2.160/28 nhid 11 table 100
              - 192.0.2.176/28 via 198.51.100.1 dev eth0
              - 192.0.2.192/28 via 192.0.2.2
          r:
            interfaces:
              eth0: [198.51.100.2/24]
              eth1: ["192.0.2.2/32 peer 192.0.2.1"]
        links:
          - [h:eth0, r:eth0]
          - [h:eth1, r:eth1]

        """

    @Test func nexthopObjectsRoutesAndAddressAttributesParse() throws {
        let t = try Topology.parse(lab, file: "t.topo")
        let h = try #require(t.node("h"))
        #expect(h.nexthopObjects.map(\.id) == [1, 2, 3, 10, 11])
        #expect(h.nexthopObjects[3].group.map(\.id) == [1, 2, 3] && h.nexthopObjects[3].group.map(\.weight) == [3, 1, 1])
        #expect(h.nexthopObjects[4].blackhole && h.nexthopObjects[0].dev == "eth0")
        #expect(h.routes[0].nexthopID == 10 && h.routes[1].nexthopID == 11 && h.routes[1].table == 100)
        #expect(h.routes[0].iprouteText(tableName: { String($0) }) == "192.0.2.128/27 nhid 10")
        let e0 = try #require(h.interface("eth0")), e1 = try #require(h.interface("eth1"))
        #expect(e0.addresses[0].broadcast == IPv4Address(198, 51, 100, 77))
        #expect(e1.addresses[0].peer == IPv4Address(192, 0, 2, 2) && e1.addresses[0].subnet == IPv4Prefix(IPv4Address(192, 0, 2, 2), 32))
    }

    func problems(_ text: String) -> [Diagnostic] {
        do { _ = try Topology.parse(text, file: "t.topo"); return [] } catch let e as TopologyError { return e.diagnostics } catch { return [] }
    }

    @Test func nhidMustNameADeclaredObject() {
        let d = problems(lab.replacingOccurrences(of: "nhid 11 table", with: "nhid 12 table"))
        #expect(d.contains { $0.message.contains("uses nhid 12, which node h does not declare") && $0.location.line == 15 && $0.location.column == 9 }, "\(d)")
    }

    @Test func groupMembersAreDeclaredFirstAndSingle() {
        let d = problems(lab.replacingOccurrences(of: "id 10 group 1,3/2/3", with: "id 10 group 1/11"))
        #expect(d.contains { $0.message.contains("names nexthop 11, which is not declared before it") }, "\(d)")
    }

    @Test func badGroupAndMissingDevAreReported() {
        #expect(problems(lab.replacingOccurrences(of: "group 1,3/2/3", with: "group 1,0/2")).contains { $0.message.contains("is not ID[,WEIGHT]") })
        #expect(problems(lab.replacingOccurrences(of: "id 2 via 192.0.2.2 dev eth1", with: "id 2 via 192.0.2.2")).contains { $0.message.contains("needs `dev`") })
        #expect(problems(lab.replacingOccurrences(of: "- id 11 blackhole", with: "- blackhole")).contains { $0.message.contains("has no id") })
        #expect(problems(lab.replacingOccurrences(of: "group 1,3/2/3", with: "group 1/2 type resilient")).contains { $0.message.contains("needs `buckets N`") })
    }

    /// The kernel takes an own-address gateway without onlink and refuses it with onlink ("Nexthop has invalid gateway").
    @Test func ownAddressGatewayWithOnlinkIsRefused() {
        let d = problems(lab.replacingOccurrences(of: "192.0.2.176/28 via 198.51.100.1 dev eth0", with: "192.0.2.176/28 via 198.51.100.1 dev eth0 onlink"))
        #expect(d.contains { $0.message.contains("with `onlink` the kernel rejects it") }, "\(d)")
    }

    @Test func routeWithNhidTakesNoGateway() {
        let d = problems(lab.replacingOccurrences(of: "192.0.2.128/27 nhid 10", with: "192.0.2.128/27 nhid 10 via 198.51.100.2"))
        #expect(d.contains { $0.message.contains("takes its gateway and device from the nexthop object") }, "\(d)")
    }
}
