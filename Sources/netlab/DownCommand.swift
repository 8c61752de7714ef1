import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    struct Down: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove everything a lab's `up` made (from its journal; idempotent).")
        @Argument(help: "A topology file or a lab name.", completion: .custom(Completions.labs)) var target: LabTarget?
        @Flag(help: "Take down every lab that has a journal (asks first on a terminal).") var all = false
        @Option(help: ArgumentHelp("Take down the labs whose names start with this (asks first on a terminal).", valueName: "P"))
        var prefix: LabPrefix?
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
                labs = Journal.labs().filter { $0.hasPrefix(prefix?.text ?? "") }
                if labs.isEmpty, out != .standardOutput { Terminal.say(prefix.map { "no lab whose name starts with \($0.text) is up" } ?? "no lab is up") }
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
}
