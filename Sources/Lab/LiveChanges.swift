import Foundation
import Netlink
import Topology

/// What `netlab set` did.
public struct SetOutcome: Codable, Sendable {
    public var lab: String
    public var node: String
    /// The change as given: `client link eth0 down`.
    public var change: String
    /// What was done, as the `ip` commands that do the same.
    public var operations: [String]
    /// Consequences worth saying (routes put back when a device came up, a settle that took long).
    public var notes: [String]
    public var milliseconds: Double
}

extension LabController {
    /// The state a lab should be in: the topology it came up with, plus the changes recorded in its journal since.
    /// `base` is the topology to start from (status takes the file as it is now, when it still parses). Returns the
    /// changes that no longer apply (the file changed under them), each with why.
    public static func expected(_ journal: Journal, base: Topology? = nil) throws -> (topology: Topology, problems: [String]) {
        var t = try base ?? Topology.parse(journal.source, file: journal.file)
        t.lab = journal.lab   // the namespaces are the journal's lab's, whatever the text says
        var problems: [String] = []
        for r in journal.changes ?? [] {
            do { t.apply(try LiveChange.parse(words: [r.node] + r.words, topology: t)) } catch {
                problems.append("recorded change \"\(([r.node] + r.words).joined(separator: " "))\" no longer applies: \(error.diagnostics.first?.message ?? "?")")
            }
        }
        return (t, problems)
    }

    /// `netlab set LAB NODE VERB ...`: parse the words against the lab's expected state (file plus recorded
    /// changes), then make the change. Bad words throw `LabError.badChange` before anything is touched.
    @discardableResult
    public static func set(lab: String, words: [String], waiting: Waiting? = nil) throws -> SetOutcome {
        guard LabNames.isLab(lab) else { throw LabError.journal(.badLabName(lab)) }
        let lock = try LabLock.acquire(lab: lab, command: "set", waiting: waiting)
        defer { lock.release() }
        let journal = try upJournal(lab)
        let topology = try expected(journal).topology
        let change: LiveChange
        do { change = try LiveChange.parse(words: words, topology: topology) } catch { throw LabError.badChange(error) }
        return try set(lab: lab, change: change, waiting: waiting)
    }

    /// Make one parsed change on a lab that is up, under its lock, and record it in the journal. A change the kernel
    /// refuses throws `LabError.changeRefused` with the kernel's words, and nothing stays changed (a change of two
    /// steps, `link ... --both`, undoes its first when the second is refused).
    @discardableResult
    public static func set(lab: String, change: LiveChange, waiting: Waiting? = nil) throws -> SetOutcome {
        let t0 = ContinuousClock.now
        guard LabNames.isLab(lab) else { throw LabError.journal(.badLabName(lab)) }
        let lock = try LabLock.acquire(lab: lab, command: "set", waiting: waiting)
        defer { lock.release() }
        var journal = try upJournal(lab)
        var topology = try expected(journal).topology
        guard topology.node(change.node) != nil else {
            throw LabError.system("lab \(lab) has no node \(change.node)")
        }
        var outcome = SetOutcome(lab: lab, node: change.node, change: change.text, operations: [], notes: [], milliseconds: 0)
        topology.apply(change)   // the state afterwards: routes to put back on `up` come from it
        let applier = Applier(topology: topology, outcome: outcome)
        do { try applier.apply(change) } catch let e as NetlinkError {
            throw LabError.changeRefused(change: change.text, error: e)
        }
        outcome = applier.outcome
        journal.changes = (journal.changes ?? []) + [.init(node: change.node, words: change.words, time: Date())]
        try journal.write()
        let d = (ContinuousClock.now - t0).components
        outcome.milliseconds = Double(d.seconds) * 1000 + Double(d.attoseconds) / 1e15
        return outcome
    }

    static func upJournal(_ lab: String) throws -> Journal {
        let j: Journal?
        do { j = try Journal.read(lab: lab) } catch { throw LabError.journal(error) }
        guard let j else { throw LabError.notUp(lab: lab) }
        guard j.state == .up else { throw LabError.system("lab \(lab) is \(j.state.rawValue) (at \(j.phase)), not up; `netlab down \(lab)` and up again") }
        return j
    }
}

/// Makes one change in the kernel. `topology` is the state after the change.
private final class Applier {
    let topology: Topology
    var outcome: SetOutcome

