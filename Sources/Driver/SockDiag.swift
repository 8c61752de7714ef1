import CNetSys
import Glibc
import Netlink
import NetCore

/// One TCP socket as `ss -tan` lists it, read with NETLINK_SOCK_DIAG (`inet_diag_dump_icsk` → `inet_sk_diag_fill`
/// or, for a timewait socket, `inet_twsk_diag_fill`): the 4-tuple, the state (a timewait socket reports its
/// `tw_substate`), the bound device, and the timer. Unlike `/proc/net/tcp`, it tells a timewait socket apart
/// (`idiag_timer` 3) and gives its remaining time to the millisecond (`idiag_expires`), so its age is known.
public struct DiagSocket: Sendable, Hashable {
    public var state: UInt8
    public var timer: UInt8
    public var source: IPv4Address, sourcePort: UInt16
    public var destination: IPv4Address, destinationPort: UInt16
    /// `idiag_if`: the bound device's index (`tw_bound_dev_if` for a timewait socket), 0 when not bound.
    public var boundIndex: UInt32
    /// `idiag_expires` in ms: for a timewait socket, `tw_timer.expires - jiffies`.
    public var expiresMs: UInt32
    /// A timewait socket (`struct inet_timewait_sock`), whatever its substate.
    public var isTimeWait: Bool { timer == 3 }
    /// TCP_LISTEN (10) or TCP_CLOSE (7): a port held by bind().
    public var holdsBoundPort: Bool { state == 10 || state == 7 }
}

public enum SockDiag {
    /// `TCP_TIMEWAIT_LEN`: a timewait socket in the TIME_WAIT substate is scheduled for 60 s when it is made
    /// (`tcp_time_wait`), the moment `tw_entry_stamp` is taken; its age is this minus `idiag_expires`.
    public static let timeWaitLengthMs: Int64 = 60_000

    /// `ss -tan` in a namespace: every IPv4 TCP socket, timewait sockets included.
    public static func tcpSockets(in namespace: NetworkNamespace) throws -> [DiagSocket] {
        let fd = try namespace.run { () throws(DriverError) -> Int32 in
            try sys("socket(AF_NETLINK, NETLINK_SOCK_DIAG) in \(namespace.name)") {
                socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
            }
        }
        defer { close(fd) }
        return try tcpSockets(fd: fd, namespace: namespace)
    }

    /// The same over a NETLINK_SOCK_DIAG socket already open in `namespace` (`NodeHandles` keeps one).
    public static func tcpSockets(fd: Int32, namespace: NetworkNamespace) throws -> [DiagSocket] {
        // nlmsghdr (16) + inet_diag_req_v2 (56): AF_INET, IPPROTO_TCP, no extensions, every state.
        var req = [UInt8](repeating: 0, count: 72)
        func put32(_ v: UInt32, at o: Int) { withUnsafeBytes(of: v) { for (i, b) in $0.enumerated() { req[o + i] = b } } }
        func put16(_ v: UInt16, at o: Int) { withUnsafeBytes(of: v) { for (i, b) in $0.enumerated() { req[o + i] = b } } }
        put32(72, at: 0)
        put16(20 /* SOCK_DIAG_BY_FAMILY */, at: 4)
        put16(0x1 | 0x300 /* NLM_F_REQUEST | NLM_F_DUMP */, at: 6)
        put32(1, at: 8)
        req[16] = UInt8(AF_INET)
        req[17] = UInt8(IPPROTO_TCP)
        put32(0xffff_ffff, at: 20)
        try sys("send(SOCK_DIAG_BY_FAMILY) in \(namespace.name)") { req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } }
        var out: [DiagSocket] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try sys("recv(NETLINK_SOCK_DIAG) in \(namespace.name)") { buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }
            var off = 0
            while off + 16 <= n {
                let len = Int(load32(buf, off))
                let type = UInt16(load16(buf, off + 4))
                guard len >= 16, off + len <= n else { break }
                if type == 3 /* NLMSG_DONE */ { return out }
                if type == 2 /* NLMSG_ERROR */ {
                    let e = Int32(bitPattern: load32(buf, off + 16))
                    if e == 0 { return out }
                    throw DriverError(operation: "SOCK_DIAG_BY_FAMILY in \(namespace.name)", errno: .init(rawValue: -e))
                }
                if type == 20, len >= 16 + 72 {
                    let m = off + 16
                    func be16(_ o: Int) -> UInt16 { UInt16(buf[m + o]) << 8 | UInt16(buf[m + o + 1]) }
                    func be32(_ o: Int) -> UInt32 { UInt32(buf[m + o]) << 24 | UInt32(buf[m + o + 1]) << 16 | UInt32(buf[m + o + 2]) << 8 | UInt32(buf[m + o + 3]) }
                    out.append(DiagSocket(state: buf[m + 1], timer: buf[m + 2],
                                          source: IPv4Address(be32(8)), sourcePort: be16(4),
                                          destination: IPv4Address(be32(24)), destinationPort: be16(6),
                                          boundIndex: load32(buf, m + 40), expiresMs: load32(buf, m + 52)))
                }
                off += (len + 3) & ~3
            }
            if n == 0 { return out }
        }
    }

    static func load32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }
    static func load16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
}
