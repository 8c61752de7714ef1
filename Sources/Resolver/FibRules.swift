import Engine
import NetCore
import SystemPackage

/// The selector of a policy rule that did not match a lookup, in the order the kernel tests them: `fib_rule_match`
/// (net/core/fib_rules.c) tests iif, oif, fwmark and uidrange, then calls `fib4_rule_match` (net/ipv4/fib_rules.c)
/// for from, to, tos/dscp, ipproto, sport and dport. `inverted`: a `not` rule whose selectors all matched.
enum RuleMismatch: String, Sendable, CustomStringConvertible {
    case iif, oif, fwmark, fwmask, uidrange, from, to, tos, dscp, ipproto, sport, dport
    case inverted

    var description: String { self == .inverted ? "not: its selectors matched" : rawValue }
}

/// A rule's selectors as plain data (no strings), so walking the rules costs no reference counting.
struct CompiledRule: Sendable {
    // The selectors, as value/mask pairs and ranges, first, so a walk reads them together. iif/oif: 0 when the rule
    // has none, -1 for a device the namespace does not have (never matches).
    var mark: UInt32, markMask: UInt32
    var src: UInt32, srcMask: UInt32, dst: UInt32, dstMask: UInt32
    var uidLow: UInt32, uidHigh: UInt32
    var iif: Int32, oif: Int32
    var sportLow: UInt16, sportHigh: UInt16, dportLow: UInt16, dportHigh: UInt16
    /// tos or dscp (both compared on the masked TOS byte), ipproto.
    var tos: UInt8, tosMask: UInt8, proto: UInt8, protoMask: UInt8
    var invert: Bool
    /// Only for naming a mismatch: the rule gave `dscp` (not `tos`), a mask without a mark (`fwmark 0/M` dumps so).
    var dscpSelector: Bool, maskOnly: Bool
    // What happens on a match.
    var action: RuleAction
    var priority: UInt32
    var table: UInt32
    /// The table's slot in `FibTables`, -1 when the namespace has no such table.
    var tableSlot: Int
    /// Index of the goto target (the rule with that exact pref), -1 when unresolved.
    var gotoIndex: Int
    var suppressPrefix: Int
    var suppressIfgroup: Int64

    init(_ r: RuleInfo, index: (String) -> Int32, goto: Int) {
        mark = r.fwmark ?? 0
        markMask = r.fwmark != nil ? (r.fwmask ?? UInt32.max) : (r.fwmask ?? 0)
        maskOnly = r.fwmark == nil && r.fwmask != nil
        src = r.from?.network.value ?? 0; srcMask = r.from?.mask ?? 0
        dst = r.to?.network.value ?? 0; dstMask = r.to?.mask ?? 0
        uidLow = r.uidrange?.lowerBound ?? 0; uidHigh = r.uidrange?.upperBound ?? UInt32.max
        iif = r.iif.map(index) ?? 0; oif = r.oif.map(index) ?? 0
        sportLow = r.sport?.lowerBound ?? 0; sportHigh = r.sport?.upperBound ?? UInt16.max
        dportLow = r.dport?.lowerBound ?? 0; dportHigh = r.dport?.upperBound ?? UInt16.max
        if let d = r.dscp { tos = d << 2; tosMask = 0xfc } else { tos = r.tos & 0xfc; tosMask = r.tos != 0 ? 0xfc : 0 }
        dscpSelector = r.dscp != nil
        proto = r.ipproto ?? 0; protoMask = r.ipproto != nil ? 0xff : 0
        invert = r.invert
        action = r.action; priority = r.priority ?? 0; table = r.table; tableSlot = -1; gotoIndex = goto
        suppressPrefix = Int(r.suppressPrefixLength ?? -1); suppressIfgroup = Int64(r.suppressIfgroup ?? -1)
    }

