import Engine
import CNetSys
import Glibc
import NetCore
import Netlink
import Resolver
import SystemPackage
import Wire

/// The node's state an engine starts from, read from its namespace: routing snapshot, sysctls, TCP ports in use.
public struct NodeState: Sendable {
    public var snapshot: RoutingSnapshot
    public var sysctls: NodeSysctls
    /// The ports, with every TIME_WAIT's `enteredAt` relative to `readAt` (see `ports(at:)`).
    public var ports: PortTable
    /// CLOCK_MONOTONIC when the sockets were read.
    public var readAt: Int64

    /// Read the node. `history` gives what the capture saw of earlier connections (`tw_snd_nxt`, `tw_ts_recent`);
    /// TIME_WAIT sockets it does not know are assumed to have had timestamps when the node's `tcp_timestamps` is on.
    public static func read(_ namespace: NetworkNamespace, history: FlowHistory = FlowHistory()) throws -> NodeState {
        let snapshot = try RoutingSnapshot.read(namespace)
        let values: [String: String] = try namespace.run {
            var v: [String: String] = [:]
            for k in NodeSysctls.keys { if let s = try? Sysctls.read(k) { v[k] = s } }
            return v
        }
        let sockets = try SockDiag.tcpSockets(in: namespace)
        return make(snapshot: snapshot, values: values, sockets: sockets, history: history)
    }

    /// The same through the sockets and files `handles` keep open, and its snapshot while nothing changed it
    /// (`NodeHandles.routingSnapshot`). With `snapshot`, that one (read earlier in the same run) is taken as it is.
    public static func read(_ handles: NodeHandles, history: FlowHistory = FlowHistory(), snapshot given: RoutingSnapshot? = nil) throws -> NodeState {
        let snapshot: RoutingSnapshot, all: [String: String]
        if let given { (snapshot, all) = (given, try handles.sysctlValues(only: nodeKeys)) } else { (snapshot, all) = try handles.routingSnapshotAndSysctls() }
        var values: [String: String] = [:]
        for k in NodeSysctls.keys { if let v = all[k] { values[k] = v } }
        let sockets = try handles.tcpSockets()
        return make(snapshot: snapshot, values: values, sockets: sockets, history: history)
    }

    static let nodeKeys = Set(NodeSysctls.keys)

    static func make(snapshot: RoutingSnapshot, values: [String: String], sockets: [DiagSocket], history: FlowHistory) -> NodeState {
        let readAt = monotonicNanoseconds()
        var sysctls = NodeSysctls(reading: values)
        sysctls.readSourceRoute(snapshot.sysctls, devices: snapshot.links.map(\.name))   // the snapshot read them
        let names = Dictionary(snapshot.links.map { (UInt32(bitPattern: $0.index), $0.name) }, uniquingKeysWith: { a, _ in a })
        return NodeState(snapshot: snapshot, sysctls: sysctls,
                         ports: portTable(sockets, names: names, history: history, timestamps: sysctls.tcpTimestamps != 0),
                         readAt: readAt)
    }

    /// The node as a new read at CLOCK_MONOTONIC `time` would find its TIME_WAITs to `destination:port`, without the
    /// read, when nothing but timers can have changed its sockets since this one (the runs of a comparison make
    /// none between the engine's read and the kernel's connect: the engine's flow has no kernel socket, the kernel's
    /// previous one was in TIME_WAIT before its run returned): this state, unless a TIME_WAIT to the destination is
    /// due to expire by then (its timer fires at or after `idiag_expires`, never before), nil then — read again.
    /// (A sock_diag dump walks the whole established hash, which every namespace shares: ~1.3 ms here.)
    public func unchanged(at time: Int64, destination: IPv4Address, port: UInt16, margin: Int64 = 100_000_000) -> NodeState? {
        for tw in ports.timeWait where tw.tuple.destination == destination && tw.tuple.destinationPort == port {
            let expires = readAt + tw.enteredAt.nanoseconds + SockDiag.timeWaitLengthMs * 1_000_000
            if expires <= time + margin { return nil }
        }
        return self
    }

    /// The ports on an engine's clock whose zero is CLOCK_MONOTONIC `origin`.
    public func ports(at origin: Int64) -> PortTable {
        var p = ports
        for i in p.timeWait.indices { p.timeWait[i].enteredAt = p.timeWait[i].enteredAt + .nanoseconds(readAt - origin) }
        return p
    }

