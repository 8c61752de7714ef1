import Engine
import Foundation
import NetCore
import Netlink
import Resolver
import SystemPackage

/// The inputs of a route lookup, as `netlab route` takes them.
public struct RouteQuery: Sendable, Codable, Equatable {
    public var destination: IPv4Address
    public var source: IPv4Address
    public var device: String?
    public var mark: UInt32
    public var tos: UInt8
    public var proto: UInt8
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var uid: UInt32
    /// An input lookup (`iif`): the route of a packet arriving on this device, instead of an output lookup.
    public var inputDevice: String?
    public init(destination: IPv4Address, source: IPv4Address = .any, device: String? = nil, mark: UInt32 = 0, tos: UInt8 = 0,
                proto: UInt8 = 6, sourcePort: UInt16 = 0, destinationPort: UInt16 = 0, uid: UInt32 = 0,
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
        w += ["ipproto", String(proto)]
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
        return candidates.contains { c in
            c.source == k.source && c.dev == k.dev && c.gateway == k.gateway && (c.table == nil || k.table == nil || c.table == k.table)
        }
    }

    /// Resolve `query` in `namespace` with the resolver and with the kernel, and compare.
    public static func run(_ query: RouteQuery, in namespace: NetworkNamespace, connect: Bool = false) throws -> RouteComparison {
        let socket = try NetlinkSocket(in: namespace)
        let snapshot = try RoutingSnapshot.read(socket: socket, namespace: namespace)
        return try run(query, resolver: FibResolver(snapshot: snapshot), socket: socket, namespace: namespace, connect: connect)
    }

    public static func run(_ query: RouteQuery, resolver: FibResolver, socket: NetlinkSocket, namespace: NetworkNamespace,
                           connect: Bool) throws -> RouteComparison {
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
            case .failure(let e): return RouteAnswer(error: name(e))
            }
        }
        if !connect {
            let d: RouteDecision, untraced: Result<ResolvedRoute, Errno>
            if let iif = query.inputDevice {
                d = resolver.decideInput(query.flow, inputDevice: iif)
                untraced = resolver.decideInput(query.flow, inputDevice: iif, traced: false).result
            } else {
                d = resolver.decide(query.flow)
                untraced = resolver.outputRoute(query.flow)
            }
            // An input route's source is the packet's (RTA_SRC, absent when none was given).
            func side(_ r: ResolvedRoute) -> RouteAnswer {
                var a = answer(r)
                if query.inputDevice != nil { a.source = query.source == .any ? nil : query.source.description }
                return a
            }
            let k = kernelGet(query)
            let (e, c): (RouteAnswer, [RouteAnswer])
            switch d.result {
            case .success(let r): (e, c) = (side(r), d.candidates.map(side))
            case .failure(let err): (e, c) = (RouteAnswer(error: name(err)), [])
            }
            // The engine calls the untraced lookup: it must answer exactly what the traced one explains.
            let fast: RouteAnswer
            switch untraced {
            case .success(let r): fast = side(r)
            case .failure(let err): fast = RouteAnswer(error: name(err))
            }
            let trace = fast == e ? d.trace : d.trace + ["the untraced lookup (the engine's) answered otherwise: \(fast)"]
            let all = c + Set(d.candidateErrors.map(name)).sorted().map { RouteAnswer(error: $0) }
            return RouteComparison(query: query, connect: false, engine: e, candidates: all, kernel: k,
                                   agree: fast == e && decide(e, all, k), trace: trace)
        }
        // Kernel: a real non-blocking connect with the same options; getsockname gives the source and port, and the
        // egress is what RTM_GETROUTE says for that 4-tuple (connect's lookup #3).
        let kc = try KernelConnect.attempt(query, in: namespace)
        var kernel: RouteAnswer
        if let err = kc.error {
            kernel = RouteAnswer(error: name(err))
        } else {
            var q3 = query
            q3.source = kc.source
            q3.sourcePort = kc.port
            q3.proto = 6
            kernel = kernelGet(q3)
            kernel.source = kc.source.description
        }
        // Resolver: connect's lookups (#1 picks the source, #2 with it, #3 with the port the kernel chose).
        var trace: [String] = []
        var flow = query.flow
        flow.proto = 6
        flow.sourcePort = query.sourcePort
        flow.anySourcePort = query.sourcePort == 0     // ip_route_connect_init
        var engine = RouteAnswer()
        var candidates: [RouteAnswer] = []
        var sources: [IPv4Address] = [query.source]
        if query.source == .any {
            let d1 = resolver.decide(flow)
            trace += ["lookup #1 (\(flow)):"] + d1.trace.map { "  " + $0 }
            switch d1.result {
            case .failure(let e): engine.error = name(e)
            case .success: sources = d1.candidates.map(\.source)
            }
        }
        if engine.error == nil {
            for s in Array(Set(sources.map(\.value))).sorted().map(IPv4Address.init) {
                var f2 = flow
                f2.source = s
                let d2 = resolver.decide(f2)
                trace += ["lookup #2 (\(f2)):"] + d2.trace.map { "  " + $0 }
                if case .failure(let e) = d2.result { engine.error = name(e); break }
                var f3 = f2
                f3.sourcePort = kc.error == nil ? kc.port : 0
                f3.anySourcePort = false
                let d3 = resolver.decide(f3)
                trace += ["lookup #3 (\(f3)):"] + d3.trace.map { "  " + $0 }
                switch d3.result {
                case .failure(let e): engine.error = name(e)
                case .success: candidates += d3.candidates.map { var a = answer($0); a.source = s.description; return a }
                }
                if engine.error != nil { break }
            }
        }
        if engine.error == nil, let first = candidates.first { engine = first } else { candidates = [] }
        return RouteComparison(query: query, connect: true, engine: engine, candidates: candidates, kernel: kernel,
                               agree: decide(engine, candidates, kernel), trace: trace)
    }
}
