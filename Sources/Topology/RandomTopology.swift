/// Random multi-homed labs for differential testing (`netlab selftest route`, the integration tests): a ring of
/// nodes with chords, secondaries and scoped addresses, loopbacks, routes in several tables (gateways, multipath,
/// unreachable/prohibit/blackhole/throw, prefsrc, metrics) and rules with random selectors and actions.
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
            let (ea, eb) = ("\(range).\(base + 1)", "\(range).\(base + 2)")
            let ia = "eth\(count[a])", ib = "eth\(count[b])"
            count[a] += 1; count[b] += 1
            var la = ["\(ea)/29"], lb = ["\(eb)/29"]
            if chance(3) { la.append("\(range).\(base + 3)/29") }                   // a secondary
            if chance(4) { lb.append("\(range).\(base + 4)/29 noprefixroute") }     // a secondary without prefix route
            if chance(5) { la.insert("\(range).\(base + 5)/32 scope link", at: 0) }
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
            lines.append("    sysctl: {\(sysctl.joined(separator: ", "))}")
            lines += ["    interfaces:"] + ifaces[i]
            if !routes[i].isEmpty { lines += ["    routes:"] + routes[i].map { "      - \($0)" } }
            if !rules[i].isEmpty { lines += ["    rules:"] + rules[i].map { "      - \($0)" } }
        }
        lines.append("links:")
        lines += links
        text = lines.joined(separator: "\n") + "\n"
    }
}

