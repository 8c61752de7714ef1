import NetCore

/// Destination-unreachable codes (RFC 792, 1122, 1812).
public enum ICMPUnreachableCode: UInt8, CaseIterable, Sendable {
    case net = 0, host, proto, port, fragNeeded, sourceRouteFailed, netUnknown, hostUnknown, hostIsolated,
         netProhibited, hostProhibited, netTOS, hostTOS, packetFiltered, precedenceViolation, precedenceCutoff
}

/// The quoted packet of an ICMP error: the offending IP header (with options) and at least its first 8 payload bytes.
public struct ICMPQuote: Equatable, Sendable {
    public var header: IPv4Header
    /// The payload bytes that follow the quoted header (8 or more).
    public var payload: [UInt8]
    public init(header: IPv4Header, payload: [UInt8]) { self.header = header; self.payload = payload }

    /// For a quoted TCP segment: ports and sequence number (all within the first 8 bytes).
    public var tcpPorts: (source: UInt16, destination: UInt16)? { payload.count >= 4 ? (payload.be16(0), payload.be16(2)) : nil }
    public var tcpSeq: SeqNumber? { payload.count >= 8 ? SeqNumber(payload.be32(4)) : nil }
}

/// ICMPv4 messages the connect engine reacts to, and echo; everything else is kept as type, code and bytes.
public enum ICMPv4Message: Equatable, Sendable {
    case echoReply(id: UInt16, seq: UInt16, data: [UInt8])
    case echoRequest(id: UInt16, seq: UInt16, data: [UInt8])
    /// Type 3. `nextHopMTU` is meaningful for `fragNeeded` (RFC 1191); other codes carry 0.
    case destinationUnreachable(code: UInt8, nextHopMTU: UInt16, quote: ICMPQuote)
    /// Type 11 (code 0: TTL exceeded in transit, 1: fragment reassembly).
    case timeExceeded(code: UInt8, quote: ICMPQuote)
    /// Type 12, with the pointer to the offending octet.
    case parameterProblem(code: UInt8, pointer: UInt8, quote: ICMPQuote)
    case other(type: UInt8, code: UInt8, rest: [UInt8])

    public var type: UInt8 {
        switch self {
        case .echoReply: 0; case .echoRequest: 8; case .destinationUnreachable: 3; case .timeExceeded: 11
        case .parameterProblem: 12; case .other(let t, _, _): t
        }
    }

    public var quote: ICMPQuote? {
        switch self {
        case .destinationUnreachable(_, _, let q), .timeExceeded(_, let q), .parameterProblem(_, _, let q): q
        default: nil
        }
    }

    /// Parse an ICMP message (the IP payload). The checksum is verified.
    public static func parse(_ b: ArraySlice<UInt8>) throws(WireError) -> ICMPv4Message {
        guard b.count >= 8 else { throw .truncated(what: "ICMP header", need: 8, have: b.count) }
        guard Checksum.verifies(b) else { throw .badChecksum(what: "ICMP") }
        let type = b[b.startIndex], code = b[b.startIndex + 1]
        func quote() throws(WireError) -> ICMPQuote {
            let q = b[(b.startIndex + 8)...]
            guard q.count >= 20 else { throw .truncated(what: "ICMP quoted IPv4 header", need: 20, have: q.count) }
            let ihl = Int(q[q.startIndex] & 0x0f) * 4
            guard q[q.startIndex] >> 4 == 4, ihl >= 20 else { throw .malformed(what: "ICMP quoted header", detail: "not IPv4") }
            guard q.count >= ihl + 8 else { throw .truncated(what: "ICMP quote (header + 8 bytes)", need: ihl + 8, have: q.count) }
            // The quoted total length describes the original packet, not the quote: parse the header alone.
            var hb = Array(q[q.startIndex..<(q.startIndex + ihl)])
            hb.setBE16(UInt16(ihl), at: 2)
            let v = try IPv4PacketView(checking: hb)
            var h = try IPv4Header.parse(v)
            h.totalLength = Int(q.be16(2))
            h.checksum = q.be16(10)
            return ICMPQuote(header: h, payload: Array(q[(q.startIndex + ihl)...]))
        }
        switch type {
        case 0, 8:
            let id = b.be16(4), seq = b.be16(6), data = Array(b[(b.startIndex + 8)...])
            return type == 0 ? .echoReply(id: id, seq: seq, data: data) : .echoRequest(id: id, seq: seq, data: data)
        case 3: return .destinationUnreachable(code: code, nextHopMTU: b.be16(6), quote: try quote())
        case 11: return .timeExceeded(code: code, quote: try quote())
        case 12: return .parameterProblem(code: code, pointer: b[b.startIndex + 4], quote: try quote())
        default: return .other(type: type, code: code, rest: Array(b[(b.startIndex + 4)...]))
        }
    }

    /// Append the message with its checksum.
    public func emit(into out: inout [UInt8]) {
        let start = out.count
        func quoted(_ q: ICMPQuote) {
            var h: [UInt8] = []
            q.header.emit(payloadLength: max(0, q.header.totalLength - q.header.headerLength), into: &h)
            out += h
            out += q.payload
        }
        switch self {
        case .echoReply(let id, let seq, let data), .echoRequest(let id, let seq, let data):
            out += [type, 0, 0, 0]; out.appendBE16(id); out.appendBE16(seq); out += data
        case .destinationUnreachable(let code, let mtu, let q):
            out += [3, code, 0, 0, 0, 0]; out.appendBE16(mtu); quoted(q)
        case .timeExceeded(let code, let q):
            out += [11, code, 0, 0, 0, 0, 0, 0]; quoted(q)
        case .parameterProblem(let code, let p, let q):
            out += [12, code, 0, 0, p, 0, 0, 0]; quoted(q)
        case .other(let t, let c, let rest):
            out += [t, c, 0, 0]; out += rest
        }
        out.setBE16(Checksum.compute(out[start...]), at: start + 2)
    }
}
