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

    /// Whether this session brought the lab up (and `end` takes it down).
    public let broughtUp: Bool

    /// `fresh`: the lab was brought up by this process (nothing spent its routers' ICMP buckets before).
    public init(topology: Topology, fresh: Bool = false) throws {
        self.topology = topology
        cache = ConnectCache(fresh: fresh)
        listeners = try Self.listeners(topology)
        broughtUp = false
    }

    init(topology: Topology, fresh: Bool, broughtUp: Bool) throws {
        self.topology = topology
        cache = ConnectCache(fresh: fresh)
        listeners = try Self.listeners(topology)
        self.broughtUp = broughtUp
    }

    /// How a session finds its lab.
    public enum BringUp: Sendable {
        /// The lab is up: use it as it is, and leave it up.
        case no
        /// Bring the lab up (this process's own: nothing spent its routers' ICMP buckets), first taking down what
        /// `leftover` allows of a lab of the same name; `end` takes it down.
        case fresh(leftover: Leftover)
    }

    /// What may be taken down of a lab of the same name found before `up`.
    public enum Leftover: Sendable {
        /// Nothing: `up` refuses a lab of the name that exists.
        case none
        /// Any lab of the name that has a journal (one that failed to come up, or was left by a crash).
        case any
        /// Only a lab an earlier run made from a file of this name (a selftest's generated lab); anyone else's lab is
        /// left alone and `open` throws `LabSessionError.notOurs`.
        case madeFrom(file: String)
    }

    /// Take a leftover down as `bringUp` allows, bring the lab up (`progress` as `LabController.up` reports it), and
    /// open a session on it; or open one on a lab that is up.
    public static func open(_ topology: Topology, bringUp: BringUp, progress: LabController.Progress? = nil) throws -> LabSession {
        guard case .fresh(let leftover) = bringUp else { return try LabSession(topology: topology) }
        try takeDown(topology.lab, leftover: leftover)
        let summary = try LabController.up(topology, progress: progress)
        do {
            let s = try LabSession(topology: topology, fresh: true, broughtUp: true)
            s.upSummary = summary
            return s
        } catch {
            _ = try? LabController.down(lab: topology.lab)
            throw error
        }
    }

    /// What `up` reported, when this session brought the lab up.
    public private(set) var upSummary: UpSummary?

    /// The lab rebuilt from `topology` (down, then up) for a fresh start: this session closes and a new one takes over,
    /// owning the lab as this one did.
    public func rebuilt(from topology: Topology, progress: LabController.Progress? = nil) throws -> LabSession {
        close()
        if try Journal.read(lab: topology.lab) != nil { _ = try LabController.down(lab: topology.lab) }
        let summary = try LabController.up(topology, progress: progress)
        let s = try LabSession(topology: topology, fresh: false, broughtUp: broughtUp)
        s.upSummary = summary
        return s
    }

    /// Close the session and, when it brought the lab up and `keep` is false, take the lab down.
    public func end(keep: Bool = false) throws {
        close()
        if broughtUp && !keep { _ = try LabController.down(lab: topology.lab) }
    }

    static func takeDown(_ lab: String, leftover: Leftover) throws {
        switch leftover {
        case .none: return
        case .any:
            if try Journal.read(lab: lab) != nil { _ = try? LabController.down(lab: lab) }
        case .madeFrom(let file):
            guard let j = try? Journal.read(lab: lab) else {
                // An unreadable journal: `down` finds this lab's namespaces by their mark, and touches nothing else.
                if (try? Journal.path(lab: lab)).map({ FileManager.default.fileExists(atPath: $0) }) ?? false { _ = try? LabController.down(lab: lab) }
                return
            }
            guard URL(fileURLWithPath: j.file).lastPathComponent == URL(fileURLWithPath: file).lastPathComponent else {
                throw LabSessionError.notOurs(lab: lab, file: j.file)
            }
            _ = try LabController.down(lab: lab)
        }
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

public enum LabSessionError: Error, CustomStringConvertible {
    /// A lab of the name is up from another file: not this run's to take down.
    case notOurs(lab: String, file: String)
    public var description: String {
        switch self { case .notOurs(let lab, let file): "lab \(lab) is up from \(file), not made by this selftest; it is left alone" }
    }
}

extension Check {
    /// The connect this check makes.
    public var spec: ConnectSpec {
        ConnectSpec(destination: destination, port: port, bindAddress: bindAddress, bindPort: bindPort, device: dev, mark: mark,
                    tos: tos, sourceRoute: sourceRoute,
                    payload: payload.map { Array($0.utf8) }, synRetries: synRetries)
    }
}
