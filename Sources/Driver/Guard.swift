import CNftables
import CNetSys
import Foundation
import Netlink
import NetCore

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
public struct EngineGuard: Sendable {
    public static let table = "netlab_guard"
    public let namespace: NetworkNamespace

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
        return EngineGuard(namespace: namespace)
    }

    /// Drop segments to this local address and port (the engine's source) from now on; with `device`, only those
    /// arriving on it.
    public func protect(_ address: IPv4Address, port: UInt16, device: String? = nil) throws {
        try Self.nft(in: namespace, "add element ip \(Self.table) \(Self.element(address, port, device))")
    }

    public func release(_ address: IPv4Address, port: UInt16, device: String? = nil) throws {
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

