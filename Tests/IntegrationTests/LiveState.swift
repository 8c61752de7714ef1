import Foundation
import Testing
import Topology

/// Compares what iproute2 reports in each namespace with what the topology declares. Returns every difference.
struct LiveState {
    let topology: Topology

    func differences() throws -> [String] {
        var out: [String] = []
        for node in topology.nodes { out += try differences(node) }
        out += try segments()
        return out
    }

    func tableName(_ id: UInt32) -> String { RoutingTable.builtinName(id) ?? String(id) }

    func differences(_ node: Node) throws -> [String] {
        let ns = topology.namespace(of: node.name)
        var out: [String] = []
        // Links and addresses: `ip -j addr show`.
        let links = try ipJSON("-n", ns, "addr", "show")
        for iface in node.interfaces {
            guard let l = links.first(where: { $0["ifname"] as? String == iface.name }) else {
                out.append("\(node.name): no device \(iface.name)")
                continue
            }
            let flags = l["flags"] as? [String] ?? []
            if flags.contains("UP") != iface.up { out.append("\(node.name):\(iface.name) is \(iface.up ? "not " : "")up") }
            let linkMTU = topology.links.first { $0.ends.contains { $0.node == node.name && $0.interface == iface.name } }?.mtu
            if let want = iface.mtu ?? linkMTU, l["mtu"] as? Int != want { out.append("\(node.name):\(iface.name) mtu \(l["mtu"] ?? "?") != \(want)") }
            let info = (l["addr_info"] as? [[String: Any]] ?? []).filter { $0["family"] as? String == "inet" && !(iface.name == "lo" && $0["local"] as? String == "127.0.0.1") }
            let live = info.map { "\($0["local"]!)/\($0["prefixlen"]!)" }
            let declared = iface.addresses.map(\.prefix.description)
            if Set(live) != Set(declared) || live.count != declared.count {
                out.append("\(node.name):\(iface.name) addresses \(live) != declared \(declared)")
                continue
            }
            for (k, a) in iface.addresses.enumerated() {
                let j = info[live.firstIndex(of: a.prefix.description)!]
                let scope = j["scope"] as? String ?? "global"
                if scope != (a.scope?.rawValue ?? "global") { out.append("\(node.name): \(a.prefix) scope \(scope)") }
                if (j["noprefixroute"] as? Bool ?? false) != a.noprefixroute { out.append("\(node.name): \(a.prefix) noprefixroute") }
                if let m = a.metric, j["metric"] as? Int != Int(m) { out.append("\(node.name): \(a.prefix) metric \(j["metric"] ?? "none")") }
                // The kernel makes an address secondary when an earlier primary has the same mask and subnet.
                let earlier = iface.addresses[..<k]
                let secondary = earlier.contains { $0.prefix.length == a.prefix.length && $0.prefix.contains(a.address) }
                if (j["secondary"] as? Bool ?? false) != secondary { out.append("\(node.name): \(a.prefix) secondary should be \(secondary)") }
            }
            // Declared order is kept among addresses of one subnet.
            for a in iface.addresses {
                let group = iface.addresses.filter { $0.prefix.length == a.prefix.length && $0.prefix.canonical == a.prefix.canonical }
                let liveOrder = live.filter { p in group.contains { $0.prefix.description == p } }
                if liveOrder != group.map(\.prefix.description) { out.append("\(node.name): order \(liveOrder) != \(group.map(\.prefix.description))") }
            }
        }
        // Sysctls, read from /proc inside the namespace.
        var sysctls = [("net.ipv4.ip_forward", node.forwarding ? "1" : "0"),
                       ("net.ipv4.conf.all.accept_source_route", node.sourceRoute ? "1" : "0")]
        for i in node.interfaces { sysctls.append(("net.ipv4.conf.\(i.name).accept_source_route", node.sourceRoute ? "1" : "0")) }
        sysctls += node.sysctls.map { ($0.key, $0.value) }
        for (key, want) in sysctls {
            let r = try run("/usr/bin/env", ["ip", "netns", "exec", ns, "cat", "/proc/sys/" + key.replacingOccurrences(of: ".", with: "/")])
            let got = r.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            if got != want { out.append("\(node.name): sysctl \(key) = \(got) (want \(want))") }
        }
        out += try routes(node, ns)
        out += try rules(node, ns)
        return out
    }

