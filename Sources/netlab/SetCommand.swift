import ArgumentParser
import Foundation
import NetLab

/// `netlab set LAB NODE VERB ...`: one live change to a lab that is up, in the topology's words, recorded in the
/// lab's journal (so `status` compares with the file plus the changes, and `down` still removes everything).
struct SetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Change a lab that is up: link, carrier, address, route, rule or sysctl of one node.",
        usage: """
            netlab set LAB NODE link IF down|up [--both]
            netlab set LAB NODE carrier IF off|on
            netlab set LAB NODE address add|del IF PREFIX
            netlab set LAB NODE route add|del|replace "ROUTE"
            netlab set LAB NODE rule add|del "RULE"
            netlab set LAB NODE sysctl KEY=VALUE
            """,
        discussion: """
            Routes and rules are written as in a topology file. `carrier IF off` takes the peer end of IF's link down, so \
            the node sees its carrier go. A device that comes up again gets back the routes its going down flushed. \
            Add --json for the outcome as JSON. Exit status: 0 changed, 1 the kernel refused (nothing changed) or the \
            lab is not up, 2 bad input (nothing changed).
            """)
    @Argument(help: "The lab (as `up` named it).") var lab: String
    @Argument(parsing: .captureForPassthrough, help: "NODE VERB ARGS... (and --json).") var words: [String] = []

    func run() throws {
        var words = self.words
        let json = words.contains("--json")
        words.removeAll { $0 == "--json" }
        if words.first == "--" { words.removeFirst() }
        guard LabNames.isLab(lab) else {
            Terminal.error("\"\(lab)\" is not a lab name (\(LabNames.labRule))")
            throw ExitStatus.badInput
        }
        guard !words.isEmpty else {
            Terminal.error("give NODE and a change, e.g. netlab set \(lab) client link eth0 down")
            throw ExitStatus.badInput
        }
        try Terminal.requireRoot("set")
        do {
            let o = try LabController.set(lab: lab, words: words, waiting: Terminal.waiting(lab))
            if json { try Terminal.printJSON(o) } else {
                print("\(lab): \(o.change)" + String(format: " (%.1f ms)", o.milliseconds))
                for n in o.notes { Terminal.note("  \(n)") }
            }
        } catch let e as LabError {
            switch e {
            case .badChange(let t):
                FileHandle.standardError.write((t.rendered(color: Terminal.color) + "\n").data(using: .utf8)!)
                Terminal.note("nothing was changed")
                throw ExitStatus.badInput
            case .journal(.badLabName):
                Terminal.error(e.description)
                throw ExitStatus.badInput
            default:
                Terminal.error(e.description)
                throw ExitStatus.failed
            }
        }
    }
}
