import NetCore
import SystemPackage
import Wire

/// net/ipv4/tcp_output.c: `tcp_connect_init`, `tcp_connect`, the SYN's options, and the segments `tcp_transmit_skb` builds.

extension ConnectEngine {
    /// Mirrors `tcp_connect_init()` and `tcp_connect()` in net/ipv4/tcp_output.c: MSS and window from the route, the
    /// SYN, the retransmission timer.
    mutating func tcpConnect(now: Instant) -> [Action] {
        guard let rt = sk.route else { return [] }
        var out: [Action] = []
        let s = config.sysctls
        // dst_metric_advmss: the route's advmss, else ipv4_default_advmss (mtu - 40, at least min_adv_mss).
        let headers = IPv4Field.minHeaderLength + TCPField.minHeaderLength
        let defaultAdvmss = min(max(rt.pathMTU - headers, s.ipRtMinAdvmss), 65535 - headers)
        let metric = rt.advmss ?? defaultAdvmss
        tcp.advmss = tcp.userMSS > 0 && tcp.userMSS < metric ? tcp.userMSS : metric          // tcp_mss_clamp
        if tcp.userMSS > 0 { tcp.mssClamp = tcp.userMSS }
        // tcp_full_space: half of sk_rcvbuf (the default scaling ratio).
        let rcvbuf = sk.receiveBuffer ?? s.tcpRmem.initial
        let space = UInt32(rcvbuf / 2)
        var clamp: UInt32 = tcp.windowClamp
        if sk.receiveBuffer != nil, clamp == 0 || clamp > space { clamp = space }
        // tcp_connect_init rounds the window to `advmss - (ts_recent_stamp ? tcp_header_len - sizeof(tcphdr) : 0)`: a
        // connect that took over a TIME_WAIT (ts_recent_stamp inherited) rounds to MSS - 12 with timestamps on
        // (65160 instead of 64240 at MSS 1460; measured on the wire, IntegrationTests/TimeWaitReuseTests).
        let tsHeader = tcp.inheritedTimeWait != nil && s.tcpTimestamps != 0 ? TCPOptionKind.timestampsAlignedLength : 0
        if tsHeader > 0 { out.append(trace(now, "tcp_connect_init", "ts_recent_stamp inherited: window rounded to advmss - \(tsHeader)")) }
        let (wnd, ws, newClamp) = Self.tcpSelectInitialWindow(space: space, mss: UInt32(tcp.advmss - tsHeader), windowClamp: clamp,
                                                               wscaleOK: s.tcpWindowScaling,
                                                               rmemMax: sk.receiveBuffer != nil ? 0 : UInt32(s.rmemMax),
                                                               tcpRmemMax: sk.receiveBuffer != nil ? 0 : UInt32(s.tcpRmem.max),
                                                               signedWindows: s.tcpWorkaroundSignedWindows)
        tcp.rcvWnd = wnd
        tcp.rcvWscale = ws
        tcp.windowClamp = newClamp
        out.append(trace(now, "tcp_connect_init", "advmss \(tcp.advmss) (\(rt.advmss != nil ? "route advmss" : "mtu \(rt.pathMTU) - 40")\(tcp.userMSS > 0 ? ", TCP_MAXSEG \(tcp.userMSS)" : "")), rcv_wnd \(tcp.rcvWnd), wscale \(tcp.rcvWscale)"))
        tcp.sndUna = tcp.iss
        tcp.sndNxt = tcp.iss + 1
        tcp.rcvNxt = SeqNumber(0)
        tcp.synSentAt = now
        icsk.retransStamp = now
        icsk.rto = TCPTimeouts.initial
        icsk.retransmits = 0
        icsk.timeouts = 0
        out.append(ipQueueXmit(synSegment(now: now), now: now))
        out.append(trace(now, "tcp_connect", "SYN seq \(tcp.iss.raw) to \(inet.destination):\(inet.destinationPort) via \(rt.nextHop) dev \(rt.device); RTO 1s"))
        let rearm = armRetransmitTimer(now: now)
        out.append(rearm)
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
        var o: [TCPOption] = [.mss(UInt16(tcp.advmss))]
        let ts = s.tcpTimestamps != 0
        if ts {
            let val = UInt32(truncatingIfNeeded: now.milliseconds) &+ tcp.tsOffset
            // tcp_syn_options: tsecr = rx_opt.ts_recent (0, or inherited from a TIME_WAIT by tcp_twsk_unique).
            if s.tcpSack { o += [.sackPermitted, .timestamps(value: val, echo: tcp.tsRecent)] } else { o += [.nop, .nop, .timestamps(value: val, echo: tcp.tsRecent)] }
        } else if s.tcpSack {
            o += [.nop, .nop, .sackPermitted]
        }
        if s.tcpWindowScaling { o += [.nop, .windowScale(tcp.rcvWscale)] }
        return o
    }

    mutating func synSegment(now: Instant) -> OutgoingPacket {
        var flags: TCPFlags = .syn
        switch config.sysctls.tcpEcn {
        case 1: flags.formUnion([.ece, .cwr])
        case 3...: flags.formUnion([.ae, .ece, .cwr])
        default: break
        }
        return segment(flags: flags, seq: tcp.iss, ack: SeqNumber(0), options: synOptions(now: now), now: now,
                       window: UInt16(min(tcp.rcvWnd, 65535)))
    }

    /// Build one IPv4+TCP packet: `tcp_transmit_skb`'s header inside `ipv4Header()` (`__ip_queue_xmit`).
    mutating func segment(flags: TCPFlags, seq: SeqNumber, ack: SeqNumber, options: [TCPOption], payload: [UInt8] = [],
                          now: Instant, window: UInt16? = nil) -> OutgoingPacket {
        let ip = ipv4Header()
        let th = TCPHeader(sourcePort: inet.sourcePort, destinationPort: inet.destinationPort, seq: seq, ack: ack, flags: flags,
                           window: window ?? currentWindow(), options: options)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ip.headerLength + th.headerLength + payload.count)
        ip.emit(payloadLength: th.headerLength + payload.count, into: &bytes)
        th.emit(payload: payload, source: inet.sourceAddress, destination: inet.destination, into: &bytes)
        return OutgoingPacket(bytes: bytes, nextHop: sk.route?.nextHop ?? inet.destination, device: sk.route?.device ?? "")
    }

    /// The window field after the handshake (`tcp_select_window`): free space rounded up to the scale, shifted.
    func currentWindow() -> UInt16 {
        let rcvbuf = sk.receiveBuffer ?? config.sysctls.tcpRmem.initial
        var w = UInt32(rcvbuf / 2)
        if tcp.rcvWscale > 0 {
            let unit = UInt32(1) << UInt32(tcp.rcvWscale)
            if w % unit != 0 { w = (w / unit + 1) * unit }
        }
        return UInt16(min(w >> UInt32(tcp.rcvWscale), 65535))
    }

    func tsOption(now: Instant) -> [TCPOption] {
        tcp.timestampsOK ? [.nop, .nop, .timestamps(value: UInt32(truncatingIfNeeded: now.milliseconds) &+ tcp.tsOffset, echo: tcp.tsRecent)] : []
    }

    mutating func ackSegment(now: Instant) -> OutgoingPacket {
        segment(flags: .ack, seq: tcp.sndNxt, ack: tcp.rcvNxt, options: tsOption(now: now), now: now)
    }
}
