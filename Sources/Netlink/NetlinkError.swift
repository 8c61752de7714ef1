import CNetlink
import SystemPackage

/// A failed netlink or system call: the operation in iproute2 terms, the kernel's errno and words, and the extended
/// ACK message when the kernel sent one (`Nexthop has invalid gateway`).
public struct NetlinkError: Error, CustomStringConvertible, Sendable {
    /// What was attempted, as the `ip` command that does the same (`ip route add default via 198.51.100.1`).
    public var operation: String
    /// The errno the kernel returned, when known.
    public var errno: Errno?
    /// libnl's `NLE_*` code (negative), when the failure came through libnl.
    public var libnlCode: Int32?
    /// The kernel's extended ACK message, if any.
    public var kernelMessage: String?

    public init(operation: String, errno: Errno? = nil, libnlCode: Int32? = nil, kernelMessage: String? = nil) {
        self.operation = operation
        self.errno = errno
        self.libnlCode = libnlCode
        self.kernelMessage = kernelMessage
    }

    /// The kernel's words: strerror of the errno, then the extack message, else libnl's `nl_geterror` text.
    public var reason: String {
        var parts: [String] = []
        if let errno { parts.append(errno.description) } else if let libnlCode { parts.append(String(cString: nl_geterror(libnlCode))) }
        if let kernelMessage, !kernelMessage.isEmpty { parts.append(kernelMessage) }
        return parts.isEmpty ? "unknown error" : parts.joined(separator: ": ")
    }

    public var description: String { "\(operation): \(reason)" }
}

/// A system call's result: its value, or the errno of its `-1`; EINTR is retried. The one place for every module's
/// typed wrapper (`syscall` here, the driver's `sys`).
public func retryingInterrupts<T: FixedWidthInteger>(_ body: () -> T) -> Result<T, Errno> {
    while true {
        let r = body()
        if r != -1 { return .success(r) }
        let e = Errno(rawValue: Glibc.errno)
        if e != .interrupted { return .failure(e) }
    }
}

/// A syscall's `-1` as a `NetlinkError` naming the operation.
@discardableResult
func syscall<T: FixedWidthInteger>(_ operation: @autoclosure () -> String, _ body: () -> T) throws(NetlinkError) -> T {
    try retryingInterrupts(body).mapError { NetlinkError(operation: operation(), errno: $0) }.get()
}

import Glibc