    /// LISTEN and bound-only sockets hold their port (bind()); timewait sockets become `TimeWait` (age from the
    /// timer: `TCP_TIMEWAIT_LEN - idiag_expires`); the rest are 4-tuples in use.
    public static func portTable(_ sockets: [DiagSocket], names: [UInt32: String], history: FlowHistory, timestamps: Bool) -> PortTable {
        var table = PortTable()
        for s in sockets {
            table.endpoints.insert(.init(address: s.source, port: s.sourcePort))
            if s.holdsBoundPort && !s.isTimeWait { table.boundPorts.insert(s.sourcePort); continue }
            let t = PortTable.FourTuple(source: s.source, sourcePort: s.sourcePort, destination: s.destination, destinationPort: s.destinationPort)
            let known = history.ends[t]
            // A socket that bound its port with bind() made (or turned) the port's bucket bind()'s: connect() of
            // other sockets skips the port while the bucket lives (`tb->fastreuse >= 0` in __inet_hash_connect).
            if known?.bound == true { table.boundPorts.insert(s.sourcePort) }
            guard s.isTimeWait else { table.connections.insert(t); continue }
            let age = SockDiag.timeWaitLengthMs - Int64(s.expiresMs)
            table.timeWait.append(.init(tuple: t, boundDevice: s.boundIndex == 0 ? nil : names[s.boundIndex] ?? "if\(s.boundIndex)",
                                        finWait2: s.state == 5, enteredAt: .milliseconds(-age),
                                        timestamps: known?.timestamps ?? timestamps, sndNxt: known?.sndNxt, tsRecent: known?.tsRecent))
        }
        return table
    }
}

/// What the captures saw of connections that ended, by 4-tuple: the sender's `snd_nxt` at the end and the peer's
/// last TS value (`tw_snd_nxt`, `tw_ts_recent` of the TIME_WAIT it left), which the kernel does not export.
public struct FlowHistory: Sendable {
    public struct End: Sendable, Equatable {
        public var sndNxt: UInt32
        public var tsRecent: UInt32?
        public var timestamps: Bool
        /// The socket called bind() (its port's bucket is bind()'s).
        public var bound: Bool
    }
    public var ends: [PortTable.FourTuple: End] = [:]
    public init() {}
}

