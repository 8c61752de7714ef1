/// Random labs with random connects for differential testing of the engine against the kernel (`netlab selftest
/// connect`): routers on a ring with chords, loop-free shortest-path routes to every subnet and loopback (some
/// equal-cost multipath, some with prefsrc), a second table reached by policy rules (from with `iif lo`, fwmark, tos,
/// dport), error routes on the way to some destinations (unreachable, prohibit, rarely blackhole), listeners on port
/// 80 everywhere, and checks with random binds, marks, TOS, payloads and source routes. The checks declare no
/// expectations: the kernel doing the same connect is the oracle. Half the labs leave the routers' ICMP rate limits
/// at their defaults (`icmp_ratelimit` 1000 ms, a burst of 6 per peer) and aim more connects at destinations that
/// end in ICMP errors: state the engine's connect spends and the kernel's would find spent, unless the driver keeps
/// the runs apart (`SharedState`). Half the labs draw TIME_WAIT reuse per node (`tcp_tw_reuse` 0/1/2,
/// `tcp_tw_reuse_delay`, sometimes `tcp_timestamps` 0) with one-port ranges and connects repeated on the same
/// 4-tuple, some bound to lo. Deterministic per seed; always valid. docs/engine.md lists every draw.
public struct RandomConnectLab: Sendable {
    /// The topology without checks.
    public var lab: String
    /// Each check as the YAML of one `checks:` item (starts with `  - name:`).
    public var checks: [String]
    /// The whole file: `lab` plus every check.
    public var text: String { lab + "checks:\n" + checks.joined() }
    /// A file with one check only: what a disagreement's reproduction holds.
    public func text(onlyCheck k: Int) -> String { lab + "checks:\n" + checks[k] }

