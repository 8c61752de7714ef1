import NetCore

/// Byte offsets of the TCP header's fields (RFC 9293), as smoltcp's `tcp::field`.
public enum TCPField {
    public static let sourcePort = 0
    public static let destinationPort = 2
    public static let seq = 4
    public static let ack = 8
    /// Data offset (high nibble) and the flags: a 16-bit word.
    public static let dataOffsetAndFlags = 12
    public static let window = 14
    public static let checksum = 16
    public static let urgentPointer = 18
    /// The fixed header's length: options start here.
    public static let options = 20
    public static let minHeaderLength = 20
    /// The flag bits of the data-offset word (AE, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN).
    public static let flagsMask: UInt16 = 0x1ff
}

/// TCP option kinds (IANA "TCP Option Kind Numbers").
public enum TCPOptionKind {
    public static let end: UInt8 = 0
    public static let nop: UInt8 = 1
    public static let mss: UInt8 = 2
    public static let windowScale: UInt8 = 3
    public static let sackPermitted: UInt8 = 4
    public static let sack: UInt8 = 5
    public static let timestamps: UInt8 = 8
    /// TCPOLEN_TSTAMP_ALIGNED: nop, nop, timestamps — what timestamps add to every segment's header.
    public static let timestampsAlignedLength = 12
}

/// A TCP sequence number. Comparisons wrap (RFC 1982 style, as the kernel's `before()`/`after()`); they live here
/// and nowhere else.
public struct SeqNumber: Hashable, Sendable, CustomStringConvertible {
    public var raw: UInt32
    public init(_ raw: UInt32) { self.raw = raw }
    public static func + (a: SeqNumber, n: UInt32) -> SeqNumber { SeqNumber(a.raw &+ n) }
    public static func - (a: SeqNumber, b: SeqNumber) -> Int32 { Int32(bitPattern: a.raw &- b.raw) }
    /// The kernel's `before(a, b)`.
    public func before(_ b: SeqNumber) -> Bool { self - b < 0 }
    /// The kernel's `after(a, b)`.
    public func after(_ b: SeqNumber) -> Bool { b - self < 0 }
    /// `a <= self <= b`, wrapping.
    public func between(_ a: SeqNumber, _ b: SeqNumber) -> Bool { b.raw &- a.raw >= raw &- a.raw }
    public var description: String { String(raw) }
}

public struct TCPFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x001)
    public static let syn = TCPFlags(rawValue: 0x002)
    public static let rst = TCPFlags(rawValue: 0x004)
    public static let psh = TCPFlags(rawValue: 0x008)
    public static let ack = TCPFlags(rawValue: 0x010)
    public static let urg = TCPFlags(rawValue: 0x020)
    public static let ece = TCPFlags(rawValue: 0x040)
    public static let cwr = TCPFlags(rawValue: 0x080)
    /// AccECN's AE bit (formerly NS), bit 8 of the data-offset word.
    public static let ae = TCPFlags(rawValue: 0x100)
    public var description: String {
        let names: [(TCPFlags, String)] = [(.syn, "S"), (.fin, "F"), (.rst, "R"), (.psh, "P"), (.ack, "."), (.urg, "U"), (.ece, "E"), (.cwr, "W"), (.ae, "AE")]
        let s = names.filter { contains($0.0) }.map(\.1).joined()
        return s.isEmpty ? "none" : s
    }
}

public struct SackBlock: Hashable, Sendable {
    public var left: SeqNumber
    public var right: SeqNumber
    public init(left: SeqNumber, right: SeqNumber) { self.left = left; self.right = right }
}

/// TCP options (RFC 9293, 7323, 2018). Options with a known kind but a wrong length are kept as `unknown`, as the
/// kernel's `tcp_parse_options` ignores them.
public enum TCPOption: Equatable, Sendable, CustomStringConvertible {
    case end
    case nop
    case mss(UInt16)
    case windowScale(UInt8)
    case sackPermitted
    case sack([SackBlock])
    case timestamps(value: UInt32, echo: UInt32)
    case unknown(kind: UInt8, data: [UInt8])

    public var length: Int {
        switch self {
        case .end, .nop: 1
        case .mss: 4
        case .windowScale: 3
        case .sackPermitted: 2
        case .sack(let b): 2 + 8 * b.count
        case .timestamps: 10
        case .unknown(_, let d): 2 + d.count
        }
    }

