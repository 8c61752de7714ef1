import NetCore
import SystemPackage

/// The node's TCP ports as `__inet_hash_connect` sees them: ports held by bind() (never shared with connect) and the
/// 4-tuples of existing connections (a port used by connect may be reused for another destination).
public struct PortTable: Sendable, Equatable {
    public struct FourTuple: Hashable, Sendable {
        public var source: IPv4Address, sourcePort: UInt16, destination: IPv4Address, destinationPort: UInt16
        public init(source: IPv4Address, sourcePort: UInt16, destination: IPv4Address, destinationPort: UInt16) {
            self.source = source; self.sourcePort = sourcePort; self.destination = destination; self.destinationPort = destinationPort
        }
    }
    public struct Endpoint: Hashable, Sendable {
        public var address: IPv4Address, port: UInt16
        public init(address: IPv4Address, port: UInt16) { self.address = address; self.port = port }
    }
    public var boundPorts: Set<UInt16> = []
    public var connections: Set<FourTuple> = []
    /// The local end of every socket (listening, bound, connected, TIME_WAIT): the bind hash buckets.
    public var endpoints: Set<Endpoint> = []
    public init(boundPorts: Set<UInt16> = [], connections: Set<FourTuple> = [], endpoints: Set<Endpoint> = []) {
        self.boundPorts = boundPorts
        self.connections = connections
        self.endpoints = endpoints
    }
    var connectPorts: Set<UInt16> { Set(connections.map(\.sourcePort)) }

    /// bind() to an explicit port without SO_REUSEADDR, as `inet_csk_bind_conflict()` decides it: a socket already
    /// has that port and their addresses overlap (equal, or either is 0.0.0.0) — a TIME_WAIT socket included. With
    /// no endpoints known, any port held by bind() conflicts.
    public func bindConflict(address: IPv4Address, port: UInt16) -> Endpoint? {
        if endpoints.isEmpty { return boundPorts.contains(port) ? Endpoint(address: .any, port: port) : nil }
        return endpoints.first { $0.port == port && ($0.address == .any || address == .any || $0.address == address) }
    }
}

/// Mirrors `__inet_hash_connect()` in net/ipv4/inet_hashtables.c: offset from a keyed hash of (saddr, daddr, dport)
/// plus a perturbation table, a first pass over ports of `low`'s parity, then the other parity, reserved ports and
/// bind()-held ports skipped, 4-tuple uniqueness for ports already used by connect.
public struct EphemeralPorts: Sendable {
    static let perturbSize = 1 << 16
    /// `table_perturb`, randomised once (lazily, per slot, from the engine's generator).
    var perturb: [Int: UInt32] = [:]

    public init() {}

    public struct Choice: Sendable, Equatable {
        public var port: UInt16
        public var offset: UInt32
        public var tried: Int
    }

    public mutating func choose(portOffset: UInt64, source: IPv4Address, destination: IPv4Address, destinationPort: UInt16,
                                sysctls: NodeSysctls, table: PortTable, random: inout EngineRandom) -> Result<Choice, Errno> {
        let low = UInt32(sysctls.ipLocalPortRange.lowerBound)
        let high = UInt32(sysctls.ipLocalPortRange.upperBound) + 1
        let step: UInt32 = 2   // no per-socket IP_LOCAL_PORT_RANGE
        var remaining = high - low
        if remaining > 1 { remaining &= ~1 }
        let index = Int(portOffset & UInt64(Self.perturbSize - 1))
        if perturb[index] == nil { perturb[index] = random.u32() }
        var offset = UInt32(truncatingIfNeeded: (UInt64(perturb[index]!) + (portOffset >> 32)) % UInt64(remaining))
        offset &= ~1
        var tried = 0
        let connectPorts = table.connectPorts
        while true {
            var port = low + offset
            var i: UInt32 = 0
            while i < remaining {
                if port >= high { port -= remaining }
                defer { i += step; port += step }
                tried += 1
                let p = UInt16(port)
                if sysctls.ipLocalReservedPorts.contains(p) { continue }
                if table.boundPorts.contains(p) { continue }
                if connectPorts.contains(p) {
                    // check_established: the 4-tuple must be new.
                    let t = PortTable.FourTuple(source: source, sourcePort: p, destination: destination, destinationPort: destinationPort)
                    if table.connections.contains(t) { continue }
                }
                // Found: advance the perturbation for this slot (i = max(i, random_below(8) * step)).
                let adv = max(i, random.below(8) * step)
                perturb[index] = perturb[index]! &+ adv &+ step
                return .success(Choice(port: p, offset: offset, tried: tried))
            }
            offset += 1
            if offset & 1 != 0, remaining > 1 { continue }
            return .failure(.addressNotAvailable)
        }
    }
}
