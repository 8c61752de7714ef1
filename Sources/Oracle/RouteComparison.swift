import Engine
import Foundation
import NetCore
import Netlink
import Driver
import Resolver
import SystemPackage

/// The inputs of a route lookup, as `netlab route` takes them.
public struct RouteQuery: Sendable, Codable, Equatable {
    public var destination: IPv4Address
    public var source: IPv4Address
    public var device: String?
    public var mark: UInt32
    public var tos: UInt8
    public var proto: IPProtocol
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var uid: UInt32
    /// An input lookup (`iif`): the route of a packet arriving on this device, instead of an output lookup.
    public var inputDevice: String?
    /// Compare connect's route decisions (a kernel connect) instead of one lookup (`route --connect`).
    public var connect = false
    public init(destination: IPv4Address, source: IPv4Address = .any, device: String? = nil, mark: UInt32 = 0, tos: UInt8 = 0,
                proto: IPProtocol = .tcp, sourcePort: UInt16 = 0, destinationPort: UInt16 = 0, uid: UInt32 = 0,
                inputDevice: String? = nil) {
        self.destination = destination; self.source = source; self.device = device; self.mark = mark; self.tos = tos
        self.proto = proto; self.sourcePort = sourcePort; self.destinationPort = destinationPort; self.uid = uid
        self.inputDevice = inputDevice
    }
    /// The flow of `ip route get` (RTM_GETROUTE never sets FLOWI_FLAG_ANY_SPORT: a port 0 is hashed as 0).
    public var flow: Flow {
        var f = Flow(destination: destination, source: source, outputDevice: device, mark: mark, tos: tos, proto: proto,
                     sourcePort: sourcePort, destinationPort: destinationPort, uid: uid)
        f.anySourcePort = false
        return f
    }
    /// `ip route get` words for this query.
    public var words: String {
        var w = ["\(destination)"]
        if source != .any { w += ["from", "\(source)"] }
        if let d = device { w += ["oif", d] }
        if let d = inputDevice { w += ["iif", d] }
        if mark != 0 { w += ["mark", "0x" + String(mark, radix: 16)] }
        if tos != 0 { w += ["tos", "0x" + String(tos, radix: 16)] }
        w += ["ipproto", proto.description]
        if sourcePort != 0 { w += ["sport", String(sourcePort)] }
        if destinationPort != 0 { w += ["dport", String(destinationPort)] }
        if uid != 0 { w += ["uid", String(uid)] }
        return w.joined(separator: " ")
    }
}

/// One side's answer, as `netlab route --json` prints it.
public struct RouteAnswer: Codable, Sendable, Equatable {
    public var source: String?
    public var dev: String?
    public var gateway: String?
    public var table: UInt32?
    /// The errno name, or nil.
    public var error: String?
}

extension RouteAnswer {
    /// Whether the kernel's answer `k` is this one: the same error, or the same source, device and gateway (and the
    /// same table when both name one: RTM_GETROUTE of a connect's 4-tuple may not say).
    func allows(_ k: RouteAnswer) -> Bool {
        if error != nil || k.error != nil { return error == k.error }
        return source == k.source && dev == k.dev && gateway == k.gateway && (table == nil || k.table == nil || table == k.table)
    }
}

/// The resolver and the kernel on the same lookup.
public struct RouteComparison: Sendable {
    public var query: RouteQuery
    public var connect: Bool
    public var engine: RouteAnswer
    /// Every answer the resolver allows (multipath legs the kernel picks by hash).
    public var candidates: [RouteAnswer]
    public var kernel: RouteAnswer
    public var agree: Bool
    public var trace: [String]

    /// What `netlab route --json` prints, in the topology file's words: `via` for the next hop, tables by the
    /// file's names (`isp2`; `main`, `local` and `default` built in; a number the file does not name).
    public struct Report: Codable {
        public var query: String
        public var engine: Answer
        public var kernel: Answer
        public var candidates: [Answer]
        public var agree: Bool
        public var trace: [String]?

        public struct Answer: Codable, Equatable {
            public var source: String?
            public var dev: String?
            public var via: String?
            public var table: String?
            /// The errno name, or nil.
            public var error: String?
        }
    }

    /// A table id's name: the file's, a built-in one, or the number.
    public typealias TableNames = (UInt32) -> String
    public static func builtinTableNames(_ id: UInt32) -> String { RoutingTable.builtinName(id) ?? String(id) }

