import Engine
import NetCore
import SystemPackage

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
    /// A leg with the source address it gives.
    public struct Leg: Sendable, Hashable {
        public var source: IPv4Address
        public var leg: NetCore.Leg
        public init(source: IPv4Address, device: String, nextHop: IPv4Address) {
            self.source = source; leg = NetCore.Leg(device: device, nextHop: nextHop)
        }
        public var device: String { leg.device }
        public var nextHop: IPv4Address { leg.nextHop }
    }
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
