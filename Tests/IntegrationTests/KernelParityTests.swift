import Foundation
import Testing

/// Namespaces built with iproute2 (not with netlab), named `prt-<random>-<name>` and deleted by name at the end.
final class IprouteNamespaces {
    let prefix = "prt-\(Int.random(in: 1000...9999))"
    private(set) var names: [String] = []

    func add(_ name: String) throws -> String {
        let ns = "\(prefix)-\(name)"
        try ip("netns", "add", ns)
        names.append(ns)
        try ip("-n", ns, "link", "set", "lo", "up")
        return ns
    }

    /// `ip ARGS`, which must succeed.
    func ip(_ args: String...) throws { try ipArgs(args) }
    func ipArgs(_ args: [String]) throws {
        let r = try run("/usr/bin/env", ["ip"] + args)
        try #require(r.status == 0, "ip \(args.joined(separator: " ")): \(r.stderr)")
    }
    /// `ip -n NS WORDS...` for each line of `script` (blank lines skipped).
    func script(_ ns: String, _ script: String) throws {
        for line in script.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            try ipArgs(["-n", ns] + line.split(separator: " ").map(String.init))
        }
    }
    func sysctl(_ ns: String, _ kv: String) throws {
        let r = try run("/usr/bin/env", ["ip", "netns", "exec", ns, "sysctl", "-qw", kv])
        try #require(r.status == 0, "sysctl \(kv): \(r.stderr)")
    }
    /// A veth pair between two namespaces.
    func link(_ a: String, _ ia: String, _ b: String, _ ib: String) throws {
        try ip("-n", a, "link", "add", ia, "type", "veth", "peer", "name", ib, "netns", b)
        try ip("-n", a, "link", "set", ia, "up")
        try ip("-n", b, "link", "set", ib, "up")
    }

    deinit { for ns in names { _ = try? run("/usr/bin/env", ["ip", "netns", "del", ns]) } }
}

/// `netlab route --netns NS DEST ... --json`: the report, which must say the resolver and the kernel agree.
func routeAgrees(_ ns: String, _ args: [String]) throws -> [String: Any] {
    let r = try run(try netlabBinary(), ["route", "--netns", ns] + args + ["--json", "--trace"])
    let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)\(r.stderr)")
    #expect(json["agree"] as? Bool == true, "route --netns \(ns) \(args.joined(separator: " ")): \(r.stdout)")
    return json
}

