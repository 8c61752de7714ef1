import CNetlink
import Glibc
import SystemPackage

/// A NETLINK_ROUTE socket bound to one network namespace (the one of the thread that opened it). Failed requests
/// throw `NetlinkError` carrying the kernel's errno and extended ACK text.
public final class NetlinkSocket: @unchecked Sendable {
    let sock: OpaquePointer
    /// Filled by the error callback for the request in flight.
    fileprivate var lastErrno: Int32 = 0
    fileprivate var lastExtack: String?

    /// Opens a socket in the calling thread's namespace. Use `NetlinkSocket(in:)` for a named namespace.
    public init() throws(NetlinkError) {
        guard let s = nl_socket_alloc() else { throw NetlinkError(operation: "nl_socket_alloc", errno: .noMemory) }
        // One owner of the libnl socket at every moment: freed here if connecting fails (before `sock` is set, so this
        // object is never fully initialised and its deinit never runs), by deinit afterwards. Setting `sock` first
        // and then throwing made Swift run deinit too: a double nl_socket_free (SIGABRT in nl_cb_put) at the fd limit.
        let rc = nl_connect(s, NETLINK_ROUTE)
        if rc < 0 {
            let e = Glibc.errno
            let failure = NetlinkError(operation: "nl_connect NETLINK_ROUTE", errno: e != 0 ? Errno(rawValue: e) : nil, libnlCode: rc)
            nl_socket_free(s)
            throw failure
        }
        sock = s
        _ = nl_socket_set_buffer_size(s, 1 << 20, 1 << 20)
        // Read each reply in one recvmsg into a 64 KiB buffer instead of peeking at its size first.
        _ = nl_socket_set_msg_buf_size(s, 65536)
        nl_socket_disable_msg_peek(s)
        var one: Int32 = 1
        let fd = nl_socket_get_fd(s)
        // NETLINK_EXT_ACK and NETLINK_CAP_ACK: error messages with the kernel's text.
        _ = setsockopt(fd, NetlinkSocketOption.level, NetlinkSocketOption.extendedAck, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(fd, NetlinkSocketOption.level, NetlinkSocketOption.capAck, &one, socklen_t(MemoryLayout<Int32>.size))
        nl_socket_modify_err_cb(s, NL_CB_CUSTOM, netlinkErrorCallback, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Opens a socket inside `namespace` (on a dedicated thread); the socket stays in that namespace.
    public convenience init(in namespace: NetworkNamespace) throws {
        let s = try namespace.run { try NetlinkSocket() }
        self.init(adopting: s)
    }

    private init(adopting other: NetlinkSocket) {
        sock = other.sock
        other.released = true
        nl_socket_modify_err_cb(sock, NL_CB_CUSTOM, netlinkErrorCallback, Unmanaged.passUnretained(self).toOpaque())
    }

    private var released = false

    deinit { if !released { nl_socket_free(sock) } }

    /// Send a request and wait for the kernel's ACK. `msg` is consumed.
    func sendSync(_ msg: OpaquePointer, _ operation: @autoclosure () -> String) throws(NetlinkError) {
        lastErrno = 0
        lastExtack = nil
        let rc = nl_send_sync(sock, msg)
        if rc < 0 { throw failure(operation(), rc) }
    }

    /// Turn libnl's return code into an error with the kernel's own errno when the callback saw it.
    func failure(_ operation: String, _ rc: Int32) -> NetlinkError {
        NetlinkError(operation: operation, errno: lastErrno != 0 ? Errno(rawValue: lastErrno) : nil, libnlCode: rc,
                     kernelMessage: lastExtack)
    }

    /// Run a libnl call that returns a negative NLE code on failure.
    func call(_ operation: @autoclosure () -> String, _ body: (OpaquePointer) -> Int32) throws(NetlinkError) {
        lastErrno = 0
        lastExtack = nil
        let rc = body(sock)
        if rc < 0 { throw failure(operation(), rc) }
    }

    fileprivate func record(_ err: UnsafeMutablePointer<nlmsgerr>) {
        lastErrno = -err.pointee.error
        lastExtack = extack(err)
    }

    /// The NLMSGERR_ATTR_MSG string of an error carrying ACK TLVs (the outer header sits just before the payload).
    private func extack(_ err: UnsafeMutablePointer<nlmsgerr>) -> String? {
        let base = UnsafeRawPointer(err)
        let outer = base - 16
        let total = Int(outer.loadUnaligned(as: UInt32.self))
        let flags = outer.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        guard flags & 0x200 != 0 else { return nil }                       // NLM_F_ACK_TLVS
        let capped = flags & 0x100 != 0                                   // NLM_F_CAPPED
        let inner = Int(base.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        var off = 16 + 4 + (capped ? 16 : (inner + 3) & ~3)
        while off + 4 <= total {
            let len = Int((outer + off).loadUnaligned(as: UInt16.self))
            let type = (outer + off).loadUnaligned(fromByteOffset: 2, as: UInt16.self)
            guard len >= 4, off + len <= total else { break }
            if type == 1 {                                                // NLMSGERR_ATTR_MSG
                let bytes = UnsafeRawBufferPointer(start: outer + off + 4, count: len - 4)
                return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            off += (len + 3) & ~3
        }
        return nil
    }
}

private let netlinkErrorCallback: nl_recvmsg_err_cb_t = { _, err, arg in
    guard let arg, let err else { return attr(NL_STOP) }
    Unmanaged<NetlinkSocket>.fromOpaque(arg).takeUnretainedValue().record(err)
    return attr(NL_STOP)
}

/// A netlink request under construction (an `nl_msg`), with typed attribute helpers.
struct NetlinkMessage {
    let msg: OpaquePointer

    init(type: Int32, flags: Int32) {
        msg = nlmsg_alloc_simple(type, flags)
    }

    func append<H>(_ header: H) {
        var h = header
        _ = withUnsafeMutableBytes(of: &h) { nlmsg_append(msg, $0.baseAddress, $0.count, Int32(NLMSG_ALIGNTO)) }
    }
    func put(_ type: Int32, u8 v: UInt8) { _ = nla_put_u8(msg, type, v) }
    func put(_ type: Int32, u16 v: UInt16) { _ = nla_put_u16(msg, type, v) }
    func put(_ type: Int32, u32 v: UInt32) { _ = nla_put_u32(msg, type, v) }
    func put(_ type: Int32, string s: String) { _ = nla_put_string(msg, type, s) }
    func put(_ type: Int32, ipv4 a: UInt32) {
        var be = a.bigEndian
        _ = withUnsafeBytes(of: &be) { nla_put(msg, type, 4, $0.baseAddress) }
    }
    func put<T>(_ type: Int32, raw value: T) {
        var v = value
        _ = withUnsafeBytes(of: &v) { nla_put(msg, type, Int32($0.count), $0.baseAddress) }
    }
}

extension NetlinkSocket {
    /// Send a built message and wait for the ACK.
    func send(_ m: NetlinkMessage, _ operation: @autoclosure () -> String) throws(NetlinkError) {
        try sendSync(m.msg, operation())
    }
}

/// A C constant as an attribute or message type, whether Swift imported it as an integer or as an enum case.
@inline(__always) func attr<T: BinaryInteger>(_ v: T) -> Int32 { Int32(truncatingIfNeeded: v) }
@inline(__always) func attr<T: RawRepresentable>(_ v: T) -> Int32 where T.RawValue: BinaryInteger { Int32(truncatingIfNeeded: v.rawValue) }
@inline(__always) func attr16<T: BinaryInteger>(_ v: T) -> UInt16 { UInt16(truncatingIfNeeded: v) }
@inline(__always) func attr16<T: RawRepresentable>(_ v: T) -> UInt16 where T.RawValue: BinaryInteger { UInt16(truncatingIfNeeded: v.rawValue) }

/// Netlink socket options (include/uapi/linux/netlink.h), which Glibc does not export.
enum NetlinkSocketOption {
    /// SOL_NETLINK.
    static let level: Int32 = 270
    /// NETLINK_CAP_ACK: acknowledgements without the request's payload.
    static let capAck: Int32 = 10
    /// NETLINK_EXT_ACK: errors carry the kernel's message.
    static let extendedAck: Int32 = 11
}
