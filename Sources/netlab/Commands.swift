import ArgumentParser
import CNetSys
import Foundation
import NetLab

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

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove everything a lab's `up` made (from its journal; idempotent).")
    @Argument(help: "A topology file or a lab name.", completion: .custom(Completions.labs)) var target: String?
    @Flag(help: "Take down every lab that has a journal (asks first on a terminal).") var all = false
    @Option(help: ArgumentHelp("Take down the labs whose names start with this (asks first on a terminal).", valueName: "P"))
    var prefix: String?
    @Flag(name: .shortAndLong, help: "Do not ask (--all, --prefix).") var yes = false
    @OptionGroup var output: JSONOutput

    /// `netlab down --json`: one entry per lab, the namespaces removed (none: the lab was not up).
    struct Report: Encodable {
        struct Left: Encodable { var namespace: String; var why: String }
        var lab: String
        var removed: [String]
        var processesEnded: Int
        var leftAlone: [Left]
        var journalProblem: String?
        var killedHolder: String?
        enum CodingKeys: String, CodingKey {
            case lab, removed, processesEnded = "processes_ended", leftAlone = "left_alone", journalProblem = "journal_problem",
                 killedHolder = "killed_holder"
        }
    }

    func validate() throws {
        let many = all || prefix != nil
        if many == (target != nil) { throw ValidationError("give a topology file or lab name, or --all, or --prefix P") }
        if let p = prefix, p.isEmpty || p.count > LabNames.labLimit || !p.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) {
            throw ValidationError("--prefix takes the start of a lab name (1-\(LabNames.labLimit) of a-z, 0-9 and '-')")
        }
    }

    /// On a terminal, `down --all` and `down --prefix` name the labs and ask (every lab on the machine may be
    /// someone else's); without a terminal (a script) or with --yes they go ahead.
    static func confirm(_ labs: [String]) -> Bool {
        guard isatty(0) == 1, isatty(2) == 1, !labs.isEmpty else { return true }
        FileHandle.standardError.write("take down \(count(labs.count, "lab")): \(labs.joined(separator: ", "))? [y/N] ".data(using: .utf8)!)
        guard let answer = readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces).lowercased() else { return false }
        return answer == "y" || answer == "yes"
    }

    func run() throws {
        let out = try output.prepare()
        try Terminal.requireRoot("down")
        Interrupts.trap()   // Ctrl-C stops between namespaces; the journal stays, so `down` again finishes
        let labs: [String]
        if all || prefix != nil {
            labs = Journal.labs().filter { $0.hasPrefix(prefix ?? "") }
            if labs.isEmpty, out != .standardOutput { Terminal.say(prefix.map { "no lab whose name starts with \($0) is up" } ?? "no lab is up") }
        } else { labs = [try labName(target!)] }
        for lab in labs where !LabNames.isLab(lab) {
            Terminal.error("\"\(lab)\" is not a lab name (\(LabNames.labRule))")
            throw ExitStatus.badInput
        }
        if (all || prefix != nil), !yes, !Self.confirm(labs) {
            Terminal.say("nothing was taken down")
            try emitJSON([Report](), to: out)
            return
        }
        var failed = false
        var reports: [Report] = []
        for lab in labs {
            do {
                // Idempotent: a lab that is not up is exit 0; the labs that are up are listed, in case of a typo.
                let r = try LabController.down(lab: lab, waiting: Terminal.waiting(lab))
                reports.append(Report(lab: lab, removed: r.deleted, processesEnded: r.processesEnded,
                                      leftAlone: r.leftAlone.map { .init(namespace: $0.name, why: $0.why) },
                                      journalProblem: r.journalProblem, killedHolder: r.orphanedBy?.description))
                if let p = r.journalProblem { Terminal.note("\(lab): \(p)") }
                if let o = r.orphanedBy { Terminal.note("  \(o) was killed while it held the lab") }
                if !r.guardTables.isEmpty {
                    Terminal.note("  removed with their namespaces: the netlab_guard table it left in \(r.guardTables.joined(separator: ", "))")
                }
                for l in r.leftAlone { Terminal.note("  left \(l.name) alone: \(l.why)") }
                if out == .standardOutput { continue }
                if !r.wasUp {
                    Terminal.say("\(lab): nothing to remove")
                    if !all && prefix == nil { Terminal.notUpNote(lab) }
                } else {
                    var line = "\(lab) down: removed \(count(r.deleted.count, "namespace"))"
                    if r.processesEnded > 0 { line += ", ended \(count(r.processesEnded, "process", "processes")) running inside" }
                    Terminal.say(line)
                }
            } catch LabError.interrupted(let sig) {
                Terminal.error("\(lab): interrupted; run `netlab down \(lab)` again to finish")
                throw ExitCode(128 + sig)
            } catch {
                Terminal.error("\(lab): \(error)")
                failed = true
            }
        }
        try emitJSON(reports, to: out)
        if failed { throw ExitStatus.failed }
    }
}

