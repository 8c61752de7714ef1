import NetCore
import SystemPackage
import Wire

/// net/ipv4/tcp_ipv4.c: `tcp_v4_connect`, the TIME_WAIT takeover (`tcp_twsk_unique`), and what arrives for the socket
/// (`tcp_v4_rcv`, `tcp_v4_err`).

extension ConnectEngine {
    /// Mirrors `tcp_v4_connect()` in net/ipv4/tcp_ipv4.c: address checks, source route, route, port, ISN, SYN.
    mutating func tcpV4Connect(_ address: SocketAddress, now: Instant) -> (Errno?, [Action]) {
        var out: [Action] = []
        guard case .inet(let daddr, let dport) = address else {
            if case .family(let f) = address {
                out.append(trace(now, "tcp_v4_connect", "sin_family \(f) != AF_INET: EAFNOSUPPORT"))
            }
            return (.addressFamilyNotSupported, out)
        }
        let origSport = inet.boundPort
        // The route decisions (source route, ip_route_connect's lookups, the route type, ip_route_newports) are
        // ConnectRoute.decide's; inet_hash_connect, in between, is ours.
        let q = connectRouteQuery(to: daddr, port: dport)
        connectQuery = q
        let r = resolver
        let decision = ConnectRoute.decide(q, resolver: r) { saddr, finalDestination, steps in
            inet.sourceAddress = saddr
            inet.destination = finalDestination
            inet.destinationPort = dport
            // A socket that took over a TIME_WAIT keeps ts_recent only for the same destination.
            if tcp.inheritedTimeWait != nil, tcp.lastDestination != finalDestination { tcp.inheritedTimeWait = nil; tcp.inheritedWriteSeq = nil; tcp.tsRecent = 0 }
            tcp.lastDestination = finalDestination
            tcp.mssClamp = TCPSock.defaultMSS
            sk.state = .synSent
            steps.append(ConnectRoute.Step("tcp_v4_connect", "saddr \(saddr) daddr \(finalDestination):\(dport), ext_hdr_len \(inet.ipOptions?.optlen ?? 0), mss_clamp 536, state SYN_SENT"))
            // inet_hash_connect: the source port.
            if origSport == 0 {
                let offset = SipHash.hash3u32(be(saddr.value), be(finalDestination.value), be(dport), key: config.netSecret)
                switch ports.choose(portOffset: offset, source: saddr, destination: finalDestination, destinationPort: dport,
                                    sysctls: config.sysctls, table: config.ports, random: &random, device: sk.boundDevice, now: now) {
                case .success(let c):
                    inet.sourcePort = c.port
                    steps.append(ConnectRoute.Step("inet_hash_connect", "port \(c.port) from range \(config.sysctls.ipLocalPortRange.lowerBound)-\(config.sysctls.ipLocalPortRange.upperBound) (offset \(c.offset), \(c.tried) tried, parity of low first)"))
                    if let tw = c.reused { takeOver(tw, why: c.reuseReason ?? "", steps: &steps) }
                    return .success(c.port)
                case .failure(let e):
                    steps.append(ConnectRoute.Step("inet_hash_connect", "no free port in \(config.sysctls.ipLocalPortRange.lowerBound)-\(config.sysctls.ipLocalPortRange.upperBound): EADDRNOTAVAIL"))
                    return .failure(e)
                }
            }
            let t = PortTable.FourTuple(source: saddr, sourcePort: origSport, destination: finalDestination, destinationPort: dport)
            switch config.ports.checkEstablished(t, device: sk.boundDevice, bound: true, now: now, sysctls: config.sysctls) {
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
        sk.route = rt
        inet.wireOptions = inet.ipOptions?.parsed(finalDestination: finalDestination) ?? []
        // secure_tcp_seq and secure_tcp_ts_off.
        let h = SipHash.hash3u32(be(inet.sourceAddress.value), be(finalDestination.value), be(inet.sourcePort) << 16 | be(dport), key: config.netSecret)
        let clock = (config.realtimeAtZero + now.nanoseconds) >> 6
        tcp.iss = SeqNumber(UInt32(truncatingIfNeeded: h) &+ UInt32(truncatingIfNeeded: clock))
        tcp.tsOffset = config.sysctls.tcpTimestamps == 1
            ? UInt32(truncatingIfNeeded: SipHash.hash2u32(be(inet.sourceAddress.value), be(finalDestination.value), key: config.tsSecret)) : 0
        if let w = tcp.inheritedWriteSeq {
            // tcp_v4_connect: `if (!tp->write_seq) write_seq = st.seq`: tcp_twsk_unique already set it.
            tcp.iss = SeqNumber(w)
            out.append(trace(now, "secure_tcp_seq", "write_seq \(w) kept from the TIME_WAIT (tw_snd_nxt + 65535 + 2); tsoffset \(tcp.tsOffset)"))
        } else {
            out.append(trace(now, "secure_tcp_seq", "ISN \(tcp.iss.raw) = siphash(saddr, daddr, sport, dport) + clock/64ns; tsoffset \(tcp.tsOffset)"))
        }
        inet.ipID = random.u16()
        out.append(trace(now, "tcp_v4_connect", "inet_id \(inet.ipID) (random)"))
        out += tcpConnect(now: now)
        return (nil, out)
    }

    /// The socket's side of connect's route decisions (`ConnectRoute.decide`): its bound address and port, options
    /// and a source route's first hop, for a connect to `daddr:dport`.
    public func connectRouteQuery(to daddr: IPv4Address, port dport: UInt16) -> ConnectRouteQuery {
        ConnectRouteQuery(destination: daddr, destinationPort: dport, source: inet.sourceAddress, sourcePort: inet.boundPort,
                          device: sk.boundDevice, mark: sk.mark, tos: inet.tos, dontRoute: sk.dontRoute, uid: sk.uid,
                          sourceRouteFirstHop: inet.ipOptions?.firstHop)
    }

    /// `tcp_twsk_unique` took this TIME_WAIT over: `write_seq = tw_snd_nxt + 65535 + 2` (1 if that is 0),
    /// `ts_recent` and `ts_recent_stamp` inherited (the SYN echoes `ts_recent`); the kernel then deschedules it
    /// (`inet_twsk_deschedule_put`).
    mutating func takeOver(_ tw: PortTable.TimeWait, why: String, steps: inout [ConnectRoute.Step]) {
        tcp.inheritedTimeWait = tw
        if let n = tw.sndNxt {
            var seq = n &+ 65535 &+ 2
            if seq == 0 { seq = 1 }
            tcp.inheritedWriteSeq = seq
        } else {
            tcp.inheritedWriteSeq = nil
        }
        tcp.tsRecent = tw.tsRecent ?? 0
        let known = tw.sndNxt.map { "write_seq = tw_snd_nxt \($0) + 65535 + 2 = \(tcp.inheritedWriteSeq!)" } ?? "tw_snd_nxt unknown (not watched)"
        steps.append(ConnectRoute.Step("tcp_twsk_unique", "TIME_WAIT \(tw.tuple.source):\(tw.tuple.sourcePort) → \(tw.tuple.destination):\(tw.tuple.destinationPort) taken over (\(why)): \(known), ts_recent \(tw.tsRecent.map(String.init) ?? "unknown")"))
    }

    /// The `failure:` path of tcp_v4_connect: back to CLOSE, saddr and dport reset.
    mutating func failToClose() {
        sk.state = .close
        if inet.boundAddress == .any { inet.sourceAddress = .any }
        if inet.boundPort == 0 { inet.sourcePort = 0 }
        inet.destination = .any
        inet.destinationPort = 0
    }

    /// A packet from the wire (an IPv4 datagram addressed to this node), with the device it arrived on when known.
    /// Mirrors `tcp_v4_rcv` → `tcp_rcv_synsent_state_process` / `tcp_rcv_state_process`, and `tcp_v4_err` for ICMP.
    public mutating func receive(_ bytes: [UInt8], now: Instant, device: String? = nil) -> [Action] {
        guard let v = try? IPv4PacketView(checking: bytes), v.header.count > 0 else { return [] }
        // ip_rcv_options: a packet with a source-route option is dropped by a device that does not accept source
        // routes, also at its final destination (a SYN-ACK carrying the reversed route of our SSRR/LSRR SYN).
        if let allowed = config.sysctls.sourceRouteDevices, let dev = device, !allowed.contains(dev),
           v.headerLength > 20, (try? IPv4Option.parseAll(v.optionBytes))?.contains(where: \.isSourceRoute) == true {
            guard v.proto == .tcp || v.proto == .icmp, v.destination == inet.sourceAddress, v.source == inet.destination || v.proto == .icmp else { return [] }
            return [trace(now, "ip_rcv_options", "a source-route option from \(v.source) on \(dev), accept_source_route off there: dropped")]
        }
        // __inet_lookup_established → inet_sk_bound_dev_eq: a socket bound to a device is found only by packets
        // (segments, and ICMP errors quoting ours) that arrived on that device. The node's kernel, finding no socket,
        // answers such a segment with a RST itself (the driver's guard lets it through).
        if v.proto == .icmp { return icmpError(v, now: now, device: device) }
        guard v.proto == .tcp, let t = try? TCPSegmentView(checking: v.payload), let th = try? TCPHeader.parse(t) else { return [] }
        guard sk.state != .close, v.destination == inet.sourceAddress, t.destinationPort == inet.sourcePort, t.sourcePort == inet.destinationPort,
              v.source == inet.destination else { return [] }
        if let skip = otherDevice(device, now: now, what: "segment from \(v.source)") { return [skip] }
        switch sk.state {
        case .synSent: return tcpRcvSynsentStateProcess(th, payload: Array(t.payload), now: now)
        default: return tcpRcvEstablished(th, payload: Array(t.payload), now: now)
        }
    }

    /// The trace of a packet for this connection that arrived on another device than the bound one, or nil.
    func otherDevice(_ device: String?, now: Instant, what: String) -> Action? {
        guard let bound = sk.boundDevice, let dev = device, dev != bound else { return nil }
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
        let ours = q.header.source == inet.sourceAddress && ports.source == inet.sourcePort && ports.destination == inet.destinationPort &&
            q.header.destination == inet.destination
        guard ours, sk.state != .close else { return [] }
        if let skip = otherDevice(device, now: now, what: "ICMP from \(v.source)") { return [skip] }
        var out: [Action] = []
        guard seq.between(tcp.sndUna, tcp.sndNxt) else {
            out.append(trace(now, f, "quoted seq \(seq.raw) outside [\(tcp.sndUna.raw), \(tcp.sndNxt.raw)]: ignored (OUTOFWINDOWICMPS)"))
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
        guard sk.state == .synSent else {
            out.append(trace(now, f, "ICMP \(err.name) in \(sk.state.rawValue): soft error, ignored"))
            return out
        }
        out.append(trace(now, f, "ICMP type \(msg.type) from \(v.source) about our SYN: SYN_SENT hard error \(err.name), tcp_done"))
        return out + fail(err, now: now)
    }
}
