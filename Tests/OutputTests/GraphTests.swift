import Foundation
import FoundationXML
import Testing
import Topology
@testable import Checks

/// The drawings as Graphviz lays them out, read back from dot's SVG (the geometry is Graphviz's, not ours): no line
/// crosses a box it does not belong to, each interface name sits at its own end, addresses are there on request.
/// These tests need Graphviz's `dot` (scripts/install-deps installs it); without it they fail, they do not skip.
struct GraphTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var labs: [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Labs").path))?
            .filter { $0.hasSuffix(".topo") }.sorted().map { root.appendingPathComponent("Labs/\($0)").path } ?? []
    }

    struct Box { var name: String; var minX, minY, maxX, maxY: Double
        var center: (Double, Double) { ((minX + maxX) / 2, (minY + maxY) / 2) }
        /// Strictly inside, with a margin: a line that ends on a box touches its border.
        func holds(_ p: (Double, Double), margin: Double = 2) -> Bool {
            p.0 > minX + margin && p.0 < maxX - margin && p.1 > minY + margin && p.1 < maxY - margin
        }
    }
    struct Line { var tooltip: String; var points: [(Double, Double)]; var labels: [(text: String, x: Double, y: Double)] }

    static func numbers(_ s: String) -> [Double] {
        var out: [Double] = [], cur = ""
        for c in s {
            if c.isNumber || c == "." || (c == "-" && cur.isEmpty) { cur.append(c) } else {
                if let v = Double(cur) { out.append(v) }
                cur = c == "-" ? "-" : ""
            }
        }
        if let v = Double(cur) { out.append(v) }
        return out
    }

    /// Points along a path `d` of dot's edges (`M x,y C x1,y1 x2,y2 x3,y3 ...`): the cubic Béziers sampled.
    static func sample(_ d: String) -> [(Double, Double)] {
        let n = numbers(d)
        var pts: [(Double, Double)] = []
        var i = 0
        while i + 1 < n.count { pts.append((n[i], n[i + 1])); i += 2 }
        guard pts.count >= 4 else { return pts }
        var out: [(Double, Double)] = []
        var k = 0
        while k + 3 < pts.count {
            let (p0, p1, p2, p3) = (pts[k], pts[k + 1], pts[k + 2], pts[k + 3])
            for s in 0...40 {
                let t = Double(s) / 40, u = 1 - t
                out.append((u * u * u * p0.0 + 3 * u * u * t * p1.0 + 3 * u * t * t * p2.0 + t * t * t * p3.0,
                            u * u * u * p0.1 + 3 * u * u * t * p1.1 + 3 * u * t * t * p2.1 + t * t * t * p3.1))
            }
            k += 3
        }
        return out
    }

    /// Every element under `e` (itself included), depth first.
    static func all(_ e: XMLElement) -> [XMLElement] {
        [e] + (e.children ?? []).compactMap { $0 as? XMLElement }.flatMap(all)
    }
    static func local(_ e: XMLElement) -> String { e.localName ?? e.name ?? "" }
    static func attr(_ e: XMLElement, _ name: String) -> String? {
        e.attributes?.first { ($0.localName ?? $0.name) == name }?.stringValue
    }

    /// Boxes (nodes) and lines (edges) of one SVG drawn by dot.
    static func read(_ svg: String) throws -> (boxes: [String: Box], lines: [Line]) {
        let doc = try XMLDocument(xmlString: svg, options: [])
        guard let root = doc.rootElement() else { return ([:], []) }
        var boxes: [String: Box] = [:], lines: [Line] = []
        for e in all(root) where local(e) == "g" {
            guard let cls = attr(e, "class") else { continue }
            let inner = all(e).dropFirst()
            let title = inner.first { local($0) == "title" }?.stringValue ?? ""
            if cls == "node" {
                var xs: [Double] = [], ys: [Double] = []
                for s in inner where ["path", "polygon", "ellipse"].contains(local(s)) {
                    if local(s) == "ellipse" {
                        let v = ["cx", "cy", "rx", "ry"].map { Double(attr(s, $0) ?? "") ?? 0 }
                        xs += [v[0] - v[2], v[0] + v[2]]; ys += [v[1] - v[3], v[1] + v[3]]
                    } else {
                        let n = numbers(attr(s, "d") ?? attr(s, "points") ?? "")
                        for i in stride(from: 0, to: n.count - 1, by: 2) { xs.append(n[i]); ys.append(n[i + 1]) }
                    }
                }
                if let a = xs.min(), let b = xs.max(), let c = ys.min(), let d = ys.max() {
                    boxes[title] = Box(name: title, minX: a, minY: c, maxX: b, maxY: d)
                }
            } else if cls.hasPrefix("edge") {
                let tip = inner.first { local($0) == "a" }.flatMap { attr($0, "title") } ?? title
                let points = inner.filter { local($0) == "path" }.compactMap { attr($0, "d") }.flatMap(sample)
                let labels = inner.filter { local($0) == "text" }.map {
                    (text: $0.stringValue ?? "", x: Double(attr($0, "x") ?? "") ?? 0, y: Double(attr($0, "y") ?? "") ?? 0)
                }
                lines.append(Line(tooltip: tip, points: points, labels: labels))
            }
        }
        return (boxes, lines)
    }

    @Test func everyBundledLabIsDrawnWithoutALineThroughAForeignBox() throws {
        #expect(Graphviz.program != nil, "Graphviz's dot is needed: scripts/install-deps")
        #expect(Self.labs.count >= 7)
        for path in Self.labs {
            let t = try Topology.load(path: path)
            for addresses in [false, true] {
                let g = TopologyGraph(t, addresses: addresses)
                let (boxes, lines) = try Self.read(g.svg())
                #expect(boxes.count == t.nodes.count + t.links.filter(\.isSegment).count, "\(path)")
                #expect(lines.count == g.edges.count, "\(path)")
                for e in g.edges {
                    guard let l = lines.first(where: { $0.tooltip == e.tooltip }) else { Issue.record("\(path): no line \(e.tooltip)"); continue }
                    for (name, box) in boxes where name != e.a && name != e.b {
                        let inside = l.points.filter { box.holds($0) }
                        #expect(inside.isEmpty, "\(path) (addresses: \(addresses)): the line \(l.tooltip) passes through \(name)'s box")
                    }
                }
            }
        }
    }

    /// The reading of the SVG sees a line that does cross a box (the geometry check above can fail).
    @Test func aLineThroughABoxIsSeen() throws {
        let svg = """
            <svg xmlns="http://www.w3.org/2000/svg"><g class="graph">
            <g class="node"><title>gw</title><path d="M100,-50C100,-50 160,-50 160,-50 160,-50 160,-10 160,-10 160,-10 100,-10 100,-10Z"/></g>
            <g class="edge"><title>h3--gw2</title><path d="M0,-30C60,-30 200,-30 260,-30"/></g>
            </g></svg>
            """
        let (boxes, lines) = try Self.read(svg)
        let gw = try #require(boxes["gw"]), l = try #require(lines.first)
        #expect(l.points.contains { gw.holds($0) })
    }

    /// campus: h3:eth1 — gw2:eth1 was once a straight line through gw's box (issue 14).
    @Test func campusH3ToGw2AvoidsGw() throws {
        let t = try Topology.load(path: Self.root.appendingPathComponent("Labs/campus.topo").path)
        let (boxes, lines) = try Self.read(TopologyGraph(t).svg())
        let l = try #require(lines.first { $0.tooltip == "h3:eth1 — gw2:eth1" })
        let gw = try #require(boxes["gw"])
        #expect(!l.points.isEmpty && l.points.allSatisfy { !gw.holds($0, margin: 0) })
    }

    /// Each interface name is drawn at its own end: nearer its node's box than the other end's.
    @Test func interfaceNamesSitAtTheirEnds() throws {
        for path in Self.labs {
            let t = try Topology.load(path: path)
            let g = TopologyGraph(t)
            let (boxes, lines) = try Self.read(g.svg())
            for e in g.edges {
                guard let l = lines.first(where: { $0.tooltip == e.tooltip }) else { Issue.record("\(path): no line \(e.tooltip)"); continue }
                guard let a = boxes[e.a], let b = boxes[e.b] else { Issue.record("\(path): no box for \(e.a) or \(e.b)"); continue }
                func dist(_ p: (Double, Double), _ q: (Double, Double)) -> Double { ((p.0 - q.0) * (p.0 - q.0) + (p.1 - q.1) * (p.1 - q.1)).squareRoot() }
                if let bi = e.bInterface {
                    #expect(l.labels.count == 2, "\(path): \(l.tooltip) has labels \(l.labels.map(\.text))")
                    if bi == e.aInterface { continue }
                    for lab in l.labels {
                        let nearA = dist((lab.x, lab.y), a.center) < dist((lab.x, lab.y), b.center)
                        #expect(lab.text == (nearA ? e.aInterface : bi), "\(path): \(lab.text) of \(l.tooltip) is drawn at the other end")
                    }
                } else {
                    #expect(l.labels.map(\.text) == [e.aInterface], "\(path): \(l.tooltip)")
                    if let lab = l.labels.first { #expect(dist((lab.x, lab.y), a.center) < dist((lab.x, lab.y), b.center), "\(path): \(l.tooltip)") }
                }
            }
        }
    }

    @Test func addressesOnRequestOnly() throws {
        let t = try Topology.load(path: Self.root.appendingPathComponent("Labs/campus.topo").path)
        let plain = try TopologyGraph(t).svg(), full = try TopologyGraph(t, addresses: true).svg()
        for n in t.nodes { for (_, a) in n.addresses {
            #expect(full.contains(a.prefix.description), "\(n.name) \(a.prefix)")
            #expect(!plain.contains(a.prefix.description))
        } }
        #expect(full.contains("198.51.100.0/26"), "the LAN's subnet")
    }

    /// A path from the capture's hops is drawn along the links of the interfaces it left by, through the LAN's node.
    @Test func hopsBecomeStepsAlongTheirLinks() throws {
        let t = try Topology.load(path: Self.root.appendingPathComponent("Labs/campus.topo").path)
        let g = TopologyGraph(t)
        let steps = g.steps(hops: ["h2:eth0>", "gw2:eth0<", "gw2:eth2>", "r2:eth2<", "r2:eth1>", "dc:eth0<"])
        #expect(steps.map { "\($0.from)>\($0.to)" } == ["h2>lan0", "lan0>gw2", "gw2>r2", "r2>dc"])
        #expect(g.steps(nodes: ["h3", "gw2", "r2"]).map { "\($0.from)>\($0.to)" } == ["h3>gw2", "gw2>r2"])
        #expect(g.steps(nodes: ["h1", "gw"]).map { "\($0.from)>\($0.to)" } == ["h1>lan0", "lan0>gw"])
    }

    /// One layout for every drawing of a report: each drawing shows its own arrows in its own colours, and a step
    /// crossed in the same direction by two drawings shares one slot.
    @Test func drawingsShareOneLayout() throws {
        let t = try Topology.load(path: Self.root.appendingPathComponent("Labs/campus.topo").path)
        let g = TopologyGraph(t)
        let syn = TopologyGraph.Overlay(steps: g.steps(nodes: ["h1", "gw", "r1"]), color: TopologyGraph.synColor)
        let expected = TopologyGraph.Overlay(steps: g.steps(nodes: ["h1", "gw", "r1"]), color: TopologyGraph.expectedColor)
        let reply = TopologyGraph.Overlay(steps: g.steps(nodes: ["r1", "gw", "h1"]), color: TopologyGraph.replyColor, dashed: true)
        let d = try g.svg(drawings: [[syn, reply], [expected]])
        #expect(d.arrowsOf[0].count == 6 && d.arrowsOf[1].count == 3)
        #expect(d.arrowsOf[1].map(\.slot) == d.arrowsOf[0].prefix(3).map(\.slot))
        #expect(d.svg.components(separatedBy: "class=\"edge ov ovs").count - 1 == 6)
        #expect(d.style(1, scope: ".d1").contains(".d1 .ovs0 path{stroke:\(TopologyGraph.expectedColor)}"))
        #expect(d.style(0, scope: ".d0").contains("stroke-dasharray"))
    }

    /// The report puts failures first, says how many failed where it cannot be missed, and draws a failed check's
    /// expected path beside the one taken.
    @Test func htmlListsFailuresFirstAndDrawsTheExpectedPath() throws {
        let t = try Topology.load(path: Self.root.appendingPathComponent("Labs/campus.topo").path)
        func result(_ name: String, passed: Bool) -> CheckResult {
            CheckResult(name: name, from: "h2", connect: "192.0.2.10:443", line: 1, passed: passed,
                        failures: passed ? [] : ["path: expected h2 → gw → r1 → r2 → dc, engine h2 → gw2 → r2 → dc"],
                        expected: ["path": "h2 → gw → r1 → r2 → dc"], engine: nil, kernel: nil, differences: [], notes: [],
                        pcap: nil, seconds: 0)
        }
        let run = CheckRun(lab: "campus", file: "campus.topo", started: Date(), seconds: 1,
                           results: [result("first passes", passed: true), result("second fails", passed: false)])
        let h = Reports.html(run, topology: t)
        #expect(h.contains("<div class=\"summary bad\">✘ 1 of 2 checks failed</div>"))
        let failed = try #require(h.range(of: "second fails")), passed = try #require(h.range(of: "first passes"))
        #expect(failed.lowerBound < passed.lowerBound)
        #expect(h.contains("<figcaption>expected</figcaption>") && h.contains("<figcaption>taken (engine)</figcaption>"))
        #expect(!h.contains("no drawing"))
    }
}
