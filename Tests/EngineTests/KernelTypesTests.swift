import Glibc
import NetCore
import NetlabTestSupport
import SystemPackage
import Testing
import Wire
@testable import Engine

/// The shared kernel types of NetCore, each against an independent source: glibc's headers for errno and protocol
/// numbers, the socket the engine builds for what connect's lookups are asked.
@Suite struct SharedKernelTypes {
    @Test func errnoNamesAreGlibcsNumbersBothWays() {
        let glibc: [String: Int32] = ["EPERM": EPERM, "EAGAIN": EAGAIN, "EINVAL": EINVAL, "EADDRINUSE": EADDRINUSE,
                                      "EADDRNOTAVAIL": EADDRNOTAVAIL, "ENETUNREACH": ENETUNREACH, "ECONNREFUSED": ECONNREFUSED,
                                      "ETIMEDOUT": ETIMEDOUT, "EHOSTUNREACH": EHOSTUNREACH, "EINPROGRESS": EINPROGRESS,
                                      "ENONET": ENONET, "EPROTO": EPROTO, "EHOSTDOWN": EHOSTDOWN]
        for (name, number) in glibc {
            #expect(Errno(rawValue: number).name == name)
            #expect(Errno(named: name)?.rawValue == number)
            #expect(Errno(named: name.lowercased())?.rawValue == number, "names are accepted in any case")
        }
        #expect(Errno(rawValue: 200).name == "errno 200" && Errno(named: "EBOGUS") == nil)
    }

    @Test func oneErrnoToResultMapping() {
        #expect(ConnectResult(errno: nil) == .established)
        #expect(ConnectResult(errno: Errno(rawValue: ECONNREFUSED)) == .refused)
        #expect(ConnectResult(errno: Errno(rawValue: ETIMEDOUT)) == .timeout)
        #expect(ConnectResult(errno: Errno(rawValue: ENETUNREACH)) == .unreachable)
        #expect(ConnectResult(errno: Errno(rawValue: EHOSTUNREACH)) == .unreachable)
        #expect(ConnectResult(errno: Errno(rawValue: EADDRNOTAVAIL)) == .error("EADDRNOTAVAIL"))
        // The name form agrees with the typed one for every name netlab knows.
        for n in [EPERM, EAGAIN, EINVAL, ECONNREFUSED, ETIMEDOUT, ENETUNREACH, EHOSTUNREACH, EADDRINUSE] {
            let e = Errno(rawValue: n)
            #expect(ConnectResult(errnoName: e.name) == ConnectResult(errno: e))
        }
    }

    @Test func ipProtocolNumbersAreGlibcs() {
        #expect(IPProtocol.tcp.rawValue == UInt8(IPPROTO_TCP) && IPProtocol.udp.rawValue == UInt8(IPPROTO_UDP))
        #expect(IPProtocol.icmp.rawValue == UInt8(IPPROTO_ICMP))
        #expect(IPProtocol("tcp") == .tcp && IPProtocol("47") == IPProtocol(rawValue: 47) && IPProtocol("gre") == nil)
        #expect(IPProtocol.tcp.hasPorts && IPProtocol.udp.hasPorts && !IPProtocol.icmp.hasPorts)
    }

    @Test func connectSpecEqualityCoversEveryField() {
        let base = ConnectSpec(destination: server, port: 80)
        var leg = base; leg.preferredLeg = Leg(device: "eth0", nextHop: r1)
        var otherLeg = leg; otherLeg.preferredLeg = Leg(device: "eth1", nextHop: r1)
        var sourceLeg = base; sourceLeg.preferredSourceLeg = Leg(device: "eth0", nextHop: r1)
        var loose = base; loose.sourceRoute = SourceRoute(strict: false, hops: [r1])
        var strict = base; strict.sourceRoute = SourceRoute(strict: true, hops: [r1])
        let all = [base, leg, otherLeg, sourceLeg, loose, strict]
        #expect(Set(all).count == all.count)
    }

    @Test func sourceRouteBytesAreWhatTheKernelPads() {
        // ip_options_get pads IP_OPTIONS to a multiple of 4 with IPOPT_END: type, length 3 + 4n, pointer 4, hops.
        #expect(SourceRoute(strict: false, hops: [r1]).optionBytes == [0x83, 7, 4, 192, 0, 2, 1, 0])
        #expect(SourceRoute(strict: true, hops: [r1, server]).optionBytes == [0x89, 11, 4, 192, 0, 2, 1, 198, 51, 100, 80, 0])
    }
}

/// What the engine exposes of its connect: the flow its lookups were asked is the one it reports.
@Suite struct ConnectLookupInputs {
    @Test func exposedFlowIsTheFlowOfLookupOne() {
        let resolver = FakeResolver.fixtureClient()
        var e = engine(resolver)
        #expect(e.setOption(.tos(0x17)) == nil && e.setOption(.mark(7)) == nil)
        #expect(e.setOption(.ipOptions(sourceRouteOption(strict: false, hops: [r1]))) == nil)
        _ = e.connect(.inet(server, 80), now: .zero)
        let flow = e.connectQuery?.flow
        #expect(flow == resolver.flows.first, "the first lookup is the exposed flow")
        #expect(flow?.destination == r1, "a source route's first hop is the lookup destination")
        #expect(flow?.tos == 0x14 && flow?.proto == .tcp && flow?.mark == 7 && flow?.anySourcePort == true)
        #expect(e.destination == server, "the connection stays to the final destination")
    }

    @Test func retransmitTimerIsArmedBySynAndIdleOnceEstablished() throws {
        var e = engine()
        #expect(e.icsk.timer == .idle)
        let (_, a) = e.connect(.inet(server, 80), now: .zero)
        #expect(e.icsk.timer == .armed(expiresAt: .seconds(1)) && a.timers == [.seconds(1)])
        let est = e.receive(synAck(for: try Parsed(a.packets[0].bytes)), now: .seconds(0.25))
        #expect(est.isEstablished && e.icsk.timer == .idle && e.timerDeadline == nil)
        #expect(e.tcp.handshakeRTT == .milliseconds(250))
    }
}
