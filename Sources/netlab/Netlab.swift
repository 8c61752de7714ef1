import ArgumentParser
import Foundation
import NetLab

/// Exit codes everywhere: 0 success, 1 the work failed, 2 bad input or usage.
enum ExitStatus {
    static let failed = ExitCode(1)
    static let badInput = ExitCode(2)
}

@main
struct Netlab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netlab",
        abstract: "Multi-homed network labs from a topology file, built through libnl in network namespaces.",
        discussion: "Exit status: 0 success, 1 the work failed, 2 bad input or usage (also `netlab` alone); connect and exec add their own (docs/commands.md).",
        version: "0.1.0",
        subcommands: [Up.self, Down.self, Status.self, Exec.self, Validate.self, Route.self, Connect.self, CheckCommand.self,
                      Graph.self, Capture.self, Selftest.self, Snapshot.self, Explain.self, SetCommand.self]
    )

    /// Runs the command; usage errors exit 2 (not ArgumentParser's 64) so every command has the same contract.
    static func main() {
        // `netlab` alone is a usage error: the help, on standard error, exit 2.
        if CommandLine.arguments.count == 1 {
            FileHandle.standardError.write((helpMessage() + "\n").data(using: .utf8)!)
            Foundation.exit(2)
        }
        do {
            var command = try parseAsRoot(try CheckCommand.acceptingOldJSONPath(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                exit(withError: error)
            }
            if let e = error as? ExitCode { Foundation.exit(e.rawValue) }
            var message = fullMessage(for: error)
            if code == .validationFailure, let bad = BadArgument.last { message = withReason(message, word: bad.word, bad.problem) }
            if !message.isEmpty { FileHandle.standardError.write((message + "\n").data(using: .utf8)!) }
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }

    /// ArgumentParser's "The value 'W' is invalid for '--x <x>'" with the reason the word's type gave
    /// (`ArgumentValue`), so the message says what to give: "...: --mark must be a number from 0 to 0xffffffff".
    static func withReason(_ message: String, word: String, _ bad: BadArgument) -> String {
        var lines = message.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let i = lines.firstIndex(where: { $0.contains("The value '\(word)' is invalid for '") && $0.hasSuffix("'") }) else { return message }
        lines[i] += ": \(bad)"
        return lines.joined(separator: "\n")
    }
}
