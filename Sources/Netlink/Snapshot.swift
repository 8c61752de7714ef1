import CNetlink
import Glibc
import NetCore
import SystemPackage

extension RoutingSnapshot {
    /// Read a namespace's routing state through libnl dumps (links, addresses, routes of all tables, rules), and the
    /// sysctls that matter, read on the namespace's own thread.
    public static func read(_ namespace: NetworkNamespace) throws -> RoutingSnapshot {
        let socket = try NetlinkSocket(in: namespace)
        return try read(socket: socket, namespace: namespace)
    }

    /// With `namespace` nil, the sysctls are read on the calling thread (the socket's own namespace, the caller's).
    public static func read(socket: NetlinkSocket, namespace: NetworkNamespace?) throws -> RoutingSnapshot {
        let links = try socket.links.list()
        let addresses = try socket.addresses.list()
        let routes = try socket.routes.list()
        let rules = try socket.rules.list()
        var nexthopObjects = try socket.nexthops.list()
        if nexthopObjects.contains(where: \.resilient) {
            let buckets = try socket.nexthops.buckets()
            for i in nexthopObjects.indices where nexthopObjects[i].resilient { nexthopObjects[i].buckets = buckets[nexthopObjects[i].id] ?? [] }
        }
        let neighbours = nexthopObjects.isEmpty ? [] : try socket.neighbours.list()
        var keys = MultipathSettings.sysctlNames
        // Per-device IPv4 conf (and `all`), as `IPv4DeviceSettings` combines them: output lookups read linkdown and
        // localnet, input lookups (`iif`) the forwarding and source-validation ones, and the connect engine
        // `accept_source_route` (whether a reply carrying a source route is taken in).
        for d in ["all"] + links.map(\.name) { for c in IPv4DeviceSettings.sysctlNames { keys.append("net/ipv4/conf/\(d)/\(c)") } }
        keys.append("net.ipv4.ip_local_port_range")
        let readAll = { () -> [String: String] in
            var v: [String: String] = [:]
            for k in keys { if let s = try? Sysctls.read(k) { v[k.replacingSlashes] = s } }
            return v
        }
        let values: [String: String] = try namespace.map { try $0.run(readAll) } ?? readAll()
        return RoutingSnapshot(links: links, addresses: addresses, routes: routes, rules: rules, sysctls: values,
                               nexthopObjects: nexthopObjects, neighbours: neighbours)
    }
}

extension String {
    /// `net/ipv4/conf/eth0/x` → `net.ipv4.conf.eth0.x` (device names keep their dots in the 4th part).
    var replacingSlashes: String { split(separator: "/").joined(separator: ".") }
}

/// What the kernel answers to `ip route get`: RTM_GETROUTE with the same inputs as a lookup.
public struct KernelRouteAnswer: Sendable, Equatable {
    public var source: IPv4Address?
    public var device: Int32
    public var gateway: IPv4Address?
    public var table: UInt32
    public var type: RouteType
}

extension NetlinkSocket {
    /// `ip route get DEST [from SRC] [oif DEV | iif DEV] [mark M] [tos T] [uid U] [ipproto P] [sport N] [dport N]`: one
    /// route lookup by the kernel (`inet_rtm_getroute`): an output lookup, or with `inputIndex` an input one
    /// (`ip_route_input_rcu`, as for a packet arriving on that device). Errors are the lookup's errno.
    public func routeGet(destination: IPv4Address, source: IPv4Address = .any, outputIndex: Int32 = 0, inputIndex: Int32 = 0,
                         mark: UInt32 = 0,
                         tos: UInt8 = 0, uid: UInt32 = 0, proto: IPProtocol = .tcp, sourcePort: UInt16 = 0,
                         destinationPort: UInt16 = 0) -> Result<KernelRouteAnswer, Errno> {
        var h = rtmsg()
        h.rtm_family = UInt8(AF_INET)
        h.rtm_dst_len = 32
        h.rtm_src_len = source == .any ? 0 : 32
        h.rtm_tos = tos
        h.rtm_flags = 0x1000   // RTM_F_LOOKUP_TABLE, as `ip route get` sets: report the table that matched
        let m = NetlinkMessage(type: attr(RTM_GETROUTE), flags: NLM_F_REQUEST)
        m.append(h)
        m.put(attr(RTA_DST), ipv4: destination.value)
        if source != .any { m.put(attr(RTA_SRC), ipv4: source.value) }
        if outputIndex != 0 { m.put(attr(RTA_OIF), u32: UInt32(bitPattern: outputIndex)) }
        if inputIndex != 0 { m.put(attr(RTA_IIF), u32: UInt32(bitPattern: inputIndex)) }
        if mark != 0 { m.put(attr(RTA_MARK), u32: mark) }
        m.put(attr(RTA_UID), u32: uid)
        m.put(attr(RTA_IP_PROTO), u8: proto.rawValue)
        if sourcePort != 0 { m.put(attr(RTA_SPORT), u16: sourcePort.bigEndian) }
        if destinationPort != 0 { m.put(attr(RTA_DPORT), u16: destinationPort.bigEndian) }
        do {
            let replies = try request(m, "ip route get \(destination)")
            guard let reply = replies.first, let r = Routes.parse(reply) else { return .failure(.ioError) }
            // With `from`, the kernel returns the source as RTA_SRC and leaves RTA_PREFSRC out (they are equal).
            let src = reply.attributes(after: MemoryLayout<rtmsg>.size)[attr16(RTA_SRC)].map { IPv4Address($0.ipv4) }
            return .success(KernelRouteAnswer(source: r.prefsrc ?? src, device: r.nexthops.first?.index ?? 0,
                                              gateway: r.nexthops.first?.gateway, table: r.table, type: r.type))
        } catch {
            return .failure(error.errno ?? .ioError)
        }
    }
}
