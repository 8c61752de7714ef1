import NetCore

/// Byte offsets of the IPv4 header's fields (RFC 791), as smoltcp's `ipv4::field`.
public enum IPv4Field {
    public static let versionAndIHL = 0
    public static let tos = 1
    public static let totalLength = 2
    public static let identification = 4
    public static let flagsAndOffset = 6
    public static let ttl = 8
    public static let proto = 9
    public static let checksum = 10
    public static let source = 12
    public static let destination = 16
    /// The fixed header's length: options start here.
    public static let options = 20
    public static let minHeaderLength = 20

    /// The flags-and-fragment-offset word: DF, MF, the offset.
    public static let dontFragment: UInt16 = 0x4000
    public static let moreFragments: UInt16 = 0x2000
    public static let fragmentOffsetMask: UInt16 = 0x1fff
}

/// IP option types (RFC 791) netlab interprets; others are kept as opaque bytes.
public enum IPv4OptionType {
    public static let end: UInt8 = 0
    public static let nop: UInt8 = 1
    public static let recordRoute: UInt8 = 7
    public static let lsrr = SourceRoute.looseOptionType
    public static let ssrr = SourceRoute.strictOptionType
}

/// One IPv4 option. Route options keep their pointer exactly as on the wire (1-based, within the option; 4 points
/// at the first slot), so a router's progress along a source route is visible.
public enum IPv4Option: Equatable, Sendable {
    case end
    case nop
    /// Loose source and record route: the slots, and the pointer to the next one.
    case lsrr(pointer: UInt8, route: [IPv4Address])
    /// Strict source and record route.
    case ssrr(pointer: UInt8, route: [IPv4Address])
    /// Record route.
    case recordRoute(pointer: UInt8, route: [IPv4Address])
    /// Any other option, as type and data (without the type and length bytes).
    case unknown(type: UInt8, data: [UInt8])

    /// Bytes on the wire.
    public var length: Int {
        switch self {
        case .end, .nop: 1
        case .lsrr(_, let r), .ssrr(_, let r), .recordRoute(_, let r): 3 + 4 * r.count
        case .unknown(_, let d): 2 + d.count
        }
    }

    public var isSourceRoute: Bool {
        switch self { case .lsrr, .ssrr: true; default: false }
    }

    func emit(into out: inout [UInt8]) {
        switch self {
        case .end: out.append(IPv4OptionType.end)
        case .nop: out.append(IPv4OptionType.nop)
        case .lsrr(let p, let r), .ssrr(let p, let r), .recordRoute(let p, let r):
            let type: UInt8 = if case .lsrr = self { IPv4OptionType.lsrr } else if case .ssrr = self { IPv4OptionType.ssrr } else { IPv4OptionType.recordRoute }
            out.append(type)
            out.append(UInt8(3 + 4 * r.count))
            out.append(p)
            for a in r { out.appendBE32(a.value) }
        case .unknown(let t, let d):
            out.append(t)
            out.append(UInt8(2 + d.count))
            out += d
        }
    }

    /// Parse the options area (the bytes between the fixed header and the payload).
    public static func parseAll<C: Collection>(_ bytes: C) throws(WireError) -> [IPv4Option] where C.Element == UInt8, C.Index == Int {
        var out: [IPv4Option] = []
        var i = 0
        let n = bytes.count
        while i < n {
            let type = bytes[bytes.startIndex + i]
            switch type {
            case IPv4OptionType.end:
                out.append(.end)
                // What follows END is padding; netlab emits zeros there.
                return out
            case IPv4OptionType.nop:
                out.append(.nop)
                i += 1
                continue
            default: break
            }
            guard i + 2 <= n else { throw .truncated(what: "IPv4 option \(type)", need: i + 2, have: n) }
            let len = Int(bytes[bytes.startIndex + i + 1])
            guard len >= 2 else { throw .malformed(what: "IPv4 option \(type)", detail: "length \(len) < 2") }
            guard i + len <= n else { throw .truncated(what: "IPv4 option \(type)", need: i + len, have: n) }
            let body = bytes[(bytes.startIndex + i + 2)..<(bytes.startIndex + i + len)]
            switch type {
            case IPv4OptionType.lsrr, IPv4OptionType.ssrr, IPv4OptionType.recordRoute:
                guard len >= 3, (len - 3) % 4 == 0 else {
                    throw .malformed(what: "IPv4 route option", detail: "length \(len) is not 3 + 4n")
                }
                let pointer = body[body.startIndex]
                var route: [IPv4Address] = []
                var k = body.startIndex + 1
                while k + 4 <= body.endIndex {
                    route.append(IPv4Address(body.be32(k - body.startIndex)))
                    k += 4
                }
                switch type {
                case IPv4OptionType.lsrr: out.append(.lsrr(pointer: pointer, route: route))
                case IPv4OptionType.ssrr: out.append(.ssrr(pointer: pointer, route: route))
                default: out.append(.recordRoute(pointer: pointer, route: route))
                }
            default:
                out.append(.unknown(type: type, data: Array(body)))
            }
            i += len
        }
        return out
    }
}

/// A checked view of an IPv4 packet: after `init(checking:)`, every accessor is in bounds.
public struct IPv4PacketView: Sendable {
    public let bytes: ArraySlice<UInt8>

