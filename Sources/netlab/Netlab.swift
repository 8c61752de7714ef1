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
        subcommands: [Up.self, Down.self, Status.self, Exec.self, Validate.self, Route.self, Connect.self, CheckCommand.self, Graph.self, Capture.self, Selftest.self, Snapshot.self, Explain.self, SetCommand.self]
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
            let message = fullMessage(for: error)
            if !message.isEmpty { FileHandle.standardError.write((message + "\n").data(using: .utf8)!) }
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

/// How every command names a node: `LAB NODE` (a node of a lab that is up), or `--netns NAME` in their place for a
/// namespace netlab did not make. `route`, `connect` and `exec` take it the same way and answer a wrong name the
/// same way: the lab's nodes (or the labs that are up) listed, exit 2.
struct NodeTarget: ParsableArguments {
    @Option(help: ArgumentHelp("A network namespace netlab did not make, instead of LAB NODE.", valueName: "name")) var netns: String?
    /// The form before LAB NODE (`--lab LAB NODE`), still read so scripts keep working; not in the help.
    @Option(help: .hidden) var lab: String?

    /// How many leading positional words name the node.
    var words: Int { netns != nil ? 0 : lab != nil ? 1 : 2 }

    /// `positional` holds the node's words then `operands` more (their names for the usage message).
    func validate(_ positional: [String], operands: [String]) throws {
        if netns != nil, lab != nil { throw ValidationError("give LAB NODE or --netns NAME, not both") }
        let want = words + operands.count
        guard positional.count == want else {
            let node = netns != nil ? "" : lab != nil ? "NODE " : "LAB NODE "
            throw ValidationError("give \(node)\(operands.joined(separator: " "))" + (positional.count > want ? " (too many arguments)" : ""))
        }
        // Names become paths under /run/netns: checked before anything opens them (a lab's and a node's in `resolve`).
        if let netns, !NetworkNamespace.isValidName(netns) {
            throw ValidationError("--netns: \"\(netns)\" is not a namespace name: give a name under /run/netns (no '/', not '.' or '..')")
        }
    }

    /// The operands after the node's words.
    func operands(_ positional: [String]) -> [String] { Array(positional.dropFirst(words)) }

    /// The node named, resolved against the lab's journal; a wrong lab or node prints the one error and exits 2.
    func resolve(_ positional: [String]) throws -> ResolvedNode {
        if let n = netns {
            let ns = NetworkNamespace(named: n)
            guard ns.exists else {
                Terminal.error("no network namespace \(n)")
                Terminal.hint("`ip netns list` lists them; a lab's node is named LAB NODE, without --netns")
                throw ExitStatus.badInput
            }
            return ResolvedNode(topology: nil, node: n, namespace: ns)
        }
        let labName = lab ?? positional[0]
        let node = positional[lab != nil ? 0 : 1]
        let topology = try Terminal.labThatIsUp(labName)
        guard LabNames.isNode(node) else {
            Terminal.error("\"\(visible(node))\" is not a node name (\(LabNames.nodeRule)); the nodes of lab \(labName): "
                           + topology.nodes.map(\.name).joined(separator: ", "))
            throw ExitStatus.badInput
        }
        guard topology.node(node) != nil else {
            let nodes = topology.nodes.map(\.name)
            Terminal.error("lab \(labName) has no node \(visible(node)); its nodes: \(nodes.joined(separator: ", "))")
            if let near = nearest(node, in: nodes) { Terminal.hint("did you mean \(near)?") }
            throw ExitStatus.badInput
        }
        let ns = NetworkNamespace(named: topology.namespace(of: node))
        guard ns.exists else {
            Terminal.error("node \(node) of lab \(labName) has no namespace \(ns.name) any more (the lab has drifted)")
            Terminal.hint("`netlab status \(labName)` shows the drift; `netlab down \(labName)` and `netlab up` rebuild it")
            throw ExitStatus.failed
        }
        return ResolvedNode(topology: topology, node: node, namespace: ns)
    }
}

struct ResolvedNode {
    /// The lab's topology as it was brought up (nil for --netns).
    var topology: Topology?
    var node: String
    var namespace: NetworkNamespace
}

/// Every command's JSON: `--json` prints it on standard output instead of text; `--json-file PATH` writes it to PATH
/// (`-`: standard output) and keeps the text on standard output.
struct JSONOutput: ParsableArguments {
    @Flag(help: "Print JSON on standard output instead of text.") var json = false
    @Option(help: ArgumentHelp("Also write the JSON to this file (- for standard output).", valueName: "path")) var jsonFile: String?

    func validate() throws {
        if json, jsonFile != nil { throw ValidationError("give --json or --json-file PATH, not both") }
    }

    /// The option's name and value as `oneStandardOutput` takes them.
    var named: (String, String?) { json ? ("--json", "-") : ("--json-file", jsonFile) }

    /// Where the JSON goes, checked before any work (exit 2 with the problem in plain words).
    func prepare() throws -> OutputTarget? {
        if json { return .standardOutput }
        return try jsonFile.map { try Terminal.output($0, option: "--json-file") }
    }
}

/// One value as JSON (indented, keys sorted, `Reports.jsonText`) to its target.
func emitJSON(_ value: some Encodable, to target: OutputTarget?, dates: JSONEncoder.DateEncodingStrategy = .deferredToDate) throws {
    guard let target else { return }
    try Terminal.write(try Reports.jsonText(value, dates: dates) + "\n", to: target)
}

