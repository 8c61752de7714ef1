import CNetlink
import Glibc
import NetCore

/// Devices: veth pairs, bridges, other kinds, and their state. One socket, one namespace.
public struct Links {
    let socket: NetlinkSocket

    /// `ip link add NAME netns A mtu M type veth peer name PEER netns B mtu M`: both ends created directly in their
    /// namespaces (given as fds), so nothing ever appears in the namespace of the socket.
    public func addVeth(name: String, namespace: Int32, peer: String, peerNamespace: Int32, mtu: Int? = nil) throws(NetlinkError) {
        guard let link = rtnl_link_veth_alloc() else { throw NetlinkError(operation: "rtnl_link_veth_alloc", errno: .noMemory) }
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        rtnl_link_set_ns_fd(link, namespace)
        rtnl_link_set_flags(link, UInt32(bitPattern: attr(IFF_UP)))   // this end can be created up; the peer cannot
        let p = rtnl_link_veth_get_peer(link)!
        defer { rtnl_link_put(p) }
        rtnl_link_set_name(p, peer)
        rtnl_link_set_ns_fd(p, peerNamespace)
        if let mtu {
            rtnl_link_set_mtu(link, UInt32(mtu))
            rtnl_link_set_mtu(p, UInt32(mtu))
        }
        // One queue per end (the default is one per CPU, each with its sysfs objects): labs need no multiqueue veth.
        for end in [link, p] {
            rtnl_link_set_num_tx_queues(end, 1)
            rtnl_link_set_num_rx_queues(end, 1)
        }
        try socket.call("ip link add \(name) type veth peer name \(peer)") {
            rtnl_link_add($0, link, NLM_F_CREATE | NLM_F_EXCL)
        }
    }

    /// `ip link add NAME type KIND` (bridge, dummy, vrf, ...) in the socket's namespace.
    public func add(name: String, kind: String, mtu: Int? = nil) throws(NetlinkError) {
        guard let link = rtnl_link_alloc() else { throw NetlinkError(operation: "rtnl_link_alloc", errno: .noMemory) }
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        let rc = rtnl_link_set_type(link, kind)
        if rc < 0 { throw NetlinkError(operation: "ip link add \(name) type \(kind)", libnlCode: rc) }
        if let mtu { rtnl_link_set_mtu(link, UInt32(mtu)) }
        try socket.call("ip link add \(name) type \(kind)") { rtnl_link_add($0, link, NLM_F_CREATE | NLM_F_EXCL) }
    }

    /// `ip link set dev IFINDEX [up] [mtu N] [master M] [alias TEXT]`.
    public func set(index: Int32, name: String, up: Bool? = nil, mtu: Int? = nil, master: Int32? = nil,
                    alias: String? = nil) throws(NetlinkError) {
        let m = NetlinkMessage(type: attr(RTM_NEWLINK), flags: NLM_F_REQUEST | NLM_F_ACK)
        var ifi = ifinfomsg()
        ifi.ifi_family = UInt8(AF_UNSPEC)
        ifi.ifi_index = index
        if let up {
            ifi.ifi_change = UInt32(bitPattern: attr(IFF_UP))
            ifi.ifi_flags = up ? UInt32(bitPattern: attr(IFF_UP)) : 0
        }
        m.append(ifi)
        if let mtu { m.put(attr(IFLA_MTU), u32: UInt32(mtu)) }
        if let master { m.put(attr(IFLA_MASTER), u32: UInt32(bitPattern: master)) }
        if let alias { m.put(attr(IFLA_IFALIAS), string: alias) }
        var words = ["ip link set dev \(name)"]
        if let up { words.append(up ? "up" : "down") }
        if let mtu { words.append("mtu \(mtu)") }
        if let master { words.append("master \(master)") }
        if let alias { words.append("alias \(alias)") }
        try socket.send(m, words.joined(separator: " "))
    }

    /// `ip -j link show dev IFINDEX | jq .[0].ifalias`: a device's alias (IFLA_IFALIAS), nil when it has none.
    public func alias(index: Int32) throws(NetlinkError) -> String? {
        var link: OpaquePointer?
        try socket.call("ip link show dev \(index)") { rtnl_link_get_kernel($0, index, nil, &link) }
        defer { if let link { rtnl_link_put(link) } }
        guard let link, let a = rtnl_link_get_ifalias(link) else { return nil }
        return String(cString: a)
    }

    /// `ip -j link show`: every device of the namespace.
    public func list() throws(NetlinkError) -> [LinkInfo] {
        var cache: OpaquePointer?
        try socket.call("ip link show") { rtnl_link_alloc_cache($0, AF_UNSPEC, &cache) }
        defer { nl_cache_free(cache) }
        var out: [LinkInfo] = []
        var obj = nl_cache_get_first(cache)
        while let o = obj {
            let l = o
            let kind = rtnl_link_get_type(l).map { String(cString: $0) }
            out.append(LinkInfo(index: rtnl_link_get_ifindex(l), name: String(cString: rtnl_link_get_name(l)),
                                flags: rtnl_link_get_flags(l), mtu: rtnl_link_get_mtu(l), master: rtnl_link_get_master(l),
                                kind: kind, group: rtnl_link_get_group(l), carrier: rtnl_link_get_carrier(l) != 0))
            obj = nl_cache_get_next(o)
        }
        return out.sorted { $0.index < $1.index }
    }
}

extension NetlinkSocket {
    public var links: Links { Links(socket: self) }
}
