import NetCore
import NetlabTestSupport
import Testing
@testable import Wire

/// Parse an IPv4+TCP packet and emit it again.
func roundTrip(_ bytes: [UInt8], finalDestination: IPv4Address? = nil) throws -> (IPv4Header, TCPHeader, [UInt8]) {
    let ipv = try IPv4PacketView(checking: bytes)
    let ip = try IPv4Header.parse(ipv)
    let tv = try TCPSegmentView(checking: ipv.payload)
    let tcp = try TCPHeader.parse(tv)
    var out: [UInt8] = []
    ip.emit(payloadLength: tv.bytes.count, into: &out)
    tcp.emit(payload: Array(tv.payload), source: ip.source, destination: finalDestination ?? ip.destination, into: &out)
    return (ip, tcp, out)
}

@Suite struct KernelFixtures {
    @Test func kernelSynParsesAndRoundTripsByteForByte() throws {
        let bytes = try fixture("syn")
        let (ip, tcp, out) = try roundTrip(bytes)
        #expect(out == bytes)
        #expect(try IPv4PacketView(checking: bytes).checksumVerifies)
        #expect(ip.source == client && ip.destination == server && ip.dontFragment && ip.ttl == 64 && ip.proto == 6)
        #expect(tcp.flags == .syn && tcp.destinationPort == 80 && tcp.ack.raw == 0)
        // Linux's default SYN: mss, sackOK, TS, nop, wscale.
        guard tcp.options.count == 5, case .mss(1460) = tcp.options[0], case .sackPermitted = tcp.options[1],
              case .timestamps(_, 0) = tcp.options[2], case .nop = tcp.options[3], case .windowScale = tcp.options[4] else {
            Issue.record("unexpected options \(tcp.options)"); return
        }
        #expect(tcp.window == 64240)
    }

    @Test func kernelSynWithLSRRHasFirstHopAsDestinationAndFinalDestinationInTheLastSlot() throws {
        let bytes = try fixture("syn-lsrr")
        let ipv = try IPv4PacketView(checking: bytes)
        let ip = try IPv4Header.parse(ipv)
        #expect(ip.destination == r1)
        #expect(ip.options == [.lsrr(pointer: 4, route: [server]), .end])
        #expect(ip.headerLength == 28)
        let tv = try TCPSegmentView(checking: ipv.payload)
        // The TCP checksum uses the final destination, not the IP header's.
        #expect(tv.checksumVerifies(source: client, destination: server))
        #expect(!tv.checksumVerifies(source: client, destination: r1))
        let (_, tcp, out) = try roundTrip(bytes, finalDestination: server)
        #expect(out == bytes)
        // IP options do not change the advertised MSS.
        #expect(tcp.options.first == .mss(1460))
    }

    @Test func kernelSynAckRoundTrips() throws {
        for name in ["synack", "synack-lsrr"] {
            let bytes = try fixture(name)
            let ip = try IPv4Header.parse(try IPv4PacketView(checking: bytes))
            let (_, tcp, out) = try roundTrip(bytes, finalDestination: client)
            let v = try IPv4PacketView(checking: bytes)
            #expect(try TCPSegmentView(checking: v.payload).checksumVerifies(source: server, destination: client), "\(name)")
            #expect(out == bytes, "\(name)")
            #expect(tcp.flags == [.syn, .ack], "\(name)")
        }
        // The server reversed the source route (to r1, then the client); r1 consumed the slot, wrote the client into the
        // IP destination and recorded its own outgoing address there, pointer advanced past the end.
        let rev = try IPv4Header.parse(try IPv4PacketView(checking: try fixture("synack-lsrr")))
        #expect(rev.source == server && rev.destination == client)
        #expect(rev.sourceRoute == .lsrr(pointer: 8, route: [r1]))
    }

    @Test func kernelICMPUnreachableQuotesTheSyn() throws {
        let bytes = try fixture("icmp-unreachable")
        let ipv = try IPv4PacketView(checking: bytes)
        let ip = try IPv4Header.parse(ipv)
        #expect(ip.proto == 1 && ip.source == r1 && ip.destination == client)
        let msg = try ICMPv4Message.parse(ipv.payload)
        guard case .destinationUnreachable(let code, _, let quote) = msg else { Issue.record("\(msg)"); return }
        #expect(code == ICMPUnreachableCode.host.rawValue)
        #expect(quote.header.destination == IPv4Address(203, 0, 113, 9) && quote.header.proto == 6)
        #expect(quote.tcpPorts?.destination == 80 && quote.tcpSeq != nil)
        var out: [UInt8] = []
        msg.emit(into: &out)
        #expect(out == Array(ipv.payload))
    }
}

@Suite struct RoundTrips {
    @Test func ipv4WithEveryOptionKind() throws {
        let h = IPv4Header(tos: 0x10, identification: 0xbeef, ttl: 3, proto: 6, source: client, destination: r1,
                           options: [.nop, .recordRoute(pointer: 4, route: [IPv4Address(0), IPv4Address(0)]),
                                     .ssrr(pointer: 8, route: [r1, server]), .unknown(type: 0x94, data: [0, 0]), .end])
        var out: [UInt8] = []
        h.emit(payloadLength: 0, into: &out)
        #expect(out.count == h.headerLength && out.count % 4 == 0)
        let v = try IPv4PacketView(checking: out)
        #expect(v.checksumVerifies)
        var back = try IPv4Header.parse(v)
        back.totalLength = 0; back.checksum = 0
        #expect(back == h)
    }

