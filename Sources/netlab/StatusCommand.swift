import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Labs that are up, their nodes, and drift from the file.")
        @Argument(help: "A lab name or its topology file, as for `down` (default: every lab that is up).") var lab: LabTarget?
        @Flag(name: [.short, .long], help: "List every namespace and every drift line (a large lab prints a summary otherwise).") var details = false
        @OptionGroup var output: JSONOutput

        /// Above this many namespaces or drift lines, the text is a summary unless --details.
        static let summaryAbove = 20

        func run() throws {
            let out = try output.prepare()
            try Terminal.requireRoot("status")
            let labs = try lab.map { [try labName($0)] } ?? Journal.labs()   // a name was checked when parsed
            var statuses: [LabStatus] = []
            var failed = false
            for l in labs {
                if lab != nil, !((try? Journal.path(lab: l)).map { FileManager.default.fileExists(atPath: $0) } ?? false) {
                    Terminal.notUp(l)
                    throw ExitStatus.badInput
                }
                // One lab's unreadable journal does not hide the others.
                do { statuses.append(try LabController.status(lab: l)) } catch {
                    Terminal.error("\(l): \(error)")
                    failed = true
                }
            }

            if lab != nil && statuses.isEmpty { throw ExitStatus.failed }
            try emitJSON(lab == nil ? AnyEncodable(statuses) : AnyEncodable(statuses.first!), to: out, dates: .iso8601)
            if out != .standardOutput {
                if statuses.isEmpty { print("no labs are up") }
                for s in statuses {
                    print("\(s.lab): \(s.state)\(s.state == "up" ? "" : " (at \(s.phase))")  \(s.file)")
                    let missing = s.namespaces.filter { !$0.exists }
                    if details || s.namespaces.count <= Self.summaryAbove {
                        for ns in s.namespaces {
                            print("  \(ns.exists ? "✓" : "✗") \(ns.name)\(ns.node == nil ? "  (LAN segment)" : "")")
                        }
                    } else {
                        print("  \(missing.isEmpty ? "✓" : "✗") \(s.namespaces.count - missing.count) of \(count(s.namespaces.count, "namespace")) exist (--details lists them)")
                        for ns in missing.prefix(Self.summaryAbove) { print("  ✗ \(ns.name)") }
                    }
                    if let n = s.note { print("  note: \(n)") }
                    if !s.changes.isEmpty {
                        print("  changes since up (\(s.changes.count)): drift is against the file plus these")
                        for c in s.changes { print("    \(c)") }
                    }
                    if s.drift.isEmpty { print("  no drift: the live state matches the file") } else {
                        print("  drift (\(s.drift.count)):")
                        for d in details ? s.drift[...] : s.drift.prefix(Self.summaryAbove) { print("    \(d)") }
                        if !details && s.drift.count > Self.summaryAbove {
                            print("    ... and \(s.drift.count - Self.summaryAbove) more (--details, or --json, lists them all)")
                        }
                    }
                }
            }
            if statuses.contains(where: { !$0.drift.isEmpty || $0.state != "up" }) { throw ExitStatus.failed }
            if failed { throw ExitStatus.failed }
        }
    }
}
