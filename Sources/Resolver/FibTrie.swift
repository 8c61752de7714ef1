import Engine
import NetCore
import SystemPackage

/// One route as a lookup reads it (`struct fib_alias` + `struct fib_info`): plain data, no strings or arrays, so a
/// lookup copies and compares it without reference counting. `route` points back at the `RouteInfo` for traces.
struct FibAlias: Sendable {
    var route: Int32
    var type: RouteType
    var scope: UInt8
    var tos: UInt8
    /// `fib_prefsrc`; `.any` when the route has none.
    var prefsrc: IPv4Address
    var nexthops: Range<Int32>
    /// Every nexthop dead (`fi->fib_flags & RTNH_F_DEAD`).
    var allDead: Bool
    var mtu: UInt32?
    var advmss: UInt32?
    var hoplimit: UInt32?
    /// The route uses a nexthop object group (`nhid`): 1 hash-threshold, 2 resilient; 0 otherwise (its own legs).
    var group: UInt8 = 0
}

/// One nexthop (`struct fib_nh_common`) with what the kernel caches on it.
struct FibNexthop: Sendable {
    /// `.any` when the nexthop has no gateway.
    var gateway: IPv4Address
    /// The gateway of a nexthop whose scope is host (`fib_check_nh_v4_gw` found it local): `gateway` is then `.any`,
    /// as `rt_set_nexthop` uses a gateway only at link scope; kept for the source choice and traces.
    var hostScopeGateway: IPv4Address = .any
    var index: Int32
    /// Position of the device in the snapshot's links, -1 when the dump named an unknown device.
    var link: Int32
    /// RTNH_F_DEAD as the lookup honours it (see `FibResolver.isDead`).
    var dead: Bool
    /// RTNH_F_LINKDOWN on a device with ignore_routes_with_linkdown: skipped by `fib_table_lookup`.
    var linkdownIgnored: Bool
    /// RTNH_F_LINKDOWN as dumped (whether the hash counts the leg depends on when the carrier changed).
    var linkdown: Bool
    /// `fib_nh_weight`.
    var weight: Int
    /// `fib_nh_upper_bound` as `fib_rebalance()` sets it: the leg's share of [0, 2^31) by cumulative weight over the
    /// live legs of its route; −1 for a dead or ignored-linkdown leg (and for a route's only nexthop).
    var upperBound: Int64
    /// `nhc_saddr`: `inet_select_addr(dev, gw, fib_scope)`, which the kernel caches per nexthop
    /// (`fib_info_update_nhc_saddr`); the source of a lookup without a bound source or prefsrc.
    var saddr: IPv4Address
    /// A nexthop object's source once an address changed after it was made (recomputed at the route's scope), when
    /// it differs from `saddr`; `.any` otherwise.
    var saddrAfterAddressChange: IPv4Address = .any
}

/// Every table of a namespace, as the kernel's tries answer them: for each table the prefix lengths present, and one
/// open-addressing hash of (table, prefix length, network) to that prefix's aliases in kernel order. A lookup probes
/// the lengths present from longest to shortest — longest-prefix match without a scan of the routes, with
/// backtracking to shorter prefixes as `fib_table_lookup` does — and touches nothing reference-counted.

struct FibTables: Sendable {
    struct Table: Sendable {
        var id: UInt32
        /// Present prefix lengths, longest first: a range of `lengths`.
        var lengthRange: Range<Int>
        /// `tb_num_default`.
        var defaults: Int
    }

    private(set) var tables: [Table] = []
    private var slotByID: [UInt32: Int] = [:]
    private(set) var lengths: [UInt8] = []
    private(set) var aliases: [FibAlias] = []
    private(set) var nexthops: [FibNexthop] = []
    /// Open addressing: `keys[i]` is `key(slot, len, network)` or 0 when empty; `groups[i]` the aliases' range.
    private var keys: [UInt64] = []
    private var groups: [Range<Int32>] = []
    private var mask = 0

    init() {}

    /// `routes` in dump order (aliases keep it within a prefix); `nexthop` makes a nexthop's cached fields.
    /// `nexthopGroups[n]`: route n uses a nexthop object group (1 hash-threshold, 2 resilient).
    init(routes: [RouteInfo], nexthopGroups: [Int: UInt8] = [:], nexthop: (RouteInfo, NexthopInfo) -> FibNexthop) {
        var order: [UInt64] = []
        var members: [UInt64: [Int]] = [:]
        var lengthSets: [Int: Set<Int>] = [:]
        for (n, r) in routes.enumerated() {
            let slot = slotByID[r.table] ?? {
                tables.append(Table(id: r.table, lengthRange: 0..<0, defaults: 0))
                slotByID[r.table] = tables.count - 1
                return tables.count - 1
            }()
            let k = Self.key(slot, r.destination.length, r.destination.network.value)
            if members[k] == nil { order.append(k) }
            members[k, default: []].append(n)
            lengthSets[slot, default: []].insert(r.destination.length)
            if r.destination.length == 0 { tables[slot].defaults += 1 }
        }
        for slot in tables.indices {
            let start = lengths.count
            lengths += (lengthSets[slot] ?? []).sorted(by: >).map(UInt8.init)
            tables[slot].lengthRange = start..<lengths.count
        }
        var capacity = 16
        while capacity < order.count * 2 { capacity *= 2 }
        keys = Array(repeating: 0, count: capacity)
        groups = Array(repeating: 0..<0, count: capacity)
        mask = capacity - 1
        for k in order {
            let start = Int32(aliases.count)
            for n in members[k]! {
                let r = routes[n]
                let nhStart = Int32(nexthops.count)
                nexthops += r.nexthops.map { nexthop(r, $0) }
                let range = nhStart..<Int32(nexthops.count)
                let group: UInt8 = nexthopGroups[n] ?? 0
                if group != 0 { Self.rebalanceGroup(&nexthops[Int(nhStart)...]) }
                else if range.count > 1 { Self.rebalance(&nexthops[Int(nhStart)...]) }
                aliases.append(FibAlias(route: Int32(n), type: r.type, scope: r.scope, tos: r.tos, prefsrc: r.prefsrc ?? .any,
                                        nexthops: range, allDead: !range.isEmpty && nexthops[Int(nhStart)...].allSatisfy(\.dead),
                                        mtu: r.mtu, advmss: r.advmss, hoplimit: r.hoplimit, group: group))
            }
            var i = Self.hash(k) & mask
            while keys[i] != 0 { i = (i + 1) & mask }
            keys[i] = k
            groups[i] = start..<Int32(aliases.count)
        }
    }

