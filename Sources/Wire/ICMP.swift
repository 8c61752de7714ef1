import NetCore

/// Byte offsets of the ICMPv4 header's fields (RFC 792), as smoltcp's `icmpv4::field`.
public enum ICMPField {
    public static let type = 0
    public static let code = 1
    public static let checksum = 2
    /// The 4 bytes whose meaning depends on the type ("rest of header").
    public static let restOfHeader = 4
    /// Echo: identifier and sequence number.
    public static let echoID = 4
    public static let echoSeq = 6
    /// Parameter problem: the pointer to the offending octet.
    public static let pointer = 4
    /// Destination unreachable, fragmentation needed: the next-hop MTU (RFC 1191).
    public static let nextHopMTU = 6
    /// The header's length: echo data or the quoted packet start here.
    public static let headerLength = 8
    /// The quoted packet's first payload bytes an error carries at least (RFC 792).
    public static let quotedPayload = 8
}

/// ICMPv4 message types (RFC 792).
public enum ICMPType {
    public static let echoReply: UInt8 = 0
    public static let destinationUnreachable: UInt8 = 3
    public static let echoRequest: UInt8 = 8
    public static let timeExceeded: UInt8 = 11
    public static let parameterProblem: UInt8 = 12
}

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
    public var tcpPorts: (source: UInt16, destination: UInt16)? { payload.count >= TCPField.seq ? (payload.be16(TCPField.sourcePort), payload.be16(TCPField.destinationPort)) : nil }
    public var tcpSeq: SeqNumber? { payload.count >= TCPField.ack ? SeqNumber(payload.be32(TCPField.seq)) : nil }
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
        case .echoReply: ICMPType.echoReply; case .echoRequest: ICMPType.echoRequest
        case .destinationUnreachable: ICMPType.destinationUnreachable; case .timeExceeded: ICMPType.timeExceeded
        case .parameterProblem: ICMPType.parameterProblem; case .other(let t, _, _): t
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
        guard b.count >= ICMPField.headerLength else { throw .truncated(what: "ICMP header", need: ICMPField.headerLength, have: b.count) }
        guard Checksum.verifies(b) else { throw .badChecksum(what: "ICMP") }
        let type = b[b.startIndex + ICMPField.type], code = b[b.startIndex + ICMPField.code]
        func quote() throws(WireError) -> ICMPQuote {
            let q = b[(b.startIndex + ICMPField.headerLength)...]
            let minIP = IPv4Field.minHeaderLength
            guard q.count >= minIP else { throw .truncated(what: "ICMP quoted IPv4 header", need: minIP, have: q.count) }
            let ihl = Int(q[q.startIndex + IPv4Field.versionAndIHL] & 0x0f) * 4
            guard q[q.startIndex + IPv4Field.versionAndIHL] >> 4 == 4, ihl >= minIP else { throw .malformed(what: "ICMP quoted header", detail: "not IPv4") }
            let need = ihl + ICMPField.quotedPayload
            guard q.count >= need else { throw .truncated(what: "ICMP quote (header + 8 bytes)", need: need, have: q.count) }
            // The quoted total length describes the original packet, not the quote: parse the header alone.
            var hb = Array(q[q.startIndex..<(q.startIndex + ihl)])
            hb.setBE16(UInt16(ihl), at: IPv4Field.totalLength)
            let v = try IPv4PacketView(checking: hb)
            var h = try IPv4Header.parse(v)
            h.totalLength = Int(q.be16(IPv4Field.totalLength))
            h.checksum = q.be16(IPv4Field.checksum)
            return ICMPQuote(header: h, payload: Array(q[(q.startIndex + ihl)...]))
        }
        switch type {
        case ICMPType.echoReply, ICMPType.echoRequest:
            let id = b.be16(ICMPField.echoID), seq = b.be16(ICMPField.echoSeq), data = Array(b[(b.startIndex + ICMPField.headerLength)...])
            return type == ICMPType.echoReply ? .echoReply(id: id, seq: seq, data: data) : .echoRequest(id: id, seq: seq, data: data)
        case ICMPType.destinationUnreachable:
            return .destinationUnreachable(code: code, nextHopMTU: b.be16(ICMPField.nextHopMTU), quote: try quote())
        case ICMPType.timeExceeded: return .timeExceeded(code: code, quote: try quote())
        case ICMPType.parameterProblem: return .parameterProblem(code: code, pointer: b[b.startIndex + ICMPField.pointer], quote: try quote())
        default: return .other(type: type, code: code, rest: Array(b[(b.startIndex + ICMPField.restOfHeader)...]))
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
            out += [ICMPType.destinationUnreachable, code, 0, 0, 0, 0]; out.appendBE16(mtu); quoted(q)
        case .timeExceeded(let code, let q):
            out += [ICMPType.timeExceeded, code, 0, 0, 0, 0, 0, 0]; quoted(q)
        case .parameterProblem(let code, let p, let q):
            out += [ICMPType.parameterProblem, code, 0, 0, p, 0, 0, 0]; quoted(q)
        case .other(let t, let c, let rest):
            out += [t, c, 0, 0]; out += rest
        }
        out.setBE16(Checksum.compute(out[start...]), at: start + ICMPField.checksum)
    }
}
