import Foundation
import Netlink
import SystemPackage
import Topology

/// What `up` made, for the one-line summary.
public struct UpSummary: Sendable {
    public var nodes, links, addresses, routes, rules: Int
    public var namespaces: Int
    public var seconds: Double
}

/// Brings labs up and down. Each step goes through the netlink layer; nothing shells out.
public enum LabController {
    /// Called with a phase name, the number of objects done in it and the total.
    public typealias Progress = (_ phase: String, _ done: Int, _ total: Int) -> Void

    /// `netlab up`: journal, namespaces, links, addresses, sysctls, routes, rules. Any failure rolls back everything
    /// made so far and throws the kernel's error at the file position of the object it refused.
    @discardableResult
    public static func up(_ topology: Topology, progress: Progress? = nil) throws -> UpSummary {
        let start = Date()
        let plan = LabPlan(topology)
        if let j = try? Journal.read(lab: topology.lab) { throw LabError.alreadyUp(lab: topology.lab, journal: j) }
        for ns in plan.namespaces where NetworkNamespace(named: ns.name).exists {
            throw LabError.namespaceTaken(lab: topology.lab, namespace: ns.name)
        }
        var journal = Journal(lab: topology.lab, file: absolute(topology.file), source: topology.source, state: .applying,
                              phase: "namespaces", pid: getpid(), started: start, namespaces: plan.namespaces.map(\.name))
        try journal.write()
        do {
            var builder = Builder(plan: plan, progress: progress)
            try builder.build { phase in
                journal.phase = phase
                try journal.write()
            }
            builder.close()
            journal.state = .up
            journal.phase = "done"
            try journal.write()
        } catch {
            progress?("rollback", 0, plan.namespaces.count)
            for ns in plan.namespaces { try? NetworkNamespace.delete(named: ns.name) }
            Journal.remove(lab: topology.lab)
            throw error
        }
        let c = plan.counts
        return UpSummary(nodes: c.nodes, links: c.links, addresses: c.addresses, routes: c.routes, rules: c.rules,
                         namespaces: plan.namespaces.count, seconds: Date().timeIntervalSince(start))
    }

    /// `netlab down LAB`: delete every namespace the journal names, then the journal. Idempotent.
    /// Returns the namespaces that existed and were deleted.
    @discardableResult
    public static func down(lab: String) throws -> [String] {
        guard var journal = try Journal.read(lab: lab) else { return [] }
        journal.state = .tearingDown
        try? journal.write()
        var deleted: [String] = []
        for name in journal.namespaces {
            let ns = NetworkNamespace(named: name)
            if ns.exists {
                try NetworkNamespace.delete(named: name)
                deleted.append(name)
            }
        }
        Journal.remove(lab: lab)
        return deleted
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}

/// One `up` in progress: the namespaces' fds and sockets, and each namespace's ifindex by name.
struct Builder {
    let plan: LabPlan
    let progress: LabController.Progress?
    var fds: [String: FileDescriptor] = [:]
    var sockets: [String: NetlinkSocket] = [:]
    var index: [String: [String: Int32]] = [:]

    init(plan: LabPlan, progress: LabController.Progress?) {
        self.plan = plan
        self.progress = progress
    }

    var file: String { plan.topology.file }

    func rejected(_ at: SourceLocation, _ object: String, _ error: Error, hint: String? = nil) -> Error {
        guard let e = error as? NetlinkError else { return error }
        return LabError.rejected(file: file, location: at, object: object, error: e, hint: hint)
    }

    mutating func close() {
        for fd in fds.values { try? fd.close() }
        fds = [:]
        sockets = [:]
    }

    func ns(_ node: Node) -> String { plan.topology.namespace(of: node.name) }

    /// Stop between steps when SIGINT/SIGTERM arrived (see `Interrupts.trap`); the caller rolls back.
    static func checkInterrupt() throws {
        if let s = Interrupts.signal { throw LabError.interrupted(signal: s) }
    }

