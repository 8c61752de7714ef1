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
/// so every path is a deterministic test. Each step is named after the kernel function it mirrors.
public struct ConnectEngine<Resolver: RouteResolver> {
    public let resolver: Resolver
    public var config: EngineConfig
    var random: EngineRandom
    var ports = EphemeralPorts()

    // struct socket / struct sock
    public private(set) var socketState = SocketState.unconnected
    public private(set) var state = TCPState.close
    /// `sk->sk_err`: read and cleared by `socketError()` (SO_ERROR) and by a later connect().
    public private(set) var pendingError: Errno?
    var disconnects = 0

    // inet_sock
    public private(set) var boundAddress = IPv4Address.any
    public private(set) var boundPort: UInt16 = 0
    public private(set) var sourceAddress = IPv4Address.any
    public private(set) var sourcePort: UInt16 = 0
    public private(set) var destination = IPv4Address.any
    public private(set) var destinationPort: UInt16 = 0
    var ipID: UInt16 = 0

    // Socket options.
    public private(set) var boundDevice: String?
    public private(set) var mark: UInt32 = 0
    public private(set) var tos: UInt8 = 0
    public private(set) var ttl = -1
    public private(set) var dontRoute = false
    public private(set) var synCount = 0
    public private(set) var userMSS = 0
    public private(set) var ipOptions: SocketIPOptions?
    /// The options as they go on this connection's packets (final destination in the last slot), built at connect.
    var wireOptions: [IPv4Option] = []
    public private(set) var receiveBuffer: Int?
    public private(set) var uid: UInt32 = 0

    // The route and what connect derived from it.
    public private(set) var route: ResolvedRoute?
    public private(set) var advmss = 0
    public private(set) var rcvWnd: UInt32 = 0
    public private(set) var rcvWscale: UInt8 = 0
    public private(set) var windowClamp: UInt32 = 0

    // tcp_sock
    public private(set) var iss = SeqNumber(0)
    public private(set) var sndUna = SeqNumber(0)
    public private(set) var sndNxt = SeqNumber(0)
    public private(set) var rcvNxt = SeqNumber(0)
    public private(set) var sndWnd: UInt32 = 0
    public private(set) var sndWscale: UInt8 = 0
    public private(set) var peerMSS = 0
    public private(set) var tsOffset: UInt32 = 0
    public private(set) var timestampsOK = false
    public private(set) var sackOK = false
    var tsRecent: UInt32 = 0
    var mssClamp = 536
    /// The TIME_WAIT socket `tcp_twsk_unique` took over, and the `write_seq` it left (nil: unknown or none).
    public private(set) var inheritedTimeWait: PortTable.TimeWait?
    var inheritedWriteSeq: UInt32?
    var lastDestination = IPv4Address.any

    // Retransmission (tcp_timer.c): icsk_rto, icsk_retransmits, total_rto, retrans_stamp.
    public private(set) var rto: Int64 = nsPerSecond
    public private(set) var retransmits = 0
    var timeouts = 0
    var retransStamp = Instant.zero
    public private(set) var timerDeadline: Instant?
    var synSentAt = Instant.zero
    var handshakeRTT: Int64?
    /// Unacknowledged data and FIN (sent, waiting for an ACK).
    var unacked: [UInt8] = []
    var finSent = false
    var finAcked = false
    var peerFinReceived = false

    public init(resolver: Resolver, config: EngineConfig) {
        self.resolver = resolver
        self.config = config
        random = EngineRandom(seed: config.seed)
    }

    // MARK: socket calls

    /// setsockopt(2). Returns the errno, or nil.
    public mutating func setOption(_ option: SocketOption) -> Errno? {
        switch option {
        case .bindToDevice(let d): boundDevice = (d?.isEmpty ?? true) ? nil : d
        case .mark(let m): mark = m
        case .tos(let t): tos = t
        case .ttl(let t):
            guard t == -1 || (1...255).contains(t) else { return .invalidArgument }
            ttl = t
        case .dontRoute(let d): dontRoute = d
        case .synCount(let n):
            guard (1...127).contains(n) else { return .invalidArgument }
            synCount = n
        case .maxSegment(let m):
            guard m == 0 || (88...65535).contains(m) else { return .invalidArgument }
            userMSS = m
        case .ipOptions(let bytes):
            if bytes.isEmpty { ipOptions = nil; return nil }
            switch SocketIPOptions.compile(bytes) {
            case .success(let o): ipOptions = o
            case .failure(let e): return e
            }
        case .receiveBuffer(let n): receiveBuffer = max(2304, min(n, config.sysctls.rmemMax) * 2)
        case .uid(let u): uid = u
        }
        return nil
    }

