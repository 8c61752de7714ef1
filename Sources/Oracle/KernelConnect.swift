import Glibc
import NetCore
import Netlink
import SystemPackage

/// A real kernel connect() in a namespace: non-blocking, with the query's socket options. The socket is made on the
/// namespace's thread and closed with an RST right after `getsockname`.
public enum KernelConnect {
    public struct Outcome: Sendable {
        public var error: Errno?
        public var source: IPv4Address
        public var port: UInt16
    }

    /// The port a connect goes to: the query's, 80 when it has none.
    public static func destinationPort(_ q: RouteQuery) -> UInt16 { q.destinationPort == 0 ? 80 : q.destinationPort }

    public static func attempt(_ q: RouteQuery, in namespace: NetworkNamespace) throws -> Outcome {
        let fd: Int32 = try namespace.run { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0) }
        guard fd >= 0 else { throw NetlinkError(operation: "socket", errno: Errno(rawValue: Glibc.errno)) }
        defer {
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            close(fd)
        }
        if let d = q.device {
            _ = d.withCString { setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, $0, socklen_t(strlen($0) + 1)) }
        }
        if q.mark != 0 { var m = q.mark; setsockopt(fd, SOL_SOCKET, SO_MARK, &m, 4) }
        if q.tos != 0 { var t = Int32(q.tos); setsockopt(fd, Int32(IPPROTO_IP), IP_TOS, &t, 4) }
        func sin(_ a: IPv4Address, _ port: UInt16) -> sockaddr_in {
            var s = sockaddr_in()
            s.sin_family = sa_family_t(AF_INET)
            s.sin_port = port.bigEndian
            s.sin_addr.s_addr = a.value.bigEndian
            return s
        }
        if q.source != .any || q.sourcePort != 0 {
            var b = sin(q.source, q.sourcePort)
            let rc = withUnsafePointer(to: &b) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if rc != 0 { return Outcome(error: Errno(rawValue: Glibc.errno), source: .any, port: 0) }
        }
        var d = sin(q.destination, destinationPort(q))
        let rc = withUnsafePointer(to: &d) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0, Glibc.errno != EINPROGRESS { return Outcome(error: Errno(rawValue: Glibc.errno), source: .any, port: 0) }
        var local = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Outcome(error: nil, source: IPv4Address(UInt32(bigEndian: local.sin_addr.s_addr)), port: UInt16(bigEndian: local.sin_port))
    }
}