    init(topology: Topology, outcome: SetOutcome) {
        self.topology = topology
        self.outcome = outcome
    }

    func namespace(_ node: String) -> NetworkNamespace { NetworkNamespace(named: topology.namespace(of: node)) }

    func index(_ s: NetlinkSocket, _ name: String, in ns: NetworkNamespace) throws -> Int32 {
        guard let l = try s.links.list().first(where: { $0.name == name }) else {
            throw LabError.system("\(ns.name) has no device \(name) (the lab has drifted: `netlab status \(topology.lab)`)")
        }
        return l.index
    }

    func apply(_ c: LiveChange) throws {
        let ns = namespace(c.node)
        guard ns.exists else { throw LabError.system("no namespace \(ns.name): is the lab up? (`netlab status \(topology.lab)`)") }
        let s = try NetlinkSocket(in: ns)
        let node = topology.node(c.node)!
        switch c.action {
        case .link(let iface, let up, let both):
            var ends: [(node: String, interface: String)] = [(c.node, iface)]
            if both, let p = topology.peer(of: c.node, iface) { ends.append((p.node, p.interface)) }
            var done: [(NetlinkSocket, Int32, String)] = []
            for e in ends {
                let es = e.node == c.node ? s : try NetlinkSocket(in: namespace(e.node))
                let k = try index(es, e.interface, in: namespace(e.node))
                do { try es.links.set(index: k, name: e.interface, up: up) } catch {
                    for (ds, dk, dn) in done { try? ds.links.set(index: dk, name: dn, up: !up) }
                    throw error
                }
                done.append((es, k, e.interface))
                outcome.operations.append("ip -n \(namespace(e.node).name) link set dev \(e.interface) \(up ? "up" : "down")")
            }
            if up { for e in ends { try restoreRoutes(node: e.node, interface: e.interface) } }
            try settle(ends)
        case .carrier(let iface, let on):
            guard let v = LabPlan(topology).veths.first(where: {
                ($0.namespace == ns.name && $0.name == iface) || ($0.peerNamespace == ns.name && $0.peerName == iface)
            }) else { throw LabError.system("\(c.node):\(iface) is on no link") }
            let (pns, pname) = v.namespace == ns.name && v.name == iface ? (v.peerNamespace, v.peerName) : (v.namespace, v.name)
            let ps = try NetlinkSocket(in: NetworkNamespace(named: pns))
            try ps.links.set(index: try index(ps, pname, in: NetworkNamespace(named: pns)), name: pname, up: on)
            outcome.operations.append("ip -n \(pns) link set dev \(pname) \(on ? "up" : "down")")
            var ends: [(node: String, interface: String)] = [(c.node, iface)]
            if let p = topology.peer(of: c.node, iface) {
                ends.append((p.node, p.interface))
                if on { try restoreRoutes(node: p.node, interface: p.interface) }
            }
            try settle(ends)
        case .address(let add, let iface, let a):
            let k = try index(s, iface, in: ns)
            if add {
                try s.addresses.add(index: k, device: iface, prefix: a.prefix, scope: a.scope?.value ?? 0, noprefixroute: a.noprefixroute, metric: a.metric)
                outcome.operations.append("ip -n \(ns.name) addr add \(a.text) dev \(iface)")
            } else {
                try s.addresses.delete(index: k, device: iface, prefix: a.prefix)
                outcome.operations.append("ip -n \(ns.name) addr del \(a.prefix) dev \(iface)")
            }
        case .route(let op, let r):
            let idx = Dictionary(try s.links.list().map { ($0.name, $0.index) }, uniquingKeysWith: { a, _ in a })
            var k = KernelForm.route(r, index: idx)
            let text = r.text.isEmpty ? r.iprouteText(tableName: topology.tableName) : r.text
            switch op {
            case .add: try s.routes.add(k, text: text)
            case .replace: try s.routes.replace(k, text: text)
            case .del:
                k.proto = r.proto ?? 0                 // any protocol, as `ip route del` asks,
                k.scope = r.scope?.value ?? AddressScope.nowhereValue        // and any scope
                try s.routes.delete(k, text: text)
            }
            outcome.operations.append("ip -n \(ns.name) route \(op.rawValue) \(text)")
        case .rule(let add, let r):
            var k = KernelForm.rule(r)
            let text = r.text.isEmpty ? r.ipruleText(tableName: topology.tableName) : r.text
            if add { try s.rules.add(k, text: text) } else {
                if !r.namesAction { k.action = .unspecified; k.table = 0 }
                try s.rules.delete(k, text: text)
            }
            outcome.operations.append("ip -n \(ns.name) rule \(add ? "add" : "del") \(text)")
        case .listen(let port, let on):
            // Listeners are sockets of the process that runs checks and connects (`netlab check`, `connect LAB NODE`,
            // an experiment): they serve the lab's expected `listen:` ports, this one included from now on.
            outcome.notes.append("\(c.node) \(on ? "listens" : "no longer listens") on port \(port) while checks and connects run")
        case .sysctl(let key, let value):
            try ns.run { try Sysctls.write(key, value) }
            outcome.operations.append("ip netns exec \(ns.name) sysctl -w \(key)=\(value)")
        }
        _ = node
    }

