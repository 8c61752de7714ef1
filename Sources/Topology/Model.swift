/// A lab as written in a `.topo` file, after parsing and validation. Every object keeps where it was written so the
/// lab controller can put a kernel error back into the file's terms.
public struct Topology: Sendable {
    public var file: String
    public var source: String
    public var lab: String
    /// Named routing tables (`tables: {isp1: 101}`), in file order.
    public var tables: [(name: String, id: UInt32)]
    public var nodes: [Node]
    public var links: [Link]
    /// Connects the lab declares, with what each must do (`checks:`).
    public var checks: [Check] = []
    /// `address-ranges: any`: the file opts out of the documentation-range rule (a clone of a real host keeps the
    /// host's addresses; a lab is isolated in its namespaces, so nothing leaks). Off for everything the project ships.
    public var anyAddresses = false

    /// Whether an address may be used in this lab.
    public func allows(_ a: IPv4Address) -> Bool { anyAddresses || LabAddressSpace.contains(a) }
    public func allows(_ p: IPv4Prefix) -> Bool { anyAddresses || LabAddressSpace.contains(p) }
    /// Scripted experiments: steps of checks, live changes and waits, each run from the state the file declares
    /// (`experiments:`).
    public var experiments: [Experiment] = []

    public func node(_ name: String) -> Node? { nodes.first { $0.name == name } }

    /// The name of the namespace that holds `node` (`<lab>-<node>`).
    public func namespace(of node: String) -> String { "\(lab)-\(node)" }

    /// A table id's name for display: `main`, `isp1`, or the number.
    public func tableName(_ id: UInt32) -> String {
        if let t = tables.first(where: { $0.id == id }) { return t.name }
        return RoutingTable.builtinName(id) ?? String(id)
    }
}

public struct Node: Sendable {
    public var name: String
    public var location: SourceLocation
    public var forwarding: Bool
    public var sourceRoute: Bool
    public var sysctls: [Sysctl]
    public var interfaces: [Interface]
    /// Nexthop objects (`nexthops:`), made before the routes that use them (`nhid N`).
    public var nexthopObjects: [NexthopSpec] = []
    public var routes: [Route]
    public var rules: [Rule]
    public var listen: [UInt16]
    /// Where each `listen` port was written (same order as `listen`).
    public var listenLocations: [SourceLocation] = []

    public func interface(_ name: String) -> Interface? { interfaces.first { $0.name == name } }
    /// Every address of the node, with its interface.
    public var addresses: [(interface: String, address: InterfaceAddress)] {
        interfaces.flatMap { i in i.addresses.map { (i.name, $0) } }
    }
}

public struct Sysctl: Sendable, Hashable {
    /// Dotted key under /proc/sys (`net.ipv4.conf.all.rp_filter`).
    public var key: String
    public var value: String
    public var location: SourceLocation
    public init(key: String, value: String, location: SourceLocation) {
        self.key = key
        self.value = value
        self.location = location
    }
}

public enum InterfaceKind: String, Sendable, CaseIterable {
    /// One end of a veth pair (or of a LAN segment's veth to its bridge); made by `links:`.
    case veth
    /// The loopback device every namespace has.
    case loopback
    /// A standalone device of a kernel driver (`type: dummy`, `type: bridge`, ...), made in the node itself.
    case dummy, bridge, vrf, macvlan
}

public struct Interface: Sendable {
    public var name: String
    public var location: SourceLocation
    public var kind: InterfaceKind
    public var addresses: [InterfaceAddress]
    public var mtu: Int?
    /// The location of `type:` when the kind was written.
    public var kindLocation: SourceLocation?
    /// `up: false`: the interface is set down once the node is built (its routes then go as the kernel takes them:
    /// flushed, or a dead leg of a multipath route; a veth peer loses its carrier).
    public var up = true
}

