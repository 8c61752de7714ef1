import Engine
import NetCore
import SystemPackage

/// Why a lookup ended as it did, step by step.
public struct RouteDecision: Sendable {
    public var result: Result<ResolvedRoute, Errno>
    /// Every answer the kernel may give (equal-cost legs it picks by a hash we cannot see); one when determined.
    public var candidates: [ResolvedRoute]
    public var rule: RuleInfo?
    public var route: RouteInfo?
    public var trace: [String]
}

/// Linux's IPv4 output route lookup over a `RoutingSnapshot`: `ip_route_output_key_hash_rcu`, `fib_lookup` with
/// policy rules, `fib_table_lookup`, `fib_select_path`, `inet_select_addr`. Implements the engine's `RouteResolver`.
public struct FibResolver: RouteResolver, Sendable {
    public let snapshot: RoutingSnapshot
    let tables: [UInt32: FibTable]
    let linkByIndex: [Int32: LinkInfo]
    let linkByName: [String: LinkInfo]
    let addressesByIndex: [Int32: [AddressInfo]]
    let localAddresses: Set<IPv4Address>
    let rules: [RuleInfo]
    /// The rules as plain data (no strings), so walking them costs no reference counting.
    let compiled: [CompiledRule]
    /// Devices with route_localnet / ignore_routes_with_linkdown on (all or the device's own), computed once.
    let localnetDevices: Set<Int32>
    let ignoreLinkdownDevices: Set<Int32>
    let customRules: Bool
    let loopbackIndex: Int32

