import CNetSys
import Engine
import Foundation
import Glibc
import NetCore
import Netlink

/// What a series of connects keeps open in one node's namespace (`ConnectCache.handles`): every socket the runs
/// need there is opened once (each opening is a thread that enters the namespace; closing a packet socket waits for
/// an RCU grace period, ~10–20 ms), and the node's routing snapshot is read once and reused while nothing changed it.
///
/// The snapshot is never stale: a NETLINK_ROUTE socket subscribed, before the snapshot is first read, to every group
/// that announces a change of what it holds (links — carrier and flags included, IPv4 addresses, routes, rules,
/// netconf, nexthop objects) is drained before each use, and any message on it (or an overrun, ENOBUFS) means read
/// again. The kernel announces a change after making it, so a change the snapshot missed is always announced after
/// the subscription. Sysctls are not announced: every one the snapshot holds is read again on each use (through
/// files opened once in the namespace: a sysctl file reads the namespace it was opened in), and a different value
/// means read again. A snapshot with nexthop objects also holds neighbour states, which change all the time: it is
/// read again on each use.
public final class NodeHandles: @unchecked Sendable {
    public let namespace: NetworkNamespace
    private var netlinkSocket: NetlinkSocket?
    private var rawSocket: RawSocket?
    private var engineSocket: PacketSocket?
    private var diag: Int32 = -1
    private var events: Int32 = -1
    private var snapshot: RoutingSnapshot?
    /// Open sysctl files: (dotted key, fd), the snapshot's and `NodeSysctls.keys`.
    private var sysctlFiles: [(key: String, fd: Int32)] = []
    /// How often the snapshot was read and reused (for `NETLAB_TIMING` and tests).
    public private(set) var snapshotReads = 0, snapshotReuses = 0

    private var worker: NamespaceWorker?

    public init(_ namespace: NetworkNamespace) { self.namespace = namespace }

