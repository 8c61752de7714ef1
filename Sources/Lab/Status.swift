import CNftables
import Foundation
import Netlink
import Topology

/// A lab that is up, and how its live state differs from its file.
public struct LabStatus: Codable, Sendable {
    public struct NamespaceState: Codable, Sendable {
        public var name: String
        public var node: String?
        public var exists: Bool
    }
    public struct Drift: Codable, Sendable, CustomStringConvertible {
        public var node: String
        public var kind: String      // address | route | rule | namespace
        public var change: String    // missing | extra
        public var object: String
        public var description: String { "\(node): \(change) \(kind) \(object)" }
    }
    public var lab: String
    public var state: String
    public var phase: String
    public var file: String
    public var pid: Int32
    public var started: Date
    public var namespaces: [NamespaceState]
    public var drift: [Drift]
    /// Why drift could not be computed, if it could not.
    public var note: String?
    /// The live changes recorded since `up` (`netlab set`), which drift is computed against with the file.
    public var changes: [String] = []
}

extension LabController {
    /// `netlab status LAB`: the journal, which namespaces exist, and drift against the file.
    public static func status(lab: String) throws -> LabStatus {
        guard let j = try Journal.read(lab: lab) else { throw LabError.notUp(lab: lab) }
        var st = LabStatus(lab: lab, state: j.state.rawValue, phase: j.phase, file: j.file, pid: j.pid, started: j.started,
                           namespaces: [], drift: [], note: nil)
        // Compare with the file as it is now when it still parses, else with the text recorded at `up`.
        var topology: Topology
        if let current = try? Topology.load(path: j.file), current.lab == lab { topology = current } else {
            do { topology = try Topology.parse(j.source, file: j.file) } catch {
                st.note = "the recorded topology no longer parses: \(error)"
                return st
            }
            st.note = "compared with the topology recorded at `up` (the file changed or is gone)"
        }
        // The file plus the changes `netlab set` recorded since `up`.
        let (expectedTopology, problems) = try expected(j, base: topology)
        topology = expectedTopology
        if !problems.isEmpty { st.note = ([st.note].compactMap { $0 } + problems).joined(separator: "; ") }
        st.changes = (j.changes ?? []).map { ([$0.node] + $0.words.map { w in w.contains(" ") ? "\"\(w)\"" : w }).joined(separator: " ") }
        let plan = LabPlan(topology)
        let mayHaveGuards = LabLock.lastHolder(lab: lab) != nil
        for ns in plan.namespaces {
            st.namespaces.append(.init(name: ns.name, node: ns.node, exists: NetworkNamespace(named: ns.name).exists))
        }
        for node in topology.nodes {
            let ns = NetworkNamespace(named: topology.namespace(of: node.name))
            guard ns.exists else {
                st.drift.append(.init(node: node.name, kind: "namespace", change: "missing", object: ns.name))
                continue
            }
            st.drift += try drift(node: node, in: ns, topology: topology)
            // What a killed `check` leaves: its guard table (removed with the namespace by `down`). Only looked for
            // when the lab's lock file is not empty (a clean release empties it: someone holds the lab now, or was
            // killed holding it), since listing nftables costs a few milliseconds per node.
            if mayHaveGuards, let tables = try? nftTables(in: ns), tables.contains("netlab_guard") {
                st.drift.append(.init(node: node.name, kind: "nftables table", change: "extra",
                                      object: "ip netlab_guard (left by a `check` or `connect` that was killed; `netlab down` removes it with the namespace)"))
            }
        }
        return st
    }