    /// tcpdump's words: `mss 1460`, `sackOK`, `TS val 1 ecr 0`, `nop`, `wscale 7`.
    public var description: String {
        switch self {
        case .end: "eol"
        case .nop: "nop"
        case .mss(let m): "mss \(m)"
        case .windowScale(let w): "wscale \(w)"
        case .sackPermitted: "sackOK"
        case .sack(let b): "sack " + b.map { "\($0.left):\($0.right)" }.joined(separator: " ")
        case .timestamps(let v, let e): "TS val \(v) ecr \(e)"
        case .unknown(let k, let d): "opt-\(k):\(d.count)"
        }
    }

    func emit(into out: inout [UInt8]) {
        switch self {
        case .end: out.append(TCPOptionKind.end)
        case .nop: out.append(TCPOptionKind.nop)
        case .mss(let m): out += [TCPOptionKind.mss, 4]; out.appendBE16(m)
        case .windowScale(let w): out += [TCPOptionKind.windowScale, 3, w]
        case .sackPermitted: out += [TCPOptionKind.sackPermitted, 2]
        case .sack(let b):
            out += [TCPOptionKind.sack, UInt8(2 + 8 * b.count)]
            for x in b { out.appendBE32(x.left.raw); out.appendBE32(x.right.raw) }
        case .timestamps(let v, let e): out += [TCPOptionKind.timestamps, 10]; out.appendBE32(v); out.appendBE32(e)
        case .unknown(let k, let d): out += [k, UInt8(2 + d.count)]; out += d
        }
    }

    static func parseAll<C: Collection>(_ bytes: C) throws(WireError) -> [TCPOption] where C.Element == UInt8, C.Index == Int {
        var out: [TCPOption] = []
        out.reserveCapacity(6)
        var i = 0
        let n = bytes.count
        while i < n {
            let kind = bytes[bytes.startIndex + i]
            if kind == TCPOptionKind.end { out.append(.end); return out }
            if kind == TCPOptionKind.nop { out.append(.nop); i += 1; continue }
            guard i + 2 <= n else { throw .truncated(what: "TCP option \(kind)", need: i + 2, have: n) }
            let len = Int(bytes[bytes.startIndex + i + 1])
            guard len >= 2 else { throw .malformed(what: "TCP option \(kind)", detail: "length \(len) < 2") }
            guard i + len <= n else { throw .truncated(what: "TCP option \(kind)", need: i + len, have: n) }
            let b = bytes.startIndex + i + 2   // first body byte
            switch (kind, len) {
            case (TCPOptionKind.mss, 4): out.append(.mss(UInt16(bytes[b]) << 8 | UInt16(bytes[b + 1])))
            case (TCPOptionKind.windowScale, 3): out.append(.windowScale(bytes[b]))
            case (TCPOptionKind.sackPermitted, 2): out.append(.sackPermitted)
            case (TCPOptionKind.sack, _) where len >= 10 && (len - 2) % 8 == 0:
                let body = Array(bytes[b..<(b + len - 2)])
                out.append(.sack(stride(from: 0, to: body.count, by: 8).map {
                    SackBlock(left: SeqNumber(body.be32($0)), right: SeqNumber(body.be32($0 + 4)))
                }))
            case (TCPOptionKind.timestamps, 10):
                let val = UInt32(bytes[b]) << 24 | UInt32(bytes[b + 1]) << 16 | UInt32(bytes[b + 2]) << 8 | UInt32(bytes[b + 3])
                let ecr = UInt32(bytes[b + 4]) << 24 | UInt32(bytes[b + 5]) << 16 | UInt32(bytes[b + 6]) << 8 | UInt32(bytes[b + 7])
                out.append(.timestamps(value: val, echo: ecr))
            default: out.append(.unknown(kind: kind, data: Array(bytes[b..<(b + len - 2)])))
            }
            i += len
        }
        return out
    }
}

/// A checked view of a TCP segment: header length and options within the bytes.
public struct TCPSegmentView: Sendable {
    public let bytes: ArraySlice<UInt8>

