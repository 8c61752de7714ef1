import NetCore

/// A real host's routing state as a lab file (`netlab snapshot`): one node that is the host — every device a veth
/// stand-in with its MTU and addresses (order, scope, noprefixroute, metric), every route of every table the kernel did
/// not make itself, every rule, and the sysctls that decide routing and the SYN — plus, for each device, a peer node
/// on its link that answers for every destination behind it (a `local` catch-all route and listeners), so a `netlab
/// check` from the clone completes and shows source, device and next hop. What cannot be cloned is said in a comment
/// at its line. Pure: the snapshot and the sysctls come in, text goes out.
public struct HostClone {
    public var snapshot: RoutingSnapshot
    /// sysctl key (dotted, `net.ipv4.conf.eth0.rp_filter`) → value, as read on the host.
    public var sysctls: [String: String]
    public var lab: String
    public var node: String
    public var ports: [UInt16]
    /// Where the state was read (for the header comment).
    public var origin: String

    public init(snapshot: RoutingSnapshot, sysctls: [String: String], lab: String = "clone", node: String = "host",
                ports: [UInt16] = [80, 443], origin: String = "this host") {
        self.snapshot = snapshot; self.sysctls = sysctls; self.lab = lab; self.node = node; self.ports = ports
        self.origin = origin
    }

    /// The node-wide sysctls the clone carries, with the kernel's default for a new namespace: written when the host
    /// differs.
    public static let nodeSysctls: [(key: String, fresh: String)] = [
        ("net.ipv4.fib_multipath_hash_policy", "0"), ("net.ipv4.fib_multipath_hash_seed", "0"),
        ("net.ipv4.fib_multipath_use_neigh", "0"), ("net.ipv4.ip_local_port_range", "32768\t60999"),
        ("net.ipv4.ip_nonlocal_bind", "0"), ("net.ipv4.ip_default_ttl", "64"), ("net.ipv4.ip_no_pmtu_disc", "0"),
        ("net.ipv4.tcp_syn_retries", "6"), ("net.ipv4.tcp_timestamps", "1"), ("net.ipv4.tcp_sack", "1"),
        ("net.ipv4.tcp_window_scaling", "1"), ("net.ipv4.tcp_ecn", "2"), ("net.ipv4.tcp_tw_reuse", "2"),
    ]
    /// Per-device (and `all`/`default`) IPv4 conf keys the clone carries, with a new namespace's default.
    public static let deviceSysctls: [(key: String, fresh: String)] = [
        ("rp_filter", "0"), ("accept_local", "0"), ("src_valid_mark", "0"), ("route_localnet", "0"),
        ("ignore_routes_with_linkdown", "0"), ("promote_secondaries", "0"), ("send_redirects", "1"),
        ("accept_source_route", "0"), ("arp_ignore", "0"), ("arp_announce", "0"),
    ]

    /// Every sysctl `text` may use, for the reader to fetch: the dotted key it is stored under and its path below
    /// /proc/sys (a device name may hold a dot).
    public static func keys(devices: [String]) -> [(key: String, path: String)] {
        (nodeSysctls.map(\.key) + ["net.ipv4.ip_forward"]).map { ($0, $0.split(separator: ".").joined(separator: "/")) }
            + (["all", "default"] + devices).flatMap { d in
                deviceSysctls.map { ("net.ipv4.conf.\(d).\($0.key)", "net/ipv4/conf/\(d)/\($0.key)") }
            }
    }

