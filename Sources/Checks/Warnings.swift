import Engine
import Lab
import NetCore
import Topology

/// `netlab validate`'s warnings: a lab the kernel would build, but probably not the one that was meant. Each at the
/// place in the file it is about, with a hint, as errors are (`Diagnostic` with severity `.warning`). `--strict`
/// makes them errors.
public enum TopologyWarnings {
    public static func of(_ t: Topology) -> [Diagnostic] {
        (linkSubnets(t) + gateways(t) + checks(t) + listeners(t)).sorted { $0.location < $1.location }
    }

    static func warning(_ at: SourceLocation, _ message: String, hint: String, length: Int = 1) -> Diagnostic {
        Diagnostic(at, message, hint: hint, length: length, severity: .warning)
    }

    /// Addresses that put an interface on a subnet (a /32 is an unnumbered link: routes with `onlink` reach across).
    static func subnetAddresses(_ t: Topology, _ e: LinkEnd) -> [InterfaceAddress] {
        t.node(e.node)?.interface(e.interface)?.addresses.filter { $0.prefix.length < 32 } ?? []
    }

    static func shareSubnet(_ a: [InterfaceAddress], _ b: [InterfaceAddress]) -> Bool {
        a.contains { x in b.contains { y in x.prefix.contains(y.address) || y.prefix.contains(x.address) } }
    }

    /// Link ends in different subnets: their neighbours are not on a connected route, so nothing reaches across
    /// without `onlink` routes.
    static func linkSubnets(_ t: Topology) -> [Diagnostic] {
        var out: [Diagnostic] = []
        for l in t.links {
            let ends = l.ends.map { ($0, subnetAddresses(t, $0)) }.filter { !$0.1.isEmpty }
            guard ends.count >= 2 else { continue }
            // A pair: one warning, at its second end. A segment: each member that shares no subnet with any other.
            for (i, (e, addrs)) in ends.enumerated() where l.isSegment || i == 1 {
                let others = ends.enumerated().filter { $0.offset != i }.map(\.element)
                guard !others.contains(where: { shareSubnet(addrs, $0.1) }) else { continue }
                let theirs = others.map { "\($0.0) \($0.1.map(\.prefix.description).joined(separator: ", "))" }.joined(separator: "; ")
                out.append(warning(e.location, "\(e) (\(addrs.map(\.prefix.description).joined(separator: ", "))) shares no subnet with \(l.isSegment ? "any other member of its LAN segment" : "the other end of its link") (\(theirs))",
                                   hint: "the kernel adds no route to a neighbour in another subnet: give the ends addresses in one subnet",
                                   length: e.description.count))
            }
        }
        return out
    }

    /// A gateway that no node on the link has: the kernel accepts the route (the gateway is on a connected subnet),
    /// but ARP for it gets no answer and every packet by that route is lost.
    static func gateways(_ t: Topology) -> [Diagnostic] {
        var out: [Diagnostic] = []
        for node in t.nodes {
            for r in node.routes {
                for h in r.nexthops {
                    guard let gw = h.gateway else { continue }
                    let devs = h.dev.map { [$0] } ?? node.interfaces.filter { i in
                        i.kind != .loopback && i.addresses.contains { !$0.noprefixroute && $0.prefix.length < 32 && $0.prefix.contains(gw) }
                    }.map(\.name)
                    // The nodes on each device's link; a device in no link (dummy, ...) has no neighbours to ask.
                    var neighbours: [String] = [], linked = false
                    for d in devs {
                        for l in t.links where l.ends.contains(where: { $0.node == node.name && $0.interface == d }) {
                            linked = true
                            neighbours += l.ends.filter { !($0.node == node.name && $0.interface == d) }.map(\.node)
                        }
                    }
                    guard linked else { continue }
                    // Linux answers ARP for any of its addresses, on any interface (arp_ignore 0).
                    let owners = neighbours.filter { n in t.node(n)?.addresses.contains { $0.address.address == gw } ?? false }
                    if owners.isEmpty {
                        let theirs = neighbours.compactMap { n in t.node(n).map { "\(n) has " + $0.addresses.map(\.address.address.description).joined(separator: ", ") } }
                        out.append(warning(h.location, "gateway \(gw) of route \"\(r.text)\" is not an address of any neighbour on \(devs.joined(separator: ", "))",
                                           hint: "ARP for \(gw) will go unanswered and packets by this route are lost" + (theirs.isEmpty ? "" : " (\(theirs.joined(separator: "; ")))")))
                    }
                }
            }
        }
        return out
    }

