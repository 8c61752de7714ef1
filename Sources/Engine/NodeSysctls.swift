import NetCore

/// The sysctls of a node's namespace that shape a connect, as a value (the driver reads them from /proc/sys/net
/// inside the namespace). Defaults are Linux 6.18's.
public struct NodeSysctls: Sendable, Equatable {
    public var tcpTimestamps = 1
    public var tcpSack = true
    public var tcpWindowScaling = true
    /// 0 off, 1 request ECN on outgoing SYNs, 2 (default) only answer ECN, 3+ AccECN.
    public var tcpEcn = 2
    public var tcpSynRetries = 6
    public var tcpSynLinearTimeouts = 4
    public var ipDefaultTTL = 64
    public var ipLocalPortRange: ClosedRange<UInt16> = 32768...60999
    public var ipLocalReservedPorts: Set<UInt16> = []
    /// tcp_rmem min, default, max (6.16+: 4096 131072 33554432).
    public var tcpRmem: (min: Int, initial: Int, max: Int) = (4096, 131072, 33_554_432)
    public var rmemMax = 212_992
    public var ipNoPmtuDisc = 0
    public var tcpWorkaroundSignedWindows = false
    public var ipRtMinAdvmss = 256
    /// `ip_nonlocal_bind`: bind() accepts any address.
    public var ipNonlocalBind = false
    /// `tcp_tw_reuse`: 0 off, 1 on, 2 (default) loopback only (`tcp_twsk_unique`).
    public var tcpTwReuse = 2
    /// `tcp_tw_reuse_delay` in ms (6.13+; 1000 by default, the fixed 1 s of older kernels).
    public var tcpTwReuseDelay = 1000
    /// The devices on which a packet carrying a source-route option is taken in (`IN_DEV_SOURCE_ROUTE`:
    /// `accept_source_route` on both `all` and the device). Nil: not read, every device takes them.
    public var sourceRouteDevices: Set<String>?

    public init() {}

    public static func == (a: Self, b: Self) -> Bool {
        a.tcpTimestamps == b.tcpTimestamps && a.tcpSack == b.tcpSack && a.tcpWindowScaling == b.tcpWindowScaling &&
            a.tcpEcn == b.tcpEcn && a.tcpSynRetries == b.tcpSynRetries && a.tcpSynLinearTimeouts == b.tcpSynLinearTimeouts &&
            a.ipDefaultTTL == b.ipDefaultTTL && a.ipLocalPortRange == b.ipLocalPortRange &&
            a.ipLocalReservedPorts == b.ipLocalReservedPorts && a.tcpRmem == b.tcpRmem && a.rmemMax == b.rmemMax &&
            a.ipNoPmtuDisc == b.ipNoPmtuDisc && a.tcpWorkaroundSignedWindows == b.tcpWorkaroundSignedWindows &&
            a.ipRtMinAdvmss == b.ipRtMinAdvmss && a.ipNonlocalBind == b.ipNonlocalBind && a.sourceRouteDevices == b.sourceRouteDevices &&
            a.tcpTwReuse == b.tcpTwReuse && a.tcpTwReuseDelay == b.tcpTwReuseDelay
    }

    /// `IN_DEV_SOURCE_ROUTE` per device from `net.ipv4.conf.<all|dev>.accept_source_route` values (NetCore's
    /// `IPv4DeviceSettings` combines them).
    public mutating func readSourceRoute(_ values: [String: String], devices: [String]) {
        sourceRouteDevices = Set(devices.filter { IPv4DeviceSettings(reading: values, device: $0).acceptSourceRoute })
    }

    /// Fill from `key → value` pairs as read under /proc/sys (`net.ipv4.tcp_sack` → "1"); unknown keys are ignored.
    public init(reading values: [String: String]) {
        self.init()
        func int(_ k: String) -> Int? { values[k].flatMap { Int($0.split(whereSeparator: \.isWhitespace).first ?? "") } }
        if let v = int("net.ipv4.tcp_timestamps") { tcpTimestamps = v }
        if let v = int("net.ipv4.tcp_sack") { tcpSack = v != 0 }
        if let v = int("net.ipv4.tcp_window_scaling") { tcpWindowScaling = v != 0 }
        if let v = int("net.ipv4.tcp_ecn") { tcpEcn = v }
        if let v = int("net.ipv4.tcp_syn_retries") { tcpSynRetries = v }
        if let v = int("net.ipv4.tcp_syn_linear_timeouts") { tcpSynLinearTimeouts = v }
        if let v = int("net.ipv4.ip_default_ttl") { ipDefaultTTL = v }
        if let v = int("net.ipv4.ip_no_pmtu_disc") { ipNoPmtuDisc = v }
        if let v = int("net.ipv4.tcp_workaround_signed_windows") { tcpWorkaroundSignedWindows = v != 0 }
        if let v = int("net.ipv4.route.min_adv_mss") { ipRtMinAdvmss = v }
        if let v = int("net.core.rmem_max") { rmemMax = v }
        if let v = int("net.ipv4.ip_nonlocal_bind") { ipNonlocalBind = v != 0 }
        if let v = int("net.ipv4.tcp_tw_reuse") { tcpTwReuse = v }
        if let v = int("net.ipv4.tcp_tw_reuse_delay") { tcpTwReuseDelay = v }
        if let r = values["net.ipv4.ip_local_port_range"] {
            let p = r.split(whereSeparator: \.isWhitespace).compactMap { UInt16($0) }
            if p.count == 2, p[0] <= p[1] { ipLocalPortRange = p[0]...p[1] }
        }
        if let r = values["net.ipv4.tcp_rmem"] {
            let p = r.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
            if p.count == 3 { tcpRmem = (p[0], p[1], p[2]) }
        }
        if let r = values["net.ipv4.ip_local_reserved_ports"] {
            // "1000,2000-2010"
            for part in r.split(separator: ",") {
                let b = part.split(separator: "-").compactMap { UInt16($0.trimmingWhitespace) }
                if b.count == 1 { ipLocalReservedPorts.insert(b[0]) }
                if b.count == 2, b[0] <= b[1] { for p in b[0]...b[1] { ipLocalReservedPorts.insert(p) } }
            }
        }
    }

    /// The keys `init(reading:)` understands.
    public static let keys = ["net.ipv4.tcp_timestamps", "net.ipv4.tcp_sack", "net.ipv4.tcp_window_scaling", "net.ipv4.tcp_ecn",
                              "net.ipv4.tcp_syn_retries", "net.ipv4.tcp_syn_linear_timeouts", "net.ipv4.ip_default_ttl",
                              "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_rmem",
                              "net.core.rmem_max", "net.ipv4.ip_no_pmtu_disc", "net.ipv4.tcp_workaround_signed_windows",
                              "net.ipv4.route.min_adv_mss", "net.ipv4.ip_nonlocal_bind", "net.ipv4.tcp_tw_reuse",
                              "net.ipv4.tcp_tw_reuse_delay"]
}

extension Substring {
    var trimmingWhitespace: Substring {
        var s = self
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return s
    }
}
