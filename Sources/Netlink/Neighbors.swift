import CNetlink
import Glibc
import NetCore

/// An IPv4 neighbour entry (`ip -4 neigh show`): which link-layer address an IP resolved to on a device.
public struct NeighborInfo: Sendable, Hashable {
    public var index: Int32
    public var address: IPv4Address
    /// The link-layer address, 6 bytes on Ethernet (empty while incomplete).
    public var lladdr: [UInt8]
    /// NUD_* state bits.
    public var state: Int32
}

/// IPv4 neighbours (the ARP table).
public struct Neighbors {
    let socket: NetlinkSocket

    /// `ip -4 neigh show`: every IPv4 neighbour entry with a link-layer address.
    public func list() throws(NetlinkError) -> [NeighborInfo] {
        var cache: OpaquePointer?
        try socket.call("ip -4 neigh show") { rtnl_neigh_alloc_cache($0, &cache) }
        defer { nl_cache_free(cache) }
        var out: [NeighborInfo] = []
        var obj = nl_cache_get_first(cache)
        while let n = obj {
            if rtnl_neigh_get_family(n) == AF_INET, let dst = rtnl_neigh_get_dst(n), nl_addr_get_len(dst) == 4 {
                let raw = nl_addr_get_binary_addr(dst)!.loadUnaligned(as: UInt32.self)
                var ll: [UInt8] = []
                if let l = rtnl_neigh_get_lladdr(n), let p = nl_addr_get_binary_addr(l) {
                    ll = Array(UnsafeRawBufferPointer(start: p, count: Int(nl_addr_get_len(l))))
                }
                out.append(NeighborInfo(index: rtnl_neigh_get_ifindex(n), address: IPv4Address(UInt32(bigEndian: raw)),
                                        lladdr: ll, state: rtnl_neigh_get_state(n)))
            }
            obj = nl_cache_get_next(n)
        }
        return out
    }
}

extension NetlinkSocket {
    public var neighbors: Neighbors { Neighbors(socket: self) }
}
