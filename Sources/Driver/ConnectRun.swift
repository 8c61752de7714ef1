import Engine
import Files
import Foundation
import CNetSys
import Glibc
import NetCore
import Netlink
import SystemPackage

/// Where a connect runs and what is watched: the connecting node and every node whose interfaces are captured.
public struct ConnectScope: Sendable {
    public var sourceNode: String
    public var nodes: [(node: String, namespace: NetworkNamespace)]
    public init(sourceNode: String, nodes: [(node: String, namespace: NetworkNamespace)]) {
        self.sourceNode = sourceNode; self.nodes = nodes
    }
    public var sourceNamespace: NetworkNamespace { nodes.first { $0.node == sourceNode }!.namespace }
}

/// One side of a comparison as reports print it (`netlab connect --json`: `engine` and `kernel`).
public struct SideReport: Codable, Sendable, Equatable {
    public var source: String?
    public var sport: UInt16?
    public var dev: String?
    /// The next hop the SYN was sent to (`via` as in the topology file).
    public var via: String?
    public var path: [String]
    public var reply_path: [String]
    /// established, refused, timeout, unreachable, or error.
    public var result: String
    public var errno: String?
    public var syn: SynSummary?
    public var reply: String?
    public var handshake_ms: Double?
    public var echoed: String?
    public var hops: [String]
    public var reply_hops: [String]
    public var trace: [String]
    /// The TIME_WAIT socket this side's connect took over (`tcp_twsk_unique`), if any.
    public var time_wait: String?
    /// SYNs on the wire (1 + retransmissions).
    public var syns: Int?
}

public struct ConnectComparison: Codable, Sendable {
    public var engine: SideReport
    public var kernel: SideReport?
    public var differences: [String]
    public var agree: Bool
    /// Notes that are not differences (an equal-cost leg the kernel's hash chose).
    public var notes: [String]
    /// The kernel took another equal-cost leg than the engine, one the engine's lookups allow.
    public var otherLeg = false

    enum CodingKeys: String, CodingKey { case engine, kernel, differences, agree, notes }
}

/// A connect by the engine and (optionally) by the kernel in the same namespace, each watched on every interface of
/// the scope, and compared field by field.
public enum ConnectRun {
    /// `cache` keeps guards and captures open across runs (see `ConnectCache`); without it they live for this run only.
    /// `pcap` receives both connects' frames (checked beforehand with `OutputTarget.prepare`).
    public static func run(_ spec: ConnectSpec, scope: ConnectScope, kernel: Bool, pcap: OutputTarget? = nil,
                           seed: UInt64? = nil, cache: ConnectCache? = nil) throws -> ConnectComparison {
        try run(spec, scope: scope, kernel: kernel, pcap: pcap, seed: seed, cache: cache, shared: nil)
    }

