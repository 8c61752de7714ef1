import ArgumentParser
import Foundation
import NetLab

/// The experiments part of `netlab check`: which checks and experiments run, and running each experiment from a
/// lab in the state its file declares.
extension Netlab.CheckCommand {
    /// The checks and experiments this run makes: all of both by default; `--only` narrows the checks and
    /// `--experiment` names one experiment, each leaving out the other kind unless both are given.
    func selection(_ topology: Topology) throws -> ([Check], [Experiment]) {
        let checks = (experiment != nil && only == nil) ? [] : topology.checks.filter { c in only.map { c.name.contains($0) } ?? true }
        let experiments = (only != nil && experiment == nil) ? [] : topology.experiments.filter { e in experiment.map { e.name == $0 } ?? true }
        if let name = experiment, experiments.isEmpty {
            let names = topology.experiments.map(\.name)
            Terminal.error("\(file): no experiment is named \"\(visible(name))\"")
            Terminal.note("   hint: " + (nearest(name, in: names).map { "did you mean \"\($0)\"?" }
                ?? (names.isEmpty ? "declare experiments under `experiments:` (docs/topology.md#experiments)" : "its experiments: " + names.joined(separator: ", "))))
            throw ExitStatus.badInput
        }
        if checks.isEmpty && experiments.isEmpty {
            let nothing = topology.checks.isEmpty && topology.experiments.isEmpty
            Terminal.error("\(file): \(nothing ? "no `checks:` or `experiments:` to run" : "no check name contains \"\(visible(only ?? ""))\"")")
            Terminal.note("   hint: declare checks under `checks:` (docs/topology.md#checks)")
            throw ExitStatus.badInput
        }
        return (checks, experiments)
    }

    /// Each experiment starts from the state the file declares. The lab is rebuilt (down, then up) before one
    /// when anything changed it since it came up — a recorded `set`, or a lab that came up from another version of
    /// the file — rather than restored by undoing the changes: a rebuild also clears what no journal records (the
    /// routes the kernel flushed, neighbour entries, TCP metrics, sockets in TIME_WAIT), which could make an
    /// experiment's outcome depend on the one before it. A lab nothing changed is used as it is.
    func runExperiments(_ experiments: [Experiment], topology: Topology, session: inout LabSession) throws -> [ExperimentResult] {
        var out: [ExperimentResult] = []
        for e in experiments {
            if Interrupts.signal != nil { break }
            var how = "as built"
            let j = try Journal.read(lab: topology.lab)
            if j == nil || !(j!.changes ?? []).isEmpty || j!.source != topology.source || j!.state != .up {
                do {
                    session = try session.rebuilt(from: topology) { p, d, t in Terminal.progress("rebuild: \(p)", d, t) }
                    Terminal.endProgress()
                    how = String(format: "rebuilt in %.2f s", session.upSummary!.seconds)
                } catch let error as LabError {
                    Terminal.endProgress()
                    Terminal.error("rebuilding \(topology.lab) for experiment \"\(e.name)\": \(error.description)")
                    throw ExitStatus.failed
                }
            }
            Terminal.say("experiment \(visible(e.name)) (lab \(how))")
            let width = e.steps.map(\.text.count).max() ?? 10
            let r = ExperimentRunner.run(e, topology: topology, session: session, lab: how, progress: { step, r in
                guard let r else { Terminal.progress("  \(step.text)", 0, 1); return }
                Terminal.endProgress()
                let mark = r.status == "passed" ? "✔" : "✘"
                var line = String(format: "  %@ %2d  %@  +%.2f s  %.0f ms", mark, r.index, visible(r.text).padding(toLength: width, withPad: " ", startingAt: 0), r.started, r.seconds * 1000)
                if let c = r.converged { line += String(format: "  converged after %.0f ms (%d attempt%@)", c * 1000, r.attempts ?? 1, (r.attempts ?? 1) == 1 ? "" : "s") }
                Terminal.say(line)
                for f in r.failures { Terminal.say("        \(visible(f))") }
            }, interrupted: { Interrupts.signal != nil })
            for s in r.steps where s.status == "skipped" { Terminal.say("  - \(String(format: "%2d", s.index))  \(visible(s.text))  skipped") }
            Terminal.say("experiment \(visible(e.name)): \(r.passed ? "passed" : "FAILED") (\(String(format: "%.2f", r.seconds)) s)")
            out.append(r)
        }
        return out
    }
}
