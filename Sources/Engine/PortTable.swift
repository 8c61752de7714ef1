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
    /// A TIME_WAIT socket (`struct tcp_timewait_sock`) as `tcp_twsk_unique` reads it. The driver reads the 4-tuple,
    /// bound device, substate and age with NETLINK_SOCK_DIAG (`inet_twsk_diag_fill`); `tw_snd_nxt` and
    /// `tw_ts_recent` are not exported by the kernel, so they come from the capture of the connection that left it
    /// (nil when it was not watched).
    public struct TimeWait: Hashable, Sendable {
        public var tuple: FourTuple
        /// `tw_bound_dev_if` by name (nil: not bound).
        public var boundDevice: String?
        /// `tw_substate` is FIN_WAIT2 (an orphaned FIN_WAIT2 socket parked as a timewait socket).
        public var finWait2: Bool
        /// `tw_entry_stamp` on the engine's clock (negative: before the engine's zero).
        public var enteredAt: Instant
        /// `tw_ts_recent_stamp != 0`: the connection had timestamps.
        public var timestamps: Bool
        /// `tw_snd_nxt`, when known.
        public var sndNxt: UInt32?
        /// `tw_ts_recent`, when known.
        public var tsRecent: UInt32?
        public init(tuple: FourTuple, boundDevice: String? = nil, finWait2: Bool = false, enteredAt: Instant,
                    timestamps: Bool = true, sndNxt: UInt32? = nil, tsRecent: UInt32? = nil) {
            self.tuple = tuple; self.boundDevice = boundDevice; self.finWait2 = finWait2; self.enteredAt = enteredAt
            self.timestamps = timestamps; self.sndNxt = sndNxt; self.tsRecent = tsRecent
        }
    }
    public var boundPorts: Set<UInt16> = []
    /// Established (and other non-TIME_WAIT) connections.
    public var connections: Set<FourTuple> = []
    /// TIME_WAIT sockets, which `__inet_check_established` may take over (`tcp_twsk_unique`).
    public var timeWait: [TimeWait] = []
    /// The local end of every socket (listening, bound, connected, TIME_WAIT): the bind hash buckets.
    public var endpoints: Set<Endpoint> = []
    public init(boundPorts: Set<UInt16> = [], connections: Set<FourTuple> = [], endpoints: Set<Endpoint> = [],
                timeWait: [TimeWait] = []) {
        self.boundPorts = boundPorts
        self.connections = connections
        self.endpoints = endpoints
        self.timeWait = timeWait
    }
    var connectPorts: Set<UInt16> { Set(connections.map(\.sourcePort) + timeWait.map(\.tuple.sourcePort)) }

    /// What `__inet_check_established` decides for a 4-tuple: unique, unique by taking over a TIME_WAIT socket, or
    /// not unique (with why, for the trace).
    public enum Established: Equatable, Sendable {
        case unique
        case reuse(TimeWait, why: String)
        case taken(why: String)
    }

    /// Mirrors `__inet_check_established()` (net/ipv4/inet_hashtables.c) with `tcp_twsk_unique()`
    /// (net/ipv4/tcp_ipv4.c). `bound`: the port came from bind() (`twp == NULL`: a TIME_WAIT with timestamps is
    /// always taken over); otherwise the ephemeral search (`twp != NULL`: only with `tcp_tw_reuse`). `device` is the
    /// new socket's bound device (`inet_match` → `inet_sk_bound_dev_eq`: an unbound TIME_WAIT matches any).
    public func checkEstablished(_ t: FourTuple, device: String?, bound: Bool, now: Instant, sysctls: NodeSysctls) -> Established {
        if connections.contains(t) { return .taken(why: "4-tuple held by a connection") }
        guard let tw = timeWait.first(where: { $0.tuple == t && ($0.boundDevice == nil || $0.boundDevice == device) }) else {
            return .unique
        }
        return Self.tcpTwskUnique(tw, bound: bound, now: now, sysctls: sysctls)
    }

    /// Mirrors `tcp_twsk_unique()` in net/ipv4/tcp_ipv4.c: reuse = tcp_tw_reuse, 0 for a FIN_WAIT2 substate, 2 means
    /// only a loopback address (127/8 at either end) or a socket bound to lo; then the TIME_WAIT is taken over when it
    /// had timestamps and either the port was bound (`!twp`) or reuse is on and `time_after32(now_ms, tw_entry_stamp
    /// + tcp_tw_reuse_delay)`.
    public static func tcpTwskUnique(_ tw: TimeWait, bound: Bool, now: Instant, sysctls: NodeSysctls) -> Established {
        var reuse = sysctls.tcpTwReuse
        var why = "tcp_tw_reuse \(reuse)"
        if tw.finWait2 { reuse = 0; why = "tw_substate FIN_WAIT2" }
        if reuse == 2 {
            let loopback = tw.boundDevice == "lo" || tw.tuple.source.value >> 24 == 127 || tw.tuple.destination.value >> 24 == 127
            if !loopback { reuse = 0; why = "tcp_tw_reuse 2 and neither end loopback nor bound to lo" }
        }
        guard tw.timestamps else { return .taken(why: "TIME_WAIT without timestamps (tw_ts_recent_stamp 0)") }
        let ageMs = now.milliseconds - tw.enteredAt.milliseconds
        if bound { return .reuse(tw, why: "bound port (twp NULL), timestamps on") }
        guard reuse != 0 else { return .taken(why: why) }
        // time_after32(tcp_clock_ms(), tw_entry_stamp + delay): strictly after.
        guard ageMs > Int64(sysctls.tcpTwReuseDelay) else {
            return .taken(why: "\(why), TIME_WAIT \(ageMs) ms old, not after tcp_tw_reuse_delay \(sysctls.tcpTwReuseDelay) ms")
        }
        return .reuse(tw, why: "\(why), TIME_WAIT \(ageMs) ms old > tcp_tw_reuse_delay \(sysctls.tcpTwReuseDelay) ms")
    }

    /// bind() to an explicit port without SO_REUSEADDR, as `inet_csk_bind_conflict()` decides it: a socket already
    /// has that port and their addresses overlap (equal, or either is 0.0.0.0) — a TIME_WAIT socket included. With
    /// no endpoints known, any port held by bind() conflicts.
    public func bindConflict(address: IPv4Address, port: UInt16) -> Endpoint? {
        if endpoints.isEmpty { return boundPorts.contains(port) ? Endpoint(address: .any, port: port) : nil }
        return endpoints.first { $0.port == port && ($0.address == .any || address == .any || $0.address == address) }
    }
}

