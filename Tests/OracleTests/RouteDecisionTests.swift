@testable import Oracle
import Testing

// Whether the resolver's answers allow the kernel's (RTM_GETROUTE, or the route of a kernel connect's 4-tuple), on
// answer fixtures: multipath legs the kernel picks by an unseen hash, errors one leg gives, tables RTM_GETROUTE may
// not name.

func answer(_ src: String, _ dev: String, via: String? = nil, table: UInt32? = nil) -> RouteAnswer {
    RouteAnswer(source: src, dev: dev, gateway: via, table: table, error: nil)
}

@Suite struct RouteDecisionTests {
    let eth0 = answer("198.51.100.1", "eth0", via: "198.51.100.2", table: 254)
    let eth1 = answer("198.51.100.129", "eth1", via: "198.51.100.130", table: 254)

    @Test func theKernelsLegMustBeOneTheResolverAllows() {
        #expect(RouteComparison.decide(eth0, [eth0, eth1], eth1))
        #expect(!RouteComparison.decide(eth0, [eth0], eth1))
        var otherSource = eth1
        otherSource.source = "203.0.113.1"
        #expect(!RouteComparison.decide(eth0, [eth0, eth1], otherSource))
    }

    @Test func aTableIsComparedOnlyWhenBothNameOne() {
        var unnamed = eth0
        unnamed.table = nil
        #expect(RouteComparison.decide(eth0, [eth0], unnamed))
        var other = eth0
        other.table = 100
        #expect(!RouteComparison.decide(eth0, [eth0], other))
    }

    @Test func errorsMustBeTheSameOrOneALegGives() {
        let unreachable = RouteAnswer(error: "ENETUNREACH")
        #expect(RouteComparison.decide(unreachable, [], unreachable))
        #expect(!RouteComparison.decide(unreachable, [], RouteAnswer(error: "EHOSTUNREACH")))
        #expect(!RouteComparison.decide(eth0, [eth0], unreachable))
        // A leg of the engine's candidates gives the kernel's error (a dead nexthop the hash chose).
        #expect(RouteComparison.decide(eth0, [eth0, RouteAnswer(error: "EHOSTUNREACH")], RouteAnswer(error: "EHOSTUNREACH")))
        #expect(!unreachable.allows(eth0) && unreachable.allows(RouteAnswer(error: "ENETUNREACH")))
    }
}
