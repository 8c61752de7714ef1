import CNetlink
import Glibc
import NetCore

/// IPv4 interface addresses.
public struct Addresses {
    let socket: NetlinkSocket

    /// `ip addr add A/LEN dev IF [scope S] [noprefixroute] [metric N]`. Like iproute2 without `brd`, no broadcast is set.
    public func add(index: Int32, device: String, prefix: IPv4Prefix, scope: UInt8 = 0, noprefixroute: Bool = false,
                    metric: UInt32? = nil) throws(NetlinkError) {
        let m = NetlinkMessage(type: attr(RTM_NEWADDR), flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        var ifa = ifaddrmsg()
        ifa.ifa_family = UInt8(AF_INET)
        ifa.ifa_prefixlen = UInt8(prefix.length)
        ifa.ifa_scope = scope
        ifa.ifa_index = UInt32(bitPattern: index)
        m.append(ifa)
        m.put(attr(IFA_LOCAL), ipv4: prefix.address.value)
        m.put(attr(IFA_ADDRESS), ipv4: prefix.address.value)
        if noprefixroute { m.put(attr(IFA_FLAGS), u32: UInt32(IFA_F_NOPREFIXROUTE)) }
        if let metric { m.put(9 /* IFA_RT_PRIORITY */, u32: metric) }
        var op = "ip addr add \(prefix) dev \(device)"
        if scope != 0 { op += " scope \(AddressScope(value: scope)?.rawValue ?? String(scope))" }
        if noprefixroute { op += " noprefixroute" }
        if let metric { op += " metric \(metric)" }
        try socket.send(m, op)
    }

    /// `ip -4 -j addr show`: every IPv4 address in kernel order (per device: primaries, then secondaries).
    public func list() throws(NetlinkError) -> [AddressInfo] {
        var cache: OpaquePointer?
        try socket.call("ip -4 addr show") { rtnl_addr_alloc_cache($0, &cache) }
        defer { nl_cache_free(cache) }
        var out: [AddressInfo] = []
        var obj = nl_cache_get_first(cache)
        while let o = obj {
            let a = o
            if rtnl_addr_get_family(a) == AF_INET, let local = rtnl_addr_get_local(a), nl_addr_get_len(local) == 4 {
                let raw = nl_addr_get_binary_addr(local)!.loadUnaligned(as: UInt32.self)
                let label = rtnl_addr_get_label(a).map { String(cString: $0) } ?? ""
                out.append(AddressInfo(index: rtnl_addr_get_ifindex(a),
                                       prefix: IPv4Prefix(IPv4Address(UInt32(bigEndian: raw)), Int(rtnl_addr_get_prefixlen(a))),
                                       scope: UInt8(truncatingIfNeeded: rtnl_addr_get_scope(a)), flags: rtnl_addr_get_flags(a),
                                       metric: nil, label: label))
            }
            obj = nl_cache_get_next(o)
        }
        return out
    }
}

extension NetlinkSocket {
    public var addresses: Addresses { Addresses(socket: self) }
}
