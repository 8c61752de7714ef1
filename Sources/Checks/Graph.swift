import Foundation
import Topology

/// The topology as a drawing laid out by Graphviz (`dot`): nodes as boxes, a veth link as one edge with each end's
/// interface name at that end (`taillabel`/`headlabel`), a LAN segment as a node of its own joined to each member
/// (so no line passes through a box it does not belong to: dot routes its splines around nodes). Addresses on
/// request. Paths are drawn as extra arrows beside the links (`constraint=false`, so they do not move the layout,
/// and without labels, so they hide none).
public struct TopologyGraph {
    public let topology: Topology
    /// Interface addresses at the link ends, subnets on the LAN nodes.
    public var addresses: Bool

    /// One drawn line: a veth link between two nodes, or a LAN member's line to its segment's node (`b` = `lan<i>`).
    public struct Edge: Sendable, Hashable {
        public var a: String, aInterface: String
        public var b: String, bInterface: String?
        public var link: Int
        /// What a pointer over the line shows: `a:if — b:if`, or `a:if on the LAN segment`.
        public var tooltip: String { bInterface.map { "\(a):\(aInterface) — \(b):\($0)" } ?? "\(a):\(aInterface) on the LAN segment" }
    }
    public private(set) var edges: [Edge] = []
    /// BFS depth from the first node: edges are written from the nearer end so dot ranks left to right.
    private var depth: [String: Int] = [:]

    public init(_ topology: Topology, addresses: Bool = false) {
        self.topology = topology
        self.addresses = addresses
        var adj: [String: [String]] = [:]
        for (i, l) in topology.links.enumerated() {
            if l.isSegment {
                let hub = Self.hub(i)
                for e in l.ends {
                    edges.append(Edge(a: e.node, aInterface: e.interface, b: hub, bInterface: nil, link: i))
                    adj[e.node, default: []].append(hub); adj[hub, default: []].append(e.node)
                }
            } else if l.ends.count == 2 {
                edges.append(Edge(a: l.ends[0].node, aInterface: l.ends[0].interface, b: l.ends[1].node,
                                  bInterface: l.ends[1].interface, link: i))
                adj[l.ends[0].node, default: []].append(l.ends[1].node)
                adj[l.ends[1].node, default: []].append(l.ends[0].node)
            }
        }
        for start in topology.nodes.map(\.name) where depth[start] == nil {
            depth[start] = 0
            var queue = [start], k = 0
            while k < queue.count {
                let n = queue[k]; k += 1
                for m in adj[n] ?? [] where depth[m] == nil { depth[m] = depth[n]! + 1; queue.append(m) }
            }
        }
    }

    static func hub(_ link: Int) -> String { "lan\(link)" }
    public func isHub(_ p: String) -> Bool { topology.node(p) == nil }

    /// One arrow of an overlay: from a drawn point to the next (node or LAN node).
    public struct Step: Sendable, Hashable { public var from: String; public var to: String }

    /// The steps of a path given as node names (`[h1, gw, r1]`): each pair joined by a link between them, through
    /// the LAN node when they share a segment (the first link that joins them, as the file lists them).
    public func steps(nodes path: [String]) -> [Step] {
        var out: [Step] = []
        for (p, n) in zip(path, path.dropFirst()) {
            if edges.contains(where: { !isHub($0.b) && (($0.a == p && $0.b == n) || ($0.a == n && $0.b == p)) }) {
                out.append(Step(from: p, to: n))
            } else if let hub = edges.first(where: { f in f.a == p && isHub(f.b) && edges.contains { $0.a == n && $0.b == f.b } })?.b {
                out += [Step(from: p, to: hub), Step(from: hub, to: n)]
            } else {
                out.append(Step(from: p, to: n))   // not adjacent: still drawn, dot routes it around the boxes
            }
        }
        return out
    }

