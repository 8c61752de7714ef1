import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Build a lab from a topology file.")
        @Argument(help: "The topology file (.topo).") var file: String
        @Flag(help: "Print how long each phase took.") var timings = false
        @OptionGroup var output: JSONOutput

        /// `netlab up --json`.
        struct Report: Encodable { var lab: String; var nodes, links, addresses, routes, rules: Int; var seconds: Double }

        func run() throws {
            let out = try output.prepare()
            let topology = try Terminal.load(file)
            try Terminal.requireRoot("up")
            Interrupts.trap()   // Ctrl-C part-way rolls back instead of leaving half a lab
            var phaseStart = Date(), phase = ""
            var spent: [(String, Double)] = []
            let progress: LabController.Progress = { p, done, total in
                if p != phase {
                    if !phase.isEmpty { spent.append((phase, Date().timeIntervalSince(phaseStart))) }
                    phase = p
                    phaseStart = Date()
                }
                Terminal.progress(p, done, total)
            }
            do {
                let s = try LabController.up(topology, progress: progress, waiting: Terminal.waiting(topology.lab))
                if !phase.isEmpty { spent.append((phase, Date().timeIntervalSince(phaseStart))) }
                if timings {
                    for (p, t) in spent {
                        Terminal.note("  " + p.padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%8.1f ms", t * 1000))
                    }
                }
                Terminal.endProgress()
                if out != .standardOutput {
                    print("\(topology.lab) up: \(count(s.nodes, "node")), \(count(s.links, "link")), \(count(s.addresses, "address", "addresses")), "
                          + "\(count(s.routes, "route")), \(count(s.rules, "rule")) in \(String(format: "%.2f", s.seconds)) s")
                }
                try emitJSON(Report(lab: topology.lab, nodes: s.nodes, links: s.links, addresses: s.addresses, routes: s.routes,
                                    rules: s.rules, seconds: s.seconds), to: out)
            } catch let e as LabError {
                Terminal.endProgress()
                Terminal.error(e.description)
                if case .alreadyUp = e { throw ExitStatus.failed }
                if case .namespaceTaken = e { throw ExitStatus.failed }
                if case .nameClash = e { throw ExitStatus.failed }
                if case .journal = e { throw ExitStatus.failed }
                Terminal.note("nothing was left behind: every namespace made by this `up` was removed")
                if case .interrupted(let sig) = e { throw ExitCode(128 + sig) }
                throw ExitStatus.failed
            }
        }
    }
}
