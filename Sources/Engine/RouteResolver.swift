import NetCore
import SystemPackage

/// The inputs of one output route lookup: the kernel's `struct flowi4` as `ip_route_connect_init` fills it.
public struct Flow: Sendable, Equatable, CustomStringConvertible {
    public var destination: IPv4Address
    /// 0.0.0.0 means "choose one" (lookup #1 of connect).
    public var source: IPv4Address
    /// SO_BINDTODEVICE, by name.
    public var outputDevice: String?
    public var mark: UInt32
    public var tos: UInt8
    /// SO_DONTROUTE: RT_SCOPE_LINK instead of RT_SCOPE_UNIVERSE.
    public var dontRoute: Bool
    public var proto: IPProtocol
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var uid: UInt32
    /// FLOWI_FLAG_ANY_SPORT: the source port is not chosen yet.
    public var anySourcePort: Bool

    public init(destination: IPv4Address, source: IPv4Address = .any, outputDevice: String? = nil, mark: UInt32 = 0,
                tos: UInt8 = 0, dontRoute: Bool = false, proto: IPProtocol = .tcp, sourcePort: UInt16 = 0,
                destinationPort: UInt16 = 0, uid: UInt32 = 0) {
        self.destination = destination; self.source = source; self.outputDevice = outputDevice; self.mark = mark
        self.tos = tos; self.dontRoute = dontRoute; self.proto = proto; self.sourcePort = sourcePort
        self.destinationPort = destinationPort; self.uid = uid; anySourcePort = sourcePort == 0
    }

    public var description: String {
        var s = "daddr=\(destination) saddr=\(source)"
        if let o = outputDevice { s += " oif=\(o)" }
        if mark != 0 { s += " mark=0x\(String(mark, radix: 16))" }
        if tos != 0 { s += " tos=0x\(String(tos, radix: 16))" }
        if dontRoute { s += " scope=link" }
        s += " proto=\(proto) sport=\(sourcePort) dport=\(destinationPort)"
        if uid != 0 { s += " uid=\(uid)" }
        return s
    }
}

/// What an output route lookup answers (`struct rtable` plus the `flowi4` fields it fills in).
public struct ResolvedRoute: Sendable, Equatable {
    public enum Kind: String, Sendable { case unicast, local, broadcast, multicast }
    /// The destination after the lookup (0.0.0.0 becomes 127.0.0.1).
    public var destination: IPv4Address
    /// The source address the lookup chose (`fl4->saddr`).
    public var source: IPv4Address
    public var device: String
    public var deviceMTU: Int
    /// The gateway, or nil when the destination is on-link.
    public var gateway: IPv4Address?
    public var kind: Kind
    /// Route metrics.
    public var mtu: Int?
    public var mtuLocked: Bool
    public var advmss: Int?
    public var hoplimit: Int?
    /// Where the answer came from, for traces.
    public var table: UInt32?
    public var explanation: String

    public init(destination: IPv4Address, source: IPv4Address, device: String, deviceMTU: Int = 1500,
                gateway: IPv4Address? = nil, kind: Kind = .unicast, mtu: Int? = nil, mtuLocked: Bool = false,
                advmss: Int? = nil, hoplimit: Int? = nil, table: UInt32? = nil, explanation: String = "") {
        self.destination = destination; self.source = source; self.device = device; self.deviceMTU = deviceMTU
        self.gateway = gateway; self.kind = kind; self.mtu = mtu; self.mtuLocked = mtuLocked; self.advmss = advmss
        self.hoplimit = hoplimit; self.table = table; self.explanation = explanation
    }

    /// Where the packet is handed: the gateway, or the destination itself.
    public var nextHop: IPv4Address { gateway ?? destination }
    /// `rt_uses_gateway`.
    public var usesGateway: Bool { gateway != nil }
    /// `dst_mtu`: the route's mtu metric, else the device's.
    public var pathMTU: Int { mtu ?? deviceMTU }
}

/// `ip_route_output_flow` for the engine: implemented against a namespace snapshot by the resolver, and by fakes in
/// tests. An error is the errno the kernel's lookup returns (ENETUNREACH, EHOSTUNREACH, EACCES, EINVAL, ENODEV, ...).
public protocol RouteResolver {
    func outputRoute(_ flow: Flow) -> Result<ResolvedRoute, Errno>
    /// `inet_addr_type_table(net, addr, RT_TABLE_LOCAL)`: what `inet_bind` asks of an address — local, broadcast and
    /// multicast addresses may be bound, others (unicast) only with `ip_nonlocal_bind`.
    func inetAddrType(_ address: IPv4Address) -> RouteType
}