    public func report(withTrace: Bool, tableNames: TableNames = builtinTableNames) -> Report {
        func a(_ r: RouteAnswer) -> Report.Answer {
            .init(source: r.source, dev: r.dev, via: r.gateway, table: r.table.map(tableNames), error: r.error)
        }
        return Report(query: (connect ? "connect " : "") + query.words, engine: a(engine), kernel: a(kernel),
                      candidates: candidates.count > 1 ? candidates.map(a) : [], agree: agree, trace: withTrace ? trace : nil)
    }

    public func text(withTrace: Bool, tableNames: TableNames = builtinTableNames) -> String {
        func line(_ a: RouteAnswer) -> String {
            if let e = a.error { return e }
            var s = "src \(a.source ?? "?") dev \(a.dev ?? "?")"
            if let g = a.gateway { s += " via \(g)" }
            if let t = a.table { s += " table \(tableNames(t))" }
            return s
        }
        var out = ["\(connect ? "connect " : "route get ")\(query.words)",
                   "  engine: \(line(engine))" + (candidates.count > 1 ? "  (or: " + candidates.dropFirst().map(line).joined(separator: " | ") + ")" : ""),
                   "  kernel: \(line(kernel))",
                   agree ? "  agree" : "  DISAGREE"]
        if withTrace { out += ["  trace:"] + trace.map { "    " + $0 } }
        return out.joined(separator: "\n")
    }

    static func answer(_ r: ResolvedRoute) -> RouteAnswer {
        RouteAnswer(source: r.source.description, dev: r.device, gateway: r.gateway?.description, table: r.table, error: nil)
    }

    /// The kernel's answer is the engine's, or one of the candidates (an equal-cost leg, or the error one leg gives).
    static func decide(_ e: RouteAnswer, _ candidates: [RouteAnswer], _ k: RouteAnswer) -> Bool {
        if let ke = k.error, e.error == nil, candidates.contains(where: { $0.error == ke }) { return true }
        if e.error != nil || k.error != nil { return e.error == k.error }
        return candidates.contains { $0.allows(k) }
    }

    /// The port a connect goes to: the query's, 80 when it has none.
    public static func destinationPort(_ q: RouteQuery) -> UInt16 { q.destinationPort == 0 ? 80 : q.destinationPort }

    /// The kernel connect for `route --connect`: the query's socket options, bound when it gives a source or a port.
    static func kernelSpec(_ q: RouteQuery) -> ConnectSpec {
        var spec = ConnectSpec(destination: q.destination, port: destinationPort(q), device: q.device,
                               mark: q.mark == 0 ? nil : q.mark, tos: q.tos == 0 ? nil : q.tos)
        if q.source != .any || q.sourcePort != 0 { spec.bindAddress = q.source; spec.bindPort = q.sourcePort }
        return spec
    }

    /// Resolve `query` in `namespace` with the resolver and with the kernel, and compare.
    public static func run(_ query: RouteQuery, in namespace: NetworkNamespace, connect: Bool = false) throws -> RouteComparison {
        let socket = try NetlinkSocket(in: namespace)
        let snapshot = try RoutingSnapshot.read(socket: socket, namespace: namespace)
        return try run(query, resolver: FibResolver(snapshot: snapshot), socket: socket, namespace: namespace, connect: connect)
    }

