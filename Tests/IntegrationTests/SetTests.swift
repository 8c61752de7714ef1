import Foundation
import Testing
import NetLab

/// `netlab set` on real labs, read back with iproute2 (`ip -j`, an independent reader): each verb does what it
/// says, bad words and kernel refusals change nothing, and any sequence of changes leaves the kernel as the file
/// plus the journal's changes say, and `down` leaves nothing.
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct SetCommandTests {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    /// The bundled isp-failover lab, up, under a name of its own (`it<random>-px...`).
    func upLab(_ tag: String) throws -> LabFixture {
        let f = try LabFixture(text: try bundledLab("isp-failover"), base: "px\(tag)", name: "it\(Int.random(in: 1000...9999))-px\(tag)")
        let r = try nl(["up", f.file])
        try #require(r.status == 0, "\(r.stderr)")
        return f
    }

    func set(_ f: LabFixture, _ words: String...) throws -> RunResult { try nl(["set", f.name] + words) }

    func nl(_ args: [String]) throws -> RunResult { try run(try netlabBinary(), args) }

    /// Everything iproute2 shows of the lab's nodes: links, addresses, routes of every table, rules, and the sysctls
    /// the tests change.
    func snapshot(_ f: LabFixture) throws -> String {
        var out: [String] = []
        for ns in f.namespaces() {
            for args in [["link", "show"], ["-4", "addr", "show"], ["-4", "route", "show", "table", "all"], ["-4", "rule", "show"]] {
                let r = try run("/usr/bin/env", ["ip", "-j", "-n", ns] + args)
                // Timers and operstate (linkwatch settles it a moment after `up`) move on their own.
                out.append(ns + " " + args.joined(separator: " ") + " " + r.stdout.replacingOccurrences(of: #""(valid_life_time|preferred_life_time)":\d+|"operstate":"[A-Z_]+""#, with: "", options: .regularExpression))
            }
            out.append(try run("/usr/bin/env", ["ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv4/conf/all/rp_filter"]).stdout)
        }
        return out.joined(separator: "\n")
    }

    /// The snapshot once it holds still (a lab just up still has linkwatch work pending for a moment).
    func settledSnapshot(_ f: LabFixture) throws -> String {
        var last = try snapshot(f)
        for _ in 0..<30 {
            usleep(100_000)
            let now = try snapshot(f)
            if now == last { return now }
            last = now
        }
        return last
    }

    func journal(_ f: LabFixture) throws -> Journal { try #require(try Journal.read(lab: f.name)) }

    /// What the kernel holds against what the file plus the recorded changes say (iproute2's view).
    func drift(_ f: LabFixture) throws -> [String] {
        let (t, problems) = try LabController.expected(try journal(f))
        return problems + (try LiveState(topology: t).differences())
    }

    func link(_ f: LabFixture, _ node: String, _ dev: String) throws -> [String: Any] {
        try #require(try ipJSON("-n", "\(f.name)-\(node)", "link", "show", "dev", dev).first)
    }
    func flags(_ f: LabFixture, _ node: String, _ dev: String) throws -> [String] { try link(f, node, dev)["flags"] as? [String] ?? [] }
    func routes(_ f: LabFixture, _ node: String, table: String = "main") throws -> [[String: Any]] {
        try ipJSON("-4", "-n", "\(f.name)-\(node)", "route", "show", "table", table)
    }

    @Test func eachVerbDoesWhatIpShows() throws {
        let f = try upLab("verbs")
        func ok(_ r: RunResult) { #expect(r.status == 0, "\(r.stderr)") }
        // link down: the device is down, the routes that left by it are flushed, the peer lost its carrier.
        ok(try set(f, "client", "link", "eth0", "down"))
        #expect(!(try flags(f, "client", "eth0")).contains("UP"))
        #expect(try routes(f, "client").allSatisfy { $0["dev"] as? String != "eth0" })
        #expect(try routes(f, "client", table: "101").isEmpty)
        #expect(try flags(f, "isp1", "eth0").contains("NO-CARRIER"))
        // link up: back up, the flushed routes are back.
        ok(try set(f, "client", "link", "eth0", "up"))
        let (up0, peer0) = (try flags(f, "client", "eth0"), try flags(f, "isp1", "eth0"))
        #expect(up0.contains("UP") && !peer0.contains("NO-CARRIER"))
        #expect(try routes(f, "client").contains { $0["dst"] as? String == "default" && $0["dev"] as? String == "eth0" && $0["metric"] as? Int == 100 })
        #expect(try routes(f, "client", table: "101").count == 1)
        // --both: both ends down.
        ok(try set(f, "client", "link", "eth1", "down", "--both"))
        let (c1, i2) = (try flags(f, "client", "eth1"), try flags(f, "isp2", "eth0"))
        #expect(!c1.contains("UP") && !i2.contains("UP"))
        ok(try set(f, "client", "link", "eth1", "up", "--both"))
        // carrier off: the peer's end goes down; the client's device stays up without carrier, its routes linkdown.
        ok(try set(f, "client", "carrier", "eth0", "off"))
        #expect(!(try flags(f, "isp1", "eth0")).contains("UP"))
        let off = try flags(f, "client", "eth0")
        #expect(off.contains("UP") && off.contains("NO-CARRIER"))
        let viaEth0 = try #require(try routes(f, "client").first { $0["dst"] as? String == "default" && $0["dev"] as? String == "eth0" })
        #expect((viaEth0["flags"] as? [String] ?? []).contains("linkdown"))
        ok(try set(f, "client", "carrier", "eth0", "on"))
        let (c0, i1) = (try flags(f, "client", "eth0"), try flags(f, "isp1", "eth0"))
        #expect(!c0.contains("NO-CARRIER") && i1.contains("UP"))
        // address add/del.
        func addresses() throws -> [String] {
            try ipJSON("-4", "-n", "\(f.name)-client", "addr", "show", "dev", "eth0").flatMap { ($0["addr_info"] as? [[String: Any]] ?? []).map { "\($0["local"]!)/\($0["prefixlen"]!)" } }
        }
        ok(try set(f, "client", "address", "add", "eth0", "198.51.100.20/25"))
        #expect(try addresses() == ["198.51.100.10/25", "198.51.100.20/25"])
        ok(try set(f, "client", "address", "del", "eth0", "198.51.100.20/25"))
        #expect(try addresses() == ["198.51.100.10/25"])
        // route add/replace/del, as a file writes them.
        ok(try set(f, "client", "route", "add", "192.0.2.0/26 via 203.0.113.1 metric 5"))
        var r = try #require(try routes(f, "client").first { $0["dst"] as? String == "192.0.2.0/26" })
        #expect(r["gateway"] as? String == "203.0.113.1" && r["dev"] as? String == "eth1" && r["metric"] as? Int == 5)
        ok(try set(f, "client", "route", "replace", "192.0.2.0/26 via 198.51.100.1 metric 5 mtu 1300"))
        r = try #require(try routes(f, "client").first { $0["dst"] as? String == "192.0.2.0/26" })
        #expect(r["gateway"] as? String == "198.51.100.1" && ((r["metrics"] as? [[String: Any]])?.first?["mtu"] as? Int) == 1300)
        #expect(try routes(f, "client").filter { $0["dst"] as? String == "192.0.2.0/26" }.count == 1)
        ok(try set(f, "client", "route", "del", "192.0.2.0/26"))
        #expect(try routes(f, "client").allSatisfy { $0["dst"] as? String != "192.0.2.0/26" })
        // rule add/del.
        ok(try set(f, "client", "rule", "add", "fwmark 0x1 lookup isp2 pref 50"))
        let rule = try #require(try ipJSON("-4", "-n", "\(f.name)-client", "rule", "show").first { $0["priority"] as? Int == 50 })
        #expect(rule["fwmark"] as? String == "0x1" && rule["table"] as? String == "102")
        ok(try set(f, "client", "rule", "del", "fwmark 0x1 lookup isp2 pref 50"))
        #expect(try ipJSON("-4", "-n", "\(f.name)-client", "rule", "show").allSatisfy { $0["priority"] as? Int != 50 })
        // sysctl.
        ok(try set(f, "client", "sysctl", "net.ipv4.conf.all.rp_filter=2"))
        let rp = try run("/usr/bin/env", ["ip", "netns", "exec", "\(f.name)-client", "cat", "/proc/sys/net/ipv4/conf/all/rp_filter"])
        #expect(rp.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2")
        // unlisten/listen: the listeners that serve connects follow the lab's state (a kernel connect is refused).
        func connect() throws -> [String: Any]? {
            let c = try nl(["connect", f.name, "client", "192.0.2.80:80", "--kernel", "--json"])
            return try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as? [String: Any]
        }
        ok(try set(f, "server", "unlisten", "80"))
        var c = try connect()
        #expect((c?["kernel"] as? [String: Any])?["result"] as? String == "refused" && c?["agree"] as? Bool == true, "\(c?["differences"] ?? "")")
        ok(try set(f, "server", "listen", "80"))
        c = try connect()
        #expect((c?["kernel"] as? [String: Any])?["result"] as? String == "established" && c?["agree"] as? Bool == true, "\(c?["differences"] ?? "")")
        // Every change is in the journal, and the kernel is what the file plus them says, for iproute2 and status.
        #expect(try journal(f).changes?.count == 16)
        #expect(try drift(f) == [])
        let st = try nl(["status", f.name, "--json"])
        #expect(st.status == 0, "\(st.stdout)")
        let j = try JSONSerialization.jsonObject(with: Data(st.stdout.utf8)) as? [String: Any]
        #expect((j?["changes"] as? [String])?.count == 16 && (j?["drift"] as? [Any])?.isEmpty == true)
        // `--json` gives what was done.
        let js = try set(f, "client", "sysctl", "net.ipv4.conf.all.rp_filter=0", "--json")
        let o = try JSONSerialization.jsonObject(with: Data(js.stdout.utf8)) as? [String: Any]
        #expect(o?["change"] as? String == "client sysctl net.ipv4.conf.all.rp_filter=0" && (o?["operations"] as? [String])?.count == 1)
        let d = try nl(["down", f.name])
        #expect(d.status == 0 && f.namespaces().isEmpty && !FileManager.default.fileExists(atPath: f.journal))
    }

    /// Bad words: exit 2, the wrong word named at its column with a hint, nothing changed in the kernel or journal.
    @Test func badInputExits2AndChangesNothing() throws {
        let f = try upLab("bad")
        let before = try settledSnapshot(f)
        let cases: [([String], String)] = [
            (["client", "lnk", "eth0", "down"], "unknown change \"lnk\""),
            (["client", "link", "eth9", "down"], "node client has no interface \"eth9\""),
            (["client", "link", "eth0", "dwn"], "\"dwn\" is not `down` or `up`"),
            (["client", "route", "add", "default via 203.0.113.1 metrc 5"], "unknown word \"metrc\" in route"),
            (["client", "route", "add", "10.0.0.0/8 via 203.0.113.1"], "outside the lab's address ranges"),
            (["client", "rule", "add", "from 203.0.113.10 lookup isp9"], "unknown routing table \"isp9\""),
            (["client", "address", "add", "eth0", "198.51.100.20"], "is not an IPv4 address with a prefix length"),
            (["client", "sysctl", "kernel.hostname=x"], "is not a net.* key"),
            (["client", "carrier", "eth0", "of"], "\"of\" is not `off` or `on`"),
            (["server", "listen", "80"], "node server already listens on port 80"),
        ]
        for (words, message) in cases {
            let r = try nl(["set", f.name] + words)
            #expect(r.status == 2, "\(words): exit \(r.status)")
            #expect(r.stderr.contains(message) && r.stderr.contains("netlab set:1:") && r.stderr.contains("nothing was changed"), "\(words): \(r.stderr)")
        }
        // A node or lab that is not there is answered as every command answers it (docs/commands.md#naming-a-node).
        let node = try nl(["set", f.name, "clientt", "link", "eth0", "down"])
        #expect(node.status == 2 && node.stderr.contains("has no node clientt") && node.stderr.contains("did you mean client?"), "\(node.stderr)")
        let lab = try nl(["set", f.name + "x", "client", "link", "eth0", "down"])
        #expect(lab.status == 2 && lab.stderr.contains("is up"), "\(lab.stderr)")
        #expect(try nl(["set", "Bad/Lab", "client", "link", "eth0", "down"]).status == 2)
        let after = try snapshot(f)
        #expect(after == before, "\(zip(before.split(separator: "\n"), after.split(separator: "\n")).filter { $0 != $1 }.prefix(2))")
        #expect(try journal(f).changes == nil)
    }

    /// Changes the kernel refuses: exit 1 with its extack words, nothing changed in the kernel or the journal.
    @Test func kernelRefusalExits1AndChangesNothing() throws {
        let f = try upLab("refuse")
        let before = try settledSnapshot(f)
        let cases: [([String], String)] = [
            (["client", "route", "add", "default via 192.0.2.1 metric 7"], "Nexthop has invalid gateway"),
            (["client", "route", "add", "default via 198.51.100.1 dev eth0 metric 100"], "File exists"),
            (["client", "route", "del", "192.0.2.0/26"], "No such process"),
            (["client", "address", "del", "eth0", "198.51.100.99/25"], "Cannot assign requested address"),
            (["client", "address", "add", "eth0", "198.51.100.10/25"], "File exists"),
            (["client", "route", "add", "192.0.2.0/26 via 198.51.100.1 dev eth1"], "Nexthop has invalid gateway"),
            (["client", "rule", "del", "fwmark 0x7 lookup isp2"], "No such file or directory"),
            (["client", "sysctl", "net.ipv4.conf.eth9.rp_filter=1"], "No such file or directory"),
        ]
        for (words, message) in cases {
            let r = try nl(["set", f.name] + words)
            #expect(r.status == 1, "\(words): exit \(r.status) \(r.stderr)")
            #expect(r.stderr.contains("rejected by the kernel") && r.stderr.contains(message) && r.stderr.contains("nothing was changed"), "\(words): \(r.stderr)")
        }
        #expect(try snapshot(f) == before)
        #expect(try journal(f).changes == nil)
    }

    /// Recorded changes are journal input like the rest: a change naming something that is not a node, or words that
    /// are not printable, makes the journal unreadable (status and set say so, exit 1); down still removes the lab,
    /// finding its namespaces by netlab's mark.
    @Test func recordedChangesAreCheckedWhenRead() throws {
        let f = try upLab("jrnl")
        #expect(try set(f, "client", "link", "eth0", "down").status == 0)
        for bad: [String: Any] in [["node": "../etc", "words": ["link", "eth0", "up"], "time": "2026-12-01T00:00:00Z"],
                                   ["node": "client", "words": ["link\n", "eth0", "up"], "time": "2026-12-01T00:00:00Z"]] {
            var j = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: f.journal))) as? [String: Any])
            j["changes"] = [bad]
            try JSONSerialization.data(withJSONObject: j).write(to: URL(fileURLWithPath: f.journal))
            let st = try nl(["status", f.name])
            #expect(st.status == 1 && st.stderr.contains("unreadable"), "\(bad): \(st.stdout)\(st.stderr)")
            let s = try set(f, "client", "link", "eth0", "up")
            #expect(s.status != 0 && s.stderr.contains("unreadable"), "\(bad): \(s.stderr)")
        }
        let d = try nl(["down", f.name])
        #expect(d.status == 0 && f.namespaces().isEmpty, "\(d.stdout)\(d.stderr)")
    }

    /// Random sequences of changes (a seed per run, printed on failure): after each, iproute2 shows what the file
    /// plus the journal's changes say, whether the kernel took the change (exit 0, recorded) or refused it (exit 1,
    /// nothing recorded); `status` sees no drift; `down` leaves no namespace and no journal.
    @Test func randomSequencesMatchTheJournalAndDownLeavesNothing() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        var rng = SplitMix64(seed: seed)
        func pick<T>(_ xs: [T]) -> T { xs[Int(rng.next() % UInt64(xs.count))] }
        let f = try upLab("rand")
        var added: [String] = [], routes: [String] = [], rules: [String] = []
        for step in 0..<24 {
            var words: [String]
            switch rng.next() % 8 {
            case 0: words = ["client", "link", pick(["eth0", "eth1"]), pick(["down", "up"])] + (rng.next() % 3 == 0 ? ["--both"] : [])
            case 1: words = ["client", "carrier", pick(["eth0", "eth1"]), pick(["off", "on"])]
            case 2:
                if let a = added.last, rng.next() % 2 == 0 { words = ["client", "address", "del", "eth0", a] } else {
                    words = ["client", "address", "add", "eth0", "198.51.100.\(20 + rng.next() % 20)/25"]
                }
            case 3, 4:
                if let r = routes.last, rng.next() % 3 == 0 { words = ["client", "route", "del", r] } else {
                    let dst = "192.0.2.\(128 + 8 * (rng.next() % 8))/29"
                    let via = pick(["via 198.51.100.1 dev eth0", "via 203.0.113.1 dev eth1"])
                    words = ["client", "route", pick(["add", "replace"]), "\(dst) \(via) metric \(rng.next() % 3)" + (rng.next() % 2 == 0 ? " mtu 1300" : "")]
                }
            case 5, 6:
                if let r = rules.last, rng.next() % 3 == 0 { words = ["client", "rule", "del", r] } else {
                    let m = 1 + rng.next() % 6
                    words = ["client", "rule", "add", "fwmark 0x\(String(m, radix: 16)) lookup \(pick(["isp1", "isp2", "main"])) pref \(40 + m)"]
                }
            default: words = ["client", "sysctl", "net.ipv4.conf.all.rp_filter=\(rng.next() % 3)"]
            }
            let before = try journal(f).changes?.count ?? 0
            let r = try nl(["set", f.name] + words)
            let context = "seed \(seed) step \(step): \(words) exit \(r.status) \(r.stderr)"
            #expect(r.status == 0 || r.status == 1, "\(context)")
            #expect(try journal(f).changes?.count ?? 0 == before + (r.status == 0 ? 1 : 0), "\(context)")
            if r.status == 0 {
                switch (words[1], words[2]) {
                case ("address", "add"): added.append(words[4])
                case ("address", "del"): added.removeAll { $0 == words[4] }
                case ("route", "add"), ("route", "replace"): routes.append(words[3].components(separatedBy: " metric")[0])
                case ("route", "del"): routes.removeLast()
                case ("rule", "add"): rules.append(words[3])
                case ("rule", "del"): rules.removeLast()
                default: break
                }
            }
            let d = try drift(f)
            #expect(d.isEmpty, "\(context): \(d)")
            let st = try nl(["status", f.name])
            #expect(st.status == 0, "\(context): \(st.stdout)")
            if !d.isEmpty || st.status != 0 { break }
        }
        let down = try nl(["down", f.name])
        #expect(down.status == 0)
        #expect(f.namespaces().isEmpty, "seed \(seed): left \(f.namespaces())")
        #expect(LabFixture.files(ofLab: f.name).isEmpty, "seed \(seed): left \(LabFixture.files(ofLab: f.name))")
    }
}

/// The integration tests' own generator (independent of the product's).
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