    /// The one rule matcher: whether every selector matches the lookup (before FIB_RULE_INVERT). Mirrors
    /// `fib_rule_match()` (net/core/fib_rules.c: iif, oif, `(rule->mark ^ fl->flowi_mark) & rule->mark_mask`, the uid
    /// range, then `ops->match`) and `fib4_rule_match()` (net/ipv4/fib_rules.c: `(saddr ^ r->src) & r->srcmask`, the
    /// same for daddr, dscp (tos & 0xfc: ECN ignored), ip_proto, then the port ranges when set). The masked
    /// selectors are tested at once; the key's tos is already masked. Both walks decide with this; `mismatch` only
    /// names the selector for the trace.
    @inline(__always) func selectorsMatch(_ k: CompiledFib.Key) -> Bool {
        let masked = (mark ^ k.mark) & markMask | (k.saddr.value ^ src) & srcMask | (k.daddr.value ^ dst) & dstMask |
            UInt32((k.tos ^ tos) & tosMask | (k.proto ^ proto) & protoMask)
        return masked == 0 && (iif == 0 || iif == k.iif) && (oif == 0 || oif == k.oif) && k.uid >= uidLow && k.uid <= uidHigh &&
            k.sport >= sportLow && k.sport <= sportHigh && k.dport >= dportLow && k.dport <= dportHigh
    }

    /// Whether the rule applies (FIB_RULE_INVERT applied, `fib_rule_match`'s `out:`): the untraced walk.
    @inline(__always) func matches(_ k: CompiledFib.Key) -> Bool { selectorsMatch(k) != invert }

    /// Nil when the rule applies (decided by `matches`), else why not for the trace: the first selector that fails
    /// in the kernel's order, or `.inverted` for a `not` rule whose selectors all matched.
    func mismatch(_ k: CompiledFib.Key) -> RuleMismatch? {
        if matches(k) { return nil }
        if invert { return .inverted }
        if iif != 0, iif != k.iif { return .iif }
        if oif != 0, oif != k.oif { return .oif }
        if (mark ^ k.mark) & markMask != 0 { return maskOnly ? .fwmask : .fwmark }
        if k.uid < uidLow || k.uid > uidHigh { return .uidrange }
        if (k.saddr.value ^ src) & srcMask != 0 { return .from }
        if (k.daddr.value ^ dst) & dstMask != 0 { return .to }
        if (k.tos ^ tos) & tosMask != 0 { return dscpSelector ? .dscp : .tos }
        if (k.proto ^ proto) & protoMask != 0 { return .ipproto }
        if k.sport < sportLow || k.sport > sportHigh { return .sport }
        return .dport
    }
}

// MARK: fib_lookup (include/net/ip_fib.h) and the rules walk (net/core/fib_rules.c, net/ipv4/fib_rules.c)

