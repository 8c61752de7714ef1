import Engine
import NetCore
import Netlink
import Resolver
import SystemPackage

/// `netlab explain`: why a lookup (or connect's lookups) in a live namespace gives what it gives — the rules tried, the
/// route that won in its table and the ones it won over, the source and why — beside what the kernel answers to the same
/// question through RTM_GETROUTE. Read-only: no packet is sent, nothing is changed. The decisions are the resolver's
/// (`FibResolver.decide`) and, for a connect, `ConnectRoute.decide` — the engine's own; this only reads and words them.
public struct Explanation: Sendable {
    /// One lookup: what it asked, what it answered, and its trace.
    public struct Lookup: Sendable, Encodable {
        public var name: String
        public var flow: String
        public var answer: String
        public var trace: [String]
        /// The routes of the winning table that hold the destination, best first, each with why it won or lost.
        public var considered: [String]
    }
    public var question: String
    public var lookups: [Lookup]
    /// The connect's steps (`tcp_v4_connect`, `ip_route_connect`, ...), for `--connect`.
    public var steps: [String]
    public var engine: RouteAnswer
    public var kernel: RouteAnswer
    public var agree: Bool
    /// How lookups #2 and #3 differed from #1 (connect only).
    public var differences: [String]

    /// Explain `query` with `resolver` (a snapshot of the namespace `socket` is in), asking the kernel through `socket`.
    /// With `connect`, connect's lookups as `ConnectRoute.decide` makes them, with source port `port` for lookup #3.
    public static func explain(_ query: RouteQuery, resolver: FibResolver, socket: NetlinkSocket, connect: Bool,
                               port: UInt16) -> Explanation {
        let snap = resolver.snapshot
        let names = Dictionary(snap.links.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
        let index = Dictionary(snap.links.map { ($0.name, $0.index) }, uniquingKeysWith: { a, _ in a })
        func ifindex(_ d: String?) -> Int32 { d.map { index[$0] ?? -1 } ?? 0 }
        func kernel(_ f: Flow, input: String? = nil) -> Result<KernelRouteAnswer, Errno> {
            socket.routeGet(destination: f.destination, source: f.source, outputIndex: ifindex(f.outputDevice),
                            inputIndex: ifindex(input), mark: f.mark, tos: f.tos, uid: f.uid, proto: f.proto,
                            sourcePort: f.sourcePort, destinationPort: f.destinationPort)
        }
        func answer(_ r: Result<ResolvedRoute, Errno>) -> RouteAnswer {
            switch r {
            case .success(let x): return RouteAnswer(source: x.source.description, dev: x.device, gateway: x.gateway?.description, table: x.table)
            case .failure(let e): return RouteAnswer(error: e.name)
            }
        }
        func kernelAnswer(_ r: Result<KernelRouteAnswer, Errno>) -> RouteAnswer {
            switch r {
            case .success(let a): return RouteAnswer(source: a.source?.description, dev: names[a.device], gateway: a.gateway?.description, table: a.table)
            case .failure(let e): return RouteAnswer(error: e.name)
            }
        }
        func lookup(_ label: String, _ f: Flow, input: String? = nil) -> (Lookup, RouteDecision) {
            let d = input.map { resolver.decideInput(f, inputDevice: $0) } ?? resolver.decide(f)
            let text: String
            switch d.result {
            case .success(let r): text = "src \(r.source) dev \(r.device)\(r.gateway.map { " via \($0)" } ?? "")\(r.table.map { " table \($0)" } ?? "")\(r.kind != .unicast ? " (\(r.kind.rawValue))" : "")"
            case .failure(let e): text = e.name
            }
            return (Lookup(name: label, flow: "\(f)", answer: text, trace: d.trace, considered: considered(d, f, routes: snap.routes, names: names)), d)
        }
        if !connect {
            let (l, d) = lookup(query.inputDevice == nil ? "lookup" : "input lookup", query.flow, input: query.inputDevice)
            var e = answer(d.result)
            if query.inputDevice != nil { e.source = query.source == .any ? nil : query.source.description }
            var k = kernelAnswer(kernel(query.flow, input: query.inputDevice))
            if query.inputDevice != nil { k.source = query.source == .any ? nil : query.source.description }
            let all = (d.candidates.map { answer(.success($0)) } + [e])
            let agree = e.error != nil || k.error != nil ? e.error == k.error
                : all.contains { $0.source == k.source && $0.dev == k.dev && $0.gateway == k.gateway }
            return Explanation(question: query.words, lookups: [l], steps: [], engine: e, kernel: k, agree: agree, differences: [])
        }
        // connect(): the engine's route decisions, with the asked (or a fixed) source port for lookup #3.
        var socketLike = ConnectEngine(resolver: resolver, config: EngineConfig(seed: 1))
        if let d = query.device { _ = socketLike.setOption(.bindToDevice(d)) }
        if query.mark != 0 { _ = socketLike.setOption(.mark(query.mark)) }
        if query.tos != 0 { _ = socketLike.setOption(.tos(query.tos)) }
        if query.source != .any { _ = socketLike.bind(address: query.source, port: 0) }
        var crq = socketLike.connectRouteQuery(to: query.destination, port: query.destinationPort)
        crq.uid = query.uid
        var lookups: [Lookup] = []
        let decided = ConnectRoute.decide(crq, resolver: resolver) { _, _, steps in
            steps.append(ConnectRoute.Step("inet_hash_connect", "source port \(port) (explain uses --sport, or the first port of ip_local_port_range)"))
            return .success(port)
        }
        // The same lookups again, traced, for the why (ConnectRoute.decide's own steps name each).
        var f = Flow(destination: crq.sourceRouteFirstHop ?? crq.destination, source: crq.source, outputDevice: crq.device,
                     mark: crq.mark, tos: crq.tos & 0xfc, dontRoute: crq.dontRoute, proto: .tcp, sourcePort: 0,
                     destinationPort: crq.destinationPort, uid: crq.uid)
        f.anySourcePort = true
        var first: RouteDecision?
        if f.source == .any || f.destination == .any {
            let (l, d) = lookup("lookup #1 (ip_route_connect: choose the source)", f)
            lookups.append(l); first = d
            if case .success(let r) = d.result { f.source = r.source; f.destination = r.destination }
        }
        let (l2, d2) = lookup("lookup #2 (ip_route_connect: with the source)", f)
        lookups.append(l2)
        var d3: RouteDecision?
        if port != 0, decided.port != nil {
            var f3 = f
            f3.sourcePort = port
            f3.anySourcePort = false
            let (l3, d) = lookup("lookup #3 (ip_route_newports: with the port)", f3)
            lookups.append(l3); d3 = d
        }
        var differences: [String] = []
        func sameRoute(_ a: RouteDecision?, _ b: RouteDecision?) -> Bool { a?.rule == b?.rule && a?.route == b?.route }
        if let first, !sameRoute(first, d2) {
            differences.append("lookup #2 matched \(ruleText(d2.rule)) and \(routeText(d2.route, names)) where #1 matched \(ruleText(first.rule)) and \(routeText(first.route, names)): the chosen source changed which rule applies")
        }
        if let d3, !sameRoute(d2, d3) {
            differences.append("lookup #3 matched \(ruleText(d3.rule)) and \(routeText(d3.route, names)) where #2 matched \(ruleText(d2.rule)) and \(routeText(d2.route, names)): a rule on the source port applies")
        }
        var e: RouteAnswer
        switch decided.result {
        case .success(let r):
            e = answer(.success(r)); e.source = decided.source.description
        case .failure(let err): e = RouteAnswer(error: err.name)
        }
        // The kernel, asked the same lookups through RTM_GETROUTE (no socket, no packet): #1 for the source, then
        // with the source and the port.
        var k: RouteAnswer
        var kf = Flow(destination: crq.sourceRouteFirstHop ?? crq.destination, source: crq.source, outputDevice: crq.device,
                      mark: crq.mark, tos: crq.tos & 0xfc, proto: .tcp, sourcePort: 0, destinationPort: crq.destinationPort, uid: crq.uid)
        switch kernel(kf) {
        case .failure(let err): k = RouteAnswer(error: err.name)
        case .success(let a1):
            if kf.source == .any { kf.source = a1.source ?? .any }
            kf.sourcePort = port
            k = kernelAnswer(kernel(kf))
            if k.error == nil { k.source = kf.source.description }
            if a1.type == .broadcast || a1.type == .multicast { k = RouteAnswer(error: Errno.networkUnreachable.name) }
        }
        // Equal-cost legs at lookup #1: the kernel's hash picks the source; each other leg's source leads on as a
        // bound one would, and the kernel's answer may be any of them.
        var outcomes = [e]
        let legs = Set((first?.candidates ?? []).map(\.source)).subtracting([decided.source])
        for s in legs.sorted(by: { $0.value < $1.value }) {
            var alt = crq
            alt.source = s
            let other = ConnectRoute.decide(alt, resolver: resolver) { _, _, _ in .success(port) }
            switch other.result {
            case .success(let r): var a = answer(.success(r)); a.source = s.description; outcomes.append(a)
            case .failure(let err): outcomes.append(RouteAnswer(error: err.name))
            }
        }
        if outcomes.count > 1 {
            differences.append("lookup #1 has \(outcomes.count) equal-cost legs (fib_select_multipath by the flow hash): the connect leaves by " + outcomes.map { $0.error ?? "src \($0.source ?? "?") dev \($0.dev ?? "?")" }.joined(separator: " or "))
        }
        let agree = outcomes.contains { e in
            e.error != nil || k.error != nil ? e.error == k.error : e.source == k.source && e.dev == k.dev && e.gateway == k.gateway
        }
        return Explanation(question: "connect " + query.words, lookups: lookups,
                           steps: decided.steps.map { "\($0.function): \($0.detail)" }, engine: e, kernel: k, agree: agree,
                           differences: differences)
    }

    /// The routes of the table that decided, holding the destination, longest prefix first then lowest metric, with
    /// why each won or lost — words for what `fib_table_lookup` did, read from the winning route the resolver reports.
    static func considered(_ d: RouteDecision, _ f: Flow, routes: [RouteInfo], names: [Int32: String]) -> [String] {
        guard let win = d.route else { return [] }
        let rivals = routes.filter { $0.table == win.table }.filter { $0.destination.contains(f.destination) && $0 != win }
            .sorted { ($0.destination.length, -Int($0.metric)) > ($1.destination.length, -Int($1.metric)) }
        var out = ["\(routeText(win, names)) — matched: the longest prefix (/\(win.destination.length)) holding \(f.destination)\(win.metric != 0 ? ", metric \(win.metric)" : "")"]
        for r in rivals.prefix(8) {
            let why: String
            if r.destination.length < win.destination.length {
                why = "a shorter prefix (/\(r.destination.length) < /\(win.destination.length))"
            } else if r.tos != 0 && r.tos != f.tos {
                why = "its tos \(r.tos) is not the flow's \(f.tos)"
            } else if r.metric > win.metric {
                why = "a higher metric (\(r.metric) > \(win.metric))"
            } else if r.nexthops.contains(where: { $0.dead || $0.linkdown }) {
                why = "its nexthop is dead or linkdown"
            } else {
                why = "behind the winner in the table's order"
            }
            out.append("\(routeText(r, names)) — lost: \(why)")
        }
        if rivals.count > 8 { out.append("... and \(rivals.count - 8) more") }
        return out
    }

    static func ruleText(_ r: RuleInfo?) -> String {
        guard let r else { return "no rule" }
        return "rule \(r.priority.map(String.init) ?? "?")"
    }

    static func routeText(_ r: RouteInfo?, _ names: [Int32: String]) -> String {
        guard let r else { return "no route" }
        var w = [r.type == .unicast ? "" : r.type.rawValue + " ", r.destination.length == 0 ? "default" : r.destination.description].joined()
        if let h = r.nexthops.first, !r.multipath {
            if let g = h.gateway { w += " via \(g)" }
            if h.index != 0 { w += " dev \(names[h.index] ?? "#\(h.index)")" }
        }
        if let id = r.nexthopID { w += " nhid \(id)" }
        if r.metric != 0 { w += " metric \(r.metric)" }
        if let p = r.prefsrc { w += " src \(p)" }
        return w + " (table \(r.table))"
    }

    /// What `--json` prints (snake_case keys).
    public struct Report: Encodable {
        public struct Answer: Encodable { var source, dev, via, table, error: String? }
        var question: String
        var answer: Answer
        var kernel: Answer
        var agree: Bool
        var lookups: [Lookup]
        var steps: [String]
        var differences: [String]
    }

    public var report: Report {
        func a(_ r: RouteAnswer) -> Report.Answer {
            .init(source: r.source, dev: r.dev, via: r.gateway, table: r.table.map { RoutingTable.builtinName($0) ?? String($0) }, error: r.error)
        }
        return Report(question: question, answer: a(engine), kernel: a(kernel), agree: agree, lookups: lookups, steps: steps,
                      differences: differences)
    }

    /// The explanation as text: the answer, then each lookup's why, then the kernel.
    public func text(tableName: (UInt32) -> String) -> String {
        func line(_ a: RouteAnswer) -> String {
            if let e = a.error { return e }
            return "src \(a.source ?? "?") dev \(a.dev ?? "?")\(a.gateway.map { " via \($0)" } ?? "")\(a.table.map { " table \(tableName($0))" } ?? "")"
        }
        var out = ["\(question)", "  answer: \(line(engine))", ""]
        for l in lookups {
            out.append("\(l.name): \(l.flow)")
            out += l.trace.map { "    " + $0 }
            if !l.considered.isEmpty { out += ["  routes holding the destination in that table:"] + l.considered.map { "    " + $0 } }
            out.append("  → \(l.answer)")
        }
        if !steps.isEmpty { out += ["", "connect's steps (ConnectRoute.decide, as tcp_v4_connect):"] + steps.map { "    " + $0 } }
        if !differences.isEmpty { out += ["", "how the lookups differed:"] + differences.map { "    " + $0 } }
        out += ["", "kernel (RTM_GETROUTE, the same question): \(line(kernel))", agree ? "  agrees" : "  DISAGREES"]
        return out.joined(separator: "\n")
    }
}