    /// bind(2) for AF_INET, as `__inet_bind()` (net/ipv4/af_inet.c): the address must be 0, local, broadcast or
    /// multicast (`inet_addr_valid_or_nonlocal`, any with ip_nonlocal_bind), else EADDRNOTAVAIL; a port already held
    /// by bind() gives EADDRINUSE. `boundAddress` is `inet_rcv_saddr` and, being set, SOCK_BINDADDR_LOCK;
    /// `sourceAddress` is `inet_saddr`, left 0 for a broadcast or multicast address so that connect chooses one.
    public mutating func bind(address: IPv4Address, port: UInt16, now: Instant = .zero) -> (Errno?, [Action]) {
        var out: [Action] = []
        let type = address == .any ? RouteType.unicast : resolver.inetAddrType(address)
        // Checked before the socket lock, so it comes before EINVAL below.
        if address != .any, !config.sysctls.ipNonlocalBind, type != .local && type != .multicast && type != .broadcast {
            return (.addressNotAvailable, [trace(now, "__inet_bind", "\(address) is \(type.rawValue) in the local table, not an address of this node: EADDRNOTAVAIL")])
        }
        guard state == .close, boundPort == 0, boundAddress == .any else {
            return (.invalidArgument, [trace(now, "inet_bind", "socket already bound: EINVAL")])
        }
        if port != 0, let other = config.ports.bindConflict(address: address, port: port) {
            return (.addressInUse, [trace(now, "inet_csk_get_port", "\(other.address):\(port) is held by another socket (inet_csk_bind_conflict): EADDRINUSE")])
        }
        var port = port
        if port == 0 {
            // inet_bind → inet_csk_get_port(sk, 0): the port is taken now, not at connect.
            guard let (p, tried) = EphemeralPorts.findOpenPort(address: address, sysctls: config.sysctls, table: config.ports, random: &random) else {
                return (.addressInUse, [trace(now, "inet_csk_find_open_port", "no port of \(config.sysctls.ipLocalPortRange.lowerBound)-\(config.sysctls.ipLocalPortRange.upperBound) free for \(address) (inet_csk_bind_conflict): EADDRINUSE")])
            }
            port = p
            out.append(trace(now, "inet_csk_find_open_port", "port \(p) (odd offset first, \(tried) tried)"))
        }
        boundAddress = address
        sourceAddress = type == .multicast || type == .broadcast ? .any : address
        boundPort = port
        sourcePort = port
        out.append(trace(now, "inet_bind", "bound to \(address):\(port)" +
                         (address != .any && sourceAddress == .any ? " (\(type.rawValue): saddr 0, connect chooses the source)" : "")))
        return (nil, out)
    }

    /// SO_ERROR: returns and clears `sk_err`.
    public mutating func socketError() -> Errno? {
        defer { pendingError = nil }
        return pendingError
    }

    /// connect(2) on a non-blocking socket. Mirrors `__inet_stream_connect()` in net/ipv4/af_inet.c. The result is
    /// the errno (nil for 0); EINPROGRESS means the SYN is on its way.
    public mutating func connect(_ address: SocketAddress, addressLength: Int? = nil, now: Instant) -> (Errno?, [Action]) {
        let addrlen = addressLength ?? address.defaultLength
        var out: [Action] = []
        if addrlen < 2 {
            out.append(trace(now, "__inet_stream_connect", "addr_len \(addrlen) < sizeof(sa_family): EINVAL"))
            return (.invalidArgument, out)
        }
        if case .unspec = address {
            disconnects += 1
            out += tcpDisconnect(now: now)
            socketState = .unconnected
            out.append(trace(now, "__inet_stream_connect", "AF_UNSPEC: tcp_disconnect, sock->state = SS_UNCONNECTED"))
            return (nil, out)
        }
        switch socketState {
        case .connected:
            out.append(trace(now, "__inet_stream_connect", "SS_CONNECTED: EISCONN"))
            return (.socketIsConnected, out)
        case .disconnecting:
            out.append(trace(now, "__inet_stream_connect", "SS_DISCONNECTING: EINVAL"))
            return (.invalidArgument, out)
        case .connecting:
            // Falls through to the state check with err = EALREADY.
            return finishConnect(pending: .alreadyInProcess, now: now, out: out)
        case .unconnected:
            if state != .close {
                out.append(trace(now, "__inet_stream_connect", "sk_state \(state.rawValue) != CLOSE: EISCONN"))
                return (.socketIsConnected, out)
            }
            if addrlen < 16 {
                out.append(trace(now, "tcp_v4_pre_connect", "addr_len \(addrlen) < sizeof(struct sockaddr_in): EINVAL"))
                return (.invalidArgument, out)
            }
            let (err, actions) = tcpV4Connect(address, now: now)
            out += actions
            if let err {
                out.append(trace(now, "__inet_stream_connect", "tcp_v4_connect failed: \(err.name); sock->state stays SS_UNCONNECTED"))
                return (err, out)
            }
            socketState = .connecting
            out.append(trace(now, "__inet_stream_connect", "sock->state = SS_CONNECTING, non-blocking: EINPROGRESS"))
            return finishConnect(pending: .nowInProgress, now: now, out: out)
        }
    }

    /// The tail of `__inet_stream_connect`: still in SYN_SENT → the pending errno; CLOSE → sock_error or ECONNABORTED
    /// and disconnect; otherwise connected.
    mutating func finishConnect(pending: Errno, now: Instant, out: [Action]) -> (Errno?, [Action]) {
        var out = out
        if state == .synSent {
            out.append(trace(now, "__inet_stream_connect", "SYN_SENT, timeo 0: \(pending.name)"))
            return (pending, out)
        }
        if state == .close {
            let err = pendingError ?? .connectionAbort
            pendingError = nil
            socketState = .unconnected
            out.append(trace(now, "__inet_stream_connect", "TCP_CLOSE: sock_error \(err.name), sock->state = SS_UNCONNECTED, disconnect"))
            out += tcpDisconnect(now: now)
            return (err, out)
        }
        socketState = .connected
        out.append(trace(now, "__inet_stream_connect", "sock->state = SS_CONNECTED: 0"))
        return (nil, out)
    }

    /// `tcp_disconnect`: back to CLOSE, sending RST if a connection exists.
    mutating func tcpDisconnect(now: Instant) -> [Action] {
        var out: [Action] = []
        if state == .established {
            out.append(.send(segment(flags: [.rst, .ack], seq: sndNxt, ack: rcvNxt, options: [], now: now)))
        }
        if state != .close { out.append(.cancelTimer); timerDeadline = nil }
        state = .close
        destination = .any
        destinationPort = 0
        if boundAddress == .any { sourceAddress = .any }
        if boundPort == 0 { sourcePort = 0 }
        retransmits = 0; timeouts = 0; rto = nsPerSecond
        // memset(&tp->rx_opt, 0): ts_recent and what a TIME_WAIT left are gone.
        tsRecent = 0; inheritedTimeWait = nil; inheritedWriteSeq = nil
        return out
    }

    // MARK: tcp_v4_connect

