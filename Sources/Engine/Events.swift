import NetCore
import SystemPackage
import Wire

/// One step of the engine, named after the kernel function it mirrors, with its inputs and decision.
public struct TraceEvent: Sendable, Equatable, CustomStringConvertible {
    public var time: Instant
    /// The kernel function this step mirrors (`tcp_v4_connect`, `ip_route_connect`, `inet_hash_connect`, ...).
    public var function: String
    public var detail: String
    public init(time: Instant, function: String, detail: String) { self.time = time; self.function = function; self.detail = detail }
    public var description: String { "[\(time)] \(function): \(detail)" }
}

/// An IPv4 packet for the driver to put on the wire.
public struct OutgoingPacket: Sendable, Equatable {
    public var bytes: [UInt8]
    /// Where the route sends it (gateway or on-link destination) and through which device.
    public var nextHop: IPv4Address
    public var device: String
}

/// What the engine asks of its driver, in order.
public enum Action: Sendable, Equatable {
    case send(OutgoingPacket)
    /// (Re)arm the single retransmission timer; the driver calls `timerFired(now:)` at that time.
    case armTimer(Instant)
    case cancelTimer
    /// The handshake completed (SYN-ACK accepted, ACK sent).
    case established
    /// The connection failed with this errno (what SO_ERROR and the next connect() report).
    case failed(Errno)
    /// In-order payload from the peer.
    case received([UInt8])
    /// Both sides closed; nothing more will be sent.
    case closed
    case trace(TraceEvent)
}

/// `sock->state`.
public enum SocketState: String, Sendable { case unconnected, connecting, connected, disconnecting }

/// `sk->sk_state`.
public enum TCPState: String, Sendable {
    case close = "CLOSE", synSent = "SYN_SENT", established = "ESTABLISHED", finWait1 = "FIN_WAIT1",
         finWait2 = "FIN_WAIT2", closing = "CLOSING", timeWait = "TIME_WAIT", closeWait = "CLOSE_WAIT", lastAck = "LAST_ACK",
         listen = "LISTEN"
}

/// A connect() address: AF_INET with address and port, AF_UNSPEC (disconnect), or another family.
public enum SocketAddress: Sendable, Equatable {
    case inet(IPv4Address, UInt16)
    case unspec
    case family(UInt16)
    /// The size a caller would pass as addrlen for this address.
    public var defaultLength: Int {
        switch self { case .inet: 16; case .unspec: 16; case .family: 16 }
    }
}

/// Socket options a check can set (setsockopt).
public enum SocketOption: Sendable, Equatable {
    case bindToDevice(String?)      // SO_BINDTODEVICE
    case mark(UInt32)               // SO_MARK
    case tos(UInt8)                 // IP_TOS
    case ttl(Int)                   // IP_TTL (-1: route/sysctl default)
    case dontRoute(Bool)            // SO_DONTROUTE
    case synCount(Int)              // TCP_SYNCNT
    case maxSegment(Int)            // TCP_MAXSEG
    case ipOptions([UInt8])         // IP_OPTIONS
    case receiveBuffer(Int)         // SO_RCVBUF
    case uid(UInt32)                // the socket owner's uid (sk_uid)
}

/// `icmp_err_convert[]` (net/ipv4/icmp.c) for destination unreachable codes 0-15.
public func icmpErrConvert(_ code: UInt8) -> Errno? {
    switch code {
    case 0: .networkUnreachable
    case 1: .noRouteToHost
    case 2: .protocolNotAvailable          // ENOPROTOOPT
    case 3: .connectionRefused
    case 4: .messageTooLong                // EMSGSIZE (FRAG_NEEDED: PMTU, never reported in SYN_SENT)
    case 5: .notSupported                  // EOPNOTSUPP
    case 6: .networkUnreachable
    case 7: .hostIsDown
    case 8: Errno(rawValue: 64)            // ENONET
    case 9: .networkUnreachable
    case 10: .noRouteToHost
    case 11: .networkUnreachable
    case 12: .noRouteToHost
    case 13, 14, 15: .noRouteToHost
    default: nil
    }
}
