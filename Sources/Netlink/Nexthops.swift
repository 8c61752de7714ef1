import CNetlink
import Glibc
import NetCore

/// `struct nhmsg` (linux/nexthop.h), which the C module does not import.
struct NexthopMessageHeader {
    var family: UInt8 = UInt8(AF_INET)
    var scope: UInt8 = 0
    var proto: UInt8 = 0
    var reserved: UInt8 = 0
    var flags: UInt32 = 0
}

/// `struct nexthop_grp`: a member id and its weight - 1.
struct NexthopGroupEntry {
    var id: UInt32
    var weight: UInt8
    var weightHigh: UInt8 = 0
    var reserved: UInt16 = 0
}

/// Nexthop objects (RTM_NEWNEXTHOP / RTM_GETNEXTHOP).
public struct Nexthops {
    let socket: NetlinkSocket
    static let newNexthop: Int32 = 104, getNexthop: Int32 = 106
    // NHA_* (linux/nexthop.h).
    static let id: Int32 = 1, group: Int32 = 2, groupType: Int32 = 3, blackhole: Int32 = 4, oif: Int32 = 5, gateway: Int32 = 6
    static let resilientGroup: Int32 = 12, resilientBucket: Int32 = 13, getBucket: Int32 = 118, newBucket: Int32 = 116

    /// `ip nexthop bucket show`: each resilient group's buckets (group id → member id by bucket index).
    public func buckets() throws(NetlinkError) -> [UInt32: [UInt32]] {
        let h = NexthopMessageHeader(family: UInt8(AF_UNSPEC))
        var out: [UInt32: [Int: UInt32]] = [:]
        for m in try socket.dump(type: Self.getBucket, header: h, "ip nexthop bucket show") where m.type == UInt16(Self.newBucket) {
            let a = m.attributes(after: MemoryLayout<NexthopMessageHeader>.size)
            guard let id = a[UInt16(Self.id)]?.u32, let b = a[UInt16(Self.resilientBucket)] else { continue }
            let sub = parseAttributes(b, from: 0)
            guard let index = sub[1]?.u16, let nh = sub[3]?.u32 else { continue }   // NHA_RES_BUCKET_INDEX, _NH_ID
            out[id, default: [:]][Int(index)] = nh
        }
        return out.mapValues { d in (0..<(d.keys.max().map { $0 + 1 } ?? 0)).map { d[$0] ?? 0 } }
    }

    /// `ip nexthop add id N via G dev D [onlink]`, `ip nexthop add id N group A[/B...][,W] [type resilient]`,
    /// `ip nexthop add id N blackhole`. `text` names the object in errors.
    public func add(_ n: NexthopObject, text: String) throws(NetlinkError) {
        let m = NetlinkMessage(type: Self.newNexthop, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        var h = NexthopMessageHeader()
        h.flags = n.flags & 4      // RTNH_F_ONLINK
        if n.isGroup { h.family = UInt8(AF_UNSPEC) }
        m.append(h)
        m.put(Self.id, u32: n.id)
        if n.blackhole {
            _ = nla_put_flag(m.msg, Self.blackhole)
        } else if n.isGroup {
            var bytes: [UInt8] = []
            for e in n.group {
                var g = NexthopGroupEntry(id: e.id, weight: UInt8(max(1, min(256, e.weight)) - 1))
                withUnsafeBytes(of: &g) { bytes += $0 }
            }
            _ = bytes.withUnsafeBytes { nla_put(m.msg, Self.group, Int32($0.count), $0.baseAddress) }
            m.put(Self.groupType, u16: n.resilient ? 1 : 0)
            if n.resilient {
                // NHA_RES_GROUP { NHA_RES_GROUP_BUCKETS }: the kernel requires the number of buckets.
                let nest = nla_nest_start(m.msg, Self.resilientGroup)
                m.put(1, u16: UInt16(n.buckets.isEmpty ? 128 : n.buckets.count))
                nla_nest_end(m.msg, nest)
            }
        } else {
            m.put(Self.oif, u32: UInt32(bitPattern: n.index))
            if let g = n.gateway { m.put(Self.gateway, ipv4: g.value) }
        }
        try socket.send(m, "ip nexthop add \(text)")
    }

    /// `ip nexthop show`.
    public func list() throws(NetlinkError) -> [NexthopObject] {
        let h = NexthopMessageHeader(family: UInt8(AF_UNSPEC))
        return try socket.dump(type: Self.getNexthop, header: h, "ip nexthop show").compactMap(Self.parse)
    }

    static func parse(_ m: DumpedMessage) -> NexthopObject? {
        guard m.type == UInt16(newNexthop), m.bytes.count >= MemoryLayout<NexthopMessageHeader>.size else { return nil }
        let h = m.header(NexthopMessageHeader.self)
        let a = m.attributes(after: MemoryLayout<NexthopMessageHeader>.size)
        guard let id = a[UInt16(Self.id)]?.u32 else { return nil }
        var n = NexthopObject(id: id, gateway: nil, index: Int32(bitPattern: a[UInt16(oif)]?.u32 ?? 0), scope: h.scope,
                              flags: h.flags, blackhole: a[UInt16(blackhole)] != nil)
        if h.family == UInt8(AF_INET), let g = a[UInt16(gateway)], g.count == 4 { n.gateway = IPv4Address(g.ipv4) }
        if h.family != UInt8(AF_INET), h.family != UInt8(AF_UNSPEC) { return nil }
        if let g = a[UInt16(group)] {
            var off = g.startIndex
            while off + 8 <= g.endIndex {
                n.group.append(.init(id: g[off...].u32, weight: Int(g[off + 4]) + 1 + Int(g[off + 5]) << 8))
                off += 8
            }
            n.resilient = a[UInt16(groupType)]?.u16 == 1
        }
        return n
    }
}

/// Neighbour entries (RTM_GETNEIGH).
public struct Neighbours {
    let socket: NetlinkSocket

    /// `ip -4 neigh show`.
    public func list() throws(NetlinkError) -> [NeighbourInfo] {
        var h = ndmsg()
        h.ndm_family = UInt8(AF_INET)
        return try socket.dump(type: attr(RTM_GETNEIGH), header: h, "ip -4 neigh show").compactMap { m in
            guard m.type == attr16(RTM_NEWNEIGH), m.bytes.count >= MemoryLayout<ndmsg>.size else { return nil }
            let h = m.header(ndmsg.self)
            guard h.ndm_family == UInt8(AF_INET), let d = m.attributes(after: MemoryLayout<ndmsg>.size)[1], d.count == 4 else { return nil }
            return NeighbourInfo(index: h.ndm_ifindex, address: IPv4Address(d.ipv4), state: h.ndm_state)
        }
    }
}

extension NetlinkSocket {
    public var nexthops: Nexthops { Nexthops(socket: self) }
    public var neighbours: Neighbours { Neighbours(socket: self) }
}