    /// Mirrors `tcp_v4_connect()` in net/ipv4/tcp_ipv4.c: address checks, source route, route, port, ISN, SYN.
    mutating func tcpV4Connect(_ address: SocketAddress, now: Instant) -> (Errno?, [Action]) {
        var out: [Action] = []
        guard case .inet(let daddr, let dport) = address else {
            if case .family(let f) = address {
                out.append(trace(now, "tcp_v4_connect", "sin_family \(f) != AF_INET: EAFNOSUPPORT"))
            }
            return (.addressFamilyNotSupported, out)
        }
        let origSport = boundPort
        // The route decisions (source route, ip_route_connect's lookups, the route type, ip_route_newports) are
        // ConnectRoute.decide's; inet_hash_connect, in between, is ours.
        let q = connectRouteQuery(to: daddr, port: dport)
        let r = resolver
        let decision = ConnectRoute.decide(q, resolver: r) { saddr, finalDestination, steps in
            sourceAddress = saddr
            destination = finalDestination
            destinationPort = dport
            // A socket that took over a TIME_WAIT keeps ts_recent only for the same destination.
            if inheritedTimeWait != nil, lastDestination != finalDestination { inheritedTimeWait = nil; inheritedWriteSeq = nil; tsRecent = 0 }
            lastDestination = finalDestination
            mssClamp = 536
            state = .synSent
            steps.append(ConnectRoute.Step("tcp_v4_connect", "saddr \(saddr) daddr \(finalDestination):\(dport), ext_hdr_len \(ipOptions?.optlen ?? 0), mss_clamp 536, state SYN_SENT"))
            // inet_hash_connect: the source port.
            if origSport == 0 {
                let offset = SipHash.hash3u32(be(saddr.value), be(finalDestination.value), be(dport), key: config.netSecret)
                switch ports.choose(portOffset: offset, source: saddr, destination: finalDestination, destinationPort: dport,
                                    sysctls: config.sysctls, table: config.ports, random: &random, device: boundDevice, now: now) {
                case .success(let c):
                    sourcePort = c.port
                    steps.append(ConnectRoute.Step("inet_hash_connect", "port \(c.port) from range \(config.sysctls.ipLocalPortRange.lowerBound)-\(config.sysctls.ipLocalPortRange.upperBound) (offset \(c.offset), \(c.tried) tried, parity of low first)"))
                    if let tw = c.reused { takeOver(tw, why: c.reuseReason ?? "", steps: &steps) }
                    return .success(c.port)
                case .failure(let e):
                    steps.append(ConnectRoute.Step("inet_hash_connect", "no free port in \(config.sysctls.ipLocalPortRange.lowerBound)-\(config.sysctls.ipLocalPortRange.upperBound): EADDRNOTAVAIL"))
                    return .failure(e)
                }
            }
            let t = PortTable.FourTuple(source: saddr, sourcePort: origSport, destination: finalDestination, destinationPort: dport)
            switch config.ports.checkEstablished(t, device: boundDevice, bound: true, now: now, sysctls: config.sysctls) {
            case .taken(let why):
                steps.append(ConnectRoute.Step("inet_hash_connect", "bound port \(origSport): __inet_check_established: \(why): EADDRNOTAVAIL"))
                return .failure(.addressNotAvailable)
            case .reuse(let tw, let why):
                steps.append(ConnectRoute.Step("inet_hash_connect", "bound port \(origSport): __inet_check_established: TIME_WAIT on the 4-tuple"))
                takeOver(tw, why: why, steps: &steps)
            case .unique:
                steps.append(ConnectRoute.Step("inet_hash_connect", "bound port \(origSport): check_established ok"))
            }
            return .success(origSport)
        }
        out += decision.steps.map { trace(now, $0.function, $0.detail) }
        let rt: ResolvedRoute
        switch decision.result {
        case .failure(let e):
            if decision.port != nil || decision.portFailed { failToClose() }
            return (e, out)
        case .success(let route): rt = route
        }
        let finalDestination = decision.destination
        route = rt
        wireOptions = ipOptions?.parsed(finalDestination: finalDestination) ?? []
        // secure_tcp_seq and secure_tcp_ts_off.
        let h = SipHash.hash3u32(be(sourceAddress.value), be(finalDestination.value), be(sourcePort) << 16 | be(dport), key: config.netSecret)
        let clock = (config.realtimeAtZero + now.nanoseconds) >> 6
        iss = SeqNumber(UInt32(truncatingIfNeeded: h) &+ UInt32(truncatingIfNeeded: clock))
        tsOffset = config.sysctls.tcpTimestamps == 1
            ? UInt32(truncatingIfNeeded: SipHash.hash2u32(be(sourceAddress.value), be(finalDestination.value), key: config.tsSecret)) : 0
        if let w = inheritedWriteSeq {
            // tcp_v4_connect: `if (!tp->write_seq) write_seq = st.seq`: tcp_twsk_unique already set it.
            iss = SeqNumber(w)
            out.append(trace(now, "secure_tcp_seq", "write_seq \(w) kept from the TIME_WAIT (tw_snd_nxt + 65535 + 2); tsoffset \(tsOffset)"))
        } else {
            out.append(trace(now, "secure_tcp_seq", "ISN \(iss.raw) = siphash(saddr, daddr, sport, dport) + clock/64ns; tsoffset \(tsOffset)"))
        }
        ipID = random.u16()
        out.append(trace(now, "tcp_v4_connect", "inet_id \(ipID) (random)"))
        out += tcpConnect(now: now)
        return (nil, out)
    }

    /// The socket's side of connect's route decisions (`ConnectRoute.decide`): its bound address and port, options
    /// and a source route's first hop, for a connect to `daddr:dport`.
    public func connectRouteQuery(to daddr: IPv4Address, port dport: UInt16) -> ConnectRouteQuery {
        ConnectRouteQuery(destination: daddr, destinationPort: dport, source: sourceAddress, sourcePort: boundPort,
                          device: boundDevice, mark: mark, tos: tos, dontRoute: dontRoute, uid: uid,
                          sourceRouteFirstHop: ipOptions?.firstHop)
    }

