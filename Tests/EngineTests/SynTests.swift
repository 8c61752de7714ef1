import Foundation
import NetCore
import NetlabTestSupport
import SystemPackage
import Testing
import Wire
@testable import Engine

/// The engine's SYN against SYNs the kernel sent in the fixture lab (scripts/capture-fixtures), field by field except
/// ISN, source port, TS value and IP ID, which no one outside the kernel can reproduce.
@Suite struct SynAgainstKernel {
    func compare(_ mine: Parsed, _ kernel: Parsed) {
        #expect(mine.ip.tos == kernel.ip.tos)
        #expect(mine.ip.dontFragment == kernel.ip.dontFragment && mine.ip.ttl == kernel.ip.ttl && mine.ip.proto == kernel.ip.proto)
        #expect(mine.ip.source == kernel.ip.source && mine.ip.destination == kernel.ip.destination)
        #expect(mine.ip.options == kernel.ip.options)
        #expect(mine.ip.headerLength == kernel.ip.headerLength && mine.view.totalLength == kernel.view.totalLength)
        #expect(mine.tcp.destinationPort == kernel.tcp.destinationPort && mine.tcp.flags == kernel.tcp.flags)
        #expect(mine.tcp.ack == kernel.tcp.ack && mine.tcp.window == kernel.tcp.window && mine.tcp.urgentPointer == kernel.tcp.urgentPointer)
        #expect(mine.tcp.options.count == kernel.tcp.options.count)
        for (a, b) in zip(mine.tcp.options, kernel.tcp.options) {
            switch (a, b) {
            case (.timestamps(_, let e1), .timestamps(_, let e2)): #expect(e1 == e2)
            default: #expect(a == b)
            }
        }
    }

    @Test func synMatchesTheKernelSyn() throws {
        var e = engine()
        let (_, a) = e.connect(.inet(server, 80), now: .zero)
        let mine = try Parsed(a.packets[0].bytes)
        compare(mine, try Parsed(try fixture("syn")))
        #expect(a.packets[0].nextHop == r1 && a.packets[0].device == "eth0")
        #expect(try TCPSegmentView(checking: mine.view.payload).checksumVerifies(source: client, destination: server))
    }

    @Test func lsrrSynMatchesTheKernel() throws {
        var e = engine()
        // What the fixture's program passed to setsockopt: LSRR [r1] plus the slot for the destination.
        #expect(e.setOption(.ipOptions([0x83, 7, 4] + r1.octets + [0])) == nil)
        let (_, a) = e.connect(.inet(server, 80), now: .zero)
        let mine = try Parsed(a.packets[0].bytes)
        let kernel = try Parsed(try fixture("syn-lsrr"))
        compare(mine, kernel)
        #expect(mine.ip.destination == r1 && mine.ip.options.first == .lsrr(pointer: 4, route: [server]))
        // The pseudo-header uses the final destination; the advertised MSS ignores the IP options.
        #expect(try TCPSegmentView(checking: mine.view.payload).checksumVerifies(source: client, destination: server))
        #expect(mine.tcp.options.first == .mss(1460))
        #expect(e.route?.nextHop == r1, "the route is looked up for the first hop")
    }

    /// ip_rcv_options: the SYN-ACK to a source-routed SYN carries the reversed route (the kernel's own, from the
    /// fixture); a node whose arrival device refuses source routes drops it, so the connect never completes.
    @Test func aReplyCarryingASourceRouteIsDroppedWhereSourceRoutesAreRefused() throws {
        let reversed = try IPv4Header.parse(try IPv4PacketView(checking: try fixture("synack-lsrr"))).options
        #expect(reversed.contains { $0.isSourceRoute })
        for (allowed, takesIt) in [(Set<String>(), false), (Set(["eth1"]), false), (Set(["eth0"]), true)] {
            var s = NodeSysctls()
            s.sourceRouteDevices = allowed
            var e = engine(sysctls: s)
            #expect(e.setOption(.ipOptions([0x83, 7, 4] + r1.octets + [0])) == nil)
            let syn = try Parsed(e.connect(.inet(server, 80), now: .zero).1.packets[0].bytes)
            let tcp = try Parsed(synAck(for: syn)).tcp
            var bytes: [UInt8] = []
            IPv4Header(ttl: 63, proto: 6, source: server, destination: client, options: reversed)
                .emit(payloadLength: tcp.headerLength, into: &bytes)
            tcp.emit(payload: [], source: server, destination: client, into: &bytes)
            let actions = e.receive(bytes, now: .milliseconds(1), device: "eth0")
            #expect(actions.contains(.established) == takesIt, "accept_source_route on \(allowed)")
            let dropped = actions.contains { if case .trace(let t) = $0 { t.function == "ip_rcv_options" } else { false } }
            #expect(dropped == !takesIt)
        }
    }

