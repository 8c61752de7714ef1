import CNetlink
import Glibc
import NetCore

/// IPv4 interface addresses.
public struct Addresses {
    let socket: NetlinkSocket

    /// `ip addr add A/LEN dev IF [scope S] [noprefixroute] [metric N]`. Like iproute2 without `brd`, no broadcast is set.
    /// `peer P` sets IFA_ADDRESS to P (a point-to-point address), `broadcast B` IFA_BROADCAST.
    public func add(index: Int32, device: String, prefix: IPv4Prefix, scope: UInt8 = 0, noprefixroute: Bool = false,
                    metric: UInt32? = nil, peer: IPv4Address? = nil, broadcast: IPv4Address? = nil) throws(NetlinkError) {
        let m = NetlinkMessage(type: attr(RTM_NEWADDR), flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        var ifa = ifaddrmsg()
        ifa.ifa_family = UInt8(AF_INET)
        ifa.ifa_prefixlen = UInt8(prefix.length)
        ifa.ifa_scope = scope
        ifa.ifa_index = UInt32(bitPattern: index)
        m.append(ifa)
        m.put(attr(IFA_LOCAL), ipv4: prefix.address.value)
        m.put(attr(IFA_ADDRESS), ipv4: (peer ?? prefix.address).value)
        if let broadcast { m.put(attr(IFA_BROADCAST), ipv4: broadcast.value) }
        if noprefixroute { m.put(attr(IFA_FLAGS), u32: UInt32(IFA_F_NOPREFIXROUTE)) }
        if let metric { m.put(9 /* IFA_RT_PRIORITY */, u32: metric) }
        var op = "ip addr add \(prefix) dev \(device)"
        if let peer { op = "ip addr add \(prefix.address) peer \(IPv4Prefix(peer, prefix.length)) dev \(device)" }
        if let broadcast { op += " broadcast \(broadcast)" }
        if scope != 0 { op += " scope \(AddressScope(value: scope)?.rawValue ?? String(scope))" }
        if noprefixroute { op += " noprefixroute" }
        if let metric { op += " metric \(metric)" }
        try socket.send(m, op)
    }

    /// `ip addr del A/LEN dev IF`: RTM_DELADDR matching the local address and prefix length (inet_rtm_deladdr). With
    /// `promote_secondaries` on, the kernel makes the next secondary of the subnet primary (`__inet_del_ifa`).
    public func delete(index: Int32, device: String, prefix: IPv4Prefix) throws(NetlinkError) {
        let m = NetlinkMessage(type: attr(RTM_DELADDR), flags: NLM_F_REQUEST | NLM_F_ACK)
        var ifa = ifaddrmsg()
        ifa.ifa_family = UInt8(AF_INET)
        ifa.ifa_prefixlen = UInt8(prefix.length)
        ifa.ifa_index = UInt32(bitPattern: index)
        m.append(ifa)
        m.put(attr(IFA_LOCAL), ipv4: prefix.address.value)
        try socket.send(m, "ip addr del \(prefix) dev \(device)")
    }

    /// `ip -4 -j addr show`: every IPv4 address in kernel order (per device: primaries, then secondaries). A raw
    /// RTM_GETADDR dump, since libnl 3.7 has no getter for the address metric (IFA_RT_PRIORITY).
    public func list() throws(NetlinkError) -> [AddressInfo] {
        var hdr = ifaddrmsg()
        hdr.ifa_family = UInt8(AF_INET)
        return try socket.dump(type: attr(RTM_GETADDR), header: hdr, "ip -4 addr show").compactMap(Self.parse)
    }

    static func parse(_ m: DumpedMessage) -> AddressInfo? {
        guard m.type == attr16(RTM_NEWADDR), m.bytes.count >= MemoryLayout<ifaddrmsg>.size else { return nil }
        let h = m.header(ifaddrmsg.self)
        guard h.ifa_family == UInt8(AF_INET) else { return nil }
        let a = m.attributes(after: MemoryLayout<ifaddrmsg>.size)
        guard let local = a[attr16(IFA_LOCAL)] ?? a[attr16(IFA_ADDRESS)], local.count >= 4 else { return nil }
        let label = a[attr16(IFA_LABEL)].map { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } ?? ""
        let flags = a[8 /* IFA_FLAGS */]?.u32 ?? UInt32(h.ifa_flags)
        var info = AddressInfo(index: Int32(bitPattern: h.ifa_index),
                               prefix: IPv4Prefix(IPv4Address(local.ipv4), Int(h.ifa_prefixlen)),
                               scope: h.ifa_scope, flags: flags, metric: a[9 /* IFA_RT_PRIORITY */]?.u32, label: label)
        // IFA_ADDRESS differs from IFA_LOCAL on a point-to-point address (`peer P`).
        if let address = a[attr16(IFA_ADDRESS)], address.count >= 4, address.ipv4 != local.ipv4 { info.peer = IPv4Address(address.ipv4) }
        if let b = a[attr16(IFA_BROADCAST)], b.count >= 4 { info.broadcast = IPv4Address(b.ipv4) }
        return info
    }
}

extension NetlinkSocket {
    public var addresses: Addresses { Addresses(socket: self) }
}