    /// `tcp_twsk_unique` took this TIME_WAIT over: `write_seq = tw_snd_nxt + 65535 + 2` (1 if that is 0),
    /// `ts_recent` and `ts_recent_stamp` inherited (the SYN echoes `ts_recent`); the kernel then deschedules it
    /// (`inet_twsk_deschedule_put`).
    mutating func takeOver(_ tw: PortTable.TimeWait, why: String, steps: inout [ConnectRoute.Step]) {
        inheritedTimeWait = tw
        if let n = tw.sndNxt {
            var seq = n &+ 65535 &+ 2
            if seq == 0 { seq = 1 }
            inheritedWriteSeq = seq
        } else {
            inheritedWriteSeq = nil
        }
        tsRecent = tw.tsRecent ?? 0
        let known = tw.sndNxt.map { "write_seq = tw_snd_nxt \($0) + 65535 + 2 = \(inheritedWriteSeq!)" } ?? "tw_snd_nxt unknown (not watched)"
        steps.append(ConnectRoute.Step("tcp_twsk_unique", "TIME_WAIT \(tw.tuple.source):\(tw.tuple.sourcePort) → \(tw.tuple.destination):\(tw.tuple.destinationPort) taken over (\(why)): \(known), ts_recent \(tw.tsRecent.map(String.init) ?? "unknown")"))
    }

    /// The `failure:` path of tcp_v4_connect: back to CLOSE, saddr and dport reset.
    mutating func failToClose() {
        state = .close
        if boundAddress == .any { sourceAddress = .any }
        if boundPort == 0 { sourcePort = 0 }
        destination = .any
        destinationPort = 0
    }

    // MARK: tcp_connect

    /// Mirrors `tcp_connect_init()` and `tcp_connect()` in net/ipv4/tcp_output.c: MSS and window from the route, the
    /// SYN, the retransmission timer.
    mutating func tcpConnect(now: Instant) -> [Action] {
        guard let rt = route else { return [] }
        var out: [Action] = []
        let s = config.sysctls
        // dst_metric_advmss: the route's advmss, else ipv4_default_advmss (mtu - 40, at least min_adv_mss).
        let defaultAdvmss = min(max(rt.pathMTU - 40, s.ipRtMinAdvmss), 65535 - 40)
        let metric = rt.advmss ?? defaultAdvmss
        advmss = userMSS > 0 && userMSS < metric ? userMSS : metric          // tcp_mss_clamp
        if userMSS > 0 { mssClamp = userMSS }
        // tcp_full_space: half of sk_rcvbuf (the default scaling ratio).
        let rcvbuf = receiveBuffer ?? s.tcpRmem.initial
        let space = UInt32(rcvbuf / 2)
        var clamp: UInt32 = windowClamp
        if receiveBuffer != nil, clamp == 0 || clamp > space { clamp = space }
        // tcp_connect_init rounds the window to `advmss - (ts_recent_stamp ? tcp_header_len - sizeof(tcphdr) : 0)`: a
        // connect that took over a TIME_WAIT (ts_recent_stamp inherited) rounds to MSS - 12 with timestamps on
        // (65160 instead of 64240 at MSS 1460; measured on the wire, IntegrationTests/TimeWaitReuseTests).
        let tsHeader = inheritedTimeWait != nil && s.tcpTimestamps != 0 ? 12 : 0
        if tsHeader > 0 { out.append(trace(now, "tcp_connect_init", "ts_recent_stamp inherited: window rounded to advmss - \(tsHeader)")) }
        let (wnd, ws, newClamp) = Self.tcpSelectInitialWindow(space: space, mss: UInt32(advmss - tsHeader), windowClamp: clamp,
                                                               wscaleOK: s.tcpWindowScaling,
                                                               rmemMax: receiveBuffer != nil ? 0 : UInt32(s.rmemMax),
                                                               tcpRmemMax: receiveBuffer != nil ? 0 : UInt32(s.tcpRmem.max),
                                                               signedWindows: s.tcpWorkaroundSignedWindows)
        rcvWnd = wnd
        rcvWscale = ws
        windowClamp = newClamp
        out.append(trace(now, "tcp_connect_init", "advmss \(advmss) (\(rt.advmss != nil ? "route advmss" : "mtu \(rt.pathMTU) - 40")\(userMSS > 0 ? ", TCP_MAXSEG \(userMSS)" : "")), rcv_wnd \(rcvWnd), wscale \(rcvWscale)"))
        sndUna = iss
        sndNxt = iss + 1
        rcvNxt = SeqNumber(0)
        synSentAt = now
        retransStamp = now
        rto = nsPerSecond
        retransmits = 0
        timeouts = 0
        out.append(ipQueueXmit(synSegment(now: now), now: now))
        out.append(trace(now, "tcp_connect", "SYN seq \(iss.raw) to \(destination):\(destinationPort) via \(rt.nextHop) dev \(rt.device); RTO 1s"))
        timerDeadline = now + rto
        out.append(.armTimer(timerDeadline!))
        return out
    }

    /// Mirrors `tcp_select_initial_window()` in net/ipv4/tcp_output.c.
    public static func tcpSelectInitialWindow(space: UInt32, mss: UInt32, windowClamp: UInt32, wscaleOK: Bool,
                                              rmemMax: UInt32, tcpRmemMax: UInt32, signedWindows: Bool) -> (UInt32, UInt8, UInt32) {
        let clamp = windowClamp == 0 ? UInt32(65535) << 14 : windowClamp
        var sp = min(clamp, space)
        if sp > mss { sp = sp / mss * mss }
        let wnd = signedWindows ? min(sp, 32767) : min(sp, 65535)
        var ws: UInt8 = 0
        if wscaleOK {
            var s2 = max(sp, tcpRmemMax)
            s2 = max(s2, rmemMax)
            s2 = min(s2, clamp)
            let ilog = s2 == 0 ? 0 : 31 - s2.leadingZeroBitCount
            ws = UInt8(max(0, min(14, ilog - 15)))
        }
        return (wnd, ws, min(UInt32(65535) << UInt32(ws), clamp))
    }