    mutating func build(phase report: (String) throws -> Void) throws {
        defer { close() }
        func phase(_ p: String) throws {
            try Builder.checkInterrupt()
            try report(p)
        }
        let topo = plan.topology
        // Namespaces, on a few dedicated threads in parallel. Each thread, while inside the new namespace, opens its
        // netlink socket, brings lo up and writes the node-wide sysctls; conf/default is set before any interface
        // exists, so the interfaces made next inherit it, as the kernel does for every new device.
        let count = plan.namespaces.count
        let results = UncheckedResults<(FileDescriptor, NetlinkSocket)>(count)
        let planned = plan.namespaces
        let early: [[Sysctl]] = planned.map { ns in ns.node.flatMap { topo.node($0) }.map(LabPlan.earlySysctls) ?? [] }
        let made = Counter()
        // Two threads: more only contend for rtnl (measured with scripts/bench-up).
        DedicatedThread.forEach(count, threads: 2) { i in
            let ns = planned[i]
            results.set(i, Result {
                let n = try NetworkNamespace.createHere(named: ns.name)
                let fd = try n.open()
                let s = try NetlinkSocket()
                try s.links.set(index: 1, name: "lo", up: true)
                for sysctl in early[i] { try Sysctls.write(sysctl.key, sysctl.value) }
                return (fd, s)
            })
            progress?("namespaces", made.increment(), count)
        }
        var firstError: (Int, Error)?
        for i in 0..<count {
            switch results.get(i) {
            case .success(let (fd, s)): fds[planned[i].name] = fd; sockets[planned[i].name] = s
            case .failure(let e): if firstError == nil { firstError = (i, e) }
            case nil: break
            }
        }
        try Builder.checkInterrupt()
        if let (i, error) = firstError {
            let at = planned[i].node.flatMap { topo.node($0)?.location } ?? SourceLocation(line: 1, column: 1)
            throw rejected(at, "namespace \(planned[i].name)", error)
        }
        // Links: veth pairs created with each end in its namespace, bridges, standalone devices.
        try phase("links")
        for (k, v) in plan.veths.enumerated() {
            do {
                try sockets[v.namespace]!.links.addVeth(name: v.name, namespace: fds[v.namespace]!.rawValue,
                                                        peer: v.peerName, peerNamespace: fds[v.peerNamespace]!.rawValue,
                                                        mtu: v.mtu)
            } catch { throw rejected(v.location, v.label, error) }
            progress?("links", k + 1, plan.veths.count)
            try Builder.checkInterrupt()
        }
        for b in plan.bridges {
            do { try sockets[b.namespace]!.links.add(name: b.name, kind: "bridge") } catch {
                throw rejected(b.location, "LAN segment bridge", error)
            }
        }
        for d in plan.devices {
            do { try sockets[d.namespace]!.links.add(name: d.name, kind: d.kind.rawValue) } catch {
                let missing = error.errno == .notSupported
                throw rejected(d.location, "interface \(d.name) of type \(d.kind.rawValue)", error,
                               hint: missing ? "this kernel has no \"\(d.kind.rawValue)\" driver; use a veth link (`links:`) instead" : nil)
            }
        }
        progress?("link index", 0, plan.namespaces.count)
        var down: [String: [LinkInfo]] = [:]   // devices created down (veth peers, bridges, standalone devices)
        for ns in plan.namespaces {
            let links = try sockets[ns.name]!.links.list()
            index[ns.name] = Dictionary(links.map { ($0.name, $0.index) }, uniquingKeysWith: { a, _ in a })
            down[ns.name] = links.filter { !$0.isUp }
        }
        for b in plan.bridges {
            let s = sockets[b.namespace]!, idx = index[b.namespace]!
            for p in b.ports { try s.links.set(index: idx[p]!, name: p, master: idx[b.name]!) }
        }
        for node in topo.nodes {
            for i in node.interfaces where i.mtu != nil {
                do { try sockets[ns(node)]!.links.set(index: index[ns(node)]![i.name]!, name: i.name, mtu: i.mtu) } catch {
                    throw rejected(i.location, "mtu \(i.mtu!) of \(node.name):\(i.name)", error)
                }
            }
        }
        // Everything up, lo included (a fresh namespace's lo is down).
        progress?("link up", 0, plan.namespaces.count)
        for ns in plan.namespaces {
            let s = sockets[ns.name]!
            for l in down[ns.name] ?? [] { try s.links.set(index: l.index, name: l.name, up: true) }
        }
        // Addresses, in declared order per interface.
        try phase("addresses")
        let totalAddresses = plan.counts.addresses
        var done = 0
        for node in topo.nodes {
            let s = sockets[ns(node)]!, idx = index[ns(node)]!
            for i in node.interfaces {
                for a in i.addresses {
                    do {
                        try s.addresses.add(index: idx[i.name]!, device: i.name, prefix: a.prefix, scope: a.scope?.value ?? 0,
                                            noprefixroute: a.noprefixroute, metric: a.metric)
                    } catch { throw rejected(a.location, "address \(a.text) on \(node.name):\(i.name)", error) }
                    done += 1
                    progress?("addresses", done, totalAddresses)
                }
            }
        }
        // Sysctls, on the namespace's own thread.
        try phase("sysctls")
        for (k, node) in topo.nodes.enumerated() {
            let sysctls = LabPlan.lateSysctls(of: node)
            if sysctls.isEmpty { continue }
            try NetworkNamespace(named: ns(node)).run {
                for s in sysctls {
                    do { try Sysctls.write(s.key, s.value) } catch let e as NetlinkError {
                        let missing = e.errno == .noSuchFileOrDirectory
                        throw rejected(s.location, "sysctl \(s.key)=\(s.value) of node \(node.name)", e,
                                       hint: missing ? "no such sysctl in a network namespace (check the key; per-device keys need an existing interface)" : nil)
                    }
                }
            }
            progress?("sysctls", k + 1, topo.nodes.count)
        }
        // Routes, then rules.
        try phase("routes")
        done = 0
        for node in topo.nodes {
            let s = sockets[ns(node)]!, idx = index[ns(node)]!
            for r in node.routes {
                do { try s.routes.add(KernelForm.route(r, index: idx), text: r.text) } catch {
                    throw rejected(r.location, "route \"\(r.text)\"", error)
                }
                done += 1
                progress?("routes", done, plan.counts.routes)
                try Builder.checkInterrupt()
            }
        }
        try phase("rules")
        done = 0
        for node in topo.nodes {
            let s = sockets[ns(node)]!
            for r in node.rules {
                do { try s.rules.add(KernelForm.rule(r), text: r.text) } catch {
                    throw rejected(r.location, "rule \"\(r.text)\"", error)
                }
                done += 1
                progress?("rules", done, plan.counts.rules)
            }
        }
        // Interfaces declared `up: false` go down last, once their addresses and routes are in: the kernel then
        // does what it does on a link failure (flushes their routes, marks multipath legs dead, the peer loses carrier).
        var peers: [(namespace: String, index: Int32)] = []
        for node in topo.nodes {
            for i in node.interfaces where !i.up {
                do { try sockets[ns(node)]!.links.set(index: index[ns(node)]![i.name]!, name: i.name, up: false) } catch {
                    throw rejected(i.location, "setting \(node.name):\(i.name) down", error)
                }
                for l in topo.links where !l.isSegment && l.ends.contains(where: { $0.node == node.name && $0.interface == i.name }) {
                    for e in l.ends where !(e.node == node.name && e.interface == i.name) {
                        if let n = topo.nodes.first(where: { $0.name == e.node }), let k = index[ns(n)]?[e.interface] { peers.append((ns(n), k)) }
                    }
                }
            }
        }
        try settleCarrier(peers)
    }

