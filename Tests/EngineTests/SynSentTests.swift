import Foundation
import NetCore
import NetlabTestSupport
import SystemPackage
import Testing
import Wire
@testable import Engine

func connected() throws -> (TestEngine, Parsed) {
    var e = engine()
    let (_, a) = e.connect(.inet(server, 80), now: .zero)
    return (e, try Parsed(a.packets[0].bytes))
}

@Suite struct SynSentState {
    @Test func synAckGivesEstablishedAndTheRightAck() throws {
        var (e, syn) = try connected()
        let a = e.receive(synAck(for: syn, seq: 5000, tsVal: 4242, wscale: 7), now: .seconds(0.25))
        #expect(a.isEstablished && e.state == .established && a.contains(.cancelTimer))
        let ack = try Parsed(a.packets[0].bytes)
        #expect(ack.tcp.flags == .ack && ack.tcp.seq == syn.tcp.seq + 1 && ack.tcp.ack.raw == 5001)
        guard case .timestamps(_, let ecr) = ack.tcp.options.last else { Issue.record("no TS on the ACK"); return }
        #expect(ecr == 4242, "TS echo of the SYN-ACK's value")
        // The window is now scaled by our wscale (10): 65536 >> 10.
        #expect(ack.tcp.window == 64)
        #expect(e.sndWscale == 7 && e.handshakeTime == Int64(0.25 * 1e9))
        #expect(ack.ip.identification == syn.ip.identification &+ 1)
    }

    @Test func unacceptableAckGetsARstAndIsDropped() throws {
        var (e, syn) = try connected()
        let a = e.receive(synAck(for: syn, ack: syn.tcp.seq.raw &+ 7), now: .seconds(0.1))
        #expect(e.state == .synSent && a.failure == nil)
        let rst = try Parsed(a.packets[0].bytes)
        #expect(rst.tcp.flags == .rst && rst.tcp.seq.raw == syn.tcp.seq.raw &+ 7)
        let old = e.receive(synAck(for: syn, ack: syn.tcp.seq.raw), now: .seconds(0.1))
        #expect(old.packets.count == 1 && e.state == .synSent, "ack == ISS is not after snd_una either")
    }

    @Test func rstWithoutAckIsDroppedAndRstWithAckRefuses() throws {
        var (e, syn) = try connected()
        #expect(e.receive(synAck(for: syn, flags: .rst), now: .seconds(0.1)).packets.isEmpty && e.state == .synSent)
        #expect(e.receive(synAck(for: syn, seq: 0, flags: [.rst, .ack]), now: .seconds(0.2)).failure == .connectionRefused)
    }

    /// inet_sk_bound_dev_eq: a socket bound to a device is found only by packets that arrived on it (the lab check
    /// "replies by another device than the bound one find no socket" compares this with the kernel on the wire).
    @Test func boundSocketIgnoresRepliesFromOtherDevices() throws {
        var e = engine()
        #expect(e.setOption(.bindToDevice("eth0")) == nil)
        let (_, a) = e.connect(.inet(server, 80), now: .zero)
        let syn = try Parsed(a.packets[0].bytes)
        let elsewhere = e.receive(synAck(for: syn), now: .seconds(0.1), device: "eth1")
        #expect(!elsewhere.isEstablished && elsewhere.packets.isEmpty && e.state == .synSent)
        #expect(elsewhere.traceFunctions == ["tcp_v4_rcv"])
        #expect(e.receive(synAck(for: syn), now: .seconds(0.2), device: "eth0").isEstablished)
    }

    @Test func segmentsForOtherFlowsAreIgnored() throws {
        var (e, syn) = try connected()
        var wrongPort = syn
        _ = wrongPort
        let other = TCPHeader(sourcePort: 81, destinationPort: syn.tcp.sourcePort, seq: SeqNumber(1), ack: syn.tcp.seq + 1, flags: [.syn, .ack], window: 100)
        #expect(e.receive(packet(other, source: server, destination: client), now: .seconds(0.1)).isEmpty)
        #expect(e.receive(synAck(for: syn, source: IPv4Address(203, 0, 113, 5)), now: .seconds(0.1)).isEmpty)
    }
}

@Suite struct IcmpErrors {
    func icmp(_ msg: (ICMPQuote) -> ICMPv4Message, about syn: Parsed, seqDelta: UInt32 = 0) -> [UInt8] {
        var quoted = syn.ip
        quoted.totalLength = syn.view.totalLength
        var tcp8: [UInt8] = []
        tcp8.append(UInt8(syn.tcp.sourcePort >> 8)); tcp8.append(UInt8(syn.tcp.sourcePort & 0xff))
        tcp8 += [0, 80]
        let seq = syn.tcp.seq.raw &+ seqDelta
        tcp8 += [UInt8(seq >> 24), UInt8(seq >> 16 & 0xff), UInt8(seq >> 8 & 0xff), UInt8(seq & 0xff)]
        var body: [UInt8] = []
        msg(ICMPQuote(header: quoted, payload: tcp8)).emit(into: &body)
        var out: [UInt8] = []
        IPv4Header(proto: 1, source: r1, destination: client).emit(payloadLength: body.count, into: &out)
        return out + body
    }

