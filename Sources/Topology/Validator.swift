/// Checks that need the whole file: link ends, devices, gateways, tables, duplicates and the lab's address ranges.
struct Validator {
    let topology: Topology

    /// Give each node the interfaces its links name; report link ends on unknown nodes and reused interfaces.
    func attachLinkInterfaces(_ nodes: inout [Node], reader: inout YAMLReader) {
        var used: [String: SourceLocation] = [:]
        let names = nodes.map(\.name)
        for link in topology.links {
            for end in link.ends {
                guard let n = nodes.firstIndex(where: { $0.name == end.node }) else {
                    reader.error(end.location, "link end \"\(end)\" names node \"\(end.node)\", which is not declared",
                                 hint: nearest(end.node, in: names).map { "did you mean \"\($0):\(end.interface)\"?" }
                                     ?? "declare it under `nodes:`", length: end.node.count)
                    continue
                }
                if let problem = interfaceNameProblem(end.interface) {
                    reader.error(end.location.advanced(by: end.node.count + 1), problem, length: end.interface.count)
                    continue
                }
                let key = end.description
                if let first = used[key] {
                    reader.error(end.location, "interface \(key) is already an end of the link at line \(first.line)",
                                 hint: "each interface joins one link; for a shared segment list 3+ ends in one link",
                                 length: key.count)
                    continue
                }
                used[key] = end.location
                if let i = nodes[n].interfaces.firstIndex(where: { $0.name == end.interface }) {
                    let kind = nodes[n].interfaces[i].kind
                    if kind != .veth {
                        reader.error(end.location, "\(key) is a \(kind == .loopback ? "loopback" : kind.rawValue) interface and cannot be a link end",
                                     hint: "link ends are veth interfaces; pick another name", length: key.count)
                    }
                } else {
                    nodes[n].interfaces.append(Interface(name: end.interface, location: end.location, kind: .veth, addresses: [], mtu: nil))
                }
            }
        }
        for node in nodes {
            for iface in node.interfaces where iface.kind == .veth && used["\(node.name):\(iface.name)"] == nil {
                reader.error(iface.location, "interface \(iface.name) of node \(node.name) is in no link",
                             hint: "add it to `links:` (e.g. [\(node.name):\(iface.name), OTHER:eth0]) or give it `type: dummy`",
                             length: iface.name.count)
            }
        }
    }

    mutating func validate(reader: inout YAMLReader) {
        var owners: [IPv4Address: (node: String, at: SourceLocation)] = [:]
        for node in topology.nodes {
            var seen: [IPv4Address: SourceLocation] = [:]
            for iface in node.interfaces {
                for a in iface.addresses {
                    if !topology.allows(a.address) {
                        reader.error(a.location, "address \(a.address) is outside the lab's address ranges",
                                     hint: "labs use only \(LabAddressSpace.description)", length: a.prefix.description.count)
                    }
                    for extra in [a.peer, a.broadcast].compactMap({ $0 }) where !LabAddressSpace.contains(extra) && extra.value != UInt32.max {
                        reader.error(a.location, "\(extra == a.peer ? "peer" : "broadcast") \(extra) is outside the lab's address ranges",
                                     hint: "labs use only \(LabAddressSpace.description)", length: a.prefix.description.count)
                    }
                    if let first = seen[a.address] {
                        reader.error(a.location, "address \(a.address) is declared twice in node \(node.name) (first at line \(first.line))",
                                     length: a.prefix.description.count)
                    } else if iface.kind != .loopback, let other = owners[a.address], other.node != node.name {
                        reader.error(a.location, "address \(a.address) is already used by node \(other.node) (line \(other.at.line))",
                                     hint: "each interface address must be unique in the lab", length: a.prefix.description.count)
                    }
                    seen[a.address] = a.location
                    if iface.kind != .loopback, owners[a.address] == nil { owners[a.address] = (node.name, a.location) }
                }
            }
            validateNexthops(node, reader: &reader)
            validateRoutes(node, reader: &reader)
            validateRules(node, reader: &reader)
        }
    }

    /// Subnets the kernel makes reachable on a device: prefix routes of addresses, and device routes declared here.
    func connected(_ node: Node) -> [(dev: String, prefix: IPv4Prefix)] {
        var out: [(String, IPv4Prefix)] = []
        for iface in node.interfaces where iface.kind != .loopback {
            for a in iface.addresses where !a.noprefixroute && (a.prefix.length < 32 || a.peer != nil) { out.append((iface.name, a.subnet)) }
        }
        for r in node.routes where r.type == .unicast {
            for h in r.nexthops where h.gateway == nil { if let d = h.dev { out.append((d, r.destination)) } }
        }
        return out
    }

