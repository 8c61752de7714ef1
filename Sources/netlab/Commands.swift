import ArgumentParser
import CNetSys
import Foundation
import NetLab

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Build a lab from a topology file.")
    @Argument(help: "The topology file (.topo).") var file: String
    @Flag(help: "Print how long each phase took.") var timings = false

    func run() throws {
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
            print(String(format: "%@ up: %d nodes, %d links, %d addresses, %d routes, %d rules in %.2f s",
                         topology.lab, s.nodes, s.links, s.addresses, s.routes, s.rules, s.seconds))
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
    @Argument(help: "A topology file or a lab name.") var target: String?
    @Flag(help: "Take down every lab that has a journal.") var all = false

    func validate() throws {
        if all == (target != nil) { throw ValidationError("give a topology file or lab name, or --all") }
    }

    func run() throws {
        try Terminal.requireRoot("down")
        Interrupts.trap()   // Ctrl-C stops between namespaces; the journal stays, so `down` again finishes
        let labs: [String]
        if all { labs = Journal.labs() } else { labs = [try labName(target!)] }
        for lab in labs where !LabNames.isLab(lab) {
            Terminal.error("\"\(lab)\" is not a lab name (\(LabNames.labRule))")
            throw ExitStatus.badInput
        }
        var failed = false
        for lab in labs {
            do {
                let r = try LabController.down(lab: lab, waiting: Terminal.waiting(lab))
                if let p = r.journalProblem { Terminal.note("\(lab): \(p)") }
                if !r.wasUp {
                    print("\(lab): nothing to remove")
                } else {
                    var line = "\(lab) down: removed \(r.deleted.count) namespace\(r.deleted.count == 1 ? "" : "s")"
                    if r.processesEnded > 0 { line += ", ended \(r.processesEnded) process\(r.processesEnded == 1 ? "" : "es") running inside" }
                    print(line)
                }
                if let o = r.orphanedBy { Terminal.note("  \(o) was killed while it held the lab") }
                if !r.guardTables.isEmpty {
                    Terminal.note("  removed with their namespaces: the netlab_guard table it left in \(r.guardTables.joined(separator: ", "))")
                }
                for l in r.leftAlone { Terminal.note("  left \(l.name) alone: \(l.why)") }
            } catch LabError.interrupted(let sig) {
                Terminal.error("\(lab): interrupted; run `netlab down \(lab)` again to finish")
                throw ExitCode(128 + sig)
            } catch {
                Terminal.error("\(lab): \(error)")
                failed = true
            }
        }
        if failed { throw ExitStatus.failed }
    }

    /// A lab name, or the `lab:` of a topology file (read loosely, so a file that no longer validates still works).
    func labName(_ target: String) throws -> String {
        guard target.hasSuffix(".topo") || target.contains("/") else { return target }
        if let t = try? Topology.load(path: target) { return t.lab }
        guard let text = try? String(contentsOfFile: target, encoding: .utf8) else {
            Terminal.error("cannot read \(target)")
            throw ExitStatus.badInput
        }
        for line in text.split(separator: "\n") where line.hasPrefix("lab:") {
            return line.dropFirst(4).split(separator: "#").first!.trimmingCharacters(in: .whitespaces)
        }
        Terminal.error("\(target): no `lab:` line")
        throw ExitStatus.badInput
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Labs that are up, their nodes, and drift from the file.")
    @Argument(help: "A lab name (default: every lab that is up).") var lab: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        try Terminal.requireRoot("status")
        let labs = lab.map { [$0] } ?? Journal.labs()
        var statuses: [LabStatus] = []
        if let lab, !LabNames.isLab(lab) {
            Terminal.error("\"\(lab)\" is not a lab name (\(LabNames.labRule))")
            throw ExitStatus.badInput
        }
        var failed = false
        for l in labs {
            // One lab's unreadable journal does not hide the others.
            do { statuses.append(try LabController.status(lab: l)) } catch {
                Terminal.error("\(l): \(error)")
                failed = true
            }
        }

        if lab != nil && statuses.isEmpty { throw ExitStatus.failed }
        if json {
            try Terminal.printJSON(lab == nil ? AnyEncodable(statuses) : AnyEncodable(statuses.first!), dates: .iso8601)
        } else {
            if statuses.isEmpty { print("no labs are up") }
            for s in statuses {
                print("\(s.lab): \(s.state)\(s.state == "up" ? "" : " (at \(s.phase))")  \(s.file)")
                for ns in s.namespaces {
                    print("  \(ns.exists ? "✓" : "✗") \(ns.name)\(ns.node == nil ? "  (LAN segment)" : "")")
                }
                if let n = s.note { print("  note: \(n)") }
                if s.drift.isEmpty { print("  no drift: the live state matches the file") } else {
                    print("  drift (\(s.drift.count)):")
                    for d in s.drift { print("    \(d)") }
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
        abstract: "Run a command inside a node of a lab (setns, then exec).",
        usage: "netlab exec LAB NODE -- CMD [ARGS...]")
    @Argument(help: "The lab.") var lab: String
    @Argument(help: "The node.") var node: String
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.") var command: [String] = []

    func run() throws {
        try Terminal.requireRoot("exec")
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        guard !argv.isEmpty else { throw ValidationError("give a command after --, e.g. netlab exec \(lab) \(node) -- ip addr") }
        guard LabNames.isLab(lab) else { throw ValidationError("\"\(lab)\" is not a lab name (\(LabNames.labRule))") }
        guard LabNames.isNode(node) else { throw ValidationError("\"\(node)\" is not a node name (\(LabNames.nodeRule))") }
        let ns = NetworkNamespace(named: "\(lab)-\(node)")
        guard ns.exists else {
            Terminal.error("no namespace \(ns.name): is lab \(lab) up, and does it have node \(node)? (`netlab status \(lab)`)")
            throw ExitStatus.failed
        }
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        netsys_exec_in_netns(ns.path, &cargs)
        Terminal.error("cannot run \(argv[0]) in \(ns.name): \(String(cString: strerror(errno)))")
        throw ExitCode(127)
    }
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check topology files without touching the system (no root needed).")
    @Argument(help: "Topology files.") var files: [String]

    func run() throws {
        var bad = false
        for f in files {
            do {
                let t = try Topology.load(path: f)
                let p = LabPlan(t).counts
                print("\(f): ok (lab \(t.lab): \(p.nodes) nodes, \(p.links) links, \(p.addresses) addresses, \(p.routes) routes, \(p.rules) rules)")
            } catch let e as TopologyError {
                FileHandle.standardError.write((e.rendered(color: Terminal.color) + "\n").data(using: .utf8)!)
                bad = true
            }
        }
        if bad { throw ExitStatus.badInput }
    }
}
