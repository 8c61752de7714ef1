import NetCore
import SystemPackage
import Wire

/// What an engine starts from: the node's sysctls, its ports in use, the keyed-hash secrets and a random seed.
public struct EngineConfig: Sendable {
    public var sysctls: NodeSysctls
    public var ports: PortTable
    /// `net_secret` (ISN, port offset) and `ts_secret` (TS offset): per engine, like the kernel's per boot.
    public var netSecret: SipKey
    public var tsSecret: SipKey
    public var seed: UInt64
    /// The wall clock in nanoseconds at `Instant.zero` (the ISN adds `ktime_get_real_ns() >> 6`).
    public var realtimeAtZero: Int64

    public init(sysctls: NodeSysctls = NodeSysctls(), ports: PortTable = PortTable(), seed: UInt64,
                realtimeAtZero: Int64 = 0) {
        self.sysctls = sysctls
        self.ports = ports
        var r = EngineRandom(seed: seed)
        netSecret = SipKey(r.next(), r.next())
        tsSecret = SipKey(r.next(), r.next())
        self.seed = r.next()
        self.realtimeAtZero = realtimeAtZero
    }
}

/// A user-space rewrite of Linux's IPv4 TCP active open, sans I/O: `connect`, `receive` and `timerFired` take the
/// time and return actions (packets to send, a timer to arm, events, a trace). It owns no socket and reads no clock,
/// so every path is a deterministic test. Each step is named after the kernel function it mirrors, in a file named
/// after the kernel file that holds it (ConnectEngine+af_inet.swift, +tcp_ipv4, +tcp_output, +tcp_input, +tcp_timer,
/// +ip_output, +tcp, +sockopt). One socket, as in the kernel: its state is grouped as the kernel's structures nest.
public struct ConnectEngine<Resolver: RouteResolver> {
    public let resolver: Resolver
    public var config: EngineConfig
    var random: EngineRandom
    var ports = EphemeralPorts()

    /// `struct socket` / `struct sock`.
    public internal(set) var sk = Sock()
    /// `struct inet_sock`.
    public internal(set) var inet = InetSock()
    /// `struct inet_connection_sock`: the retransmission timer and its counters.
    public internal(set) var icsk = InetConnectionSock()
    /// `struct tcp_sock`.
    public internal(set) var tcp = TCPSock()
    /// What the last connect brought to its route lookups (`ConnectRoute.decide`'s query), before it chose a source.
    public internal(set) var connectQuery: ConnectRouteQuery?

    public init(resolver: Resolver, config: EngineConfig) {
        self.resolver = resolver
        self.config = config
        random = EngineRandom(seed: config.seed)
    }

    func trace(_ now: Instant, _ function: String, _ detail: String) -> Action {
        .trace(TraceEvent(time: now, function: function, detail: detail))
    }
}

/// The fields drivers and tests read most, by their old names.
extension ConnectEngine {
    public var socketState: SocketState { sk.socketState }
    public var state: TCPState { sk.state }
    public var pendingError: Errno? { sk.pendingError }
    public var boundDevice: String? { sk.boundDevice }
    public var route: ResolvedRoute? { sk.route }
    public var boundAddress: IPv4Address { inet.boundAddress }
    public var boundPort: UInt16 { inet.boundPort }
    public var sourceAddress: IPv4Address { inet.sourceAddress }
    public var sourcePort: UInt16 { inet.sourcePort }
    public var destination: IPv4Address { inet.destination }
    public var destinationPort: UInt16 { inet.destinationPort }
    public var sndWscale: UInt8 { tcp.sndWscale }
    public var inheritedTimeWait: PortTable.TimeWait? { tcp.inheritedTimeWait }
    public var timerDeadline: Instant? { icsk.timer.expiresAt }
    /// The handshake time in nanoseconds, once established.
    public var handshakeTime: Int64? { tcp.handshakeRTT?.inNanoseconds }
}

extension ConnectEngine {
    /// Tests only: put the ISN where a kernel capture had it (the ISN is keyed and clocked, so it cannot be derived).
    public mutating func testingSetISS(_ seq: SeqNumber) {
        let delta = seq - tcp.iss
        tcp.iss = seq
        tcp.sndUna = seq
        tcp.sndNxt = tcp.sndNxt + UInt32(bitPattern: delta)
    }
}
