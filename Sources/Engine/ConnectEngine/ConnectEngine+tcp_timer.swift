import NetCore
import SystemPackage
import Wire

/// net/ipv4/tcp_timer.c: the retransmission timer.

/// The kernel's TCP timeouts (include/net/tcp.h).
public enum TCPTimeouts {
    /// TCP_TIMEOUT_INIT: the first RTO.
    public static let initial: Duration = .seconds(1)
    /// TCP_RTO_MAX.
    public static let max: Duration = .seconds(120)
    /// TCP_RTO_MIN.
    public static let min: Duration = .milliseconds(200)
}

extension ConnectEngine {
    /// The retransmission timer fired. Mirrors `tcp_retransmit_timer()` and `tcp_write_timeout()` in
    /// net/ipv4/tcp_timer.c as Linux 6.5+ behave (measured against the kernel: Tests/TestSupport/Fixtures/syn-schedule.txt).
    public mutating func timerFired(now: Instant) -> [Action] {
        guard case .armed(let deadline) = icsk.timer, now >= deadline else { return [] }
        var out: [Action] = []
        switch sk.state {
        case .synSent:
            // tcp_write_timeout: expired after syn_retries + linear_timeouts retransmissions, or once the time since the
            // first SYN reaches tcp_model_timeout(syn_retries) = (2^(n+1) - 1) * 1 s.
            let retryUntil = icsk.synCount > 0 ? icsk.synCount : config.sysctls.tcpSynRetries
            let maxRetransmits = retryUntil + config.sysctls.tcpSynLinearTimeouts
            let modelTimeout = Self.tcpModelTimeout(boundary: retryUntil, rtoBase: TCPTimeouts.initial)
            let elapsed = now - icsk.retransStamp
            let timedOut = icsk.retransmits > 0 && elapsed >= modelTimeout
            if icsk.retransmits >= maxRetransmits || timedOut {
                out.append(trace(now, "tcp_write_timeout", "\(icsk.retransmits) retransmissions, \(elapsed.traceDescription) since the SYN (limit \(maxRetransmits) or \(modelTimeout.traceDescription)): ETIMEDOUT"))
                return out + fail(.timedOut, now: now)
            }
            out.append(ipQueueXmit(synSegment(now: now), now: now))
            icsk.retransmits += 1
            icsk.timeouts += 1
            if icsk.timeouts > config.sysctls.tcpSynLinearTimeouts { icsk.rto = min(icsk.rto * 2, TCPTimeouts.max) }
            out.append(trace(now, "tcp_retransmit_timer", "SYN retransmission \(icsk.retransmits) (same seq, new TS and IP ID); next RTO \(icsk.rto.traceDescription)\(icsk.timeouts <= config.sysctls.tcpSynLinearTimeouts ? " (linear)" : "")"))
            let rearm = armRetransmitTimer(now: now)
            out.append(rearm)
        case .established, .finWait1, .closeWait, .lastAck, .closing:
            // Retransmit what is unacknowledged.
            if !tcp.unacked.isEmpty || (tcp.finSent && !tcp.finAcked) {
                icsk.retransmits += 1
                if icsk.retransmits > 15 { return out + fail(.timedOut, now: now) }
                var flags: TCPFlags = .ack
                if !tcp.unacked.isEmpty { flags.insert(.psh) }
                if tcp.finSent && !tcp.finAcked { flags.insert(.fin) }
                out.append(.send(segment(flags: flags, seq: tcp.sndUna, ack: tcp.rcvNxt, options: tsOption(now: now), payload: tcp.unacked, now: now)))
                icsk.rto = min(icsk.rto * 2, TCPTimeouts.max)
                let rearm = armRetransmitTimer(now: now)
                out.append(trace(now, "tcp_retransmit_timer", "retransmit \(tcp.unacked.count) bytes\(tcp.finSent && !tcp.finAcked ? " + FIN" : ""); RTO \(icsk.rto.traceDescription)"))
                out.append(rearm)
            }
        default:
            icsk.timer = .idle
        }
        return out
    }

    /// `tcp_model_timeout()`: the time a schedule of `boundary` exponential retransmissions takes.
    public static func tcpModelTimeout(boundary: Int, rtoBase: Duration) -> Duration {
        let base = rtoBase.inNanoseconds, rtoMax = TCPTimeouts.max.inNanoseconds
        let ratio = rtoMax / base
        let thresh = ratio > 0 ? 63 - ratio.leadingZeroBitCount : 0   // ilog2
        if boundary <= thresh { return .nanoseconds(((Int64(2) << Int64(boundary)) - 1) * base) }
        return .nanoseconds(((Int64(2) << Int64(thresh)) - 1) * base + Int64(boundary - thresh) * rtoMax)
    }

    /// (Re)arm the retransmission timer `icsk_rto` from now (`inet_csk_reset_xmit_timer`).
    mutating func armRetransmitTimer(now: Instant) -> Action {
        let at = now + icsk.rto
        icsk.timer = .armed(expiresAt: at)
        return .armTimer(at)
    }
}
