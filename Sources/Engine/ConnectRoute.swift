import NetCore
import SystemPackage

/// What a connecting socket brings to `tcp_v4_connect()`'s route decisions: the destination, the socket's bound
/// address and port (`inet_saddr`, `inet_sport`), its options (SO_BINDTODEVICE, SO_MARK, IP_TOS, SO_DONTROUTE, the
/// owner's uid) and a source route's first hop (`inet_opt->opt.faddr`).
public struct ConnectRouteQuery: Sendable, Equatable {
    public var destination: IPv4Address
    public var destinationPort: UInt16
    public var source: IPv4Address
    public var sourcePort: UInt16
    public var device: String?
    public var mark: UInt32
    public var tos: UInt8
    public var dontRoute: Bool
    public var uid: UInt32
    /// The first hop of an LSRR/SSRR option: the lookups go there, the connection stays to `destination`.
    public var sourceRouteFirstHop: IPv4Address?

    public init(destination: IPv4Address, destinationPort: UInt16, source: IPv4Address = .any, sourcePort: UInt16 = 0,
                device: String? = nil, mark: UInt32 = 0, tos: UInt8 = 0, dontRoute: Bool = false, uid: UInt32 = 0,
                sourceRouteFirstHop: IPv4Address? = nil) {
        self.destination = destination; self.destinationPort = destinationPort; self.source = source
        self.sourcePort = sourcePort; self.device = device; self.mark = mark; self.tos = tos; self.dontRoute = dontRoute
        self.uid = uid; self.sourceRouteFirstHop = sourceRouteFirstHop
    }

    /// Where connect's lookups go: a source route's first hop (`inet_opt->opt.faddr`), else the destination.
    public var lookupDestination: IPv4Address { sourceRouteFirstHop ?? destination }

    /// The flow of connect's first lookup, as `ip_route_connect_init` fills `flowi4`: the lookup destination, the
    /// bound source (0: choose), the socket's device, mark, `RT_CONN_FLAGS` tos (`tos & 0xfc`, IPTOS_RT_MASK),
    /// SO_DONTROUTE, protocol TCP, the ports (FLOWI_FLAG_ANY_SPORT while the source port is 0) and the uid.
    public var flow: Flow {
        Flow(destination: lookupDestination, source: source, outputDevice: device, mark: mark, tos: tos & 0xfc,
             dontRoute: dontRoute, proto: .tcp, sourcePort: sourcePort, destinationPort: destinationPort, uid: uid)
    }
}

/// The route decisions of one connect, as `tcp_v4_connect()` makes them.
public struct ConnectRoute: Sendable {
    /// One step, named after the kernel function that took it.
    public struct Step: Sendable, Equatable {
        public var function: String
        public var detail: String
        public init(_ function: String, _ detail: String) { self.function = function; self.detail = detail }
    }
    /// The route the connection uses (after lookup #3 when the port changed), or the errno connect() returns.
    public var result: Result<ResolvedRoute, Errno>
    /// `fl4->saddr` after `ip_route_connect` (the socket's source), `.any` when it failed before.
    public var source: IPv4Address
    /// The connection's destination: the route's (0.0.0.0 becomes 127.0.0.1), or the asked one with a source route.
    public var destination: IPv4Address
    /// The source port `choosePort` gave; nil when connect failed before it.
    public var port: UInt16?
    /// True when the failure came from `choosePort` (no route decision failed).
    public var portFailed = false
    public var steps: [Step]

