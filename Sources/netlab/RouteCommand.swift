import ArgumentParser
import CNetSys
import Foundation
import NetLab

/// `netlab route`: the resolver's answer beside the kernel's, for one lookup or for connect's lookup sequence.
struct Route: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Resolve a route as Linux does and compare with the kernel (RTM_GETROUTE, or a real connect).",
        usage: "netlab route (LAB NODE | --netns NAME) DEST [--from A] [--dev IF | --iif IF] [--mark M] [--tos T] [--ipproto P] [--sport N] [--dport N] [--uid U] [--connect] [--trace] [--json | --json-file PATH]",
        discussion: "Exit status: 0 the resolver and the kernel agree, 1 they do not, 2 bad input (an unknown lab or node, a bad option).")
    @OptionGroup var target: NodeTarget
    @Argument(help: ArgumentHelp("LAB NODE DEST (DEST alone with --netns).", valueName: "lab node dest"), completion: .custom(Completions.labThenNode)) var positional: [String]
    @Option(help: "Source address (ip route get ... from A).") var from: String?
    @Option(help: "Output device (oif; SO_BINDTODEVICE with --connect).") var dev: String?
    @Option(help: "Input device: the route of a packet from --from arriving on IF (ip route get ... iif IF).") var iif: String?
    @Option(help: "Firewall mark (decimal or 0x hex).") var mark: String?
    @Option(help: "TOS byte.") var tos: String?
    @Option(help: "IP protocol: tcp, udp, icmp or a number.") var ipproto: String = "tcp"
    @Option(help: "Source port.") var sport: UInt16 = 0
    @Option(help: "Destination port (default 80 with --connect).") var dport: UInt16?
    @Option(help: "The socket owner's uid.") var uid: UInt32 = 0
    @Flag(help: "Resolve as connect() does (lookup sequence) and compare with a real kernel connect.") var connect = false
    @Flag(help: "Show the decision trace.") var trace = false
    @OptionGroup var output: JSONOutput

    func validate() throws {
        try target.validate(positional, operands: ["DEST"])
        guard IPv4Address(positional.last!) != nil else { throw ValidationError("DEST must be an IPv4 address") }
        try LookupOptions.validate(from: from, mark: mark, tos: tos, dev: dev, iif: iif, connect: connect, ipproto: ipproto)
    }

    var protoNumber: IPProtocol? { LookupOptions.protocolNumber(ipproto) }

    func run() throws {
        let out = try output.prepare()
        try Terminal.requireRoot("route")
        let node = try target.resolve(positional)
        let ns = node.namespace
        let query = RouteQuery(destination: IPv4Address(positional.last!)!, source: from.flatMap(IPv4Address.init) ?? .any,
                               device: dev, mark: try SocketOption.mark(mark) ?? 0,
                               tos: try SocketOption.tos(tos) ?? 0, proto: protoNumber!, sourcePort: sport,
                               destinationPort: dport ?? (connect ? 80 : 0), uid: uid, inputDevice: iif)
        let c = try RouteComparison.run(query, in: ns, connect: connect)
        // Tables by the file's names where the lab names them (`isp2`, not 102).
        let names: RouteComparison.TableNames = node.topology.map { t in { t.tableName($0) } } ?? RouteComparison.builtinTableNames
        if out != .standardOutput { print(c.text(withTrace: trace, tableNames: names)) }
        try emitJSON(c.report(withTrace: trace, tableNames: names), to: out)
        if !c.agree { throw ExitStatus.failed }
    }
}

