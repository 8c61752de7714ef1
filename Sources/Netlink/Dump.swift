import CNetlink
import Glibc

/// One netlink message from a dump: its type, the fixed header bytes and the attributes after them.
struct DumpedMessage {
    var type: UInt16
    var bytes: [UInt8]   // the payload after struct nlmsghdr

    func header<H>(_ type: H.Type) -> H {
        bytes.withUnsafeBytes { $0.loadUnaligned(as: H.self) }
    }

    /// Top-level attributes after a fixed header of `headerSize` bytes.
    func attributes(after headerSize: Int) -> [UInt16: ArraySlice<UInt8>] {
        parseAttributes(bytes[...], from: (headerSize + 3) & ~3)
    }
}

/// Walk netlink attributes (struct nlattr: u16 len, u16 type) in `bytes` from `start`.
func parseAttributes(_ bytes: ArraySlice<UInt8>, from start: Int) -> [UInt16: ArraySlice<UInt8>] {
    var out: [UInt16: ArraySlice<UInt8>] = [:]
    var off = bytes.startIndex + start
    while off + 4 <= bytes.endIndex {
        let len = Int(UInt16(bytes[off]) | UInt16(bytes[off + 1]) << 8)
        let type = (UInt16(bytes[off + 2]) | UInt16(bytes[off + 3]) << 8) & 0x3fff
        guard len >= 4, off + len <= bytes.endIndex else { break }
        out[type] = bytes[(off + 4)..<(off + len)]
        off += (len + 3) & ~3
    }
    return out
}

extension ArraySlice where Element == UInt8 {
    var u8: UInt8 { self.first ?? 0 }
    var u16: UInt16 { count >= 2 ? UInt16(self[startIndex]) | UInt16(self[startIndex + 1]) << 8 : 0 }
    var u32: UInt32 {
        count >= 4 ? (0..<4).reduce(UInt32(0)) { $0 | UInt32(self[startIndex + $1]) << (8 * UInt32($1)) } : 0
    }
    /// A big-endian IPv4 address attribute as a host-order integer.
    var ipv4: UInt32 {
        count >= 4 ? (0..<4).reduce(UInt32(0)) { $0 << 8 | UInt32(self[startIndex + $1]) } : 0
    }
    var string: String { String(decoding: self.prefix { $0 != 0 }, as: UTF8.self) }
}

private final class DumpCollector {
    var messages: [DumpedMessage] = []
    /// The sequence number of the request whose replies are collected.
    var seq: UInt32 = 0
}

/// Replies belong to the request just sent: libnl's own check compares with a counter that a reply-only request
/// (RTM_GETROUTE without NLM_F_ACK, in `request`) never advances, so a dump after one would fail with "Message
/// sequence number mismatch". Replies to anything else are skipped.
private let dumpSeqCheck: nl_recvmsg_msg_cb_t = { msg, arg in
    guard let msg, let arg else { return attr(NL_OK) }
    let collector = Unmanaged<DumpCollector>.fromOpaque(arg).takeUnretainedValue()
    return nlmsg_hdr(msg)!.pointee.nlmsg_seq == collector.seq ? attr(NL_OK) : attr(NL_SKIP)
}

private let dumpCallback: nl_recvmsg_msg_cb_t = { msg, arg in
    guard let msg, let arg else { return attr(NL_OK) }
    let collector = Unmanaged<DumpCollector>.fromOpaque(arg).takeUnretainedValue()
    let hdr = nlmsg_hdr(msg)!
    let len = Int(hdr.pointee.nlmsg_len) - 16
    let payload = UnsafeRawPointer(hdr) + 16
    collector.messages.append(DumpedMessage(type: hdr.pointee.nlmsg_type,
                                            bytes: Array(UnsafeRawBufferPointer(start: payload, count: max(0, len)))))
    return attr(NL_OK)
}

extension NetlinkSocket {
    /// Send one request (the message is consumed) and collect the replies it causes; an error reply throws.
    func request(_ m: NetlinkMessage, _ operation: String) throws(NetlinkError) -> [DumpedMessage] {
        let collector = DumpCollector()
        let arg = Unmanaged.passUnretained(collector).toOpaque()
        guard let cb = nl_cb_clone(nl_socket_get_cb(sock)) else { throw NetlinkError(operation: operation, errno: .noMemory) }
        defer { nl_cb_put(cb) }
        nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, dumpCallback, arg)
        defer { nlmsg_free(m.msg) }
        // The request gets its reply (or an error); an extra ACK would be left unread for the next request.
        nl_socket_disable_auto_ack(sock)
        defer { nl_socket_enable_auto_ack(sock) }
        try call(operation) { nl_send_auto($0, m.msg) }
        try call(operation) { nl_recvmsgs($0, cb) }
        return collector.messages
    }

    /// A full dump (`NLM_F_DUMP`) of `type` for `family`, with `header` as the request's fixed header.
    func dump<H>(type: Int32, header: H, _ operation: String) throws(NetlinkError) -> [DumpedMessage] {
        let collector = DumpCollector()
        let arg = Unmanaged.passUnretained(collector).toOpaque()
        guard let cb = nl_cb_clone(nl_socket_get_cb(sock)) else { throw NetlinkError(operation: operation, errno: .noMemory) }
        defer { nl_cb_put(cb) }
        nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, dumpCallback, arg)
        nl_cb_set(cb, NL_CB_SEQ_CHECK, NL_CB_CUSTOM, dumpSeqCheck, arg)
        let m = NetlinkMessage(type: type, flags: NLM_F_REQUEST | NLM_F_DUMP)
        m.append(header)
        defer { nlmsg_free(m.msg) }
        try call(operation) { nl_send_auto($0, m.msg) }
        collector.seq = nlmsg_hdr(m.msg)!.pointee.nlmsg_seq
        try call(operation) { nl_recvmsgs($0, cb) }
        return collector.messages
    }
}
