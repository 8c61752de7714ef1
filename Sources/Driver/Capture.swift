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
