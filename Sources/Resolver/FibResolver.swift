import Engine
import NetCore
import SystemPackage

/// Why a lookup ended as it did, step by step.
public struct RouteDecision: Sendable {
    public var result: Result<ResolvedRoute, Errno>
    /// Every answer the kernel may give (equal-cost legs it picks by a hash we cannot see); one when determined.
    public var candidates: [ResolvedRoute]
    /// Errors some of those legs give instead (an input route whose source fails validation on one leg only).
    public var candidateErrors: [Errno] = []
    public var rule: RuleInfo?
    public var route: RouteInfo?
    public var trace: [String]
}

/// Linux's IPv4 route lookups over a `RoutingSnapshot`, as the engine's `RouteResolver` and for `netlab route`:
/// output (`ip_route_output_key_hash_rcu`) and input (`ip_route_input_slow`) lookups with policy rules, tables,
/// multipath and source choice. The snapshot is compiled once (`CompiledFib`, CompiledFib.swift); each kernel
/// decision lives in the file named after the kernel file that makes it:
///   Route.swift        net/ipv4/route.c         ip_route_output_key_hash_rcu, __mkroute_output, fib_multipath_hash
///   RouteInput.swift   net/ipv4/route.c         ip_route_input_slow, ip_mkroute_input, brd_input
///   FibRules.swift     net/ipv4/fib_rules.c, net/core/fib_rules.c   fib_lookup, fib_rules_lookup, fib_rule_match
///   FibTrie.swift      net/ipv4/fib_trie.c      fib_table_lookup (the tables, longest prefix, aliases)
///   FibSemantics.swift net/ipv4/fib_semantics.c fib_select_path, fib_select_multipath, fib_rebalance, RTNH_F_DEAD
///   Nexthop.swift      net/ipv4/nexthop.c       nexthop_select_path (groups), nexthop_is_good_nh
///   FibFrontend.swift  net/ipv4/fib_frontend.c  fib_validate_source, __inet_dev_addr_type
///   Devinet.swift      net/ipv4/devinet.c       inet_select_addr
public struct FibResolver: RouteResolver, Sendable {
    /// The namespace as lookups read it, built once.
    var compiled: CompiledFib
    /// The equal-cost leg to answer when a lookup has several (by device and next hop): the kernel's multipath hash
    /// is unseen, so a driver that saw which leg the kernel took can ask the engine to take the same one. Nil: the
    /// first leg, as listed.
    public var preferredLeg: Leg?

    public init(snapshot: RoutingSnapshot) { compiled = CompiledFib(snapshot: snapshot) }

    public var snapshot: RoutingSnapshot { compiled.snapshot }

    public func inetAddrType(_ address: IPv4Address) -> RouteType { compiled.inetAddrType(address) }

    public func outputRoute(_ flow: Flow) -> Result<ResolvedRoute, Errno> {
        var trace = Tracer(false)
        var none: [ResolvedRoute]?
        return compiled.route(flow, preferredLeg: preferredLeg, trace: &trace, candidates: &none).result
    }

    /// The answer with its trace, the rule and route that gave it, and every leg the kernel may pick.
    public func decide(_ flow: Flow, traced: Bool = true) -> RouteDecision {
        var trace = Tracer(traced)
        var all: [ResolvedRoute]? = []
        let o = compiled.route(flow, preferredLeg: preferredLeg, trace: &trace, candidates: &all)
        return RouteDecision(result: o.result, candidates: all ?? [], rule: o.rule.map { compiled.rules[$0] },
                             route: o.route.map { snapshot.routes[$0] }, trace: trace.lines)
    }

    /// The answer for a packet from `flow.source` to `flow.destination` arriving on `inputDevice`, with its trace.
    public func decideInput(_ flow: Flow, inputDevice: String, traced: Bool = true) -> RouteDecision {
        var trace = Tracer(traced)
        var all: [ResolvedRoute]? = []
        var refused: [Errno] = []
        let o = compiled.routeInput(flow, inputDevice: inputDevice, trace: &trace, candidates: &all, refusedLegs: &refused)
        var d = RouteDecision(result: o.result, candidates: all ?? [], rule: o.rule.map { compiled.rules[$0] },
                              route: o.route.map { snapshot.routes[$0] }, trace: trace.lines)
        if case .success = o.result { d.candidateErrors = refused }
        return d
    }

    /// True when a route uses a nexthop object group, whose member choice reads neighbour state.
    public var usesNexthopGroups: Bool { compiled.fib.aliases.contains { $0.group != 0 } }

    /// Take the neighbour table as it is now (connects change it: a gateway that does not answer ARP goes
    /// INCOMPLETE, then FAILED, and `nexthop_is_good_nh` skips it).
    public mutating func updateNeighbours(_ neighbours: [NeighbourInfo]) { compiled.updateNeighbours(neighbours) }
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

func errnoName(_ e: Errno) -> String { e.name }