    /// The options of a SYN in `tcp_options_write` order: mss; sackOK+TS or nop,nop,TS; nop,nop,sackOK without TS;
    /// nop,wscale.
    func synOptions(now: Instant) -> [TCPOption] {
        let s = config.sysctls
        var o: [TCPOption] = [.mss(UInt16(advmss))]
        let ts = s.tcpTimestamps != 0
        if ts {
            let val = UInt32(truncatingIfNeeded: now.milliseconds) &+ tsOffset
            // tcp_syn_options: tsecr = rx_opt.ts_recent (0, or inherited from a TIME_WAIT by tcp_twsk_unique).
            if s.tcpSack { o += [.sackPermitted, .timestamps(value: val, echo: tsRecent)] } else { o += [.nop, .nop, .timestamps(value: val, echo: tsRecent)] }
        } else if s.tcpSack {
            o += [.nop, .nop, .sackPermitted]
        }
        if s.tcpWindowScaling { o += [.nop, .windowScale(rcvWscale)] }
        return o
    }

    mutating func synSegment(now: Instant) -> OutgoingPacket {
        var flags: TCPFlags = .syn
        switch config.sysctls.tcpEcn {
        case 1: flags.formUnion([.ece, .cwr])
        case 3...: flags.formUnion([.ae, .ece, .cwr])
        default: break
        }
        return segment(flags: flags, seq: iss, ack: SeqNumber(0), options: synOptions(now: now), now: now,
                       window: UInt16(min(rcvWnd, 65535)))
    }

