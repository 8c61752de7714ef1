/// The IPv4 sysctls route lookups read, typed: per device (`struct ipv4_devconf`, /proc/sys/net/ipv4/conf/DEV/) as
/// the kernel's `IN_DEV_*` macros combine them (include/linux/inetdevice.h), and the namespace's multipath settings.
/// Read from a snapshot's `sysctls` (`net.ipv4.conf.<all|DEV>.<name>` → value); a value the snapshot lacks takes
/// the kernel's default.
///
/// How `all`, `default` and the device combine: each macro reads the device's own value, or combines it with `all`
/// (`IN_DEV_ORCONF`: either on, `IN_DEV_ANDCONF`: both on, `IN_DEV_MAXCONF`: the larger). `default` is only what a
/// device gets when it is created (`devinet_copy_dflt_conf`), so a snapshot, which reads every device's own value,
/// never needs it. Writing `all/forwarding` (or `ip_forward`) writes every device's own `forwarding`
/// (`inet_forward_change`), which is why `IN_DEV_FORWARD` reads only the device.
public struct IPv4DeviceSettings: Sendable, Hashable {
    /// `IN_DEV_FORWARD`: the device's own `forwarding`.
    public var forwarding = false
    /// `IN_DEV_RPFILTER`: max(all, dev) of `rp_filter` (0 off, 1 strict, 2 loose).
    public var rpFilter = 0
    /// `IN_DEV_ACCEPT_LOCAL`: all || dev.
    public var acceptLocal = false
    /// `IN_DEV_SRC_VMARK` (`src_valid_mark`): all || dev.
    public var srcValidMark = false
    /// `IN_DEV_TX_REDIRECTS` (`send_redirects`, on by default): all || dev.
    public var sendRedirects = true
    /// `IN_DEV_BFORWARD` (`bc_forwarding`): all && dev.
    public var bcForwarding = false
    /// `IN_DEV_ROUTE_LOCALNET` / `IN_DEV_NET_ROUTE_LOCALNET` (`route_localnet`): all || dev.
    public var routeLocalnet = false
    /// `IN_DEV_IGNORE_ROUTES_WITH_LINKDOWN`: all || dev.
    public var ignoreRoutesWithLinkdown = false
    /// `IN_DEV_SOURCE_ROUTE` (`accept_source_route`): all && dev.
    public var acceptSourceRoute = false

    public init() {}

    /// The conf names (under net.ipv4.conf.<all|DEV>) a snapshot reads for these settings.
    public static let sysctlNames = ["ignore_routes_with_linkdown", "route_localnet", "forwarding", "rp_filter", "accept_local",
                                     "src_valid_mark", "send_redirects", "bc_forwarding", "accept_source_route"]

    /// The settings of `device` from `net.ipv4.conf.<all|device>.<name>` values.
    public init(reading sysctls: [String: String], device: String) {
        func value(_ d: String, _ name: String, _ fallback: Int) -> Int {
            sysctls["net.ipv4.conf.\(d).\(name)"].flatMap { Int($0) } ?? fallback
        }
        func own(_ name: String, _ fallback: Int) -> Int { value(device, name, fallback) }
        func or(_ name: String, _ fallback: Int) -> Bool { value("all", name, fallback) != 0 || own(name, fallback) != 0 }
        func and(_ name: String, _ fallback: Int) -> Bool { value("all", name, fallback) != 0 && own(name, fallback) != 0 }
        func max(_ name: String, _ fallback: Int) -> Int { Swift.max(value("all", name, fallback), own(name, fallback)) }
        forwarding = own("forwarding", 0) != 0
        rpFilter = max("rp_filter", 0)
        acceptLocal = or("accept_local", 0)
        srcValidMark = or("src_valid_mark", 0)
        sendRedirects = or("send_redirects", 1)
        bcForwarding = and("bc_forwarding", 0)
        routeLocalnet = or("route_localnet", 0)
        ignoreRoutesWithLinkdown = or("ignore_routes_with_linkdown", 0)
        acceptSourceRoute = and("accept_source_route", 0)
    }
}

/// The namespace's multipath settings (net.ipv4.fib_multipath_*), which decide whether the flow hash is knowable.
public struct MultipathSettings: Sendable, Hashable {
    /// `fib_multipath_hash_seed`: 0 (the default) leaves the kernel's random seed, unseen.
    public var hashSeed: UInt32 = 0
    /// `fib_multipath_hash_policy`: 0 L3, 1 L4, 2 L3 or inner L3, 3 custom fields.
    public var hashPolicy = 0
    /// `fib_multipath_use_neigh`: legs whose gateway's neighbour is failed are avoided.
    public var useNeigh = false

    public init() {}

    public static let sysctlNames = ["net.ipv4.fib_multipath_hash_policy", "net.ipv4.fib_multipath_use_neigh",
                                     "net.ipv4.fib_multipath_hash_seed"]

    public init(reading sysctls: [String: String]) {
        hashSeed = sysctls["net.ipv4.fib_multipath_hash_seed"].flatMap { UInt32($0) } ?? 0
        hashPolicy = sysctls["net.ipv4.fib_multipath_hash_policy"].flatMap { Int($0) } ?? 0
        useNeigh = sysctls["net.ipv4.fib_multipath_use_neigh"].flatMap { Int($0) }.map { $0 != 0 } ?? false
    }
}

extension RoutingSnapshot {
    /// The IPv4 settings of one device as lookups read them.
    public func ipv4Settings(of device: String) -> IPv4DeviceSettings { IPv4DeviceSettings(reading: sysctls, device: device) }
    public var multipathSettings: MultipathSettings { MultipathSettings(reading: sysctls) }
}
