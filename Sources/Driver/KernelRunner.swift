import CNetSys
import Glibc
import NetCore
import Netlink
import SystemPackage

/// The same connect through a real kernel socket in the namespace: the oracle. Socket options as a program would
/// set them (SO_BINDTODEVICE, SO_MARK, IP_TOS, IP_OPTIONS, TCP_SYNCNT), bind, a non-blocking connect, poll for the
/// outcome, SO_ERROR, getsockname for the source; then the payload and its echo, and close.
public struct KernelRunner {
    public var namespace: NetworkNamespace
    public var dataTimeout: Int64 = 3 * 1_000_000_000
    /// Opens the socket on the namespace's kept thread (`NodeHandles.run`) instead of a new one.
    public var handles: NodeHandles?
    public init(namespace: NetworkNamespace, handles: NodeHandles? = nil) { self.namespace = namespace; self.handles = handles }

    public func run(_ spec: ConnectSpec) throws -> ConnectOutcome {
        let fd = try socket()
        defer { close(fd) }
        if let failed = prepare(fd, spec, optionErrorsEndTheConnect: true) { return failed }
        var out = ConnectOutcome()
        func fail(_ call: String) -> ConnectOutcome {
            out.errno = Errno(rawValue: Glibc.errno)
            out.trace.append("\(call): \(out.errno!)")
            return out
        }
        var d = sockaddrIn(spec.destination.value, spec.port)
        let start = monotonicNanoseconds()
        let rc = withUnsafePointer(to: &d) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0, Glibc.errno != EINPROGRESS { return fail("connect") }
        (out.source, out.sourcePort) = localName(fd)
        out.trace.append("connect: EINPROGRESS, local \(out.source.map(\.description) ?? "?"):\(out.sourcePort ?? 0)")
        // Until writable (established) or an error (SO_ERROR): a SYN schedule ends within (2^(n+1)-1)s + linear
        // timeouts; 200 s bounds the kernel's default of 6 retries (127 s) and anything below it.
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let limitMs: Int32 = 200_000
        var r: Int32 = 0
        let pollUntil = monotonicNanoseconds() + Int64(limitMs) * 1_000_000
        while monotonicNanoseconds() < pollUntil {
            r = poll(&p, 1, 100)
            if r > 0 { break }
            if let sig = Interrupts.signal { throw Interrupted(operation: "kernel connect", signal: sig) }
        }
        var soError: Int32 = 0
        var len = socklen_t(MemoryLayout.size(ofValue: soError))
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
        if r == 0 { out.errno = .timedOut; out.trace.append("poll: no outcome in \(limitMs / 1000) s"); return out }
        if soError != 0 {
            out.errno = Errno(rawValue: soError)
            out.trace.append("SO_ERROR: \(out.errno!)")
            return out
        }
        out.handshakeNanoseconds = monotonicNanoseconds() - start
        (out.source, out.sourcePort) = localName(fd)
        out.trace.append("established, local \(out.source.map(\.description) ?? "?"):\(out.sourcePort ?? 0)")
        if let payload = spec.payload {
            var echoed: [UInt8] = []
            _ = payload.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let until = monotonicNanoseconds() + dataTimeout
            var buf = [UInt8](repeating: 0, count: 65536)
            while echoed.count < payload.count, monotonicNanoseconds() < until {
                var q = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&q, 1, Int32((until - monotonicNanoseconds()) / 1_000_000) + 1) <= 0 { continue }
                let n = read(fd, &buf, buf.count)
                if n <= 0 { break }
                echoed += buf[0..<n]
            }
            out.echoed = echoed
        }
        // An orderly close, as the engine does: FIN, then the peer's FIN.
        shutdown(fd, Int32(SHUT_WR))
        let until = monotonicNanoseconds() + dataTimeout
        var buf = [UInt8](repeating: 0, count: 4096)
        while monotonicNanoseconds() < until {
            var q = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&q, 1, 100) <= 0 { continue }
            if read(fd, &buf, buf.count) <= 0 { break }
        }
        return out
    }

    func socket() throws -> Int32 {
        let name = namespace.name
        let open = { @Sendable () throws -> Int32 in
            try sys("socket(AF_INET, SOCK_STREAM) in \(name)") {
                Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            }
        }
        return try handles?.run(open) ?? namespace.run(open)
    }

    /// The socket as a program sets it up before connect(): options, then bind. A failure ends the connect with its
    /// errno, or with `optionErrorsEndTheConnect` false only a failed bind does (a program that ignores what
    /// setsockopt answers, as connect's lookups are compared: the engine ignores them alike).
    func prepare(_ fd: Int32, _ spec: ConnectSpec, optionErrorsEndTheConnect strict: Bool) -> ConnectOutcome? {
        var out = ConnectOutcome()
        func fail(_ call: String) -> ConnectOutcome {
            out.errno = Errno(rawValue: Glibc.errno)
            out.trace.append("\(call): \(out.errno!)")
            return out
        }
        func option(_ rc: Int32, _ call: String) -> ConnectOutcome? { rc != 0 && strict ? fail(call) : nil }
        if let d = spec.device {
            let rc = d.withCString { setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, $0, socklen_t(strlen($0) + 1)) }
            if let f = option(rc, "setsockopt(SO_BINDTODEVICE, \(d))") { return f }
        }
        if let m = spec.mark { var v = m; if let f = option(setsockopt(fd, SOL_SOCKET, SO_MARK, &v, socklen_t(MemoryLayout.size(ofValue: v))), "setsockopt(SO_MARK)") { return f } }
        if let t = spec.tos { var v = Int32(t); if let f = option(setsockopt(fd, Int32(IPPROTO_IP), IP_TOS, &v, socklen_t(MemoryLayout.size(ofValue: v))), "setsockopt(IP_TOS)") { return f } }
        if let n = spec.synRetries { var v = Int32(n); if let f = option(setsockopt(fd, Int32(IPPROTO_TCP), TCP_SYNCNT, &v, socklen_t(MemoryLayout.size(ofValue: v))), "setsockopt(TCP_SYNCNT)") { return f } }
        if let b = spec.ipOptionBytes {
            let rc = b.withUnsafeBytes { setsockopt(fd, Int32(IPPROTO_IP), IP_OPTIONS, $0.baseAddress, socklen_t(b.count)) }
            if let f = option(rc, "setsockopt(IP_OPTIONS)") { return f }
        }
        if spec.bindAddress != nil || spec.bindPort != nil {
            var a = sockaddrIn((spec.bindAddress ?? .any).value, spec.bindPort ?? 0)
            let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            if rc != 0 { return fail("bind") }
        }
        return nil
    }

    /// Only connect()'s route decisions (its lookups and the port choice): the socket set up as `run` does, a
    /// non-blocking connect, getsockname for the source and port; then closed with an RST at once. The outcome's
    /// errno is connect()'s own (or bind's), never the handshake's.
    public func start(_ spec: ConnectSpec) throws -> ConnectOutcome {
        let fd = try socket()
        defer {
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            close(fd)
        }
        if let failed = prepare(fd, spec, optionErrorsEndTheConnect: false) { return failed }
        var d = sockaddrIn(spec.destination.value, spec.port)
        let rc = withUnsafePointer(to: &d) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var out = ConnectOutcome()
        if rc != 0, Glibc.errno != EINPROGRESS {
            out.errno = Errno(rawValue: Glibc.errno)
            out.trace.append("connect: \(out.errno!)")
            return out
        }
        (out.source, out.sourcePort) = localName(fd)
        return out
    }

    func localName(_ fd: Int32) -> (IPv4Address?, UInt16?) {
        var local = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        guard rc == 0 else { return (nil, nil) }
        return (IPv4Address(UInt32(bigEndian: local.sin_addr.s_addr)), UInt16(bigEndian: local.sin_port))
    }
}