    func routes(_ node: Node, _ ns: String) throws -> [String] {
        var out: [String] = []
        var live = try ipJSON("-4", "-n", ns, "route", "show", "table", "all").filter { $0["protocol"] as? String != "kernel" }
        // Routes that leave only by an interface declared `up: false` are flushed by the kernel when it goes down.
        let down = Set(node.interfaces.filter { !$0.up }.map(\.name))
        for r in node.routes where r.nexthops.isEmpty || !r.nexthops.allSatisfy({ $0.dev.map(down.contains) ?? false }) {
            let dst = r.destination.length == 0 ? "default" : r.destination.length == 32 ? r.destination.address.description : r.destination.description
            let idx = live.firstIndex { j in
                guard j["dst"] as? String == dst else { return false }
                guard (j["table"] as? String ?? "main") == tableName(r.table) else { return false }
                // A route using a blackhole nexthop object is dumped as a blackhole route.
                let blackholeObject = r.nexthopID.map { id in node.nexthopObjects.contains { $0.id == id && $0.blackhole } } ?? false
                guard (j["type"] as? String ?? "unicast") == (blackholeObject ? "blackhole" : r.type.rawValue) else { return false }
                guard j["nhid"] as? Int == r.nexthopID.map(Int.init) else { return false }
                guard (j["metric"] as? Int ?? 0) == Int(r.metric ?? 0) else { return false }
                guard j["prefsrc"] as? String == r.src?.description else { return false }
                if let tos = r.tos, j["tos"] as? String != "0x" + String(tos, radix: 16) { return false }
                let metrics = (j["metrics"] as? [[String: Any]])?.first ?? [:]
                guard metrics["mtu"] as? Int == r.mtu.map(Int.init), metrics["advmss"] as? Int == r.advmss.map(Int.init) else { return false }
                guard metrics["hoplimit"] as? Int == r.hoplimit.map(Int.init) else { return false }
                if r.proto == 4, j["protocol"] as? String != "static" { return false }
                if r.isMultipath {
                    let hops = j["nexthops"] as? [[String: Any]] ?? []
                    guard hops.count == r.nexthops.count else { return false }
                    for (h, want) in zip(hops, r.nexthops) {
                        if h["gateway"] as? String != want.gateway?.description { return false }
                        if let d = want.dev, h["dev"] as? String != d { return false }
                        if h["weight"] as? Int != want.weight { return false }
                    }
                } else if let h = r.nexthops.first {
                    if j["gateway"] as? String != h.gateway?.description { return false }
                    if let d = h.dev, j["dev"] as? String != d { return false }
                    if ((j["flags"] as? [String]) ?? []).contains("onlink") != h.onlink { return false }
                }
                return true
            }
            if let i = idx { live.remove(at: i) } else { out.append("\(node.name): route not found: \(r.text)") }
        }
        for j in live { out.append("\(node.name): extra route \(j)") }
        // Nexthop objects: `ip -j nexthop show` has exactly the declared ids, groups with their members and weights.
        let objects = try ipJSON("-n", ns, "nexthop", "show")
        let liveIDs = Set(objects.compactMap { $0["id"] as? Int }), declared = Set(node.nexthopObjects.map { Int($0.id) })
        if liveIDs != declared { out.append("\(node.name): nexthop ids \(liveIDs.sorted()) != declared \(declared.sorted())") }
        for n in node.nexthopObjects where !n.group.isEmpty {
            let g = objects.first { $0["id"] as? Int == Int(n.id) }?["group"] as? [[String: Any]] ?? []
            let live = g.map { "\($0["id"] ?? "?")/\($0["weight"] as? Int ?? 1)" }
            let want = n.group.map { "\($0.id)/\($0.weight)" }
            if live != want { out.append("\(node.name): nexthop group \(n.id) \(live) != declared \(want)") }
        }
        return out
    }

