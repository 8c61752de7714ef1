import NetCore
import SystemPackage
import Wire

// The engine's one socket, grouped as the kernel's structures nest (`struct tcp_sock` holds an
// `inet_connection_sock`, which holds an `inet_sock`, which holds a `struct sock`). Each field names the kernel's.

/// `struct socket` and the `struct sock` fields netlab models (include/net/sock.h).
public struct Sock: Sendable {
    /// `sock->state`.
    public internal(set) var socketState = SocketState.unconnected
    /// `sk->sk_state`.
    public internal(set) var state = TCPState.close
    /// `sk->sk_err`: read and cleared by `socketError()` (SO_ERROR) and by a later connect().
    public internal(set) var pendingError: Errno?
    /// Connects with AF_UNSPEC so far.
    var disconnects = 0
    /// `sk_bound_dev_if` (SO_BINDTODEVICE), by name.
    public internal(set) var boundDevice: String?
    /// `sk_mark` (SO_MARK).
    public internal(set) var mark: UInt32 = 0
    /// SOCK_LOCALROUTE (SO_DONTROUTE).
    public internal(set) var dontRoute = false
    /// `sk_rcvbuf` when SO_RCVBUF set it (SOCK_RCVBUF_LOCK); nil: tcp_rmem's default.
    public internal(set) var receiveBuffer: Int?
    /// `sk_uid`.
    public internal(set) var uid: UInt32 = 0
    /// `sk_dst_cache`: the route connect chose.
    public internal(set) var route: ResolvedRoute?
}

/// `struct inet_sock` (include/net/inet_sock.h): addresses, ports and what IP puts in each packet.
public struct InetSock: Sendable {
    /// `inet_rcv_saddr`: the bound address (SOCK_BINDADDR_LOCK when set).
    public internal(set) var boundAddress = IPv4Address.any
    /// `inet_num` as bind() set it (SOCK_BINDPORT_LOCK when set).
    public internal(set) var boundPort: UInt16 = 0
    /// `inet_saddr`.
    public internal(set) var sourceAddress = IPv4Address.any
    /// `inet_sport`.
    public internal(set) var sourcePort: UInt16 = 0
    /// `inet_daddr`: the connection's (final) destination.
    public internal(set) var destination = IPv4Address.any
    /// `inet_dport`.
    public internal(set) var destinationPort: UInt16 = 0
    /// `inet_id`: the next IP ID.
    var ipID: UInt16 = 0
    /// `tos` (IP_TOS).
    public internal(set) var tos: UInt8 = 0
    /// `uc_ttl` (IP_TTL; -1: the route's hoplimit, else ip_default_ttl).
    public internal(set) var ttl = -1
    /// `inet_opt` (IP_OPTIONS).
    public internal(set) var ipOptions: SocketIPOptions?
    /// The options as they go on this connection's packets (final destination in the last slot), built at connect.
    var wireOptions: [IPv4Option] = []
}

/// The socket's one retransmission timer (`icsk_retransmit_timer`), as smoltcp's `Timer`: idle, or armed to fire at
/// an instant (the driver calls `timerFired(now:)` then).
public enum RetransmitTimer: Sendable, Equatable {
    case idle
    case armed(expiresAt: Instant)
    public var expiresAt: Instant? {
        if case .armed(let t) = self { return t }
        return nil
    }
}

/// `struct inet_connection_sock` (include/net/inet_connection_sock.h) and the retransmission state of `tcp_sock`
/// (net/ipv4/tcp_timer.c): `icsk_rto`, `icsk_retransmits`, `total_rto`, `retrans_stamp`, `icsk_syn_retries`.
public struct InetConnectionSock: Sendable {
    /// `icsk_syn_retries` (TCP_SYNCNT; 0: tcp_syn_retries).
    public internal(set) var synCount = 0
    /// `icsk_rto`.
    public internal(set) var rto: Duration = TCPTimeouts.initial
    /// `icsk_retransmits`.
    public internal(set) var retransmits = 0
    /// `icsk_backoff`-like count of timeouts (the linear ones included).
    var timeouts = 0
    /// `retrans_stamp`: when the first SYN went out.
    var retransStamp = Instant.zero
    public internal(set) var timer = RetransmitTimer.idle
}

/// `struct tcp_sock` (include/linux/tcp.h): sequence space, windows, MSS, options, and what a TIME_WAIT left.
public struct TCPSock: Sendable {
    /// `write_seq` at connect: the ISN.
    public internal(set) var iss = SeqNumber(0)
    public internal(set) var sndUna = SeqNumber(0)
    public internal(set) var sndNxt = SeqNumber(0)
    public internal(set) var rcvNxt = SeqNumber(0)
    public internal(set) var sndWnd: UInt32 = 0
    /// `rx_opt.snd_wscale`.
    public internal(set) var sndWscale: UInt8 = 0
    /// `rcv_wnd`, `rx_opt.rcv_wscale`, `window_clamp`: what `tcp_select_initial_window` chose.
    public internal(set) var rcvWnd: UInt32 = 0
    public internal(set) var rcvWscale: UInt8 = 0
    public internal(set) var windowClamp: UInt32 = 0
    /// `advmss`: the MSS this side announces.
    public internal(set) var advmss = 0
    /// `mss_cache` after the handshake: the peer's MSS, at most ours.
    public internal(set) var peerMSS = 0
    /// `rx_opt.user_mss` (TCP_MAXSEG).
    public internal(set) var userMSS = 0
    /// `rx_opt.mss_clamp`.
    var mssClamp = TCPSock.defaultMSS
    /// TCP_MSS_DEFAULT (RFC 1122): the MSS of a peer that announces none, and `tcp_v4_connect`'s first mss_clamp.
    static let defaultMSS = 536
    /// `tsoffset`.
    public internal(set) var tsOffset: UInt32 = 0
    /// `rx_opt.tstamp_ok`, `rx_opt.sack_ok`.
    public internal(set) var timestampsOK = false
    public internal(set) var sackOK = false
    /// `rx_opt.ts_recent`.
    var tsRecent: UInt32 = 0
    /// The TIME_WAIT socket `tcp_twsk_unique` took over, and the `write_seq` it left (nil: unknown or none).
    public internal(set) var inheritedTimeWait: PortTable.TimeWait?
    var inheritedWriteSeq: UInt32?
    /// The destination of the previous connect (a TIME_WAIT's ts_recent is kept only for the same one).
    var lastDestination = IPv4Address.any
    /// When the SYN went out, and the handshake's RTT once established (the one RTT sample).
    var synSentAt = Instant.zero
    var handshakeRTT: Duration?
    /// Unacknowledged data and FIN (sent, waiting for an ACK), and the peer's FIN.
    var unacked: [UInt8] = []
    var finSent = false
    var finAcked = false
    var peerFinReceived = false
}
