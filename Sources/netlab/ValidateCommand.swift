import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check topology files without touching the system (no root needed).",
            discussion: """
                Errors make a file invalid; warnings point at what is probably not what was meant (link ends in different \
                subnets, a gateway no neighbour has, a check without expect, a source route through a node that drops it, \
                a listener no check connects to). Exit status: 0 every file is valid (warnings or not), 2 one is not (or \
                cannot be read, or has warnings with --strict). - reads standard input.
                """)
        @Argument(help: "Topology files.") var files: [String]
        @Flag(help: "Treat warnings as errors (exit 2).") var strict = false
        @OptionGroup var output: JSONOutput

        /// `netlab validate --json`: one entry per file.
        struct Report: Encodable {
            var file: String
            var valid: Bool
            var lab: String?
            var nodes, links, addresses, routes, rules: Int?
            var errors: [Problem]
            var warnings: [Problem]
            struct Problem: Encodable {
                var line, column: Int; var message: String; var hint: String?
                init(line: Int, column: Int, message: String, hint: String?) { self.line = line; self.column = column; self.message = message; self.hint = hint }
                init(_ d: Diagnostic) { self.init(line: d.location.line, column: d.location.column, message: d.message, hint: d.hint) }
            }
        }

        func run() throws {
            let out = try output.prepare()
            var bad = false
            var reports: [Report] = []
            for f in files {
                do {
                    let name = f == "-" ? "<stdin>" : f
                    let t = try Topology.parse(try InputFile.readText(f), file: name)
                    let p = LabPlan(t).counts
                    let warnings = TopologyWarnings.of(t)
                    if strict, !warnings.isEmpty {
                        let asErrors = warnings.map { var d = $0; d.severity = .error; return d }
                        throw TopologyError(file: name, source: t.source, diagnostics: asErrors)
                    }
                    reports.append(Report(file: f, valid: true, lab: t.lab, nodes: p.nodes, links: p.links, addresses: p.addresses,
                                          routes: p.routes, rules: p.rules, errors: [], warnings: warnings.map(Report.Problem.init)))
                    if out != .standardOutput {
                        if !warnings.isEmpty {
                            let w = TopologyError(file: name, source: t.source, diagnostics: warnings)
                            FileHandle.standardError.write((w.rendered(color: Terminal.color) + "\n").data(using: .utf8)!)
                        }
                        print("\(f): ok (lab \(t.lab): \(count(p.nodes, "node")), \(count(p.links, "link")), "
                              + "\(count(p.addresses, "address", "addresses")), \(count(p.routes, "route")), \(count(p.rules, "rule")))"
                              + (warnings.isEmpty ? "" : ", \(count(warnings.count, "warning"))"))
                    }
                } catch let e as TopologyError {
                    reports.append(Report(file: f, valid: false, errors: e.diagnostics.map(Report.Problem.init), warnings: []))
                    if out != .standardOutput { FileHandle.standardError.write((e.rendered(color: Terminal.color) + "\n").data(using: .utf8)!) }
                    bad = true
                } catch let e as FileProblem {
                    reports.append(Report(file: f, valid: false, errors: [.init(line: e.line ?? 0, column: e.column ?? 0, message: e.problem, hint: e.hint)], warnings: []))
                    if out != .standardOutput { Terminal.fileProblem(e) }
                    bad = true
                }
            }
            try emitJSON(reports, to: out)
            if bad { throw ExitStatus.badInput }
        }
    }
}
