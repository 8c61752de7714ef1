import CNetSys
import Glibc
import Netlink
import SystemPackage

/// A failed system call of the driver: what was attempted (in the words of the tool that does the same) and errno.
public struct DriverError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var errno: Errno?
    public var detail: String?
    public init(operation: String, errno: Errno? = nil, detail: String? = nil) {
        self.operation = operation; self.errno = errno; self.detail = detail
    }
    public var description: String {
        var s = operation
        if let errno { s += ": \(errno)" }
        if let detail, !detail.isEmpty { s += ": \(detail)" }
        return s
    }
}

/// A connect cut short by SIGINT or SIGTERM (`Interrupts.trap`): neither side's outcome is known.
public struct Interrupted: Error, CustomStringConvertible, Sendable {
    /// `engine connect`, `kernel connect`.
    public var operation: String
    public var signal: Int32
    public init(operation: String, signal: Int32) { self.operation = operation; self.signal = signal }
    public var description: String { "\(operation): interrupted by signal \(signal)" }
}

/// A syscall's `-1` as a `DriverError` naming the operation; EINTR is retried (`retryingInterrupts`).
@discardableResult
func sys<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws(DriverError) -> T {
    try retryingInterrupts(body).mapError { DriverError(operation: operation(), errno: $0) }.get()
}

/// setsockopt with a value of any trivial type.
func setOption<T>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: T, _ what: @autoclosure () -> String) throws(DriverError) {
    var v = value
    try sys("setsockopt(\(what()))") { setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<T>.size)) }
}

func sockaddrIn(_ address: UInt32, _ port: UInt16) -> sockaddr_in {
    var s = sockaddr_in()
    s.sin_family = sa_family_t(AF_INET)
    s.sin_port = port.bigEndian
    s.sin_addr.s_addr = address.bigEndian
    return s
}

/// CLOCK_MONOTONIC and CLOCK_REALTIME in nanoseconds.
public func monotonicNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

public func realtimeNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// A `msghdr` over one data buffer, a peer address (`msg_name`) and a control buffer, for `sendmsg` and `recvmsg`.
func withMessage<Address, R>(name: inout Address, data: UnsafeMutableRawBufferPointer, control: UnsafeMutableRawBufferPointer,
                             _ body: (inout msghdr) -> R) -> R {
    withUnsafeMutablePointer(to: &name) { n in
        var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
        return withUnsafeMutablePointer(to: &iov) { iovp in
            var msg = msghdr()
            msg.msg_name = UnsafeMutableRawPointer(n)
            msg.msg_namelen = socklen_t(MemoryLayout<Address>.size)
            msg.msg_iov = iovp
            msg.msg_iovlen = 1
            msg.msg_control = control.baseAddress
            msg.msg_controllen = control.count
            return body(&msg)
        }
    }
}
