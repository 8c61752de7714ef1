import NetCore
import SystemPackage
import Wire

/// net/ipv4/tcp.c: a write, close(2) and `tcp_disconnect`.

extension ConnectEngine {
    /// Send a payload (one segment, PSH|ACK). Mirrors `tcp_sendmsg` → `tcp_write_xmit` for a small write.
    public mutating func send(_ data: [UInt8], now: Instant) -> [Action] {
        guard sk.state == .established || sk.state == .closeWait, !data.isEmpty else { return [] }
        let mss = max(1, tcp.peerMSS - (inet.ipOptions?.optlen ?? 0) - (tcp.timestampsOK ? TCPOptionKind.timestampsAlignedLength : 0))
        let chunk = Array(data.prefix(mss))
        tcp.unacked += chunk
        let pkt = segment(flags: [.psh, .ack], seq: tcp.sndNxt, ack: tcp.rcvNxt, options: tsOption(now: now), payload: chunk, now: now)
        tcp.sndNxt = tcp.sndNxt + UInt32(chunk.count)
        icsk.rto = establishedRTO()
        icsk.retransmits = 0
        let rearm = armRetransmitTimer(now: now)
        return [.send(pkt), trace(now, "tcp_sendmsg", "\(chunk.count) bytes seq \(tcp.sndNxt.raw &- UInt32(chunk.count))"), rearm]
    }

    /// close(2): FIN. Mirrors `tcp_close` → `tcp_send_fin`.
    public mutating func close(now: Instant) -> [Action] {
        switch sk.state {
        case .established: sk.state = .finWait1
        case .closeWait: sk.state = .lastAck
        case .synSent:
            let out = tcpDisconnect(now: now)
            return out + [trace(now, "tcp_close", "in SYN_SENT: no FIN, CLOSE")]
        default: return []
        }
        tcp.finSent = true
        let pkt = segment(flags: [.fin, .ack], seq: tcp.sndNxt, ack: tcp.rcvNxt, options: tsOption(now: now), now: now)
        tcp.sndNxt = tcp.sndNxt + 1
        icsk.rto = establishedRTO()
        let rearm = armRetransmitTimer(now: now)
        return [.send(pkt), trace(now, "tcp_send_fin", "FIN seq \(tcp.sndNxt.raw &- 1); \(sk.state.rawValue)"), rearm]
    }

    /// `tcp_disconnect`: back to CLOSE, sending RST if a connection exists.
    mutating func tcpDisconnect(now: Instant) -> [Action] {
        var out: [Action] = []
        if sk.state == .established {
            out.append(.send(segment(flags: [.rst, .ack], seq: tcp.sndNxt, ack: tcp.rcvNxt, options: [], now: now)))
        }
        if sk.state != .close { out.append(.cancelTimer); icsk.timer = .idle }
        sk.state = .close
        inet.destination = .any
        inet.destinationPort = 0
        if inet.boundAddress == .any { inet.sourceAddress = .any }
        if inet.boundPort == 0 { inet.sourcePort = 0 }
        icsk.retransmits = 0; icsk.timeouts = 0; icsk.rto = TCPTimeouts.initial
        // memset(&tp->rx_opt, 0): ts_recent and what a TIME_WAIT left are gone.
        tcp.tsRecent = 0; tcp.inheritedTimeWait = nil; tcp.inheritedWriteSeq = nil
        return out
    }
}