    /// A device that comes up again has lost the routes that left only by it (fib_sync_down_dev flushed them when
    /// it went down); the lab's state says they exist, so they are added back, as ifup does with a file's routes.
    func restoreRoutes(node: String, interface: String) throws {
        guard let n = topology.node(node) else { return }
        let ns = namespace(node)
        let s = try NetlinkSocket(in: ns)
        let idx = Dictionary(try s.links.list().map { ($0.name, $0.index) }, uniquingKeysWith: { a, _ in a })
        // A route also needs every other device it leaves by to be up.
        let down = Set(n.interfaces.filter { !$0.up }.map(\.name))
        for r in n.routes where r.nexthops.contains(where: { n.device(of: $0) == interface })
            && !r.nexthops.allSatisfy({ n.device(of: $0).map(down.contains) ?? false }) {
            let added: Result<Void, NetlinkError> = Result { () throws(NetlinkError) in try s.routes.add(KernelForm.route(r, index: idx), text: r.text) }
            switch added {
            case .success:
                outcome.operations.append("ip -n \(ns.name) route add \(r.text)")
                outcome.notes.append("\(node): route \"\(r.text)\" put back (flushed when \(interface) went down)")
            case .failure(let e): if e.errno != .fileExists { throw e }
            }
        }
    }

    /// Wait (up to two seconds) until the kernel has taken in the carrier change on every end of the links touched:
    /// an end runs when both ends are up; linkwatch applies it a moment later (IFF_RUNNING, RTNH_F_LINKDOWN on the
    /// routes), and a lookup right after `set` must see what later ones see.
    func settle(_ ends: [(node: String, interface: String)]) throws {
        let plan = LabPlan(topology)
        var pairs: [(ns: String, name: String, peerNs: String, peerName: String)] = []
        for e in ends {
            let ns = topology.namespace(of: e.node)
            for v in plan.veths {
                if v.namespace == ns && v.name == e.interface { pairs.append((v.namespace, v.name, v.peerNamespace, v.peerName)) }
                else if v.peerNamespace == ns && v.peerName == e.interface { pairs.append((v.peerNamespace, v.peerName, v.namespace, v.name)) }
            }
        }
        guard !pairs.isEmpty else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        var sockets: [String: NetlinkSocket] = [:]
        func socket(_ ns: String) throws -> NetlinkSocket {
            if let s = sockets[ns] { return s }
            let s = try NetlinkSocket(in: NetworkNamespace(named: ns))
            sockets[ns] = s
            return s
        }
        while true {
            var settled = true
            for p in pairs {
                let mine = try socket(p.ns).links.list(), theirs = try socket(p.peerNs).links.list()
                guard let a = mine.first(where: { $0.name == p.name }), let b = theirs.first(where: { $0.name == p.peerName }) else { continue }
                for (end, other, ns) in [(a, b, p.ns), (b, a, p.peerNs)] {
                    let want = end.isUp && other.isUp
                    if (end.flags & 0x40 != 0) != want { settled = false }   // IFF_RUNNING
                    guard end.isUp else { continue }
                    let marked = try socket(ns).routes.list().contains { r in
                        r.table != 255 && r.type == .unicast && r.nexthops.contains { $0.index == end.index && $0.linkdown == want }
                    }
                    if marked { settled = false }
                }
            }
            if settled { return }
            if ContinuousClock.now > deadline {
                outcome.notes.append("the kernel had not taken in the carrier change after 2 s")
                return
            }
            usleep(2000)
        }
    }
}
