/// An IP protocol number (`IPPROTO_*`, the IPv4 header's protocol byte, a flow's `flowi4_proto`, a rule's
/// `ipproto`). A struct rather than an enum: any of the 256 values can be on the wire or in a rule.
public struct IPProtocol: RawRepresentable, Hashable, Sendable, Codable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(integerLiteral value: UInt8) { rawValue = value }

    public static let icmp: IPProtocol = 1
    public static let igmp: IPProtocol = 2
    public static let tcp: IPProtocol = 6
    public static let udp: IPProtocol = 17

    /// Whether the flow dissector finds ports in it (TCP and UDP).
    public var hasPorts: Bool { self == .tcp || self == .udp }

    /// The number, as `ip -j` and RTM_GETROUTE's `ipproto` print it.
    public var description: String { String(rawValue) }

    /// `tcp`, `udp`, `icmp` or a number 0-255, as `--ipproto` takes it.
    public init?(_ text: String) {
        switch text {
        case "tcp": self = .tcp
        case "udp": self = .udp
        case "icmp": self = .icmp
        default:
            guard let n = UInt8(text) else { return nil }
            self.init(rawValue: n)
        }
    }
}
