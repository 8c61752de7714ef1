import CNetlink
import Glibc
import NetCore

func makeNLAddr(_ a: IPv4Address, prefix: Int = 32) -> OpaquePointer {
    var be = a.value.bigEndian
    let addr = withUnsafeMutableBytes(of: &be) { nl_addr_build(AF_INET, $0.baseAddress, 4) }!
    nl_addr_set_prefixlen(addr, Int32(prefix))
    return addr
}

/// IPv4 routes in any table.
public struct Routes {
    let socket: NetlinkSocket

    /// `ip route add [TYPE] PREFIX [via G] [dev D] [table T] [metric M] [src S] [mtu N] [advmss N] [nexthop ...]`,
    /// through libnl's route object. `text` names the route in errors.
    public func add(_ r: RouteInfo, text: String) throws(NetlinkError) {
        let op = "ip route add \(text)"
        if let id = r.nexthopID { return try addUsingNexthop(r, id: id, op) }
        let route = try object(r, op)
        defer { rtnl_route_put(route) }
        try socket.call(op) { rtnl_route_add($0, route, NLM_F_CREATE | NLM_F_EXCL) }
    }

    /// `ip route replace ROUTE`: NLM_F_CREATE | NLM_F_REPLACE, so the first route with the same table, destination,
    /// TOS and metric is replaced, or the route is added (fib_table_insert).
    public func replace(_ r: RouteInfo, text: String) throws(NetlinkError) {
        let op = "ip route replace \(text)"
        let route = try object(r, op)
        defer { rtnl_route_put(route) }
        try socket.call(op) { rtnl_route_add($0, route, NLM_F_CREATE | NLM_F_REPLACE) }
    }

    /// `ip route del ROUTE`: RTM_DELROUTE; the kernel deletes the first route matching the fields given
    /// (fib_table_delete: a protocol of 0 and an unset metric match any).
    public func delete(_ r: RouteInfo, text: String) throws(NetlinkError) {
        let op = "ip route del \(text)"
        let route = try object(r, op)
        defer { rtnl_route_put(route) }
        try socket.call(op) { rtnl_route_delete($0, route, 0) }
    }

    /// A libnl route object holding `r` (the caller puts it).
    private func object(_ r: RouteInfo, _ op: String) throws(NetlinkError) -> OpaquePointer {
        guard let route = rtnl_route_alloc() else { throw NetlinkError(operation: op, errno: .noMemory) }
        _ = rtnl_route_set_family(route, UInt8(AF_INET))
        rtnl_route_set_table(route, r.table)
        _ = rtnl_route_set_type(route, r.type.value)
        rtnl_route_set_scope(route, r.scope)
        rtnl_route_set_protocol(route, r.proto)
        let dst = makeNLAddr(r.destination.address, prefix: r.destination.length)
        _ = rtnl_route_set_dst(route, dst)
        nl_addr_put(dst)
        if r.tos != 0 { rtnl_route_set_tos(route, r.tos) }
        if r.metric != 0 { rtnl_route_set_priority(route, r.metric) }
        if let s = r.prefsrc {
            let a = makeNLAddr(s)
            _ = rtnl_route_set_pref_src(route, a)
            nl_addr_put(a)
        }
        if let mtu = r.mtu { _ = rtnl_route_set_metric(route, attr(RTAX_MTU), mtu) }
        if let advmss = r.advmss { _ = rtnl_route_set_metric(route, attr(RTAX_ADVMSS), advmss) }
        if let hl = r.hoplimit { _ = rtnl_route_set_metric(route, attr(RTAX_HOPLIMIT), hl) }
        for h in r.nexthops {
            guard let nh = rtnl_route_nh_alloc() else { rtnl_route_put(route); throw NetlinkError(operation: op, errno: .noMemory) }
            if h.index != 0 { rtnl_route_nh_set_ifindex(nh, h.index) }
            if let g = h.gateway {
                let a = makeNLAddr(g)
                rtnl_route_nh_set_gateway(nh, a)
                nl_addr_put(a)
            }
            // libnl stores rtnh_hops, which the kernel reads as weight - 1.
            if r.multipath { rtnl_route_nh_set_weight(nh, UInt8(max(1, min(256, h.weight)) - 1)) }
            if h.flags != 0 { rtnl_route_nh_set_flags(nh, h.flags) }
            rtnl_route_add_nexthop(route, nh)
        }
        return route
    }

