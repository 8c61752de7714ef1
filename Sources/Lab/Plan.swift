import Topology

/// What `up` will build, derived from a topology without touching the kernel: the namespaces, the veth pairs and
/// bridges, and per node the addresses, sysctls, routes and rules in the order they are applied.
public struct LabPlan: Sendable {
    public struct Namespace: Sendable, Hashable {
        public var name: String
        /// The node it holds, or nil for a LAN segment's bridge namespace.
        public var node: String?
    }
    public struct Veth: Sendable {
        public var namespace: String, name: String
        public var peerNamespace: String, peerName: String
        public var mtu: Int?
        public var location: SourceLocation
        public var label: String
    }
    public struct Bridge: Sendable {
        public var namespace: String
        public var name: String
        public var ports: [String]
        public var location: SourceLocation
    }
    public struct Device: Sendable {
        public var namespace: String
        public var name: String
        public var kind: InterfaceKind
        public var location: SourceLocation
    }

    public var topology: Topology
    public var namespaces: [Namespace]
    public var veths: [Veth]
    public var bridges: [Bridge]
    public var devices: [Device]

    public var lab: String { topology.lab }

    /// `<lab>_lan<N>`: `_` never appears in lab or node names, so these cannot collide with a node's namespace.
    public static func segmentNamespace(lab: String, index: Int) -> String { "\(lab)_lan\(index)" }

    public init(_ topology: Topology) {
        self.topology = topology
        namespaces = topology.nodes.map { Namespace(name: topology.namespace(of: $0.name), node: $0.name) }
        veths = []
        bridges = []
        devices = []
        var segment = 0
        for link in topology.links {
            if link.ends.count == 2 {
                let a = link.ends[0], b = link.ends[1]
                veths.append(Veth(namespace: topology.namespace(of: a.node), name: a.interface,
                                  peerNamespace: topology.namespace(of: b.node), peerName: b.interface,
                                  mtu: link.mtu, location: link.location, label: "link \(a) - \(b)"))
            } else {
                let ns = Self.segmentNamespace(lab: topology.lab, index: segment)
                segment += 1
                namespaces.append(Namespace(name: ns, node: nil))
                var ports: [String] = []
                for (k, end) in link.ends.enumerated() {
                    let descriptive = "\(end.node).\(end.interface)"
                    let port = descriptive.utf8.count <= 15 ? descriptive : "port\(k)"
                    ports.append(port)
                    veths.append(Veth(namespace: topology.namespace(of: end.node), name: end.interface,
                                      peerNamespace: ns, peerName: port, mtu: link.mtu, location: end.location,
                                      label: "LAN segment member \(end)"))
                }
                bridges.append(Bridge(namespace: ns, name: "br0", ports: ports, location: link.location))
            }
        }
        for node in topology.nodes {
            for i in node.interfaces where ![.veth, .loopback].contains(i.kind) {
                devices.append(Device(namespace: topology.namespace(of: node.name), name: i.name, kind: i.kind,
                                      location: i.kindLocation ?? i.location))
            }
        }
    }

    /// Sysctls written as the namespace is created, before its interfaces exist: IPv6 off (labs are IPv4; this keeps
    /// link-local addresses, DAD and MLD out of captures and out of `up`'s time), forwarding, and source routing on
    /// `all`, `default` (new devices copy it) and `lo` (which already exists). A node's `sysctl:` can override any of them.
    public static func earlySysctls(of node: Node) -> [Sysctl] {
        let sr = node.sourceRoute ? "1" : "0"
        return [Sysctl(key: "net.ipv6.conf.all.disable_ipv6", value: "1", location: node.location),
                Sysctl(key: "net.ipv6.conf.default.disable_ipv6", value: "1", location: node.location),
                Sysctl(key: "net.ipv4.ip_forward", value: node.forwarding ? "1" : "0", location: node.location),
                Sysctl(key: "net.ipv4.conf.all.accept_source_route", value: sr, location: node.location),
                Sysctl(key: "net.ipv4.conf.default.accept_source_route", value: sr, location: node.location),
                // lo exists before `default` is written, so it does not inherit it.
                Sysctl(key: "net.ipv4.conf.lo.accept_source_route", value: sr, location: node.location)]
    }

    /// Sysctls written once the interfaces exist: the file's own, in order (they may override the early ones).
    public static func lateSysctls(of node: Node) -> [Sysctl] { node.sysctls }

    public var counts: (nodes: Int, links: Int, addresses: Int, routes: Int, rules: Int) {
        let n = topology.nodes
        return (n.count, topology.links.count, n.reduce(0) { $0 + $1.addresses.count }, n.reduce(0) { $0 + $1.routes.count },
                n.reduce(0) { $0 + $1.rules.count })
    }
}
