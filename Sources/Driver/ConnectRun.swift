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

/// The I/O of one comparison run (`ConnectRun` in Oracle decides what runs and compares): the engine's guard and
/// the lab captures (the cache's, or this rig's own until `close`), the state the runs share, and the pcapng both
/// connects' frames go to.
public final class ConnectRig {
    public let scope: ConnectScope
    public let shared: SharedState
    /// Whether the history of the lab's shared state (ICMP buckets) was unknown when the rig opened.
    public let historyWasUnknown: Bool
    let spec: ConnectSpec
    let seed: UInt64?
    let ns: NetworkNamespace
    let guardian: EngineGuard
    let ownGuard: Bool
    let capture: LabCapture
    /// The source node's sockets (netlink, sock_diag, the kernel side's thread), kept by the cache across runs.
    let handles: NodeHandles
    /// The node as the kernel's connect finds it: the last read before it (`kernelFindsEngineState`).
    var kernelFinds: NodeState?
    var file = PcapNG()
    let timing = ProcessInfo.processInfo.environment["NETLAB_TIMING"] != nil
    var t0 = monotonicNanoseconds()
    /// tcp_twsk_unique's answers for the TIME_WAITs to the destination at the engine's last run.
    public private(set) var engineTimeWaitAnswers: [PortTable.FourTuple: Bool] = [:]
    // Drain until the last packet of the run has crossed every hop it takes (a busy machine runs the veth
    // backlogs late); a second at most.
    let settle: Int64 = 1_000_000_000

    /// `cache` keeps guards and captures open across runs (see `ConnectCache`); without it they live for this rig only.
    public init(_ spec: ConnectSpec, scope: ConnectScope, seed: UInt64?, cache: ConnectCache?, shared given: SharedState?) throws {
        self.spec = spec; self.scope = scope; self.seed = seed
        ns = scope.sourceNamespace
        ownGuard = cache == nil
        let start = monotonicNanoseconds()
        guardian = try cache?.guardian(for: ns) ?? EngineGuard.install(in: ns)
        let guarded = monotonicNanoseconds()
        capture = try cache?.capture(scope.nodes) ?? LabCapture(scope.nodes)
        handles = cache?.handles(for: ns) ?? NodeHandles(ns)
        shared = try given ?? cache?.shared(scope.nodes) ?? SharedState(scope.nodes, unknownHistory: true)
        historyWasUnknown = shared.unknownHistory
        for i in capture.interfaces { file.addInterface("\(i.node):\(i.interface)") }
        t0 = start
        mark("guard")
        t0 = guarded
        mark("capture opened")
    }

    /// Remove the guard when it is this rig's own.
    public func close() {
        if ownGuard { try? guardian.remove(); mark("guard removed") }
    }

    func mark(_ what: String) {
        guard timing else { return }
        let t = monotonicNanoseconds()
        FileHandle.standardError.write("timing: \(what) \((t - t0) / 1000) µs\n".data(using: .utf8)!)
        t0 = t
    }

