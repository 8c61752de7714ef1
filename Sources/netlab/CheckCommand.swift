import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    /// `netlab check FILE`: bring the lab up if needed, run every declared check (engine and kernel), write reports,
    /// and leave the system as it was.
    struct CheckCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check",
            abstract: "Run a topology's checks on the wire (engine and kernel), print a summary and write reports.",
            discussion: "Exit status: 0 every check passed, 1 a check failed, 2 bad input (the file, an option, a report path; nothing is built), 130/143 interrupted. Every report option takes - for standard output (one of them at a time); the per-check lines then go to standard error.")
        @Argument(help: "The topology file (.topo) with `checks:`.") var file: String
        @Flag(help: "Leave the lab up afterwards (it is taken down otherwise, if this run brought it up).") var keep = false
        @Option(help: ArgumentHelp("Write JUnit XML to this file (- for standard output).", valueName: "path")) var junit: OutputPath?
        @OptionGroup var output: JSONOutput
        @Option(help: ArgumentHelp("Write a Markdown summary to this file (also appended to $GITHUB_STEP_SUMMARY when set).", valueName: "path")) var markdown: OutputPath?
        @Option(help: ArgumentHelp("Write a self-contained HTML page (topology and paths as SVG) to this file.", valueName: "path")) var html: OutputPath?
        @Option(help: ArgumentHelp("Write one pcapng per check into this directory (made if missing).", valueName: "dir")) var pcapDir: String?
        @Option(help: "Run only the checks whose name contains this text (and no experiment unless --experiment).") var only: String?
        @Option(help: "Run only the experiment with this name (and no check unless --only).") var experiment: String?
        @Flag(help: "Check a lab that is already up even when it has drifted from its file (refused otherwise).") var allowDrift = false

        /// Every report's destination, checked before the file is read or anything is built.
        struct Outputs { var junit, json, markdown, html: OutputTarget?; var pcapDir: String? }

        /// `check --json PATH` was the option's form before `--json` printed and `--json-file` wrote: `--json -` still
        /// works (the same thing), `--json FILE.json` says what to write instead (exit 2).
        static func acceptingOldJSONPath(_ args: [String]) throws -> [String] {
            guard args.first == "check", let i = args.firstIndex(of: "--json"), i + 1 < args.count else { return args }
            var a = args
            if a[i + 1] == "-" { a.remove(at: i + 1) } else if a[i + 1].hasSuffix(".json") {
                Terminal.error("--json takes no path: it prints the JSON on standard output; --json-file \(a[i + 1]) writes it to a file")
                throw ExitStatus.badInput
            }
            return a
        }

        func validate() throws {
            try Terminal.oneStandardOutput([("--junit", junit?.path), output.named, ("--markdown", markdown?.path), ("--html", html?.path)])
            if pcapDir == "-" { throw ValidationError("--pcap-dir takes a directory (one pcapng per check), not -") }
        }

        func prepareOutputs() throws -> Outputs {
            let o = Outputs(junit: try junit?.prepare(option: "--junit"),
                            json: try output.prepare(),
                            markdown: try markdown?.prepare(option: "--markdown"),
                            html: try html?.prepare(option: "--html"),
                            pcapDir: try pcapDir.map { try Terminal.outputDirectory($0, option: "--pcap-dir") })
            if ([o.junit, o.json, o.markdown, o.html] as [OutputTarget?]).contains(.standardOutput) { Terminal.textToStandardError = true }
            return o
        }

        func run() throws {
            let outputs = try prepareOutputs()
            let topology = try Terminal.load(file)
            let (checks, experiments) = try selection(topology)
            try Terminal.requireRoot("check")
            Interrupts.trap()
            // The lab is this run's until it ends: no `up`, `down` or other `check` of it interleaves.
            let lock = try LabLock.acquire(lab: topology.lab, command: "check", waiting: Terminal.waiting(topology.lab))
            defer { lock.release() }
            var session: LabSession
            var served = topology   // whose `listen:` ports the session serves: the lab's state, `set` changes included
            if let j = try Journal.read(lab: topology.lab), j.state == .up {
                // A lab that is up is reused as it is, and said so; one that has drifted from its file (an address
                // deleted by hand, a route added) would make checks fail for reasons the file does not show: refused
                // unless --allow-drift.
                let f = DateFormatter(); f.dateFormat = "yyyy-MM-dd HH:mm:ss"
                let since = f.string(from: j.started)
                Terminal.note("lab \(topology.lab) is already up (since \(since)): checking it as it is, and leaving it up")
                if j.source != topology.source {
                    Terminal.note("note: it was brought up from a different version of \(visible(file)) (`netlab down \(topology.lab)` to rebuild)")
                }
                let status = try LabController.status(lab: topology.lab)
                if !status.drift.isEmpty {
                    let shown = status.drift.prefix(8).map { "   \($0)" }
                    let more = status.drift.count > 8 ? ["   ... and \(status.drift.count - 8) more (`netlab status \(topology.lab)`)"] : []
                    if allowDrift {
                        Terminal.note((["lab \(topology.lab) has drifted from its file (--allow-drift: checking it anyway):"] + shown + more).joined(separator: "\n"))
                    } else {
                        Terminal.error((["lab \(topology.lab) has drifted from its file; its checks would not test what the file says:"] + shown + more).joined(separator: "\n"))
                        Terminal.note("   hint: `netlab down \(topology.lab)` and check again to rebuild it, or --allow-drift to check it as it is")
                        throw ExitStatus.failed
                    }
                }
                if let n = j.changes?.count, n > 0 {
                    Terminal.note("note: lab \(topology.lab) is up with \(count(n, "change")) `netlab set` made (`netlab status \(topology.lab)` lists them); checking the lab as it is")
                    if let t = try? LabController.expected(j).topology { served = t }
                }
                session = try LabSession.open(served, bringUp: .no)
            } else {
                do {
                    session = try LabSession.open(topology, bringUp: .fresh(leftover: .any)) { p, d, t in Terminal.progress("up: \(p)", d, t) }
                    Terminal.endProgress()
                    let s = session.upSummary!
                    Terminal.note("\(topology.lab) up: \(count(s.nodes, "node")), \(count(s.links, "link")) in \(String(format: "%.2f", s.seconds)) s")
                } catch let e as LabError {
                    Terminal.endProgress()
                    Terminal.error(e.description)
                    throw ExitStatus.failed
                }
            }
            defer {
                if session.broughtUp && !keep {
                    do { try session.end(); Terminal.note("\(topology.lab) down") } catch {
                        Terminal.error("taking \(topology.lab) down: \(error) (run `netlab down \(topology.lab)`)")
                    }
                } else {
                    session.close()
                    if keep { Terminal.note("\(topology.lab) left up (--keep); `netlab down \(topology.lab)` removes it") }
                }
            }
            let width = checks.map { visible($0.name).count }.max() ?? 10
            let run = CheckRunner.run(topology, session: session, pcapDirectory: outputs.pcapDir, only: checks, progress: { i, n, c, r in
                guard let r else { Terminal.progress("[\(i + 1)/\(n)] \(visible(c.name))", i, n); return }
                Terminal.endProgress()
                let name = visible(c.name).padding(toLength: width, withPad: " ", startingAt: 0)
                let e = r.sweep.map { "sweep: \($0.passed)/\($0.cells.count) cells passed" } ?? r.engine.map { s in s.errno.map { "\(s.result) (\($0))" } ?? s.result } ?? "not run"
                let k = r.sweep != nil ? "kernel per cell" : r.kernel == nil ? (c.compareWithKernel ? "" : "kernel skipped") : (r.differences.isEmpty ? "kernel agrees" : "kernel DIFFERS")
                Terminal.say(String(format: "%@ [%2d/%d] %@  %@  %@  %.1f s", r.passed ? "✔" : "✘", i + 1, n, name, e, k, r.seconds))
                for f in r.failures { Terminal.say("      \(visible(f))") }
            }, interrupted: { Interrupts.signal != nil })
            var run2 = run
            if !checks.isEmpty {
                Terminal.say("\(run.passed)/\(count(run.results.count, "check")) passed (\(topology.lab), \(String(format: "%.1f", run.seconds)) s)")
            }
            if !experiments.isEmpty, Interrupts.signal == nil {
                run2.experiments = try runExperiments(experiments, topology: topology, session: &session)
            }
            session.close()
            try write(run2, topology: topology, to: outputs)
            if let sig = Interrupts.signal { Terminal.error("interrupted"); throw ExitCode(128 + sig) }
            if !run2.allPassed { throw ExitStatus.failed }
        }

        /// Every report asked for, through the one writer (checked before the run by `prepareOutputs`).
        func write(_ run: CheckRun, topology: Topology, to o: Outputs) throws {
            func save(_ text: @autoclosure () throws -> String, _ target: OutputTarget?) throws {
                guard let target else { return }
                try Terminal.write(try text(), to: target)
                if case .file(let p) = target { Terminal.note("wrote \(p)") }
            }
            try save(Reports.junit(run), o.junit)
            try save(try Reports.json(run) + "\n", o.json)
            let md = Reports.markdown(run)
            try save(md, o.markdown)
            try save(Reports.html(run, topology: topology), o.html)
            if let summary = ProcessInfo.processInfo.environment["GITHUB_STEP_SUMMARY"], !summary.isEmpty,
               let h = FileHandle(forWritingAtPath: summary) {
                h.seekToEndOfFile()
                h.write(md.data(using: .utf8)!)
                h.closeFile()
            }
        }
    }
}
