/// A source route a user gives (`--lsrr G1,G2`, `--ssrr`, a check's `source-route:`): loose or strict, through these
/// hops in order.
public struct SourceRoute: Sendable, Hashable, CustomStringConvertible {
    public var strict: Bool
    public var hops: [IPv4Address]
    public init(strict: Bool, hops: [IPv4Address]) { self.strict = strict; self.hops = hops }
    public var description: String { (strict ? "ssrr " : "lsrr ") + hops.map(\.description).joined(separator: ",") }

    /// The option types (RFC 791): loose and strict source and record route.
    public static let looseOptionType: UInt8 = 0x83
    public static let strictOptionType: UInt8 = 0x89

    /// The bytes a program passes to setsockopt(IP_OPTIONS): type, length 3 + 4n, pointer 4, the n hops, END (0)
    /// padding to a multiple of 4 (as `ip_options_get` pads). The kernel moves G1 to `faddr` and slides the rest left;
    /// the freed last slot carries the final destination on the wire.
    public var optionBytes: [UInt8] {
        var b: [UInt8] = [strict ? Self.strictOptionType : Self.looseOptionType, UInt8(3 + 4 * hops.count), 4]
        for h in hops { b += h.octets }
        while b.count % 4 != 0 { b.append(0) }
        return b
    }
}

/// One equal-cost leg of a multipath route: the device and the next hop (gateway, or the destination on-link).
public struct Leg: Sendable, Hashable, CustomStringConvertible {
    public var device: String
    public var nextHop: IPv4Address
    public init(device: String, nextHop: IPv4Address) { self.device = device; self.nextHop = nextHop }
    public var description: String { "via \(nextHop) dev \(device)" }
}

/// One connect to make, engine or kernel: destination, bind, socket options, payload. It lives in NetCore, not in
/// the Driver or the Engine, because every room names one (the CLI and checks build it, the driver runs it on the
/// engine and on the kernel, the oracle reruns it on another leg) and it is made of NetCore values only.
/// Equality is synthesized: a new field takes part without anyone remembering to.
public struct ConnectSpec: Sendable, Hashable {
    public var destination: IPv4Address
    public var port: UInt16
    public var bindAddress: IPv4Address?
    public var bindPort: UInt16?
    public var device: String?
    public var mark: UInt32?
    public var tos: UInt8?
    public var sourceRoute: SourceRoute?
    public var payload: [UInt8]?
    public var synRetries: Int?
    /// The equal-cost leg the engine's lookups answer first (see `FibResolver.preferredLeg`).
    public var preferredLeg: Leg?
    /// The equal-cost leg the lookups that choose the source (saddr 0: `ip_route_connect`'s #1) answer first, when
    /// the kernel's source came from another leg than the engine's.
    public var preferredSourceLeg: Leg?

    public init(destination: IPv4Address, port: UInt16, bindAddress: IPv4Address? = nil, bindPort: UInt16? = nil,
                device: String? = nil, mark: UInt32? = nil, tos: UInt8? = nil, sourceRoute: SourceRoute? = nil,
                payload: [UInt8]? = nil, synRetries: Int? = nil) {
        self.destination = destination; self.port = port; self.bindAddress = bindAddress; self.bindPort = bindPort
        self.device = device; self.mark = mark; self.tos = tos; self.sourceRoute = sourceRoute; self.payload = payload
        self.synRetries = synRetries
    }

    /// The IP_OPTIONS bytes a program passes to setsockopt for the source route.
    public var ipOptionBytes: [UInt8]? { sourceRoute?.optionBytes }
}