    static func drift(node: Node, in ns: NetworkNamespace, topology: Topology) throws -> [LabStatus.Drift] {
        let socket = try NetlinkSocket(in: ns)
        let links = try socket.links.list()
        let nameOf = Dictionary(links.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
        let index = Dictionary(links.map { ($0.name, $0.index) }, uniquingKeysWith: { a, _ in a })
        let byName = Dictionary(links.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [LabStatus.Drift] = []
        // Multisets by text: linear in the objects (a firstIndex + remove(at:) per object was quadratic: 60 s for
        // 16,000 routes).
        func compare(_ kind: String, expected: [String], live: [String]) {
            var remaining = Dictionary(live.map { ($0, 1) }, uniquingKeysWith: +)
            for e in expected {
                if let n = remaining[e], n > 0 { remaining[e] = n - 1 } else {
                    out.append(.init(node: node.name, kind: kind, change: "missing", object: e))
                }
            }
            for l in live where (remaining[l] ?? 0) > 0 {
                remaining[l]! -= 1
                out.append(.init(node: node.name, kind: kind, change: "extra", object: l))
            }
        }
        // Link state: `up: false` interfaces down, every other declared one up.
        for i in node.interfaces {
            guard let live = byName[i.name] else {
                out.append(.init(node: node.name, kind: "link", change: "missing", object: i.name))
                continue
            }
            if live.isUp != i.up {
                out.append(.init(node: node.name, kind: "link", change: live.isUp ? "up" : "down",
                                 object: "\(i.name) (the file says \(i.up ? "up" : "up: false"))"))
            }
        }
        // Addresses.
        let expectedAddresses = node.interfaces.flatMap { i in i.addresses.map { "\($0.prefix) dev \(i.name)" } }
        let liveAddresses = try socket.addresses.list()
            .filter { !($0.prefix.address.isLoopback && nameOf[$0.index] == "lo") }
            .map { "\($0.prefix) dev \(nameOf[$0.index] ?? "?")" }
        compare("address", expected: expectedAddresses, live: liveAddresses)
        // Routes the kernel did not make itself (proto kernel: connected and local routes).
        let name: (UInt32) -> String = { topology.tableName($0) }
        // A nexthop written without `dev` matches whatever device the kernel resolved for it.
        let liveRoutes = try socket.routes.list().filter { $0.proto != 2 }
        // A route whose every nexthop leaves by an `up: false` interface was flushed when it went down.
        let downDevices = Set(node.interfaces.filter { !$0.up }.map(\.name))
        func device(_ h: Nexthop) -> String? {
            h.dev ?? h.gateway.flatMap { g in node.addresses.first { $0.address.prefix.contains(g) }?.interface }
        }
        // Live routes grouped by their text with every nexthop's device left out; a wanted route is matched among
        // its group only (with the devices the file names), so matching stays linear.
        func deviceless(_ r: RouteInfo) -> String {
            var l = r
            for k in l.nexthops.indices { l.nexthops[k].index = 0 }
            return describe(l, names: nameOf, table: name)
        }
        var groups: [String: [Int]] = [:]
        for (k, l) in liveRoutes.enumerated() { groups[deviceless(l), default: []].append(k) }
        var used = Set<Int>()
        for r in node.routes where !(r.nexthops.isEmpty == false && r.nexthops.allSatisfy({ device($0).map(downDevices.contains) ?? false })) {
            let want = KernelForm.route(r, index: index)
            let wanted = describe(want, names: nameOf, table: name)
            let match = groups[deviceless(want)]?.first { k in
                guard !used.contains(k) else { return false }
                var l = liveRoutes[k]
                if l.nexthops.count == want.nexthops.count {
                    for j in l.nexthops.indices where want.nexthops[j].index == 0 { l.nexthops[j].index = 0 }
                }
                return describe(l, names: nameOf, table: name) == wanted
            }
            if let m = match { used.insert(m) } else {
                out.append(.init(node: node.name, kind: "route", change: "missing", object: wanted))
            }
        }
        for (k, l) in liveRoutes.enumerated() where !used.contains(k) {
            out.append(.init(node: node.name, kind: "route", change: "extra", object: describe(l, names: nameOf, table: name)))
        }
        // Rules other than the three the kernel starts with, grouped by their text without the priority.
        let liveRules = try socket.rules.list().filter { !$0.isKernelDefault }
        func unprioritised(_ r: RuleInfo) -> String { var l = r; l.priority = nil; return describe(l, table: name) }
        var ruleGroups: [String: [Int]] = [:]
        for (k, l) in liveRules.enumerated() { ruleGroups[unprioritised(l), default: []].append(k) }
        var usedRules = Set<Int>()
        for r in node.rules {
            let want = KernelForm.rule(r)
            let match = ruleGroups[unprioritised(want)]?.first { k in
                !usedRules.contains(k) && (want.priority == nil || liveRules[k].priority == want.priority)
            }
            if let m = match { usedRules.insert(m) } else {
                out.append(.init(node: node.name, kind: "rule", change: "missing", object: describe(want, table: name)))
            }
        }
        for (k, l) in liveRules.enumerated() where !usedRules.contains(k) {
            out.append(.init(node: node.name, kind: "rule", change: "extra", object: describe(l, table: name)))
        }
        return out
    }

    /// `ip netns exec NS nft list tables`, through libnftables: the names of the namespace's nftables tables.
    static func nftTables(in ns: NetworkNamespace) throws -> [String] {
        try ns.run {
            guard let ctx = nft_ctx_new(0) else { return [] }
            defer { nft_ctx_free(ctx) }
            nft_ctx_buffer_output(ctx)
            nft_ctx_buffer_error(ctx)
            guard nft_run_cmd_from_buffer(ctx, "list tables") == 0, let out = nft_ctx_get_output_buffer(ctx) else { return [] }
            return String(cString: out).split(separator: "\n").compactMap { $0.split(separator: " ").last.map(String.init) }
        }
    }


    /// A route in one line, the same way for the file and the kernel (ifindex shown by name).
    static func describe(_ r: RouteInfo, names: [Int32: String], table: (UInt32) -> String) -> String {
        var w: [String] = []
        // A route using a nexthop object is named by it (the dump also expands the object, and a blackhole object
        // makes its route's type blackhole).
        if r.nexthopID == nil, r.type != .unicast { w.append(r.type.rawValue) }
        w.append(r.destination.routeDescription)
        if let id = r.nexthopID { w += ["nhid", String(id)] }
        if r.tos != 0 { w += ["tos", String(r.tos)] }
        if r.table != 254 { w += ["table", table(r.table)] }
        if r.metric != 0 { w += ["metric", String(r.metric)] }
        if let s = r.prefsrc { w += ["src", s.description] }
        if let m = r.mtu { w += ["mtu", String(m)] }
        if let m = r.advmss { w += ["advmss", String(m)] }
        if let m = r.hoplimit { w += ["hoplimit", String(m)] }
        for h in r.nexthops where r.nexthopID == nil {
            if r.multipath { w.append("nexthop") }
            if let g = h.gateway { w += ["via", g.description] }
            if h.index != 0 { w += ["dev", names[h.index] ?? "#\(h.index)"] }
            if r.multipath { w += ["weight", String(h.weight)] }
            if h.onlink { w.append("onlink") }
        }
        return w.joined(separator: " ")
    }

    static func describe(_ r: RuleInfo, table: (UInt32) -> String) -> String {
        var w: [String] = []
        if let p = r.priority { w.append("\(p):") }
        if r.invert { w.append("not") }
        if let f = r.from { w += ["from", f.description] }
        if let t = r.to { w += ["to", t.description] }
        if r.tos != 0 { w += ["tos", String(r.tos)] }
        if let d = r.dscp { w += ["dscp", String(d)] }
        if let m = r.fwmark { w += ["fwmark", "0x" + String(m, radix: 16) + "/0x" + String(r.fwmask ?? UInt32.max, radix: 16)] }
        if let i = r.iif { w += ["iif", i] }
        if let o = r.oif { w += ["oif", o] }
        if let u = r.uidrange { w += ["uidrange", "\(u.lowerBound)-\(u.upperBound)"] }
        if let p = r.ipproto { w += ["ipproto", String(p)] }
        if let s = r.sport { w += ["sport", "\(s.lowerBound)-\(s.upperBound)"] }
        if let d = r.dport { w += ["dport", "\(d.lowerBound)-\(d.upperBound)"] }
        switch r.action {
        case .toTable: w += ["lookup", table(r.table)]
        case .goto: w += ["goto", String(r.goto ?? 0)]
        case .nop, .blackhole, .unreachable, .prohibit: w.append(r.action.word)
        case .unspecified, .reserved3, .reserved4: w.append("action \(r.action.rawValue)")
        }
        if let s = r.suppressPrefixLength { w += ["suppress_prefixlength", String(s)] }
        return w.joined(separator: " ")
    }
}
