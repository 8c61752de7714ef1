/// Labs the tests have never seen: a ring of routers with chords, several addresses (with secondaries), loopbacks,
/// routes in several tables (gateways, multipath, error types, prefsrc) and rules with random selectors. Deterministic
/// per seed.
struct RandomLab {
    var text: String

    init(seed: UInt64, nodes n: Int = 6) {
        var rng = SplitMix(seed)
        var nodes: [[String]] = Array(repeating: [], count: n)          // interface lines per node
        var routes: [[String]] = Array(repeating: [], count: n)
        var links: [String] = []
        var ifCount = Array(repeating: 0, count: n)
        // Point-to-point /30s from 198.51.100.0/24 then 203.0.113.0/24 (64 per range).
        var subnet = 0
        func p2p() -> (String, String, String) {
            let range = subnet < 64 ? "198.51.100" : "203.0.113"
            let base = (subnet % 64) * 4
            subnet += 1
            return ("\(range).\(base + 1)", "\(range).\(base + 2)", "\(range).\(base)/30")
        }
        var pairs: [(Int, Int)] = (0..<n).map { ($0, ($0 + 1) % n) }
        for _ in 0..<(n / 2) { let a = Int(rng.next() % UInt64(n)), b = Int(rng.next() % UInt64(n)); if a != b, !pairs.contains(where: { ($0 == a && $1 == b) || ($0 == b && $1 == a) }) { pairs.append((a, b)) } }
        if n == 2 { pairs = [(0, 1)] }
        var neighbours: [[(gw: String, dev: String)]] = Array(repeating: [], count: n)
        for (a, b) in pairs where subnet < 128 {
            let (ea, eb, _) = p2p()
            let ia = "eth\(ifCount[a])", ib = "eth\(ifCount[b])"
            ifCount[a] += 1; ifCount[b] += 1
            // Sometimes a second address in the same subnet (a kernel secondary).
            nodes[a].append("      \(ia): [\(ea)/30]")
            nodes[b].append("      \(ib): [\(eb)/30]")
            links.append("  - [n\(a):\(ia), n\(b):\(ib)]")
            neighbours[a].append((eb, ia)); neighbours[b].append((ea, ib))
        }
        for i in 0..<n {
            // A loopback /32 from 192.0.2.0/24, plus sometimes a second.
            var lo = ["192.0.2.\(i + 1)/32"]
            if rng.next() % 2 == 0 { lo.append("192.0.2.\(128 + i)/32") }
            nodes[i].append("      lo: [\(lo.joined(separator: ", "))]")
            let nb = neighbours[i]
            guard let first = nb.first else { continue }
            let metric = 10 + Int(rng.next() % 50)
            routes[i].append("      - default via \(first.gw) dev \(first.dev) metric \(metric)")
            if nb.count >= 2, rng.next() % 2 == 0 {
                routes[i].append("      - 192.0.2.64/27 nexthop via \(nb[0].gw) dev \(nb[0].dev) weight \(1 + rng.next() % 3) nexthop via \(nb[1].gw) dev \(nb[1].dev) weight \(1 + rng.next() % 3)")
            }
            let table = 100 + Int(rng.next() % 5)
            routes[i].append("      - default via \(nb.last!.gw) table \(table)")
            routes[i].append("      - 192.0.2.96/28 via \(first.gw) src 192.0.2.\(i + 1) mtu \(1200 + rng.next() % 200)")
            let types = ["unreachable", "blackhole", "prohibit", "throw"]
            routes[i].append("      - \(types[Int(rng.next() % 4)]) 192.0.2.\(224 + Int(rng.next() % 4) * 8)/29 table \(table)")
            var rules: [String] = []
            let selectors = ["fwmark 0x\(String(1 + rng.next() % 15, radix: 16))", "ipproto tcp dport \(1 + rng.next() % 1000)",
                             "from 192.0.2.\(i + 1)", "to 192.0.2.96/28", "tos 0x10", "uidrange 1000-2000", "iif lo", "oif \(first.dev)",
                             "not fwmark 0x7/0xf", "ipproto udp sport 100-200"]
            for k in 0..<Int(1 + rng.next() % 3) {
                let sel = selectors[Int(rng.next() % UInt64(selectors.count))]
                let actions = ["lookup \(table)", "lookup main", "unreachable", "prohibit", "blackhole", "nop"]
                rules.append("      - \(sel) \(actions[Int(rng.next() % UInt64(actions.count))]) pref \(1000 + k * 10)")
            }
            routes[i].append("    rules:")
            routes[i] += rules
        }
        var lines = ["lab: random", "nodes:"]
        for i in 0..<n {
            lines.append("  n\(i):")
            lines.append("    forwarding: \(rng.next() % 2 == 0)")
            lines.append("    interfaces:")
            lines += nodes[i]
            if !routes[i].isEmpty {
                lines.append("    routes:")
                lines += routes[i]
            }
        }
        lines.append("links:")
        lines += links
        text = lines.joined(separator: "\n") + "\n"
    }
}

struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
