import Foundation
import NetLab
import Testing

/// `netlab snapshot`: "hosts" built with iproute2 alone are cloned into labs, and the clone's kernel must hold the same
/// addresses, routes and rules (read back with `ip -4 -j`) and answer lookups (`ip route get`) as the host's does.
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct HostSnapshot {
    init() throws {
        try #require(Root.isRoot, "integration tests need root")
    }

    /// iproute2 in the test's own namespaces (`it<random>-sn-h`, `-u`), deleted by name at the end.
    final class Host {
        let prefix = "it\(Int.random(in: 1000...9999))-sn"
        var host: String { "\(prefix)-h" }
        var upstream: String { "\(prefix)-u" }
        func ip(_ words: String) throws {
            let r = try run("/usr/bin/env", ["ip"] + words.split(separator: " ").map(String.init))
            try #require(r.status == 0, "ip \(words): \(r.stderr)")
        }
        func h(_ words: String) throws { try ip("-n \(host) \(words)") }
        deinit {
            for ns in [host, upstream] { _ = try? run("/usr/bin/env", ["ip", "netns", "del", ns]) }
        }
    }

    /// A multi-homed host: three devices (one with a non-default MTU), primaries and secondaries, an address metric,
    /// noprefixroute, scope link, an address on lo, defaults with metrics, several tables, multipath, prefsrc, error
    /// routes, route metrics and proto, rules with several selectors, a point-to-point and a broadcast address, nexthop
    /// objects (singles, a weighted group, a blackhole) used by routes, and sysctls that change routing and the SYN.
    func build(_ x: Host, seed: UInt64) throws {
        try x.ip("netns add \(x.host)")
        try x.ip("netns add \(x.upstream)")
        try x.h("link add eth0 type veth peer name u0 netns \(x.upstream)")
        try x.h("link add eth1 mtu 1400 type veth peer name u1 netns \(x.upstream)")
        try x.h("link add eth2 type veth peer name u2 netns \(x.upstream)")
        for i in ["eth0", "eth1", "eth2", "lo"] { try x.h("link set \(i) up") }
        for i in ["u0", "u1", "u2", "lo"] { try x.ip("-n \(x.upstream) link set \(i) up") }
        try x.h("addr add 198.51.100.10/24 dev eth0")
        try x.h("addr add 198.51.100.11/24 dev eth0")
        try x.h("addr add 203.0.113.10/25 dev eth1 metric 50")
        try x.h("addr add 203.0.113.200/26 dev eth1 noprefixroute")
        try x.h("addr add 192.0.2.33/28 dev eth2 scope link")
        try x.h("addr add 192.0.2.250/32 dev lo")
        try x.h("addr add 192.0.2.49/28 brd + dev eth2")
        try x.h("addr add 192.0.2.1 peer 192.0.2.2/32 dev eth2")
        try x.h("nexthop add id 1 via 198.51.100.1 dev eth0")
        try x.h("nexthop add id 2 via 203.0.113.1 dev eth1")
        try x.h("nexthop add id 10 group 1/2,3")
        try x.h("nexthop add id 11 blackhole")
        try x.h("route add default via 198.51.100.1 metric 100")
        try x.h("route add default via 203.0.113.1 metric 200")
        try x.h("route add default via 203.0.113.1 table 102")
        try x.h("route add 192.0.2.128/26 nexthop via 198.51.100.1 weight 1 nexthop via 203.0.113.1 weight 3")
        try x.h("route add 192.0.2.64/27 via 192.0.2.34 src 192.0.2.250")
        try x.h("route add unreachable 192.0.2.96/28")
        try x.h("route add prohibit 192.0.2.112/28 table 102")
        try x.h("route add blackhole 192.0.2.240/29 metric 5")
        try x.h("route add 198.51.100.128/25 via 198.51.100.1 proto static mtu 1300 advmss 1200")
        try x.h("route add throw 192.0.2.0/24 table 102")
        try x.h("route add 203.0.113.128/25 dev eth1 scope link table 103")
        try x.h("route add 192.0.2.160/28 nhid 10")
        try x.h("route add 192.0.2.176/28 nhid 1 table 103")
        try x.h("route add 192.0.2.192/28 nhid 11")
        try x.h("rule add from 203.0.113.10 lookup 102 pref 100")
        try x.h("rule add fwmark 0x1/0xff lookup 102 pref 110")
        try x.h("rule add to 192.0.2.64/27 ipproto tcp dport 443 lookup 102 pref 120")
        try x.h("rule add not from 198.51.100.0/24 iif eth1 prohibit pref 130")
        try x.h("rule add lookup main suppress_prefixlength 0 pref 90")
        try x.h("rule add from 192.0.2.33 tos 0x10 lookup 103 pref 140")
        try x.h("rule add uidrange 1000-2000 sport 1024-2048 lookup 103 pref 150")
        let r = try run("/usr/bin/env", ["ip", "netns", "exec", x.host, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2",
                                         "net.ipv4.fib_multipath_hash_policy=1", "net.ipv4.fib_multipath_hash_seed=\(seed)",
                                         "net.ipv4.ip_local_port_range=40000 40100", "net.ipv4.tcp_timestamps=0"])
        try #require(r.status == 0, "\(r.stderr)")
    }

    /// `ip -4 -j` state of a namespace, devices by name, without what differs by nature (ifindex, kernel-made routes'
    /// cache flags, lifetimes).
    func state(_ ns: String) throws -> [String: [String]] {
        func rows(_ args: String...) throws -> [[String: Any]] {
            let r = try run("/usr/bin/env", ["ip", "-j", "-n", ns, "-4"] + args)
            try #require(r.status == 0, "\(r.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        }
        func canon(_ o: Any) -> String {
            if let d = o as? [String: Any] {
                let drop: Set<String> = ["ifindex", "valid_life_time", "preferred_life_time", "link_index", "operstate",
                                         "addr_info", "linkdown", "flags"]
                return "{" + d.keys.sorted().filter { !drop.contains($0) }.map { "\($0)=\(canon(d[$0]!))" }.joined(separator: ",") + "}"
            }
            if let a = o as? [Any] { return "[" + a.map(canon).joined(separator: ",") + "]" }
            return "\(o)"
        }
        var out: [String: [String]] = [:]
        for link in try rows("addr", "show") {
            guard let name = link["ifname"] as? String else { continue }
            let addrs = (link["addr_info"] as? [[String: Any]] ?? []).map { a in
                let f = (a["secondary"] as? Bool ?? false) ? " secondary" : ""
                return "\(name) \(canon(a))\(f)"
            }
            out["addresses", default: []] += addrs
        }
        out["routes"] = try rows("route", "show", "table", "all").map(canon).sorted()
        out["rules"] = try rows("rule", "show").map(canon)
        out["nexthops"] = try rows("nexthop", "show").map(canon).sorted()
        return out
    }

    @Test func cloneHoldsTheHostsStateAndAnswersAsItDoes() throws {
        let x = Host()
        try build(x, seed: 777)
        let lab = "\(x.prefix)c"
        let file = NSTemporaryDirectory() + "\(lab).topo"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let snap = try netlab("snapshot", "--netns", x.host, "--name", lab, "-o", file)
        try #require(snap.status == 0, "\(snap.stderr)")
        let f = try LabFixture(text: try String(contentsOfFile: file, encoding: .utf8), base: "snap", name: lab)
        let up = try netlab("up", f.file)
        let text = try String(contentsOfFile: file, encoding: .utf8)
        try #require(up.status == 0, "\(up.stderr)\n\(text)")
        let clone = "\(lab)-host"
        let a = try state(x.host), b = try state(clone)
        for k in ["addresses", "routes", "rules", "nexthops"] {
            let missing = Set(a[k] ?? []).subtracting(b[k] ?? []), extra = Set(b[k] ?? []).subtracting(a[k] ?? [])
            #expect(missing.isEmpty && extra.isEmpty, "\(k): only on the host \(missing.sorted()), only in the clone \(extra.sorted())")
        }
        // The same questions to both kernels.
        var random = SplitMix(42)
        let sources = ["", "198.51.100.10", "198.51.100.11", "203.0.113.10", "192.0.2.33", "192.0.2.250"]
        let extras = ["", "mark 1", "dport 443 ipproto tcp", "tos 0x10", "oif eth1", "uid 1500 sport 1500 ipproto tcp"]
        var asked = 0
        for _ in 0..<150 {
            let d = "\(["192.0.2", "198.51.100", "203.0.113"][Int(random.next() % 3)]).\(random.next() % 256)"
            let s = sources[Int(random.next() % UInt64(sources.count))]
            let e = extras[Int(random.next() % UInt64(extras.count))]
            let words = ["route", "get", d] + (s.isEmpty ? [] : ["from", s]) + e.split(separator: " ").map(String.init)
            let ra = try run("/usr/bin/env", ["ip", "-n", x.host, "-j"] + words)
            let rb = try run("/usr/bin/env", ["ip", "-n", clone, "-j"] + words)
            let na = ra.stdout.replacingOccurrences(of: "\"cache\"", with: ""), nb = rb.stdout.replacingOccurrences(of: "\"cache\"", with: "")
            #expect(ra.status == rb.status && (ra.status != 0 || canonRoute(na) == canonRoute(nb)),
                    "ip route get \(words.dropFirst(2).joined(separator: " ")): host \(ra.stdout)\(ra.stderr) clone \(rb.stdout)\(rb.stderr)")
            asked += 1
        }
        #expect(asked == 150)
        // Real kernel connects (non-blocking connect, getsockname; `route --connect`) and `explain --connect` on both:
        // the kernel's source and device are the same in the clone, and explain agrees with each kernel.
        func field(_ r: RunResult, _ side: String, _ key: String) -> String {
            let o = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any]
            return "\((o?[side] as? [String: Any])?[key] ?? "-")"
        }
        // (Not into 192.0.2.128/26: its multipath leg depends on the port the kernel picks at random, with policy 1.)
        for d in ["192.0.2.70", "198.51.100.200", "203.0.113.50", "192.0.2.100", "192.0.2.20", "203.0.113.140", "192.0.2.241"] {
            let ha = try netlab("route", "--netns", x.host, d, "--connect", "--json")
            let hb = try netlab("route", "--netns", clone, d, "--connect", "--json")
            for k in ["source", "dev", "via", "error"] {
                #expect(field(ha, "kernel", k) == field(hb, "kernel", k), "connect \(d) \(k): host \(ha.stdout) clone \(hb.stdout)")
            }
            let ea = try netlab("explain", "--netns", x.host, "\(d):80", "--connect", "--json")
            let eb = try netlab("explain", "--netns", clone, "\(d):80", "--connect", "--json")
            #expect(ea.status == 0 && eb.status == 0, "explain \(d): \(ea.stdout)\(eb.stdout)")
            #expect(field(ea, "answer", "dev") == field(eb, "answer", "dev") && field(ea, "answer", "source") == field(eb, "answer", "source"))
        }
        #expect(try netlab("down", lab).status == 0)
    }

    /// Device, gateway and source of `ip -j route get`, the fields a clone must reproduce.
    func canonRoute(_ json: String) -> String {
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]], let r = o.first else { return json }
        return ["dst", "gateway", "dev", "prefsrc", "type", "table"].map { "\($0)=\(r[$0] ?? "-")" }.joined(separator: " ")
    }

    @Test func snapshotOfTheCallersOwnNamespaceAndBadInput() throws {
        // Read-only: the root namespace of this machine is read, nothing is written.
        let own = try netlab("snapshot", "--name", "itself")
        #expect(own.status == 0 && own.stdout.contains("lab: itself") && own.stdout.contains("nodes:"), "\(own.stderr)")
        #expect(try netlab("snapshot", "--netns", "../x").status == 2)
        #expect(try netlab("snapshot", "--netns", "it0000-no-such").status == 2)
        #expect(try netlab("snapshot", "--name", "Bad_Name").status == 2)
        #expect(try netlab("snapshot", "--ports", "80,x").status == 2)
    }
}


