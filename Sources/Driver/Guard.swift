import CNftables
import CNetSys
import Foundation
import Netlink
import NetCore
import Glibc

/// Keeps a node's kernel from answering the engine's segments. The engine's SYN-ACK reaches a kernel that has no
/// socket for it, and the kernel would reset the connection; this guard drops, at prerouting (after packet sockets
/// have seen the frame, so the engine still reads it), TCP segments to the engine's own (address, port) flows only.
///
/// A connect bound to a device (SO_BINDTODEVICE) is guarded on that device only: a segment arriving on another one
/// finds no socket in the kernel (`__inet_lookup_established` compares the bound device with the arrival device), so
/// the node's kernel answers it with a RST as it would for a kernel socket, and the engine ignores it.
///
/// It is an nftables table in the node's namespace, made through libnftables:
/// ```
/// table ip netlab_guard {
///   set flows { type ipv4_addr . inet_service; }
///   set bound { type ifname . ipv4_addr . inet_service; }
///   chain prerouting { type filter hook prerouting priority raw; policy accept;
///                      ip daddr . tcp dport @flows drop
///                      iifname . ip daddr . tcp dport @bound drop }
/// }
/// ```
/// `nft -n list table ip netlab_guard` inside the namespace shows it; `remove()` deletes it, and deleting the
/// namespace deletes it too.
///
/// The table is made and deleted through libnftables; the per-connect element updates go as one nf_tables batch
/// each over a NETLINK_NETFILTER socket kept open in the namespace (`SetElements`): libnftables per element cost
/// ~5 ms to add and ~18 ms to delete (a context, its cache dump, and the close of its socket each time), the batch
/// ~0.1 ms. `nft --debug=netlink add element ...` prints the same element bytes.
public struct EngineGuard: Sendable {
    public static let table = "netlab_guard"
    public let namespace: NetworkNamespace
    let elements: SetElements?

    /// Install the table (replacing a stale one left by a crash).
    public static func install(in namespace: NetworkNamespace) throws -> EngineGuard {
        let t = table
        try nft(in: namespace, """
            add table ip \(t)
            delete table ip \(t)
            add table ip \(t)
            add set ip \(t) flows { type ipv4_addr . inet_service; }
            add set ip \(t) bound { type ifname . ipv4_addr . inet_service; }
            add chain ip \(t) prerouting { type filter hook prerouting priority raw; policy accept; }
            add rule ip \(t) prerouting ip daddr . tcp dport @flows counter drop
            add rule ip \(t) prerouting iifname . ip daddr . tcp dport @bound counter drop
            """)
        return EngineGuard(namespace: namespace, elements: try SetElements(in: namespace))
    }

    /// Drop segments to this local address and port (the engine's source) from now on; with `device`, only those
    /// arriving on it.
    public func protect(_ address: IPv4Address, port: UInt16, device: String? = nil) throws {
        if let elements { return try elements.change(add: true, address, port, device) }
        try Self.nft(in: namespace, "add element ip \(Self.table) \(Self.element(address, port, device))")
    }

    public func release(_ address: IPv4Address, port: UInt16, device: String? = nil) throws {
        if let elements { return try elements.change(add: false, address, port, device) }
        try Self.nft(in: namespace, "delete element ip \(Self.table) \(Self.element(address, port, device))")
    }

    static func element(_ address: IPv4Address, _ port: UInt16, _ device: String?) -> String {
        device.map { "bound { \"\($0)\" . \(address) . \(port) }" } ?? "flows { \(address) . \(port) }"
    }

    public func remove() throws {
        try Self.nft(in: namespace, "delete table ip \(Self.table)")
    }

