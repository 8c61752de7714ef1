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

/// What `down` did.
public struct DownReport: Sendable {
    /// Namespaces deleted.
    public var deleted: [String] = []
    /// Namespaces (or files) under the lab's names that were left alone, each with why.
    public var leftAlone: [(name: String, why: String)] = []
    /// Processes that were running inside the lab's namespaces and were ended.
    public var processesEnded = 0
    /// Set when the journal was unreadable and the namespaces were found by netlab's mark instead.
    public var journalProblem: String?
    /// Whether the lab had a journal (or a damaged one): false means it was not up.
    public var wasUp = false
    /// The netlab that was killed while it held the lab, if one was.
    public var orphanedBy: LabLock.Holder?
    /// Namespaces holding a `netlab_guard` table that such a killed `check` or `connect` left (deleted with them).
    public var guardTables: [String] = []
}

/// Brings labs up and down. Each step goes through the netlink layer; nothing shells out.
///
/// Ownership: every namespace `up` makes carries netlab's mark (`lo`'s alias, set before the namespace is pinned)
/// and has its identity recorded in the journal; rollback and `down` delete a namespace only when its identity (or,
/// if it was never recorded, its mark) proves this lab made it. A lab's operations hold its `LabLock`.
public enum LabController {
    /// Called with a phase name, the number of objects done in it and the total.
    public typealias Progress = (_ phase: String, _ done: Int, _ total: Int) -> Void
    /// Called once when another process holds the lab's lock and this one waits for it.
    public typealias Waiting = (LabLock.Holder) -> Void

    /// `netlab up`: journal, namespaces, links, addresses, sysctls, routes, rules. Any failure rolls back exactly what
    /// this call made and throws the kernel's error at the file position of the object it refused.
    @discardableResult
    public static func up(_ topology: Topology, progress: Progress? = nil, waiting: Waiting? = nil) throws -> UpSummary {
        let start = Date()
        let lab = topology.lab
        guard LabNames.isLab(lab) else { throw LabError.journal(.badLabName(lab)) }
        let plan = LabPlan(topology)
        for ns in plan.namespaces where !(NetworkNamespace.isValidName(ns.name) && LabNames.namespace(ns.name, belongsTo: lab)) {
            throw LabError.system("namespace name \"\(ns.name)\" is not one of lab \(lab)'s (node names: \(LabNames.nodeRule))")
        }
        let lock = try LabLock.acquire(lab: lab, command: "up", waiting: waiting)
        defer { lock.release() }
        var journal = Journal(lab: lab, file: absolute(topology.file), source: topology.source, state: .applying,
                              phase: "namespaces", pid: getpid(), started: start, namespaces: plan.namespaces.map(\.name))
        try DirectoryLock.with {
            do {
                if let j = try Journal.read(lab: lab) { throw LabError.alreadyUp(lab: lab, journal: j) }
            } catch let e as JournalError { throw LabError.journal(e) }
            if let other = Journal.labs().first(where: { $0 != lab && LabNames.mayClash($0, lab) }) {
                throw LabError.nameClash(lab: lab, other: other)
            }
            for ns in plan.namespaces where NetworkNamespace(named: ns.name).exists {
                throw LabError.namespaceTaken(lab: lab, namespace: ns.name)
            }
            try journal.write(source: true)
        }
        var builder = Builder(plan: plan, progress: progress, mark: journal.mark)
        do {
            try builder.build { phase, made in
                journal.phase = phase
                journal.made = made
                try journal.write()
            }
            journal.state = .up
            journal.phase = "done"
            journal.made = builder.made
            try journal.write()
        } catch {
            progress?("rollback", 0, builder.made.count)
            for m in builder.made { _ = try? NetworkNamespace.delete(named: m.name, expecting: m.identity) }
            Journal.remove(lab: lab)
            throw error
        }
        let c = plan.counts
        return UpSummary(nodes: c.nodes, links: c.links, addresses: c.addresses, routes: c.routes, rules: c.rules,
                         namespaces: plan.namespaces.count, seconds: Date().timeIntervalSince(start))
    }

