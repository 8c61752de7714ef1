import NetCore
import SystemPackage
import Wire

/// net/ipv4/tcp_input.c: SYN_SENT (`tcp_rcv_synsent_state_process`) and after (`tcp_rcv_state_process`), `tcp_done`,
/// `tcp_set_rto`.

extension ConnectEngine {
    /// Mirrors `tcp_rcv_synsent_state_process()` in net/ipv4/tcp_input.c.
    mutating func tcpRcvSynsentStateProcess(_ th: TCPHeader, payload: [UInt8], now: Instant) -> [Action] {
        var out: [Action] = []
        let f = "tcp_rcv_synsent_state_process"
        if th.flags.contains(.ack) {
            // !after(ack, snd_una) || after(ack, snd_nxt): an unacceptable ACK gets a RST (seq = its ack) and is dropped.
            if !th.ack.after(tcp.sndUna) || th.ack.after(tcp.sndNxt) {
                out.append(trace(now, f, "ACK \(th.ack.raw) not in (\(tcp.sndUna.raw), \(tcp.sndNxt.raw)]: send RST seq \(th.ack.raw), drop"))
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
            tcp.rcvNxt = th.seq + 1
            tcp.sndUna = th.ack
            tcp.sndWnd = UInt32(th.window)
            var sawWscale: UInt8?
            var sawTS: UInt32?
            var sawSackPerm = false
            var theirMSS = TCPSock.defaultMSS
            for o in th.options {
                switch o {
                case .mss(let m): theirMSS = Int(m)
                case .windowScale(let w): sawWscale = min(w, 14)
                case .timestamps(let val, _): sawTS = val
                case .sackPermitted: sawSackPerm = true
                default: break
                }
            }
            if config.sysctls.tcpWindowScaling, let ws = sawWscale { tcp.sndWscale = ws } else { tcp.sndWscale = 0; tcp.rcvWscale = 0 }
            if config.sysctls.tcpTimestamps != 0, let ts = sawTS { tcp.timestampsOK = true; tcp.tsRecent = ts } else { tcp.timestampsOK = false }
            tcp.sackOK = config.sysctls.tcpSack && sawSackPerm
            tcp.peerMSS = min(theirMSS, tcp.advmss)
            sk.state = .established
            tcp.handshakeRTT = now - tcp.synSentAt
            icsk.timer = .idle
            out.append(.cancelTimer)
            out.append(trace(now, f, "SYN-ACK seq \(th.seq.raw) ack \(th.ack.raw): rcv_nxt \(tcp.rcvNxt.raw), snd_wscale \(tcp.sndWscale), TS \(tcp.timestampsOK ? "on" : "off"), SACK \(tcp.sackOK ? "on" : "off"), mss \(tcp.peerMSS); ESTABLISHED"))
            out.append(.send(ackSegment(now: now)))
            out.append(trace(now, "tcp_send_ack", "ACK seq \(tcp.sndNxt.raw) ack \(tcp.rcvNxt.raw)"))
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

    /// Segments after the handshake: ACKs of our data and FIN, in-order data, the peer's FIN, RST.
    mutating func tcpRcvEstablished(_ th: TCPHeader, payload: [UInt8], now: Instant) -> [Action] {
        var out: [Action] = []
        let f = "tcp_rcv_state_process"
        if th.flags.contains(.rst) {
            // RFC 5961: only an in-window RST resets.
            if th.seq == tcp.rcvNxt || (sk.state != .synSent && th.seq.between(tcp.rcvNxt, tcp.rcvNxt + UInt32(tcp.rcvWnd))) {
                out.append(trace(now, f, "RST in \(sk.state.rawValue): ECONNRESET"))
                let wasClosing = [.finWait1, .finWait2, .lastAck, .closing, .timeWait].contains(sk.state)
                out += fail(wasClosing ? .connectionReset : .connectionReset, now: now)
                return out
            }
            return [trace(now, f, "RST seq \(th.seq.raw) out of window: ignored")]
        }
        if th.flags.contains(.syn) {
            // A retransmitted SYN-ACK: our ACK was lost; ACK again.
            return [trace(now, f, "duplicate SYN-ACK: ACK again"), .send(ackSegment(now: now))]
        }
        for o in th.options { if case .timestamps(let v, _) = o, tcp.timestampsOK { tcp.tsRecent = v } }
        if th.flags.contains(.ack), th.ack.after(tcp.sndUna), !th.ack.after(tcp.sndNxt) {
            let acked = Int(th.ack - tcp.sndUna)
            let dataAcked = min(acked, tcp.unacked.count)
            tcp.unacked.removeFirst(dataAcked)
            if tcp.finSent && !tcp.finAcked && th.ack == tcp.sndNxt { tcp.finAcked = true }
            tcp.sndUna = th.ack
            icsk.retransmits = 0
            out.append(trace(now, "tcp_ack", "ack \(th.ack.raw): \(dataAcked) bytes\(tcp.finAcked && acked > dataAcked ? " + FIN" : "") acknowledged"))
            if tcp.unacked.isEmpty && (!tcp.finSent || tcp.finAcked) { icsk.timer = .idle; out.append(.cancelTimer) }
            if tcp.finAcked {
                if sk.state == .finWait1 { sk.state = .finWait2 }
                if sk.state == .closing { sk.state = .timeWait; out.append(.closed) }
                if sk.state == .lastAck { sk.state = .close; out.append(.closed) }
            }
        }
        var needAck = false
        if !payload.isEmpty {
            if th.seq == tcp.rcvNxt {
                tcp.rcvNxt = tcp.rcvNxt + UInt32(payload.count)
                out.append(.received(payload))
                out.append(trace(now, "tcp_data_queue", "\(payload.count) bytes in order"))
            } else {
                out.append(trace(now, "tcp_data_queue", "out-of-order seq \(th.seq.raw) (expected \(tcp.rcvNxt.raw)): dup ACK"))
            }
            needAck = true
        }
        if th.flags.contains(.fin), th.seq + UInt32(payload.count) == tcp.rcvNxt, !tcp.peerFinReceived {
            tcp.peerFinReceived = true
            tcp.rcvNxt = tcp.rcvNxt + 1
            needAck = true
            switch sk.state {
            case .established: sk.state = .closeWait
            case .finWait1: sk.state = tcp.finAcked ? .timeWait : .closing
            case .finWait2: sk.state = .timeWait
            default: break
            }
            out.append(trace(now, "tcp_fin", "peer FIN: \(sk.state.rawValue)"))
            if sk.state == .timeWait { out.append(.closed) }
        }
        if needAck { out.append(.send(ackSegment(now: now))) }
        return out
    }

    mutating func fail(_ err: Errno, now: Instant) -> [Action] {
        sk.pendingError = err
        sk.state = .close
        icsk.timer = .idle
        return [.cancelTimer, .failed(err)]
    }

    /// The RTO after one RTT sample (the handshake): `__tcp_set_rto` with srtt = m, rttvar = max(m/2 * 4, rto_min).
    func establishedRTO() -> Duration {
        let m = tcp.handshakeRTT ?? TCPTimeouts.initial
        return min(max(m + max(m * 2, TCPTimeouts.min), TCPTimeouts.min), TCPTimeouts.max)
    }
}