    @Test func tcpWithEveryOptionKind() throws {
        let h = TCPHeader(sourcePort: 40000, destinationPort: 443, seq: SeqNumber(0xffff_fff0), ack: SeqNumber(7),
                          flags: [.ack, .psh, .ece, .cwr, .ae], window: 512,
                          options: [.mss(1200), .sackPermitted, .timestamps(value: 9, echo: 8), .nop, .windowScale(14),
                                    .sack([SackBlock(left: SeqNumber(1), right: SeqNumber(5))]), .unknown(kind: 30, data: [1, 2]), .end])
        var out: [UInt8] = []
        h.emit(payload: [1, 2, 3], source: client, destination: server, into: &out)
        let v = try TCPSegmentView(checking: out)
        #expect(v.checksumVerifies(source: client, destination: server))
        #expect(Array(v.payload) == [1, 2, 3])
        var back = try TCPHeader.parse(v)
        back.checksum = 0
        #expect(back == h)
    }

    @Test func icmpErrorsRoundTrip() throws {
        let q = ICMPQuote(header: IPv4Header(proto: 6, source: client, destination: server, options: [.lsrr(pointer: 4, route: [server]), .end]),
                          payload: [0x9c, 0x40, 0, 80, 1, 2, 3, 4])
        for m in [ICMPv4Message.destinationUnreachable(code: 5, nextHopMTU: 0, quote: q), .timeExceeded(code: 0, quote: q),
                  .parameterProblem(code: 0, pointer: 20, quote: q), .echoRequest(id: 1, seq: 2, data: [9])] {
            var out: [UInt8] = []
            m.emit(into: &out)
            var back = try ICMPv4Message.parse(out[...])
            if case .destinationUnreachable(let c, let mtu, var bq) = back { bq.header.totalLength = 0; bq.header.checksum = 0; back = .destinationUnreachable(code: c, nextHopMTU: mtu, quote: bq) }
            if case .timeExceeded(let c, var bq) = back { bq.header.totalLength = 0; bq.header.checksum = 0; back = .timeExceeded(code: c, quote: bq) }
            if case .parameterProblem(let c, let p, var bq) = back { bq.header.totalLength = 0; bq.header.checksum = 0; back = .parameterProblem(code: c, pointer: p, quote: bq) }
            #expect(back == m)
        }
    }

    @Test func seqNumbersCompareAcrossTheWrap() {
        let a = SeqNumber(0xffff_fff0), b = a + 0x20
        #expect(b.raw == 0x10 && a.before(b) && b.after(a) && !a.after(b))
        #expect(SeqNumber(0x8).between(a, b) && !SeqNumber(0x11).between(a, b))
    }
}

@Suite struct MalformedInput {
    @Test func truncationsAndBadFieldsAreTypedErrorsAtEveryLength() throws {
        let bytes = try fixture("syn-lsrr")
        for n in 0..<bytes.count {
            // No prefix of a valid packet traps; each either parses or throws WireError.
            if let v = try? IPv4PacketView(checking: Array(bytes[0..<n])) {
                _ = try? IPv4Header.parse(v)
                if let t = try? TCPSegmentView(checking: v.payload) { _ = try? TCPHeader.parse(t) }
            }
        }
        #expect(throws: WireError.truncated(what: "IPv4 header", need: 20, have: 19)) { try IPv4PacketView(checking: Array(bytes[0..<19])) }
        var badVersion = bytes; badVersion[0] = 0x65
        #expect(throws: WireError.self) { try IPv4PacketView(checking: badVersion) }
        var badOption = bytes; badOption[21] = 1   // LSRR length 1
        #expect(throws: WireError.self) { try IPv4Header.parse(try IPv4PacketView(checking: badOption)) }
        var longOption = bytes; longOption[21] = 40  // runs past the header
        #expect(throws: WireError.self) { try IPv4Header.parse(try IPv4PacketView(checking: longOption)) }
        var badDoff = bytes; badDoff[28 + 12] = 0x40
        #expect(throws: WireError.self) { try TCPSegmentView(checking: Array(badDoff[28...])) }
        var badICMP = try fixture("icmp-unreachable"); badICMP[22] ^= 0xff
        #expect(throws: WireError.badChecksum(what: "ICMP")) { try ICMPv4Message.parse(badICMP[20...]) }
    }

    @Test func randomBytesNeverTrap() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            var b = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if !b.isEmpty && Bool.random(using: &rng) { b[0] = 0x40 | (b[0] & 0x0f) }
            if let v = try? IPv4PacketView(checking: b) {
                _ = try? IPv4Header.parse(v)
                if let t = try? TCPSegmentView(checking: v.payload) { _ = try? TCPHeader.parse(t) }
                _ = try? ICMPv4Message.parse(v.payload)
            }
            _ = try? ICMPv4Message.parse(b[...])
            if let t = try? TCPSegmentView(checking: b) { _ = try? TCPHeader.parse(t) }
        }
    }
}
