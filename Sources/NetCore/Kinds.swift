/// Kernel enumerations shared by the topology model and the netlink layer.
public enum AddressScope: String, Sendable, CaseIterable, Codable {
    case global, site, link, host
    /// The kernel's `rt_scope_t` value.
    public var value: UInt8 {
        switch self { case .global: 0; case .site: 200; case .link: 253; case .host: 254 }
    }
    /// `RT_SCOPE_NOWHERE` (255): no destination; as a delete's scope, "any scope".
    public static let nowhereValue: UInt8 = 255
    public init?(value: UInt8) {
        switch value { case 0: self = .global; case 200: self = .site; case 253: self = .link; case 254: self = .host; default: return nil }
    }
}

public enum RouteType: String, Sendable, CaseIterable, Codable {
    case unicast, local, broadcast, multicast, blackhole, unreachable, prohibit, `throw`
    /// The kernel's `RTN_*` value.
    public var value: UInt8 {
        switch self {
        case .unicast: 1; case .local: 2; case .broadcast: 3; case .multicast: 5
        case .blackhole: 6; case .unreachable: 7; case .prohibit: 8; case .throw: 9
        }
    }
    public init?(value: UInt8) {
        guard let t = Self.allCases.first(where: { $0.value == value }) else { return nil }
        self = t
    }
    /// Types that carry no nexthop.
    public var isError: Bool { [.blackhole, .unreachable, .prohibit, .throw].contains(self) }
}


/// The kernel's built-in routing tables.
public enum RoutingTable {
    public static let main: UInt32 = 254
    public static let local: UInt32 = 255
    public static let `default`: UInt32 = 253
    public static let unspec: UInt32 = 0
    public static func builtinName(_ id: UInt32) -> String? {
        switch id { case main: "main"; case local: "local"; case `default`: "default"; default: nil }
    }
    public static func builtinID(_ name: String) -> UInt32? {
        switch name { case "main": main; case "local": local; case "default": `default`; default: nil }
    }
}