    /// Mirrors the route part of `tcp_v4_connect()` (net/ipv4/tcp_ipv4.c): a source route sends the lookups to its
    /// first hop (daddr 0.0.0.0 with one: EINVAL); `ip_route_connect()` (include/net/route.h) with
    /// `ip_route_connect_init` (proto 6, tos & 0xfc, FLOWI_FLAG_ANY_SPORT while the port is 0) makes lookup #1 when
    /// the source or destination is unset and lookup #2 with what #1 chose; a broadcast or multicast route
    /// (RTCF_BROADCAST | RTCF_MULTICAST) is ENETUNREACH; `choosePort` is `inet_hash_connect` (the engine's port
    /// table, or the port a kernel chose), called with the source and destination; `ip_route_newports()` makes
    /// lookup #3 when the port changed. The engine's connect, `netlab route --connect` and any explanation call this
    /// one function; `resolver` decides each lookup.
    public static func decide<R: RouteResolver>(_ q: ConnectRouteQuery, resolver: R,
                                                choosePort: (_ source: IPv4Address, _ destination: IPv4Address, _ steps: inout [Step]) -> Result<UInt16, Errno>)
        -> ConnectRoute {
        var steps: [Step] = []
        var out = ConnectRoute(result: .failure(.networkUnreachable), source: .any, destination: q.destination, port: nil, steps: [])
        func done(_ e: Errno) -> ConnectRoute { out.result = .failure(e); out.steps = steps; return out }
        if let first = q.sourceRouteFirstHop {
            if q.destination == .any {
                steps.append(Step("tcp_v4_connect", "source route with daddr 0.0.0.0: EINVAL"))
                return done(.invalidArgument)
            }
            steps.append(Step("tcp_v4_connect", "IP options carry a source route: nexthop = faddr \(first), daddr stays \(q.destination)"))
        }
        var flow = q.flow
        func describe(_ r: ResolvedRoute) -> String {
            "saddr \(r.source) dev \(r.device) via \(r.nextHop)\(r.kind != .unicast ? " (\(r.kind.rawValue))" : "")\(r.table.map { " table \($0)" } ?? "")\(r.explanation.isEmpty ? "" : " — \(r.explanation)")"
        }
        // ip_route_connect: lookup #1 chooses the source (and turns daddr 0.0.0.0 into 127.0.0.1), #2 uses it.
        if flow.destination == .any || flow.source == .any {
            switch resolver.outputRoute(flow) {
            case .failure(let e):
                steps.append(Step("ip_route_connect", "lookup #1 (\(flow)) failed: \(e.name)"))
                return done(e)
            case .success(let r):
                steps.append(Step("ip_route_connect", "lookup #1 (\(flow)): \(describe(r))"))
                flow.source = r.source
                flow.destination = r.destination
            }
        }
        var rt: ResolvedRoute
        switch resolver.outputRoute(flow) {
        case .failure(let e):
            steps.append(Step("ip_route_connect", "lookup #2 (\(flow)) failed: \(e.name)"))
            return done(e)
        case .success(let r):
            steps.append(Step("ip_route_connect", "lookup #2 (\(flow)): \(describe(r))"))
            rt = r
        }
        if rt.kind == .broadcast || rt.kind == .multicast {
            steps.append(Step("tcp_v4_connect", "route is \(rt.kind.rawValue) (RTCF_\(rt.kind == .broadcast ? "BROADCAST" : "MULTICAST")): ENETUNREACH"))
            return done(.networkUnreachable)
        }
        out.source = q.source == .any ? rt.source : q.source
        if q.sourceRouteFirstHop == nil { out.destination = rt.destination }
        let port: UInt16
        switch choosePort(out.source, out.destination, &steps) {
        case .failure(let e):
            out.portFailed = true
            return done(e)
        case .success(let p): port = p
        }
        out.port = port
        // ip_route_newports: lookup #3 with the real ports, when they changed.
        if port != q.sourcePort {
            flow.sourcePort = port
            flow.anySourcePort = false
            switch resolver.outputRoute(flow) {
            case .failure(let e):
                steps.append(Step("ip_route_newports", "lookup #3 (\(flow)) failed: \(e.name)"))
                return done(e)
            case .success(let r):
                steps.append(Step("ip_route_newports", "lookup #3 (\(flow)): \(describe(r))"))
                rt = r
            }
        }
        out.result = .success(rt)
        out.steps = steps
        return out
    }
}
