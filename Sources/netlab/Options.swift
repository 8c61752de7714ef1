import ArgumentParser
import Foundation
import NetLab

// The option groups more than one command declares (`@OptionGroup`): how a node is named, where JSON goes, the
// lookup options of `route` and `explain`. `--netns` is `NamespaceOption` (ArgumentTypes.swift).

/// How every command names a node: `LAB NODE` (a node of a lab that is up), or `--netns NAME` in their place for a
/// namespace netlab did not make. `route`, `connect`, `exec`, `set` and `capture` take it the same way and answer a
/// wrong name the same way: the lab's nodes (or the labs that are up) listed, exit 2.
///
/// The node's words are the first of the command's positional words (`@Argument var positional: [String]`: with
/// --netns there are none, so LAB and NODE cannot be arguments of their own), followed by the command's operands,
/// each parsed by its `ArgumentValue` type (`operand(_:_:as:)`).
struct NodeTarget: ParsableArguments {
    @OptionGroup var namespace: NamespaceOption
    /// The form before LAB NODE (`--lab LAB NODE`): still read so users' scripts keep working, with a warning that
    /// says what to type instead; not in the help.
    @Option(help: .hidden) var lab: String?

    var netns: NamespaceName? { namespace.netns }

    /// How many leading positional words name the node.
    var words: Int { netns != nil ? 0 : lab != nil ? 1 : 2 }

    func validate() throws {
        if netns != nil, lab != nil { throw ValidationError("give LAB NODE or --netns NAME, not both") }
    }

    /// `positional` holds the node's words then one word per operand (their names for the usage message). The
    /// deprecated `--lab` says, on standard error, the command line to type instead.
    func validate(_ positional: [String], operands: [String]) throws {
        let want = words + operands.count
        guard positional.count == want else {
            let node = netns != nil ? "" : lab != nil ? "NODE " : "LAB NODE "
            throw ValidationError("give \(node)\(operands.joined(separator: " "))" + (positional.count > want ? " (too many arguments)" : ""))
        }
        if let lab { Terminal.warning("--lab LAB NODE is the old form of LAB NODE; type instead: \(Self.withoutLab(CommandLine.arguments, lab: lab))") }
    }

    /// The command line with `--lab LAB` (or `--lab=LAB`) removed and LAB put first after the subcommand.
    static func withoutLab(_ argv: [String], lab: String) -> String {
        var a = Array(argv.dropFirst())
        if let i = a.firstIndex(of: "--lab"), i + 1 < a.count { a.removeSubrange(i...(i + 1)) } else { a.removeAll { $0.hasPrefix("--lab=") } }
        if !a.isEmpty { a.insert(lab, at: 1) }
        return (["netlab"] + a).map { w in w.isEmpty || w.contains(where: { " \"'$`\\".contains($0) }) ? "'\(w.replacingOccurrences(of: "'", with: "'\\''"))'" : w }
            .map { visible($0) }.joined(separator: " ")
    }

    /// The operands after the node's words.
    func operands(_ positional: [String]) -> [String] { Array(positional.dropFirst(words)) }

    /// Operand `k` after the node's words, parsed by its type; a bad word is a usage error naming it (after
    /// `named: ` when the type's words do not say which operand it is).
    func operand<T: ArgumentValue>(_ positional: [String], _ k: Int = 0, named: String? = nil, as type: T.Type) throws -> T {
        do { return try T.parse(positional[words + k]) } catch {
            throw ValidationError((named.map { "\($0): " } ?? "") + error.description)
        }
    }

    /// The node named, resolved against the lab's journal; a wrong lab or node prints the one error and exits 2.
    func resolve(_ positional: [String]) throws -> ResolvedNode {
        if let ns = try namespace.existing() { return ResolvedNode(topology: nil, node: ns.name, namespace: ns) }
        return try Self.resolve(lab: lab ?? positional[0], node: positional[lab != nil ? 0 : 1])
    }

    /// A node of a lab that is up, by its two words (`exec`, `set`, `capture` take them as their own arguments).
    static func resolve(lab labName: String, node: String) throws -> ResolvedNode {
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
    @Option(help: ArgumentHelp("Also write the JSON to this file (- for standard output).", valueName: "path")) var jsonFile: OutputPath?

    func validate() throws {
        if json, jsonFile != nil { throw ValidationError("give --json or --json-file PATH, not both") }
    }

    /// The option's name and value as `oneStandardOutput` takes them.
    var named: (String, String?) { json ? ("--json", "-") : ("--json-file", jsonFile?.path) }

    /// Where the JSON goes, checked before any work (exit 2 with the problem in plain words).
    func prepare() throws -> OutputTarget? {
        if json { return .standardOutput }
        return try jsonFile.map { try $0.prepare(option: "--json-file") }
    }
}

/// The lookup options `route` and `explain` share (`ip route get`'s words), each parsed by its type.
struct LookupOptions: ParsableArguments {
    @Option(help: "Source address (ip route get ... from A; a bound address with --connect).")
    var from: IPv4Address?
    @Option(help: "Output device (oif; SO_BINDTODEVICE with --connect).") var dev: String?
    @Option(help: "Input device: the route of a packet from --from arriving on IF (ip route get ... iif IF).") var iif: String?
    @Option(help: "Firewall mark (decimal or 0x hex).") var mark: Mark?
    @Option(help: "TOS byte (decimal or 0x hex).") var tos: TOS?
    @Option(help: "IP protocol: tcp, udp, icmp or a number.") var ipproto: IPProtocol = .tcp
    @Option(help: "The socket owner's uid.") var uid: UInt32 = 0

    func validate() throws {
        if iif != nil, dev != nil { throw ValidationError("--iif and --dev exclude each other: an input lookup has no output device") }
    }

    /// `--iif` with `--connect` (each command's own flag).
    func validate(connect: Bool) throws {
        if iif != nil, connect { throw ValidationError("--iif asks for an input route; --connect is an output connect: use one") }
    }
}