    static func run(_ spec: ConnectSpec, scope: ConnectScope, kernel: Bool, pcap: OutputTarget?, seed: UInt64?, cache: ConnectCache?,
                    shared given: SharedState?) throws -> ConnectComparison {
        let ns = scope.sourceNamespace
        let timing = ProcessInfo.processInfo.environment["NETLAB_TIMING"] != nil
        var t0 = monotonicNanoseconds()
        func mark(_ what: String) {
            guard timing else { return }
            let t = monotonicNanoseconds()
            FileHandle.standardError.write("timing: \(what) \((t - t0) / 1000) µs\n".data(using: .utf8)!)
            t0 = t
        }
        var file = PcapNG()
        let own = cache == nil
        let guardian = try cache?.guardian(for: ns) ?? EngineGuard.install(in: ns)
        defer { if own { try? guardian.remove(); mark("guard removed") } }
        mark("guard")

        let capture = try cache?.capture(scope.nodes) ?? LabCapture(scope.nodes)
        let handles = cache?.handles(for: ns) ?? NodeHandles(ns)
        let shared = try given ?? cache?.shared(scope.nodes) ?? SharedState(scope.nodes, unknownHistory: true)
        let unknownAtStart = shared.unknownHistory
        for i in capture.interfaces { file.addInterface("\(i.node):\(i.interface)") }
        mark("capture opened")
        // Drain until the last packet of the run has crossed every hop it takes (a busy machine runs the veth
        // backlogs late); a second at most.
        let settle: Int64 = 1_000_000_000
        /// Bring the lab back to the state a fresh lab has for what the runs share (`SharedState`).
        func settleLab() throws {
            shared.record(try capture.collect())
            for _ in 0..<3 {
                try shared.settle(for: scope.sourceNode)
                let seen = try capture.collect()
                shared.record(seen)
                if !seen.contains(where: { $0.frame.isOutgoing && $0.frame.ipv4.map { $0.count > 9 && $0[$0.startIndex + 9] == 1 } == true }) { break }
            }
            mark("lab settled")
        }
        /// The answers tcp_twsk_unique gives for the TIME_WAITs to this destination at monotonic time `at`.
        func timeWaitAnswers(_ st: NodeState, at: Int64) -> [PortTable.FourTuple: Bool] {
            SharedState.timeWaitAnswers(st.ports(at: at), destination: spec.destination, port: spec.port,
                                        bound: spec.bindAddress != nil || spec.bindPort != nil, sysctls: st.sysctls)
        }
        func readState() throws -> NodeState {
            var st = try NodeState.read(handles, history: shared.history)
            if shared.waitOutTimeWait(st, destination: spec.destination, port: spec.port) { st = try NodeState.read(handles, history: shared.history) }
            mark("node state")
            return st
        }
        var engineAnswers: [PortTable.FourTuple: Bool] = [:]
        func runEngine(_ spec: ConnectSpec, state: NodeState, comment: String) throws -> (ConnectOutcome, IPv4Address?) {
            engineAnswers = timeWaitAnswers(state, at: monotonicNanoseconds())
            var e = try EngineRunner(namespace: ns, handles: handles).run(spec, state: state, guardian: guardian, seed: seed)
            mark("engine connect")
            let eObs = try capture.collect(settle: settle)
            shared.record(eObs)
            for o in eObs { file.add(o.frame.bytes, interface: o.hop, time: o.time, direction: o.frame.isOutgoing ? .outbound : .inbound, comment: comment) }
            e.observed = observe(eObs, e, spec: spec, scope: scope)
            let wire = try nextHop(e.observed, in: ns, links: state.snapshot.links, prefer: e.nextHop, netlink: handles.netlink)
            if let src = e.source, let sport = e.sourcePort {
                try SharedState.resetHalfOpen(eObs, flow: FlowKey(source: src, sourcePort: sport, destination: spec.destination, destinationPort: spec.port),
                                              sourceNode: scope.sourceNode, connected: e.errno == nil, device: e.device,
                                              nextHop: e.nextHop, links: state.snapshot.links, namespace: ns)
            }
            mark("engine observed")
            return (e, wire)
        }
        try settleLab()
        var state = try readState()
        var (e, engineWireNextHop) = try runEngine(spec, state: state, comment: "engine")

        var k: ConnectOutcome?
        var stateNotes: [String] = []
        if kernel {
            // The kernel must find the lab as the engine did: ICMP buckets and neighbours settled again, and every
            // TIME_WAIT to the destination giving tcp_twsk_unique's answer of the engine's run — else the engine
            // runs again on the state the kernel is about to find.
            // The sockets as the kernel's connect finds them (the last read below, right before it).
            var before: NodeState?
            for attempt in 0..<3 {
                try settleLab()
                let now = try state.unchanged(at: monotonicNanoseconds(), destination: spec.destination, port: spec.port)
                    ?? NodeState.read(handles, history: shared.history, snapshot: state.snapshot)
                before = now
                let answers = timeWaitAnswers(now, at: monotonicNanoseconds())
                if answers == engineAnswers { break }
                if attempt == 2 {
                    stateNotes.append("TIME_WAIT sockets to \(spec.destination):\(spec.port) changed between the runs (tcp_tw_reuse_delay passed or expired) three times; compared as they were")
                    break
                }
                stateNotes.append("a TIME_WAIT to \(spec.destination):\(spec.port) changed tcp_twsk_unique's answer after the engine's run (tcp_tw_reuse_delay passed or it expired): the engine ran again on the kernel's state")
                state = try readState()
                try settleLab()
                (e, engineWireNextHop) = try runEngine(spec, state: state, comment: "engine, again on the kernel's TIME_WAIT state")
            }
            var ko = try KernelRunner(namespace: ns, handles: handles).run(spec)
            mark("kernel connect")
            let kObs = try capture.collect(settle: settle)
            shared.record(kObs)
            mark("kernel collected \(kObs.count)")
            for o in kObs { file.add(o.frame.bytes, interface: o.hop, time: o.time, direction: o.frame.isOutgoing ? .outbound : .inbound, comment: "kernel") }
            ko.observed = observe(kObs, ko, spec: spec, scope: scope)
            if let src = ko.source, let sport = ko.sourcePort {
                let t = PortTable.FourTuple(source: src, sourcePort: sport, destination: spec.destination, destinationPort: spec.port)
                ko.reusedTimeWait = before?.ports.timeWait.first { $0.tuple == t }
                shared.history.record(kObs, flow: t, node: scope.sourceNode, bound: spec.bindAddress != nil || spec.bindPort != nil)
            }
            mark("kernel analysed")
            if let obs = ko.observed {
                ko.device = obs.device
                ko.nextHop = try nextHop(obs, in: ns, links: state.snapshot.links, prefer: e.nextHop, netlink: handles.netlink)
            }
            if let src = ko.source, let sport = ko.sourcePort {
                try SharedState.resetHalfOpen(kObs, flow: FlowKey(source: src, sourcePort: sport, destination: spec.destination, destinationPort: spec.port),
                                              sourceNode: scope.sourceNode, connected: ko.errno == nil, device: ko.device,
                                              nextHop: ko.nextHop, links: state.snapshot.links, namespace: ns)
            }
            k = ko
        }
        mark("kernel observed")
        var c = compare(engine: e, kernel: k)
        // The kernel's multipath hash (unseen) chose another equal-cost leg than the engine's first: where the SYN
        // goes from there, and so the outcome, depend on the leg. Run the engine again with the kernel's leg first,
        // so that everything else is compared on the same leg.
        if c.otherLeg, let kd = k?.device, let kn = k?.nextHop {
            var again = spec
            again.preferredLeg = Leg(device: kd, nextHop: kn)
            // The kernel's source came from another leg of the lookup that chose it: take that one first there too.
            if let ks = k?.source, ks != e.source, let leg = e.sourceLegs.first(where: { $0.source == ks }) {
                again.preferredSourceLeg = leg.leg
            }
            // The node as the kernel's connect found it (its own socket, now in TIME_WAIT, was not there yet).
            try settleLab()
            (e, engineWireNextHop) = try runEngine(again, state: state, comment: "engine, on the kernel's leg")
            let first = c.notes
            c = compare(engine: e, kernel: k)
            c.notes = first.map { $0 + "; the engine ran again on that leg" } + c.notes
        }
        c.notes += stateNotes
        // The routers' ICMP buckets may have been spent before this process watched them: a difference where one
        // side got an ICMP error can be the order of the runs. Wait until every bucket is surely full and run both
        // again; the second comparison is the one reported.
        if !c.agree, unknownAtStart, kernel, c.engine.reply?.hasPrefix("ICMP") == true || c.kernel?.reply?.hasPrefix("ICMP") == true {
            shared.unknownHistory = false
            shared.assumeSpent()
            var again = try run(spec, scope: scope, kernel: kernel, pcap: pcap, seed: seed, cache: cache, shared: shared)
            again.notes.insert("first comparison differed by an ICMP error (\(c.differences.joined(separator: "; "))); the routers' ICMP rate-limit buckets were not known full, so both ran again once they were", at: 0)
            return again
        }
        if let pcap { try pcap.write(file.bytes) }
        if let wire = engineWireNextHop, let decided = e.nextHop, wire != decided, e.observed?.device != "lo" {
            c.differences.append("engine decided next hop \(decided) but its SYN went to \(wire)")
            c.agree = false
        }
        return c
    }