/// `netlab explain`: read-only, in a lab's nodes it answers what `netlab route` answers and what the kernel does.
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct ExplainCommand {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    func json(_ r: RunResult) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)\(r.stderr)")
    }

    @Test(arguments: ["dualhome", "campus", "policy"])
    func explainAgreesWithRouteAndTheKernel(_ lab: String) throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/\(lab).topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let topology = try Topology.load(path: f.file)
        let destinations = ["192.0.2.80", "198.51.100.1", "203.0.113.1", "192.0.2.255", "192.0.2.1"]
        for node in topology.nodes {
            let ns = "\(f.name)-\(node.name)"
            for d in destinations {
                let e = try netlab("explain", "--netns", ns, d, "--json")
                let r = try netlab("route", "--netns", ns, d, "--json")
                let ej = try json(e), rj = try json(r)
                #expect(e.status == 0 && ej["agree"] as? Bool == true, "\(ns) \(d): \(e.stdout)")
                let ea = ej["answer"] as? [String: Any] ?? [:], ra = rj["engine"] as? [String: Any] ?? [:]
                for k in ["dev", "source", "via", "error"] {
                    #expect("\(ea[k] ?? "-")" == "\(ra[k] ?? "-")", "\(ns) \(d) \(k): explain \(ea) route \(ra)")
                }
                let c = try netlab("explain", "--netns", ns, "\(d):80", "--connect", "--json")
                let cj = try json(c)
                #expect(c.status == 0 && cj["agree"] as? Bool == true, "\(ns) connect \(d): \(c.stdout)")
            }
        }
    }

    /// docs/explain.md's three puzzles, run on the bundled labs: the lines the doc shows are what explain prints.
    @Test func theDocsPuzzlesRunAsShown() throws {
        let doc = try String(contentsOfFile: repoRoot.appendingPathComponent("docs/explain.md").path, encoding: .utf8)
        let blocks = doc.components(separatedBy: "```").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
            .filter { $0.contains("$ netlab explain") }
        try #require(blocks.count == 3)
        var fixtures: [String: LabFixture] = [:]
        for lab in ["dualhome", "policy"] {
            let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/\(lab).topo").path)
            try #require(try netlab("up", f.file).status == 0)
            fixtures[lab] = f
        }
        defer { for f in fixtures.values { _ = try? netlab("down", f.name) } }
        for b in blocks {
            let lines = b.components(separatedBy: "\n")
            let command = try #require(lines.first { $0.hasPrefix("$ netlab ") }).dropFirst("$ netlab ".count)
            var args = command.split(separator: " ").map(String.init)
            if let i = args.firstIndex(of: "--netns") {
                let ns = args[i + 1]
                for (lab, f) in fixtures where ns.hasPrefix(lab + "-") { args[i + 1] = f.name + ns.dropFirst(lab.count) }
            }
            let r = try run(try netlabBinary(), args)
            #expect(r.status == 0, "\(args): \(r.stderr)")
            let shown = lines.drop { !$0.hasPrefix("$ ") }.dropFirst()
            #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == shown.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines), "\(args)")
        }
    }

    @Test func explainIsReadOnlyAndNeedsNoRootForItsOwnNamespace() throws {
        let r = try run("/usr/bin/env", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", try netlabBinary(),
                                         "explain", "192.0.2.1", "--connect"])
        #expect(r.status == 0 || r.status == 1, "\(r.stderr)")
        #expect(r.stdout.contains("kernel (RTM_GETROUTE"), "\(r.stdout)\(r.stderr)")
        #expect(try netlab("explain", "--netns", "../x", "192.0.2.1").status == 2)
        #expect(try netlab("explain", "not-an-address").status == 2)
        #expect(try netlab("explain", "192.0.2.1", "--dev", "nosuchdev0").status == 2)
    }
}
