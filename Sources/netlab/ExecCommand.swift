import ArgumentParser
import CNetSys
import Foundation
import NetLab

extension Netlab {
    struct Exec: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command inside a node of a lab (setns, then exec); with no command, your shell.",
            discussion: "Exit status: the command's; 2 an unknown lab or node; 127 the command could not be run.")
        @Argument(help: "The lab.", completion: .custom(Completions.labs)) var lab: String
        @Argument(help: "The node.", completion: .custom(Completions.nodes)) var node: String
        @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after -- (default: $SHELL, else /bin/sh).") var command: [String] = []

        func run() throws {
            try Terminal.requireRoot("exec")
            var argv = command
            if argv.first == "--" { argv.removeFirst() }
            let target = try NodeTarget.resolve(lab: lab, node: node)
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
}
