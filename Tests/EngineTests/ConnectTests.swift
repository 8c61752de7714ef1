import Foundation
import NetCore
import NetlabTestSupport
import SystemPackage
import Testing
import Wire
@testable import Engine

@Suite struct InetStreamConnect {
    @Test func errnoOfEachSocketState() throws {
        var e = engine()
        #expect(e.connect(.inet(server, 80), addressLength: 1, now: .zero).0 == .invalidArgument)
        #expect(e.connect(.family(10), now: .zero).0 == .addressFamilyNotSupported)
        #expect(e.connect(.inet(server, 80), addressLength: 8, now: .zero).0 == .invalidArgument)
        let (first, a) = e.connect(.inet(server, 80), now: .zero)
        #expect(first == .nowInProgress && a.packets.count == 1)
        #expect(e.connect(.inet(server, 80), now: .seconds(0.1)).0 == .alreadyInProcess)
        let syn = try Parsed(a.packets[0].bytes)
        let est = e.receive(synAck(for: syn), now: .seconds(0.2))
        #expect(est.isEstablished)
        #expect(e.connect(.inet(server, 80), now: .seconds(0.3)).0 == nil, "second connect after success returns 0")
        #expect(e.connect(.inet(server, 80), now: .seconds(0.4)).0 == .socketIsConnected, "third: EISCONN")
    }

    @Test func failureIsReportedOnceThenANewAttemptStarts() throws {
        var e = engine()
        let (_, a) = e.connect(.inet(server, 81), now: .zero)
        let syn = try Parsed(a.packets[0].bytes)
        let rst = e.receive(synAck(for: syn, seq: 0, flags: [.rst, .ack]), now: .seconds(0.01))
        #expect(rst.failure == .connectionRefused)
        #expect(e.connect(.inet(server, 81), now: .seconds(0.02)).0 == .connectionRefused, "second connect: the error")
        #expect(e.connect(.inet(server, 81), now: .seconds(0.03)).0 == .nowInProgress, "third connect: a new attempt")
    }

    @Test func soErrorConsumedGivesEconnaborted() throws {
        var e = engine()
        let (_, a) = e.connect(.inet(server, 81), now: .zero)
        _ = e.receive(synAck(for: try Parsed(a.packets[0].bytes), seq: 0, flags: [.rst, .ack]), now: .seconds(0.01))
        #expect(e.socketError() == .connectionRefused)
        #expect(e.socketError() == nil)
        #expect(e.connect(.inet(server, 81), now: .seconds(0.02)).0 == .connectionAbort)
    }

    @Test func afUnspecDisconnects() throws {
        var e = engine()
        _ = e.connect(.inet(server, 80), now: .zero)
        #expect(e.state == .synSent)
        #expect(e.connect(.unspec, now: .seconds(0.1)).0 == nil)
        #expect(e.state == .close && e.socketState == .unconnected)
        #expect(e.connect(.inet(server, 80), now: .seconds(0.2)).0 == .nowInProgress)
    }
}

@Suite struct TcpV4Connect {
    @Test func routeErrorsAreReturnedUnchangedAndStateStaysUnconnected() {
        for err in [Errno.networkUnreachable, .noRouteToHost, .permissionDenied, .invalidArgument, Errno(rawValue: 19)] {
            var e = engine(FakeResolver { _ in .failure(err) })
            #expect(e.connect(.inet(server, 80), now: .zero).0 == err)
            #expect(e.socketState == .unconnected && e.state == .close)
        }
    }

    @Test func broadcastAndMulticastRoutesGiveEnetunreach() {
        for kind in [ResolvedRoute.Kind.broadcast, .multicast] {
            var e = engine(FakeResolver { f in .success(ResolvedRoute(destination: f.destination, source: client, device: "eth0", kind: kind)) })
            #expect(e.connect(.inet(IPv4Address(192, 0, 2, 15), 80), now: .zero).0 == .networkUnreachable)
        }
    }

    @Test func sourceRouteWithDaddrZeroIsEinval() {
        var e = engine()
        #expect(e.setOption(.ipOptions(sourceRouteOption(strict: false, hops: [r1]))) == nil)
        #expect(e.connect(.inet(.any, 80), now: .zero).0 == .invalidArgument)
    }