    public init(snapshot: RoutingSnapshot) {
        self.snapshot = snapshot
        var t: [UInt32: FibTable] = [:]
        for r in snapshot.routes {
            var table = t[r.table] ?? FibTable(id: r.table)
            table.insert(r)
            t[r.table] = table
        }
        tables = t
        linkByIndex = Dictionary(snapshot.links.map { ($0.index, $0) }, uniquingKeysWith: { a, _ in a })
        linkByName = Dictionary(snapshot.links.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        addressesByIndex = Dictionary(grouping: snapshot.addresses, by: \.index)
        localAddresses = Set(snapshot.addresses.map(\.prefix.address))
        rules = snapshot.rules.sorted { ($0.priority ?? 0) < ($1.priority ?? 0) }
        let byName = linkByName
        let rs = rules
        compiled = rules.indices.map { n in
            let r = rs[n]
            return CompiledRule(priority: r.priority ?? 0, invert: r.invert, hasIif: r.iif != nil,
                                iif: r.iif.map { byName[$0]?.index ?? -1 } ?? 0, hasOif: r.oif != nil,
                                oif: r.oif.map { byName[$0]?.index ?? -1 } ?? 0,
                                mark: r.fwmark ?? 0, markMask: r.fwmark != nil ? (r.fwmask ?? UInt32.max) : (r.fwmask ?? 0),
                                uidLow: r.uidrange?.lowerBound ?? 0, uidHigh: r.uidrange?.upperBound ?? UInt32.max,
                                src: r.from?.network.value ?? 0, srcMask: r.from?.mask ?? 0,
                                dst: r.to?.network.value ?? 0, dstMask: r.to?.mask ?? 0,
                                dscp: r.dscp.map(Int16.init) ?? -1, tos: r.tos & 0xfc, proto: r.ipproto ?? 0,
                                sportLow: r.sport?.lowerBound ?? 0, sportHigh: r.sport?.upperBound ?? UInt16.max,
                                dportLow: r.dport?.lowerBound ?? 0, dportHigh: r.dport?.upperBound ?? UInt16.max,
                                action: r.action, table: r.table,
                                gotoIndex: r.goto.flatMap { g in rs.firstIndex { $0.priority == g } } ?? -1,
                                suppressPrefix: Int(r.suppressPrefixLength ?? -1), suppressIfgroup: Int64(r.suppressIfgroup ?? -1))
        }
        let defaults: [(UInt32, UInt32)] = [(0, 255), (32766, 254), (32767, 253)]
        customRules = !(rules.count == 3 && zip(rules, defaults).allSatisfy { r, d in
            r.priority == d.0 && r.table == d.1 && r.action == 1 && r.from == nil && r.to == nil && r.iif == nil && r.oif == nil &&
                r.fwmark == nil && !r.invert && r.tos == 0 && r.dscp == nil && r.ipproto == nil && r.sport == nil && r.dport == nil &&
                r.uidrange == nil && r.suppressPrefixLength == nil
        })
        let sys = snapshot.sysctls
        localnetDevices = Set(snapshot.links.filter {
            sys["net.ipv4.conf.all.route_localnet"] == "1" || sys["net.ipv4.conf.\($0.name).route_localnet"] == "1"
        }.map(\.index))
        ignoreLinkdownDevices = Set(snapshot.links.filter {
            sys["net.ipv4.conf.all.ignore_routes_with_linkdown"] == "1" || sys["net.ipv4.conf.\($0.name).ignore_routes_with_linkdown"] == "1"
        }.map(\.index))
        loopbackIndex = snapshot.links.first { $0.flags & 0x8 != 0 }?.index ?? 1    // IFF_LOOPBACK
    }

    public func outputRoute(_ flow: Flow) -> Result<ResolvedRoute, Errno> { decide(flow, traced: false).result }

    // MARK: ip_route_output_key_hash_rcu

    /// Mirrors `ip_route_output_key_hash_rcu()` in net/ipv4/route.c.
    public func decide(_ flow: Flow, traced: Bool = true) -> RouteDecision {
        var trace = Tracer(traced)
        func fail(_ e: Errno, _ why: String) -> RouteDecision {
            trace.add(why)
            return RouteDecision(result: .failure(e), candidates: [], rule: nil, route: nil, trace: trace.lines)
        }
        let scope: UInt8 = flow.dontRoute ? 253 : 0
        var saddr = flow.source
        var daddr = flow.destination
        var oif: LinkInfo?
        if saddr != .any {
            if saddr.isMulticast || saddr.value == UInt32.max || saddr.value >> 24 == 0 {
                return fail(.invalidArgument, "saddr \(saddr) is multicast, broadcast or 0.0.0.0/8: EINVAL")
            }
            if !localAddresses.contains(saddr) {
                return fail(.networkUnreachable, "saddr \(saddr) is not an address of this namespace (__ip_dev_find): ENETUNREACH")
            }
            if flow.outputDevice == nil, daddr.isMulticast || daddr.value == UInt32.max,
               let owner = snapshot.addresses.first(where: { $0.prefix.address == saddr }), let dev = linkByIndex[owner.index] {
                trace.add("\(daddr) is multicast/broadcast with saddr set: out of \(dev.name), the device holding \(saddr), no FIB lookup")
                return made(daddr, saddr, dev, gateway: nil, kind: daddr.isMulticast ? .multicast : .broadcast, route: nil, table: 0, rule: nil, trace: trace)
            }
        }
        if let name = flow.outputDevice {
            guard let dev = linkByName[name] else { return fail(Errno(rawValue: 19), "oif \(name) does not exist: ENODEV") }
            guard dev.isUp else { return fail(.networkUnreachable, "oif \(name) is down: ENETUNREACH") }
            oif = dev
            let localMulticast = daddr.value >> 8 == 0xE00000    // 224.0.0.0/24
            if localMulticast || daddr.value == UInt32.max || flow.proto == 2 {
                if saddr == .any { saddr = inetSelectAddr(dev.index, dst: .any, scope: 253, trace: &trace) }
                trace.add("\(daddr) is link-local multicast/broadcast with oif \(name): straight out of it")
                return made(daddr, saddr, dev, gateway: nil, kind: daddr.isMulticast ? .multicast : .broadcast, route: nil, table: 0, rule: nil, trace: trace)
            }
            if saddr == .any, daddr.isMulticast { saddr = inetSelectAddr(dev.index, dst: .any, scope: scope, trace: &trace) }
            if saddr == .any, daddr == .any { saddr = inetSelectAddr(dev.index, dst: .any, scope: 254, trace: &trace) }
        }
        if daddr == .any {
            daddr = saddr != .any ? saddr : IPv4Address(127, 0, 0, 1)
            if saddr == .any { saddr = daddr }
            trace.add("daddr 0.0.0.0 → \(daddr), dev lo (RTN_LOCAL)")
            return made(daddr, saddr, linkByIndex[loopbackIndex], gateway: nil, kind: .local, route: nil, table: nil, rule: nil, trace: trace)
        }
        let key = Key(daddr: daddr, saddr: saddr, oif: oif?.index ?? 0, iif: loopbackIndex, mark: flow.mark, tos: flow.tos & 0xfc,
                      scope: scope, proto: flow.proto, sport: flow.sourcePort, dport: flow.destinationPort, uid: flow.uid)
        let res: FibResult
        switch fibLookup(key, trace: &trace) {
        case .failure(let e):
            if let dev = oif {
                // The destination is assumed on-link through the bound device.
                if saddr == .any { saddr = inetSelectAddr(dev.index, dst: .any, scope: 253, trace: &trace) }
                trace.add("no route (\(errnoName(e))) but oif \(dev.name) is set: assume \(daddr) is on-link")
                return made(daddr, saddr, dev, gateway: nil, kind: .unicast, route: nil, table: nil, rule: nil, trace: trace)
            }
            return fail(e, "fib_lookup: \(errnoName(e))")
        case .success(let r): res = r
        }
        if res.route.type == .local {
            if saddr == .any { saddr = res.route.prefsrc ?? daddr }
            trace.add("local destination: dev lo, saddr \(saddr)")
            return made(daddr, saddr, linkByIndex[loopbackIndex], gateway: nil, kind: .local, route: res.route, table: res.table,
                        rule: res.rule, trace: trace)
        }
        // fib_select_path: with oif set, the nexthop is the one fib_table_lookup kept.
        var legs = [res.nexthop]
        if oif == nil {
            if res.route.nexthops.count > 1 {
                legs = selectMultipath(res.route, saddr: saddr, trace: &trace)
            } else if res.prefixLength == 0, (tables[res.table]?.defaults ?? 0) > 1, res.route.type == .unicast {
                let same = tables[res.table]!.aliases(res.route.destination).filter {
                    $0.metric == res.route.metric && $0.nexthops.count == 1 && $0.nexthops[0].gateway != nil && $0.scope == res.route.scope
                }
                if same.count > 1 {
                    trace.add("fib_select_default: \(same.count) equal-metric defaults; the first is kept unless its gateway's neighbour is dead")
                }
            }
        }
        var candidates: [ResolvedRoute] = []
        var finalTrace = trace
        for (k, nh) in legs.enumerated() {
            var s = saddr
            var t = Tracer(traced)
            if s == .any {
                if let p = res.route.prefsrc {
                    s = p
                    t.add("saddr \(p): the route's prefsrc")
                } else {
                    s = inetSelectAddr(nh.index, dst: nh.gateway ?? .any, scope: res.route.scope, trace: &t)
                }
            }
            let kind: ResolvedRoute.Kind = daddr.value == UInt32.max || res.route.type == .broadcast ? .broadcast : daddr.isMulticast ? .multicast : .unicast
            if s.isLoopback, (linkByIndex[nh.index]?.flags ?? 0) & 0x8 == 0, !routeLocalnet(nh.index) {
                if k == 0 { return fail(.invalidArgument, "loopback saddr \(s) on a non-loopback device: EINVAL") }
                continue
            }
            // Broadcast and multicast leave the device directly (__mkroute_output drops the nexthop).
            candidates.append(resolved(daddr, s, linkByIndex[nh.index], gateway: kind == .unicast ? nh.gateway : nil, kind: kind,
                                       route: res.route, table: res.table, explanation: ""))
            if k == 0 { finalTrace.add(contentsOf: t) }
            if !traced { break }   // the engine needs one answer; `netlab route` (traced) wants every candidate
        }
        guard let first = candidates.first else { return fail(.networkUnreachable, "no usable nexthop") }
        return RouteDecision(result: .success(first), candidates: candidates, rule: res.rule, route: res.route, trace: finalTrace.lines)
    }

    func routeLocalnet(_ index: Int32) -> Bool { localnetDevices.contains(index) }

    func resolved(_ daddr: IPv4Address, _ saddr: IPv4Address, _ dev: LinkInfo?, gateway: IPv4Address?, kind: ResolvedRoute.Kind,
                  route: RouteInfo?, table: UInt32?, explanation: String) -> ResolvedRoute {
        ResolvedRoute(destination: daddr, source: saddr, device: dev?.name ?? "?", deviceMTU: Int(dev?.mtu ?? 1500),
                      gateway: gateway, kind: kind, mtu: route?.mtu.map(Int.init), advmss: route?.advmss.map(Int.init),
                      hoplimit: route?.hoplimit.map(Int.init), table: table, explanation: explanation)
    }

    func made(_ daddr: IPv4Address, _ saddr: IPv4Address, _ dev: LinkInfo?, gateway: IPv4Address?, kind: ResolvedRoute.Kind,
              route: RouteInfo?, table: UInt32?, rule: RuleInfo?, trace: Tracer) -> RouteDecision {
        let r = resolved(daddr, saddr, dev, gateway: gateway, kind: kind, route: route, table: table,
                         explanation: trace.enabled ? trace.lines.joined(separator: "; ") : "")
        return RouteDecision(result: .success(r), candidates: [r], rule: rule, route: route, trace: trace.lines)
    }

    // MARK: fib_lookup and rules

    struct Key {
        var daddr, saddr: IPv4Address
        var oif, iif: Int32
        var mark: UInt32
        var tos, scope, proto: UInt8
        var sport, dport: UInt16
        var uid: UInt32
    }

    struct FibResult {
        var route: RouteInfo
        var nexthop: NexthopInfo
        var table: UInt32
        var prefixLength: Int
        var rule: RuleInfo?
    }

    /// Mirrors `fib_lookup()` (include/net/ip_fib.h) and, with custom rules, `__fib_lookup` → `fib_rules_lookup`.
    func fibLookup(_ k: Key, trace: inout Tracer) -> Result<FibResult, Errno> {
        if !customRules {
            // No custom rules: main (merged with local), then default.
            var r = tableLookup([RoutingTable.local, RoutingTable.main], k, trace: &trace)
            // The local table lives inside main until the first custom rule (fib_unmerge): results say main.
            if case .success(var m) = r, m.table == RoutingTable.local { m.table = RoutingTable.main; r = .success(m) }
            if case .failure = r {
                if tables[RoutingTable.default] != nil { r = tableLookup([RoutingTable.default], k, trace: &trace) }
            }
            if case .failure(let e) = r, e.rawValue == eagain { return .failure(.networkUnreachable) }
            return r
        }
        var i = 0
        var jumps = 0
        while i < compiled.count {
            let c = compiled[i]
            let match: Bool
            if trace.enabled {
                let (m, why) = ruleMatches(rules[i], i, k)
                match = m
                if !m { trace.add("rule \(c.priority): no match (\(why))") }
            } else {
                match = c.matches(k)
            }
            if !match { i += 1; continue }
            let name = "rule \(c.priority)"
            switch c.action {
            case 2:   // goto
                guard c.gotoIndex >= 0, jumps < 32 else {
                    trace.add("\(name): goto has no target rule: skipped")
                    i += 1
                    continue
                }
                trace.add("\(name): goto \(compiled[c.gotoIndex].priority)")
                jumps += 1
                i = c.gotoIndex
                continue
            case 3:
                trace.add("\(name): nop")
                i += 1
                continue
            case 7: trace.add("\(name): unreachable → ENETUNREACH"); return .failure(.networkUnreachable)
            case 8: trace.add("\(name): prohibit → EACCES"); return .failure(.permissionDenied)
            case 6: trace.add("\(name): blackhole → EINVAL"); return .failure(.invalidArgument)
            case 1:
                guard tables[c.table] != nil else {
                    trace.add("\(name): lookup table \(c.table): no such table, continue")
                    i += 1
                    continue
                }
                var sub = Tracer(trace.enabled)
                switch tableLookup(c.table, k, trace: &sub) {
                case .failure(let e) where e.rawValue == eagain:
                    trace.add("\(name): lookup table \(c.table): no match\(sub.lines.isEmpty ? "" : " (" + sub.lines.joined(separator: "; ") + ")"), continue")
                    i += 1
                    continue
                case .failure(let e):
                    trace.add(contentsOf: sub)
                    trace.add("\(name): lookup table \(c.table): \(errnoName(e))")
                    return .failure(e)
                case .success(var r):
                    if c.suppressPrefix >= 0, r.prefixLength <= c.suppressPrefix {
                        trace.add("\(name): lookup table \(c.table) found /\(r.prefixLength), suppressed (suppress_prefixlength \(c.suppressPrefix))")
                        i += 1
                        continue
                    }
                    if c.suppressIfgroup >= 0, linkByIndex[r.nexthop.index]?.group == UInt32(c.suppressIfgroup) {
                        trace.add("\(name): suppressed (suppress_ifgroup \(c.suppressIfgroup))")
                        i += 1
                        continue
                    }
                    trace.add(contentsOf: sub)
                    trace.add("\(name): lookup table \(c.table) → \(r.route.destination.routeDescription)")
                    r.rule = rules[i]
                    return .success(r)
                }
            default:
                i += 1
            }
        }
        trace.add("no rule matched: ENETUNREACH")
        return .failure(.networkUnreachable)
    }

    /// Mirrors `fib_rule_match()` (net/core/fib_rules.c) and `fib4_rule_match()` (net/ipv4/fib_rules.c).
    func ruleMatches(_ r: RuleInfo, _ n: Int, _ k: Key) -> (Bool, StaticString) {
        func raw() -> (Bool, StaticString) {
            let c = compiled[n]   // iif/oif as ifindexes (-1: no such device, never matches)
            if c.hasIif, c.iif != k.iif { return (false, "iif") }
            if c.hasOif, c.oif != k.oif || k.oif == 0 { return (false, "oif") }
            if let m = r.fwmark { if (m ^ k.mark) & (r.fwmask ?? UInt32.max) != 0 { return (false, "fwmark") } }
            else if let mask = r.fwmask, (k.mark & mask) != 0 { return (false, "fwmask") }
            if let u = r.uidrange, !u.contains(k.uid) { return (false, "uidrange") }
            if let f = r.from, f.length > 0, !f.contains(k.saddr) { return (false, "from") }
            if let t = r.to, t.length > 0, !t.contains(k.daddr) { return (false, "to") }
            if let d = r.dscp { if d != k.tos >> 2 { return (false, "dscp") } }
            else if r.tos != 0, r.tos & 0xfc != k.tos { return (false, "tos") }
            if let p = r.ipproto, p != k.proto { return (false, "ipproto") }
            if let s = r.sport, !s.contains(k.sport) { return (false, "sport") }
            if let d = r.dport, !d.contains(k.dport) { return (false, "dport") }
            return (true, "")
        }
        let (m, why) = raw()
        return r.invert ? (!m, m ? "not: its selectors matched" : "not: a selector did not match, so it matches") : (m, why)
    }

    /// One table (the rules' path): no merging.
    func tableLookup(_ id: UInt32, _ k: Key, trace: inout Tracer) -> Result<FibResult, Errno> {
        guard let t = tables[id] else { return .failure(Errno(rawValue: eagain)) }
        for len in t.lengths {
            let mask: UInt32 = len == 0 ? 0 : UInt32.max << UInt32(32 - len)
            guard let aliases = t.byLength[len][k.daddr.value & mask] else { continue }
            if let r = pick(aliases, table: id, len: len, k, trace: &trace) { return r }
        }
        return .failure(Errno(rawValue: eagain))
    }

    /// The first usable alias of one prefix, or nil to backtrack: `fib_table_lookup`'s inner loop.
    func pick(_ aliases: [RouteInfo], table: UInt32, len: Int, _ k: Key, trace: inout Tracer) -> Result<FibResult, Errno>? {
        for r in aliases {
            if r.tos != 0, r.tos & 0xfc != k.tos { continue }
            if r.scope < k.scope { continue }
            switch r.type {
            case .unreachable: trace.add("table \(table): \(r.destination.routeDescription) is unreachable → EHOSTUNREACH"); return .failure(.noRouteToHost)
            case .prohibit: trace.add("table \(table): \(r.destination.routeDescription) is prohibit → EACCES"); return .failure(.permissionDenied)
            case .blackhole: trace.add("table \(table): \(r.destination.routeDescription) is blackhole → EINVAL"); return .failure(.invalidArgument)
            case .throw: trace.add("table \(table): throw \(r.destination.routeDescription)"); return .failure(Errno(rawValue: eagain))
            default: break
            }
            if !r.nexthops.isEmpty, r.nexthops.allSatisfy(isDead) { continue }
            for nh in r.nexthops {
                if isDead(nh) { continue }
                if nh.linkdown, ignoreLinkdown(nh.index) { continue }
                if k.oif != 0, nh.index != k.oif { continue }
                trace.add("table \(table): \(r.destination.routeDescription)\(r.metric != 0 ? " metric \(r.metric)" : "") (longest match /\(len))")
                return .success(FibResult(route: r, nexthop: nh, table: table, prefixLength: len, rule: nil))
            }
        }
        return nil
    }

    /// Mirrors `fib_table_lookup()` (net/ipv4/fib_trie.c) over one or more tables merged (local + main).
    func tableLookup(_ ids: [UInt32], _ k: Key, trace: inout Tracer) -> Result<FibResult, Errno> {
        // Lengths present in any of the tables (local merged with main), longest first.
        let present = ids.compactMap { tables[$0] }
        var lengths = present.count == 1 ? present[0].lengths : Array(Set(present.flatMap(\.lengths))).sorted(by: >)
        if present.isEmpty { lengths = [] }
        for len in lengths {
            let mask: UInt32 = len == 0 ? 0 : UInt32.max << UInt32(32 - len)
            for t in present {
                guard let aliases = t.byLength[len][k.daddr.value & mask] else { continue }
                if let r = pick(aliases, table: t.id, len: len, k, trace: &trace) { return r }
            }
        }
        return .failure(Errno(rawValue: eagain))
    }

    /// Really dead (RTNH_F_DEAD in the kernel). The dump also shows DEAD on a linkdown nexthop of a device that is up
    /// when ignore_routes_with_linkdown is on (`fib_nexthop_info`); that one is only linkdown.
    func isDead(_ nh: NexthopInfo) -> Bool {
        guard nh.dead else { return false }
        if nh.linkdown, ignoreLinkdown(nh.index), linkByIndex[nh.index]?.isUp == true { return false }
        return true
    }

    func ignoreLinkdown(_ index: Int32) -> Bool { ignoreLinkdownDevices.contains(index) }

    /// Mirrors `fib_select_multipath()` as of Linux 6.16: live legs; with a source set, the legs whose own source
    /// (`nh_saddr`) is that source win; the hash (unseen) picks among the rest.
    func selectMultipath(_ r: RouteInfo, saddr: IPv4Address, trace: inout Tracer) -> [NexthopInfo] {
        // Dead legs are out. A linkdown leg is out of the hash only if ignore_routes_with_linkdown was on when its
        // carrier changed (fib_rebalance runs on that event, not on the sysctl): unseen, so it stays a candidate.
        let live = r.nexthops.filter { !isDead($0) }
        if trace.enabled, r.nexthops.contains(where: { $0.linkdown && ignoreLinkdown($0.index) }) {
            trace.add("fib_select_multipath: linkdown legs kept as candidates (their hash weight was fixed when the carrier changed)")
        }
        if saddr != .any {
            var scratch = Tracer(false)
            let mine = live.filter { inetSelectAddr($0.index, dst: $0.gateway ?? .any, scope: r.scope, trace: &scratch) == saddr }
            if !mine.isEmpty {
                trace.add("fib_select_multipath: \(mine.count) of \(live.count) legs have nh_saddr \(saddr)\(mine.count == 1 ? ": determined" : ": hash decides")")
                return mine
            }
        }
        trace.add("fib_select_multipath: \(live.count) live legs; the multipath hash (seed unseen) picks one")
        return live
    }

    // MARK: inet_select_addr

    /// Mirrors `inet_select_addr()` in net/ipv4/devinet.c: primaries of `dev` in list order within `scope`, the one
    /// whose subnet holds `dst` first; else any device's primary that is not link-scoped, lo first.
    func inetSelectAddr(_ index: Int32, dst: IPv4Address, scope: UInt8, trace: inout Tracer) -> IPv4Address {
        let name = linkByIndex[index]?.name ?? "#\(index)"
        let localnet: UInt8 = routeLocalnet(index) ? 253 : 255
        var first: IPv4Address?
        for a in addressesByIndex[index] ?? [] where !a.isSecondary && min(a.scope, localnet) <= scope {
            if dst != .any, a.prefix.contains(dst) {
                trace.add("saddr \(a.prefix.address): primary of \(name) whose subnet holds \(dst) (inet_select_addr)")
                return a.prefix.address
            }
            if first == nil { first = a.prefix.address }
        }
        if let f = first {
            trace.add("saddr \(f): first primary of \(name) within scope (inet_select_addr)")
            return f
        }
        for l in snapshot.links.sorted(by: { $0.index < $1.index }) {
            for a in addressesByIndex[l.index] ?? [] where !a.isSecondary && a.scope != 253 && a.scope <= scope {
                trace.add("saddr \(a.prefix.address): \(name) has none; first primary of \(l.name) (inet_select_addr fallback)")
                return a.prefix.address
            }
        }
        trace.add("saddr 0.0.0.0: no address to choose")
        return .any
    }
}

let eagain: Int32 = 11

/// Trace lines, built only when asked for: a lookup without a trace allocates no strings.
struct Tracer {
    let enabled: Bool
    var lines: [String] = []
    init(_ enabled: Bool) { self.enabled = enabled }
    @inline(__always) mutating func add(_ line: @autoclosure () -> String) { if enabled { lines.append(line()) } }
    mutating func add(contentsOf other: Tracer) { if enabled { lines += other.lines } }
}

func errnoName(_ e: Errno) -> String { e.rawValue == eagain ? "EAGAIN" : name(e) }


/// A rule's selectors as plain data: `fib_rule_match` + `fib4_rule_match` without touching a string.
struct CompiledRule: Sendable {
    var priority: UInt32
    var invert: Bool
    var hasIif: Bool, iif: Int32, hasOif: Bool, oif: Int32
    var mark: UInt32, markMask: UInt32
    var uidLow: UInt32, uidHigh: UInt32
    var src: UInt32, srcMask: UInt32, dst: UInt32, dstMask: UInt32
    var dscp: Int16, tos: UInt8, proto: UInt8
    var sportLow: UInt16, sportHigh: UInt16, dportLow: UInt16, dportHigh: UInt16
    var action: UInt8, table: UInt32
    /// Index of the goto target (the rule with that exact pref), -1 when unresolved.
    var gotoIndex: Int
    var suppressPrefix: Int
    var suppressIfgroup: Int64

    @inline(__always) func matches(_ k: FibResolver.Key) -> Bool {
        var m = true
        if hasIif, iif != k.iif { m = false }
        else if hasOif, oif != k.oif || k.oif == 0 { m = false }
        else if (mark ^ k.mark) & markMask != 0 { m = false }
        else if k.uid < uidLow || k.uid > uidHigh { m = false }
        else if (k.saddr.value ^ src) & srcMask != 0 || (k.daddr.value ^ dst) & dstMask != 0 { m = false }
        else if dscp >= 0 ? Int16(k.tos >> 2) != dscp : (tos != 0 && tos != k.tos) { m = false }
        else if proto != 0, proto != k.proto { m = false }
        else if k.sport < sportLow || k.sport > sportHigh || k.dport < dportLow || k.dport > dportHigh { m = false }
        return invert ? !m : m
    }
}
