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
            --json prints the outcome as JSON instead (--json-file PATH writes it). Exit status: 0 changed, 1 the kernel refused (nothing changed) or the \
            lab is not up, 2 bad input (nothing changed).
            """)
    @Argument(help: "The lab (as `up` named it).") var lab: String
    @Argument(parsing: .captureForPassthrough, help: "NODE VERB ARGS... (and --json).") var words: [String] = []

    func run() throws {
        // --json and --json-file PATH are read from among the words (which may hold `--both`).
        var words = self.words
        var json = false, jsonFile: String?
        if words.first == "--" { words.removeFirst() }
        while let i = words.firstIndex(where: { $0 == "--json" || $0 == "--json-file" || $0.hasPrefix("--json-file=") }) {
            if words[i] == "--json" { json = true; words.remove(at: i); continue }
            if words[i].hasPrefix("--json-file=") { jsonFile = String(words[i].dropFirst(12)); words.remove(at: i); continue }
            guard i + 1 < words.count else { throw ValidationError("--json-file needs a path") }
            jsonFile = words[i + 1]
            words.removeSubrange(i...(i + 1))
        }
        if json, jsonFile != nil { throw ValidationError("give --json or --json-file PATH, not both") }
        guard !words.isEmpty else {
            Terminal.error("give NODE and a change, e.g. netlab set \(visible(lab)) client link eth0 down")
            throw ExitStatus.badInput
        }
        let target: OutputTarget? = json ? .standardOutput : try jsonFile.map { try Terminal.output($0, option: "--json-file") }
        try Terminal.requireRoot("set")
        // LAB NODE as every command names a node: a lab that is not up, or a node it does not have, is exit 2.
        var node = try NodeTarget.parse([])
        node.lab = nil
        _ = try node.resolve([lab, words[0]])
        do {
            let o = try LabController.set(lab: lab, words: words, waiting: Terminal.waiting(lab))
            if target != .standardOutput {
                Terminal.say("\(lab): \(visible(o.change))" + String(format: " (%.1f ms)", o.milliseconds))
                for n in o.notes { Terminal.note("  \(n)") }
            }
            try emitJSON(o, to: target)
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
