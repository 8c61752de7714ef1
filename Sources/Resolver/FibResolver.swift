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
        let defaults: [(UInt32, UInt32)] = [(0, 255), (32766, 254), (32767, 253)]
        customRules = !(rules.count == 3 && zip(rules, defaults).allSatisfy { r, d in
            r.priority == d.0 && r.table == d.1 && r.action == 1 && r.from == nil && r.to == nil && r.iif == nil && r.oif == nil &&
                r.fwmark == nil && !r.invert && r.tos == 0 && r.dscp == nil && r.ipproto == nil && r.sport == nil && r.dport == nil &&
                r.uidrange == nil && r.suppressPrefixLength == nil
        })
        loopbackIndex = snapshot.links.first { $0.flags & 0x8 != 0 }?.index ?? 1    // IFF_LOOPBACK
    }

    public func outputRoute(_ flow: Flow) -> Result<ResolvedRoute, Errno> { decide(flow).result }

    // MARK: ip_route_output_key_hash_rcu

    /// Mirrors `ip_route_output_key_hash_rcu()` in net/ipv4/route.c.
    public func decide(_ flow: Flow) -> RouteDecision {
        var trace: [String] = []
        func fail(_ e: Errno, _ why: String) -> RouteDecision {
            trace.append(why)
            return RouteDecision(result: .failure(e), candidates: [], rule: nil, route: nil, trace: trace)
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
                trace.append("\(daddr) is multicast/broadcast with saddr set: out of \(dev.name), the device holding \(saddr), no FIB lookup")
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
                trace.append("\(daddr) is link-local multicast/broadcast with oif \(name): straight out of it")
                return made(daddr, saddr, dev, gateway: nil, kind: daddr.isMulticast ? .multicast : .broadcast, route: nil, table: 0, rule: nil, trace: trace)
            }
            if saddr == .any, daddr.isMulticast { saddr = inetSelectAddr(dev.index, dst: .any, scope: scope, trace: &trace) }
            if saddr == .any, daddr == .any { saddr = inetSelectAddr(dev.index, dst: .any, scope: 254, trace: &trace) }
        }
        if daddr == .any {
            daddr = saddr != .any ? saddr : IPv4Address(127, 0, 0, 1)
            if saddr == .any { saddr = daddr }
            trace.append("daddr 0.0.0.0 → \(daddr), dev lo (RTN_LOCAL)")
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
                trace.append("no route (\(errnoName(e))) but oif \(dev.name) is set: assume \(daddr) is on-link")
                return made(daddr, saddr, dev, gateway: nil, kind: .unicast, route: nil, table: nil, rule: nil, trace: trace)
            }
            return fail(e, "fib_lookup: \(errnoName(e))")
        case .success(let r): res = r
        }
        if res.route.type == .local {
            if saddr == .any { saddr = res.route.prefsrc ?? daddr }
            trace.append("local destination: dev lo, saddr \(saddr)")
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
                    trace.append("fib_select_default: \(same.count) equal-metric defaults; the first is kept unless its gateway's neighbour is dead")
                }
            }
        }
        var candidates: [ResolvedRoute] = []
        var finalTrace = trace
        for (k, nh) in legs.enumerated() {
            var s = saddr
            var t: [String] = []
            if s == .any {
                if let p = res.route.prefsrc {
                    s = p
                    t.append("saddr \(p): the route's prefsrc")
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
            let r = made(daddr, s, linkByIndex[nh.index], gateway: kind == .unicast ? nh.gateway : nil, kind: kind, route: res.route, table: res.table,
                         rule: res.rule, trace: []).result
            if case .success(let rr) = r { candidates.append(rr) }
            if k == 0 { finalTrace += t }
        }
        guard let first = candidates.first else { return fail(.networkUnreachable, "no usable nexthop") }
        return RouteDecision(result: .success(first), candidates: candidates, rule: res.rule, route: res.route, trace: finalTrace)
    }

    func routeLocalnet(_ index: Int32) -> Bool {
        snapshot.sysctls["net.ipv4.conf.all.route_localnet"] == "1" ||
            linkByIndex[index].map { snapshot.sysctls["net.ipv4.conf.\($0.name).route_localnet"] == "1" } ?? false
    }

    func made(_ daddr: IPv4Address, _ saddr: IPv4Address, _ dev: LinkInfo?, gateway: IPv4Address?, kind: ResolvedRoute.Kind,
              route: RouteInfo?, table: UInt32?, rule: RuleInfo?, trace: [String]) -> RouteDecision {
        let r = ResolvedRoute(destination: daddr, source: saddr, device: dev?.name ?? "?", deviceMTU: Int(dev?.mtu ?? 1500),
                              gateway: gateway, kind: kind, mtu: route?.mtu.map(Int.init), advmss: route?.advmss.map(Int.init),
                              hoplimit: route?.hoplimit.map(Int.init), table: table, explanation: trace.joined(separator: "; "))
        return RouteDecision(result: .success(r), candidates: [r], rule: rule, route: route, trace: trace)
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
    func fibLookup(_ k: Key, trace: inout [String]) -> Result<FibResult, Errno> {
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
        while i < rules.count {
            let rule = rules[i]
            let (match, why) = ruleMatches(rule, k)
            let name = "rule \(rule.priority ?? 0)"
            if !match {
                trace.append("\(name): no match (\(why))")
                i += 1
                continue
            }
            switch rule.action {
            case 2:   // goto
                guard let target = rule.goto, let j = rules.firstIndex(where: { $0.priority == target }), jumps < 32 else {
                    trace.append("\(name): goto \(rule.goto ?? 0) has no target rule: skipped")
                    i += 1
                    continue
                }
                trace.append("\(name): goto \(target)")
                jumps += 1
                i = j
                continue
            case 3:
                trace.append("\(name): nop")
                i += 1
                continue
            case 7: trace.append("\(name): unreachable → ENETUNREACH"); return .failure(.networkUnreachable)
            case 8: trace.append("\(name): prohibit → EACCES"); return .failure(.permissionDenied)
            case 6: trace.append("\(name): blackhole → EINVAL"); return .failure(.invalidArgument)
            case 1:
                guard tables[rule.table] != nil else {
                    trace.append("\(name): lookup table \(rule.table): no such table, continue")
                    i += 1
                    continue
                }
                var sub: [String] = []
                switch tableLookup([rule.table], k, trace: &sub) {
                case .failure(let e) where e.rawValue == eagain:
                    trace.append("\(name): lookup table \(rule.table): no match\(sub.isEmpty ? "" : " (" + sub.joined(separator: "; ") + ")"), continue")
                    i += 1
                    continue
                case .failure(let e):
                    trace += sub
                    trace.append("\(name): lookup table \(rule.table): \(errnoName(e))")
                    return .failure(e)
                case .success(var r):
                    if let s = rule.suppressPrefixLength, r.prefixLength <= Int(s) {
                        trace.append("\(name): lookup table \(rule.table) found /\(r.prefixLength), suppressed (suppress_prefixlength \(s))")
                        i += 1
                        continue
                    }
                    if let g = rule.suppressIfgroup, linkByIndex[r.nexthop.index]?.group == UInt32(bitPattern: g) {
                        trace.append("\(name): suppressed (suppress_ifgroup \(g))")
                        i += 1
                        continue
                    }
                    trace += sub
                    trace.append("\(name): lookup table \(rule.table) → \(r.route.destination.routeDescription)")
                    r.rule = rule
                    return .success(r)
                }
            default:
                i += 1
            }
        }
        trace.append("no rule matched: ENETUNREACH")
        return .failure(.networkUnreachable)
    }

    /// Mirrors `fib_rule_match()` (net/core/fib_rules.c) and `fib4_rule_match()` (net/ipv4/fib_rules.c).
    func ruleMatches(_ r: RuleInfo, _ k: Key) -> (Bool, String) {
        func raw() -> (Bool, String) {
            if let i = r.iif { if linkByName[i]?.index != k.iif { return (false, "iif \(i)") } }
            if let o = r.oif { if linkByName[o]?.index != k.oif || k.oif == 0 { return (false, "oif \(o)") } }
            if let m = r.fwmark { if (m ^ k.mark) & (r.fwmask ?? UInt32.max) != 0 { return (false, "fwmark") } }
            else if let mask = r.fwmask, (k.mark & mask) != 0 { return (false, "fwmask") }
            if let u = r.uidrange, !u.contains(k.uid) { return (false, "uidrange") }
            if let f = r.from, f.length > 0, !f.contains(k.saddr) { return (false, "from \(f)") }
            if let t = r.to, t.length > 0, !t.contains(k.daddr) { return (false, "to \(t)") }
            if let d = r.dscp { if d != k.tos >> 2 { return (false, "dscp") } }
            else if r.tos != 0, r.tos & 0xfc != k.tos { return (false, "tos") }
            if let p = r.ipproto, p != k.proto { return (false, "ipproto") }
            if let s = r.sport, !s.contains(k.sport) { return (false, "sport") }
            if let d = r.dport, !d.contains(k.dport) { return (false, "dport") }
            return (true, "")
        }
        let (m, why) = raw()
        return r.invert ? (!m, m ? "not: selectors matched" : "not: \(why) did not match, so it matches") : (m, why)
    }

    /// Mirrors `fib_table_lookup()` (net/ipv4/fib_trie.c) over one or more tables merged (local + main).
    func tableLookup(_ ids: [UInt32], _ k: Key, trace: inout [String]) -> Result<FibResult, Errno> {
        // Merge candidates by prefix length across the tables (local first at equal length).
        var byLen: [Int: [(UInt32, RouteInfo)]] = [:]
        for id in ids {
            guard let t = tables[id] else { continue }
            for (len, aliases) in t.matches(k.daddr) { byLen[len, default: []] += aliases.map { (id, $0) } }
        }
        for len in byLen.keys.sorted(by: >) {
            for (table, r) in byLen[len]! {
                if r.tos != 0, r.tos & 0xfc != k.tos { continue }
                if r.scope < k.scope { continue }
                switch r.type {
                case .unreachable: trace.append("table \(table): \(r.destination.routeDescription) is unreachable → EHOSTUNREACH"); return .failure(.noRouteToHost)
                case .prohibit: trace.append("table \(table): \(r.destination.routeDescription) is prohibit → EACCES"); return .failure(.permissionDenied)
                case .blackhole: trace.append("table \(table): \(r.destination.routeDescription) is blackhole → EINVAL"); return .failure(.invalidArgument)
                case .throw: trace.append("table \(table): throw \(r.destination.routeDescription)"); return .failure(Errno(rawValue: eagain))
                default: break
                }
                if !r.nexthops.isEmpty, r.nexthops.allSatisfy(\.dead) { continue }
                for nh in r.nexthops {
                    if nh.dead { continue }
                    if nh.linkdown, ignoreLinkdown(nh.index) { continue }
                    if k.oif != 0, nh.index != k.oif { continue }
                    trace.append("table \(table): \(r.destination.routeDescription)\(r.metric != 0 ? " metric \(r.metric)" : "") (longest match /\(len))")
                    return .success(FibResult(route: r, nexthop: nh, table: table, prefixLength: len, rule: nil))
                }
            }
        }
        return .failure(Errno(rawValue: eagain))
    }

    func ignoreLinkdown(_ index: Int32) -> Bool {
        snapshot.sysctls["net.ipv4.conf.all.ignore_routes_with_linkdown"] == "1" ||
            linkByIndex[index].map { snapshot.sysctls["net.ipv4.conf.\($0.name).ignore_routes_with_linkdown"] == "1" } ?? false
    }

    /// Mirrors `fib_select_multipath()` as of Linux 6.16: live legs; with a source set, the legs whose own source
    /// (`nh_saddr`) is that source win; the hash (unseen) picks among the rest.
    func selectMultipath(_ r: RouteInfo, saddr: IPv4Address, trace: inout [String]) -> [NexthopInfo] {
        let live = r.nexthops.filter { !$0.dead && !($0.linkdown && ignoreLinkdown($0.index)) }
        if saddr != .any {
            var scratch: [String] = []
            let mine = live.filter { inetSelectAddr($0.index, dst: $0.gateway ?? .any, scope: r.scope, trace: &scratch) == saddr }
            if !mine.isEmpty {
                trace.append("fib_select_multipath: \(mine.count) of \(live.count) legs have nh_saddr \(saddr)\(mine.count == 1 ? ": determined" : ": hash decides")")
                return mine
            }
        }
        trace.append("fib_select_multipath: \(live.count) live legs; the multipath hash (seed unseen) picks one")
        return live
    }

    // MARK: inet_select_addr

    /// Mirrors `inet_select_addr()` in net/ipv4/devinet.c: primaries of `dev` in list order within `scope`, the one
    /// whose subnet holds `dst` first; else any device's primary that is not link-scoped, lo first.
    func inetSelectAddr(_ index: Int32, dst: IPv4Address, scope: UInt8, trace: inout [String]) -> IPv4Address {
        let name = linkByIndex[index]?.name ?? "#\(index)"
        let localnet: UInt8 = routeLocalnet(index) ? 253 : 255
        var first: IPv4Address?
        for a in addressesByIndex[index] ?? [] where !a.isSecondary && min(a.scope, localnet) <= scope {
            if dst != .any, a.prefix.contains(dst) {
                trace.append("saddr \(a.prefix.address): primary of \(name) whose subnet holds \(dst) (inet_select_addr)")
                return a.prefix.address
            }
            if first == nil { first = a.prefix.address }
        }
        if let f = first {
            trace.append("saddr \(f): first primary of \(name) within scope (inet_select_addr)")
            return f
        }
        for l in snapshot.links.sorted(by: { $0.index < $1.index }) {
            for a in addressesByIndex[l.index] ?? [] where !a.isSecondary && a.scope != 253 && a.scope <= scope {
                trace.append("saddr \(a.prefix.address): \(name) has none; first primary of \(l.name) (inet_select_addr fallback)")
                return a.prefix.address
            }
        }
        trace.append("saddr 0.0.0.0: no address to choose")
        return .any
    }
}

let eagain: Int32 = 11

func errnoName(_ e: Errno) -> String { e.rawValue == eagain ? "EAGAIN" : name(e) }
