import NetCore

/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit words.
public enum Checksum {
    /// The folded 16-bit ones' complement sum of `bytes`, added to `initial` (not complemented).
    @inlinable
    public static func sum<C: Collection>(_ bytes: C, initial: UInt32 = 0) -> UInt32 where C.Element == UInt8, C.Index == Int {
        var acc = UInt64(initial)
        var i = bytes.startIndex
        let end = bytes.endIndex
        while i + 1 < end {
            acc &+= UInt64(bytes[i]) << 8 | UInt64(bytes[i + 1])
            i += 2
        }
        if i < end { acc &+= UInt64(bytes[i]) << 8 }
        while acc >> 16 != 0 { acc = (acc & 0xffff) &+ (acc >> 16) }
        return UInt32(acc)
    }

    /// The checksum field value for `bytes` (whose checksum field is zero), starting from a partial `sum`.
    @inlinable
    public static func compute<C: Collection>(_ bytes: C, initial: UInt32 = 0) -> UInt16 where C.Element == UInt8, C.Index == Int {
        ~UInt16(truncatingIfNeeded: sum(bytes, initial: initial))
    }

    /// True when `bytes` (checksum field included) verify: the folded sum is 0xffff.
    @inlinable
    public static func verifies<C: Collection>(_ bytes: C, initial: UInt32 = 0) -> Bool where C.Element == UInt8, C.Index == Int {
        sum(bytes, initial: initial) == 0xffff
    }

    /// The TCP/UDP pseudo-header sum: source, destination, zero, protocol, length.
    /// With a source route set, `destination` is the final destination (RFC 791, RFC 1122 §4.2.3.1), not the IP
    /// header's current destination.
    public static func pseudoHeader(source: IPv4Address, destination: IPv4Address, protocol p: IPProtocol, length: Int) -> UInt32 {
        var acc = UInt32(source.value >> 16) + UInt32(source.value & 0xffff)
        acc += UInt32(destination.value >> 16) + UInt32(destination.value & 0xffff)
        acc += UInt32(p.rawValue) + UInt32(length)
        while acc >> 16 != 0 { acc = (acc & 0xffff) + (acc >> 16) }
        return acc
    }
}