    @Test func everyUnreachableCodeMapsAsIcmpErrConvert() throws {
        let expected: [UInt8: Int32] = [0: 101, 1: 113, 2: 92, 3: 111, 5: 95, 6: 101, 7: 112, 8: 64, 9: 101, 10: 113,
                                        11: 101, 12: 113, 13: 113, 14: 113, 15: 113]
        for (code, errno) in expected {
            var (e, syn) = try connected()
            let a = e.receive(icmp({ .destinationUnreachable(code: code, nextHopMTU: 0, quote: $0) }, about: syn), now: .seconds(0.1))
            #expect(a.failure == Errno(rawValue: errno), "code \(code)")
            #expect(e.connect(.inet(server, 80), now: .seconds(0.2)).0 == Errno(rawValue: errno))
        }
    }

    @Test func fragNeededAndHighCodesAreNotErrors() throws {
        for code: UInt8 in [4, 16] {
            var (e, syn) = try connected()
            #expect(e.receive(icmp({ .destinationUnreachable(code: code, nextHopMTU: 1200, quote: $0) }, about: syn), now: .seconds(0.1)).failure == nil)
            #expect(e.state == .synSent)
        }
    }

    @Test func timeExceededAndParameterProblem() throws {
        var (e, syn) = try connected()
        #expect(e.receive(icmp({ .timeExceeded(code: 0, quote: $0) }, about: syn), now: .seconds(0.1)).failure == .noRouteToHost)
        var (p, syn2) = try connected()
        #expect(p.receive(icmp({ .parameterProblem(code: 0, pointer: 20, quote: $0) }, about: syn2), now: .seconds(0.1)).failure == Errno(rawValue: 71))
    }

    @Test func quotedSeqOutsideTheWindowIsIgnored() throws {
        var (e, syn) = try connected()
        let a = e.receive(icmp({ .destinationUnreachable(code: 1, nextHopMTU: 0, quote: $0) }, about: syn, seqDelta: 5), now: .seconds(0.1))
        #expect(a.failure == nil && e.state == .synSent)
    }

    @Test func kernelCapturedUnreachableIsUnderstood() throws {
        // The fixture is an ICMP host unreachable about a SYN to 203.0.113.9; make the engine send that SYN first.
        let captured = try fixture("icmp-unreachable")
        let msg = try ICMPv4Message.parse(try IPv4PacketView(checking: captured).payload)
        guard let q = msg.quote, let ports = q.tcpPorts, let seq = q.tcpSeq else { Issue.record("no quote"); return }
        var e = engine()
        #expect(e.bind(address: client, port: ports.source).0 == nil)
        _ = e.connect(.inet(q.header.destination, ports.destination), now: .zero)
        // Align our ISN with the kernel's so the quoted seq is ours.
        e.testingSetISS(seq)
        #expect(e.receive(captured, now: .seconds(0.1)).failure == .noRouteToHost)
    }
}

@Suite struct AfterEstablished {
    @Test func dataBothWaysAndAnOrderlyClose() throws {
        var (e, syn) = try connected()
        _ = e.receive(synAck(for: syn, seq: 5000), now: .seconds(0.01))
        let sent = e.send(Array("hello".utf8), now: .seconds(0.02))
        let d = try Parsed(sent.packets[0].bytes)
        #expect(d.payload == Array("hello".utf8) && d.tcp.flags == [.psh, .ack] && d.tcp.seq == syn.tcp.seq + 1 && d.tcp.ack.raw == 5001)
        // The peer ACKs and echoes.
        let echo = TCPHeader(sourcePort: 80, destinationPort: syn.tcp.sourcePort, seq: SeqNumber(5001), ack: syn.tcp.seq + 6,
                             flags: [.psh, .ack], window: 500)
        let r = e.receive(packet(echo, payload: Array("hello".utf8), source: server, destination: client), now: .seconds(0.03))
        #expect(r.received == Array("hello".utf8) && r.contains(.cancelTimer))
        let ack = try Parsed(r.packets[0].bytes)
        #expect(ack.tcp.ack.raw == 5006)
        // We close: FIN; the peer ACKs our FIN and sends its own; we ACK and are closed.
        let fin = try Parsed(e.close(now: .seconds(0.04)).packets[0].bytes)
        #expect(fin.tcp.flags == [.fin, .ack] && fin.tcp.seq == syn.tcp.seq + 6 && e.state == .finWait1)
        let peerFin = TCPHeader(sourcePort: 80, destinationPort: syn.tcp.sourcePort, seq: SeqNumber(5006), ack: syn.tcp.seq + 7,
                                flags: [.fin, .ack], window: 500)
        let c = e.receive(packet(peerFin, source: server, destination: client), now: .seconds(0.05))
        #expect(c.contains(.closed) && e.state == .timeWait)
        #expect(try Parsed(c.packets[0].bytes).tcp.ack.raw == 5007)
    }

    @Test func lostDataIsRetransmitted() throws {
        var (e, syn) = try connected()
        _ = e.receive(synAck(for: syn), now: .seconds(0.01))
        let s = e.send([1, 2, 3], now: .seconds(0.02))
        let again = e.timerFired(now: s.timers[0])
        #expect(try Parsed(again.packets[0].bytes).payload == [1, 2, 3])
    }

    @Test func inWindowRstResets() throws {
        var (e, syn) = try connected()
        _ = e.receive(synAck(for: syn, seq: 5000), now: .seconds(0.01))
        let rst = TCPHeader(sourcePort: 80, destinationPort: syn.tcp.sourcePort, seq: SeqNumber(5001), flags: .rst, window: 0)
        #expect(e.receive(packet(rst, source: server, destination: client), now: .seconds(0.02)).failure == .connectionReset)
    }
}