    /// The steps of a path as the capture saw it (`client:eth1>`, `isp2:eth0<`, ...): each packet that left
    /// `node:if` is drawn along the link of that interface (a LAN's node when it is a segment), so two links between
    /// the same nodes are told apart.
    public func steps(hops: [String]) -> [Step] {
        var out: [Step] = []
        var lastOut: (node: String, interface: String)?
        for h in hops {
            guard let dir = h.last, dir == ">" || dir == "<", let colon = h.firstIndex(of: ":") else { continue }
            let node = String(h[..<colon]), interface = String(h[h.index(after: colon)..<h.index(before: h.endIndex)])
            if dir == ">" { lastOut = (node, interface); continue }
            guard let o = lastOut else { continue }
            lastOut = nil
            if let e = edges.first(where: { $0.a == o.node && $0.aInterface == o.interface }), isHub(e.b) {
                out += [Step(from: o.node, to: e.b), Step(from: e.b, to: node)]
            } else {
                out.append(Step(from: o.node, to: node))
            }
        }
        return out
    }

    /// An overlay: a path drawn as arrows of one colour and style.
    public struct Overlay: Sendable {
        public var steps: [Step]
        public var color: String
        public var dashed: Bool
        public init(steps: [Step], color: String, dashed: Bool = false) { self.steps = steps; self.color = color; self.dashed = dashed }
    }
    public static let synColor = "#1f77b4", replyColor = "#d62728", expectedColor = "#2ca02c"

    /// DOT for Graphviz (`netlab graph FILE --format dot | dot -Tpng`).
    public func dot(overlays: [Overlay] = []) -> String { dot(overlays: overlays, slots: nil) }