    static func observe(_ obs: [Observation], _ o: ConnectOutcome, spec: ConnectSpec, scope: ConnectScope) -> ObservedPath? {
        guard let s = o.source, let p = o.sourcePort, s != .any else { return nil }
        return ObservedPath.analyse(obs, flow: FlowKey(source: s, sourcePort: p, destination: spec.destination, destinationPort: spec.port),
                                    sourceNode: scope.sourceNode)
    }

    /// The next hop the first SYN was sent to: the neighbour whose MAC the frame carried (the engine's own next hop
    /// when several neighbours share that MAC), or on a loopback device the SYN's destination itself. `links` are
    /// the node's (from the snapshot the run started with); the neighbours are read now.
    static func nextHop(_ observed: ObservedPath?, in ns: NetworkNamespace, links: [LinkInfo], prefer: IPv4Address?,
                        netlink: NetlinkSocket? = nil) throws -> IPv4Address? {
        guard let o = observed, let device = o.device, let link = links.first(where: { $0.name == device }) else { return nil }
        if link.isLoopback { return o.synDestination }
        guard let mac = o.nextHopMAC else { return nil }
        let candidates = try (netlink ?? NetlinkSocket(in: ns)).neighbors.list().filter { $0.index == link.index && $0.lladdr == mac }.map(\.address)
        if let prefer, candidates.contains(prefer) { return prefer }
        return candidates.first
    }

