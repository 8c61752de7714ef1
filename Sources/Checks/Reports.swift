import Driver
import Oracle
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
        if !s.replyPath.isEmpty { parts.append("reply " + s.replyPath.joined(separator: " → ")) }
        return parts.joined(separator: ", ")
    }

    /// JUnit XML: one testsuite per lab, one testcase per check; a failure lists expected, engine and kernel values.
    public static func junit(_ run: CheckRun) -> String {
        // A swept check is a testcase per cell; each experiment a suite of its own (its steps), counted in the total.
        let cases = run.results.flatMap { r in r.sweep.map { $0.cells.map(\.result) } ?? [r] }
        let caseFailures = cases.filter { !$0.passed }.count
        let steps = run.experiments.reduce(0) { $0 + $1.steps.count }, stepFailures = run.experiments.reduce(0) { $0 + $1.failed }
        var x = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                 "<testsuites name=\"netlab\" tests=\"\(cases.count + steps)\" failures=\"\(caseFailures + stepFailures)\" time=\"\(String(format: "%.3f", run.seconds + run.experiments.reduce(0) { $0 + $1.seconds }))\">",
                 "  <testsuite name=\"\(escapeXML(run.lab))\" tests=\"\(cases.count)\" failures=\"\(caseFailures)\" errors=\"0\" time=\"\(String(format: "%.3f", run.seconds))\" timestamp=\"\(ISO8601DateFormatter().string(from: run.started))\">"]
        for r in cases {
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
        x.append("  </testsuite>")
        for e in run.experiments { x += junit(e, run: run) }
        x.append("</testsuites>")
        return x.joined(separator: "\n") + "\n"
    }

    /// An experiment as a JUnit test suite: one testcase per step, in order (`NN kind: text`), a failure with the
    /// check's or the change's words, `<skipped/>` for steps after a failure that stopped it; each step's
    /// system-out gives its time since the experiment started and, for wait-until, the time to convergence.
    static func junit(_ e: ExperimentResult, run: CheckRun) -> [String] {
        let f = { (d: Double) in String(format: "%.3f", d) }
        var x = ["  <testsuite name=\"\(escapeXML(run.lab)): experiment \(escapeXML(e.name))\" tests=\"\(e.steps.count)\" failures=\"\(e.failed)\" errors=\"0\" skipped=\"\(e.skipped)\" time=\"\(f(e.seconds))\" file=\"\(escapeXML(run.file))\" line=\"\(e.line)\">"]
        for s in e.steps {
            let name = String(format: "%02d ", s.index) + s.text
            x.append("    <testcase classname=\"netlab.\(escapeXML(run.lab)).experiment.\(escapeXML(CheckRunner.slug(e.name)))\" name=\"\(escapeXML(name))\" file=\"\(escapeXML(run.file))\" line=\"\(s.line)\" time=\"\(f(s.seconds))\">")
            switch s.status {
            case "skipped": x.append("      <skipped message=\"an earlier step failed\"/>")
            case "failed":
                var body = ["step \(s.index) of experiment \(e.name): \(s.text) (\(run.file):\(s.line))"]
                body += s.failures.map { "failed: \($0)" }
                if let c = s.check { body += ["engine: " + sideLine(c.engine), "kernel: " + sideLine(c.kernel)] }
                x.append("      <failure message=\"\(escapeXML(s.failures.first ?? "failed"))\" type=\"StepFailed\">\(escapeXML(body.joined(separator: "\n")))</failure>")
            default: break
            }
            if s.status != "skipped" { x.append("      <system-out>\(escapeXML(stepDetail(s)))</system-out>") }
            x.append("    </testcase>")
        }
        x.append("  </testsuite>")
        return x
    }

    /// `, experiments 2/3 passed` when the run had experiments.
    static func experimentsSummary(_ run: CheckRun) -> String {
        run.experiments.isEmpty ? "" : ", experiments \(run.experiments.filter(\.passed).count)/\(run.experiments.count) passed"
    }

    /// A step's timing and outcome in a few lines.
    static func stepDetail(_ s: StepResult) -> String {
        var out = [String(format: "started at +%.3f s, took %.3f s", s.started, s.seconds)]
        if let c = s.converged { out.append(String(format: "converged after %.3f s (%d attempt%@)", c, s.attempts ?? 1, (s.attempts ?? 1) == 1 ? "" : "s")) }
        if let ops = s.operations { out += ops }
        if let c = s.check { out += ["engine: " + sideLine(c.engine), "kernel: " + sideLine(c.kernel)] }
        return out.joined(separator: "\n")
    }

    static func stepOutcome(_ s: StepResult) -> String {
        var parts: [String] = []
        if let c = s.converged { parts.append(String(format: "converged after %.0f ms (%d attempt%@)", c * 1000, s.attempts ?? 1, (s.attempts ?? 1) == 1 ? "" : "s")) }
        if let c = s.check { parts.append(sideLine(c.engine)); if c.kernel != nil { parts.append(c.differences.isEmpty ? "kernel agrees" : "kernel differs") } }
        if let ops = s.operations { parts += ops }
        parts += s.failures
        return parts.joined(separator: "; ")
    }

    /// One Markdown table cell or list item: control characters visible, `|` escaped.
    static func md(_ s: String) -> String { visible(s).replacingOccurrences(of: "|", with: "\\|") }

    /// A sweep as a matrix: with one dimension, a row per value; with more, a row per combination of all but the
    /// last dimension and a column per value of the last. Cells in the sweep's row-major order.
    public struct Matrix {
        public var rowTitle: String
        public var rows: [String]
        public var columns: [String]
        /// rows × columns indices into the sweep's cells.
        public var cell: [[Int]]
    }

    public static func matrix(_ s: SweepReport) -> Matrix {
        guard s.dimensions.count > 1, let last = s.values.last else {
            return Matrix(rowTitle: s.dimensions.first ?? "", rows: s.cells.map { $0.values.joined(separator: " ") }, columns: ["result"],
                          cell: s.cells.indices.map { [$0] })
        }
        let width = last.count
        let rows = stride(from: 0, to: s.cells.count, by: width).map { s.cells[$0].values.dropLast().joined(separator: " · ") }
        return Matrix(rowTitle: s.dimensions.dropLast().joined(separator: " · "), rows: rows,
                      columns: last.map { "\(s.dimensions.last!)=\($0)" },
                      cell: rows.indices.map { r in (0..<width).map { r * width + $0 } })
    }

    /// A cell in a few words: source, device and next hop when established, else the outcome.
    static func cellText(_ r: CheckResult) -> String {
        guard let e = r.engine else { return r.failures.first ?? "not run" }
        var t = e.result == "established" ? [e.source ?? "-", e.dev ?? "-", e.via.map { "via \($0)" } ?? ""].filter { !$0.isEmpty }.joined(separator: " ")
            : (e.errno.map { "\(e.result) (\($0))" } ?? e.result)
        if r.kernel != nil && !r.differences.isEmpty { t += " ≠ kernel" }
        return t
    }

    /// A Markdown summary (what `$GITHUB_STEP_SUMMARY` shows).
    public static func markdown(_ run: CheckRun) -> String {
        var m = ["## netlab check: \(run.lab) — \(run.passed)/\(run.results.count) passed" + experimentsSummary(run), "",
                 "`\(run.file)`, \(String(format: "%.1f", run.seconds)) s", "",
                 "| | check | from | connect | engine | source | dev | via | path | kernel |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in run.results {
            let e = r.engine
            let k = r.sweep != nil ? "per cell" : r.kernel.map { $0.result == e?.result && r.differences.isEmpty ? "agrees" : "differs" } ?? "skipped"
            let outcome: String = r.sweep.map { "sweep: \($0.passed)/\($0.cells.count) cells" } ?? e.map { s in s.errno.map { "\(s.result) (\($0))" } ?? s.result } ?? "-"
            let path: String = md(e?.path.joined(separator: " → ") ?? "")
            let cells: [String] = [r.passed ? "✅" : "❌", md(r.name), r.from, r.connect, outcome, e?.source ?? "", e?.dev ?? "",
                                   e?.via ?? "", path, k]
            m.append("| " + cells.joined(separator: " | ") + " |")
        }
        for r in run.results {
            guard let sw = r.sweep else { continue }
            let mx = matrix(sw)
            m += ["", "### Sweep: \(md(r.name)) — \(sw.passed)/\(sw.cells.count) cells passed", "",
                  "| \(md(mx.rowTitle)) | " + mx.columns.map(md).joined(separator: " | ") + " |",
                  "|---|" + String(repeating: "---|", count: mx.columns.count)]
            for (i, row) in mx.rows.enumerated() {
                let cells = mx.cell[i].map { k -> String in
                    let c = sw.cells[k].result
                    return (c.passed ? "" : "❌ ") + md(cellText(c))
                }
                m.append("| \(md(row)) | " + cells.joined(separator: " | ") + " |")
            }
        }
        let failed = run.results.filter { !$0.passed }
        if !failed.isEmpty {
            m += ["", "### Failures"]
            for r in failed {
                m += ["", "**\(md(r.name))** (`\(run.file):\(r.line)`)", ""]
                m += r.failures.map { "- \(md($0))" }
                m.append("- expected: " + r.expected.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
                if r.sweep == nil { m += ["- engine: " + md(sideLine(r.engine)), "- kernel: " + md(sideLine(r.kernel))] }
            }
        }
        for e in run.experiments {
            m += ["", "### Experiment: \(md(e.name)) — \(e.passed ? "passed" : "failed") (\(String(format: "%.2f", e.seconds)) s, lab \(e.lab))", "",
                  "| | # | step | at | took | outcome |", "|---|---|---|---|---|---|"]
            for s in e.steps {
                let mark = s.status == "passed" ? "✅" : s.status == "failed" ? "❌" : "⏭"
                let at = s.status == "skipped" ? "" : String(format: "+%.2f s", s.started)
                let took = s.status == "skipped" ? "skipped" : String(format: "%.0f ms", s.seconds * 1000)
                m.append("| \(mark) | \(s.index) | \(md(s.text)) | \(at) | \(took) | \(md(stepOutcome(s))) |")
            }
        }
        return m.joined(separator: "\n") + "\n"
    }

    /// A sweep's section: the matrix (each cell linking to its own details: paths drawn, expectations, trace).
    static func sweepHTML(_ sw: SweepReport, _ r: CheckResult, index i: Int, drawing: (Int) -> String) -> String {
        let mx = matrix(sw)
        var h = ["<section id=\"c\(i)\"><h2 class=\"\(r.passed ? "pass" : "fail")\">\(r.passed ? "✔" : "✘") \(escapeXML(r.name))</h2>",
                 "<p>sweep of \(escapeXML(sw.dimensions.joined(separator: " × "))): <b>\(sw.passed)/\(sw.cells.count)</b> cells passed (line \(r.line)); each cell: source, device and next hop, or the outcome; ✘ marks a cell that failed, ≠ kernel one where the kernel did otherwise</p>",
                 "<table class=\"matrix\"><tr><th>\(escapeXML(mx.rowTitle))</th>" + mx.columns.map { "<th>\(escapeXML($0))</th>" }.joined() + "</tr>"]
        for (ri, row) in mx.rows.enumerated() {
            var tr = "<tr><th>\(escapeXML(row))</th>"
            for k in mx.cell[ri] {
                let c = sw.cells[k].result
                tr += "<td class=\"\(c.passed ? "pass" : "fail cellfail")\"><a href=\"#c\(i)-\(k)\">\(c.passed ? "" : "✘ ")\(escapeXML(cellText(c)))</a></td>"
            }
            h.append(tr + "</tr>")
        }
        h.append("</table>")
        for (k, cell) in sw.cells.enumerated() {
            let c = cell.result
            h.append("<details id=\"c\(i)-\(k)\"\(c.passed ? "" : " open")><summary class=\"\(c.passed ? "pass" : "fail")\">\(c.passed ? "✔" : "✘") \(escapeXML(visible(cell.values.joined(separator: " · "))))</summary>")
            h.append(drawing(k))
            if !c.failures.isEmpty { h.append("<ul>" + c.failures.map { "<li class=\"fail\">\(escapeXML($0))</li>" }.joined() + "</ul>") }
            h.append("<pre>expected: \(escapeXML(c.expected.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")))\nengine:   \(escapeXML(sideLine(c.engine)))\nkernel:   \(escapeXML(sideLine(c.kernel)))</pre>")
            if let t = c.engine?.trace, !t.isEmpty { h.append("<details><summary>engine trace</summary><pre>\(escapeXML(t.joined(separator: "\n")))</pre></details>") }
            h.append("</details>")
        }
        h.append("</section>")
        return h.joined(separator: "\n")
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
        var cellDrawings: [Int: [Int]] = [:]   // a sweep's cells, each drawn in the same layout
        for (i, r) in ordered {
            if let sw = r.sweep {
                cellDrawings[i] = sw.cells.map { cell in overlays.append(takenOverlays(g, cell.result.engine)); return overlays.count - 1 }
                continue
            }
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
                 "<style>body{font-family:sans-serif;margin:2em;max-width:1700px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.pass{color:#080}.fail{color:#b00}section{border-top:1px solid #ddd;margin-top:1.5em}pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}.legend span{margin-right:2em}svg{max-width:100%;height:auto}.summary{font-size:1.5em;font-weight:bold;padding:.5em .8em;border-radius:6px;margin:.5em 0 1em}.summary.ok{background:#e6f4e6;color:#1a5e1a;border:2px solid #2ca02c}.summary.bad{background:#fdecea;color:#8b0000;border:2px solid #d62728}.pair{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}.pair figure{margin:0;flex:1 1 600px}figcaption{font-weight:bold;font-size:13px;margin-bottom:4px}.nodraw{color:#777;font-style:italic}tr.failed td{background:#fff5f5}.matrix td a{color:inherit;text-decoration:none}.matrix td{font-family:monospace}.cellfail{background:#fdd}.nowrap{white-space:nowrap}\(drawingStyles)</style>",
                 "</head><body>",
                 "<h1>netlab check: \(escapeXML(run.lab))</h1>",
                 "<div class=\"summary \(run.failed == 0 ? "ok" : "bad")\">\(run.failed == 0 ? "✔" : "✘") \(summary)</div>",
                 "<p>\(escapeXML(run.file)) — \(run.passed)/\(run.results.count) passed in \(String(format: "%.1f", run.seconds)) s\(escapeXML(experimentsSummary(run)))</p>",
                 topologyDrawing,
                 "<p class=\"legend\"><span style=\"color:\(TopologyGraph.synColor)\">━ SYN path</span><span style=\"color:\(TopologyGraph.replyColor)\">╍ reply path</span><span style=\"color:\(TopologyGraph.expectedColor)\">━ expected path (failed checks)</span></p>",
                 "<table><tr><th></th><th>check</th><th>from</th><th>connect</th><th>engine</th><th>kernel</th></tr>"]
        for (i, r) in ordered {
            h.append("<tr\(r.passed ? "" : " class=\"failed\"")><td class=\"\(r.passed ? "pass" : "fail")\">\(r.passed ? "✔" : "✘")</td><td><a href=\"#c\(i)\">\(escapeXML(visible(r.name)))</a></td><td>\(escapeXML(r.from))</td><td>\(r.connect)</td><td>\(escapeXML(r.sweep.map { "sweep: \($0.passed)/\($0.cells.count) cells" } ?? sideLine(r.engine)))</td><td>\(escapeXML(r.sweep != nil ? "per cell" : r.kernel == nil ? "skipped" : (r.differences.isEmpty ? "agrees" : "differs")))</td></tr>")
        }
        h.append("</table>")
        for (i, r) in ordered {
            if let sw = r.sweep {
                let cells = cellDrawings[i] ?? []
                h.append(sweepHTML(sw, r, index: i, drawing: { k in k < cells.count ? drawing(cells[k]) : "" }))
                continue
            }
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
        for (i, e) in run.experiments.enumerated() {
            h.append("<section id=\"e\(i)\"><h2 class=\"\(e.passed ? "pass" : "fail")\">\(e.passed ? "✔" : "✘") experiment: \(escapeXML(e.name))</h2>")
            h.append("<p>line \(e.line), \(String(format: "%.2f", e.seconds)) s, lab \(escapeXML(e.lab))\(e.continueOnFailure ? ", continue-on-failure" : "")</p>")
            h.append("<table><tr><th></th><th>#</th><th>step</th><th>at</th><th>took</th><th>outcome</th></tr>")
            for s in e.steps {
                let cls = s.status == "passed" ? "pass" : s.status == "failed" ? "fail" : ""
                let mark = s.status == "passed" ? "✔" : s.status == "failed" ? "✘" : "–"
                let at = s.status == "skipped" ? "" : String(format: "+%.3f s", s.started)
                let took = s.status == "skipped" ? "skipped" : String(format: "%.1f ms", s.seconds * 1000)
                h.append("<tr><td class=\"\(cls)\">\(mark)</td><td>\(s.index)</td><td>\(escapeXML(s.text))</td><td class=\"nowrap\">\(at)</td><td class=\"nowrap\">\(took)</td><td>\(escapeXML(stepOutcome(s)))</td></tr>")
            }
            h.append("</table></section>")
        }
        h.append("</body></html>")
        return h.joined(separator: "\n") + "\n"
    }

    /// The SYN and reply paths the engine's packets took, along the interfaces the capture saw (node names when
    /// there are no hops).
    static func takenOverlays(_ g: TopologyGraph, _ side: SideReport?) -> [TopologyGraph.Overlay] {
        guard let side else { return [] }
        let syn = side.hops.isEmpty ? g.steps(nodes: side.path) : g.steps(hops: side.hops)
        let reply = side.replyHops.isEmpty ? g.steps(nodes: side.replyPath) : g.steps(hops: side.replyHops)
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
