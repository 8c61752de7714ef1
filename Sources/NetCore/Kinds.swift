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


/// What a policy rule does when its selectors match: the kernel's `FR_ACT_*` (include/uapi/linux/fib_rules.h).
/// `fib4_rule_action` (net/ipv4/fib_rules.c) answers the three error actions; `fib_rules_lookup` (net/core/fib_rules.c)
/// follows `goto` and skips `nop`.
public enum RuleAction: UInt8, Sendable, Hashable, CaseIterable, Codable {
    /// FR_ACT_UNSPEC: no action named (what `ip rule del` sends to match any action).
    case unspecified = 0
    /// FR_ACT_TO_TBL: `lookup TABLE`.
    case toTable = 1
    /// FR_ACT_GOTO: `goto PREF`.
    case goto = 2
    /// FR_ACT_NOP.
    case nop = 3
    /// FR_ACT_RES3, FR_ACT_RES4: reserved (`fib4_rule_action` answers EINVAL for them).
    case reserved3 = 4, reserved4 = 5
    /// FR_ACT_BLACKHOLE: EINVAL.
    case blackhole = 6
    /// FR_ACT_UNREACHABLE: ENETUNREACH.
    case unreachable = 7
    /// FR_ACT_PROHIBIT: EACCES.
    case prohibit = 8

    /// The action of a dumped rule header; an unknown number (never dumped: `fib_nl2rule` refuses > FR_ACT_MAX) is
    /// `unspecified`.
    public init(kernel value: UInt8) { self = RuleAction(rawValue: value) ?? .unspecified }

    /// The word `ip rule` prints for the action (`lookup` and `goto` take their operand after it).
    public var word: String {
        switch self {
        case .unspecified: "unspec"
        case .toTable: "lookup"
        case .goto: "goto"
        case .nop: "nop"
        case .reserved3: "action 4"
        case .reserved4: "action 5"
        case .blackhole: "blackhole"
        case .unreachable: "unreachable"
        case .prohibit: "prohibit"
        }
    }
}