    /// With `slots`, the overlay arrows are those slots, grey and of class `ov ovsK`, coloured per drawing by CSS.
    func dot(overlays: [Overlay], slots: [Step]?) -> String {
        let classes = slots != nil
        var s = ["graph \(quote(topology.lab)) {",
                 "  rankdir=LR; nodesep=0.5; ranksep=1.1; pad=0.2; fontname=\"sans-serif\";",
                 "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", fontname=\"sans-serif\", fontsize=12, margin=\"0.15,0.06\"];",
                 "  edge [color=\"#999999\", penwidth=1.6, fontname=\"sans-serif\", fontsize=9, fontcolor=\"#555555\", labeldistance=2.2, labelangle=30];"]
        let onPath = classes ? [] : Set(overlays.flatMap { $0.steps.flatMap { [$0.from, $0.to] } })
        for n in topology.nodes {
            let fill = onPath.contains(n.name) ? "fillcolor=\"#eef5fc\", " : ""
            if addresses {
                // A table: the name, then one row per interface with its addresses; links attach to the row (port).
                let linked = Set(edges.filter { $0.a == n.name }.map(\.aInterface) + edges.filter { $0.b == n.name }.compactMap(\.bInterface))
                var rows = ["<tr><td><b>\(html(n.name))</b></td></tr>"]
                for i in n.interfaces where linked.contains(i.name) || !i.addresses.isEmpty {
                    // One cell per interface, the port: a link aims at the middle of its row.
                    let addrs = i.addresses.map { html($0.prefix.description) }.joined(separator: ", ")
                    rows.append("<tr><td port=\"\(html(i.name))\" align=\"left\"><font point-size=\"10\"><font color=\"#1f5f99\">\(html(i.name))</font> \(addrs)</font></td></tr>")
                }
                s.append("  \(quote(n.name)) [shape=plain, \(fill)label=<<table border=\"1\" cellborder=\"0\" cellspacing=\"0\" cellpadding=\"3\" style=\"rounded\" bgcolor=\"\(onPath.contains(n.name) ? "#eef5fc" : "#ffffff")\">\(rows.joined())</table>>, tooltip=\(quote(n.name))];")
            } else {
                s.append("  \(quote(n.name)) [\(fill)tooltip=\(quote(n.name))];")
            }
        }
        for (i, l) in topology.links.enumerated() where l.isSegment {
            var label = "LAN"
            if addresses {
                let subnets = l.ends.flatMap { e in
                    topology.node(e.node)?.interface(e.interface)?.addresses.map { $0.prefix.canonical.description } ?? []
                }
                var seen = Set<String>()
                let distinct = subnets.filter { seen.insert($0).inserted }
                if !distinct.isEmpty { label = distinct.joined(separator: "\n") }
            }
            s.append("  \(Self.hub(i)) [shape=ellipse, style=filled, fillcolor=\"#e8e8e8\", color=\"#777777\", fontsize=9, height=0.3, margin=\"0.05,0.02\", label=\(quote(label)), tooltip=\"LAN segment\"];")
        }
        for e in edges {
            // Written from the end nearer the first node, so the drawing reads left to right.
            let flip = (depth[e.b] ?? 0) < (depth[e.a] ?? 0)
            var attrs: [String] = []
            // Each end names its interface: the row it attaches to (with addresses), else a label at that end.
            var aEnd = quote(e.a), bEnd = quote(e.b)
            if addresses {
                aEnd += ":" + quote(e.aInterface)
                if let bi = e.bInterface { bEnd += ":" + quote(bi) }
            } else {
                attrs.append("\(flip ? "headlabel" : "taillabel")=\(quote(e.aInterface))")
                if let bi = e.bInterface { attrs.append("\(flip ? "taillabel" : "headlabel")=\(quote(bi))") }
            }
            attrs.append("tooltip=\(quote(e.tooltip))")
            s.append("  \(flip ? bEnd : aEnd) -- \(flip ? aEnd : bEnd) [\(attrs.joined(separator: ", "))];")
        }
        if let slots {
            // One layout serves several drawings (`svg(drawings:)`): each slot an arrow that CSS shows and colours.
            for (k, st) in slots.enumerated() {
                s.append("  \(quote(st.from)) -- \(quote(st.to)) [dir=forward, constraint=false, penwidth=2.6, arrowsize=0.8, class=\"ov ovs\(k)\"];")
            }
        } else {
            for a in Self.arrows(overlays) {
                s.append("  \(quote(a.step.from)) -- \(quote(a.step.to)) [dir=forward, constraint=false, color=\(quote(a.color)), penwidth=2.6, arrowsize=0.8\(a.dashed ? ", style=dashed" : "")];")
            }
        }
        s.append("}")
        return s.joined(separator: "\n") + "\n"
    }

    /// The drawing as SVG, laid out by Graphviz's `dot` program; `overlays` are drawn as arrows beside the links.
    /// The `<svg>` element alone (no XML prolog), ready to be embedded in HTML or written to a file.
    public func svg(overlays: [Overlay] = []) throws -> String {
        try Self.element(Graphviz.run(dot(overlays: overlays), format: "svg"))
    }

    /// An arrow of an overlay: a step with its colour and style (one edge in the DOT, however often it is drawn).
    struct Arrow: Hashable { var step: Step; var color: String; var dashed: Bool }
    static func arrows(_ overlays: [Overlay]) -> [Arrow] {
        var seen = Set<Arrow>(), out: [Arrow] = []
        for o in overlays { for st in o.steps { let a = Arrow(step: st, color: o.color, dashed: o.dashed); if seen.insert(a).inserted { out.append(a) } } }
        return out
    }

    /// Several drawings of the same layout: one `dot` run lays out the topology with a slot for every arrow any
    /// drawing needs — one per direction of a step, a second only when one drawing crosses the same step the same
    /// way twice — so the boxes stay where they are from one drawing to the next, and arrows run beside the links
    /// (dot spreads parallel edges apart) rather than over them and their labels. `style(i, scope:)` is the CSS
    /// that shows and colours drawing i's arrows inside `scope` and hides the other slots.
    public struct Drawings {
        public var svg: String
        public var arrowsOf: [[(slot: Int, color: String, dashed: Bool)]]
        public func style(_ i: Int, scope: String) -> String {
            "\(scope) .ov{display:none}" + arrowsOf[i].map { a in
                "\(scope) .ovs\(a.slot){display:inline}\(scope) .ovs\(a.slot) path{stroke:\(a.color)\(a.dashed ? ";stroke-dasharray:6,3" : "")}"
                    + "\(scope) .ovs\(a.slot) polygon{stroke:\(a.color);fill:\(a.color)}"
            }.joined()
        }
    }
    public func svg(drawings: [[Overlay]]) throws -> Drawings {
        struct Key: Hashable { var step: Step; var ordinal: Int }
        var slots: [Step] = [], slotOf: [Key: Int] = [:]
        var arrowsOf: [[(slot: Int, color: String, dashed: Bool)]] = []
        for d in drawings {
            var used: [Step: Int] = [:], seen = Set<Arrow>(), arrows: [(slot: Int, color: String, dashed: Bool)] = []
            for a in Self.arrows(d) where seen.insert(a).inserted {
                let key = Key(step: a.step, ordinal: used[a.step, default: 0])
                used[a.step, default: 0] += 1
                let slot = slotOf[key] ?? { slots.append(a.step); slotOf[key] = slots.count - 1; return slots.count - 1 }()
                arrows.append((slot, a.color, a.dashed))
            }
            arrowsOf.append(arrows)
        }
        let svg = try Self.element(Graphviz.run(dot(overlays: [], slots: slots), format: "svg"))
        return Drawings(svg: svg, arrowsOf: arrowsOf)
    }

    /// The `<svg>` element of dot's output (without the XML prolog and doctype).
    static func element(_ out: String) throws -> String {
        guard let start = out.range(of: "<svg") else { throw Graphviz.Failure.output("dot wrote no <svg> element") }
        return String(out[start.lowerBound...])
    }

    /// Text inside an HTML-like label.
    private func html(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    private func quote(_ s: String) -> String {
        var o = "\""
        for c in s {
            switch c {
            case "\"": o += "\\\""
            case "\\": o += "\\\\"
            case "\n": o += "\\n"
            default: o.append(c)
            }
        }
        return o + "\""
    }
}

/// Graphviz's `dot` program, run as a subprocess (Debian's `graphviz`; scripts/install-deps installs it).
public enum Graphviz {
    public enum Failure: Error, CustomStringConvertible {
        case missing, failed(Int32, String), output(String)
        public var description: String {
            switch self {
            case .missing: return "Graphviz's dot program is not installed (apt-get install graphviz, or scripts/install-deps)"
            case .failed(let rc, let err): return "dot exited with \(rc): \(err)"
            case .output(let m): return m
            }
        }
    }

    /// The `dot` found on PATH (then /usr/bin), or nil.
    public static var program: String? {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"]
        return dirs.map { $0 + "/dot" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// `dot -T<format>` over `source`; its standard output.
    public static func run(_ source: String, format: String) throws -> String {
        guard let path = program else { throw Failure.missing }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = ["-T\(format)"]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        p.standardInput = input; p.standardOutput = output; p.standardError = errors
        try p.run()
        // dot reads its whole input before it writes; stderr is drained meanwhile so warnings cannot stall it.
        final class Box: @unchecked Sendable { var data = Data() }
        let err = Box(), drained = DispatchSemaphore(value: 0)
        let stderrHandle = errors.fileHandleForReading
        DispatchQueue.global().async { err.data = stderrHandle.readDataToEndOfFile(); drained.signal() }
        input.fileHandleForWriting.write(source.data(using: .utf8)!)
        try? input.fileHandleForWriting.close()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        drained.wait()
        guard p.terminationStatus == 0 else {
            throw Failure.failed(p.terminationStatus, String(decoding: err.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return String(decoding: out, as: UTF8.self)
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