public struct InterfaceAddress: Sendable, Hashable {
    public var prefix: IPv4Prefix
    public var scope: AddressScope?
    public var noprefixroute: Bool
    public var metric: UInt32?
    /// `peer P`: the other end of a point-to-point address (IFA_ADDRESS); the prefix length applies to it.
    public var peer: IPv4Address? = nil
    /// `broadcast B` (IFA_BROADCAST): the kernel adds a broadcast route for B.
    public var broadcast: IPv4Address? = nil
    public var location: SourceLocation
    public var address: IPv4Address { prefix.address }
    /// The subnet the kernel's prefix route covers: the peer's, or the address's.
    public var subnet: IPv4Prefix { IPv4Prefix(peer ?? prefix.address, prefix.length).canonical }
    /// The iproute2 form: `198.51.100.10/25 scope link noprefixroute metric 10`.
    public var text: String {
        var s = prefix.description
        if let scope { s += " scope \(scope.rawValue)" }
        if noprefixroute { s += " noprefixroute" }
        if let metric { s += " metric \(metric)" }
        if let peer { s += " peer \(peer)" }
        if let broadcast { s += " broadcast \(broadcast)" }
        return s
    }
}

public struct Nexthop: Sendable, Hashable {
    public var gateway: IPv4Address?
    public var dev: String?
    public var weight: Int
    public var onlink: Bool
    public var location: SourceLocation
    /// Where `dev` was written, if it was.
    public var devLocation: SourceLocation?
}

public struct Route: Sendable {
    public var location: SourceLocation
    /// How the route reads in iproute2 syntax; the file's own string for the string form.
    public var text: String
    public var type: RouteType
    public var destination: IPv4Prefix
    public var table: UInt32
    public var metric: UInt32?
    public var scope: AddressScope?
    public var proto: UInt8?
    public var src: IPv4Address?
    public var mtu: UInt32?
    public var advmss: UInt32?
    /// RTAX_HOPLIMIT: the TTL of packets using the route (1-255).
    public var hoplimit: UInt32?
    public var tos: UInt8?
    /// One entry for a plain route, several for `nexthop ... nexthop ...`, none for error types.
    public var nexthops: [Nexthop]
    public var isMultipath: Bool
    /// `nhid N`: the route uses the node's nexthop object N instead of its own nexthops.
    public var nexthopID: UInt32? = nil
}

public struct PortRange: Sendable, Hashable, CustomStringConvertible {
    public var start: UInt16
    public var end: UInt16
    public var description: String { start == end ? "\(start)" : "\(start)-\(end)" }
}

extension Rule {
    /// A rule's action as written, with its operand (the kernel's kind of action is NetCore's `RuleAction`).
    public enum Action: Sendable, Hashable {
        case lookup(UInt32)
        case goto(UInt32)
        case nop
        case unreachable, prohibit, blackhole
        /// The kernel's `FR_ACT_*`.
        public var value: RuleAction {
            switch self {
            case .lookup: .toTable; case .goto: .goto; case .nop: .nop; case .blackhole: .blackhole
            case .unreachable: .unreachable; case .prohibit: .prohibit
            }
        }
    }
}

public struct Rule: Sendable {
    public var location: SourceLocation
    public var text: String
    public var pref: UInt32?
    public var invert: Bool
    public var from: IPv4Prefix?
    public var to: IPv4Prefix?
    public var iif: String?
    public var oif: String?
    public var fwmark: UInt32?
    public var fwmask: UInt32?
    public var tos: UInt8?
    public var dscp: UInt8?
    public var ipproto: UInt8?
    public var sport: PortRange?
    public var dport: PortRange?
    public var uidrange: ClosedRange<UInt32>?
    public var suppressPrefixLength: Int?
    public var action: Action
}

public struct LinkEnd: Sendable, Hashable, CustomStringConvertible {
    public var node: String
    public var interface: String
    public var location: SourceLocation
    public var description: String { "\(node):\(interface)" }
}

public struct Link: Sendable {
    public var location: SourceLocation
    public var ends: [LinkEnd]
    public var mtu: Int?
    /// Two ends are a veth pair; three or more a LAN segment (a bridge in a namespace of its own).
    public var isSegment: Bool { ends.count > 2 }
}