    public static func run(_ query: RouteQuery, resolver: FibResolver, socket: NetlinkSocket, namespace: NetworkNamespace,
                           connect: Bool) throws -> RouteComparison {
        var resolver = resolver
        let names = Dictionary(resolver.snapshot.links.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
        let index = Dictionary(resolver.snapshot.links.map { ($0.name, $0.index) }, uniquingKeysWith: { a, _ in a })
        /// 0 for none, -1 for a device the namespace does not have (the kernel answers ENODEV).
        func ifindex(_ device: String?) -> Int32 { device.map { index[$0] ?? -1 } ?? 0 }
        func kernelGet(_ q: RouteQuery) -> RouteAnswer {
            switch socket.routeGet(destination: q.destination, source: q.source, outputIndex: ifindex(q.device),
                                   inputIndex: ifindex(q.inputDevice), mark: q.mark, tos: q.tos, uid: q.uid, proto: q.proto,
                                   sourcePort: q.sourcePort, destinationPort: q.destinationPort) {
            case .success(let a):
                return RouteAnswer(source: a.source?.description, dev: names[a.device], gateway: a.gateway?.description,
                                   table: a.table, error: nil)
            case .failure(let e): return RouteAnswer(error: e.name)
            }
        }
        if !connect {
            // Neighbour state before and after RTM_GETROUTE: an ARP reply (or a timer) may change a group member's
            // validity in between; then the answers under either state count.
            let before = resolver.usesNexthopGroups ? try socket.neighbours.list() : []
            let k = kernelGet(query)
            let after = resolver.usesNexthopGroups ? try socket.neighbours.list() : []
            var other: FibResolver?
            if resolver.usesNexthopGroups {
                resolver.updateNeighbours(before)
                let bad = { (n: [NeighbourInfo]) in Set(n.filter { !$0.isValid }.map { "\($0.index) \($0.address)" }) }
                if bad(before) != bad(after) { other = resolver; other!.updateNeighbours(after) }
            }
            func decision(_ resolver: FibResolver) -> (RouteDecision, Result<ResolvedRoute, Errno>) {
                if let iif = query.inputDevice {
                    return (resolver.decideInput(query.flow, inputDevice: iif), resolver.decideInput(query.flow, inputDevice: iif, traced: false).result)
                }
                return (resolver.decide(query.flow), resolver.outputRoute(query.flow))
            }
            var (d, untraced) = decision(resolver)
            if let other {
                let (d2, _) = decision(other)
                d.trace.append("neighbour state changed during RTM_GETROUTE: the answers under the later state count too")
                if case .success(let r) = d2.result { d.candidates += d2.candidates.isEmpty ? [r] : d2.candidates }
                else if case .failure(let e) = d2.result { d.candidateErrors.append(e) }
            }
            // An input route's source is the packet's (RTA_SRC, absent when none was given).
            func side(_ r: ResolvedRoute) -> RouteAnswer {
                var a = answer(r)
                if query.inputDevice != nil { a.source = query.source == .any ? nil : query.source.description }
                return a
            }
            let (e, c): (RouteAnswer, [RouteAnswer])
            switch d.result {
            case .success(let r): (e, c) = (side(r), d.candidates.map(side))
            case .failure(let err): (e, c) = (RouteAnswer(error: err.name), [])
            }
            // The engine calls the untraced lookup: it must answer exactly what the traced one explains.
            let fast: RouteAnswer
            switch untraced {
            case .success(let r): fast = side(r)
            case .failure(let err): fast = RouteAnswer(error: err.name)
            }
            let trace = fast == e ? d.trace : d.trace + ["the untraced lookup (the engine's) answered otherwise: \(fast)"]
            let all = c + Set(d.candidateErrors.map(\.name)).sorted().map { RouteAnswer(error: $0) }
            return RouteComparison(query: query, connect: false, engine: e, candidates: all, kernel: k,
                                   agree: fast == e && decide(e, all, k), trace: trace)
        }
        // Kernel: a real non-blocking connect with the same options; getsockname gives the source and port, and the
        // egress is what RTM_GETROUTE says for that 4-tuple (connect's lookup #3).
        // Group members' liveness is neighbour state, which timers change (PROBE → FAILED, INCOMPLETE → FAILED): read
        // it before the connect (its lookups #1/#2) and after (lookup #3, RTM_GETROUTE); when a member's validity
        // changed in between, the answers under either state count.
        let neighboursBefore = resolver.usesNexthopGroups ? try socket.neighbours.list() : []
        let kc = try KernelRunner(namespace: namespace).start(kernelSpec(query))
        let neighboursAfter = resolver.usesNexthopGroups ? try socket.neighbours.list() : []
        // The kernel's lookups #1/#2 (and #3) ran under the state before its connect; its SYN may send an ARP that
        // changes a gateway's state before the RTM_GETROUTE that stands for lookup #3. So the resolver's early lookups
        // use the state before and the last the state after; when they differ, all-before and all-after count too.
        var modes: [(early: FibResolver, late: FibResolver)] = [(resolver, resolver)]
        if resolver.usesNexthopGroups {
            var before = resolver, after = resolver
            before.updateNeighbours(neighboursBefore)
            after.updateNeighbours(neighboursAfter)
            let bad = { (n: [NeighbourInfo]) in Set(n.filter { !$0.isValid }.map { "\($0.index) \($0.address)" }) }
            modes = bad(neighboursBefore) == bad(neighboursAfter) ? [(after, after)] : [(before, after), (after, after), (before, before)]
        }
        let dport = destinationPort(query)
        var kernel: RouteAnswer
        if let err = kc.errno {
            kernel = RouteAnswer(error: err.name)
        } else {
            var q3 = query
            q3.source = kc.source ?? .any
            q3.sourcePort = kc.sourcePort ?? 0
            q3.destinationPort = dport
            q3.proto = .tcp
            q3.uid = 0
            // A connect to 0.0.0.0 goes to the source the kernel chose (ip_route_output_key_hash_rcu: daddr = saddr,
            // 127.0.0.1 when none); getpeername answers ENOTCONN in SYN_SENT, so the source says it.
            if q3.destination == .any { q3.destination = q3.source }
            kernel = kernelGet(q3)
            kernel.source = q3.source.description
        }
        // Resolver: the engine's socket (options, bind) and ConnectRoute.decide, the engine's own route decisions,
        // with the port the kernel chose; once per equal-cost leg the kernel may take at each lookup.
        var outcomes: [RouteAnswer] = []
        var trace: [String] = []
        var mismatches: [String] = []
        for (n, mode) in modes.enumerated() {
            if n == 1 { trace.append("neighbour state changed during the kernel's connect: lookups under the state before it, after it, and before then after count") }
            let branches = Branches(mode.early, late: mode.late)
            repeat {
                branches.useLate = false
                var e = ConnectEngine(resolver: branches, config: EngineConfig(seed: 1))
                if let d = query.device { _ = e.setOption(.bindToDevice(d)) }
                if query.mark != 0 { _ = e.setOption(.mark(query.mark)) }
                if query.tos != 0 { _ = e.setOption(.tos(query.tos)) }
                var answer: RouteAnswer
                if query.source != .any || query.sourcePort != 0, let err = e.bind(address: query.source, port: query.sourcePort).0 {
                    answer = RouteAnswer(error: err.name)
                    if outcomes.isEmpty { trace.append("inet_bind \(query.source):\(query.sourcePort): \(err.name)") }
                } else {
                    let d = ConnectRoute.decide(e.connectRouteQuery(to: query.destination, port: dport), resolver: branches) { _, _, _ in
                        branches.useLate = true
                        return .success(kc.errno == nil ? kc.sourcePort ?? 0 : query.sourcePort)
                    }
                    switch d.result {
                    case .success(let r): answer = Self.answer(r); answer.source = d.source.description
                    case .failure(let err): answer = RouteAnswer(error: err.name)
                    }
                    if outcomes.isEmpty { trace += d.steps.map { "\($0.function): \($0.detail)" } }
                }
                if !outcomes.contains(answer) { outcomes.append(answer) }
            } while branches.next() && outcomes.count < 64
            mismatches += branches.mismatches
        }
        trace += mismatches
        let engine = outcomes[0]
        let agree = mismatches.isEmpty && outcomes.contains { $0.allows(kernel) }
        return RouteComparison(query: query, connect: true, engine: engine, candidates: outcomes.count > 1 ? outcomes : [engine],
                               kernel: kernel, agree: agree, trace: trace)
    }
}

/// The resolver for connect's lookups, answering each with one of the legs the kernel may take (its hash unseen):
/// run after run, `next()` walks every combination of choices, as an odometer over the lookups made. Each lookup's
/// trace rides in the answer's explanation; the untraced lookup (the engine's) must agree with the traced one.
final class Branches: RouteResolver {
    let early: FibResolver, late: FibResolver
    /// Lookups after the port choice (lookup #3) use `late`.
    var useLate = false
    var resolver: FibResolver { useLate ? late : early }
    /// The choice at each lookup of the current run, and how many candidates each had.
    var choices: [Int] = []
    var counts: [Int] = []
    var call = 0
    var mismatches: [String] = []

