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
    struct Tap { var node: String; var socket: PacketSocket; var names: [Int32: String] }
    var taps: [Tap] = []
    /// Every (node, interface) tapped, in node order: the interfaces of a pcapng file.
    public private(set) var interfaces: [(node: String, interface: String)] = []

    public init(_ nodes: [(node: String, namespace: NetworkNamespace)]) throws {
        for (node, ns) in nodes {
            let links = try NetlinkSocket(in: ns).links.list()
            let names = Dictionary(links.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
            taps.append(Tap(node: node, socket: try PacketSocket(in: ns, filter: .ipv4), names: names))
            interfaces += links.sorted { $0.index < $1.index }.map { (node, $0.name) }
        }
    }

    /// Read everything captured so far, in time order.
    public func collect() throws -> [Observation] {
        var out: [Observation] = []
        for t in taps {
            for f in try t.socket.drain() {
                out.append(Observation(time: f.time, node: t.node, interface: t.names[f.ifindex] ?? "if\(f.ifindex)", frame: f))
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
    public init() {}

    public func guardian(for namespace: NetworkNamespace) throws -> EngineGuard {
        if let g = guards[namespace.name] { return g }
        let g = try EngineGuard.install(in: namespace)
        guards[namespace.name] = g
        return g
    }

    /// A capture on these nodes, open since an earlier run or opened now; what it holds from before is discarded.
    public func capture(_ nodes: [(node: String, namespace: NetworkNamespace)]) throws -> LabCapture {
        let key = nodes.map { "\($0.node)@\($0.namespace.name)" }.joined(separator: ",")
        if let c = captures[key] {
            _ = try c.collect()
            return c
        }
        let c = try LabCapture(nodes)
        captures[key] = c
        return c
    }

    public func removeAll() {
        for g in guards.values { try? g.remove() }
        guards = [:]
        captures = [:]
    }

    deinit { removeAll() }
}
