import CNetSys
import Glibc
import Netlink
import NetCore

/// One frame seen on one interface of one node.
public struct Observation: Sendable {
    public var time: Int64
    public var node: String
    public var interface: String
    public var frame: Frame
    public var hop: String { "\(node):\(interface)" }
}

/// An AF_PACKET capture on every interface of every node given (one socket per namespace, bound to all devices,
/// IPv4 only), started before a connect and read after it: the frames of the connect as each node saw them.
public final class LabCapture: @unchecked Sendable {
    struct Tap {
        var node: String; var socket: PacketSocket; var names: [Int32: String]
        /// Devices up with carrier: a unicast frame sent on one arrives at the other end (a veth peer, a LAN member).
        var delivering: Set<Int32>
    }
    var taps: [Tap] = []
    /// Every (node, interface) tapped, in node order: the interfaces of a pcapng file.
    public private(set) var interfaces: [(node: String, interface: String)] = []

    /// Every tap is bound, its filter attached, before this returns (`PacketSocket`): the first packet of a run
    /// that starts afterwards is seen on every interface.
    public init(_ nodes: [(node: String, namespace: NetworkNamespace)]) throws {
        for (node, ns) in nodes {
            let links = try NetlinkSocket(in: ns).links.list()
            let names = Dictionary(links.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
            let delivering = Set(links.filter { $0.isUp && ($0.carrier || $0.isLoopback) }.map(\.index))
            taps.append(Tap(node: node, socket: try PacketSocket(in: ns, filter: .ipv4), names: names, delivering: delivering))
            interfaces += links.sorted { $0.index < $1.index }.map { (node, $0.name) }
        }
    }

    /// Read everything captured so far, in time order. With `settle` (ns), keep reading until every unicast frame a
    /// node sent on a device with carrier has also been seen arriving (at the veth peer, a LAN member, or back on
    /// lo), or `settle` has passed. A frame crosses a veth into the peer's backlog, which a softirq empties later —
    /// on a busy machine milliseconds later — so a fixed pause loses the far hops of the last packets; forwarding
    /// happens in the softirq that receives, so each hop's copy appears before the next one is awaited.
    public func collect(settle: Int64 = 0) throws -> [Observation] {
        var out: [Observation] = []
        func drain() throws {
            for t in taps {
                for f in try t.socket.drain() {
                    out.append(Observation(time: f.time, node: t.node, interface: t.names[f.ifindex] ?? "if\(f.ifindex)", frame: f))
                }
            }
        }
        try drain()
        if settle > 0 {
            let until = monotonicNanoseconds() + settle
            var arrived = Set<[UInt8]>()
            var checked = 0
            while true {
                for o in out[checked...] where !o.frame.isOutgoing { arrived.insert(o.frame.bytes) }
                checked = out.count
                let missing = out.contains { o in
                    guard o.frame.isOutgoing, o.frame.bytes.first.map({ $0 & 1 == 0 }) ?? false, !arrived.contains(o.frame.bytes) else { return false }
                    return taps.first { $0.node == o.node }?.delivering.contains(o.frame.ifindex) ?? false
                }
                if !missing || monotonicNanoseconds() >= until { break }
                var fds = taps.map { pollfd(fd: $0.socket.fd, events: Int16(POLLIN), revents: 0) }
                _ = poll(&fds, nfds_t(fds.count), 2)
                try drain()
            }
        }
        // Stable: frames of one socket keep their order when timestamps tie.
        return out.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)
    }
}

/// What a series of connects in one lab keeps open between them: the engine's guard table in each namespace that
/// connected (installing and deleting an nftables table costs tens of milliseconds, the deletion most) and the lab
/// captures (closing a packet socket waits for an RCU grace period, ~20 ms each). Released by `removeAll` or deinit.
public final class ConnectCache: @unchecked Sendable {
    private var guards: [String: EngineGuard] = [:]
    private var captures: [String: LabCapture] = [:]
    private var states: [String: SharedState] = [:]
    private var nodeHandles: [String: NodeHandles] = [:]
    /// The lab was brought up by this process: nothing has spent its routers' ICMP buckets before.
    public var fresh: Bool
    public init(fresh: Bool = false) { self.fresh = fresh }

    /// What the runs on these nodes leave for each other (`SharedState`), kept across runs.
    public func shared(_ nodes: [(node: String, namespace: NetworkNamespace)]) throws -> SharedState {
        let key = nodes.map { "\($0.node)@\($0.namespace.name)" }.joined(separator: ",")
        if let s = states[key] { return s }
        let s = try SharedState(nodes, unknownHistory: !fresh)
        states[key] = s
        return s
    }

    /// The sockets and the routing snapshot kept for the runs from this namespace (`NodeHandles`).
    public func handles(for namespace: NetworkNamespace) -> NodeHandles {
        if let h = nodeHandles[namespace.name] { return h }
        let h = NodeHandles(namespace)
        nodeHandles[namespace.name] = h
        return h
    }

    public func guardian(for namespace: NetworkNamespace) throws -> EngineGuard {
        if let g = guards[namespace.name] { return g }
        let g = try EngineGuard.install(in: namespace)
        guards[namespace.name] = g
        return g
    }

    /// A capture on these nodes, open since an earlier run or opened now; what it holds from before is the caller's
    /// to collect (and to record in `SharedState`).
    public func capture(_ nodes: [(node: String, namespace: NetworkNamespace)]) throws -> LabCapture {
        let key = nodes.map { "\($0.node)@\($0.namespace.name)" }.joined(separator: ",")
        if let c = captures[key] { return c }
        let c = try LabCapture(nodes)
        captures[key] = c
        return c
    }

    /// Time the runs waited for shared state to settle, by cause (ns), over every scope of this cache.
    public var waited: [String: Int64] {
        var w: [String: Int64] = [:]
        for s in states.values { for (k, v) in s.waited { w[k, default: 0] += v } }
        return w
    }

    public func removeAll() {
        for g in guards.values { try? g.remove() }
        guards = [:]
        captures = [:]
        states = [:]
        nodeHandles = [:]
    }

    deinit { removeAll() }
}
