import ArgumentParser
import Foundation
import NetLab

/// `netlab check FILE`: bring the lab up if needed, run every declared check (engine and kernel), write reports,
/// and leave the system as it was.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Run a topology's checks on the wire (engine and kernel), print a summary and write reports.",
        discussion: "Exit status: 0 every check passed, 1 a check failed, 2 bad input.")
    @Argument(help: "The topology file (.topo) with `checks:`.") var file: String
    @Flag(help: "Leave the lab up afterwards (it is taken down otherwise, if this run brought it up).") var keep = false
    @Option(help: "Write JUnit XML here.") var junit: String?
    @Option(help: "Write the full results (traces included) as JSON here.") var json: String?
    @Option(help: "Write a Markdown summary here (also appended to $GITHUB_STEP_SUMMARY when set).") var markdown: String?
    @Option(help: "Write a self-contained HTML page (topology and paths as SVG) here.") var html: String?
    @Option(help: "Write one pcapng per check into this directory.") var pcapDir: String?
    @Option(help: "Run only the checks whose name contains this text.") var only: String?

    func run() throws {
        let topology = try Terminal.load(file)
        let checks = topology.checks.filter { c in only.map { c.name.contains($0) } ?? true }
        if checks.isEmpty {
            Terminal.error("\(file): \(topology.checks.isEmpty ? "no `checks:` to run" : "no check name contains \"\(only!)\"")")
            Terminal.note("   hint: declare checks under `checks:` (docs/topology.md#checks)")
            throw ExitStatus.badInput
        }
        try Terminal.requireRoot("check")
        Interrupts.trap()
        // The lab is this run's until it ends: no `up`, `down` or other `check` of it interleaves.
        let lock = try LabLock.acquire(lab: topology.lab, command: "check", waiting: Terminal.waiting(topology.lab))
        defer { lock.release() }
        var broughtUp = false
        if let j = try Journal.read(lab: topology.lab), j.state == .up {
            if j.source != topology.source {
                Terminal.note("note: lab \(topology.lab) is up from a different version of the file; checking the lab as it is (`netlab down \(topology.lab)` to rebuild)")
            }
        } else {
            if try Journal.read(lab: topology.lab) != nil { _ = try? LabController.down(lab: topology.lab) }
            do {
                let s = try LabController.up(topology) { p, d, t in Terminal.progress("up: \(p)", d, t) }
                Terminal.endProgress()
                Terminal.note(String(format: "%@ up: %d nodes, %d links in %.2f s", topology.lab, s.nodes, s.links, s.seconds))
                broughtUp = true
            } catch let e as LabError {
                Terminal.endProgress()
                Terminal.error(e.description)
                throw ExitStatus.failed
            }
        }
        defer {
            if broughtUp && !keep {
                do { _ = try LabController.down(lab: topology.lab); Terminal.note("\(topology.lab) down") } catch {
                    Terminal.error("taking \(topology.lab) down: \(error) (run `netlab down \(topology.lab)`)")
                }
            } else if keep { Terminal.note("\(topology.lab) left up (--keep); `netlab down \(topology.lab)` removes it") }
        }
        let session = try LabSession(topology: topology)
        let width = checks.map(\.name.count).max() ?? 10
        let run = CheckRunner.run(topology, session: session, pcapDirectory: pcapDir, only: checks, progress: { i, n, c, r in
            guard let r else { Terminal.progress("[\(i + 1)/\(n)] \(c.name)", i, n); return }
            Terminal.endProgress()
            let name = c.name.padding(toLength: width, withPad: " ", startingAt: 0)
            let e = r.engine.map { s in s.errno.map { "\(s.result) (\($0))" } ?? s.result } ?? "not run"
            let k = r.kernel == nil ? (c.compareWithKernel ? "" : "kernel skipped") : (r.differences.isEmpty ? "kernel agrees" : "kernel DIFFERS")
            print(String(format: "%@ [%2d/%d] %@  %@  %@  %.1f s", r.passed ? "✔" : "✘", i + 1, n, name, e, k, r.seconds))
            for f in r.failures { print("      \(f)") }
        }, interrupted: { Interrupts.signal != nil })
        session.close()
        print("\(run.passed)/\(run.results.count) checks passed (\(topology.lab), \(String(format: "%.1f", run.seconds)) s)")
        try write(run, topology: topology)
        if let sig = Interrupts.signal { Terminal.error("interrupted"); throw ExitCode(128 + sig) }
        if run.failed > 0 { throw ExitStatus.failed }
    }

    func write(_ run: CheckRun, topology: Topology) throws {
        func save(_ text: String, _ path: String?) throws {
            guard let path else { return }
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            Terminal.note("wrote \(path)")
        }
        try save(Reports.junit(run), junit)
        try save(try Reports.json(run), json)
        let md = Reports.markdown(run)
        try save(md, markdown)
        try save(Reports.html(run, topology: topology), html)
        if let summary = ProcessInfo.processInfo.environment["GITHUB_STEP_SUMMARY"], !summary.isEmpty,
           let h = FileHandle(forWritingAtPath: summary) {
            h.seekToEndOfFile()
            h.write(md.data(using: .utf8)!)
            h.closeFile()
        }
    }
}

/// `netlab graph FILE`: the topology as DOT or SVG.
struct Graph: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Draw a topology (self-made SVG, or DOT for Graphviz).")
    @Argument(help: "The topology file.") var file: String
    @Option(help: "dot or svg.") var format: String = "svg"

    func validate() throws {
        if !["dot", "svg"].contains(format) { throw ValidationError("--format must be dot or svg") }
    }

    func run() throws {
        let t = try Terminal.load(file)
        let g = TopologyGraph(t)
        print(format == "dot" ? g.dot() : g.svg(title: t.lab))
    }
}
