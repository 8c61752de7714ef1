import NetCore

/// One routing table as the trie holds it: for each prefix length, networks to their aliases in kernel order.
/// A lookup probes the lengths present from longest to shortest (hash per length): longest-prefix match without a
/// linear scan of the routes, with backtracking to shorter prefixes as `fib_table_lookup` does.
struct FibTable: Sendable {
    let id: UInt32
    var byLength: [[UInt32: [RouteInfo]]] = Array(repeating: [:], count: 33)
    var lengths: [Int] = []          // present prefix lengths, longest first
    var defaults = 0                 // `tb_num_default`

    init(id: UInt32) { self.id = id }

    mutating func insert(_ r: RouteInfo) {
        let len = r.destination.length
        byLength[len][r.destination.network.value, default: []].append(r)
        if !lengths.contains(len) { lengths.append(len); lengths.sort(by: >) }
        if len == 0 { defaults += 1 }
    }

    /// The aliases of one prefix (for `fib_select_default`).
    func aliases(_ p: IPv4Prefix) -> [RouteInfo] { byLength[p.length][p.network.value] ?? [] }

    /// Candidate (prefix length, aliases) pairs for `daddr`, longest first.
    func matches(_ daddr: IPv4Address) -> [(Int, [RouteInfo])] {
        var out: [(Int, [RouteInfo])] = []
        for len in lengths {
            let mask: UInt32 = len == 0 ? 0 : UInt32.max << UInt32(32 - len)
            if let a = byLength[len][daddr.value & mask] { out.append((len, a)) }
        }
        return out
    }
}