extension EphemeralPorts {
    /// Mirrors `inet_csk_find_open_port()` (net/ipv4/inet_connection_sock.c): bind() to port 0 takes a port at
    /// bind time — a random offset made odd (`offset |= 1`: the opposite parity of `__inet_hash_connect`'s), the
    /// range scanned by twos, then the other parity; reserved ports skipped; a port is free unless a socket on it
    /// (TIME_WAIT included) has an overlapping address (`inet_csk_bind_conflict`, without SO_REUSEADDR). Nil: none
    /// free (bind fails with EADDRINUSE). The bucket it makes is bind()'s (`fastreuse >= 0`): connect() of other
    /// sockets skips the port from then on.
    public static func findOpenPort(address: IPv4Address, sysctls: NodeSysctls, table: PortTable,
                                    random: inout EngineRandom) -> (port: UInt16, tried: Int)? {
        let low = UInt32(sysctls.ipLocalPortRange.lowerBound)
        let high = UInt32(sysctls.ipLocalPortRange.upperBound) + 1
        var remaining = high - low
        if remaining > 1 { remaining &= ~1 }
        var offset = random.below(remaining) | 1
        var tried = 0
        while true {
            var port = low + offset
            var i: UInt32 = 0
            while i < remaining {
                if port >= high { port -= remaining }
                defer { i += 2; port += 2 }
                tried += 1
                let p = UInt16(port)
                if sysctls.ipLocalReservedPorts.contains(p) { continue }
                if table.bindConflict(address: address, port: p) != nil { continue }
                if table.endpoints.isEmpty, table.connectPorts.contains(p) {
                    // Without the sockets' addresses, a port in use by connect conflicts when the address overlaps.
                    if table.connections.contains(where: { $0.sourcePort == p && (address == .any || $0.source == address) }) ||
                        table.timeWait.contains(where: { $0.tuple.sourcePort == p && (address == .any || $0.tuple.source == address) }) { continue }
                }
                return (p, tried)
            }
            if offset == 0 { return nil }
            offset -= 1
            if offset & 1 != 0 { return nil }
        }
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
        /// The TIME_WAIT socket taken over (`tcp_twsk_unique`), if the port came with one.
        public var reused: PortTable.TimeWait?
        public var reuseReason: String?
    }

    public mutating func choose(portOffset: UInt64, source: IPv4Address, destination: IPv4Address, destinationPort: UInt16,
                                sysctls: NodeSysctls, table: PortTable, random: inout EngineRandom,
                                device: String? = nil, now: Instant = .zero) -> Result<Choice, Errno> {
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
                var reused: PortTable.TimeWait?, reason: String?
                if connectPorts.contains(p) {
                    // check_established: the 4-tuple must be new, or held by a TIME_WAIT socket tcp_twsk_unique takes over.
                    let t = PortTable.FourTuple(source: source, sourcePort: p, destination: destination, destinationPort: destinationPort)
                    switch table.checkEstablished(t, device: device, bound: false, now: now, sysctls: sysctls) {
                    case .unique: break
                    case .taken: continue
                    case .reuse(let tw, let why): reused = tw; reason = why
                    }
                }
                // Found: advance the perturbation for this slot (i = max(i, random_below(8) * step)).
                let adv = max(i, random.below(8) * step)
                perturb[index] = perturb[index]! &+ adv &+ step
                return .success(Choice(port: p, offset: offset, tried: tried, reused: reused, reuseReason: reason))
            }
            offset += 1
            if offset & 1 != 0, remaining > 1 { continue }
            return .failure(.addressNotAvailable)
        }
    }
}
