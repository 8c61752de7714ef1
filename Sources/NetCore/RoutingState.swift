/// The routing state of a namespace as values: what the netlink layer reads and the resolver reasons about.

/// A device as the kernel reports it (`ip -j link show`).
public struct LinkInfo: Sendable, Hashable, Codable {
    public init(index: Int32, name: String, flags: UInt32, mtu: UInt32, master: Int32, kind: String?, group: UInt32, carrier: Bool) {
        self.index = index; self.name = name; self.flags = flags; self.mtu = mtu; self.master = master; self.kind = kind
        self.group = group; self.carrier = carrier
    }
    public var index: Int32
    public var name: String
    public var flags: UInt32
    public var mtu: UInt32
    public var master: Int32
    public var kind: String?
    public var group: UInt32
    public var carrier: Bool
    /// `IFF_LOOPBACK` in `ifi_flags`.
    public var isLoopback: Bool { flags & 0x8 != 0 }
    public var isUp: Bool { flags & 0x1 != 0 }   // IFF_UP
}

/// An IPv4 address as the kernel lists it (`ip -j addr show`), in kernel order.
public struct AddressInfo: Sendable, Hashable, Codable {
    public init(index: Int32, prefix: IPv4Prefix, scope: UInt8, flags: UInt32, metric: UInt32? = nil, label: String = "") {
        self.index = index; self.prefix = prefix; self.scope = scope; self.flags = flags; self.metric = metric; self.label = label
    }
    public var index: Int32
    public var prefix: IPv4Prefix
    public var scope: UInt8
    public var flags: UInt32
    public var metric: UInt32?
    public var label: String
    /// IFA_ADDRESS when it differs from IFA_LOCAL (`peer P`): the prefix route and `inet_ifa_match` use it.
    public var peer: IPv4Address?
    /// IFA_BROADCAST when the address has one (`broadcast B`; iproute2 sets none without `brd`).
    public var broadcast: IPv4Address?
    /// What `inet_ifa_match()` tests a destination against: the peer's prefix, or the address's.
    public var subnet: IPv4Prefix { IPv4Prefix(peer ?? prefix.address, prefix.length) }
    public var isSecondary: Bool { flags & 0x01 != 0 }     // IFA_F_SECONDARY
    public var noprefixroute: Bool { flags & 0x200 != 0 }    // IFA_F_NOPREFIXROUTE
}

/// One path of a route: gateway, device and weight (iproute2's `nexthop via G dev D weight W`).
public struct NexthopInfo: Sendable, Hashable, Codable {
    public var gateway: IPv4Address?
    public var index: Int32
    public var weight: Int
    public var flags: UInt32
    /// The nexthop's scope when known (a nexthop object dumps it: 253 link, 254 host for a local gateway); nil for
    /// a route's own nexthops, whose scope the resolver derives as `fib_check_nh_v4_gw` does.
    public var scope: UInt8?
    public init(gateway: IPv4Address?, index: Int32, weight: Int = 1, flags: UInt32 = 0, scope: UInt8? = nil) {
        self.gateway = gateway; self.index = index; self.weight = weight; self.flags = flags; self.scope = scope
    }
    public static let onlinkFlag: UInt32 = 4      // RTNH_F_ONLINK
    public var onlink: Bool { flags & 4 != 0 }
    public var dead: Bool { flags & 1 != 0 }    // RTNH_F_DEAD
    public var linkdown: Bool { flags & 16 != 0 }   // RTNH_F_LINKDOWN
}

/// An IPv4 route, as added or as dumped from any table.
public struct RouteInfo: Sendable, Hashable, Codable {
    public var table: UInt32
    public var type: RouteType
    public var scope: UInt8
    public var proto: UInt8
    public var destination: IPv4Prefix
    public var tos: UInt8
    public var metric: UInt32
    public var prefsrc: IPv4Address?
    public var mtu: UInt32?
    public var advmss: UInt32?
    public var hoplimit: UInt32?
    public var flags: UInt32
    public var nexthops: [NexthopInfo]
    /// True when the route was given (or dumped) as RTA_MULTIPATH.
    public var multipath: Bool
    /// `nhid N`: the route uses nexthop object N (RTA_NH_ID). With `nexthop_compat_mode` on (the default) the dump
    /// also expands the object into `nexthops`.
    public var nexthopID: UInt32?

    /// `nexthopId`, not `nexthopID`: JSON keys are snake_case (`nexthop_id`), and a decoder converting them back
    /// produces `nexthopId`.
    enum CodingKeys: String, CodingKey {
        case table, type, scope, proto, destination, tos, metric, prefsrc, mtu, advmss, hoplimit, flags, nexthops, multipath
        case nexthopID = "nexthopId"
    }

    public init(table: UInt32 = 254, type: RouteType = .unicast, scope: UInt8 = 0, proto: UInt8 = 3,
                destination: IPv4Prefix, tos: UInt8 = 0, metric: UInt32 = 0, prefsrc: IPv4Address? = nil,
                mtu: UInt32? = nil, advmss: UInt32? = nil, hoplimit: UInt32? = nil, flags: UInt32 = 0,
                nexthops: [NexthopInfo] = [], multipath: Bool = false, nexthopID: UInt32? = nil) {
        self.table = table; self.type = type; self.scope = scope; self.proto = proto; self.destination = destination
        self.tos = tos; self.metric = metric; self.prefsrc = prefsrc; self.mtu = mtu; self.advmss = advmss
        self.hoplimit = hoplimit; self.flags = flags; self.nexthops = nexthops; self.multipath = multipath
        self.nexthopID = nexthopID
    }
}