    @Test func lsrrThroughTwoHopsPutsTheDestinationInTheLastSlot() throws {
        let g2 = IPv4Address(192, 0, 2, 18)
        var e = engine()
        #expect(e.setOption(.ipOptions(sourceRouteOption(strict: false, hops: [r1, g2]))) == nil)
        let (_, a) = e.connect(.inet(server, 80), now: .zero)
        let p = try Parsed(a.packets[0].bytes)
        #expect(p.ip.destination == r1)
        #expect(p.ip.options.first == .lsrr(pointer: 4, route: [g2, server]))
        #expect(p.ip.headerLength == 32)
    }

    @Test func ipOptionsEinvalRules() {
        var e = engine()
        #expect(e.setOption(.ipOptions([UInt8](repeating: 1, count: 41))) == .invalidArgument, "over 40 bytes")
        #expect(e.setOption(.ipOptions([0x83, 7, 8] + r1.octets)) == .invalidArgument, "pointer != 4")
        #expect(e.setOption(.ipOptions([0x83, 3, 4, 0])) == .invalidArgument, "length < 7")
        #expect(e.setOption(.ipOptions([0x83, 9, 4] + r1.octets + [0, 0, 0])) == .invalidArgument, "length not 3 + 4n")
        #expect(e.setOption(.ipOptions([0x83, 7, 4] + r1.octets + [0x89, 7, 4] + r1.octets)) == .invalidArgument, "second source route")
        #expect(e.setOption(.ipOptions([0x83, 12, 4] + r1.octets)) == .invalidArgument, "runs past the end")
        #expect(e.setOption(.ipOptions([1, 1, 1, 1])) == nil, "NOPs are fine")
    }

    @Test func optionLayoutFollowsTheSysctls() throws {
        func synOptions(_ edit: (inout NodeSysctls) -> Void) throws -> [TCPOption] {
            var s = NodeSysctls()
            edit(&s)
            var e = engine(sysctls: s)
            return try Parsed(e.connect(.inet(server, 80), now: .zero).1.packets[0].bytes).tcp.options
        }
        func kinds(_ o: [TCPOption]) -> [String] { o.map { "\($0)".split(separator: " ").first.map(String.init) ?? "" } }
        #expect(kinds(try synOptions { _ in }) == ["mss", "sackOK", "TS", "nop", "wscale"])
        #expect(kinds(try synOptions { $0.tcpTimestamps = 0 }) == ["mss", "nop", "nop", "sackOK", "nop", "wscale"])
        #expect(kinds(try synOptions { $0.tcpSack = false }) == ["mss", "nop", "nop", "TS", "nop", "wscale"])
        #expect(kinds(try synOptions { $0.tcpWindowScaling = false }) == ["mss", "sackOK", "TS"])
        var s = NodeSysctls(); s.tcpEcn = 1
        var e = engine(sysctls: s)
        #expect(try Parsed(e.connect(.inet(server, 80), now: .zero).1.packets[0].bytes).tcp.flags == [.syn, .ece, .cwr])
    }

