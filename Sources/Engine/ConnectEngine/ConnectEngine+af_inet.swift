import NetCore
import SystemPackage
import Wire

/// net/ipv4/af_inet.c: bind(2) and connect(2) on an AF_INET stream socket.

extension ConnectEngine {
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
        guard sk.state == .close, inet.boundPort == 0, inet.boundAddress == .any else {
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
        inet.boundAddress = address
        inet.sourceAddress = type == .multicast || type == .broadcast ? .any : address
        inet.boundPort = port
        inet.sourcePort = port
        out.append(trace(now, "inet_bind", "bound to \(address):\(port)" +
                         (address != .any && inet.sourceAddress == .any ? " (\(type.rawValue): saddr 0, connect chooses the source)" : "")))
        return (nil, out)
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
            sk.disconnects += 1
            out += tcpDisconnect(now: now)
            sk.socketState = .unconnected
            out.append(trace(now, "__inet_stream_connect", "AF_UNSPEC: tcp_disconnect, sock->state = SS_UNCONNECTED"))
            return (nil, out)
        }
        switch sk.socketState {
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
            if sk.state != .close {
                out.append(trace(now, "__inet_stream_connect", "sk_state \(sk.state.rawValue) != CLOSE: EISCONN"))
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
            sk.socketState = .connecting
            out.append(trace(now, "__inet_stream_connect", "sock->state = SS_CONNECTING, non-blocking: EINPROGRESS"))
            return finishConnect(pending: .nowInProgress, now: now, out: out)
        }
    }

    /// The tail of `__inet_stream_connect`: still in SYN_SENT → the pending errno; CLOSE → sock_error or ECONNABORTED
    /// and disconnect; otherwise connected.
    mutating func finishConnect(pending: Errno, now: Instant, out: [Action]) -> (Errno?, [Action]) {
        var out = out
        if sk.state == .synSent {
            out.append(trace(now, "__inet_stream_connect", "SYN_SENT, timeo 0: \(pending.name)"))
            return (pending, out)
        }
        if sk.state == .close {
            let err = sk.pendingError ?? .connectionAbort
            sk.pendingError = nil
            sk.socketState = .unconnected
            out.append(trace(now, "__inet_stream_connect", "TCP_CLOSE: sock_error \(err.name), sock->state = SS_UNCONNECTED, disconnect"))
            out += tcpDisconnect(now: now)
            return (err, out)
        }
        sk.socketState = .connected
        out.append(trace(now, "__inet_stream_connect", "sock->state = SS_CONNECTED: 0"))
        return (nil, out)
    }
}
