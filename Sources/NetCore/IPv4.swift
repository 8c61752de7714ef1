/// An IPv4 address as a host-order integer. Pure: parsing and printing do not touch the C library.
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var value: UInt32
    public init(_ value: UInt32) { self.value = value }
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }
    /// Dotted quad only (`192.0.2.1`): no shorthand forms, no leading zeros that inet_aton would read as octal.
    @inlinable   // specialised where it is called: generic StringProtocol code across modules was a quarter of parsing
    public init?(_ text: some StringProtocol) {
        // One pass over the bytes (a split into substrings cost more than the rest of parsing a topology).
        var value: UInt32 = 0, part: UInt32 = 0, digits = 0, parts = 0, leadingZero = false
        for b in text.utf8 {
            if b == UInt8(ascii: ".") {
                guard digits > 0, parts < 3 else { return nil }
                value = value << 8 | part
                parts += 1; part = 0; digits = 0
            } else if b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") {
                if digits == 0 { leadingZero = b == UInt8(ascii: "0") } else if leadingZero { return nil }
                digits += 1
                part = part * 10 + UInt32(b - UInt8(ascii: "0"))
                guard digits <= 3, part <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, parts == 3 else { return nil }
        self.value = value << 8 | part
    }
    public var octets: [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }
    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }
    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
    public static let any = IPv4Address(0)

    public init(from decoder: Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        guard let a = IPv4Address(s) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad IPv4 \(s)"))
        }
        self = a
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    public var isMulticast: Bool { value >> 28 == 0xe }
    public var isLoopback: Bool { value >> 24 == 127 }
}

/// An address with a prefix length, as written on an interface (`198.51.100.10/25`) or as a route destination.
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible, Codable {
    public var address: IPv4Address
    public var length: Int
    public init(_ address: IPv4Address, _ length: Int) { self.address = address; self.length = length }

    /// `A.B.C.D/N` or `A.B.C.D` (a host, /32).
    @inlinable
    public init?(_ text: some StringProtocol, defaultLength: Int = 32) {
        let slash = text.firstIndex(of: "/")
        guard let a = IPv4Address(text[..<(slash ?? text.endIndex)]) else { return nil }
        var len = defaultLength
        if let slash {
            let rest = text[text.index(after: slash)...]
            guard !rest.isEmpty, rest.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let l = Int(rest),
                  (0...32).contains(l) else { return nil }
            len = l
        }
        self.init(a, len)
    }
    public var mask: UInt32 { length == 0 ? 0 : UInt32.max << (32 - UInt32(length)) }
    public var network: IPv4Address { IPv4Address(address.value & mask) }
    /// The prefix with host bits cleared, as the kernel stores a route destination.
    public var canonical: IPv4Prefix { IPv4Prefix(network, length) }
    public var isCanonical: Bool { address.value & ~mask == 0 }
    public func contains(_ a: IPv4Address) -> Bool { a.value & mask == address.value & mask }
    public func contains(_ p: IPv4Prefix) -> Bool { p.length >= length && contains(p.address) }
    public func overlaps(_ p: IPv4Prefix) -> Bool { contains(p.address) || p.contains(address) }
    public var description: String { "\(address)/\(length)" }
    /// How iproute2 prints a route destination: `default`, a bare host for /32, `net/len` otherwise.
    public var routeDescription: String {
        length == 0 ? "default" : length == 32 ? address.description : "\(address)/\(length)"
    }

    public init(from decoder: Decoder) throws {
        let s = try decoder.singleValueContainer().decode(String.self)
        guard let p = IPv4Prefix(s) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad prefix \(s)"))
        }
        self = p
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// The address ranges a lab may use (RFC 5737 documentation ranges). Nothing else is ever configured.
public enum LabAddressSpace {
    public static let allowed: [IPv4Prefix] = [
        IPv4Prefix(IPv4Address(192, 0, 2, 0), 24),
        IPv4Prefix(IPv4Address(198, 51, 100, 0), 24),
        IPv4Prefix(IPv4Address(203, 0, 113, 0), 24),
    ]
    public static func contains(_ a: IPv4Address) -> Bool { allowed.contains { $0.contains(a) } }
    public static func contains(_ p: IPv4Prefix) -> Bool { allowed.contains { $0.contains(p) } }
    public static let description = "192.0.2.0/24, 198.51.100.0/24 or 203.0.113.0/24"
}