    public init(checking bytes: ArraySlice<UInt8>) throws(WireError) {
        guard bytes.count >= TCPField.minHeaderLength else { throw .truncated(what: "TCP header", need: TCPField.minHeaderLength, have: bytes.count) }
        let doff = Int(bytes[bytes.startIndex + TCPField.dataOffsetAndFlags] >> 4) * 4
        guard doff >= TCPField.minHeaderLength else { throw .malformed(what: "TCP header", detail: "data offset \(doff) < 20") }
        guard doff <= bytes.count else { throw .truncated(what: "TCP header with options", need: doff, have: bytes.count) }
        self.bytes = bytes
    }
    public init(checking bytes: [UInt8]) throws(WireError) { try self.init(checking: bytes[...]) }

    public var sourcePort: UInt16 { bytes.be16(TCPField.sourcePort) }
    public var destinationPort: UInt16 { bytes.be16(TCPField.destinationPort) }
    public var seq: SeqNumber { SeqNumber(bytes.be32(TCPField.seq)) }
    public var ack: SeqNumber { SeqNumber(bytes.be32(TCPField.ack)) }
    public var dataOffset: Int { Int(bytes[bytes.startIndex + TCPField.dataOffsetAndFlags] >> 4) * 4 }
    public var flags: TCPFlags { TCPFlags(rawValue: bytes.be16(TCPField.dataOffsetAndFlags) & TCPField.flagsMask) }
    public var window: UInt16 { bytes.be16(TCPField.window) }
    public var checksum: UInt16 { bytes.be16(TCPField.checksum) }
    public var urgentPointer: UInt16 { bytes.be16(TCPField.urgentPointer) }
    public var optionBytes: ArraySlice<UInt8> { bytes[(bytes.startIndex + TCPField.options)..<(bytes.startIndex + dataOffset)] }
    public var payload: ArraySlice<UInt8> { bytes[(bytes.startIndex + dataOffset)...] }

    /// Verify against the pseudo-header (with a source route, `destination` is the final destination).
    public func checksumVerifies(source: IPv4Address, destination: IPv4Address) -> Bool {
        Checksum.verifies(bytes, initial: Checksum.pseudoHeader(source: source, destination: destination, protocol: .tcp, length: bytes.count))
    }
}

/// A TCP header as a value.
public struct TCPHeader: Equatable, Sendable {
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var seq: SeqNumber
    public var ack: SeqNumber
    public var flags: TCPFlags
    public var window: UInt16
    public var urgentPointer: UInt16
    public var options: [TCPOption]
    /// As parsed; `emit` writes the real checksum.
    public var checksum: UInt16

    public init(sourcePort: UInt16, destinationPort: UInt16, seq: SeqNumber, ack: SeqNumber = SeqNumber(0),
                flags: TCPFlags, window: UInt16, urgentPointer: UInt16 = 0, options: [TCPOption] = []) {
        self.sourcePort = sourcePort; self.destinationPort = destinationPort; self.seq = seq; self.ack = ack
        self.flags = flags; self.window = window; self.urgentPointer = urgentPointer; self.options = options; checksum = 0
    }

    public static func parse(_ v: TCPSegmentView) throws(WireError) -> TCPHeader {
        var h = TCPHeader(sourcePort: v.sourcePort, destinationPort: v.destinationPort, seq: v.seq, ack: v.ack,
                          flags: v.flags, window: v.window, urgentPointer: v.urgentPointer,
                          options: try TCPOption.parseAll(v.optionBytes))
        h.checksum = v.checksum
        return h
    }

    public var headerLength: Int { TCPField.minHeaderLength + ((options.reduce(0) { $0 + $1.length } + 3) & ~3) }

    /// Append header and payload with the checksum over the pseudo-header (`destination`: the final destination).
    public func emit(payload: [UInt8] = [], source: IPv4Address, destination: IPv4Address, into out: inout [UInt8]) {
        let start = out.count
        let hl = headerLength
        out.appendBE16(sourcePort)
        out.appendBE16(destinationPort)
        out.appendBE32(seq.raw)
        out.appendBE32(ack.raw)
        out.appendBE16(UInt16(hl / 4) << 12 | (flags.rawValue & TCPField.flagsMask))
        out.appendBE16(window)
        out.appendBE16(0)
        out.appendBE16(urgentPointer)
        for o in options { o.emit(into: &out) }
        while out.count - start < hl { out.append(0) }
        out += payload
        let pseudo = Checksum.pseudoHeader(source: source, destination: destination, protocol: .tcp, length: out.count - start)
        out.setBE16(Checksum.compute(out[start...], initial: pseudo), at: start + TCPField.checksum)
    }
}
