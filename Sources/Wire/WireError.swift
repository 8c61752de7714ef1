/// Why bytes are not a valid packet. Parsers throw these; they never trap or read out of bounds.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer bytes than the structure needs.
    case truncated(what: String, need: Int, have: Int)
    /// A field holds a value the format does not allow.
    case malformed(what: String, detail: String)
    /// The checksum does not verify.
    case badChecksum(what: String)

    public var description: String {
        switch self {
        case .truncated(let w, let need, let have): "\(w): truncated (need \(need) bytes, have \(have))"
        case .malformed(let w, let d): "\(w): \(d)"
        case .badChecksum(let w): "\(w): bad checksum"
        }
    }
}

extension Collection where Element == UInt8, Index == Int {
    @inline(__always) func be16(_ at: Int) -> UInt16 { UInt16(self[startIndex + at]) << 8 | UInt16(self[startIndex + at + 1]) }
    @inline(__always) func be32(_ at: Int) -> UInt32 {
        let i = startIndex + at
        return UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }
}

extension Array where Element == UInt8 {
    @inline(__always) mutating func appendBE16(_ v: UInt16) { append(UInt8(v >> 8)); append(UInt8(v & 0xff)) }
    @inline(__always) mutating func appendBE32(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8(v >> 16 & 0xff)); append(UInt8(v >> 8 & 0xff)); append(UInt8(v & 0xff))
    }
    @inline(__always) mutating func setBE16(_ v: UInt16, at i: Int) { self[i] = UInt8(v >> 8); self[i + 1] = UInt8(v & 0xff) }
}
