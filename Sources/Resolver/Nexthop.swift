import Engine
import NetCore
import SystemPackage

// MARK: net/ipv4/nexthop.c — nexthop object groups

extension CompiledFib {
    /// `nexthop_is_good_nh()` (net/ipv4/nexthop.c): a member is good unless its gateway has a neighbour entry on its
    /// device in a state outside NUD_VALID (incomplete, failed). No sysctl changes this for nexthop objects.
    func nexthopIsGood(_ nh: FibNexthop) -> Bool {
        let g = nh.gateway != .any ? nh.gateway : nh.hostScopeGateway
        return neighbourState[UInt64(g.value) << 32 | UInt64(UInt32(bitPattern: nh.index))] ?? true
    }

    /// Mirrors `fib_select_multipath()` → `nexthop_path_fib_result()` → `nexthop_select_path()` for a route using a
    /// nexthop object group: the flow hash (`fib_multipath_hash`, the same as the legacy path's) against each member's
    /// hash-threshold upper bound (`nexthop_select_path_hthr`), skipping members that are not good and falling back to
    /// the first good one — never the legacy preference for the leg whose source is the flow's. Resilient groups pick
    /// bucket `hash % buckets` (`nexthop_select_path_res`, no liveness check), as the snapshot read the buckets.
    /// Answers positions in `fib.nexthops`.
    /// `inputPolicy1`: an input lookup, whose L4 hash (policy 1) reads the packet and stays unseen.
    func nexthopSelectPath(_ r: FibAlias, _ k: Key, inputPolicy1: Bool = false, trace: inout Tracer) -> [Int] {
        let members = r.nexthops.map(Int.init)
        let good = members.filter { nexthopIsGood(fib.nexthops[$0]) }
        if r.group == 1, let h = multipathHash, h.policy == 0 || (!k.anySport && !inputPolicy1) {
            let hash = fibMultipathHash(k, seed: h.seed, policy: h.policy)
            var chosen = good.first ?? members[0]
            for n in good where Int64(hash) <= fib.nexthops[n].upperBound { chosen = n; break }
            trace.add("nexthop_select_path_hthr: fib_multipath_hash (policy \(h.policy), seed \(h.seed)) = \(hash): member \(chosen - members[0] + 1) of \(members.count) (upper bound \(fib.nexthops[chosen].upperBound))\(good.count < members.count ? "; \(members.count - good.count) not good (neighbour failed)" : "")")
            return [chosen]
        }
        if r.group == 2, let h = multipathHash, h.policy == 0 || (!k.anySport && !inputPolicy1), let b = resilientBuckets[Int(r.route)] {
            let hash = fibMultipathHash(k, seed: h.seed, policy: h.policy)
            let leg = members[b[Int(hash) % b.count]]
            trace.add("nexthop_select_path_res: fib_multipath_hash (policy \(h.policy), seed \(h.seed)) = \(hash): bucket \(Int(hash) % b.count) of \(b.count) → member \(leg - members[0] + 1)")
            return [leg]
        }
        if r.group == 2 {
            trace.add("nexthop_select_path_res: the hash (unseen) picks a bucket; any member may hold it")
            return members
        }
        trace.add("nexthop_select_path: group; the hash (seed unseen) picks one of \(good.count) good members")
        return good.isEmpty ? [members[0]] : good
    }
}

extension FibTables {
    /// Mirrors `nh_hthr_group_rebalance()` (net/ipv4/nexthop.c): every member counts (a member whose device went
    /// down or lost its carrier is removed from the group by the kernel, not marked).
    static func rebalanceGroup(_ legs: inout ArraySlice<FibNexthop>) {
        let total = legs.reduce(Int64(0)) { $0 + Int64($1.weight) }
        var w: Int64 = 0
        for i in legs.indices {
            w += Int64(legs[i].weight)
            legs[i].upperBound = total == 0 ? -1 : ((w << 31) + total / 2) / total - 1
        }
    }
}
