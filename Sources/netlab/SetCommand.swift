import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    /// `netlab set LAB NODE VERB ...`: one live change to a lab that is up, in the topology's words, recorded in the
    /// lab's journal (so `status` compares with the file plus the changes, and `down` still removes everything).
    struct SetCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Change a lab that is up: link, carrier, address, route, rule or sysctl of one node.",
            discussion: """
                CHANGE is one of these (routes and rules written as in a topology file):
                  link IF down|up [--both]
                  carrier IF off|on
                  address add|del IF PREFIX
                  route add|del|replace "ROUTE"
                  rule add|del "RULE"
                  sysctl KEY=VALUE
                  listen PORT | unlisten PORT
                `carrier IF off` takes the peer end of IF's link down, so the node sees its carrier go. A device that \
                comes up again gets back the routes its going down flushed. Exit status: 0 changed, 1 the kernel \
                refused (nothing changed) or the lab is not up, 2 bad input (nothing changed).
                """)
        @Argument(help: "The lab (as `up` named it).", completion: .custom(Completions.labs)) var lab: String
        @Argument(help: "The node.", completion: .custom(Completions.nodes)) var node: String
        /// The change's words as `LiveChange.parse` reads them (`--both` among them): everything ArgumentParser does
        /// not know, in the order given.
        @Argument(parsing: .allUnrecognized, help: ArgumentHelp("The change: a verb and its words (the list above).", valueName: "change"))
        var change: [String] = []
        @OptionGroup var output: JSONOutput

        func validate() throws {
            if change.isEmpty { throw ValidationError("give a change after NODE, e.g. netlab set \(visible(lab)) \(visible(node)) link eth0 down") }
        }

        func run() throws {
            let target = try output.prepare()
            try Terminal.requireRoot("set")
            // LAB NODE as every command names a node: a lab that is not up, or a node it does not have, is exit 2.
            _ = try NodeTarget.resolve(lab: lab, node: node)
            do {
                let o = try LabController.set(lab: lab, words: [node] + change.filter { $0 != "--" }, waiting: Terminal.waiting(lab))
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
}
