import Topology

/// The topology as a drawing: nodes in layers (breadth-first from the first node), veth links as lines, LAN
/// segments as a small hub joined to each member. Self-made SVG (no external assets) and Graphviz DOT.
public struct TopologyGraph {
    public struct Point { public var x: Double; public var y: Double }
    public let topology: Topology
    public private(set) var positions: [String: Point] = [:]
    /// Edges between drawn points (node names and `lan<i>` hubs), labelled with the interfaces.
    public private(set) var edges: [(a: String, b: String, label: String)] = []
    public private(set) var width: Double = 0
    public private(set) var height: Double = 0

    public init(_ topology: Topology) {
        self.topology = topology
        var adj: [String: [String]] = [:]
        for (i, l) in topology.links.enumerated() {
            if l.isSegment {
                let hub = "lan\(i)"
                for e in l.ends { edges.append((e.node, hub, e.interface)); adj[e.node, default: []].append(hub); adj[hub, default: []].append(e.node) }
            } else if l.ends.count == 2 {
                edges.append((l.ends[0].node, l.ends[1].node, "\(l.ends[0].interface)–\(l.ends[1].interface)"))
                adj[l.ends[0].node, default: []].append(l.ends[1].node)
                adj[l.ends[1].node, default: []].append(l.ends[0].node)
            }
        }
        var depth: [String: Int] = [:]
        var order: [String] = []
        for start in topology.nodes.map(\.name) where depth[start] == nil {
            let base = (depth.values.max() ?? -1) + 1
            depth[start] = base
            var queue = [start]
            while !queue.isEmpty {
                let n = queue.removeFirst()
                order.append(n)
                for m in adj[n] ?? [] where depth[m] == nil { depth[m] = depth[n]! + 1; queue.append(m) }
            }
        }
        var perLayer: [Int: Int] = [:]
        for n in order {
            let d = depth[n]!
            let k = perLayer[d, default: 0]
            perLayer[d] = k + 1
            positions[n] = Point(x: 70 + Double(d) * 150, y: 50 + Double(k) * 90)
        }
        width = (positions.values.map(\.x).max() ?? 0) + 80
        height = (positions.values.map(\.y).max() ?? 0) + 60
    }

    public func isHub(_ p: String) -> Bool { topology.node(p) == nil }

    /// The drawn points a path of nodes passes through (hubs inserted between members of one LAN).
    public func route(_ path: [String]) -> [String] {
        guard var out = path.first.map({ [$0] }) else { return [] }
        for n in path.dropFirst() {
            let prev = out.last!
            if edges.contains(where: { ($0.a == prev && $0.b == n) || ($0.a == n && $0.b == prev) }) { out.append(n); continue }
            if let hub = edges.first(where: { f in f.a == prev && isHub(f.b) && edges.contains { e in e.a == n && e.b == f.b } })?.b {
                out.append(hub)
            }
            out.append(n)
        }
        return out
    }

    /// DOT for Graphviz (`netlab graph FILE --format dot | dot -Tpng`).
    public func dot() -> String {
        var s = ["graph \"\(topology.lab)\" {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
        for n in topology.nodes {
            let addrs = n.addresses.map { "\($0.interface) \($0.address.prefix)" }.joined(separator: "\\n")
            s.append("  \"\(n.name)\" [label=\"\(n.name)\(addrs.isEmpty ? "" : "\\n" + addrs)\"];")
        }
        for h in Set(edges.map(\.b)).filter(isHub).sorted() { s.append("  \"\(h)\" [shape=point, width=0.15, label=\"\"];") }
        for e in edges { s.append("  \"\(e.a)\" -- \"\(e.b)\" [label=\"\(e.label)\", fontsize=9];") }
        s.append("}")
        return s.joined(separator: "\n")
    }

    /// An SVG drawing; `paths` are overlaid as arrows (SYN paths solid, reply paths dashed).
    public func svg(syn: [String] = [], reply: [String] = [], title: String? = nil) -> String {
        var s = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"11\">"]
        if let title { s.append("<title>\(escapeXML(title))</title>") }
        s.append("<defs><marker id=\"a\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" fill=\"context-stroke\"/></marker></defs>")
        for e in edges {
            guard let a = positions[e.a], let b = positions[e.b] else { continue }
            s.append("<line x1=\"\(a.x)\" y1=\"\(a.y)\" x2=\"\(b.x)\" y2=\"\(b.y)\" stroke=\"#999\" stroke-width=\"2\"/>")
            s.append("<text x=\"\((a.x + b.x) / 2)\" y=\"\((a.y + b.y) / 2 - 4)\" fill=\"#666\" font-size=\"9\" text-anchor=\"middle\">\(escapeXML(e.label))</text>")
        }
        func polyline(_ nodes: [String], color: String, dash: Bool, offset: Double) {
            let pts = route(nodes).compactMap { positions[$0] }
            guard pts.count > 1 else { return }
            for (p, q) in zip(pts, pts.dropFirst()) {
                s.append("<line x1=\"\(p.x + offset)\" y1=\"\(p.y + offset)\" x2=\"\(q.x + offset)\" y2=\"\(q.y + offset)\" stroke=\"\(color)\" stroke-width=\"3\"\(dash ? " stroke-dasharray=\"6 4\"" : "") marker-end=\"url(#a)\"/>")
            }
        }
        polyline(syn, color: "#1f77b4", dash: false, offset: -4)
        polyline(reply, color: "#d62728", dash: true, offset: 4)
        for (name, p) in positions.sorted(by: { $0.key < $1.key }) {
            if isHub(name) { s.append("<circle cx=\"\(p.x)\" cy=\"\(p.y)\" r=\"6\" fill=\"#555\"><title>LAN segment</title></circle>"); continue }
            let onPath = syn.contains(name) || reply.contains(name)
            s.append("<rect x=\"\(p.x - 45)\" y=\"\(p.y - 16)\" width=\"90\" height=\"32\" rx=\"8\" fill=\"\(onPath ? "#eef5fc" : "#fff")\" stroke=\"#333\"/>")
            s.append("<text x=\"\(p.x)\" y=\"\(p.y + 4)\" text-anchor=\"middle\">\(escapeXML(name))</text>")
        }
        s.append("</svg>")
        return s.joined(separator: "\n")
    }
}

/// Text for XML and HTML: markup characters as entities, control characters as visible escapes (`visible`; XML 1.0
/// cannot carry them at all), line breaks and tabs kept.
func escapeXML(_ s: String) -> String {
    var o = ""
    for u in s.unicodeScalars {
        switch u {
        case "&": o += "&amp;"
        case "<": o += "&lt;"
        case ">": o += "&gt;"
        case "\"": o += "&quot;"
        default: appendVisible(u, to: &o, keepNewlines: true)
        }
    }
    return o
}