    /// Checks version 4, IHL ≥ 5, the header within the bytes, and total length within the bytes (trailing link-layer
    /// padding is allowed and ignored).
    public init(checking bytes: ArraySlice<UInt8>) throws(WireError) {
        guard bytes.count >= IPv4Field.minHeaderLength else { throw .truncated(what: "IPv4 header", need: IPv4Field.minHeaderLength, have: bytes.count) }
        let vihl = bytes[bytes.startIndex + IPv4Field.versionAndIHL]
        guard vihl >> 4 == 4 else { throw .malformed(what: "IPv4 header", detail: "version \(vihl >> 4)") }
        let ihl = Int(vihl & 0x0f) * 4
        guard ihl >= IPv4Field.minHeaderLength else { throw .malformed(what: "IPv4 header", detail: "header length \(ihl) < 20") }
        guard ihl <= bytes.count else { throw .truncated(what: "IPv4 header with options", need: ihl, have: bytes.count) }
        let total = Int(bytes.be16(IPv4Field.totalLength))
        guard total >= ihl else { throw .malformed(what: "IPv4 header", detail: "total length \(total) < header length \(ihl)") }
        guard total <= bytes.count else { throw .truncated(what: "IPv4 packet", need: total, have: bytes.count) }
        self.bytes = bytes[bytes.startIndex..<(bytes.startIndex + total)]
    }
    public init(checking bytes: [UInt8]) throws(WireError) { try self.init(checking: bytes[...]) }

    public var headerLength: Int { Int(bytes[bytes.startIndex + IPv4Field.versionAndIHL] & 0x0f) * 4 }
    public var tos: UInt8 { bytes[bytes.startIndex + IPv4Field.tos] }
    public var totalLength: Int { Int(bytes.be16(IPv4Field.totalLength)) }
    public var identification: UInt16 { bytes.be16(IPv4Field.identification) }
    public var flagsAndOffset: UInt16 { bytes.be16(IPv4Field.flagsAndOffset) }
    public var ttl: UInt8 { bytes[bytes.startIndex + IPv4Field.ttl] }
    public var proto: IPProtocol { IPProtocol(rawValue: bytes[bytes.startIndex + IPv4Field.proto]) }
    public var checksum: UInt16 { bytes.be16(IPv4Field.checksum) }
    public var source: IPv4Address { IPv4Address(bytes.be32(IPv4Field.source)) }
    public var destination: IPv4Address { IPv4Address(bytes.be32(IPv4Field.destination)) }
    public var optionBytes: ArraySlice<UInt8> { bytes[(bytes.startIndex + IPv4Field.options)..<(bytes.startIndex + headerLength)] }
    public var payload: ArraySlice<UInt8> { bytes[(bytes.startIndex + headerLength)...] }
    public var header: ArraySlice<UInt8> { bytes[bytes.startIndex..<(bytes.startIndex + headerLength)] }
    public var checksumVerifies: Bool { Checksum.verifies(header) }
}

/// An IPv4 header as a value. `emit` computes the IHL, total length and checksum.
public struct IPv4Header: Equatable, Sendable {
    public var tos: UInt8
    public var identification: UInt16
    public var dontFragment: Bool
    public var moreFragments: Bool
    public var fragmentOffset: UInt16
    public var ttl: UInt8
    public var proto: IPProtocol
    public var source: IPv4Address
    public var destination: IPv4Address
    public var options: [IPv4Option]
    /// The total length as parsed (emit writes the real one).
    public var totalLength: Int
    /// The checksum as parsed (emit writes the real one).
    public var checksum: UInt16

    public init(tos: UInt8 = 0, identification: UInt16 = 0, dontFragment: Bool = true, moreFragments: Bool = false,
                fragmentOffset: UInt16 = 0, ttl: UInt8 = 64, proto: IPProtocol, source: IPv4Address, destination: IPv4Address,
                options: [IPv4Option] = []) {
        self.tos = tos; self.identification = identification; self.dontFragment = dontFragment
        self.moreFragments = moreFragments; self.fragmentOffset = fragmentOffset; self.ttl = ttl; self.proto = proto
        self.source = source; self.destination = destination; self.options = options; totalLength = 0; checksum = 0
    }

    public static func parse(_ v: IPv4PacketView) throws(WireError) -> IPv4Header {
        var h = IPv4Header(tos: v.tos, identification: v.identification, dontFragment: v.flagsAndOffset & IPv4Field.dontFragment != 0,
                           moreFragments: v.flagsAndOffset & IPv4Field.moreFragments != 0,
                           fragmentOffset: v.flagsAndOffset & IPv4Field.fragmentOffsetMask,
                           ttl: v.ttl, proto: v.proto, source: v.source, destination: v.destination,
                           options: try IPv4Option.parseAll(v.optionBytes))
        h.totalLength = v.totalLength
        h.checksum = v.checksum
        return h
    }

    /// Options bytes rounded up to a multiple of 4 (padded with END).
    public var optionsLength: Int { (options.reduce(0) { $0 + $1.length } + 3) & ~3 }
    public var headerLength: Int { IPv4Field.minHeaderLength + optionsLength }

    /// The first source-route option, if any.
    public var sourceRoute: IPv4Option? { options.first { $0.isSourceRoute } }

    /// Append the header for a payload of `payloadLength` bytes, checksum included.
    public func emit(payloadLength: Int, into out: inout [UInt8]) {
        let start = out.count
        let hl = headerLength
        out.append(UInt8(0x40 | hl / 4))
        out.append(tos)
        out.appendBE16(UInt16(truncatingIfNeeded: hl + payloadLength))
        out.appendBE16(identification)
        out.appendBE16((dontFragment ? IPv4Field.dontFragment : 0) | (moreFragments ? IPv4Field.moreFragments : 0) |
                       (fragmentOffset & IPv4Field.fragmentOffsetMask))
        out.append(ttl)
        out.append(proto.rawValue)
        out.appendBE16(0)
        out.appendBE32(source.value)
        out.appendBE32(destination.value)
        for o in options { o.emit(into: &out) }
        while out.count - start < hl { out.append(IPv4OptionType.end) }
        out.setBE16(Checksum.compute(out[start..<(start + hl)]), at: start + IPv4Field.checksum)
    }
}