/// A nexthop object (`ip nexthop add id N via G dev D`, `id N group A/B,W`, `id N blackhole`), as added or dumped.
public struct NexthopObject: Sendable, Hashable, Codable {
    public struct Member: Sendable, Hashable, Codable {
        public var id: UInt32
        public var weight: Int
        public init(id: UInt32, weight: Int = 1) { self.id = id; self.weight = weight }
    }
    public var id: UInt32
    public var gateway: IPv4Address?
    /// The device's ifindex (0 for a group or a blackhole).
    public var index: Int32
    /// `nhm_scope` as dumped: 253 link, 254 host (the gateway is an address of the device: `fib_check_nh_v4_gw`).
    public var scope: UInt8
    /// RTNH_F_* (RTNH_F_ONLINK 4; RTNH_F_DEAD 1 and RTNH_F_LINKDOWN 16 as dumped).
    public var flags: UInt32
    public var blackhole: Bool
    /// The members of a group, in order, with weights (`group 1/2,3`); empty for a single nexthop.
    public var group: [Member]
    /// `type resilient`: members are chosen by bucket (`nexthop_select_path_res`), not by hash threshold.
    public var resilient: Bool
    /// A resilient group's buckets: the member id each bucket holds (`ip nexthop bucket show`), by bucket index.
    /// When adding, its count is the number of buckets (`buckets N`; the ids are the kernel's to assign).
    public var buckets: [UInt32]
    public init(id: UInt32, gateway: IPv4Address? = nil, index: Int32 = 0, scope: UInt8 = 0, flags: UInt32 = 0,
                blackhole: Bool = false, group: [Member] = [], resilient: Bool = false, buckets: [UInt32] = []) {
        self.id = id; self.gateway = gateway; self.index = index; self.scope = scope; self.flags = flags
        self.blackhole = blackhole; self.group = group; self.resilient = resilient; self.buckets = buckets
    }
    public var isGroup: Bool { !group.isEmpty }
}

/// A neighbour entry (`ip neigh`): what `nexthop_is_good_nh` reads for a group member's gateway.
public struct NeighbourInfo: Sendable, Hashable, Codable {
    public var index: Int32
    public var address: IPv4Address
    /// NUD_* bits (NUD_INCOMPLETE 0x01, REACHABLE 0x02, STALE 0x04, DELAY 0x08, PROBE 0x10, FAILED 0x20,
    /// NOARP 0x40, PERMANENT 0x80).
    public var state: UInt16
    public init(index: Int32, address: IPv4Address, state: UInt16) { self.index = index; self.address = address; self.state = state }
    /// NUD_VALID.
    public var isValid: Bool { state & (0x80 | 0x40 | 0x02 | 0x10 | 0x04 | 0x08) != 0 }
}

/// A policy rule with every selector the kernel knows, as added or as dumped (`ip -j rule show`).
public struct RuleInfo: Sendable, Hashable, Codable {
    public var priority: UInt32?
    public var invert = false
    public var from: IPv4Prefix?
    public var to: IPv4Prefix?
    public var iif: String?
    public var oif: String?
    public var fwmark: UInt32?
    public var fwmask: UInt32?
    public var tos: UInt8 = 0
    public var dscp: UInt8?
    public var ipproto: UInt8?
    public var sport: ClosedRange<UInt16>?
    public var dport: ClosedRange<UInt16>?
    public var uidrange: ClosedRange<UInt32>?
    public var suppressPrefixLength: Int32?
    public var suppressIfgroup: Int32?
    public var action: RuleAction = .toTable
    public var table: UInt32 = 0
    public var goto: UInt32?
    public var l3mdev = false
    public init() {}
}


/// A namespace's routing state at one moment: devices, addresses in kernel order, routes of every table in dump
/// order, rules in priority order, and the sysctls that change lookups. Codable: `netlab snapshot --json` writes it
/// (snake_case keys), and the resolver's tests replay kernel-recorded snapshots from that form.
public struct RoutingSnapshot: Sendable, Codable {
    public var links: [LinkInfo]
    public var addresses: [AddressInfo]
    public var routes: [RouteInfo]
    public var rules: [RuleInfo]
    /// `net.ipv4.fib_multipath_hash_policy`, `net.ipv4.conf.<all|dev>.ignore_routes_with_linkdown`,
    /// `net.ipv4.conf.<all|dev>.route_localnet`, ...
    public var sysctls: [String: String]
    /// Nexthop objects (`ip nexthop show`) and neighbour entries (`ip neigh show`, for group members' liveness).
    public var nexthopObjects: [NexthopObject]
    public var neighbours: [NeighbourInfo]

    public init(links: [LinkInfo], addresses: [AddressInfo], routes: [RouteInfo], rules: [RuleInfo], sysctls: [String: String] = [:],
                nexthopObjects: [NexthopObject] = [], neighbours: [NeighbourInfo] = []) {
        self.links = links; self.addresses = addresses; self.routes = routes; self.rules = rules; self.sysctls = sysctls
        self.nexthopObjects = nexthopObjects; self.neighbours = neighbours
    }
}
