import CNetlink
import Glibc
import NetCore

// FRA_* numbers newer than this machine's uapi headers.
private let FRA_DSCP_: Int32 = 25

/// IPv4 policy routing rules.
public struct Rules {
    let socket: NetlinkSocket

    /// `ip rule add [not] [from P] [to P] [iif I] [oif O] [fwmark M/K] [tos T|dscp D] [ipproto P] [sport A-B]
    /// [dport A-B] [uidrange A-B] [pref N] ACTION [suppress_prefixlength N]`.
    public func add(_ r: RuleInfo, text: String) throws(NetlinkError) {
        try socket.send(message(r, type: attr(RTM_NEWRULE), flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL), "ip rule add \(text)")
    }

    /// `ip rule del RULE`: RTM_DELRULE; the kernel deletes the first rule whose fields equal those given (rule_find).
    public func delete(_ r: RuleInfo, text: String) throws(NetlinkError) {
        try socket.send(message(r, type: attr(RTM_DELRULE), flags: NLM_F_REQUEST | NLM_F_ACK), "ip rule del \(text)")
    }

    private func message(_ r: RuleInfo, type: Int32, flags: Int32) -> NetlinkMessage {
        let m = NetlinkMessage(type: type, flags: flags)
        var h = fib_rule_hdr()
        h.family = UInt8(AF_INET)
        h.dst_len = UInt8(r.to?.length ?? 0)
        h.src_len = UInt8(r.from?.length ?? 0)
        h.tos = r.tos
        h.action = r.action.rawValue
        h.table = r.table < 256 ? UInt8(r.table) : 0
        if r.invert { h.flags |= UInt32(FIB_RULE_INVERT) }
        m.append(h)
        if let p = r.priority { m.put(attr(FRA_PRIORITY), u32: p) }
        if let p = r.from, p.length > 0 { m.put(attr(FRA_SRC), ipv4: p.address.value) }
        if let p = r.to, p.length > 0 { m.put(attr(FRA_DST), ipv4: p.address.value) }
        if let i = r.iif { m.put(attr(FRA_IIFNAME), string: i) }
        if let o = r.oif { m.put(attr(FRA_OIFNAME), string: o) }
        if let f = r.fwmark { m.put(attr(FRA_FWMARK), u32: f) }
        if let f = r.fwmask { m.put(attr(FRA_FWMASK), u32: f) }
        if let d = r.dscp { m.put(FRA_DSCP_, u8: d) }
        if let p = r.ipproto { m.put(attr(FRA_IP_PROTO), u8: p) }
        if let s = r.sport { m.put(attr(FRA_SPORT_RANGE), raw: (s.lowerBound, s.upperBound)) }
        if let d = r.dport { m.put(attr(FRA_DPORT_RANGE), raw: (d.lowerBound, d.upperBound)) }
        if let u = r.uidrange { m.put(attr(FRA_UID_RANGE), raw: (u.lowerBound, u.upperBound)) }
        if let s = r.suppressPrefixLength { m.put(attr(FRA_SUPPRESS_PREFIXLEN), u32: UInt32(bitPattern: s)) }
        if r.action == .toTable { m.put(attr(FRA_TABLE), u32: r.table) }
        if let g = r.goto { m.put(attr(FRA_GOTO), u32: g) }
        return m
    }

    /// `ip -4 rule show`, in priority order.
    public func list() throws(NetlinkError) -> [RuleInfo] {
        var h = fib_rule_hdr()
        h.family = UInt8(AF_INET)
        return try socket.dump(type: attr(RTM_GETRULE), header: h, "ip -4 rule show").compactMap(Self.parse)
    }

    static func parse(_ m: DumpedMessage) -> RuleInfo? {
        guard m.type == attr16(RTM_NEWRULE), m.bytes.count >= MemoryLayout<fib_rule_hdr>.size else { return nil }
        let h = m.header(fib_rule_hdr.self)
        guard h.family == UInt8(AF_INET) else { return nil }
        let a = m.attributes(after: MemoryLayout<fib_rule_hdr>.size)
        var r = RuleInfo()
        r.priority = a[attr16(FRA_PRIORITY)]?.u32 ?? 0
        r.invert = h.flags & UInt32(FIB_RULE_INVERT) != 0
        if let s = a[attr16(FRA_SRC)] { r.from = IPv4Prefix(IPv4Address(s.ipv4), Int(h.src_len)) }
        if let d = a[attr16(FRA_DST)] { r.to = IPv4Prefix(IPv4Address(d.ipv4), Int(h.dst_len)) }
        r.iif = a[attr16(FRA_IIFNAME)]?.string
        r.oif = a[attr16(FRA_OIFNAME)]?.string
        r.fwmark = a[attr16(FRA_FWMARK)]?.u32
        r.fwmask = a[attr16(FRA_FWMASK)]?.u32
        r.tos = h.tos
        r.dscp = a[UInt16(FRA_DSCP_)]?.u8
        r.ipproto = a[attr16(FRA_IP_PROTO)]?.u8
        if let s = a[attr16(FRA_SPORT_RANGE)], s.count >= 4 { r.sport = s.u16...s.dropFirst(2).u16 }
        if let d = a[attr16(FRA_DPORT_RANGE)], d.count >= 4 { r.dport = d.u16...d.dropFirst(2).u16 }
        if let u = a[attr16(FRA_UID_RANGE)], u.count >= 8 {
            let lo = u.u32, hi = u.dropFirst(4).u32
            if !(lo == 0 && hi == UInt32.max) { r.uidrange = lo...hi }
        }
        if let s = a[attr16(FRA_SUPPRESS_PREFIXLEN)] {
            let v = Int32(bitPattern: s.u32)
            if v >= 0 { r.suppressPrefixLength = v }
        }
        if let g = a[attr16(FRA_SUPPRESS_IFGROUP)] {
            let v = Int32(bitPattern: g.u32)
            if v >= 0 { r.suppressIfgroup = v }
        }
        r.action = RuleAction(kernel: h.action)
        r.table = a[attr16(FRA_TABLE)]?.u32 ?? UInt32(h.table)
        r.goto = a[attr16(FRA_GOTO)]?.u32
        r.l3mdev = (a[attr16(FRA_L3MDEV)]?.u8 ?? 0) != 0
        return r
    }
}

extension NetlinkSocket {
    public var rules: Rules { Rules(socket: self) }
}