    /// `netlab down LAB`: end the processes inside the lab's namespaces, delete the namespaces this lab made (proved
    /// by identity or mark; anything else under its names is left alone and reported), then the journal. Idempotent.
    /// With an unreadable journal, the lab's namespaces are found by their mark. SIGINT/SIGTERM stop it between
    /// namespaces (`LabError.interrupted`), keeping the journal so a second `down` finishes.
    @discardableResult
    public static func down(lab: String, waiting: Waiting? = nil) throws -> DownReport {
        guard LabNames.isLab(lab) else { throw LabError.journal(.badLabName(lab)) }
        // A `down` that cleans up after Ctrl-C (check, selftest) must finish: only a signal after this one stops it.
        let mark = Interrupts.count
        let lock = try LabLock.acquire(lab: lab, command: "down", waiting: waiting)
        defer { lock.release() }
        var report = DownReport()
        var doomed: [(name: String, identity: NetworkNamespace.Identity)] = []
        let journal: Journal?
        do { journal = try Journal.read(lab: lab) } catch {
            guard case .corrupt(_, let path, let why) = error else { throw LabError.journal(error) }
            journal = nil
            report.journalProblem = "\(path) is unreadable (\(why)); found the lab's namespaces by netlab's mark instead"
        }
        if var j = journal {
            report.wasUp = true
            if j.isLegacy {
                report.journalProblem = "the journal was written by an earlier netlab, which recorded names only: deleting the namespaces it names"
            }
            j.state = .tearingDown
            try? j.write()
            let made = Dictionary(j.made.map { ($0.name, $0.identity) }, uniquingKeysWith: { a, _ in a })
            for name in j.namespaces {
                let ns = NetworkNamespace(named: name)
                guard let id = ns.identity else {
                    if ns.placeholderText == j.mark {
                        // Created by this `up`, which was killed before mounting the namespace on it.
                        if try NetworkNamespace.delete(named: name) { report.deleted.append(name) }
                    } else if ns.exists { report.leftAlone.append((name, placeholderNote(name))) }
                    continue
                }
                if let m = made[name] {
                    if m == id { doomed.append((name, id)) } else {
                        report.leftAlone.append((name, "not the namespace this lab made (it was deleted and made again by someone else)"))
                    }
                } else if j.isLegacy {
                    doomed.append((name, id))   // an earlier netlab's journal: it recorded names only (see report note)
                } else if hasMark(ns, exactly: j.mark) {
                    doomed.append((name, id))   // made, not yet recorded when `up` was killed
                } else {
                    report.leftAlone.append((name, "exists but lab \(lab) never made it (no netlab mark of this `up`)"))
                }
            }
        } else if report.journalProblem != nil {
            report.wasUp = true
            for name in NetworkNamespace.list() where LabNames.namespace(name, belongsTo: lab) {
                let ns = NetworkNamespace(named: name)
                guard let id = ns.identity else {
                    if ns.placeholderText?.hasPrefix(Journal.markPrefix(lab: lab)) == true {
                        if try NetworkNamespace.delete(named: name) { report.deleted.append(name) }
                    } else { report.leftAlone.append((name, placeholderNote(name))) }
                    continue
                }
                if hasMark(ns, prefix: Journal.markPrefix(lab: lab)) { doomed.append((name, id)) } else {
                    report.leftAlone.append((name, "has no netlab mark of lab \(lab)"))
                }
            }
        } else {
            Journal.remove(lab: lab)   // stale temp files only
            return report
        }
        // A `check` or `connect` killed while it held the lab leaves its guard table in the nodes it connected from.
        if let o = lock.orphanedBy {
            report.orphanedBy = o
            if o.command != "up" && o.command != "down" {
                report.guardTables = doomed.map(\.name).filter { ((try? nftTables(in: NetworkNamespace(named: $0))) ?? []).contains("netlab_guard") }
            }
        }
        report.processesEnded = ProcessReaper.end(in: Set(doomed.map(\.identity)))
        for d in doomed {
            if let s = Interrupts.since(mark) { throw LabError.interrupted(signal: s) }
            if try NetworkNamespace.delete(named: d.name, expecting: d.identity) { report.deleted.append(d.name) } else {
                report.leftAlone.append((d.name, "replaced while `down` ran"))
            }
        }
        Journal.remove(lab: lab)
        return report
    }