    func rules(_ node: Node, _ ns: String) throws -> [String] {
        var out: [String] = []
        let defaults: [(Int, String)] = [(0, "local"), (32766, "main"), (32767, "default")]
        var live = try ipJSON("-4", "-n", ns, "rule", "show").filter { j in
            !defaults.contains { j["priority"] as? Int == $0.0 && j["table"] as? String == $0.1 && j.count == 3 && j["src"] as? String == "all" }
        }
        let protoNames: [UInt8: String] = [6: "tcp", 17: "udp", 1: "icmp"]
        for r in node.rules {
            let idx = live.firstIndex { j in
                if let p = r.pref, j["priority"] as? Int != Int(p) { return false }
                if (j["not"] != nil) != r.invert { return false }
                let src = j["src"] as? String ?? "all"
                if let f = r.from, f.length > 0 { if src != f.address.description || (j["srclen"] as? Int ?? 32) != f.length { return false } } else if src != "all" { return false }
                if let t = r.to { if j["dst"] as? String != t.address.description || (j["dstlen"] as? Int ?? 32) != t.length { return false } } else if j["dst"] != nil { return false }
                if j["iif"] as? String != r.iif || j["oif"] as? String != r.oif { return false }
                if j["fwmark"] as? String != r.fwmark.map({ "0x" + String($0, radix: 16) }) { return false }
                if j["fwmask"] as? String != r.fwmask.flatMap({ $0 == UInt32.max ? nil : "0x" + String($0, radix: 16) }) { return false }
                if j["tos"] as? String != r.tos.map({ "0x" + String($0, radix: 16) }) { return false }
                if let p = r.ipproto { if j["ipproto"] as? String != (protoNames[p] ?? String(p)) { return false } } else if j["ipproto"] != nil { return false }
                for (name, range) in [("sport", r.sport), ("dport", r.dport)] {
                    if let rg = range {
                        if rg.start == rg.end { if j[name] as? Int != Int(rg.start) { return false } }
                        else if j[name + "_start"] as? Int != Int(rg.start) || j[name + "_end"] as? Int != Int(rg.end) { return false }
                    } else if j[name] != nil || j[name + "_start"] != nil { return false }
                }
                if let u = r.uidrange { if j["uid_start"] as? Int != Int(u.lowerBound) || j["uid_end"] as? Int != Int(u.upperBound) { return false } }
                if j["suppress_prefixlen"] as? Int != r.suppressPrefixLength { return false }
                switch r.action {
                case .lookup(let t): return j["table"] as? String == tableName(t)
                case .goto(let p): return j["goto"] as? Int == Int(p)
                case .nop: return j.keys.contains("nop")
                case .unreachable: return j["action"] as? String == "unreachable"
                case .prohibit: return j["action"] as? String == "prohibit"
                case .blackhole: return j["action"] as? String == "blackhole"
                }
            }
            if let i = idx { live.remove(at: i) } else { out.append("\(node.name): rule not found: \(r.text)") }
        }
        for j in live { out.append("\(node.name): extra rule \(j)") }
        return out
    }

    /// Each LAN segment: a bridge in its own namespace with one port per member, all up.
    func segments() throws -> [String] {
        var out: [String] = []
        var k = 0
        for link in topology.links where link.ends.count > 2 {
            let ns = "\(topology.lab)_lan\(k)"
            k += 1
            let links = try ipJSON("-n", ns, "link", "show")
            let ports = links.filter { $0["master"] as? String == "br0" }
            if ports.count != link.ends.count { out.append("segment \(ns): \(ports.count) ports, want \(link.ends.count)") }
            if !links.contains(where: { $0["ifname"] as? String == "br0" && ($0["flags"] as? [String] ?? []).contains("UP") }) {
                out.append("segment \(ns): br0 missing or down")
            }
        }
        return out
    }
}