/// A lab named by its name or by a topology file (`down FILE`, `status FILE`): a path (with `/` or ending in
/// `.topo`) is read for its `lab:` (loosely, so a file that no longer validates still works); a name is checked.
func labName(_ target: String) throws -> String {
    guard target.hasSuffix(".topo") || target.contains("/") else {
        guard LabNames.isLab(target) else {
            Terminal.error("\"\(visible(target))\" is neither a lab name nor a topology file")
            Terminal.hint("a lab name has 1-20 characters from a-z, 0-9 and '-'; a topology file ends in .topo or has a '/'")
            throw ExitStatus.badInput
        }
        return target
    }
    let text: String
    do { text = try InputFile.readText(target) } catch {
        Terminal.fileProblem(error)
        throw ExitStatus.badInput
    }
    if let t = try? Topology.parse(text, file: target) { return t.lab }
    for line in text.split(separator: "\n") where line.hasPrefix("lab:") {
        let name = line.dropFirst(4).split(separator: "#").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        if LabNames.isLab(name) { return name }
        Terminal.error("\(target): \"\(visible(name))\" is not a lab name")
        throw ExitStatus.badInput
    }
    Terminal.error("\(target): no `lab:` line")
    throw ExitStatus.badInput
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Labs that are up, their nodes, and drift from the file.")
    @Argument(help: "A lab name or its topology file, as for `down` (default: every lab that is up).") var lab: String?
    @Flag(name: [.short, .long], help: "List every namespace and every drift line (a large lab prints a summary otherwise).") var details = false
    @OptionGroup var output: JSONOutput

    /// Above this many namespaces or drift lines, the text is a summary unless --details.
    static let summaryAbove = 20

    func run() throws {
        let out = try output.prepare()
        try Terminal.requireRoot("status")
        let labs = try lab.map { [try labName($0)] } ?? Journal.labs()   // a name is checked there
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

struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ v: any Encodable) { value = v }
    func encode(to encoder: Encoder) throws { try value.encode(to: encoder) }
}

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command inside a node of a lab (setns, then exec); with no command, your shell.",
        usage: "netlab exec LAB NODE [-- CMD [ARGS...]]",
        discussion: "Exit status: the command's; 2 an unknown lab or node; 127 the command could not be run.")
    @Argument(help: "The lab.", completion: .custom(Completions.labs)) var lab: String
    @Argument(help: "The node.", completion: .custom(Completions.nodes)) var node: String
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after -- (default: $SHELL, else /bin/sh).") var command: [String] = []

    func run() throws {
        try Terminal.requireRoot("exec")
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        let target = try NodeTarget.parse([]).resolve([lab, node])
        if argv.isEmpty {
            // An interactive shell in the node, as `kathara connect` or `ip netns exec NS $SHELL` gives.
            let shell = ProcessInfo.processInfo.environment["SHELL"].flatMap { $0.isEmpty ? nil : $0 } ?? "/bin/sh"
            argv = [shell]
            if Terminal.isTTY { Terminal.note("\(shell) in \(lab) \(node) (namespace \(target.namespace.name)); exit returns") }
        }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        netsys_exec_in_netns(target.namespace.path, &cargs)
        Terminal.error("cannot run \(argv[0]) in \(target.namespace.name): \(String(cString: strerror(errno)))")
        throw ExitCode(127)
    }
}

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