    /// The devices of `node` on which a packet carrying a source-route option is taken in, as `up` configures the
    /// node (Plan's early sysctls, then the file's own; a device copies `default` when it is made, before the file's
    /// sysctls are written), decided as the engine decides it (`NodeSysctls.readSourceRoute`: IN_DEV_SOURCE_ROUTE).
    static func sourceRouteDevices(_ node: Node) -> Set<String> {
        var values: [String: String] = [:]
        for s in LabPlan.earlySysctls(of: node) { values[s.key] = s.value }
        let inherited = values["net.ipv4.conf.default.accept_source_route"]
        for i in node.interfaces where i.name != "lo" { values["net.ipv4.conf.\(i.name).accept_source_route"] = inherited }
        for s in LabPlan.lateSysctls(of: node) { values[s.key] = s.value }
        var n = NodeSysctls()
        n.readSourceRoute(values, devices: node.interfaces.map(\.name) + ["lo"])
        return n.sourceRouteDevices ?? []
    }

    /// Checks without expectations, and source-routed checks through nodes that drop source routes.
    static func checks(_ t: Topology) -> [Diagnostic] {
        var out: [Diagnostic] = []
        var owner: [IPv4Address: (node: Node, dev: String)] = [:]
        for n in t.nodes { for (i, a) in n.addresses where owner[a.address] == nil { owner[a.address] = (n, i) } }
        for c in t.checks {
            let e = c.expect
            if e.result == nil, e.source == nil, e.dev == nil, e.via == nil, e.path == nil, e.replyPath == nil, c.payload == nil {
                out.append(warning(c.location, "check \"\(c.name)\" has no `expect`: it passes whatever the connect does\(c.compareWithKernel ? ", as long as engine and kernel agree" : "")",
                                   hint: "say what should happen, e.g. `expect: {result: established}`"))
            }
            guard let sr = c.sourceRoute, e.result != .timeout, let sender = t.node(c.from) else { continue }
            var refusing: [String] = []
            if sourceRouteDevices(sender).isEmpty { refusing.append("\(sender.name) (the sender: the reply carries the route back)") }
            for hop in sr.hops + [c.destination] {
                guard let o = owner[hop], o.node.name != sender.name else { continue }
                let devs = sourceRouteDevices(o.node)
                // A packet for a loopback or dummy address arrives by a link device: then any device that takes it.
                let takes = o.node.interface(o.dev)?.kind == .veth ? devs.contains(o.dev) : !devs.isEmpty
                if !takes, !refusing.contains(where: { $0.hasPrefix(o.node.name + " ") || $0 == o.node.name }) {
                    refusing.append(hop == c.destination && !sr.hops.contains(hop) ? "\(o.node.name) (the destination)" : o.node.name)
                }
            }
            if !refusing.isEmpty {
                out.append(warning(c.location, "check \"\(c.name)\" sends a \(sr.strict ? "strict" : "loose") source route, but \(refusing.joined(separator: ", ")) \(refusing.count == 1 ? "does" : "do") not accept source routes: the kernel drops the packet there (ip_rcv_options) and the connect times out",
                                   hint: "add `source-route: true` to \(refusing.map { String($0.prefix { $0 != " " }) }.joined(separator: ", ")), or expect it: `expect: {result: timeout}`"))
            }
        }
        return out
    }

    /// A listener port no check connects to (only in a file that has checks: listeners run during `check`).
    static func listeners(_ t: Topology) -> [Diagnostic] {
        guard !t.checks.isEmpty else { return [] }
        var out: [Diagnostic] = []
        for n in t.nodes {
            let mine = Set(n.addresses.map(\.address.address))
            // A listener on one of the node's own ephemeral ports holds that port on purpose (a crowded range).
            let range = NodeSysctls(reading: Dictionary(n.sysctls.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })).ipLocalPortRange
            let ephemeral = n.sysctls.contains { $0.key == "net.ipv4.ip_local_port_range" }
            for (k, port) in n.listen.enumerated() where !t.checks.contains(where: { $0.port == port && mine.contains($0.destination) })
                && !(ephemeral && range.contains(port)) {
                let at = k < n.listenLocations.count ? n.listenLocations[k] : n.location
                out.append(warning(at, "node \(n.name) listens on port \(port), but no check connects to it",
                                   hint: "add a check that connects to \(mine.sorted { $0.value < $1.value }.first.map { "\($0)" } ?? n.name):\(port), or drop the port",
                                   length: String(port).count))
            }
        }
        return out
    }
}
