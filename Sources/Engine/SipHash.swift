import NetCore
/// SipHash-2-4 with a 128-bit key, as the kernel's `siphash()` (lib/siphash.c). Used for the keyed hashes of
/// `secure_tcp_seq`, `secure_tcp_ts_off` and `secure_ipv4_port_ephemeral`.
public struct SipKey: Hashable, Sendable {
    public var k0: UInt64, k1: UInt64
    public init(_ k0: UInt64, _ k1: UInt64) { self.k0 = k0; self.k1 = k1 }
}

public enum SipHash {
    @inline(__always) static func rotl(_ x: UInt64, _ b: UInt64) -> UInt64 { (x << b) | (x >> (64 - b)) }

    /// SipHash-2-4 of `bytes` under `key`.
    public static func hash(_ bytes: [UInt8], key: SipKey) -> UInt64 {
        var v0: UInt64 = 0x736f6d6570736575 ^ key.k0
        var v1: UInt64 = 0x646f72616e646f6d ^ key.k1
        var v2: UInt64 = 0x6c7967656e657261 ^ key.k0
        var v3: UInt64 = 0x7465646279746573 ^ key.k1
        @inline(__always) func round() {
            v0 &+= v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
            v2 &+= v3; v3 = rotl(v3, 16); v3 ^= v2
            v0 &+= v3; v3 = rotl(v3, 21); v3 ^= v0
            v2 &+= v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
        }
        let n = bytes.count
        var i = 0
        while i + 8 <= n {
            var m: UInt64 = 0
            for k in 0..<8 { m |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
            v3 ^= m; round(); round(); v0 ^= m
            i += 8
        }
        var b = UInt64(n) << 56
        for k in 0..<(n - i) { b |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
        v3 ^= b; round(); round(); v0 ^= b
        v2 ^= 0xff
        round(); round(); round(); round()
        return v0 ^ v1 ^ v2 ^ v3
    }

    /// The kernel's `siphash_3u32(a, b, c, key)`: three u32 in memory order (little-endian on x86).
    public static func hash3u32(_ a: UInt32, _ b: UInt32, _ c: UInt32, key: SipKey) -> UInt64 {
        var bytes: [UInt8] = []
        for w in [a, b, c] { for k in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(k)))) } }
        return hash(bytes, key: key)
    }
    public static func hash2u32(_ a: UInt32, _ b: UInt32, key: SipKey) -> UInt64 {
        var bytes: [UInt8] = []
        for w in [a, b] { for k in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(k)))) } }
        return hash(bytes, key: key)
    }
}

/// A small deterministic generator (SplitMix64) for the engine's `get_random_*` calls, seeded by the driver.
public struct EngineRandom: Sendable {
    var mix: SplitMix
    public init(seed: UInt64) { mix = SplitMix(seed) }
    public mutating func next() -> UInt64 { mix.next() }
    /// `get_random_u32_below(n)`.
    public mutating func below(_ n: UInt32) -> UInt32 { n == 0 ? 0 : UInt32(truncatingIfNeeded: next() % UInt64(n)) }
    public mutating func u16() -> UInt16 { UInt16(truncatingIfNeeded: next()) }
    public mutating func u32() -> UInt32 { UInt32(truncatingIfNeeded: next()) }
}

/// Network byte order as the kernel holds `__be32`/`__be16` in memory, read as a host (little-endian) integer.
@inline(__always) func be(_ v: UInt32) -> UInt32 { v.byteSwapped }
@inline(__always) func be(_ v: UInt16) -> UInt32 { UInt32(v.byteSwapped) }

extension EngineRandom: RandomNumberGenerator {}