    init(_ resolver: FibResolver, late: FibResolver? = nil) { early = resolver; self.late = late ?? resolver }

    func outputRoute(_ flow: Flow) -> Result<ResolvedRoute, Errno> {
        let resolver = self.resolver
        let d = resolver.decide(flow)
        defer { call += 1 }
        let fast = resolver.outputRoute(flow)
        var first = d.result
        if case .success(var r) = first { r.explanation = ""; first = .success(r) }
        if fast != first { mismatches.append("the untraced lookup (the engine's) answered otherwise for \(flow): \(fast)") }
        let n = d.candidates.count > 1 ? d.candidates.count : 1
        if call < counts.count { counts[call] = n } else { counts.append(n) }
        if call >= choices.count { choices.append(0) }
        guard case .success = d.result, n > 1 else {
            return d.result.map { var r = $0; r.explanation = d.trace.joined(separator: "; "); return r }
        }
        var r = d.candidates[min(choices[call], n - 1)]
        r.explanation = d.trace.joined(separator: "; ")
        return .success(r)
    }

    func inetAddrType(_ address: IPv4Address) -> RouteType { resolver.inetAddrType(address) }

    /// The next combination of choices; false when every one was run.
    func next() -> Bool {
        let n = call
        call = 0
        choices = Array(choices.prefix(n))
        counts = Array(counts.prefix(n))
        var i = n - 1
        while i >= 0 {
            if choices[i] + 1 < counts[i] {
                choices[i] += 1
                choices = Array(choices.prefix(i + 1))
                counts = Array(counts.prefix(i + 1))
                return true
            }
            i -= 1
        }
        return false
    }
}