    func validateRoutes(_ node: Node, reader: inout YAMLReader) {
        let devs = node.interfaces.map(\.name) + (node.interface("lo") == nil ? ["lo"] : [])
        let local = Set(node.addresses.map(\.address.address))
        let subnets = connected(node)
        var keys: [String: SourceLocation] = [:]
        for r in node.routes {
            let name = topology.tableName(r.table)
            if r.destination.length > 0, !topology.allows(r.destination) {
                reader.error(r.location, "route destination \(r.destination) is outside the lab's address ranges",
                             hint: "labs route only \(LabAddressSpace.description) (or default)")
            }
            let key = "\(r.table) \(r.destination) \(r.tos ?? 0) \(r.metric ?? 0)"
            if let first = keys[key] {
                reader.error(r.location, "route \"\(r.text)\" repeats the route at line \(first.line) (same table \(name), destination and metric); the kernel rejects it with \"File exists\"",
                             hint: "give one of them another metric or table")
            }
            keys[key] = r.location
            if r.table == RoutingTable.main, (r.metric ?? 0) == 0, r.tos == nil, r.type == .unicast,
               let conn = node.addresses.first(where: { $0.interface != "lo" && !$0.address.noprefixroute && $0.address.prefix.length < 32
                   && $0.address.prefix.canonical == r.destination && ($0.address.metric ?? 0) == 0 }) {
                reader.error(r.location, "route \(r.destination.routeDescription) is the connected route the kernel already adds for \(conn.address.prefix) on \(conn.interface)",
                             hint: "drop it, give it a metric, or put it in another table")
            }
            if let src = r.src, r.type == .unicast || r.type == .local {
                if !local.contains(src) {
                    reader.error(r.location, "src \(src) of route \"\(r.text)\" is not an address of node \(node.name)",
                                 hint: "the kernel only accepts a local address as prefsrc; add it to an interface or drop `src`")
                }
            }
            for h in r.nexthops {
                if let d = h.dev, !devs.contains(d) {
                    reader.error(h.devLocation ?? h.location, "route \"\(r.text)\" uses dev \(d), which node \(node.name) does not have",
                                 hint: nearest(d, in: devs).map { "did you mean \"\($0)\"?" } ?? "node \(node.name) has: " + devs.joined(separator: ", "),
                                 length: d.count)
                    continue
                }
                guard let gw = h.gateway else { continue }
                if !topology.allows(gw) {
                    reader.error(h.location, "gateway \(gw) is outside the lab's address ranges", hint: "labs use only \(LabAddressSpace.description)")
                    continue
                }
                if local.contains(gw) {
                    // fib_check_nh_v4_gw: the kernel takes a gateway that is an address of the nexthop's device (or of
                    // any device without `dev`) and gives the nexthop host scope: packets then go on-link. With
                    // `onlink` it refuses one ("Nexthop has invalid gateway").
                    if h.onlink {
                        reader.error(h.location, "gateway \(gw) is an address of node \(node.name) itself; with `onlink` the kernel rejects it",
                                     hint: "drop `onlink` (the route then sends on-link to each destination), or use the neighbour's address")
                        continue
                    }
                    if h.dev == nil || node.interface(h.dev!)?.addresses.contains(where: { $0.address == gw }) == true { continue }
                }
                if h.onlink {
                    if h.dev == nil { reader.error(h.location, "`onlink` needs `dev`", hint: "add dev IFACE") }
                    continue
                }
                let ok = subnets.contains { $0.prefix.contains(gw) && (h.dev == nil || h.dev == $0.dev) }
                if !ok {
                    let on = h.dev.map { " on \($0)" } ?? ""
                    reader.error(h.location, "gateway \(gw) of route \"\(r.text)\" is on no connected subnet of node \(node.name)\(on); the kernel rejects it",
                                 hint: "add an address in \(gw)'s subnet\(on), or add `onlink` with `dev`")
                }
            }
        }
    }

    /// Nexthop objects: unique ids, devices the node has, groups of existing single nexthops; `nhid` names one.
    func validateNexthops(_ node: Node, reader: inout YAMLReader) {
        let devs = node.interfaces.map(\.name) + (node.interface("lo") == nil ? ["lo"] : [])
        var byID: [UInt32: NexthopSpec] = [:]
        for n in node.nexthopObjects {
            if let first = byID[n.id] {
                reader.error(n.location, "nexthop id \(n.id) is declared twice in node \(node.name) (first at line \(first.location.line))")
                continue
            }
            byID[n.id] = n
            if let d = n.dev, !devs.contains(d) {
                reader.error(n.location, "nexthop \(n.id) uses dev \(d), which node \(node.name) does not have",
                             hint: nearest(d, in: devs).map { "did you mean \"\($0)\"?" } ?? "node \(node.name) has: " + devs.joined(separator: ", "))
            }
            if let g = n.gateway, !LabAddressSpace.contains(g) {
                reader.error(n.location, "gateway \(g) is outside the lab's address ranges", hint: "labs use only \(LabAddressSpace.description)")
            }
        }
        for n in node.nexthopObjects {
            for m in n.group {
                guard let member = byID[m.id], node.nexthopObjects.firstIndex(where: { $0.id == m.id })! < node.nexthopObjects.firstIndex(where: { $0.id == n.id })! else {
                    reader.error(n.location, "group \(n.id) names nexthop \(m.id), which is not declared before it in node \(node.name)",
                                 hint: "declare `id \(m.id) via G dev D` earlier under `nexthops:`")
                    continue
                }
                if !member.group.isEmpty || member.blackhole {
                    reader.error(n.location, "group \(n.id) names nexthop \(m.id), which is a \(member.blackhole ? "blackhole" : "group"); the kernel rejects it",
                                 hint: "a group's members are single nexthops (via/dev)")
                }
            }
        }
        for r in node.routes {
            if let id = r.nexthopID, byID[id] == nil {
                reader.error(r.location, "route \"\(r.text)\" uses nhid \(id), which node \(node.name) does not declare",
                             hint: "add `id \(id) via G dev D` under `nexthops:`")
            }
        }
    }

    func validateRules(_ node: Node, reader: inout YAMLReader) {
        for r in node.rules {
            for p in [r.from, r.to].compactMap({ $0 }) where p.length > 0 && !topology.allows(p) {
                reader.error(r.location, "rule prefix \(p) is outside the lab's address ranges", hint: "labs use only \(LabAddressSpace.description)")
            }
            if r.tos != nil, r.dscp != nil {
                reader.error(r.location, "a rule takes tos or dscp, not both")
            }
        }
    }
}