    public init(seed: UInt64, name: String = "randconnect", nodes n: Int = 6, checks count: Int = 12) {
        var rng = SplitMix(seed ^ 0x636f_6e6e_6563_74)
        func below(_ k: Int) -> Int { Int(rng.next() % UInt64(k)) }
        func pick<T>(_ a: [T]) -> T { a[below(a.count)] }
        func chance(_ k: Int) -> Bool { below(k) == 0 }

        // Links: a ring plus chords, one /29 each from 198.51.100.0/24 then 203.0.113.0/24.
        var pairs: [(Int, Int)] = n == 2 ? [(0, 1)] : (0..<n).map { ($0, ($0 + 1) % n) }
        for _ in 0..<(n / 2) {
            let a = below(n), b = below(n)
            if a != b, !pairs.contains(where: { ($0 == a && $1 == b) || ($0 == b && $1 == a) }) { pairs.append((a, b)) }
        }
        struct End { var node: Int; var iface: String; var address: String; var secondary: String? }
        struct Link { var a: End; var b: End; var subnet: String }
        var links: [Link] = []
        var ifcount = Array(repeating: 0, count: n)
        for (k, (a, b)) in pairs.prefix(64).enumerated() {
            let range = k < 32 ? "198.51.100" : "203.0.113"
            let base = (k % 32) * 8
            let ea = End(node: a, iface: "eth\(ifcount[a])", address: "\(range).\(base + 1)", secondary: chance(3) ? "\(range).\(base + 3)" : nil)
            let eb = End(node: b, iface: "eth\(ifcount[b])", address: "\(range).\(base + 2)", secondary: nil)
            ifcount[a] += 1; ifcount[b] += 1
            links.append(Link(a: ea, b: eb, subnet: "\(range).\(base)/29"))
        }
        func ends(_ i: Int) -> [(mine: End, peer: End)] {
            links.compactMap { l in l.a.node == i ? (l.a, l.b) : l.b.node == i ? (l.b, l.a) : nil }
        }
        func loopback(_ i: Int) -> String { "192.0.2.\(i + 1)" }
        // Hop counts between nodes (BFS from each).
        var dist = Array(repeating: Array(repeating: Int.max, count: n), count: n)
        for s in 0..<n {
            dist[s][s] = 0
            var queue = [s]
            while !queue.isEmpty {
                let u = queue.removeFirst()
                for (_, p) in ends(u) where dist[s][p.node] == Int.max { dist[s][p.node] = dist[s][u] + 1; queue.append(p.node) }
            }
        }
        // Extra destinations, one per node on its loopback: some get an error route on the way (a transit node or
        // the sender itself).
        let extras = (0..<n).map { "192.0.2.\(100 + $0)" }
        // Now and then a link failure: one end declared `up: false` (its routes flushed, the peer without carrier,
        // sometimes with ignore_routes_with_linkdown so it routes around nothing but stops using the dead link).
        let failed: (node: Int, iface: String)? = chance(3) ? { let l = links[below(links.count)]; return chance(2) ? (l.a.node, l.a.iface) : (l.b.node, l.b.iface) }() : nil
        var errorRoutes: [Int: (node: Int, type: String)] = [:]     // extra's owner → where the error route sits
        for t in 0..<n where chance(2) {
            let at = below(n)
            if at != t { errorRoutes[t] = (at, chance(8) ? "blackhole" : pick(["unreachable", "prohibit"])) }
        }

        // Routers at their default ICMP rate limits, and more connects to destinations that end in ICMP errors.
        let defaultICMP = chance(2)
        // TIME_WAIT reuse: per node tcp_tw_reuse and tcp_tw_reuse_delay, one-port ranges, connects repeated.
        let timeWaitLab = chance(2)
        var onePort = Array(repeating: false, count: n)
        var nodeText: [String] = []
        var hasMark = Array(repeating: false, count: n)
        var hasTos = Array(repeating: false, count: n)
        for i in 0..<n {
            var routes: [String] = []
            // Toward a set of nodes (hop counts `d(to)`): the neighbours one hop closer, equal-cost legs sometimes.
            func toward(_ dest: String, _ d: (Int) -> Int, src: String? = nil) {
                let here = d(i)
                guard here > 0, here != Int.max else { return }
                let closer = ends(i).filter { d($0.peer.node) == here - 1 }
                guard !closer.isEmpty else { return }
                let srcText = src.map { " src \($0)" } ?? ""
                if closer.count > 1, chance(3) {
                    let legs = closer.prefix(2).map { "nexthop via \($0.peer.address) dev \($0.mine.iface)" }.joined(separator: " ")
                    routes.append("\(dest)\(srcText) \(legs)")
                } else {
                    let c = pick(closer)
                    routes.append("\(dest) via \(c.peer.address) dev \(c.mine.iface)\(srcText)")
                }
            }
            let myAddresses = [loopback(i)] + ends(i).flatMap { [$0.mine.address] + ($0.mine.secondary.map { [$0] } ?? []) }
            for l in links where l.a.node != i && l.b.node != i {
                toward(l.subnet, { min(dist[$0][l.a.node], dist[$0][l.b.node]) })
            }
            for t in 0..<n where t != i {
                toward("\(loopback(t))/32", { dist[$0][t] }, src: chance(6) ? pick(myAddresses) : nil)
                if let e = errorRoutes[t], e.node == i {
                    routes.append("\(e.type) \(extras[t])/32")
                } else {
                    toward("\(extras[t])/32", { dist[$0][t] })
                }
            }
            // A second table with another way out, reached by policy rules on locally generated traffic.
            var rules: [String] = []
            let nbs = ends(i)
            if nbs.count >= 2 || chance(2) {
                // Another neighbour per destination, one whose own shortest path does not come back through this
                // node (its packets would return here as martians, a silent drop); now and then any neighbour.
                func alternative(_ d: (Int) -> Int) -> End {
                    let fine = nbs.filter { d($0.peer.node) <= d(i) }
                    let pool = fine.isEmpty || chance(10) ? nbs : fine
                    return pool[below(pool.count)].peer
                }
                for l in links where l.a.node != i && l.b.node != i {
                    routes.append("\(l.subnet) via \(alternative { min(dist[$0][l.a.node], dist[$0][l.b.node]) }.address) table 100")
                }
                let refused = chance(3) ? below(n) : -1     // an extra the table refuses
                for t in 0..<n where t != i {
                    routes.append("\(loopback(t))/32 via \(alternative { dist[$0][t] }.address) table 100")
                    if t == refused {
                        routes.append("\(pick(["unreachable", "prohibit"])) \(extras[t])/32 table 100")
                    } else {
                        routes.append("\(extras[t])/32 via \(alternative { dist[$0][t] }.address) table 100")
                    }
                }
                var pref = 100
                func rule(_ r: String) { rules.append("\(r) pref \(pref)"); pref += 10 }
                if chance(2) { rule("from \(pick(myAddresses)) iif lo lookup 100") }
                if chance(2) { hasMark[i] = true; rule("fwmark 0x1 lookup 100") }
                if chance(3) { hasTos[i] = true; rule("tos 0x10 iif lo lookup 100") }
                if chance(3) { rule("ipproto tcp dport 81 iif lo lookup 100") }
                if chance(4) { rule("fwmark 0x2 \(pick(["unreachable", "prohibit", "blackhole"]))") }
            }
            // Now and then a node with four ephemeral ports, one held by a listener: its connects pick among the
            // rest, and the kernel connects' TIME_WAIT sockets (a port can serve another destination) use them up.
            // In a TIME_WAIT lab, mostly one ephemeral port (40001, no listener on it): every connect to a destination
            // after the first finds the 4-tuple in TIME_WAIT, and tcp_twsk_unique decides.
            onePort[i] = timeWaitLab && !chance(3)
            let crowded = !onePort[i] && chance(4)
            var range = crowded ? ", net.ipv4.ip_local_port_range: \"40000 40003\"" : ""
            if onePort[i] { range = ", net.ipv4.ip_local_port_range: \"40001 40001\"" }
            if timeWaitLab {
                let reuse = pick([0, 1, 1, 1, 2, 3])   // 3: the default (2)
                if reuse < 3 { range += ", net.ipv4.tcp_tw_reuse: \(reuse)" }
                if chance(2) { range += ", net.ipv4.tcp_tw_reuse_delay: \(chance(8) ? 60000 : pick([1, 100, 1000, 2500]))" }
                if chance(8) { range += ", net.ipv4.tcp_timestamps: 0" }
            }
            let icmp = defaultICMP ? "" : ", net.ipv4.icmp_ratelimit: 0"
            // Mostly a known multipath hash seed (the engine then picks the kernel's leg itself); sometimes none.
            let hashSeed = chance(4) ? "" : ", net.ipv4.fib_multipath_hash_seed: \(1 + rng.next() % 4_000_000_000)"
            let linkdown = failed != nil && chance(2) ? ", net.ipv4.conf.all.ignore_routes_with_linkdown: 1" : ""
            // Now and then a node that refuses source routes: as a router it drops source-routed SYNs, as the
            // connecting end it drops the reply carrying the reversed route.
            let sourceRoute = chance(6) ? "false" : "true"
            var lines = ["  n\(i):", "    forwarding: true", "    source-route: \(sourceRoute)",
                         "    sysctl: {net.ipv4.conf.all.rp_filter: 0\(icmp)\(range)\(hashSeed)\(linkdown)}", "    interfaces:"]
            lines.append("      lo: [\(loopback(i))/32, \(extras[i])/32]")
            for e in ends(i) {
                let addresses = "[\(e.mine.address)/29\(e.mine.secondary.map { ", \($0)/29" } ?? "")]"
                let down = failed.map { $0.node == i && $0.iface == e.mine.iface } ?? false
                lines.append("      \(e.mine.iface): " + (down ? "{addresses: \(addresses), up: false}" : addresses))
            }
            if !routes.isEmpty { lines.append("    routes:"); lines += routes.map { "      - \($0)" } }
            if !rules.isEmpty { lines.append("    rules:"); lines += rules.map { "      - \($0)" } }
            lines.append(crowded ? "    listen: [80, 40000]" : "    listen: [80]")
            nodeText.append(lines.joined(separator: "\n"))
        }
        var out = ["# Generated by RandomConnectLab(seed: \(seed)); `netlab selftest connect` runs it against the kernel.",
                   "lab: \(name)", "nodes:"]
        out += nodeText
        out.append("links:")
        out += links.map { "  - [n\($0.a.node):\($0.a.iface), n\($0.b.node):\($0.b.iface)]" }
        lab = out.joined(separator: "\n") + "\n"

        // The connects.
        var checks: [String] = []
        var plain: [(from: Int, target: String, port: Int, lo: Bool)] = []
        for k in 0..<count {
            // Now and then the same connect as an earlier one (same node, destination and port, no bind): with one
            // ephemeral port, on the 4-tuple the kernel's earlier connect left in TIME_WAIT.
            if let again = plain.isEmpty ? nil : (timeWaitLab ? (chance(2) ? pick(plain) : nil) : (chance(8) ? pick(plain) : nil)) {
                var c = ["  - name: c\(k) n\(again.from) to \(again.target):\(again.port) again", "    from: n\(again.from)",
                         "    connect: \(again.target):\(again.port)", "    syn-retries: \(failed == nil ? 1 : 2)"]
                if again.lo { c.append("    dev: lo") }
                if chance(3) { c.append("    payload: again \(k)") }
                checks.append(c.joined(separator: "\n") + "\n")
                continue
            }
            let s = below(n)
            var t = below(n - 1)
            if t >= s { t += 1 }
            let mine = [loopback(s), extras[s]] + ends(s).flatMap { [$0.mine.address] + ($0.mine.secondary.map { [$0] } ?? []) }
            // Now and then one of the node's own addresses: over lo, answered by its own stack. With default ICMP
            // limits, more often a destination behind an error route (the extra addresses).
            let others = defaultICMP ? [loopback(t), extras[t], extras[t]] : [loopback(t), loopback(t), extras[t]]
            let own = chance(timeWaitLab ? 4 : 14)
            let target = own ? pick(mine) : pick(others + ends(t).map(\.mine.address))
            let port = chance(7) ? 81 : 80
            // One SYN retry keeps timeouts short (3 s), but with a failed link a next hop may never answer ARP: the
            // neighbour then fails after 3 s, the moment one retry times out, and the kernel's timer wheel decides
            // (docs/engine.md). Two retries there.
            var c = ["  - name: c\(k) n\(s) to \(target):\(port)", "    from: n\(s)", "    connect: \(target):\(port)",
                     "    syn-retries: \(failed == nil ? 1 : 2)"]
            // Now and then another node's address: bind() refuses it (EADDRNOTAVAIL). An explicit port is mostly
            // fresh, sometimes the listener's (EADDRINUSE) or the one an earlier connect of the run bound (its kernel
            // socket may be in TIME_WAIT: EADDRINUSE for an overlapping address).
            var bound = false, lo = false
            if chance(3) {
                let fixed = chance(4) ? ":\(pick([30000 + k, 30000 + k, 80, 30000 + max(k - 1, 0)]))" : ""
                c.append("    bind: \(pick(mine + [loopback(t)]))\(fixed)")
                bound = true
            }
            // To its own address bound to lo: a TIME_WAIT bound to lo is loopback for tcp_tw_reuse 2.
            if own, !bound, timeWaitLab, chance(2) { c.append("    dev: lo"); lo = true }
            if hasMark[s], chance(2) { c.append("    mark: \(pick(["0x1", "0x2"]))") }
            if hasTos[s], chance(2) { c.append("    tos: 0x10") }
            if chance(5) { c.append("    payload: hello \(k)") }
            if !lo, chance(12) {
                // SO_BINDTODEVICE: the right device, or one without a route to the target (the destination is then
                // assumed on-link and its neighbour fails after 3 probes, 3 s), or one the replies do not come back
                // by (they find no socket there). Two SYN retries (7 s at most): with one, the SYN's timeout
                // (1 + 1 + 1 s, linear) and the neighbour's failure fall on the same moment, and the kernel's timer
                // wheel decides between them.
                c.append("    dev: \(pick(ends(s)).mine.iface)")
                c[3] = "    syn-retries: 2"
            }
            if chance(10) {
                let others = (0..<n).filter { $0 != s && $0 != t }
                if !others.isEmpty {
                    let hops = (0..<(1 + below(2))).map { _ in loopback(pick(others)) }
                    c.append("    source-route: {loose: [\(hops.joined(separator: ", "))]}")
                }
            } else if chance(10) {
                // Strict: a neighbour, then an address on one of its links (reachable in one more hop); rarely a
                // target the neighbour does not touch, which the kernel drops.
                let nb = pick(ends(s)).peer
                let onward = ends(nb.node).filter { $0.peer.node != s }.map(\.peer.address)
                if !onward.isEmpty, !chance(6) {
                    c[2] = "    connect: \(pick(onward)):\(port)"
                    c[0] = "  - name: c\(k) n\(s) to \(c[2].dropFirst(13))"
                }
                c.append("    source-route: {strict: [\(nb.address)]}")
            } else if chance(20) {
                // Strict with a first hop behind a gateway (a loopback address is never on a link): nothing is sent.
                c.append("    source-route: {strict: [\(loopback(t))]}")
            }
            if !bound, !c.contains(where: { $0.hasPrefix("    source-route") || $0.hasPrefix("    dev: e") || $0.hasPrefix("    mark") || $0.hasPrefix("    tos") }) {
                plain.append((s, String(c[2].dropFirst(13).split(separator: ":")[0]), port, lo))
            }
            checks.append(c.joined(separator: "\n") + "\n")
        }
        self.checks = checks
    }
}