    static func side(_ o: ConnectOutcome) -> SideReport {
        let obs = o.observed
        return SideReport(source: o.source.map(\.description), sport: o.sourcePort, dev: o.device, via: o.nextHop?.description,
                          path: obs?.path ?? [], reply_path: obs?.replyPath ?? [], result: ConnectResult(errno: o.errno).kind,
                          errno: o.errno?.name, syn: obs?.syn, reply: obs?.reply,
                          handshake_ms: o.handshakeNanoseconds.map { Double($0) / 1e6 },
                          echoed: o.echoed.map { String(decoding: $0, as: UTF8.self) },
                          hops: obs?.synHops ?? [], reply_hops: obs?.replyHops ?? [], trace: o.trace,
                          time_wait: o.reusedTimeWait.map { tw in
                              "took over TIME_WAIT \(tw.tuple.source):\(tw.tuple.sourcePort) → \(tw.tuple.destination):\(tw.tuple.destinationPort)" +
                                  (tw.sndNxt.map { " (tw_snd_nxt \($0))" } ?? " (tw_snd_nxt not watched)") },
                          syns: obs.map(\.synsSent))
    }

    static func compare(engine e: ConnectOutcome, kernel k: ConnectOutcome?) -> ConnectComparison {
        let es = side(e)
        var diffs: [String] = []
        var notes: [String] = []
        // The engine's own packets must leave where it decided.
        if let wire = e.observed?.device, let dev = e.device, wire != dev {
            diffs.append("engine decided dev \(dev) but its SYN left by \(wire)")
        }
        guard let k else { return ConnectComparison(engine: es, kernel: nil, differences: diffs, agree: diffs.isEmpty, notes: notes) }
        let ks = side(k)
        func diff<T: Equatable>(_ field: String, _ a: T?, _ b: T?) {
            if a != b { diffs.append("\(field): engine \(a.map { "\($0)" } ?? "-"), kernel \(b.map { "\($0)" } ?? "-")") }
        }
        diff("result", es.result, ks.result)
        diff("errno", es.errno, ks.errno)
        if es.source != nil, ks.source != nil, ks.source != "0.0.0.0" { diff("source", es.source, ks.source) }
        var otherLeg = false
        if es.source != ks.source || es.dev != ks.dev || es.via != ks.via, let kd = ks.dev, let kn = ks.via,
           e.alternatives.contains(where: { $0.device == kd && $0.nextHop.description == kn && $0.source.description == ks.source }) {
            otherLeg = true
            diffs.removeAll { $0.hasPrefix("source:") }
            notes.append("the kernel's hash chose another equal-cost leg (src \(ks.source ?? "-") dev \(kd) via \(kn)); the engine allows it")
        }
        if !otherLeg, ks.syn != nil || es.syn != nil {
            diff("dev", es.dev, ks.dev)
            diff("via", es.via, ks.via)
        }
        if !otherLeg {
            if es.path != ks.path { diffs.append("path: engine \(es.path), kernel \(ks.path)") }
            if es.reply_path != ks.reply_path { diffs.append("reply_path: engine \(es.reply_path), kernel \(ks.reply_path)") }
        }
        if let a = es.syn, let b = ks.syn {
            diff("syn options", a.options, b.options)
            diff("syn mss", a.mss, b.mss)
            diff("syn window", a.window, b.window)
            diff("syn window_scale", a.windowScale, b.windowScale)
            diff("syn ttl", a.ttl, b.ttl)
            diff("syn df", a.df, b.df)
            diff("syn tos", a.tos, b.tos)
            diff("syn ip_options", a.ipOptions, b.ipOptions)
            diff("syn flags", a.flags, b.flags)
        } else if (es.syn == nil) != (ks.syn == nil) {
            diffs.append("syn: \(es.syn == nil ? "engine sent none" : "kernel sent none")")
        }
        // On the same 4-tuple both sides find the same TIME_WAIT (if any): both take it over or neither, and taken
        // over it fixes the ISN (tw_snd_nxt + 65535 + 2) and the SYN's TS echo (tw_ts_recent), when it was watched.
        if es.source == ks.source, es.sport == ks.sport, es.sport != nil {
            diff("time_wait", e.reusedTimeWait != nil ? "taken over" : "not taken over", k.reusedTimeWait != nil ? "taken over" : "not taken over")
            if let a = es.syn, let b = ks.syn {
                if let tw = e.reusedTimeWait, tw.sndNxt == nil {
                    notes.append("the TIME_WAIT the connect took over left before this session watched it: ISN and TS echo not compared")
                } else {
                    diff("syn ts echo", a.tsEcho, b.tsEcho)
                    if e.reusedTimeWait != nil { diff("syn seq (tw_snd_nxt + 65537)", a.seq, b.seq) }
                }
            }
        }
        // Both connected: a side that sent its SYN again missed a reply the other got (the first SYN-ACK lost to a
        // late packet socket, say) — a difference of the run, not of the network.
        if es.result == "established", ks.result == "established" { diff("syns sent", es.syns, ks.syns) }
        diff("echoed", es.echoed, ks.echoed)
        return ConnectComparison(engine: es, kernel: ks, differences: diffs, agree: diffs.isEmpty, notes: notes, otherLeg: otherLeg)
    }
}
