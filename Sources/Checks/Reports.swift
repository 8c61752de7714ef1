import Driver
import Foundation
import Topology

/// The reports `netlab check` writes: JUnit XML, JSON, Markdown and a self-contained HTML page.
public enum Reports {
    public static func json(_ run: CheckRun) throws -> String { try jsonText(run, dates: .iso8601) }

    /// Every JSON netlab writes (reports and each command's `--json`): indented, keys sorted, slashes as they are.
    public static func jsonText(_ value: some Encodable, dates: JSONEncoder.DateEncodingStrategy = .deferredToDate) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        enc.dateEncodingStrategy = dates
        return String(decoding: try enc.encode(value), as: UTF8.self)
    }

    static func sideLine(_ s: SideReport?) -> String {
        guard let s else { return "-" }
        var parts = [s.errno.map { "\(s.result) (\($0))" } ?? s.result]
        if let src = s.source { parts.append("source \(src)") }
        if let d = s.dev { parts.append("dev \(d)") }
        if let n = s.via { parts.append("via \(n)") }
        if !s.path.isEmpty { parts.append("path " + s.path.joined(separator: " → ")) }
        if !s.reply_path.isEmpty { parts.append("reply " + s.reply_path.joined(separator: " → ")) }
        return parts.joined(separator: ", ")
    }

    /// JUnit XML: one testsuite per lab, one testcase per check; a failure lists expected, engine and kernel values.
    public static func junit(_ run: CheckRun) -> String {
        var x = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                 "<testsuites name=\"netlab\" tests=\"\(run.results.count)\" failures=\"\(run.failed)\" time=\"\(String(format: "%.3f", run.seconds))\">",
                 "  <testsuite name=\"\(escapeXML(run.lab))\" tests=\"\(run.results.count)\" failures=\"\(run.failed)\" errors=\"0\" time=\"\(String(format: "%.3f", run.seconds))\" timestamp=\"\(ISO8601DateFormatter().string(from: run.started))\">"]
        for r in run.results {
            x.append("    <testcase classname=\"netlab.\(escapeXML(run.lab))\" name=\"\(escapeXML(visible(r.name)))\" file=\"\(escapeXML(run.file))\" line=\"\(r.line)\" time=\"\(String(format: "%.3f", r.seconds))\">")
            if !r.passed {
                var body = ["check: \(visible(r.name)) (from \(r.from) to \(r.connect), \(run.file):\(r.line))"]
                body += r.failures.map { "failed: \($0)" }
                body.append("expected: " + r.expected.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
                body.append("engine: " + sideLine(r.engine))
                body.append("kernel: " + sideLine(r.kernel))
                x.append("      <failure message=\"\(escapeXML(r.failures.first ?? "failed"))\" type=\"CheckFailed\">\(escapeXML(body.joined(separator: "\n")))</failure>")
            }
            let out = ([sideLine(r.engine).isEmpty ? nil : "engine: " + sideLine(r.engine), r.kernel == nil ? nil : "kernel: " + sideLine(r.kernel)]
                       .compactMap { $0 } + r.notes).joined(separator: "\n")
            x.append("      <system-out>\(escapeXML(out))</system-out>")
            x.append("    </testcase>")
        }
        x += ["  </testsuite>", "</testsuites>"]
        return x.joined(separator: "\n") + "\n"
    }

    /// One Markdown table cell or list item: control characters visible, `|` escaped.
    static func md(_ s: String) -> String { visible(s).replacingOccurrences(of: "|", with: "\\|") }

    /// A Markdown summary (what `$GITHUB_STEP_SUMMARY` shows).
    public static func markdown(_ run: CheckRun) -> String {
        var m = ["## netlab check: \(run.lab) — \(run.passed)/\(run.results.count) passed", "",
                 "`\(run.file)`, \(String(format: "%.1f", run.seconds)) s", "",
                 "| | check | from | connect | engine | source | dev | via | path | kernel |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in run.results {
            let e = r.engine
            let k = r.kernel.map { $0.result == e?.result && r.differences.isEmpty ? "agrees" : "differs" } ?? "skipped"
            let outcome: String = e.map { s in s.errno.map { "\(s.result) (\($0))" } ?? s.result } ?? "-"
            let path: String = md(e?.path.joined(separator: " → ") ?? "")
            let cells: [String] = [r.passed ? "✅" : "❌", md(r.name), r.from, r.connect, outcome, e?.source ?? "", e?.dev ?? "",
                                   e?.via ?? "", path, k]
            m.append("| " + cells.joined(separator: " | ") + " |")
        }
        let failed = run.results.filter { !$0.passed }
        if !failed.isEmpty {
            m += ["", "### Failures"]
            for r in failed {
                m += ["", "**\(md(r.name))** (`\(run.file):\(r.line)`)", ""]
                m += r.failures.map { "- \(md($0))" }
                m += ["- expected: " + r.expected.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "),
                      "- engine: " + md(sideLine(r.engine)), "- kernel: " + md(sideLine(r.kernel))]
            }
        }
        return m.joined(separator: "\n") + "\n"
    }

    /// One HTML page with no external assets: a summary line that stands out, the topology (laid out by Graphviz,
    /// addresses shown), the checks with failures first, and each check's paths drawn on the topology — for a failed
    /// check with an expected path, the expected path beside the one taken.
    public static func html(_ run: CheckRun, topology: Topology) -> String {
        let g = TopologyGraph(topology)
        let ordered = run.results.enumerated().sorted { ($0.element.passed ? 1 : 0, $0.offset) < ($1.element.passed ? 1 : 0, $1.offset) }
        // Every drawing of a check: the paths taken, and for a failed check with expected paths those beside them.
        // One layout for all of them (TopologyGraph.svg(drawings:)): the boxes stay put from check to check.
        var overlays: [[TopologyGraph.Overlay]] = [], drawingsOf: [Int: (expected: Int?, taken: Int)] = [:]
        for (i, r) in ordered {
            let expected = expectedOverlays(g, r)
            var e: Int?
            if !r.passed, !expected.isEmpty { e = overlays.count; overlays.append(expected) }
            drawingsOf[i] = (e, overlays.count); overlays.append(takenOverlays(g, r.engine))
        }
        let drawings: Result<TopologyGraph.Drawings, Error> = Result { try g.svg(drawings: overlays) }
        func noDrawing(_ error: Error) -> String { "<p class=\"nodraw\">no drawing: \(escapeXML(String(describing: error)))</p>" }
        func drawing(_ k: Int) -> String {
            switch drawings {
            case .success(let d): return "<div class=\"d\(k)\">\(d.svg)</div>"
            case .failure(let e): return noDrawing(e)
            }
        }
        let topologyDrawing: String
        do { topologyDrawing = try TopologyGraph(topology, addresses: true).svg() } catch { topologyDrawing = noDrawing(error) }
        let drawingStyles = (try? drawings.get()).map { d in overlays.indices.map { d.style($0, scope: ".d\($0)") }.joined() } ?? ""
        let summary = run.failed == 0
            ? "all \(run.results.count) checks passed"
            : "\(run.failed) of \(run.results.count) checks failed"
        var h = ["<!doctype html>", "<html><head><meta charset=\"utf-8\"><title>netlab check: \(escapeXML(run.lab)) — \(summary)</title>",
                 "<style>body{font-family:sans-serif;margin:2em;max-width:1700px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.pass{color:#080}.fail{color:#b00}section{border-top:1px solid #ddd;margin-top:1.5em}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}.legend span{margin-right:2em}svg{max-width:100%;height:auto}.summary{font-size:1.5em;font-weight:bold;padding:.5em .8em;border-radius:6px;margin:.5em 0 1em}.summary.ok{background:#e6f4e6;color:#1a5e1a;border:2px solid #2ca02c}.summary.bad{background:#fdecea;color:#8b0000;border:2px solid #d62728}.pair{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}.pair figure{margin:0;flex:1 1 600px}figcaption{font-weight:bold;font-size:13px;margin-bottom:4px}.nodraw{color:#777;font-style:italic}tr.failed td{background:#fff5f5}\(drawingStyles)</style>",
                 "</head><body>",
                 "<h1>netlab check: \(escapeXML(run.lab))</h1>",
                 "<div class=\"summary \(run.failed == 0 ? "ok" : "bad")\">\(run.failed == 0 ? "✔" : "✘") \(summary)</div>",
                 "<p>\(escapeXML(run.file)) — \(run.passed)/\(run.results.count) passed in \(String(format: "%.1f", run.seconds)) s</p>",
                 topologyDrawing,
                 "<p class=\"legend\"><span style=\"color:\(TopologyGraph.synColor)\">━ SYN path</span><span style=\"color:\(TopologyGraph.replyColor)\">╍ reply path</span><span style=\"color:\(TopologyGraph.expectedColor)\">━ expected path (failed checks)</span></p>",
                 "<table><tr><th></th><th>check</th><th>from</th><th>connect</th><th>engine</th><th>kernel</th></tr>"]
        for (i, r) in ordered {
            h.append("<tr\(r.passed ? "" : " class=\"failed\"")><td class=\"\(r.passed ? "pass" : "fail")\">\(r.passed ? "✔" : "✘")</td><td><a href=\"#c\(i)\">\(escapeXML(visible(r.name)))</a></td><td>\(escapeXML(r.from))</td><td>\(r.connect)</td><td>\(escapeXML(sideLine(r.engine)))</td><td>\(escapeXML(r.kernel == nil ? "skipped" : (r.differences.isEmpty ? "agrees" : "differs")))</td></tr>")
        }
        h.append("</table>")
        for (i, r) in ordered {
            h.append("<section id=\"c\(i)\"><h2 class=\"\(r.passed ? "pass" : "fail")\">\(r.passed ? "✔" : "✘") \(escapeXML(visible(r.name)))</h2>")
            h.append("<p>from <b>\(escapeXML(r.from))</b> to \(r.connect) (line \(r.line))</p>")
            if let (e, t) = drawingsOf[i], let e {
                h.append("<div class=\"pair\"><figure><figcaption>expected</figcaption>\(drawing(e))</figure>"
                         + "<figure><figcaption>taken (engine)</figcaption>\(drawing(t))</figure></div>")
            } else if let t = drawingsOf[i]?.taken {
                h.append(drawing(t))
            }
            if !r.failures.isEmpty { h.append("<ul>" + r.failures.map { "<li class=\"fail\">\(escapeXML($0))</li>" }.joined() + "</ul>") }
            h.append("<pre>expected: \(escapeXML(r.expected.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")))\nengine:   \(escapeXML(sideLine(r.engine)))\nkernel:   \(escapeXML(sideLine(r.kernel)))\(r.notes.isEmpty ? "" : "\n" + escapeXML(r.notes.joined(separator: "\n")))</pre>")
            if let t = r.engine?.trace, !t.isEmpty {
                h.append("<details><summary>engine trace</summary><pre>\(escapeXML(t.joined(separator: "\n")))</pre></details>")
            }
            h.append("</section>")
        }
        h.append("</body></html>")
        return h.joined(separator: "\n") + "\n"
    }

    /// The SYN and reply paths the engine's packets took, along the interfaces the capture saw (node names when
    /// there are no hops).
    static func takenOverlays(_ g: TopologyGraph, _ side: SideReport?) -> [TopologyGraph.Overlay] {
        guard let side else { return [] }
        let syn = side.hops.isEmpty ? g.steps(nodes: side.path) : g.steps(hops: side.hops)
        let reply = side.reply_hops.isEmpty ? g.steps(nodes: side.reply_path) : g.steps(hops: side.reply_hops)
        return [TopologyGraph.Overlay(steps: syn, color: TopologyGraph.synColor),
                TopologyGraph.Overlay(steps: reply, color: TopologyGraph.replyColor, dashed: true)].filter { !$0.steps.isEmpty }
    }

    /// The paths the check expected (`expect: path`, `reply-path`), by node names.
    static func expectedOverlays(_ g: TopologyGraph, _ r: CheckResult) -> [TopologyGraph.Overlay] {
        func nodes(_ key: String) -> [String] { r.expected[key].map { $0.components(separatedBy: " → ") } ?? [] }
        return [TopologyGraph.Overlay(steps: g.steps(nodes: nodes("path")), color: TopologyGraph.expectedColor),
                TopologyGraph.Overlay(steps: g.steps(nodes: nodes("reply_path")), color: TopologyGraph.expectedColor, dashed: true)]
            .filter { !$0.steps.isEmpty }
    }
}
