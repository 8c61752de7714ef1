import Engine
import NetCore
import SystemPackage

/// One connect to make, engine or kernel: destination, bind, socket options, payload.
public struct ConnectSpec: Sendable, Equatable {
    public var destination: IPv4Address
    public var port: UInt16
    public var bindAddress: IPv4Address?
    public var bindPort: UInt16?
    public var device: String?
    public var mark: UInt32?
    public var tos: UInt8?
    /// A loose (false) or strict (true) source route through these hops.
    public var sourceRoute: (strict: Bool, hops: [IPv4Address])?
    public var payload: [UInt8]?
    public var synRetries: Int?
    /// The equal-cost leg the engine's lookups answer first (see `FibResolver.preferredLeg`).
    public var preferredLeg: (device: String, nextHop: IPv4Address)?
    /// The equal-cost leg the lookups that choose the source (saddr 0: `ip_route_connect`'s #1) answer first, when
    /// the kernel's source came from another leg than the engine's.
    public var preferredSourceLeg: (device: String, nextHop: IPv4Address)?

    public init(destination: IPv4Address, port: UInt16, bindAddress: IPv4Address? = nil, bindPort: UInt16? = nil,
                device: String? = nil, mark: UInt32? = nil, tos: UInt8? = nil, sourceRoute: (strict: Bool, hops: [IPv4Address])? = nil,
                payload: [UInt8]? = nil, synRetries: Int? = nil) {
        self.destination = destination; self.port = port; self.bindAddress = bindAddress; self.bindPort = bindPort
        self.device = device; self.mark = mark; self.tos = tos; self.sourceRoute = sourceRoute; self.payload = payload
        self.synRetries = synRetries
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.destination == b.destination && a.port == b.port && a.bindAddress == b.bindAddress && a.bindPort == b.bindPort &&
            a.device == b.device && a.mark == b.mark && a.tos == b.tos && a.sourceRoute?.strict == b.sourceRoute?.strict &&
            a.sourceRoute?.hops == b.sourceRoute?.hops && a.payload == b.payload && a.synRetries == b.synRetries &&
            a.preferredLeg?.device == b.preferredLeg?.device && a.preferredLeg?.nextHop == b.preferredLeg?.nextHop &&
            a.preferredSourceLeg?.device == b.preferredSourceLeg?.device && a.preferredSourceLeg?.nextHop == b.preferredSourceLeg?.nextHop
    }

    /// The IP_OPTIONS bytes a program passes to setsockopt for the source route: type, length, pointer 4, the hops.
    public var ipOptionBytes: [UInt8]? {
        guard let sr = sourceRoute else { return nil }
        var b: [UInt8] = [sr.strict ? 0x89 : 0x83, UInt8(3 + 4 * sr.hops.count), 4]
        for h in sr.hops { b += h.octets }
        return b
    }
}

/// What one side (engine or kernel) did.
public struct ConnectOutcome: Sendable {
    /// nil: established.
    public var errno: Errno?
    public var source: IPv4Address?
    public var sourcePort: UInt16?
    /// The device and next hop: the engine's decision, or for the kernel what the wire shows.
    public var device: String?
    public var nextHop: IPv4Address?
    /// Every (source, device, next hop) the lookups allow (equal-cost legs the kernel picks by hash); the decision is
    /// one of them.
    public var alternatives: [Leg] = []
    /// The legs of the lookup that chose the source (saddr 0), each with the source it gives.
    public var sourceLegs: [Leg] = []
    public struct Leg: Sendable, Hashable { public var source: IPv4Address; public var device: String; public var nextHop: IPv4Address }
    /// Handshake time (SYN to SYN-ACK) in nanoseconds.
    public var handshakeNanoseconds: Int64?
    /// What came back of the payload.
    public var echoed: [UInt8]?
    public var trace: [String] = []
    public var observed: ObservedPath?
    /// The TIME_WAIT socket on the connection's 4-tuple that `tcp_twsk_unique` let it take over (the engine's
    /// decision; for the kernel, the one its port was held by before its connect).
    public var reusedTimeWait: PortTable.TimeWait?

    public init(errno: Errno? = nil, source: IPv4Address? = nil, sourcePort: UInt16? = nil) {
        self.errno = errno; self.source = source; self.sourcePort = sourcePort
    }
}