extension CompiledFib {
    /// Mirrors `fib_lookup()` (include/net/ip_fib.h) and, with custom rules, `__fib_lookup` → `fib_rules_lookup`.
    func fibLookup(_ k: Key, trace: inout Tracer) -> Result<FibResult, Errno> {
        if !customRules {
            // No custom rules: main (merged with local), then default.
            var r = mergedLookup(k, trace: &trace)
            // The local table lives inside main until the first custom rule (fib_unmerge): results say main.
            if case .success(var m) = r, m.table == RoutingTable.local { m.table = RoutingTable.main; r = .success(m) }
            // Only a miss (EAGAIN: no route, or throw) goes on to default; an error route in main answers its errno.
            if case .failure(let e) = r, e.rawValue == eagain, let slot = fib.slot(of: RoutingTable.default) { r = tableLookup(slot, k, trace: &trace) }
            if case .failure(let e) = r, e.rawValue == eagain { return .failure(.networkUnreachable) }
            return r
        }
        var i = 0
        var jumps = 0
        while i < compiledRules.count {
            if trace.enabled {
                if let why = compiledRules[i].mismatch(k) { trace.add("rule \(compiledRules[i].priority): no match (\(why))"); i += 1; continue }
            } else {
                i = nextMatch(from: i, k)
                if i == compiledRules.count { break }
            }
            let c = compiledRules[i]
            switch c.action {
            case .goto:
                guard c.gotoIndex >= 0, jumps < 32 else {
                    trace.add("rule \(c.priority): goto has no target rule: skipped")
                    i += 1
                    continue
                }
                trace.add("rule \(c.priority): goto \(compiledRules[c.gotoIndex].priority)")
                jumps += 1
                i = c.gotoIndex
                continue
            case .nop:
                trace.add("rule \(c.priority): nop")
                i += 1
                continue
            case .unreachable: trace.add("rule \(c.priority): unreachable → ENETUNREACH"); return .failure(.networkUnreachable)
            case .prohibit: trace.add("rule \(c.priority): prohibit → EACCES"); return .failure(.permissionDenied)
            case .blackhole: trace.add("rule \(c.priority): blackhole → EINVAL"); return .failure(.invalidArgument)
            case .toTable:
                guard c.tableSlot >= 0 else {
                    trace.add("rule \(c.priority): lookup table \(c.table): no such table, continue")
                    i += 1
                    continue
                }
                var sub = Tracer(trace.enabled)
                switch tableLookup(c.tableSlot, k, trace: &sub) {
                case .failure(let e) where e.rawValue == eagain:
                    trace.add("rule \(c.priority): lookup table \(c.table): no match\(sub.lines.isEmpty ? "" : " (" + sub.lines.joined(separator: "; ") + ")"), continue")
                    i += 1
                    continue
                case .failure(let e):
                    trace.add(contentsOf: sub)
                    trace.add("rule \(c.priority): lookup table \(c.table): \(errnoName(e))")
                    return .failure(e)
                case .success(var r):
                    if c.suppressPrefix >= 0, r.prefixLength <= c.suppressPrefix {
                        trace.add("rule \(c.priority): lookup table \(c.table) found /\(r.prefixLength), suppressed (suppress_prefixlength \(c.suppressPrefix))")
                        i += 1
                        continue
                    }
                    if c.suppressIfgroup >= 0, linkByIndex[fib.nexthops[r.nexthop].index]?.group == UInt32(c.suppressIfgroup) {
                        trace.add("rule \(c.priority): suppressed (suppress_ifgroup \(c.suppressIfgroup))")
                        i += 1
                        continue
                    }
                    trace.add(contentsOf: sub)
                    trace.add("rule \(c.priority): lookup table \(c.table) → \(snapshot.routes[Int(fib.aliases[r.alias].route)].destination.routeDescription)")
                    r.rule = i
                    return .success(r)
                }
            case .unspecified, .reserved3, .reserved4:
                // fib4_rule_action: -EINVAL for an action it does not know; fib_rules_lookup goes on (only -EAGAIN
                // continues in the kernel, but such a rule cannot be added: fib_nl2rule refuses FR_ACT_UNSPEC).
                i += 1
            }
        }
        trace.add("no rule matched: ENETUNREACH")
        return .failure(.networkUnreachable)
    }

    /// The first rule from `i` on whose selectors match (`compiledRules.count` if none): the walk of `fib_rules_lookup`,
    /// reading each rule in place.
    @inline(__always) func nextMatch(from i: Int, _ k: Key) -> Int {
        compiledRules.withUnsafeBufferPointer { b in
            var j = i
            while j < b.count, !b[j].matches(k) { j += 1 }
            return j
        }
    }

    /// The packet's protocol and ports as an input lookup's flow carries them (`fib4_rules_early_flow_dissect`): only
    /// when a rule needs them, and ports only for TCP and UDP (the flow dissector finds none in other protocols).
    /// `reversed` for `__fib_validate_source`'s lookup back to the source.
    func dissected(_ flow: Flow, reversed: Bool = false) -> (proto: UInt8, sport: UInt16, dport: UInt16) {
        guard rulesRequireFlowDissect else { return (0, 0, 0) }
        let proto = flow.proto.rawValue
        guard flow.proto.hasPorts else { return (proto, 0, 0) }
        return reversed ? (proto, flow.destinationPort, flow.sourcePort) : (proto, flow.sourcePort, flow.destinationPort)
    }
}
