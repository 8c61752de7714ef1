import Driver
import Foundation
import Lab
import Netlink
import Topology

/// A lab that is up, as checks and `netlab connect` use it: every node's namespace (captured), and the kernel
/// listeners of its `listen:` ports, which run while the session lives.
public final class LabSession {
    public let topology: Topology
    public private(set) var listeners: Listeners
    /// The engine's guard tables (one per node that connected) and the lab captures, kept open until the session ends.
    public let cache: ConnectCache

    /// `fresh`: the lab was brought up by this process (nothing spent its routers' ICMP buckets before).
    public init(topology: Topology, fresh: Bool = false) throws {
        self.topology = topology
        cache = ConnectCache(fresh: fresh)
        listeners = try Self.listeners(topology)
    }

    static func listeners(_ topology: Topology) throws -> Listeners {
        var wanted: [(NetworkNamespace, UInt16)] = []
        for n in topology.nodes { for p in n.listen { wanted.append((NetworkNamespace(named: topology.namespace(of: n.name)), p)) } }
        return try Listeners(wanted.map { (namespace: $0.0, port: $0.1) })
    }

    /// Serve the `listen:` ports of `topology` instead (after a `listen`/`unlisten` change).
    public func listen(as topology: Topology) throws {
        listeners.stop()
        listeners = try Self.listeners(topology)
    }

    /// The lab's expected state: the topology it came up with (its journal keeps the text) plus the changes
    /// `netlab set` recorded since (a `listen` among them).
    public static func topology(ofLab lab: String) throws -> Topology? {
        guard let j = try Journal.read(lab: lab), j.state == .up else { return nil }
        return try LabController.expected(j).topology
    }

    public func scope(from node: String) -> ConnectScope {
        ConnectScope(sourceNode: node, nodes: topology.nodes.map { ($0.name, NetworkNamespace(named: topology.namespace(of: $0.name))) })
    }

    /// Stop the listeners, remove the guards and close the captures.
    public func close() {
        listeners.stop()
        cache.removeAll()
    }

    deinit { close() }
}

extension Check {
    /// The connect this check makes.
    public var spec: ConnectSpec {
        ConnectSpec(destination: destination, port: port, bindAddress: bindAddress, bindPort: bindPort, device: dev, mark: mark,
                    tos: tos, sourceRoute: sourceRoute,
                    payload: payload.map { Array($0.utf8) }, synRetries: synRetries)
    }
}