    /// Build one IPv4+TCP packet: `__ip_queue_xmit` (TOS, DF, TTL, ID, options) around `tcp_transmit_skb`.
    mutating func segment(flags: TCPFlags, seq: SeqNumber, ack: SeqNumber, options: [TCPOption], payload: [UInt8] = [],
                          now: Instant, window: UInt16? = nil) -> OutgoingPacket {
        let rt = route
        let firstHop = ipOptions?.firstHop
        let ttlValue = ttl > 0 ? ttl : (rt?.hoplimit ?? config.sysctls.ipDefaultTTL)
        let df = config.sysctls.ipNoPmtuDisc == 0 && !(rt?.mtuLocked ?? false)
        let ip = IPv4Header(tos: tos, identification: ipID, dontFragment: df, ttl: UInt8(clamping: ttlValue), proto: .tcp,
                            source: sourceAddress, destination: firstHop ?? destination, options: wireOptions)
        ipID &+= 1
        let tcp = TCPHeader(sourcePort: sourcePort, destinationPort: destinationPort, seq: seq, ack: ack, flags: flags,
                            window: window ?? currentWindow(), options: options)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ip.headerLength + tcp.headerLength + payload.count)
        ip.emit(payloadLength: tcp.headerLength + payload.count, into: &bytes)
        tcp.emit(payload: payload, source: sourceAddress, destination: destination, into: &bytes)
        return OutgoingPacket(bytes: bytes, nextHop: rt?.nextHop ?? destination, device: rt?.device ?? "")
    }

    /// The window field after the handshake (`tcp_select_window`): free space rounded up to the scale, shifted.
    func currentWindow() -> UInt16 {
        let rcvbuf = receiveBuffer ?? config.sysctls.tcpRmem.initial
        var w = UInt32(rcvbuf / 2)
        if rcvWscale > 0 {
            let unit = UInt32(1) << UInt32(rcvWscale)
            if w % unit != 0 { w = (w / unit + 1) * unit }
        }
        return UInt16(min(w >> UInt32(rcvWscale), 65535))
    }

    // MARK: receive

    /// A packet from the wire (an IPv4 datagram addressed to this node), with the device it arrived on when known.
    /// Mirrors `tcp_v4_rcv` → `tcp_rcv_synsent_state_process` / `tcp_rcv_state_process`, and `tcp_v4_err` for ICMP.
    public mutating func receive(_ bytes: [UInt8], now: Instant, device: String? = nil) -> [Action] {
        guard let v = try? IPv4PacketView(checking: bytes), v.header.count > 0 else { return [] }
        // ip_rcv_options: a packet with a source-route option is dropped by a device that does not accept source
        // routes, also at its final destination (a SYN-ACK carrying the reversed route of our SSRR/LSRR SYN).
        if let allowed = config.sysctls.sourceRouteDevices, let dev = device, !allowed.contains(dev),
           v.headerLength > 20, (try? IPv4Option.parseAll(v.optionBytes))?.contains(where: \.isSourceRoute) == true {
            guard v.proto == .tcp || v.proto == .icmp, v.destination == sourceAddress, v.source == destination || v.proto == .icmp else { return [] }
            return [trace(now, "ip_rcv_options", "a source-route option from \(v.source) on \(dev), accept_source_route off there: dropped")]
        }
        // __inet_lookup_established → inet_sk_bound_dev_eq: a socket bound to a device is found only by packets
        // (segments, and ICMP errors quoting ours) that arrived on that device. The node's kernel, finding no socket,
        // answers such a segment with a RST itself (the driver's guard lets it through).
        if v.proto == .icmp { return icmpError(v, now: now, device: device) }
        guard v.proto == .tcp, let t = try? TCPSegmentView(checking: v.payload), let th = try? TCPHeader.parse(t) else { return [] }
        guard state != .close, v.destination == sourceAddress, t.destinationPort == sourcePort, t.sourcePort == destinationPort,
              v.source == destination else { return [] }
        if let skip = otherDevice(device, now: now, what: "segment from \(v.source)") { return [skip] }
        switch state {
        case .synSent: return tcpRcvSynsentStateProcess(th, payload: Array(t.payload), now: now)
        default: return tcpRcvEstablished(th, payload: Array(t.payload), now: now)
        }
    }

    /// `__ip_queue_xmit()` (net/ipv4/ip_output.c): a strict source route whose first hop is not on-link (the route
    /// to it uses a gateway) goes nowhere: EHOSTUNREACH, which `tcp_connect` and the retransmission timer ignore, so
    /// the SYN is never sent and the connect times out.
    func ipQueueXmit(_ p: OutgoingPacket, now: Instant) -> Action {
        if let o = ipOptions, o.isStrict, let g = route?.gateway {
            return trace(now, "__ip_queue_xmit", "strict source route, but the first hop \(route?.destination.description ?? "?") is behind gateway \(g): EHOSTUNREACH, not sent")
        }
        return .send(p)
    }

    /// Mirrors `tcp_rcv_synsent_state_process()` in net/ipv4/tcp_input.c.
    mutating func tcpRcvSynsentStateProcess(_ th: TCPHeader, payload: [UInt8], now: Instant) -> [Action] {
        var out: [Action] = []
        let f = "tcp_rcv_synsent_state_process"
        if th.flags.contains(.ack) {
            // !after(ack, snd_una) || after(ack, snd_nxt): an unacceptable ACK gets a RST (seq = its ack) and is dropped.
            if !th.ack.after(sndUna) || th.ack.after(sndNxt) {
                out.append(trace(now, f, "ACK \(th.ack.raw) not in (\(sndUna.raw), \(sndNxt.raw)]: send RST seq \(th.ack.raw), drop"))
                if !th.flags.contains(.rst) {
                    out.append(.send(segment(flags: .rst, seq: th.ack, ack: SeqNumber(0), options: [], now: now, window: 0)))
                }
                return out
            }
            if th.flags.contains(.rst) {
                out.append(trace(now, f, "RST with acceptable ACK: tcp_reset → ECONNREFUSED"))
                return out + fail(.connectionRefused, now: now)
            }
            guard th.flags.contains(.syn) else {
                out.append(trace(now, f, "ACK without SYN: drop"))
                return out
            }
            // SYN-ACK.
            rcvNxt = th.seq + 1
            sndUna = th.ack
            sndWnd = UInt32(th.window)
            var sawWscale: UInt8?
            var sawTS: UInt32?
            var sawSackPerm = false
            var theirMSS = 536
            for o in th.options {
                switch o {
                case .mss(let m): theirMSS = Int(m)
                case .windowScale(let w): sawWscale = min(w, 14)
                case .timestamps(let val, _): sawTS = val
                case .sackPermitted: sawSackPerm = true
                default: break
                }
            }
            if config.sysctls.tcpWindowScaling, let ws = sawWscale { sndWscale = ws } else { sndWscale = 0; rcvWscale = 0 }
            if config.sysctls.tcpTimestamps != 0, let ts = sawTS { timestampsOK = true; tsRecent = ts } else { timestampsOK = false }
            sackOK = config.sysctls.tcpSack && sawSackPerm
            peerMSS = min(theirMSS, advmss)
            state = .established
            handshakeRTT = now - synSentAt
            timerDeadline = nil
            out.append(.cancelTimer)
            out.append(trace(now, f, "SYN-ACK seq \(th.seq.raw) ack \(th.ack.raw): rcv_nxt \(rcvNxt.raw), snd_wscale \(sndWscale), TS \(timestampsOK ? "on" : "off"), SACK \(sackOK ? "on" : "off"), mss \(peerMSS); ESTABLISHED"))
            out.append(.send(ackSegment(now: now)))
            out.append(trace(now, "tcp_send_ack", "ACK seq \(sndNxt.raw) ack \(rcvNxt.raw)"))
            out.append(.established)
            return out
        }
        if th.flags.contains(.rst) {
            out.append(trace(now, f, "RST without ACK: drop"))
            return out
        }
        if th.flags.contains(.syn) {
            out.append(trace(now, f, "SYN without ACK (simultaneous open): not modelled, drop"))
            return out
        }
        out.append(trace(now, f, "neither ACK, RST nor SYN: drop"))
        return out
    }

    func tsOption(now: Instant) -> [TCPOption] {
        timestampsOK ? [.nop, .nop, .timestamps(value: UInt32(truncatingIfNeeded: now.milliseconds) &+ tsOffset, echo: tsRecent)] : []
    }

    mutating func ackSegment(now: Instant) -> OutgoingPacket {
        segment(flags: .ack, seq: sndNxt, ack: rcvNxt, options: tsOption(now: now), now: now)
    }

    mutating func fail(_ err: Errno, now: Instant) -> [Action] {
        pendingError = err
        state = .close
        timerDeadline = nil
        return [.cancelTimer, .failed(err)]
    }

    /// The trace of a packet for this connection that arrived on another device than the bound one, or nil.
    func otherDevice(_ device: String?, now: Instant, what: String) -> Action? {
        guard let bound = boundDevice, let dev = device, dev != bound else { return nil }
        return trace(now, "tcp_v4_rcv", "\(what) arrived on \(dev), socket bound to \(bound): no socket (inet_sk_bound_dev_eq), not ours")
    }

    /// Mirrors `tcp_v4_err()` in net/ipv4/tcp_ipv4.c: an ICMP error about our SYN (quoted seq in [snd_una, snd_nxt])
    /// is a hard error in SYN_SENT, mapped by `icmp_err_convert`.
    mutating func icmpError(_ v: IPv4PacketView, now: Instant, device: String? = nil) -> [Action] {
        guard let msg = try? ICMPv4Message.parse(v.payload), let q = msg.quote, q.header.proto == .tcp,
              let ports = q.tcpPorts, let seq = q.tcpSeq else { return [] }
        let f = "tcp_v4_err"
        // The socket is found by `__inet_lookup_established(iph->daddr, th->dest, iph->saddr, th->source)` on the
        // quoted header: its destination must be the connection's (the final one). A router on a source route quotes
        // the packet as it received it, addressed to itself, so its errors (SR_FAILED among them) find no socket and
        // are ignored: measured against the kernel (Labs/srcroute.topo, "strict route needing a gateway").
        let ours = q.header.source == sourceAddress && ports.source == sourcePort && ports.destination == destinationPort &&
            q.header.destination == destination
        guard ours, state != .close else { return [] }
        if let skip = otherDevice(device, now: now, what: "ICMP from \(v.source)") { return [skip] }
        var out: [Action] = []
        guard seq.between(sndUna, sndNxt) else {
            out.append(trace(now, f, "quoted seq \(seq.raw) outside [\(sndUna.raw), \(sndNxt.raw)]: ignored (OUTOFWINDOWICMPS)"))
            return out
        }
        let err: Errno
        switch msg {
        case .parameterProblem: err = .protocolError
        case .timeExceeded: err = .noRouteToHost
        case .destinationUnreachable(let code, let mtu, _):
            if code > 15 { out.append(trace(now, f, "unreachable code \(code) > NR_ICMP_UNREACH: ignored")); return out }
            if code == ICMPUnreachableCode.fragNeeded.rawValue {
                out.append(trace(now, f, "FRAG_NEEDED mtu \(mtu): PMTU update, not an error"))
                return out
            }
            err = icmpErrConvert(code)!
        default:
            out.append(trace(now, f, "ICMP type \(msg.type): ignored"))
            return out
        }
        guard state == .synSent else {
            out.append(trace(now, f, "ICMP \(err.name) in \(state.rawValue): soft error, ignored"))
            return out
        }
        out.append(trace(now, f, "ICMP type \(msg.type) from \(v.source) about our SYN: SYN_SENT hard error \(err.name), tcp_done"))
        return out + fail(err, now: now)
    }

    // MARK: timers

    /// The retransmission timer fired. Mirrors `tcp_retransmit_timer()` and `tcp_write_timeout()` in
    /// net/ipv4/tcp_timer.c as Linux 6.5+ behave (measured against the kernel: Tests/WireTests/Fixtures/syn-schedule.txt).
    public mutating func timerFired(now: Instant) -> [Action] {
        guard let deadline = timerDeadline, now >= deadline else { return [] }
        var out: [Action] = []
        switch state {
        case .synSent:
            // tcp_write_timeout: expired after syn_retries + linear_timeouts retransmissions, or once the time since the
            // first SYN reaches tcp_model_timeout(syn_retries) = (2^(n+1) - 1) * 1 s.
            let retryUntil = synCount > 0 ? synCount : config.sysctls.tcpSynRetries
            let maxRetransmits = retryUntil + config.sysctls.tcpSynLinearTimeouts
            let modelTimeout = Self.tcpModelTimeout(boundary: retryUntil, rtoBase: nsPerSecond)
            let elapsed = now - retransStamp
            let timedOut = retransmits > 0 && elapsed >= modelTimeout
            if retransmits >= maxRetransmits || timedOut {
                out.append(trace(now, "tcp_write_timeout", "\(retransmits) retransmissions, \(Instant(nanoseconds: elapsed)) since the SYN (limit \(maxRetransmits) or \(Instant(nanoseconds: modelTimeout))): ETIMEDOUT"))
                return out + fail(.timedOut, now: now)
            }
            out.append(ipQueueXmit(synSegment(now: now), now: now))
            retransmits += 1
            timeouts += 1
            if timeouts > config.sysctls.tcpSynLinearTimeouts { rto = min(rto * 2, 120 * nsPerSecond) }
            out.append(trace(now, "tcp_retransmit_timer", "SYN retransmission \(retransmits) (same seq, new TS and IP ID); next RTO \(Instant(nanoseconds: rto))\(timeouts <= config.sysctls.tcpSynLinearTimeouts ? " (linear)" : "")"))
            timerDeadline = now + rto
            out.append(.armTimer(timerDeadline!))
        case .established, .finWait1, .closeWait, .lastAck, .closing:
            // Retransmit what is unacknowledged.
            if !unacked.isEmpty || (finSent && !finAcked) {
                retransmits += 1
                if retransmits > 15 { return out + fail(.timedOut, now: now) }
                var flags: TCPFlags = .ack
                if !unacked.isEmpty { flags.insert(.psh) }
                if finSent && !finAcked { flags.insert(.fin) }
                out.append(.send(segment(flags: flags, seq: sndUna, ack: rcvNxt, options: tsOption(now: now), payload: unacked, now: now)))
                rto = min(rto * 2, 120 * nsPerSecond)
                timerDeadline = now + rto
                out.append(trace(now, "tcp_retransmit_timer", "retransmit \(unacked.count) bytes\(finSent && !finAcked ? " + FIN" : ""); RTO \(Instant(nanoseconds: rto))"))
                out.append(.armTimer(timerDeadline!))
            }
        default:
            timerDeadline = nil
        }
        return out
    }

    /// `tcp_model_timeout()`: the time a schedule of `boundary` exponential retransmissions takes.
    public static func tcpModelTimeout(boundary: Int, rtoBase: Int64) -> Int64 {
        let rtoMax = 120 * nsPerSecond
        let ratio = rtoMax / rtoBase
        let thresh = ratio > 0 ? 63 - ratio.leadingZeroBitCount : 0   // ilog2
        if boundary <= thresh { return ((Int64(2) << Int64(boundary)) - 1) * rtoBase }
        return ((Int64(2) << Int64(thresh)) - 1) * rtoBase + Int64(boundary - thresh) * rtoMax
    }

    // MARK: after ESTABLISHED

    /// Send a payload (one segment, PSH|ACK). Mirrors `tcp_sendmsg` → `tcp_write_xmit` for a small write.
    public mutating func send(_ data: [UInt8], now: Instant) -> [Action] {
        guard state == .established || state == .closeWait, !data.isEmpty else { return [] }
        let mss = max(1, peerMSS - (ipOptions?.optlen ?? 0) - (timestampsOK ? 12 : 0))
        let chunk = Array(data.prefix(mss))
        unacked += chunk
        let pkt = segment(flags: [.psh, .ack], seq: sndNxt, ack: rcvNxt, options: tsOption(now: now), payload: chunk, now: now)
        sndNxt = sndNxt + UInt32(chunk.count)
        rto = establishedRTO()
        retransmits = 0
        timerDeadline = now + rto
        return [.send(pkt), trace(now, "tcp_sendmsg", "\(chunk.count) bytes seq \(sndNxt.raw &- UInt32(chunk.count))"), .armTimer(timerDeadline!)]
    }

    /// close(2): FIN. Mirrors `tcp_close` → `tcp_send_fin`.
    public mutating func close(now: Instant) -> [Action] {
        switch state {
        case .established: state = .finWait1
        case .closeWait: state = .lastAck
        case .synSent:
            let out = tcpDisconnect(now: now)
            return out + [trace(now, "tcp_close", "in SYN_SENT: no FIN, CLOSE")]
        default: return []
        }
        finSent = true
        let pkt = segment(flags: [.fin, .ack], seq: sndNxt, ack: rcvNxt, options: tsOption(now: now), now: now)
        sndNxt = sndNxt + 1
        rto = establishedRTO()
        timerDeadline = now + rto
        return [.send(pkt), trace(now, "tcp_send_fin", "FIN seq \(sndNxt.raw &- 1); \(state.rawValue)"), .armTimer(timerDeadline!)]
    }

    /// The RTO after one RTT sample (the handshake): `__tcp_set_rto` with srtt = m, rttvar = max(m/2 * 4, rto_min).
    func establishedRTO() -> Int64 {
        let m = handshakeRTT ?? nsPerSecond
        return min(max(m + max(2 * m, 200 * nsPerMillisecond), 200 * nsPerMillisecond), 120 * nsPerSecond)
    }

    /// Segments after the handshake: ACKs of our data and FIN, in-order data, the peer's FIN, RST.
    mutating func tcpRcvEstablished(_ th: TCPHeader, payload: [UInt8], now: Instant) -> [Action] {
        var out: [Action] = []
        let f = "tcp_rcv_state_process"
        if th.flags.contains(.rst) {
            // RFC 5961: only an in-window RST resets.
            if th.seq == rcvNxt || (state != .synSent && th.seq.between(rcvNxt, rcvNxt + UInt32(rcvWnd))) {
                out.append(trace(now, f, "RST in \(state.rawValue): ECONNRESET"))
                let wasClosing = [.finWait1, .finWait2, .lastAck, .closing, .timeWait].contains(state)
                out += fail(wasClosing ? .connectionReset : .connectionReset, now: now)
                return out
            }
            return [trace(now, f, "RST seq \(th.seq.raw) out of window: ignored")]
        }
        if th.flags.contains(.syn) {
            // A retransmitted SYN-ACK: our ACK was lost; ACK again.
            return [trace(now, f, "duplicate SYN-ACK: ACK again"), .send(ackSegment(now: now))]
        }
        for o in th.options { if case .timestamps(let v, _) = o, timestampsOK { tsRecent = v } }
        if th.flags.contains(.ack), th.ack.after(sndUna), !th.ack.after(sndNxt) {
            let acked = Int(th.ack - sndUna)
            let dataAcked = min(acked, unacked.count)
            unacked.removeFirst(dataAcked)
            if finSent && !finAcked && th.ack == sndNxt { finAcked = true }
            sndUna = th.ack
            retransmits = 0
            out.append(trace(now, "tcp_ack", "ack \(th.ack.raw): \(dataAcked) bytes\(finAcked && acked > dataAcked ? " + FIN" : "") acknowledged"))
            if unacked.isEmpty && (!finSent || finAcked) { timerDeadline = nil; out.append(.cancelTimer) }
            if finAcked {
                if state == .finWait1 { state = .finWait2 }
                if state == .closing { state = .timeWait; out.append(.closed) }
                if state == .lastAck { state = .close; out.append(.closed) }
            }
        }
        var needAck = false
        if !payload.isEmpty {
            if th.seq == rcvNxt {
                rcvNxt = rcvNxt + UInt32(payload.count)
                out.append(.received(payload))
                out.append(trace(now, "tcp_data_queue", "\(payload.count) bytes in order"))
            } else {
                out.append(trace(now, "tcp_data_queue", "out-of-order seq \(th.seq.raw) (expected \(rcvNxt.raw)): dup ACK"))
            }
            needAck = true
        }
        if th.flags.contains(.fin), th.seq + UInt32(payload.count) == rcvNxt, !peerFinReceived {
            peerFinReceived = true
            rcvNxt = rcvNxt + 1
            needAck = true
            switch state {
            case .established: state = .closeWait
            case .finWait1: state = finAcked ? .timeWait : .closing
            case .finWait2: state = .timeWait
            default: break
            }
            out.append(trace(now, "tcp_fin", "peer FIN: \(state.rawValue)"))
            if state == .timeWait { out.append(.closed) }
        }
        if needAck { out.append(.send(ackSegment(now: now))) }
        return out
    }

    // MARK: helpers

    func trace(_ now: Instant, _ function: String, _ detail: String) -> Action {
        .trace(TraceEvent(time: now, function: function, detail: detail))
    }

    /// The handshake time, once established.
    public var handshakeTime: Int64? { handshakeRTT }
}

extension ConnectEngine {
    /// Tests only: put the ISN where a kernel capture had it (the ISN is keyed and clocked, so it cannot be derived).
    public mutating func testingSetISS(_ seq: SeqNumber) {
        let delta = seq - iss
        iss = seq
        sndUna = seq
        sndNxt = sndNxt + UInt32(bitPattern: delta)
    }
}