    /// Lookup #1 with saddr 0 chooses the source; #2 repeats with it; #3 (ip_route_newports) uses the real source
    /// port. A `from` rule (here: the fake routes 203.0.113.10 out of eth1) can change the egress but not the source.
    @Test func lookupSequenceFromRuleMovesEgressButNotSource() throws {
        let r = FakeResolver { f in
            if f.source == IPv4Address(198, 51, 100, 10) {
                return .success(ResolvedRoute(destination: f.destination, source: f.source, device: "eth1", gateway: IPv4Address(203, 0, 113, 1)))
            }
            return .success(ResolvedRoute(destination: f.destination, source: IPv4Address(198, 51, 100, 10), device: "eth0", gateway: IPv4Address(198, 51, 100, 1)))
        }
        var e = engine(r)
        let (_, a) = e.connect(.inet(server, 80), now: .zero)
        #expect(r.flows.count == 3)
        #expect(r.flows[0].source == .any && r.flows[0].sourcePort == 0 && r.flows[0].anySourcePort)
        #expect(r.flows[1].source == IPv4Address(198, 51, 100, 10) && r.flows[1].sourcePort == 0)
        #expect(r.flows[2].sourcePort == e.sourcePort && !r.flows[2].anySourcePort && r.flows[2].destinationPort == 80)
        let p = a.packets[0]
        #expect(p.device == "eth1" && p.nextHop == IPv4Address(203, 0, 113, 1))
        #expect(try Parsed(p.bytes).ip.source == IPv4Address(198, 51, 100, 10))
        #expect(a.traceFunctions.contains("ip_route_connect") && a.traceFunctions.contains("ip_route_newports"))
    }

    @Test func boundSourceAndPortSkipLookupOneAndPortSelection() throws {
        let r = FakeResolver.fixtureClient()
        var e = engine(r)
        #expect(e.bind(address: client, port: 40000).0 == nil)
        let (_, a) = e.connect(.inet(server, 80), now: .zero)
        #expect(r.flows.count == 1, "saddr and daddr set: only lookup #2; ports unchanged: no #3")
        let syn = try Parsed(a.packets[0].bytes)
        #expect(syn.tcp.sourcePort == 40000 && syn.ip.source == client)
    }

    /// `__inet_bind`: an address the node does not have is refused before anything else, unless ip_nonlocal_bind.
    @Test func bindingAnAddressOfAnotherNodeIsEADDRNOTAVAIL() {
        let elsewhere = IPv4Address(198, 51, 100, 99)
        var e = engine()
        let (err, a) = e.bind(address: elsewhere, port: 0)
        #expect(err == .addressNotAvailable && a.traceFunctions == ["__inet_bind"])
        #expect(e.bind(address: client, port: 0).0 == nil, "a refused bind leaves the socket unbound")
        var free = NodeSysctls()
        free.ipNonlocalBind = true
        var n = engine(sysctls: free)
        #expect(n.bind(address: elsewhere, port: 0).0 == nil)
        #expect(n.sourceAddress == elsewhere)
    }