    public var text: String {
        var out: [String] = []
        func line(_ s: String, _ indent: Int = 0) { out.append(String(repeating: " ", count: indent) + s) }
        let links = snapshot.links
        let name = Dictionary(links.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
        let loopback = links.first(where: \.isLoopback)
        // Devices that get a veth stand-in; enslaved ports (their master stands in for them) are left out.
        let standIns = links.filter { !$0.isLoopback && $0.master == 0 }
        let skipped = links.filter { !$0.isLoopback && $0.master != 0 }
        let cloned = Set(standIns.map(\.index) + (loopback.map { [$0.index] } ?? []))
        let hostAddresses = snapshot.addresses.filter { !($0.prefix.address.isLoopback && $0.index == loopback?.index) }
        var peers: [(device: LinkInfo, peer: String, addresses: [String])] = []
        var used: Set<String> = [node]
        for d in standIns {
            var base = "gw-" + String(d.name.lowercased().map { ($0.isASCII && ($0.isLetter || $0.isNumber)) ? $0 : "-" })
            while base.hasSuffix("-") { base.removeLast() }
            base = String(base.prefix(LabNames.nodeLimit))
            var peer = base, k = 2
            while used.contains(peer) { peer = String(base.prefix(LabNames.nodeLimit - 3)) + "-\(k)"; k += 1 }
            used.insert(peer)
            // The gateways the host reaches over this device, as addresses of the peer in the host's subnet.
            var gws: [String] = []
            for r in snapshot.routes where r.proto != 2 {
                for h in r.nexthops where h.index == d.index {
                    guard let g = h.gateway, !hostAddresses.contains(where: { $0.prefix.address == g }) else { continue }
                    let len = hostAddresses.first { $0.index == d.index && $0.prefix.contains(g) }?.prefix.length ?? 32
                    let a = "\(g)/\(len)"
                    if !gws.contains(a) { gws.append(a) }
                }
            }
            peers.append((d, peer, gws))
        }

        line("# netlab snapshot of \(origin): the host as node \(node), each device a veth to a peer that answers for every")
        line("# destination behind it. Bring it up with `netlab up FILE`; add checks (docs/topology.md#checks).")
        line("lab: \(lab)")
        let anyAddresses = !(snapshot.addresses.allSatisfy { LabAddressSpace.contains($0.prefix.address) || $0.prefix.address.isLoopback }
            && snapshot.routes.allSatisfy { r in r.proto == 2 || r.destination.length == 0 || LabAddressSpace.contains(r.destination) })
        if anyAddresses {
            line("# The host's own addresses: a lab is isolated in its namespaces, so a clone may keep them.")
            line("address-ranges: any")
        }
        line("nodes:")
        line("\(node):", 2)
        if sysctls["net.ipv4.ip_forward"] == "1" { line("forwarding: true", 4) }
        var sys: [(String, String)] = []
        for (k, fresh) in Self.nodeSysctls { if let v = sysctls[k], v != fresh { sys.append((k, v)) } }
        for d in ["all", "default"] + standIns.map(\.name) + (loopback.map { [$0.name] } ?? []) {
            for (k, fresh) in Self.deviceSysctls {
                let key = "net.ipv4.conf.\(d).\(k)"
                guard let v = sysctls[key] else { continue }
                // netlab writes accept_source_route itself (node `source-route:`); carry the host's value anyway.
                if v != fresh { sys.append((d.contains(".") ? "net/ipv4/conf/\(d)/\(k)" : key, v)) }
            }
        }
        if !sys.isEmpty {
            line("sysctl:", 4)
            for (k, v) in sys { line("\(k): \(Self.quoted(v))", 6) }
        }
        line("interfaces:", 4)
        for d in standIns {
            let addrs = snapshot.addresses.filter { $0.index == d.index }.map(Self.address)
            var attrs: [String] = []
            attrs.append("addresses: [\(addrs.map(Self.quoted).joined(separator: ", "))]")
            if d.mtu != 1500 { attrs.append("mtu: \(d.mtu)") }
            if !d.isUp { attrs.append("up: false") }
            if let kind = d.kind, kind != "veth" { line("# \(d.name) was a \(kind) device: a veth stands in for it", 6) }
            line("\(Self.quoted(d.name)): {\(attrs.joined(separator: ", "))}", 6)
        }
        if let lo = loopback {
            let extra = snapshot.addresses.filter { $0.index == lo.index && !($0.prefix.address.isLoopback && $0.prefix.length == 8) }
            if !extra.isEmpty { line("lo: [\(extra.map(Self.address).map(Self.quoted).joined(separator: ", "))]", 6) }
        }
        for s in skipped {
            line("# \(s.name) not cloned: a port of \(name[s.master] ?? "#\(s.master)") (its master stands in for the link)", 6)
        }
        // Nexthop objects (`ip nexthop`), members before the groups that name them.
        let objects = snapshot.nexthopObjects.filter { !$0.isGroup } + snapshot.nexthopObjects.filter(\.isGroup)
        if !objects.isEmpty {
            line("nexthops:", 4)
            for o in objects {
                if o.index != 0 && !cloned.contains(o.index) { line("# not cloned (its device #\(o.index) is not cloned): id \(o.id)", 6); continue }
                line("- \(Self.quoted(Self.nexthop(o, names: name)))", 6)
            }
        }
        // Routes the kernel did not make itself (proto kernel: connected, local and broadcast routes of addresses).
        let routes = snapshot.routes.filter { $0.proto != 2 }
        if !routes.isEmpty {
            line("routes:", 4)
            for r in routes {
                if let why = unclonable(r, cloned: cloned) { line("# not cloned (\(why)): \(Self.route(r, names: name))", 6); continue }
                line("- \(Self.quoted(Self.route(r, names: name)))", 6)
            }
        }
        let rules = snapshot.rules.filter { !$0.isKernelDefault }
        if !rules.isEmpty {
            line("rules:", 4)
            for r in rules {
                if r.l3mdev { line("# not cloned (an l3mdev rule: this kernel has no VRF driver): pref \(r.priority ?? 0) l3mdev", 6); continue }
                line("- \(Self.quoted(Self.rule(r)))", 6)
            }
        }
        let everyHostAddress = hostAddresses.map(\.prefix.address)
        for p in peers {
            line("\(p.peer):", 2)
            line("# answers for every destination behind \(node):\(p.device.name): a local catch-all route, listeners", 4)
            line("interfaces:", 4)
            line("eth0: [\(p.addresses.joined(separator: ", "))]", 6)
            line("routes:", 4)
            line("- local default dev lo table local", 6)
            // Replies to the host leave by the link (more specific than the catch-all, which would keep them local).
            for a in everyHostAddress { line("- \(a)/32 dev eth0 table local", 6) }
            if !ports.isEmpty { line("listen: [\(ports.map(String.init).joined(separator: ", "))]", 4) }
        }
        if !peers.isEmpty {
            line("links:")
            for p in peers { line("- [\(node):\(p.device.name), \(p.peer):eth0]", 2) }
        }
        return out.joined(separator: "\n") + "\n"
    }

    func unclonable(_ r: RouteInfo, cloned: Set<Int32>) -> String? {
        if r.type == .multicast || r.type == .broadcast { return "a \(r.type.rawValue) route" }
        if let h = r.nexthops.first(where: { $0.index != 0 && !cloned.contains($0.index) }) {
            return "its device #\(h.index) is not cloned"
        }
        return nil
    }

    /// A nexthop object in `ip nexthop add` words.
    static func nexthop(_ o: NexthopObject, names: [Int32: String]) -> String {
        var w = ["id", String(o.id)]
        if o.blackhole { w.append("blackhole") } else if o.isGroup {
            w += ["group", o.group.map { $0.weight == 1 ? String($0.id) : "\($0.id),\($0.weight)" }.joined(separator: "/")]
            if o.resilient { w += ["type", "resilient", "buckets", String(max(1, o.buckets.count))] }
        } else {
            if let g = o.gateway { w += ["via", g.description] }
            if o.index != 0 { w += ["dev", names[o.index] ?? "#\(o.index)"] }
            if o.flags & 4 != 0 { w.append("onlink") }
        }
        return w.joined(separator: " ")
    }

    /// `A/LEN [scope S] [noprefixroute] [metric N] [peer P] [broadcast B]`, as the topology writes an address.
    static func address(_ a: AddressInfo) -> String {
        var w = [a.prefix.description]
        if a.scope != 0 { w += ["scope", AddressScope(value: a.scope)?.rawValue ?? String(a.scope)] }
        if a.noprefixroute { w.append("noprefixroute") }
        if let m = a.metric, m != 0 { w += ["metric", String(m)] }
        if let p = a.peer { w += ["peer", p.description] }
        if let b = a.broadcast { w += ["broadcast", b.description] }
        return w.joined(separator: " ")
    }

    /// A route in `ip route add` words (what the topology's route syntax reads back).
    static func route(_ r: RouteInfo, names: [Int32: String]) -> String {
        var w: [String] = []
        if r.type != .unicast { w.append(r.type.rawValue) }
        w.append(r.destination.length == 0 ? "default" : r.destination.description)
        if r.tos != 0 { w += ["tos", String(r.tos)] }
        if let id = r.nexthopID {
            w += ["nhid", String(id)]
        } else if !r.multipath, let h = r.nexthops.first {
            if let g = h.gateway { w += ["via", g.description] }
            if h.index != 0 { w += ["dev", names[h.index] ?? "#\(h.index)"] }
            if h.onlink { w.append("onlink") }
        }
        if r.table != 254 { w += ["table", r.table == 255 ? "local" : r.table == 253 ? "default" : String(r.table)] }
        if r.metric != 0 { w += ["metric", String(r.metric)] }
        if let s = r.prefsrc { w += ["src", s.description] }
        if r.proto != 3 { w += ["proto", String(r.proto)] }
        // The scope iproute2 would give is left implicit; any other is written.
        let implicit: UInt8 = r.type == .local ? AddressScope.host.value
            : (r.type == .unicast && r.nexthopID == nil && !r.multipath && r.nexthops.allSatisfy { $0.gateway == nil }) ? AddressScope.link.value
            : AddressScope.global.value
        if r.scope != implicit { w += ["scope", AddressScope(value: r.scope)?.rawValue ?? String(r.scope)] }
        if let m = r.mtu { w += ["mtu", String(m)] }
        if let m = r.advmss { w += ["advmss", String(m)] }
        if let m = r.hoplimit { w += ["hoplimit", String(m)] }
        if r.multipath && r.nexthopID == nil {
            for h in r.nexthops {
                w.append("nexthop")
                if let g = h.gateway { w += ["via", g.description] }
                if h.index != 0 { w += ["dev", names[h.index] ?? "#\(h.index)"] }
                w += ["weight", String(h.weight)]
                if h.onlink { w.append("onlink") }
            }
        }
        return w.joined(separator: " ")
    }

    /// A rule in `ip rule add` words.
    static func rule(_ r: RuleInfo) -> String {
        var w: [String] = []
        if let p = r.priority { w += ["pref", String(p)] }
        if r.invert { w.append("not") }
        if let f = r.from { w += ["from", f.description] }
        if let t = r.to { w += ["to", t.description] }
        if r.tos != 0 { w += ["tos", "0x" + String(r.tos, radix: 16)] }
        if let d = r.dscp { w += ["dscp", String(d)] }
        if let m = r.fwmark {
            w += ["fwmark", "0x" + String(m, radix: 16) + (r.fwmask.map { $0 == UInt32.max ? "" : "/0x" + String($0, radix: 16) } ?? "")]
        }
        if let i = r.iif { w += ["iif", i] }
        if let o = r.oif { w += ["oif", o] }
        if let u = r.uidrange { w += ["uidrange", "\(u.lowerBound)-\(u.upperBound)"] }
        if let p = r.ipproto { w += ["ipproto", String(p)] }
        if let s = r.sport { w += ["sport", s.lowerBound == s.upperBound ? String(s.lowerBound) : "\(s.lowerBound)-\(s.upperBound)"] }
        if let d = r.dport { w += ["dport", d.lowerBound == d.upperBound ? String(d.lowerBound) : "\(d.lowerBound)-\(d.upperBound)"] }
        switch r.action {
        case .toTable: w += ["lookup", r.table == 254 ? "main" : r.table == 255 ? "local" : r.table == 253 ? "default" : String(r.table)]
        case .goto: w += ["goto", String(r.goto ?? 0)]
        case .blackhole, .unreachable, .prohibit: w.append(r.action.word)
        case .nop, .unspecified, .reserved3, .reserved4: w.append("nop")
        }
        if let s = r.suppressPrefixLength, s >= 0 { w += ["suppress_prefixlength", String(s)] }
        return w.joined(separator: " ")
    }

    /// A YAML scalar, quoted when plain would not read back as the same string.
    static func quoted(_ s: String) -> String {
        let plain = s.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "./-_ ".unicodeScalars.contains($0)) }
        if plain && !s.isEmpty && !s.hasPrefix(" ") && !s.hasSuffix(" ") && !["true", "false", "yes", "no", "on", "off", "null", "~"].contains(s.lowercased()) {
            return s
        }
        var q = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\\": q += "\\\\"
            case "\"": q += "\\\""
            case "\t": q += "\\t"
            case "\n": q += "\\n"
            default: q.unicodeScalars.append(c)
            }
        }
        return q + "\""
    }
}

extension RuleInfo {
    /// One of the three rules every namespace starts with (`0: lookup local`, `32766: lookup main`,
    /// `32767: lookup default`).
    public var isKernelDefault: Bool {
        let plain = from == nil && to == nil && iif == nil && oif == nil && fwmark == nil && action == .toTable && !invert
            && tos == 0 && dscp == nil && ipproto == nil && sport == nil && dport == nil && uidrange == nil
            && suppressPrefixLength.map { $0 < 0 } ?? true && !l3mdev
        return plain && ((priority == 0 && table == 255) || (priority == 32766 && table == 254) || (priority == 32767 && table == 253))
    }
}