    /// `ip route add [TYPE] PREFIX nhid N [table T] [metric M] [src S] [proto P] [scope S] [tos T]`: RTM_NEWROUTE
    /// with RTA_NH_ID, which libnl's route object cannot carry.
    func addUsingNexthop(_ r: RouteInfo, id: UInt32, _ op: String) throws(NetlinkError) {
        let m = NetlinkMessage(type: attr(RTM_NEWROUTE), flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        var h = rtmsg()
        h.rtm_family = UInt8(AF_INET)
        h.rtm_dst_len = UInt8(r.destination.length)
        h.rtm_tos = r.tos
        h.rtm_table = r.table < 256 ? UInt8(r.table) : UInt8(RT_TABLE_UNSPEC.rawValue)
        h.rtm_protocol = r.proto
        h.rtm_scope = r.scope
        h.rtm_type = r.type.value
        m.append(h)
        m.put(attr(RTA_TABLE), u32: r.table)
        if r.destination.length > 0 { m.put(attr(RTA_DST), ipv4: r.destination.address.value) }
        if r.metric != 0 { m.put(attr(RTA_PRIORITY), u32: r.metric) }
        if let s = r.prefsrc { m.put(attr(RTA_PREFSRC), ipv4: s.value) }
        m.put(Self.nexthopIDAttribute, u32: id)
        try socket.send(m, op)
    }

    /// RTA_NH_ID (linux/rtnetlink.h).
    static let nexthopIDAttribute: Int32 = 30

    /// `ip -4 route show table all`.
    public func list() throws(NetlinkError) -> [RouteInfo] {
        var hdr = rtmsg()
        hdr.rtm_family = UInt8(AF_INET)
        return try socket.dump(type: attr(RTM_GETROUTE), header: hdr, "ip -4 route show table all").compactMap(Self.parse)
    }

    static func parse(_ m: DumpedMessage) -> RouteInfo? {
        guard m.type == attr16(RTM_NEWROUTE), m.bytes.count >= MemoryLayout<rtmsg>.size else { return nil }
        let h = m.header(rtmsg.self)
        guard h.rtm_family == UInt8(AF_INET) else { return nil }
        let a = m.attributes(after: MemoryLayout<rtmsg>.size)
        var r = RouteInfo(table: a[attr16(RTA_TABLE)]?.u32 ?? UInt32(h.rtm_table),
                          type: RouteType(value: h.rtm_type) ?? .unicast, scope: h.rtm_scope, proto: h.rtm_protocol,
                          destination: IPv4Prefix(IPv4Address(a[attr16(RTA_DST)]?.ipv4 ?? 0), Int(h.rtm_dst_len)),
                          tos: h.rtm_tos, metric: a[attr16(RTA_PRIORITY)]?.u32 ?? 0,
                          prefsrc: a[attr16(RTA_PREFSRC)].map { IPv4Address($0.ipv4) }, flags: h.rtm_flags)
        r.nexthopID = a[UInt16(Self.nexthopIDAttribute)]?.u32
        if let metrics = a[attr16(RTA_METRICS)] {
            let mx = parseAttributes(metrics, from: 0)
            r.mtu = mx[attr16(RTAX_MTU)]?.u32
            r.advmss = mx[attr16(RTAX_ADVMSS)]?.u32
            r.hoplimit = mx[attr16(RTAX_HOPLIMIT)]?.u32
        }
        if let mp = a[attr16(RTA_MULTIPATH)] {
            r.multipath = true
            var off = mp.startIndex
            while off + 8 <= mp.endIndex {
                let len = Int(mp[off...].u16)
                guard len >= 8, off + len <= mp.endIndex else { break }
                let flags = UInt32(mp[off + 2])
                let hops = Int(mp[off + 3])
                let ifindex = Int32(bitPattern: mp[(off + 4)...].u32)
                let sub = parseAttributes(mp[off..<(off + len)], from: 8)
                r.nexthops.append(NexthopInfo(gateway: sub[attr16(RTA_GATEWAY)].map { IPv4Address($0.ipv4) },
                                              index: ifindex, weight: hops + 1, flags: flags))
                off += (len + 3) & ~3
            }
        } else if a[attr16(RTA_OIF)] != nil || a[attr16(RTA_GATEWAY)] != nil {
            r.nexthops = [NexthopInfo(gateway: a[attr16(RTA_GATEWAY)].map { IPv4Address($0.ipv4) },
                                      index: Int32(bitPattern: a[attr16(RTA_OIF)]?.u32 ?? 0), weight: 1,
                                      flags: h.rtm_flags & 0xff)]
        }
        return r
    }
}

extension NetlinkSocket {
    public var routes: Routes { Routes(socket: self) }
}