    /// `inet_csk_bind_conflict`: an explicit port conflicts with any socket holding it (a TIME_WAIT one too) whose
    /// address overlaps (equal, or either 0.0.0.0); another address of the node may take the same port.
    @Test func bindingAPortHeldByAnotherSocketIsEADDRINUSE() {
        let other = IPv4Address(203, 0, 113, 10)
        let r = FakeResolver.fixtureClient()
        r.localAddresses = [client, other]
        // A TIME_WAIT connection left by client:40001, and a listener on 0.0.0.0:80.
        let ports = PortTable(boundPorts: [80], connections: [.init(source: client, sourcePort: 40001, destination: server, destinationPort: 81)],
                              endpoints: [.init(address: client, port: 40001), .init(address: .any, port: 80)])
        for (address, port, inUse) in [(client, UInt16(40001), true), (other, 40001, false), (IPv4Address.any, 40001, true),
                                       (other, 80, true), (client, 40002, false)] {
            var e = engine(r, ports: ports)
            let (err, a) = e.bind(address: address, port: port)
            #expect((err == .addressInUse) == inUse, "\(address):\(port)")
            if inUse { #expect(a.traceFunctions == ["inet_csk_get_port"]) }
        }
    }

    /// `__ip_queue_xmit`: a strict source route whose first hop sits behind a gateway sends nothing (EHOSTUNREACH,
    /// ignored by tcp_connect), so only the timer runs; a first hop on the link goes out.
    @Test func strictRouteWithAFirstHopBehindAGatewaySendsNothing() {
        let far = IPv4Address(192, 0, 2, 77)
        var e = engine()
        #expect(e.setOption(.ipOptions(sourceRouteOption(strict: true, hops: [far]))) == nil)
        let (err, a) = e.connect(.inet(server, 80), now: .zero)
        #expect(err == .nowInProgress && a.packets.isEmpty && a.traceFunctions.contains("__ip_queue_xmit"))
        #expect(a.timers.count == 1)
        let again = e.timerFired(now: .seconds(1))
        #expect(again.packets.isEmpty, "the retransmission goes nowhere either")
        var near = engine()
        #expect(near.setOption(.ipOptions(sourceRouteOption(strict: true, hops: [r1]))) == nil)
        #expect(near.connect(.inet(server, 80), now: .zero).1.packets.count == 1, "r1 is on the link")
        var loose = engine()
        #expect(loose.setOption(.ipOptions(sourceRouteOption(strict: false, hops: [far]))) == nil)
        #expect(loose.connect(.inet(server, 80), now: .zero).1.packets.count == 1, "a loose route may take a gateway")
    }

    /// A broadcast address may be bound, but inet_saddr stays 0: connect's lookup #1 chooses the source.
    @Test func boundToABroadcastAddressConnectChoosesTheSource() throws {
        let r = FakeResolver.fixtureClient()
        let subnetBroadcast = IPv4Address(192, 0, 2, 255)
        r.broadcastAddresses = [subnetBroadcast]
        var e = engine(r)
        #expect(e.bind(address: subnetBroadcast, port: 0).0 == nil)
        #expect(e.sourceAddress == .any)
        let (err, a) = e.connect(.inet(server, 80), now: .zero)
        #expect(err == .nowInProgress)
        #expect(r.flows.first?.source == .any)
        let syn = try Parsed(a.packets[0].bytes)
        #expect(e.sourceAddress == client && syn.ip.source == client)
    }

    @Test func everyStepIsTracedWithTheKernelFunction() {
        var e = engine()
        let (_, a) = e.connect(.inet(server, 80), now: .zero)
        for f in ["tcp_v4_connect", "ip_route_connect", "inet_hash_connect", "ip_route_newports", "secure_tcp_seq",
                  "tcp_connect_init", "tcp_connect", "__inet_stream_connect"] {
            #expect(a.traceFunctions.contains(f), "missing \(f)")
        }
    }
}

@Suite struct EphemeralPortTests {
    @Test func portIsInRangeHasTheParityOfLowAndIsNotReserved() {
        var s = NodeSysctls()
        s.ipLocalPortRange = 40000...40099
        s.ipLocalReservedPorts = Set(stride(from: 40000, through: 40098, by: 2).map { UInt16($0) }.filter { $0 != 40050 })
        for seed in 1...50 {
            var e = engine(sysctls: s, seed: UInt64(seed))
            _ = e.connect(.inet(server, 80), now: .zero)
            #expect(e.sourcePort == 40050, "the one free even port comes first (seed \(seed))")
        }
        s.ipLocalReservedPorts = []
        for seed in 1...50 {
            var e = engine(sysctls: s, seed: UInt64(seed))
            _ = e.connect(.inet(server, 80), now: .zero)
            #expect((40000...40099).contains(e.sourcePort) && e.sourcePort % 2 == 0)
        }
    }

    @Test func otherParityAfterTheFirstIsExhaustedThenEaddrnotavail() {
        var s = NodeSysctls()
        s.ipLocalPortRange = 50000...50003
        var bound = PortTable(boundPorts: [50000, 50002])
        var e = engine(sysctls: s, ports: bound)
        _ = e.connect(.inet(server, 80), now: .zero)
        #expect(e.sourcePort == 50001 || e.sourcePort == 50003)
        bound.boundPorts = [50000, 50001, 50002, 50003]
        var full = engine(sysctls: s, ports: bound)
        #expect(full.connect(.inet(server, 80), now: .zero).0 == .addressNotAvailable)
        #expect(full.state == .close && full.socketState == .unconnected)
    }

    @Test func aPortUsedByConnectIsReusedOnlyForANewFourTuple() {
        var s = NodeSysctls()
        s.ipLocalPortRange = 50000...50001
        let used = PortTable.FourTuple(source: client, sourcePort: 50000, destination: server, destinationPort: 80)
        var e = engine(sysctls: s, ports: PortTable(connections: [used]))
        _ = e.connect(.inet(server, 80), now: .zero)
        #expect(e.sourcePort == 50001)
        var other = engine(sysctls: s, ports: PortTable(connections: [used]))
        _ = other.connect(.inet(server, 443), now: .zero)
        #expect(other.sourcePort == 50000, "same port, different 4-tuple")
    }
}
