import Engine
import NetCore
import SystemPackage

// MARK: net/ipv4/fib_semantics.c — nexthop liveness, fib_select_path, multipath legs and their weights

extension CompiledFib {
    /// Really dead (RTNH_F_DEAD in the kernel). The dump also shows DEAD on a linkdown nexthop of a device that is up
    /// when ignore_routes_with_linkdown is on (`fib_nexthop_info`); that one is only linkdown.
    func isDead(_ nh: NexthopInfo) -> Bool {
        guard nh.dead else { return false }
        if nh.linkdown, ignoreLinkdown(nh.index), linkByIndex[nh.index]?.isUp == true { return false }
        return true
    }

    func ignoreLinkdown(_ index: Int32) -> Bool { deviceSettings[index]?.ignoreRoutesWithLinkdown ?? false }

    /// Mirrors `fib_select_path` → `fib_multipath_hash` + `fib_select_multipath()`. When the hash is knowable
    /// (`multipathHash`), exactly the kernel's leg; otherwise the legs the kernel may pick: the live ones, and with a
    /// source set those whose own source (`nh_saddr`) is it, as the selection prefers them (6.16+). Answers positions
    /// in `fib.nexthops`.
    func selectMultipath(_ r: FibAlias, _ k: Key, saddr: IPv4Address, trace: inout Tracer) -> [Int] {
        if r.group != 0 { return nexthopSelectPath(r, k, trace: &trace) }
        if let h = multipathHash, !r.nexthops.contains(where: { fib.nexthops[Int($0)].linkdown }), h.policy == 0 || !k.anySport {
            let hash = fibMultipathHash(k, seed: h.seed, policy: h.policy)
            if let leg = fibSelectMultipath(r, hash: hash, saddr: saddr) {
                trace.add("fib_multipath_hash (policy \(h.policy), seed \(h.seed)) = \(hash): leg \(leg - Int(r.nexthops.lowerBound) + 1) of \(r.nexthops.count) (upper bound \(fib.nexthops[leg].upperBound))")
                return [leg]
            }
        }
        // Dead legs are out. A linkdown leg is out of the hash only if ignore_routes_with_linkdown was on when its
        // carrier changed (fib_rebalance runs on that event, not on the sysctl): unseen, so it stays a candidate.
        let live = r.nexthops.map(Int.init).filter { !fib.nexthops[$0].dead }
        if trace.enabled, r.nexthops.contains(where: { fib.nexthops[Int($0)].linkdownIgnored }) {
            trace.add("fib_select_multipath: linkdown legs kept as candidates (their hash weight was fixed when the carrier changed)")
        }
        if saddr != .any {
            let mine = live.filter { fib.nexthops[$0].saddr == saddr }
            if !mine.isEmpty {
                trace.add("fib_select_multipath: \(mine.count) of \(live.count) legs have nh_saddr \(saddr)\(mine.count == 1 ? ": determined" : ": hash decides")")
                return mine
            }
        }
        trace.add("fib_select_multipath: \(live.count) live legs; the multipath hash (seed unseen) picks one")
        return live
    }

    /// `fib_select_multipath()` as the running kernel has it (6.18: a score per leg, 2 for nh_saddr == saddr, 1 for
    /// hash <= upper bound; the best, first on ties; measured against RTM_GETROUTE with a source no leg has).
    func fibSelectMultipath(_ r: FibAlias, hash: Int32, saddr: IPv4Address) -> Int? {
        var best: Int?
        var score = -1
        for n in r.nexthops {
            let bound = fib.nexthops[Int(n)].upperBound
            if bound == -1 { continue }
            var s = 0
            if saddr != .any, fib.nexthops[Int(n)].saddr == saddr { s += 2 }
            if Int64(hash) <= bound { s += 1 }
            if score < s {
                best = Int(n)
                if s == 3 || (saddr == .any && s == 1) { return best }
                score = s
            }
        }
        return best
    }
}

extension FibTables {
    /// Mirrors `fib_rebalance()` (net/ipv4/fib_semantics.c) over one route's legs.
    static func rebalance(_ legs: inout ArraySlice<FibNexthop>) {
        let total = legs.filter { !$0.dead && !$0.linkdownIgnored }.reduce(Int64(0)) { $0 + Int64($1.weight) }
        var w: Int64 = 0
        for i in legs.indices {
            if legs[i].dead || legs[i].linkdownIgnored || total == 0 { legs[i].upperBound = -1; continue }
            w += Int64(legs[i].weight)
            legs[i].upperBound = ((w << 31) + total / 2) / total - 1     // DIV_ROUND_CLOSEST_ULL(w << 31, total) - 1
        }
    }
}
