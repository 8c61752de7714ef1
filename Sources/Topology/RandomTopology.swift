/// Random multi-homed labs for differential testing (`netlab selftest route`, the integration tests): a ring of
/// nodes with chords; /29, /31 and point-to-point (`peer`) links; secondaries, scoped (link/host) /32s, explicit
/// broadcasts and address metrics; loopbacks; routes in several tables (gateways, multipath,
/// unreachable/prohibit/blackhole/throw, prefsrc, metrics, gateways that are the node's own address); nexthop
/// objects (singles, a weighted group, a resilient group, a blackhole, routes using them); rules with random selectors and actions.
/// Deterministic per seed; always valid.
public struct RandomTopology: Sendable {
    public var text: String

    public init(seed: UInt64, name: String = "random", nodes n: Int = 5) {
        var rng = SplitMix(seed)
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        func chance(_ k: UInt64) -> Bool { rng.next() % k == 0 }
        var ifaces: [[String]] = Array(repeating: [], count: n)
        var routes: [[String]] = Array(repeating: [], count: n)
        var rules: [[String]] = Array(repeating: [], count: n)
        var nexthops: [[String]] = Array(repeating: [], count: n)
        var scoped: [String: String] = [:]   // "node dev" → its scope link/host /32
        var links: [String] = []
        var count = Array(repeating: 0, count: n)
        var neighbours: [[(gw: String, dev: String, local: String)]] = Array(repeating: [], count: n)
        var pairs: [(Int, Int)] = n == 2 ? [(0, 1)] : (0..<n).map { ($0, ($0 + 1) % n) }
        for _ in 0..<(n / 2) {
            let a = Int(rng.next() % UInt64(n)), b = Int(rng.next() % UInt64(n))
            if a != b, !pairs.contains(where: { ($0 == a && $1 == b) || ($0 == b && $1 == a) }) { pairs.append((a, b)) }
        }
        // /29 subnets from 198.51.100.0/24 and 203.0.113.0/24 (32 each): room for a secondary on each side.
        for (k, (a, b)) in pairs.prefix(64).enumerated() {
            let range = k < 32 ? "198.51.100" : "203.0.113"
            let base = (k % 32) * 8
            let ia = "eth\(count[a])", ib = "eth\(count[b])"
            count[a] += 1; count[b] += 1
            // Addressing of the link: a /29 (most), a /31, or point-to-point /32s with `peer`.
            let shape = rng.next() % 8
            let (ea, eb) = shape == 0 ? ("\(range).\(base)", "\(range).\(base + 1)") : ("\(range).\(base + 1)", "\(range).\(base + 2)")
            var la: [String], lb: [String]
            switch shape {
            case 0: la = ["\(ea)/31"]; lb = ["\(eb)/31"]
            case 1: la = ["\(ea)/32 peer \(eb)"]; lb = ["\(eb)/32 peer \(ea)"]
            default:
                // An explicit broadcast (a second broadcast route), a metric on the prefix route.
                la = ["\(ea)/29\(chance(4) ? " broadcast \(range).\(base + 6)" : "")\(chance(6) ? " metric \(10 + rng.next() % 90)" : "")"]
                lb = ["\(eb)/29"]
                if chance(3) { la.append("\(range).\(base + 3)/29") }                   // a secondary
                if chance(4) { lb.append("\(range).\(base + 4)/29 noprefixroute") }     // a secondary without prefix route
            }
            if chance(5) {
                la.insert("\(range).\(base + 5)/32 scope \(pick(["link", "host"]))", at: 0)
                scoped["\(a) \(ia)"] = "\(range).\(base + 5)"
            }
            ifaces[a].append("      \(ia): [\(la.map { "\"\($0)\"" }.joined(separator: ", "))]")
            ifaces[b].append("      \(ib): [\(lb.map { "\"\($0)\"" }.joined(separator: ", "))]")
            links.append("  - [n\(a):\(ia), n\(b):\(ib)]")
            neighbours[a].append((eb, ia, ea)); neighbours[b].append((ea, ib, eb))
        }
        for i in 0..<n {
            var lo = ["192.0.2.\(i + 1)/32"]
            if chance(2) { lo.append("192.0.2.\(64 + i)/32") }
            ifaces[i].append("      lo: [\(lo.joined(separator: ", "))]")
            let nb = neighbours[i]
            guard let first = nb.first else { continue }
            let tables = [100, 101, 102]
            routes[i].append("default via \(first.gw) dev \(first.dev) metric \(10 + rng.next() % 50)")
            if chance(2) { routes[i].append("default via \(nb.last!.gw) metric \(100 + rng.next() % 50)") }
            if nb.count >= 2 {
                let w1 = 1 + rng.next() % 3, w2 = 1 + rng.next() % 3
                routes[i].append("192.0.2.128/26 nexthop via \(nb[0].gw) dev \(nb[0].dev) weight \(w1) nexthop via \(nb[1].gw) dev \(nb[1].dev) weight \(w2)")
            }
            for t in tables where chance(2) || t == 100 {
                let hop = pick(nb)
                routes[i].append("default via \(hop.gw) table \(t)")
                routes[i].append("192.0.2.\(pick([96, 112])).0/28 via \(hop.gw) src \(hop.local) table \(t)".replacingOccurrences(of: ".0/28", with: "/28"))
                routes[i].append("\(pick(["unreachable", "blackhole", "prohibit", "throw"])) 192.0.2.\(pick([224, 232, 240, 248]))/29 table \(t)")
            }
            routes[i].append("\(pick(["unreachable", "blackhole", "prohibit"])) 192.0.2.\(pick([200, 208]))/29")
            // A gateway that is the node's own address (fib_check_nh_v4_gw: host scope, sent on-link), with and
            // without `dev`.
            if chance(2) { routes[i].append("192.0.2.184/29 via \(first.local) dev \(first.dev)") }
            if chance(3) { routes[i].append("192.0.2.32/28 via \(first.local)") }
            // Nexthop objects: singles (one possibly a local gateway), a weighted hash-threshold group, a blackhole,
            // and routes using them in main and table 100.
            if !chance(3) {
                var objs = ["id 1 via \(nb[0].gw) dev \(nb[0].dev)"]
                var members = ["1,\(1 + rng.next() % 4)"]
                if nb.count >= 2 { objs.append("id 2 via \(nb[1].gw) dev \(nb[1].dev)"); members.append("2,\(1 + rng.next() % 4)") }
                if chance(3) {   // the node's own address as gateway: its primary, or a scope link/host /32 of that device
                    objs.append("id 3 via \(scoped["\(i) \(first.dev)"].map { chance(2) ? $0 : first.local } ?? first.local) dev \(first.dev)")
                    members.append("3")
                }
                if nb.count >= 3, chance(2) { objs.append("id 4 via \(nb[2].gw) dev \(nb[2].dev)"); members.append("4,\(1 + rng.next() % 4)") }
                objs.append("id 10 group \(members.joined(separator: "/"))")
                if chance(2) {   // a resilient group: members by bucket
                    objs.append("id 12 group \(members.joined(separator: "/")) type resilient buckets \(pick([4, 8, 16, 32]))")
                    routes[i].append("192.0.2.152/29 nhid 12")
                }
                objs.append("id 11 blackhole")
                nexthops[i] = objs
                routes[i].append("192.0.2.144/28 nhid 10")
                routes[i].append("192.0.2.160/28 nhid \(pick(objs.contains { $0.hasPrefix("id 3 ") } ? [1, 3, 10] : [1, 10]))")
                routes[i].append("192.0.2.176/29 nhid 11")
                if chance(2) { routes[i].append("192.0.2.128/28 nhid 10 table 100") }
            }
            routes[i].append("192.0.2.96/27 via \(first.gw) src 192.0.2.\(i + 1) metric 5")
            let selectors = ["fwmark 0x1", "fwmark 0x2/0x3", "ipproto udp", "ipproto tcp dport 443", "sport 1000-2000",
                             "from 192.0.2.\(i + 1)", "from \(first.local)", "to 192.0.2.96/28", "tos 0x10", "uidrange 1000-2000",
                             "iif lo", "oif \(first.dev)", "not fwmark 0x7/0xf", "to 192.0.2.224/27", "dport 22",
                             "iif \(first.dev)", "iif \(first.dev) from 192.0.2.0/25"]
            var pref = 1000
            for _ in 0..<Int(1 + rng.next() % 4) {
                let sel = pick(selectors)
                let action = pick(["lookup \(pick(tables))", "lookup main", "unreachable", "prohibit", "blackhole", "nop",
                                   "lookup main suppress_prefixlength 0", "goto \(pref + 20)"])
                rules[i].append("\(sel) \(action) pref \(pref)")
                pref += 10
            }
        }
        var lines = ["lab: \(name)", "nodes:"]
        for i in 0..<n {
            lines += ["  n\(i):", "    forwarding: \(chance(2))"]
            // Half the nodes make the multipath hash knowable: a seed, policy L3 or L4. Source validation of input
            // routes varies: rp_filter off, strict or loose, sometimes accept_local or src_valid_mark.
            var sysctl: [String] = []
            if chance(2) {
                sysctl += ["net.ipv4.fib_multipath_hash_seed: \(1 + rng.next() % 4_000_000_000)",
                           "net.ipv4.fib_multipath_hash_policy: \(rng.next() % 2)"]
            }
            sysctl.append("net.ipv4.conf.all.rp_filter: \(rng.next() % 3)")
            if rng.next() % 4 == 0 { sysctl.append("net.ipv4.conf.all.accept_local: 1") }
            if rng.next() % 4 == 0 { sysctl.append("net.ipv4.conf.all.src_valid_mark: 1") }
            if rng.next() % 2 == 0 { sysctl.append("net.ipv4.conf.all.promote_secondaries: 1") }
            lines.append("    sysctl: {\(sysctl.joined(separator: ", "))}")
            lines += ["    interfaces:"] + ifaces[i]
            if !nexthops[i].isEmpty { lines += ["    nexthops:"] + nexthops[i].map { "      - \($0)" } }
            if !routes[i].isEmpty { lines += ["    routes:"] + routes[i].map { "      - \($0)" } }
            if !rules[i].isEmpty { lines += ["    rules:"] + rules[i].map { "      - \($0)" } }
        }
        lines.append("links:")
        lines += links
        text = lines.joined(separator: "\n") + "\n"
    }
}