func readFile(_ path: String) throws -> String {
    let fd = try sys("open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = try sys("read \(path)") { read(fd, &buf, buf.count) }
        if n == 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// Runs the connect engine for real inside a namespace: packets out through a raw socket, packets in through a
/// filtered packet socket, the node's kernel kept out of the flow by an `EngineGuard`, time from CLOCK_MONOTONIC.
/// The engine itself stays pure; this is the loop around it.
public struct EngineRunner {
    public var namespace: NetworkNamespace
    /// How long to wait for the echo of a payload and for the close after it.
    public var dataTimeout: Int64 = 3 * 1_000_000_000
    /// The namespace's sockets kept open across runs (the raw socket and the packet socket); nil: opened for this run.
    public var handles: NodeHandles?

    public init(namespace: NetworkNamespace, handles: NodeHandles? = nil) { self.namespace = namespace; self.handles = handles }

    public func run(_ spec: ConnectSpec, state: NodeState, guardian: EngineGuard, seed: UInt64? = nil) throws -> ConnectOutcome {
        var resolver = FibResolver(snapshot: state.snapshot)
        resolver.preferredLeg = spec.preferredLeg
        var choosing = resolver
        if let leg = spec.preferredSourceLeg { choosing.preferredLeg = leg }
        let origin = monotonicNanoseconds()
        var config = EngineConfig(sysctls: state.sysctls, ports: state.ports(at: origin), seed: seed ?? UInt64(truncatingIfNeeded: realtimeNanoseconds()))
        config.realtimeAtZero = realtimeNanoseconds()
        func now() -> Instant { Instant(nanoseconds: monotonicNanoseconds() - origin) }
        var engine = ConnectEngine(resolver: LegPreferringResolver(choosing: choosing, rest: resolver), config: config)
        var out = ConnectOutcome()
        func record(_ actions: [Action]) { for case .trace(let t) in actions { out.trace.append(t.description) } }
        func setup(_ o: SocketOption) -> Errno? { engine.setOption(o) }
        var early: Errno?
        if let d = spec.device { early = early ?? setup(.bindToDevice(d)) }
        if let m = spec.mark { early = early ?? setup(.mark(m)) }
        if let t = spec.tos { early = early ?? setup(.tos(t)) }
        if let n = spec.synRetries { early = early ?? setup(.synCount(n)) }
        if let b = spec.ipOptionBytes { early = early ?? setup(.ipOptions(b)) }
        if let e = early { out.errno = e; out.trace.append("setsockopt: \(e.name)"); return out }
        if spec.bindAddress != nil || spec.bindPort != nil {
            let (e, actions) = engine.bind(address: spec.bindAddress ?? .any, port: spec.bindPort ?? 0, now: now())
            record(actions)
            if let e { out.errno = e; return out }
        }
        let raw = try handles?.raw ?? RawSocket(in: namespace)
        let index = Dictionary(state.snapshot.links.map { ($0.name, $0.index) }, uniquingKeysWith: { a, _ in a })

        let (err, first) = engine.connect(.inet(spec.destination, spec.port), now: now())
        record(first)
        if let err, err != .nowInProgress {
            out.errno = err
            return out
        }
        out.source = engine.sourceAddress
        out.sourcePort = engine.sourcePort
        out.reusedTimeWait = engine.inheritedTimeWait
        out.device = engine.route?.device
        out.nextHop = engine.route?.nextHop
        if let rt = engine.route, var flow = engine.connectQuery?.flow {
            // Connect's lookups again (the engine's lookup inputs), untraced, keeping every equal-cost answer: #1
            // (saddr 0) gives the sources, #3 (the source and the real ports) the legs. Lookup #1 starts from the
            // bound source unless connect chose one (nothing bound, or a broadcast or multicast address bound).
            var sources = [engine.sourceAddress]
            if flow.source == .any {
                out.sourceLegs = resolver.decide(flow, traced: false).candidates.map { .init(source: $0.source, device: $0.device, nextHop: $0.nextHop) }
                sources = Array(Set(out.sourceLegs.map(\.source)))
            }
            for src in sources {
                flow.source = src
                flow.sourcePort = engine.sourcePort
                flow.anySourcePort = false
                out.alternatives += resolver.decide(flow, traced: false).candidates.map { .init(source: src, device: $0.device, nextHop: $0.nextHop) }
            }
            out.alternatives.append(.init(source: engine.sourceAddress, device: rt.device, nextHop: rt.nextHop))
        }
        // Receive only this flow, and keep the node's kernel from resetting it.
        let filter = BPFProgram.engineFlow(address: engine.sourceAddress.value, port: engine.sourcePort)
        let rx = try handles?.engineReceiver(filter) ?? PacketSocket(in: namespace, filter: filter)
        try guardian.protect(engine.sourceAddress, port: engine.sourcePort, device: engine.boundDevice)
        defer { try? guardian.release(engine.sourceAddress, port: engine.sourcePort, device: engine.boundDevice) }
        // A connect bound to a device, to one of the node's own addresses: the replies come back by lo, and the
        // socket finds them when their rt_iif — the device holding the address — is the bound one (see `arrival`
        // below). Guard lo too then, or the node's TCP resets the engine's connection (selftest connect seed 3026).
        let loopbackName = state.snapshot.links.first(where: \.isLoopback)?.name
        let holderName = state.snapshot.addresses.first { $0.prefix.address == engine.sourceAddress }
            .flatMap { a in state.snapshot.links.first { $0.index == a.index }?.name }
        let guardLoopback = engine.route?.kind == .local && engine.boundDevice != nil && holderName == engine.boundDevice
        if guardLoopback, let lo = loopbackName { try guardian.protect(engine.sourceAddress, port: engine.sourcePort, device: lo) }
        defer { if guardLoopback, let lo = loopbackName { try? guardian.release(engine.sourceAddress, port: engine.sourcePort, device: lo) } }
        let names = Dictionary(index.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })
        // The device a socket lookup compares with a bound device (`inet_iif`): the arrival device, except for a
        // packet looped back from this node itself (an ICMP error the node's own stack made, as on a neighbour
        // failure), whose route's rt_iif is the device of the local route of its destination — the device holding
        // that address (`ip_route_output_key_hash_rcu`, RTN_LOCAL: "orig_oif points to fib result device").
        let loopback = state.snapshot.links.first(where: \.isLoopback)?.index
        let holder = Dictionary(state.snapshot.addresses.map { ($0.prefix.address, $0.index) }, uniquingKeysWith: { a, _ in a })
        func arrival(_ ifindex: Int32, _ ip: [UInt8]) -> String? {
            guard ifindex == loopback, ip.count >= 20 else { return names[ifindex] }
            let dst = IPv4Address(UInt32(ip[16]) << 24 | UInt32(ip[17]) << 16 | UInt32(ip[18]) << 8 | UInt32(ip[19]))
            return holder[dst].flatMap { names[$0] } ?? names[ifindex]
        }

        var deadline: Instant?
        var done = false
        var established = false
        var echoed: [UInt8] = []
        var closeDeadline: Int64?
        var synAt: Instant?
        func perform(_ actions: [Action]) throws {
            for a in actions {
                switch a {
                case .send(let p):
                    guard let ifx = index[p.device] else {
                        throw DriverError(operation: "engine send", detail: "no device \(p.device) in \(namespace.name)")
                    }
                    if synAt == nil { synAt = now() }
                    // To one of the node's own addresses the kernel's socket has an RTN_LOCAL route out of lo; a raw
                    // send naming lo would be routed on-link through lo instead (the oif misses the local route's
                    // device), and the node's TCP then answers no RST (tcp_v4_send_reset wants RTN_LOCAL). Without a
                    // device the kernel finds the local route, as for its own socket.
                    let local = engine.route?.kind == .local
                    try raw.send(p.bytes, nextHop: p.nextHop, ifindex: local ? 0 : ifx, source: engine.sourceAddress)
                case .armTimer(let t): deadline = t
                case .cancelTimer: deadline = nil
                case .established:
                    established = true
                    // On the wire: from the SYN's sendmsg to the SYN-ACK processed (the kernel's figure is from
                    // connect() to writable, which also includes its route lookups).
                    out.handshakeNanoseconds = synAt.map { (now() - $0).inNanoseconds } ?? engine.handshakeTime
                case .failed(let e):
                    out.errno = e
                    done = true
                case .received(let d): echoed += d
                case .closed: if established { done = true }
                case .trace(let t): out.trace.append(t.description)
                }
            }
        }
        try perform(first.filter { if case .trace = $0 { return false }; return true })
        var sentPayload = false
        var closing = false
        while !done {
            if let sig = Interrupts.signal { throw Interrupted(operation: "engine connect", signal: sig) }
            let t = now()
            if established {
                if let p = spec.payload, !p.isEmpty, !sentPayload {
                    sentPayload = true
                    closeDeadline = t.nanoseconds + dataTimeout
                    try perform(engine.send(p, now: t))
                    continue
                }
                let wantMore = (spec.payload.map { echoed.count < $0.count } ?? false)
                if !wantMore, !closing {
                    closing = true
                    closeDeadline = t.nanoseconds + dataTimeout
                    try perform(engine.close(now: t))
                    continue
                }
                if let cd = closeDeadline, t.nanoseconds >= cd { break }
            }
            var wait: Int64 = 200_000_000   // wake at least this often to notice Ctrl-C
            if let d = deadline { wait = min(wait, max(0, d.nanoseconds - t.nanoseconds)) }
            if let cd = closeDeadline { wait = min(wait, max(0, cd - t.nanoseconds)) }
            if rx.wait(timeoutNanoseconds: wait) {
                while let f = try rx.receive() {
                    guard let ip = f.ipv4 else { continue }
                    let bytes = Array(ip)
                    try perform(engine.receive(bytes, now: now(), device: arrival(f.ifindex, bytes)))
                }
            } else if let d = deadline, now() >= d {
                try perform(engine.timerFired(now: now()))
            }
        }
        if spec.payload != nil, established { out.echoed = echoed }   // as the kernel side: only a connection echoes
        return out
    }
}

/// The namespace's FIB for the engine, with the equal-cost legs the kernel was seen to take answered first: one
/// preference for the lookups that choose the source (saddr 0), another for the rest (the kernel's leg on the wire).
struct LegPreferringResolver: RouteResolver {
    var choosing: FibResolver
    var rest: FibResolver
    func outputRoute(_ flow: Flow) -> Result<ResolvedRoute, Errno> {
        flow.source == .any ? choosing.outputRoute(flow) : rest.outputRoute(flow)
    }
    func inetAddrType(_ address: IPv4Address) -> RouteType { rest.inetAddrType(address) }
}