    /// The kernel takes a veth peer's lost carrier in a moment later (linkwatch work): its operstate leaves RUNNING and
    /// its routes' nexthops are marked linkdown. `up` returns once that happened, so a lookup made right after `up`
    /// sees what every later one sees. Gives up after two seconds.
    func settleCarrier(_ peers: [(namespace: String, index: Int32)]) throws {
        guard !peers.isEmpty else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < deadline {
            var settled = true
            for p in peers {
                guard let s = sockets[p.namespace] else { continue }
                let running = try s.links.list().first { $0.index == p.index }.map { $0.flags & 0x40 != 0 } ?? false   // IFF_RUNNING
                // Local-table routes are never marked (fib_sync_down_dev skips them).
                let unmarked = try s.routes.list().contains { r in
                    r.table != 255 && r.type == .unicast && r.nexthops.contains { $0.index == p.index && !$0.linkdown && !$0.dead }
                }
                if running || unmarked { settled = false; break }
            }
            if settled { return }
            usleep(2000)
        }
    }
}

/// The topology's routes and rules in the kernel's terms (what goes into RTM_NEWROUTE / RTM_NEWRULE).
public enum KernelForm {
    /// The scope iproute2 gives a route it is not told one: host for local, link for a device route, else universe.
    public static func scope(_ r: Route) -> UInt8 {
        if let s = r.scope { return s.value }
        if r.type == .local { return AddressScope.host.value }
        if r.type == .unicast, !r.isMultipath, r.nexthops.allSatisfy({ $0.gateway == nil }) { return AddressScope.link.value }
        return AddressScope.global.value
    }

    public static func route(_ r: Route, index: [String: Int32]) -> RouteInfo {
        RouteInfo(table: r.table, type: r.type, scope: scope(r), proto: r.proto ?? 3, destination: r.destination,
                  tos: r.tos ?? 0, metric: r.metric ?? 0, prefsrc: r.src, mtu: r.mtu, advmss: r.advmss, hoplimit: r.hoplimit,
                  nexthops: r.nexthops.map {
                      NexthopInfo(gateway: $0.gateway, index: $0.dev.flatMap { index[$0] } ?? 0, weight: $0.weight,
                                  flags: $0.onlink ? NexthopInfo.onlinkFlag : 0)
                  },
                  multipath: r.isMultipath)
    }

    public static func rule(_ r: Rule) -> RuleInfo {
        var k = RuleInfo()
        k.priority = r.pref
        k.invert = r.invert
        k.from = r.from
        k.to = r.to
        k.iif = r.iif
        k.oif = r.oif
        k.fwmark = r.fwmark
        k.fwmask = r.fwmask
        k.tos = r.tos ?? 0
        k.dscp = r.dscp
        k.ipproto = r.ipproto
        k.sport = r.sport.map { $0.start...$0.end }
        k.dport = r.dport.map { $0.start...$0.end }
        k.uidrange = r.uidrange
        k.suppressPrefixLength = r.suppressPrefixLength.map(Int32.init)
        k.action = r.action.value
        switch r.action {
        case .lookup(let t): k.table = t
        case .goto(let p): k.goto = p
        default: break
        }
        return k
    }
}

/// Per-index results filled in by worker threads.
final class UncheckedResults<T>: @unchecked Sendable {
    private var slots: [Result<T, Error>?]
    private let lock = NSLock()
    init(_ n: Int) { slots = Array(repeating: nil, count: n) }
    func set(_ i: Int, _ r: Result<T, Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    func get(_ i: Int) -> Result<T, Error>? { lock.lock(); defer { lock.unlock() }; return slots[i] }
}

final class Counter: @unchecked Sendable {
    private var n = 0
    private let lock = NSLock()
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
}
