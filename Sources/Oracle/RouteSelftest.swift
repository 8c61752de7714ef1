import Engine
import Foundation
import NetCore
import Netlink
import Resolver

/// Differential testing of the resolver against the kernel: many lookups in a namespace, every disagreement kept.
public struct RouteSelftest {
    public struct Result: Sendable {
        public var lookups = 0
        public var agreements = 0
        public var disagreements: [RouteComparison] = []
        /// What the kernel answered, by kind of lookup: "output via gateway", "output on-link", "output local",
        /// "output ENETUNREACH", "connect ENETUNREACH", "input forwarded",
        /// "input delivered", "input EINVAL", ... (so a run shows what it exercised).
        public var outcomes: [String: Int] = [:]
        public init() {}
        public mutating func add(_ other: Result) {
            lookups += other.lookups
            agreements += other.agreements
            disagreements += other.disagreements
            outcomes.merge(other.outcomes, uniquingKeysWith: +)
        }
        /// "input 5200 (forwarded 1100, delivered 900, EINVAL 2500, ...)" and the same for output.
        public var outcomeSummary: [String] {
            ["output", "input", "connect"].compactMap { side in
                let mine = outcomes.filter { $0.key.hasPrefix(side + " ") }
                guard !mine.isEmpty else { return nil }
                let parts = mine.sorted { $0.value > $1.value }.map { "\($0.key.dropFirst(side.count + 1)) \($0.value)" }
                return "\(side) lookups: \(mine.values.reduce(0, +)) (\(parts.joined(separator: ", ")))"
            }
        }
    }

    /// Queries that exercise a namespace: each destination plainly and with every selector the rules may test.
    public static func queries(snapshot: RoutingSnapshot, destinations: [IPv4Address], random: inout EngineRandom,
                               count: Int? = nil) -> [RouteQuery] {
        let locals = snapshot.addresses.map(\.prefix.address).filter { !$0.isLoopback }
        let devices = snapshot.links.map(\.name)
        var out: [RouteQuery] = []
        for d in destinations {
            out.append(RouteQuery(destination: d))
            out.append(RouteQuery(destination: d, proto: .udp))
            for s in locals { out.append(RouteQuery(destination: d, source: s)) }
            for dev in devices { out.append(RouteQuery(destination: d, device: dev)) }
            for m: UInt32 in [1, 2, 3, 0x13] { out.append(RouteQuery(destination: d, mark: m)) }
            out.append(RouteQuery(destination: d, tos: 0x10))
            out.append(RouteQuery(destination: d, destinationPort: 443))
            out.append(RouteQuery(destination: d, sourcePort: 1500, destinationPort: 80))
            out.append(RouteQuery(destination: d, uid: 1500))
            // Connect's route decisions (a kernel connect beside ConnectRoute.decide): plainly, from each own
            // address, bound to each device, with a mark and a tos.
            var c = RouteQuery(destination: d)
            c.connect = true
            out.append(c)
            for s in locals { var q = c; q.source = s; out.append(q) }
            for dev in devices { var q = c; q.device = dev; out.append(q) }
            var m = c; m.mark = 1; out.append(m)
            var t = c; t.tos = 0x10; out.append(t)
            // Input lookups: a packet to d arriving on each device, from another lab address (forwarded or
            // delivered), from none, and from one of the namespace's own (a martian unless accept_local).
            let others = destinations.filter { $0 != d }
            for (k, dev) in devices.enumerated() {
                if !others.isEmpty { out.append(RouteQuery(destination: d, source: others[(k + out.count) % others.count], inputDevice: dev)) }
                if !locals.isEmpty { out.append(RouteQuery(destination: d, source: locals[(k + out.count) % locals.count], inputDevice: dev)) }
            }
        }
        guard let n = count else { return out }
        // A random sample, with random combinations of selectors.
        var sample: [RouteQuery] = []
        for _ in 0..<n {
            var q = out[Int(random.below(UInt32(out.count)))]
            if random.below(3) == 0, !locals.isEmpty, q.inputDevice == nil { q.source = locals[Int(random.below(UInt32(locals.count)))] }
            if random.below(4) == 0 { q.mark = random.below(16) }
            if random.below(5) == 0 { q.tos = [0, 0x10, 0x20][Int(random.below(3))] }
            if random.below(4) == 0 { q.destinationPort = [22, 80, 443, 500][Int(random.below(4))] }
            if random.below(6) == 0 { q.sourcePort = UInt16(900 + random.below(1200)) }
            if random.below(6) == 0, !q.connect { q.proto = [IPProtocol.tcp, .udp, .icmp][Int(random.below(3))] }
            if q.connect { q.uid = 0 }
            sample.append(q)
        }
        return sample
    }

    /// Run `queries` in `namespace` through the resolver and RTM_GETROUTE.
    public static func run(_ queries: [RouteQuery], in namespace: NetworkNamespace) throws -> Result {
        let socket = try NetlinkSocket(in: namespace)
        let resolver = FibResolver(snapshot: try RoutingSnapshot.read(socket: socket, namespace: namespace))
        var r = Result()
        for q in queries {
            let c = try RouteComparison.run(q, resolver: resolver, socket: socket, namespace: namespace, connect: q.connect)
            r.lookups += 1
            if c.agree { r.agreements += 1 } else { r.disagreements.append(c) }
            let side = q.connect ? "connect" : q.inputDevice == nil ? "output" : "input"
            let what = c.kernel.error ?? (side == "input" ? (c.kernel.dev == "lo" ? "delivered" : "forwarded") : c.kernel.dev == "lo" ? "local" : c.kernel.gateway != nil ? "via gateway" : "on-link")
            r.outcomes[side + " " + what, default: 0] += 1
        }
        return r
    }
}