    static func placeholderNote(_ name: String) -> String {
        "\(NetworkNamespace.directory)/\(name) is not a namespace (an empty file an interrupted `ip netns add` or `netlab up` left); netlab cannot tell who made it: `rm \(NetworkNamespace.directory)/\(name)` if nobody is creating it"
    }

    /// Whether the namespace's `lo` carries netlab's mark: exactly `mark`, or any mark starting with `prefix`.
    static func hasMark(_ ns: NetworkNamespace, exactly mark: String? = nil, prefix: String? = nil) -> Bool {
        guard let alias = try? ns.run({ try NetlinkSocket().links.alias(index: 1) }) ?? nil else { return false }
        if let mark { return alias == mark }
        if let prefix { return alias.hasPrefix(prefix) }
        return false
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}

/// Ends the processes running inside given namespaces (as `down` must: a process keeps its namespace alive after
/// the name is gone). Found through `/proc/PID/ns/net`, whose identity is the namespace's; ended by pid, SIGTERM
/// first, SIGKILL after a second.
enum ProcessReaper {
    static func pids(in namespaces: Set<NetworkNamespace.Identity>) -> [Int32] {
        guard !namespaces.isEmpty, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        let me = getpid()
        var out: [Int32] = []
        for e in entries {
            guard let pid = Int32(e), pid != me else { continue }
            var st = stat()
            guard stat("/proc/\(e)/ns/net", &st) == 0 else { continue }
            if namespaces.contains(.init(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))) { out.append(pid) }
        }
        return out
    }

    /// Returns how many processes were ended.
    static func end(in namespaces: Set<NetworkNamespace.Identity>) -> Int {
        let found = pids(in: namespaces)
        guard !found.isEmpty else { return 0 }
        for p in found { kill(p, SIGTERM) }
        for signal in [SIGKILL, 0] {
            let deadline = Date().addingTimeInterval(1)
            while Date() < deadline, !pids(in: namespaces).isEmpty { usleep(10_000) }
            if signal != 0 { for p in pids(in: namespaces) { kill(p, signal) } }
        }
        return found.count
    }
}

/// One `up` in progress: the namespaces it made (with their identities), a bounded set of open namespace handles,
/// and each namespace's ifindex by name.
struct Builder {
    let plan: LabPlan
    let progress: LabController.Progress?
    /// The alias every namespace's `lo` gets before the namespace is pinned: the proof it is this `up`'s.
    let mark: String
    /// Namespaces made so far, in the order they were made: all rollback and `down` may delete.
    var made: [Journal.Made] = []
    let handles: NamespaceHandles
    var index: [String: [String: Int32]] = [:]

    init(plan: LabPlan, progress: LabController.Progress?, mark: String) {
        self.plan = plan
        self.progress = progress
        self.mark = mark
        handles = NamespaceHandles()
    }

    var file: String { plan.topology.file }

    func rejected(_ at: SourceLocation, _ object: String, _ error: Error, hint: String? = nil) -> Error {
        guard let e = error as? NetlinkError else { return error }
        return LabError.rejected(file: file, location: at, object: object, error: e, hint: hint)
    }

    func close() { handles.closeAll() }