    /// Run `body` on a thread kept inside the namespace (for the sockets a run opens each time, such as the kernel
    /// side's): handing it work costs a wake-up, where `NetworkNamespace.run` creates a thread and enters the
    /// namespace every time.
    public func run<T>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        if worker == nil { worker = try NamespaceWorker(namespace) }
        return try worker!.run(body)
    }

    deinit {
        worker?.stop()
        if diag >= 0 { close(diag) }
        if events >= 0 { close(events) }
        for f in sysctlFiles { close(f.fd) }
    }

    /// A NETLINK_ROUTE socket for requests (dumps) in the namespace.
    public var netlink: NetlinkSocket {
        get throws {
            if let s = netlinkSocket { return s }
            let s = try NetlinkSocket(in: namespace)
            netlinkSocket = s
            return s
        }
    }

    /// The engine's raw socket.
    public var raw: RawSocket {
        get throws {
            if let s = rawSocket { return s }
            let s = try RawSocket(in: namespace)
            rawSocket = s
            return s
        }
    }

    /// The engine's packet socket, filtered to one flow now: the new filter replaces the old one, and what the old
    /// one let in (another run's frames) is read and dropped before this returns.
    public func engineReceiver(_ filter: BPFProgram) throws -> PacketSocket {
        if let s = engineSocket {
            try filter.attach(to: s.fd)
            _ = try s.drain()
            return s
        }
        let s = try PacketSocket(in: namespace, filter: filter)
        engineSocket = s
        return s
    }

    /// `ss -tan` in the namespace over a NETLINK_SOCK_DIAG socket kept open.
    public func tcpSockets() throws -> [DiagSocket] {
        if diag < 0 {
            let ns = namespace
            diag = try ns.run { () throws(DriverError) -> Int32 in
                try sys("socket(AF_NETLINK, NETLINK_SOCK_DIAG) in \(ns.name)") {
                    socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
                }
            }
        }
        return try SockDiag.tcpSockets(fd: diag, namespace: namespace)
    }

    /// The node's routing snapshot: the one read before if nothing changed since (see the type's comment).
    public func routingSnapshot() throws -> RoutingSnapshot { try routingSnapshotAndSysctls().0 }

    /// The snapshot and the values of every sysctl file open (`NodeSysctls.keys` among them), read once.
    public func routingSnapshotAndSysctls() throws -> (RoutingSnapshot, [String: String]) {
        if events < 0 { try subscribe() }
        let changed = drainEvents()
        if !changed, let s = snapshot, s.nexthopObjects.isEmpty {
            var same = true
            let values = try sysctlValues()
            for (k, v) in s.sysctls where values[k] != v { same = false; break }
            if same {
                snapshotReuses += 1
                return (s, values)
            }
        }
        let s = try RoutingSnapshot.read(socket: try netlink, namespace: namespace)
        snapshotReads += 1
        snapshot = s
        try openSysctls(Array(s.sysctls.keys) + NodeSysctls.keys)
        return (s, try sysctlValues())
    }

    /// The values of `NodeSysctls.keys` (and the snapshot's, unless `only`), read through the open files; keys that
    /// cannot be read are left out, as `Sysctls.read` failing leaves them out.
    public func sysctlValues(only: Set<String>? = nil) throws -> [String: String] {
        if sysctlFiles.isEmpty { try openSysctls(NodeSysctls.keys) }
        var v: [String: String] = [:]
        var buf = [UInt8](repeating: 0, count: 4096)
        for f in sysctlFiles {
            if let only, !only.contains(f.key) { continue }
            let n = pread(f.fd, &buf, buf.count, 0)
            if n < 0 { continue }
            v[f.key] = String(decoding: buf[0..<n], as: UTF8.self).trimmingWhitespace
        }
        return v
    }

    private func openSysctls(_ keys: [String]) throws {
        for f in sysctlFiles { close(f.fd) }
        sysctlFiles = []
        let wanted = Array(Set(keys)).sorted()
        sysctlFiles = try namespace.run {
            var out: [(key: String, fd: Int32)] = []
            for k in wanted {
                let fd = open(Self.path(k), O_RDONLY | O_CLOEXEC)
                if fd >= 0 { out.append((k, fd)) }
            }
            return out
        }
    }

    /// /proc/sys path of a dotted key: `net.ipv4.conf.DEV.NAME` keeps the dots of DEV (the snapshot's keys name
    /// devices that way), others have every dot a slash.
    static func path(_ key: String) -> String {
        let conf = "net.ipv4.conf."
        if key.hasPrefix(conf), let dot = key.lastIndex(of: "."), dot > key.index(key.startIndex, offsetBy: conf.count) {
            let device = key[key.index(key.startIndex, offsetBy: conf.count)..<dot]
            return "/proc/sys/net/ipv4/conf/\(device)/\(key[key.index(after: dot)...])"
        }
        return "/proc/sys/" + key.split(separator: ".").joined(separator: "/")
    }

    private func subscribe() throws {
        let ns = namespace
        events = try ns.run { () throws(DriverError) -> Int32 in
            try sys("socket(AF_NETLINK, NETLINK_ROUTE) in \(ns.name)") {
                socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0 /* NETLINK_ROUTE */)
            }
        }
        // sockaddr_nl { AF_NETLINK, pad, pid 0 (the kernel assigns one), groups 0 }
        var local: [UInt8] = [UInt8(AF_NETLINK), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        try sys("bind(NETLINK_ROUTE) in \(ns.name)") {
            local.withUnsafeMutableBytes { bind(events, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), 12) }
        }
        // RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV4_RULE, RTNLGRP_IPV4_NETCONF, RTNLGRP_NEXTHOP.
        for group: Int32 in [1, 5, 7, 8, 24, 32] {
            try setOption(events, 270 /* SOL_NETLINK */, 1 /* NETLINK_ADD_MEMBERSHIP */, group, "NETLINK_ADD_MEMBERSHIP \(group) in \(ns.name)")
        }
        try setOption(events, SOL_SOCKET, SO_RCVBUFFORCE, Int32(1 << 20), "SO_RCVBUFFORCE")
    }

    /// Read every queued announcement; true if there was one (or the queue overran).
    private func drainEvents() -> Bool {
        var buf = [UInt8](repeating: 0, count: 16384)
        var changed = false
        while true {
            let n = buf.withUnsafeMutableBytes { recv(events, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { changed = true; continue }
            if n < 0 && Glibc.errno == EINTR { continue }
            if n < 0 && Glibc.errno != EAGAIN { changed = true }   // ENOBUFS: announcements were lost
            return changed
        }
    }
}

/// A thread that entered a namespace once and runs closures there on request, one at a time.
final class NamespaceWorker: @unchecked Sendable {
    private let condition = NSCondition()
    private var job: (() -> Void)?
    private var done = false
    private var stopping = false

    init(_ namespace: NetworkNamespace) throws {
        let fd = try namespace.open()
        let entered = UncheckedResult<Int32>()
        let ready = DispatchSemaphore(value: 0)
        let raw = fd.rawValue
        let thread = Thread { [self] in
            let e = netsys_setns_net(raw) == 0 ? 0 : Glibc.errno
            entered.value = .success(e)
            ready.signal()
            guard e == 0 else { return }
            self.loop()
        }
        thread.start()
        ready.wait()
        try? fd.close()
        if let e = try? entered.value?.get(), e != 0 { throw DriverError(operation: "setns \(namespace.name)", errno: .init(rawValue: e)) }
    }

    private func loop() {
        condition.lock()
        while true {
            while job == nil && !stopping { condition.wait() }
            if let j = job {
                condition.unlock()
                j()
                condition.lock()
                job = nil
                done = true
                condition.broadcast()
                continue
            }
            if stopping { break }
        }
        condition.unlock()
    }

    func run<T>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        var result: Result<T, Error>?
        let box = UncheckedResult<T>()
        condition.lock()
        done = false
        job = { box.value = Result { try body() } }
        condition.broadcast()
        while !done { condition.wait() }
        condition.unlock()
        result = box.value
        return try result!.get()
    }

    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }
}

private final class UncheckedResult<T>: @unchecked Sendable {
    var value: Result<T, Error>?
}