    /// Run nftables commands through libnftables on a thread inside the namespace.
    static func nft(in namespace: NetworkNamespace, _ commands: String) throws {
        let result: String? = try namespace.run {
            guard let ctx = nft_ctx_new(0) else { return "nft_ctx_new failed" }
            defer { nft_ctx_free(ctx) }
            nft_ctx_buffer_output(ctx)
            nft_ctx_buffer_error(ctx)
            if nft_run_cmd_from_buffer(ctx, commands) != 0 {
                return nft_ctx_get_error_buffer(ctx).map { String(cString: $0) } ?? "failed"
            }
            return nil
        }
        if let result {
            throw DriverError(operation: "nft in \(namespace.name): \(commands.split(separator: "\n").last ?? "")",
                              detail: result.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }
}


/// The guard's set elements added and deleted as nf_tables batches (`NFNL_MSG_BATCH_BEGIN`, one
/// `NFT_MSG_NEWSETELEM` or `NFT_MSG_DELSETELEM`, `NFNL_MSG_BATCH_END`) over a NETLINK_NETFILTER socket opened in the
/// namespace once. `add element` without NLM_F_EXCL, as nft's `add`; deleting a missing element is ENOENT, as nft's
/// `delete`. A key is the concatenation's fields each padded to 4 bytes: ifname (16), address, port (big-endian).
final class SetElements: @unchecked Sendable {
    let fd: Int32
    let namespace: NetworkNamespace
    private var seq: UInt32 = 1
    private var reply = [UInt8](repeating: 0, count: 8192)

    init(in namespace: NetworkNamespace) throws {
        self.namespace = namespace
        fd = try namespace.run { () throws(DriverError) -> Int32 in
            try sys("socket(AF_NETLINK, NETLINK_NETFILTER) in \(namespace.name)") {
                socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 12 /* NETLINK_NETFILTER */)
            }
        }
    }

    deinit { close(fd) }

    static func key(_ address: IPv4Address, _ port: UInt16, _ device: String?) -> [UInt8] {
        var k: [UInt8] = []
        if let device {
            var name = Array(device.utf8.prefix(15))
            name += [UInt8](repeating: 0, count: 16 - name.count)
            k += name
        }
        let a = address.value
        k += [UInt8(a >> 24), UInt8(a >> 16 & 0xff), UInt8(a >> 8 & 0xff), UInt8(a & 0xff)]
        k += [UInt8(port >> 8), UInt8(port & 0xff), 0, 0]
        return k
    }

    func change(add: Bool, _ address: IPv4Address, _ port: UInt16, _ device: String?) throws {
        func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
        func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
        func attr(_ type: UInt16, _ payload: [UInt8], nested: Bool = false) -> [UInt8] {
            var a = u16(UInt16(4 + payload.count)) + u16(type | (nested ? 0x8000 : 0)) + payload
            while a.count % 4 != 0 { a.append(0) }
            return a
        }
        func string(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }
        func message(_ type: UInt16, flags: UInt16, seq: UInt32, family: UInt8, resID: UInt16, _ body: [UInt8]) -> [UInt8] {
            let nfgen: [UInt8] = [family, 0] + u16(resID.bigEndian)
            return u32(UInt32(16 + 4 + body.count)) + u16(type) + u16(flags) + u32(seq) + u32(0) + nfgen + body
        }
        let s = seq
        seq &+= 3
        let set = device == nil ? "flows" : "bound"
        let element = attr(1 /* NFTA_LIST_ELEM */, attr(1 /* NFTA_SET_ELEM_KEY */, attr(1 /* NFTA_DATA_VALUE */, Self.key(address, port, device)), nested: true), nested: true)
        let body = attr(1 /* NFTA_SET_ELEM_LIST_TABLE */, string(EngineGuard.table)) + attr(2 /* NFTA_SET_ELEM_LIST_SET */, string(set))
            + attr(3 /* NFTA_SET_ELEM_LIST_ELEMENTS */, element, nested: true)
        let request: UInt16 = 0x1, ack: UInt16 = 0x4, create: UInt16 = 0x400
        let subsys: UInt16 = 10   // NFNL_SUBSYS_NFTABLES
        var batch = message(0x10 /* NFNL_MSG_BATCH_BEGIN */, flags: request, seq: s, family: 0, resID: subsys, [])
        batch += message(subsys << 8 | (add ? 12 /* NFT_MSG_NEWSETELEM */ : 14 /* NFT_MSG_DELSETELEM */),
                         flags: request | ack | (add ? create : 0), seq: s + 1, family: 2 /* NFPROTO_IPV4 */, resID: 0, body)
        batch += message(0x11 /* NFNL_MSG_BATCH_END */, flags: request, seq: s + 2, family: 0, resID: subsys, [])
        let what = "nft \(add ? "add" : "delete") element ip \(EngineGuard.table) \(EngineGuard.element(address, port, device)) in \(namespace.name)"
        // To the kernel (port 0): the default destination of an unconnected netlink socket.
        let sent = batch.withUnsafeBytes { b in send(fd, b.baseAddress, b.count, 0) }
        if sent < 0 { throw DriverError(operation: what, errno: .init(rawValue: Glibc.errno)) }
        // The answer to the element message: an NLMSG_ERROR carrying 0 (the ack) or -errno.
        while true {
            let n = try sys(what) { reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) } }
            var off = 0
            while off + 16 <= n {
                let len = Int(reply[off]) | Int(reply[off + 1]) << 8 | Int(reply[off + 2]) << 16 | Int(reply[off + 3]) << 24
                let type = UInt16(reply[off + 4]) | UInt16(reply[off + 5]) << 8
                let rseq = UInt32(reply[off + 8]) | UInt32(reply[off + 9]) << 8 | UInt32(reply[off + 10]) << 16 | UInt32(reply[off + 11]) << 24
                guard len >= 16, off + len <= n else { break }
                if type == 2 /* NLMSG_ERROR */, rseq == s + 1 || rseq == s || rseq == s + 2, off + 20 <= n {
                    let e = Int32(bitPattern: UInt32(reply[off + 16]) | UInt32(reply[off + 17]) << 8 | UInt32(reply[off + 18]) << 16 | UInt32(reply[off + 19]) << 24)
                    if e == 0 { return }
                    throw DriverError(operation: what, errno: .init(rawValue: -e))
                }
                off += (len + 3) & ~3
            }
        }
    }
}