    @Test func mssWindowAndScaleFromRouteAndSysctls() throws {
        // Route mtu 1300 → MSS 1260; TCP_MAXSEG clamps; the window is a multiple of the MSS.
        let r = FakeResolver { f in .success(ResolvedRoute(destination: f.destination, source: client, device: "eth0", gateway: r1, mtu: 1300)) }
        var e = engine(r)
        let p = try Parsed(e.connect(.inet(server, 80), now: .zero).1.packets[0].bytes)
        #expect(p.tcp.options.first == .mss(1260) && p.tcp.window == 65520 / 1260 * 1260)
        var m = engine()
        #expect(m.setOption(.maxSegment(1000)) == nil)
        #expect(try Parsed(m.connect(.inet(server, 80), now: .zero).1.packets[0].bytes).tcp.options.first == .mss(1000))
        let adv = FakeResolver { f in .success(ResolvedRoute(destination: f.destination, source: client, device: "eth0", gateway: r1, advmss: 1200)) }
        var a = engine(adv)
        #expect(try Parsed(a.connect(.inet(server, 80), now: .zero).1.packets[0].bytes).tcp.options.first == .mss(1200))
        // On lo: MSS 65495, window 65495 (the reference's figures).
        let (w, ws, _) = TestEngine.tcpSelectInitialWindow(space: 65536, mss: 65495, windowClamp: 0, wscaleOK: true,
                                                           rmemMax: 212992, tcpRmemMax: 33_554_432, signedWindows: false)
        #expect(w == 65495 && ws == 10)
        // tcp_rmem[2] of 6 MB (kernels before 6.16) gives wscale 7.
        #expect(TestEngine.tcpSelectInitialWindow(space: 65536, mss: 1460, windowClamp: 0, wscaleOK: true, rmemMax: 212992,
                                                  tcpRmemMax: 6_291_456, signedWindows: false).1 == 7)
    }

    @Test func ipHeaderFieldsFromSocketOptionsAndRoute() throws {
        let r = FakeResolver { f in .success(ResolvedRoute(destination: f.destination, source: client, device: "eth0", gateway: r1, hoplimit: 9)) }
        var e = engine(r)
        _ = e.setOption(.tos(0x28))
        let p = try Parsed(e.connect(.inet(server, 80), now: .zero).1.packets[0].bytes)
        #expect(p.ip.tos == 0x28 && p.ip.ttl == 9 && p.ip.dontFragment)
        var t = engine(r)
        _ = t.setOption(.ttl(3))
        #expect(try Parsed(t.connect(.inet(server, 80), now: .zero).1.packets[0].bytes).ip.ttl == 3)
        var s = NodeSysctls(); s.ipNoPmtuDisc = 1
        var n = engine(sysctls: s)
        #expect(try !Parsed(n.connect(.inet(server, 80), now: .zero).1.packets[0].bytes).ip.dontFragment)
    }
}

/// The retransmission schedule against the kernel's, measured by scripts/capture-fixtures (syn-schedule.txt).
@Suite struct Retransmission {
    /// Drive the timer until the connect fails; return SYN times and the failure time.
    func run(synCount: Int?, linear: Int) -> (syns: [Double], failedAt: Double, err: Errno?) {
        var s = NodeSysctls(); s.tcpSynLinearTimeouts = linear
        var e = engine(sysctls: s)
        if let synCount { _ = e.setOption(.synCount(synCount)) }
        var (_, actions) = e.connect(.inet(server, 80), now: .zero)
        var syns: [Double] = actions.packets.isEmpty ? [] : [0]
        var guardCount = 0
        while let t = actions.timers.last, guardCount < 100 {
            guardCount += 1
            actions = e.timerFired(now: t)
            if let err = actions.failure { return (syns, t.seconds, err) }
            if !actions.packets.isEmpty { syns.append(t.seconds) }
        }
        return (syns, -1, nil)
    }

    @Test func scheduleMatchesTheKernelMeasurements() throws {
        let text = try fixtureText("syn-schedule.txt")
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("syncnt=") }
        #expect(lines.count >= 6)
        for line in lines {
            var kv: [String: String] = [:]
            for part in line.split(separator: " ") { let p = part.split(separator: "="); kv[String(p[0])] = String(p[1]) }
            let kernelSyns = kv["syns"]!.split(separator: ",").map { Double($0)! }
            let (syns, at, err) = run(synCount: Int(kv["syncnt"]!)!, linear: Int(kv["linear"]!)!)
            #expect(err == .timedOut && Int32(kv["error"]!) == 110)
            #expect(syns.count == kernelSyns.count, "\(line): engine SYNs \(syns)")
            for (a, b) in zip(syns, kernelSyns) { #expect(abs(a - b) < 0.5, "\(line): \(syns)") }
            #expect(abs(at - Double(kv["at"]!)!) < 0.6, "\(line): ETIMEDOUT at \(at)")
        }
    }

    @Test func defaultScheduleIsTheDocumentedOne() {
        let (syns, at, err) = run(synCount: nil, linear: 4)
        #expect(syns == [0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67])
        #expect(at == 131 && err == .timedOut)
    }

    @Test func retransmittedSynKeepsSeqAndGetsNewIdAndTimestamp() throws {
        var e = engine()
        let (_, a) = e.connect(.inet(server, 80), now: .zero)
        let b = e.timerFired(now: .seconds(1))
        let s1 = try Parsed(a.packets[0].bytes), s2 = try Parsed(b.packets[0].bytes)
        #expect(s1.tcp.seq == s2.tcp.seq && s2.ip.identification == s1.ip.identification &+ 1)
        guard case .timestamps(let v1, _) = s1.tcp.options[2], case .timestamps(let v2, _) = s2.tcp.options[2] else { Issue.record("no TS"); return }
        #expect(v2 == v1 &+ 1000)
        #expect(b.traceFunctions.contains("tcp_retransmit_timer"))
        #expect(e.timerFired(now: .seconds(1.5)).isEmpty, "an early timer call does nothing")
    }
}