/// `1 link`, `2 links`.
func count(_ n: Int, _ noun: String, _ plural: String? = nil) -> String { "\(n) \(n == 1 ? noun : plural ?? noun + "s")" }

/// The lookup options `route` and `explain` share, checked one way.
enum LookupOptions {
    static func protocolNumber(_ s: String) -> IPProtocol? { IPProtocol(s) }

    static func validate(from: String?, mark: String?, tos: String?, dev: String?, iif: String?, connect: Bool, ipproto: String) throws {
        if let f = from, IPv4Address(f) == nil { throw ValidationError("--from must be an IPv4 address") }
        _ = try SocketOption.mark(mark)
        _ = try SocketOption.tos(tos)
        if iif != nil, dev != nil { throw ValidationError("--iif and --dev exclude each other: an input lookup has no output device") }
        if iif != nil, connect { throw ValidationError("--iif asks for an input route; --connect is an output connect: use one") }
        if protocolNumber(ipproto) == nil { throw ValidationError("--ipproto must be tcp, udp, icmp or 0-255") }
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
        try emitJSON(value, to: .standardOutput, dates: dates)
    }

    /// An output option's value checked before any work: `-` is standard output; a problem exits 2.
    static func output(_ value: String, option: String) throws -> OutputTarget {
        do { return try OutputTarget.prepare(value, option: option) } catch {
            Terminal.error(error.problem.isEmpty ? error.path : "\(error.path): \(error.problem)")
            if let h = error.hint { hint(h) }
            throw ExitStatus.badInput
        }
    }

    /// A directory option (`--pcap-dir`) checked and made before any work; a problem exits 2.
    static func outputDirectory(_ value: String, option: String) throws -> String {
        do { return try OutputDirectory.prepare(value, option: option) } catch {
            Terminal.error("\(error.path): \(error.problem)")
            if let h = error.hint { hint(h) }
            throw ExitStatus.badInput
        }
    }

    /// Write to a prepared output; a failure (a full disk, a closed pipe) exits 1.
    static func write(_ text: String, to target: OutputTarget) throws {
        do { try target.write(text) } catch {
            Terminal.error(error.description)
            throw ExitStatus.failed
        }
    }

    /// At most one output option may be `-` (a usage error, from a command's `validate`).
    static func oneStandardOutput(_ options: [(String, String?)]) throws {
        let std = options.filter { $0.1 == "-" }.map(\.0)
        if std.count > 1 { throw ValidationError("\(std.joined(separator: " and ")) both name standard output (-): give one of them a file") }
    }

    /// Text for the reader: standard output, or standard error when standard output carries a report or a capture.
    nonisolated(unsafe) static var textToStandardError = false
    static func say(_ s: String) {
        if textToStandardError { note(s) } else { print(s) }
    }

    static let isTTY = isatty(2) == 1
    static var color: Bool { isTTY && ProcessInfo.processInfo.environment["NO_COLOR"] == nil }

    static func error(_ s: String) {
        fflush(nil)
        let prefix = color ? "\u{1B}[1;31merror:\u{1B}[0m " : "error: "
        FileHandle.standardError.write((prefix + s + "\n").data(using: .utf8)!)
    }
    static func note(_ s: String) {
        fflush(nil)   // what was printed first is read first, also with both streams on one terminal or file
        FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
    }
    static func hint(_ s: String) { note("   hint: " + s) }

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
        do { return try Topology.parse(try InputFile.readText(path), file: path == "-" ? "<stdin>" : path) } catch let e as TopologyError {
            FileHandle.standardError.write((e.rendered(color: color) + "\n").data(using: .utf8)!)
            throw ExitStatus.badInput
        } catch let e as FileProblem {
            fileProblem(e)
            throw ExitStatus.badInput
        }
    }

    /// `PATH: error: what is wrong`, and the hint: a file that cannot be a topology file.
    static func fileProblem(_ e: FileProblem) {
        let bold = color ? "\u{1B}[1m" : "", red = color ? "\u{1B}[1;31m" : "", reset = color ? "\u{1B}[0m" : ""
        fflush(nil)
        FileHandle.standardError.write("\(bold)\(e.place):\(reset) \(red)error:\(reset) \(e.problem)\n".data(using: .utf8)!)
        if let h = e.hint { hint(h) }
    }

    /// The topology of a lab that is up; a name that is no lab that is up lists those that are, exit 2.
    static func labThatIsUp(_ lab: String) throws -> Topology {
        guard LabNames.isLab(lab) else {
            error("\"\(visible(lab))\" is not a lab name (\(LabNames.labRule))")
            throw ExitStatus.badInput
        }
        if let t = try LabSession.topology(ofLab: lab) { return t }
        notUp(lab)
        throw ExitStatus.badInput
    }

    /// `down` of a lab that is not up: not an error (down is idempotent), but say which labs are.
    static func notUpNote(_ lab: String) {
        let up = Journal.labs()
        note("   no lab \(lab) is up; " + (up.isEmpty ? "no lab is up" : "labs that are up: \(up.joined(separator: ", "))"))
        if let near = nearest(lab, in: up) { hint("did you mean \(near)?") }
    }

    /// "no lab X is up", the labs that are, and the nearest name.
    static func notUp(_ lab: String) {
        let up = Journal.labs()
        error("no lab \(visible(lab)) is up" + (up.isEmpty ? "; no lab is up" : "; labs that are up: \(up.joined(separator: ", "))"))
        if let near = nearest(lab, in: up) { hint("did you mean \(near)?") } else if up.isEmpty { hint("`netlab up FILE` brings a lab up") }
    }
}
