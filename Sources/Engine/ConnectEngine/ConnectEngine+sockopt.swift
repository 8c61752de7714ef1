import NetCore
import SystemPackage
import Wire

/// setsockopt(2) and SO_ERROR: `sk_setsockopt` (net/core/sock.c), `do_ip_setsockopt` (net/ipv4/ip_sockglue.c),
/// `do_tcp_setsockopt` (net/ipv4/tcp.c).

extension ConnectEngine {
    /// setsockopt(2). Returns the errno, or nil.
    public mutating func setOption(_ option: SocketOption) -> Errno? {
        switch option {
        case .bindToDevice(let d): sk.boundDevice = (d?.isEmpty ?? true) ? nil : d
        case .mark(let m): sk.mark = m
        case .tos(let t): inet.tos = t
        case .ttl(let t):
            guard t == -1 || (1...255).contains(t) else { return .invalidArgument }
            inet.ttl = t
        case .dontRoute(let d): sk.dontRoute = d
        case .synCount(let n):
            guard (1...127).contains(n) else { return .invalidArgument }
            icsk.synCount = n
        case .maxSegment(let m):
            guard m == 0 || (88...65535).contains(m) else { return .invalidArgument }
            tcp.userMSS = m
        case .ipOptions(let bytes):
            if bytes.isEmpty { inet.ipOptions = nil; return nil }
            switch SocketIPOptions.compile(bytes) {
            case .success(let o): inet.ipOptions = o
            case .failure(let e): return e
            }
        case .receiveBuffer(let n): sk.receiveBuffer = max(2304, min(n, config.sysctls.rmemMax) * 2)
        case .uid(let u): sk.uid = u
        }
        return nil
    }

    /// SO_ERROR: returns and clears `sk_err`.
    public mutating func socketError() -> Errno? {
        defer { sk.pendingError = nil }
        return sk.pendingError
    }
}