    /// Bring the lab back to the state a fresh lab has for what the runs share (`SharedState`).
    public func settleLab() throws {
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

    /// The source node's state for the engine (TIME_WAITs about to expire waited out).
    public func readState() throws -> NodeState {
        var st = try NodeState.read(handles, history: shared.history)
        if shared.waitOutTimeWait(st, destination: spec.destination, port: spec.port) { st = try NodeState.read(handles, history: shared.history) }
        mark("node state")
        return st
    }

    /// Settle the lab and say whether every TIME_WAIT to the destination gives tcp_twsk_unique's answer of the
    /// engine's last run (the kernel is about to find the lab as the engine did). `state` is the engine's read: the
    /// sockets are read again only when more than timers can have changed them since.
    public func kernelFindsEngineState(_ state: NodeState) throws -> Bool {
        try settleLab()
        let now = try state.unchanged(at: monotonicNanoseconds(), destination: spec.destination, port: spec.port)
            ?? NodeState.read(handles, history: shared.history, snapshot: state.snapshot)
        kernelFinds = now
        return timeWaitAnswers(now, at: monotonicNanoseconds()) == engineTimeWaitAnswers
    }

    /// The engine's connect on the wire (`spec` may prefer a leg), observed on every interface; with the next hop
    /// its first SYN went to.
    public func runEngine(_ spec: ConnectSpec, state: NodeState, comment: String) throws -> (outcome: ConnectOutcome, wireNextHop: IPv4Address?) {
        engineTimeWaitAnswers = timeWaitAnswers(state, at: monotonicNanoseconds())
        var e = try EngineRunner(namespace: ns, handles: handles).run(spec, state: state, guardian: guardian, seed: seed)
        mark("engine connect")
        let eObs = try capture.collect(settle: settle)
        shared.record(eObs)
        for o in eObs { file.add(o.frame.bytes, interface: o.hop, time: o.time, direction: o.frame.isOutgoing ? .outbound : .inbound, comment: comment) }
        e.observed = ConnectWire.observe(eObs, e, spec: spec, scope: scope)
        let wire = try ConnectWire.nextHop(e.observed, in: ns, links: state.snapshot.links, prefer: e.nextHop, netlink: handles.netlink)
        if let src = e.source, let sport = e.sourcePort {
            try SharedState.resetHalfOpen(eObs, flow: FlowKey(source: src, sourcePort: sport, destination: spec.destination, destinationPort: spec.port),
                                          sourceNode: scope.sourceNode, connected: e.errno == nil, device: e.device,
                                          nextHop: e.nextHop, links: state.snapshot.links, namespace: ns)
        }
        mark("engine observed")
        return (e, wire)
    }

    /// The kernel's connect (the one `KernelRunner`), observed on every interface: its device and next hop are what
    /// the wire shows (`preferNextHop` where several neighbours share the MAC), the TIME_WAIT it took over is the one
    /// that held its 4-tuple before.
    public func runKernel(state: NodeState, preferNextHop: IPv4Address?) throws -> ConnectOutcome {
        // The sockets as the kernel's connect finds them: the last read of `kernelFindsEngineState`, right before it.
        let before = try kernelFinds ?? NodeState.read(handles, history: shared.history, snapshot: state.snapshot)
        var ko = try KernelRunner(namespace: ns, handles: handles).run(spec)
        mark("kernel connect")
        let kObs = try capture.collect(settle: settle)
        shared.record(kObs)
        mark("kernel collected \(kObs.count)")
        for o in kObs { file.add(o.frame.bytes, interface: o.hop, time: o.time, direction: o.frame.isOutgoing ? .outbound : .inbound, comment: "kernel") }
        ko.observed = ConnectWire.observe(kObs, ko, spec: spec, scope: scope)
        if let src = ko.source, let sport = ko.sourcePort {
            let t = PortTable.FourTuple(source: src, sourcePort: sport, destination: spec.destination, destinationPort: spec.port)
            ko.reusedTimeWait = before.ports.timeWait.first { $0.tuple == t }
            shared.history.record(kObs, flow: t, node: scope.sourceNode, bound: spec.bindAddress != nil || spec.bindPort != nil)
        }
        mark("kernel analysed")
        if let obs = ko.observed {
            ko.device = obs.device
            ko.nextHop = try ConnectWire.nextHop(obs, in: ns, links: state.snapshot.links, prefer: preferNextHop, netlink: handles.netlink)
        }
        if let src = ko.source, let sport = ko.sourcePort {
            try SharedState.resetHalfOpen(kObs, flow: FlowKey(source: src, sourcePort: sport, destination: spec.destination, destinationPort: spec.port),
                                          sourceNode: scope.sourceNode, connected: ko.errno == nil, device: ko.device,
                                          nextHop: ko.nextHop, links: state.snapshot.links, namespace: ns)
        }
        mark("kernel observed")
        return ko
    }

    /// Both connects' frames, as one pcapng.
    public func writePcap(_ target: OutputTarget) throws { try target.write(file.bytes) }
}

/// The packet analysis of a comparison run: what the capture shows of a connect.
enum ConnectWire {
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
}