    func ns(_ node: Node) -> String { plan.topology.namespace(of: node.name) }
    func socket(_ ns: String) throws -> NetlinkSocket { try handles.get(ns).socket }
    func fd(_ ns: String) throws -> Int32 { try handles.get(ns).fd.rawValue }

    /// Stop between steps when SIGINT/SIGTERM arrived (see `Interrupts.trap`); the caller rolls back.
    static func checkInterrupt() throws {
        if let s = Interrupts.signal { throw LabError.interrupted(signal: s) }
    }

    /// Build the lab; `report` is called at the start of each phase after the first with the namespaces made.
    mutating func build(phase report: (_ phase: String, _ made: [Journal.Made]) throws -> Void) throws {
        defer { close() }
        func phase(_ p: String, _ made: [Journal.Made]) throws {
            try Builder.checkInterrupt()
            try report(p, made)
        }
        let topo = plan.topology
        // Namespaces, on a few dedicated threads in parallel. Each thread, while inside the new namespace and before
        // pinning it, opens its netlink socket, marks lo (netlab's ownership mark) and brings it up; then writes the
        // node-wide sysctls; conf/default is set before any interface exists, so the interfaces made next inherit it,
        // as the kernel does for every new device. The first handles are kept open for the next phases, the rest are
        // closed at once so descriptors do not grow with the lab.
        let count = plan.namespaces.count
        let results = UncheckedResults<(NetworkNamespace.Identity, FileDescriptor?, NetlinkSocket?)>(count)
        let planned = plan.namespaces
        let early: [[Sysctl]] = planned.map { ns in ns.node.flatMap { topo.node($0) }.map(LabPlan.earlySysctls) ?? [] }
        let finished = Counter()
        let keep = handles.capacity
        let mark = self.mark
        // Two threads: more only contend for rtnl (measured with scripts/bench-up).
        DedicatedThread.forEach(count, threads: 2) { i in
            if Interrupts.signal != nil { return }
            let ns = planned[i]
            results.set(i, Result {
                var s: NetlinkSocket?
                let n = try NetworkNamespace.createHere(named: ns.name, mark: mark) { () throws(NetlinkError) in
                    let sock = try NetlinkSocket()
                    try sock.links.set(index: 1, name: "lo", up: true, alias: mark)
                    s = sock
                }
                guard let id = n.identity else {
                    throw NetlinkError(operation: "ip netns add \(ns.name)", errno: .noSuchFileOrDirectory,
                                       kernelMessage: "the namespace vanished as it was made")
                }
                do {
                    for sysctl in early[i] { try Sysctls.write(sysctl.key, sysctl.value) }
                    if i < keep { return (id, try n.open(), s) }
                    return (id, nil, nil)
                } catch {
                    // Made and pinned: record it, so rollback deletes it.
                    throw Pending(identity: id, error: error)
                }
            })
            progress?("namespaces", finished.increment(), count)
        }
        var firstError: (Int, Error)?
        defer { results.removeAll() }   // the handles now live in `handles` only, so its bound holds
        for i in 0..<count {
            switch results.take(i) {
            case .success(let (id, fd, s)):
                self.made.append(Journal.Made(name: planned[i].name, identity: id))
                if let fd, let s { handles.insert(planned[i].name, fd: fd, socket: s) }
            case .failure(let e as Pending):
                self.made.append(Journal.Made(name: planned[i].name, identity: e.identity))
                if firstError == nil { firstError = (i, e.error) }
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
        try phase("links", self.made)
        for (k, v) in plan.veths.enumerated() {
            do {
                let a = try fd(v.namespace), b = try fd(v.peerNamespace)
                try socket(v.namespace).links.addVeth(name: v.name, namespace: a,
                                                        peer: v.peerName, peerNamespace: b,
                                                        mtu: v.mtu)
            } catch { throw rejected(v.location, v.label, error) }
            progress?("links", k + 1, plan.veths.count)
            try Builder.checkInterrupt()
        }
        for b in plan.bridges {
            do { try socket(b.namespace).links.add(name: b.name, kind: "bridge") } catch {
                throw rejected(b.location, "LAN segment bridge", error)
            }
        }
        for d in plan.devices {
            do { try socket(d.namespace).links.add(name: d.name, kind: d.kind.rawValue) } catch {
                let missing = (error as? NetlinkError)?.errno == .notSupported
                throw rejected(d.location, "interface \(d.name) of type \(d.kind.rawValue)", error,
                               hint: missing ? "this kernel has no \"\(d.kind.rawValue)\" driver; use a veth link (`links:`) instead" : nil)
            }
        }
        progress?("link index", 0, plan.namespaces.count)
        var down: [String: [LinkInfo]] = [:]   // devices created down (veth peers, bridges, standalone devices)
        for ns in plan.namespaces {
            try Builder.checkInterrupt()
            let links = try socket(ns.name).links.list()
            index[ns.name] = Dictionary(links.map { ($0.name, $0.index) }, uniquingKeysWith: { a, _ in a })
            down[ns.name] = links.filter { !$0.isUp }
        }
        for b in plan.bridges {
            let s = try socket(b.namespace), idx = index[b.namespace]!
            for p in b.ports { try s.links.set(index: idx[p]!, name: p, master: idx[b.name]!) }
        }
        for node in topo.nodes {
            for i in node.interfaces where i.mtu != nil {
                do { try socket(ns(node)).links.set(index: index[ns(node)]![i.name]!, name: i.name, mtu: i.mtu) } catch {
                    throw rejected(i.location, "mtu \(i.mtu!) of \(node.name):\(i.name)", error)
                }
            }
        }
        // Everything up, lo included (a fresh namespace's lo is down).
        progress?("link up", 0, plan.namespaces.count)
        for ns in plan.namespaces {
            try Builder.checkInterrupt()
            let s = try socket(ns.name)
            for l in down[ns.name] ?? [] { try s.links.set(index: l.index, name: l.name, up: true) }
        }
        // Addresses, in declared order per interface.
        try phase("addresses", self.made)
        let counts = plan.counts   // computed once: it walks every node
        let totalAddresses = counts.addresses
        var done = 0
        for node in topo.nodes {
            let s = try socket(ns(node)), idx = index[ns(node)]!
            for i in node.interfaces {
                for a in i.addresses {
                    do {
                        try s.addresses.add(index: idx[i.name]!, device: i.name, prefix: a.prefix, scope: a.scope?.value ?? 0,
                                            noprefixroute: a.noprefixroute, metric: a.metric, peer: a.peer, broadcast: a.broadcast)
                    } catch { throw rejected(a.location, "address \(a.text) on \(node.name):\(i.name)", error) }
                    done += 1
                    progress?("addresses", done, totalAddresses)
                    try Builder.checkInterrupt()
                }
            }
        }
        // Sysctls, on the namespace's own thread.
        try phase("sysctls", self.made)
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
            try Builder.checkInterrupt()
        }
        // Routes, then rules.
        try phase("routes", self.made)
        done = 0
        for node in topo.nodes {
            let s = try socket(ns(node)), idx = index[ns(node)]!
            for n in node.nexthopObjects {   // nexthop objects first: routes name them (nhid)
                do { try s.nexthops.add(KernelForm.nexthop(n, index: idx), text: n.text) } catch { throw rejected(n.location, "nexthop \"\(n.text)\"", error) }
            }
            for r in node.routes {
                do { try s.routes.add(KernelForm.route(r, index: idx), text: r.text) } catch {
                    throw rejected(r.location, "route \"\(r.text)\"", error)
                }
                done += 1
                progress?("routes", done, counts.routes)
                try Builder.checkInterrupt()
            }
        }
        try phase("rules", self.made)
        done = 0
        for node in topo.nodes {
            let s = try socket(ns(node))
            for r in node.rules {
                do { try s.rules.add(KernelForm.rule(r), text: r.text) } catch {
                    throw rejected(r.location, "rule \"\(r.text)\"", error)
                }
                done += 1
                progress?("rules", done, counts.rules)
                try Builder.checkInterrupt()
            }
        }
        // Interfaces declared `up: false` go down last, once their addresses and routes are in: the kernel then
        // does what it does on a link failure (flushes their routes, marks multipath legs dead, the peer loses carrier).
        var peers: [(namespace: String, index: Int32)] = []
        for node in topo.nodes {
            for i in node.interfaces where !i.up {
                do { try socket(ns(node)).links.set(index: index[ns(node)]![i.name]!, name: i.name, up: false) } catch {
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
        try settleCarrierOn(plan.namespaces.map(\.name))
    }

    /// A veth end has carrier as soon as both ends are up (veth_open), but its qdisc stays the noop one — every frame
    /// sent through it dropped — until linkwatch has run (linkwatch_do_dev → dev_activate), which also sets the
    /// operstate that IFF_RUNNING reports. On a busy machine that is milliseconds to a second later: a connect made
    /// right after `up` then lost its first ARP request and waited a second for the retry (the engine's SYN went
    /// out with its retransmission, the kernel's later connect found the neighbour resolved). `up` returns once every
    /// device with carrier is RUNNING. Gives up after three seconds (the lab works, only its first packets may wait).
    func settleCarrierOn(_ namespaces: [String]) throws {
        var pending = namespaces
        let deadline = ContinuousClock.now + .seconds(3)
        while !pending.isEmpty && ContinuousClock.now < deadline {
            try Builder.checkInterrupt()
            pending = try pending.filter { ns in
                try socket(ns).links.list().contains { $0.isUp && $0.carrier && $0.flags & 0x40 == 0 }   // IFF_RUNNING
            }
            if !pending.isEmpty { usleep(2000) }
        }
    }

    /// The kernel takes a veth peer's lost carrier in a moment later (linkwatch work): its operstate leaves RUNNING and
    /// its routes' nexthops are marked linkdown. `up` returns once that happened, so a lookup made right after `up`
    /// sees what every later one sees. Gives up after two seconds.
    func settleCarrier(_ peers: [(namespace: String, index: Int32)]) throws {
        guard !peers.isEmpty else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        while ContinuousClock.now < deadline {
            try Builder.checkInterrupt()
            var settled = true
            for p in peers {
                let s = try socket(p.namespace)
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
    /// The scope iproute2 gives a route it is not told one: host for local, link for a device route (not one that
    /// names a nexthop object), else universe.
    public static func scope(_ r: Route) -> UInt8 {
        if let s = r.scope { return s.value }
        if r.type == .local { return AddressScope.host.value }
        // iproute2 (iproute_modify): link scope only for a unicast route with no gateway, no nexthops and no nhid.
        if r.type == .unicast, r.nexthopID == nil, !r.isMultipath, r.nexthops.allSatisfy({ $0.gateway == nil }) { return AddressScope.link.value }
        return AddressScope.global.value
    }

    public static func route(_ r: Route, index: [String: Int32]) -> RouteInfo {
        RouteInfo(table: r.table, type: r.type, scope: scope(r), proto: r.proto ?? 3, destination: r.destination,
                  tos: r.tos ?? 0, metric: r.metric ?? 0, prefsrc: r.src, mtu: r.mtu, advmss: r.advmss, hoplimit: r.hoplimit,
                  nexthops: r.nexthops.map {
                      NexthopInfo(gateway: $0.gateway, index: $0.dev.flatMap { index[$0] } ?? 0, weight: $0.weight,
                                  flags: $0.onlink ? NexthopInfo.onlinkFlag : 0)
                  },
                  multipath: r.isMultipath, nexthopID: r.nexthopID)
    }

    /// A nexthop object as RTM_NEWNEXTHOP carries it.
    public static func nexthop(_ n: NexthopSpec, index: [String: Int32]) -> NexthopObject {
        NexthopObject(id: n.id, gateway: n.gateway, index: n.dev.flatMap { index[$0] } ?? 0, flags: n.onlink ? NexthopInfo.onlinkFlag : 0,
                      blackhole: n.blackhole, group: n.group.map { .init(id: $0.id, weight: $0.weight) }, resilient: n.resilient,
                      buckets: Array(repeating: 0, count: n.buckets ?? 0))
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

/// A namespace that was made and pinned, then failed a later step of its creation (an early sysctl).
struct Pending: Error {
    var identity: NetworkNamespace.Identity
    var error: Error
}

/// Open handles (an fd for IFLA_NET_NS_FD and a netlink socket) on a lab's namespaces, at most `capacity` at once:
/// the least recently used are closed to open others, so a lab of 10,000 nodes needs no more descriptors than one
/// of 100. The capacity follows the process's descriptor limit (whose soft value is first raised to the hard one).
final class NamespaceHandles {
    let capacity: Int
    private var open: [String: (fd: FileDescriptor, socket: NetlinkSocket, used: Int)] = [:]
    private var clock = 0

    init() {
        var lim = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        if lim.rlim_cur < lim.rlim_max {
            var raised = lim
            raised.rlim_cur = lim.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { lim = raised }
        }
        let soft = lim.rlim_cur == rlim_t.max ? 65536 : Int(min(lim.rlim_cur, 1 << 20))
        // Two descriptors per handle; keep a quarter of the limit (at least 128) for everything else (the creating
        // threads, captures, listeners, libraries). With 1024 descriptors that is 384 handles; with 20000, 7500.
        capacity = max(4, (soft - max(128, soft / 4)) / 2)
    }

    func get(_ name: String) throws -> (fd: FileDescriptor, socket: NetlinkSocket) {
        clock += 1
        if var h = open[name] {
            h.used = clock
            open[name] = h
            return (h.fd, h.socket)
        }
        let ns = NetworkNamespace(named: name)
        let fd: FileDescriptor
        let socket: NetlinkSocket
        do {
            fd = try ns.open()
            do { socket = try NetlinkSocket(in: ns) } catch {
                try? fd.close()
                throw error
            }
        } catch let e as NetlinkError where e.errno == .tooManyOpenFiles {
            throw LabError.system("cannot open namespace \(name): too many open files with \(open.count) namespaces open (the descriptor limit is too low for netlab's own needs; raise it with `ulimit -n`)")
        }
        insert(name, fd: fd, socket: socket)
        return (fd, socket)
    }

    func insert(_ name: String, fd: FileDescriptor, socket: NetlinkSocket) {
        clock += 1
        while open.count >= capacity, let victim = open.min(by: { $0.value.used < $1.value.used }) {
            try? victim.value.fd.close()
            open[victim.key] = nil
        }
        open[name] = (fd, socket, clock)
    }

    func closeAll() {
        for h in open.values { try? h.fd.close() }
        open = [:]
    }
}

/// Per-index results filled in by worker threads.
final class UncheckedResults<T>: @unchecked Sendable {
    private var slots: [Result<T, Error>?]
    private let lock = NSLock()
    init(_ n: Int) { slots = Array(repeating: nil, count: n) }
    func set(_ i: Int, _ r: Result<T, Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    func get(_ i: Int) -> Result<T, Error>? { lock.lock(); defer { lock.unlock() }; return slots[i] }
    /// The result, leaving the slot empty (so what it held is released with its last other owner).
    func take(_ i: Int) -> Result<T, Error>? { lock.lock(); defer { lock.unlock() }; let r = slots[i]; slots[i] = nil; return r }
    func removeAll() { lock.lock(); slots = slots.map { _ in nil }; lock.unlock() }
}

final class Counter: @unchecked Sendable {
    private var n = 0
    private let lock = NSLock()
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
}