    func slot(of table: UInt32) -> Int? { slotByID[table] }

    /// The aliases of one prefix of one table, in kernel order (empty when the table has no such prefix).
    @inline(__always) func aliases(slot: Int, length: Int, network: UInt32) -> Range<Int32> {
        let k = Self.key(slot, length, network)
        var i = Self.hash(k) & mask
        while true {
            let probe = keys[i]
            if probe == k { return groups[i] }
            if probe == 0 { return 0..<0 }
            i = (i + 1) & mask
        }
    }

    /// Never 0 (the empty marker): the slot is stored plus one.
    @inline(__always) static func key(_ slot: Int, _ length: Int, _ network: UInt32) -> UInt64 {
        UInt64(slot + 1) << 40 | UInt64(length) << 32 | UInt64(network)
    }

    @inline(__always) static func hash(_ k: UInt64) -> Int { Int(truncatingIfNeeded: (k &* 0x9E37_79B9_7F4A_7C15) >> 32) }
}

// MARK: fib_table_lookup

extension CompiledFib {
    /// One table (the rules' path): no merging. Mirrors `fib_table_lookup()` (net/ipv4/fib_trie.c).
    func tableLookup(_ slot: Int, _ k: Key, trace: inout Tracer) -> Result<FibResult, Errno> {
        let t = fib.tables[slot]
        for n in t.lengthRange {
            let len = Int(fib.lengths[n])
            let mask: UInt32 = len == 0 ? 0 : UInt32.max << UInt32(32 - len)
            let aliases = fib.aliases(slot: slot, length: len, network: k.daddr.value & mask)
            if aliases.isEmpty { continue }
            if let r = pick(aliases, table: t.id, len: len, k, trace: &trace) { return r }
        }
        return .failure(Errno(rawValue: eagain))
    }

    /// The first usable alias of one prefix, or nil to backtrack: `fib_table_lookup`'s inner loop.
    func pick(_ aliases: Range<Int32>, table: UInt32, len: Int, _ k: Key, trace: inout Tracer) -> Result<FibResult, Errno>? {
        for a in aliases {
            let r = fib.aliases[Int(a)]
            if r.tos != 0, r.tos & 0xfc != k.tos { continue }
            if r.scope < k.scope { continue }
            switch r.type {
            case .unreachable: trace.add("table \(table): \(describe(r)) is unreachable → EHOSTUNREACH"); return .failure(.noRouteToHost)
            case .prohibit: trace.add("table \(table): \(describe(r)) is prohibit → EACCES"); return .failure(.permissionDenied)
            case .blackhole: trace.add("table \(table): \(describe(r)) is blackhole → EINVAL"); return .failure(.invalidArgument)
            case .throw: trace.add("table \(table): throw \(describe(r))"); return .failure(Errno(rawValue: eagain))
            default: break
            }
            if r.allDead { continue }
            for n in r.nexthops {
                let nh = fib.nexthops[Int(n)]
                if nh.dead || nh.linkdownIgnored { continue }
                if k.oif != 0, nh.index != k.oif { continue }
                trace.add("table \(table): \(describe(r))\(snapshot.routes[Int(r.route)].metric != 0 ? " metric \(snapshot.routes[Int(r.route)].metric)" : "") (longest match /\(len))")
                return .success(FibResult(alias: Int(a), nexthop: Int(n), table: table, prefixLength: len, rule: nil))
            }
        }
        return nil
    }

    func describe(_ a: FibAlias) -> String { snapshot.routes[Int(a.route)].destination.routeDescription }

    /// `fib_table_lookup()` over local and main merged (no custom rules: the local table lives inside main).
    func mergedLookup(_ k: Key, trace: inout Tracer) -> Result<FibResult, Errno> {
        for len in mergedLengths {
            let mask: UInt32 = len == 0 ? 0 : UInt32.max << UInt32(32 - len)
            for slot in mergedSlots {
                let aliases = fib.aliases(slot: slot, length: len, network: k.daddr.value & mask)
                if aliases.isEmpty { continue }
                if let r = pick(aliases, table: fib.tables[slot].id, len: len, k, trace: &trace) { return r }
            }
        }
        return .failure(Errno(rawValue: eagain))
    }
}
