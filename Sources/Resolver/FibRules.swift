import Engine
import NetCore

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

    /// The one rule matcher: nil when the rule applies to the lookup, else the selector that failed (`.inverted` for
    /// a `not` rule whose selectors all matched). Mirrors `fib_rule_match()` (net/core/fib_rules.c: iif, oif,
    /// `(rule->mark ^ fl->flowi_mark) & rule->mark_mask`, uid range, then `ops->match`, and FIB_RULE_INVERT on the
    /// result) and `fib4_rule_match()` (net/ipv4/fib_rules.c: `(saddr ^ r->src) & r->srcmask`, the same for daddr,
    /// dscp (tos & 0xfc: ECN ignored), ip_proto, then the port ranges when set). The key's tos is already masked.
    @inline(__always) func mismatch(_ k: FibResolver.Key) -> RuleMismatch? {
        let failed: RuleMismatch?
        if iif != 0, iif != k.iif { failed = .iif }
        else if oif != 0, oif != k.oif { failed = .oif }
        else if (mark ^ k.mark) & markMask != 0 { failed = maskOnly ? .fwmask : .fwmark }
        else if k.uid < uidLow || k.uid > uidHigh { failed = .uidrange }
        else if (k.saddr.value ^ src) & srcMask != 0 { failed = .from }
        else if (k.daddr.value ^ dst) & dstMask != 0 { failed = .to }
        else if (k.tos ^ tos) & tosMask != 0 { failed = dscpSelector ? .dscp : .tos }
        else if (k.proto ^ proto) & protoMask != 0 { failed = .ipproto }
        else if k.sport < sportLow || k.sport > sportHigh { failed = .sport }
        else if k.dport < dportLow || k.dport > dportHigh { failed = .dport }
        else { failed = nil }
        if invert { return failed == nil ? .inverted : nil }
        return failed
    }

    /// Whether the rule applies: `mismatch` without its answer (the untraced walk).
    @inline(__always) func matches(_ k: FibResolver.Key) -> Bool { mismatch(k) == nil }
}