/// State real hosts have, built with iproute2, against RTM_GETROUTE and kernel connects (issue 16).
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct KernelParity {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    /// h: eth0 198.51.100.1/24 (+ 203.0.113.1/24 with an explicit broadcast), eth1 198.51.100.129/25, eth2 a
    /// point-to-point /32 with a peer, eth3 a /31; r answers on all of them.
    func build(_ f: IprouteNamespaces, seed: Bool = true) throws -> String {
        let h = try f.add("h"), r = try f.add("r")
        for i in 0..<4 { try f.link(h, "eth\(i)", r, "eth\(i)") }
        try f.script(h, """
            addr add 198.51.100.1/24 dev eth0
            addr add 203.0.113.1/24 broadcast 203.0.113.77 dev eth0
            addr add 198.51.100.129/25 dev eth1
            addr add 192.0.2.1/32 peer 192.0.2.2/32 dev eth2
            addr add 192.0.2.10/31 dev eth3
            route add default via 198.51.100.2
            route add 192.0.2.16/28 via 198.51.100.1 dev eth0
            route add 192.0.2.32/28 via 203.0.113.1
            route add 192.0.2.48/28 via 198.51.100.129 dev eth0
            route add 192.0.2.64/28 via 192.0.2.2
            route add 192.0.2.80/28 via 192.0.2.11
            nexthop add id 10 via 198.51.100.2 dev eth0
            nexthop add id 11 via 198.51.100.130 dev eth1
            nexthop add id 4 via 198.51.100.1 dev eth0
            nexthop add id 12 group 10,1/11,3
            nexthop add id 14 group 10/4
            nexthop add id 13 blackhole
            nexthop add id 21 group 10,1/11,3 type resilient buckets 8
            route add 192.0.2.128/27 nhid 12
            route add 192.0.2.160/28 nhid 4
            route add 192.0.2.176/28 nhid 13
            route add 192.0.2.192/27 nhid 14
            route add 192.0.2.240/28 nhid 21
            """)
        try f.script(r, """
            addr add 198.51.100.2/24 dev eth0
            addr add 198.51.100.130/25 dev eth1
            addr add 192.0.2.2/32 peer 192.0.2.1/32 dev eth2
            addr add 192.0.2.11/31 dev eth3
            """)
        if seed { try f.sysctl(h, "net.ipv4.fib_multipath_hash_seed=12345") }
        return h
    }

    /// connect() and RTM_GETROUTE to the destinations the kernel treats specially, with and without a source.
    @Test func specialDestinationsAgreeWithKernelConnectAndGetroute() throws {
        let f = IprouteNamespaces()
        let h = try build(f)
        let special = ["198.51.100.255", "198.51.100.127", "203.0.113.77", "203.0.113.255", "255.255.255.255", "198.51.100.0",
                       "203.0.113.0", "0.0.0.0", "224.0.0.5", "239.1.2.3", "198.51.100.1", "198.51.100.129", "192.0.2.1",
                       "127.0.0.1", "127.3.4.5", "192.0.2.2", "192.0.2.10", "192.0.2.11", "192.0.2.3"]
        var refused = 0
        for d in special {
            for extra in [[], ["--from", "198.51.100.129"], ["--dev", "eth0"]] {
                let c = try routeAgrees(h, [d, "--connect"] + extra)
                if (c["kernel"] as? [String: Any])?["error"] as? String == "ENETUNREACH" { refused += 1 }
                _ = try routeAgrees(h, [d] + extra)
            }
        }
        #expect(refused >= 18, "broadcast and multicast destinations are refused by connect (ENETUNREACH): \(refused)")
    }

    /// Gateways that are the node's own address: host scope, on-link (no `via` in the kernel's answer).
    @Test func ownAddressGatewaysAreOnLink() throws {
        let f = IprouteNamespaces()
        let h = try build(f)
        for d in ["192.0.2.17", "192.0.2.33", "192.0.2.161"] {
            for connect in [false, true] {
                let j = try routeAgrees(h, [d] + (connect ? ["--connect"] : []))
                let k = try #require(j["kernel"] as? [String: Any])
                #expect(k["via"] == nil, "\(d): the kernel sends on-link: \(k)")
            }
        }
        // An own address of another device, in this device's subnet, stays a gateway (scope link).
        let j = try routeAgrees(h, ["192.0.2.49"])
        #expect((j["kernel"] as? [String: Any])?["via"] as? String == "198.51.100.129")
    }

    /// Group members by the hash (seed set), whatever the source; a blackhole object; peer and /31 addressing.
    @Test func nexthopObjectsAgreeWithTheKernel() throws {
        let f = IprouteNamespaces()
        let h = try build(f)
        var devices = Set<String>()
        for k in 0..<24 {
            let d = "192.0.2.\(129 + k)"
            for from in ["198.51.100.1", "198.51.100.129", "192.0.2.1"] {
                let j = try routeAgrees(h, [d, "--from", from, "--ipproto", "tcp", "--sport", String(40000 + k), "--dport", "443"])
                if let dev = (j["kernel"] as? [String: Any])?["dev"] as? String { devices.insert(dev) }
                #expect((j["candidates"] as? [Any] ?? []).isEmpty, "a seed makes the member known: \(j)")
            }
            _ = try routeAgrees(h, [d, "--connect"])
            _ = try routeAgrees(h, ["192.0.2.\(193 + k)", "--from", "198.51.100.1"])
        }
        #expect(devices == ["eth0", "eth1"], "both members are used")
        // The resilient group: the bucket the hash names (nexthop_select_path_res), exactly.
        for k in 0..<16 {
            let j = try routeAgrees(h, ["192.0.2.\(240 + k)", "--from", "198.51.100.129"])
            #expect((j["candidates"] as? [Any] ?? []).isEmpty, "the buckets make the member known: \(j)")
            _ = try routeAgrees(h, ["192.0.2.\(240 + k)", "--connect"])
        }
        _ = try routeAgrees(h, ["192.0.2.177"])
        _ = try routeAgrees(h, ["192.0.2.177", "--connect"])
        for d in ["192.0.2.65", "192.0.2.81", "192.0.2.2", "192.0.2.11"] {
            _ = try routeAgrees(h, [d])
            _ = try routeAgrees(h, [d, "--connect"])
        }
    }

    /// A carrier lost under a group: the kernel removes the member (it is not marked dead), the hash spreads over
    /// the rest; without a seed every member is a candidate.
    @Test func groupAfterCarrierLossAndWithoutSeed() throws {
        let f = IprouteNamespaces()
        let h = try build(f, seed: false)
        let r = f.names[1]
        try f.ip("-n", r, "link", "set", "eth1", "down")
        // linkwatch delivers the carrier change up to a second later; the kernel then flushes nexthop 11.
        var gone = false
        for _ in 0..<40 where !gone {
            gone = try run("/usr/bin/env", ["ip", "-n", h, "nexthop", "show", "id", "11"]).status != 0
            if !gone { usleep(100_000) }
        }
        try #require(gone, "nexthop 11 (eth1) is removed when eth1 loses its carrier")
        for k in 0..<8 {
            let j = try routeAgrees(h, ["192.0.2.\(140 + k)", "--from", "198.51.100.129"])
            #expect((j["kernel"] as? [String: Any])?["dev"] as? String == "eth0")
        }
        // Without a seed the hash is unseen: both members again once nexthop 11 is back, each a candidate.
        try f.ip("-n", r, "link", "set", "eth1", "up")
        var carrier = false
        for _ in 0..<40 where !carrier {
            carrier = try run("/usr/bin/env", ["ip", "-n", h, "link", "show", "eth1"]).stdout.contains("LOWER_UP")
            if !carrier { usleep(100_000) }
        }
        try f.ip("-n", h, "nexthop", "add", "id", "11", "via", "198.51.100.130", "dev", "eth1")
        try f.ip("-n", h, "nexthop", "replace", "id", "12", "group", "10/11")
        let j = try routeAgrees(h, ["192.0.2.140", "--from", "198.51.100.129"])
        #expect((j["candidates"] as? [Any])?.count == 2, "\(j)")
    }

    /// A nexthop object caches its source at its own scope − 1: with a host-scope gateway (an own address) a
    /// link-scope address is eligible; once any address changes, the source is chosen at the route's scope.
    @Test func nexthopObjectSourceFollowsItsScopeUntilAnAddressChanges() throws {
        let f = IprouteNamespaces()
        let h = try build(f)
        try f.script(h, """
            addr add 192.0.2.97/28 scope link dev eth3
            addr add 192.0.2.120/32 dev eth3
            nexthop add id 31 via 192.0.2.97 dev eth3
            route add 203.0.113.128/26 nhid 31
            """)
        let before = try routeAgrees(h, ["203.0.113.130"])
        #expect((before["kernel"] as? [String: Any])?["source"] as? String == "192.0.2.97", "\(before)")
        _ = try routeAgrees(h, ["203.0.113.130", "--connect"])
        try f.ip("-n", h, "addr", "add", "198.51.100.99/24", "dev", "eth0")
        let after = try routeAgrees(h, ["203.0.113.130"])
        #expect((after["kernel"] as? [String: Any])?["source"] as? String != "192.0.2.97", "\(after)")
    }

    /// promote_secondaries: the primary deleted live, the secondary becomes primary and takes over the source choice.
    @Test func promotedSecondaryIsTheNewSource() throws {
        let f = IprouteNamespaces()
        let h = try build(f)
        try f.sysctl(h, "net.ipv4.conf.eth1.promote_secondaries=1")
        try f.script(h, """
            addr add 198.51.100.131/25 dev eth1
            addr add 198.51.100.132/25 dev eth1
            addr del 198.51.100.129/25 dev eth1
            """)
        for d in ["198.51.100.130", "198.51.100.200", "192.0.2.140", "198.51.100.255"] {
            let j = try routeAgrees(h, [d, "--dev", "eth1"])
            _ = try routeAgrees(h, [d, "--connect", "--dev", "eth1"])
            if d == "198.51.100.130" { #expect((j["kernel"] as? [String: Any])?["source"] as? String == "198.51.100.131") }
        }
    }
}
