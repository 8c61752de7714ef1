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
        discussion: "Exit status: 0 success, 1 the work failed, 2 bad input or usage.",
        version: "0.1.0",
        subcommands: [Up.self, Down.self, Status.self, Exec.self, Validate.self, Route.self, Connect.self, CheckCommand.self, Graph.self, Selftest.self]
    )

    /// Runs the command; usage errors exit 2 (not ArgumentParser's 64) so every command has the same contract.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                exit(withError: error)
            }
            if let e = error as? ExitCode { Foundation.exit(e.rawValue) }
            let message = fullMessage(for: error)
            if !message.isEmpty { FileHandle.standardError.write((message + "\n").data(using: .utf8)!) }
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// `--lab LAB NODE | --netns NAME`: the node a command works in, a lab's node or any named namespace.
struct NodeTarget: ParsableArguments {
    @Option(help: "The lab; the node is the first argument.") var lab: String?
    @Option(help: "Any named network namespace.") var netns: String?

    /// Exactly one of the two, and `positional` holding NODE (with --lab) then the command's `operand`.
    func validate(_ positional: [String], operand: String) throws {
        if (lab == nil) == (netns == nil) { throw ValidationError("give --lab LAB NODE or --netns NAME") }
        if positional.count != (lab != nil ? 2 : 1) {
            throw ValidationError(lab != nil ? "give NODE and \(operand)" : "give \(operand)")
        }
        // Names become paths under /run/netns: checked here, before anything opens them.
        if let lab, !LabNames.isLab(lab) { throw ValidationError("--lab: \"\(lab)\" is not a lab name (\(LabNames.labRule))") }
        if lab != nil, !LabNames.isNode(positional[0]) {
            throw ValidationError("\"\(positional[0])\" is not a node name (\(LabNames.nodeRule))")
        }
        if let netns, !NetworkNamespace.isValidName(netns) {
            throw ValidationError("--netns: \"\(netns)\" is not a namespace name: give a name under /run/netns (no '/', not '.' or '..')")
        }
    }

    /// The namespace named: `<lab>-<node>`, or the one given with --netns.
    func namespace(_ positional: [String]) -> NetworkNamespace {
        NetworkNamespace(named: netns ?? "\(lab!)-\(positional[0])")
    }
}

/// `--mark` and `--tos` of `route` and `connect`: decimal or 0x hex as in a topology file (`parseNumber`), a 32-bit
/// mark and a TOS byte; anything else is a usage error.
enum SocketOption {
    static func mark(_ s: String?) throws -> UInt32? {
        guard let s else { return nil }
        guard let n = parseNumber(s), n <= UInt32.max else { throw ValidationError("--mark must be a number from 0 to 0xffffffff") }
        return UInt32(n)
    }

    static func tos(_ s: String?) throws -> UInt8? {
        guard let s else { return nil }
        guard let n = parseNumber(s), n <= 255 else { throw ValidationError("--tos must be a number from 0 to 255") }
        return UInt8(n)
    }
}

/// Messages and progress for humans, on standard error.
enum Terminal {
    /// One value as indented JSON with sorted keys on standard output (what every `--json` prints).
    static func printJSON(_ value: some Encodable, dates: JSONEncoder.DateEncodingStrategy = .deferredToDate) throws {
        print(try Reports.jsonText(value, dates: dates))
    }

    static let isTTY = isatty(2) == 1
    static var color: Bool { isTTY && ProcessInfo.processInfo.environment["NO_COLOR"] == nil }

    static func error(_ s: String) {
        let prefix = color ? "\u{1B}[1;31merror:\u{1B}[0m " : "error: "
        FileHandle.standardError.write((prefix + s + "\n").data(using: .utf8)!)
    }
    static func note(_ s: String) { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) }

    /// One rewritten status line on a terminal; nothing when output is not a terminal.
    static func progress(_ phase: String, _ done: Int, _ total: Int) {
        guard isTTY else { return }
        FileHandle.standardError.write("\r\u{1B}[K  \(phase) \(done)/\(total)".data(using: .utf8)!)
    }
    static func endProgress() {
        guard isTTY else { return }
        FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!)
    }

    /// What a command says once when another netlab holds the lab's lock and it waits.
    static func waiting(_ lab: String) -> LabController.Waiting {
        { holder in note("lab \(lab) is busy: \(holder) holds its lock; waiting for it (Ctrl-C to give up)") }
    }

    /// Root is needed for namespaces and netlink changes.
    static func requireRoot(_ what: String) throws {
        if geteuid() != 0 {
            error("`netlab \(what)` needs root (network namespaces and netlink changes); run it with sudo")
            throw ExitStatus.badInput
        }
    }

    /// Load and validate a topology; bad input prints every diagnostic and exits 2.
    static func load(_ path: String) throws -> Topology {
        do { return try Topology.load(path: path) } catch let e as TopologyError {
            FileHandle.standardError.write((e.rendered(color: color) + "\n").data(using: .utf8)!)
            throw ExitStatus.badInput
        }
    }
}
