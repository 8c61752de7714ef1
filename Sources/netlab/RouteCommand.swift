import ArgumentParser
import CNetSys
import Foundation
import NetLab

extension Netlab {
    /// `netlab route`: the resolver's answer beside the kernel's, for one lookup or for connect's lookup sequence.
    struct Route: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resolve a route as Linux does and compare with the kernel (RTM_GETROUTE, or a real connect).",
            discussion: "Exit status: 0 the resolver and the kernel agree, 1 they do not, 2 bad input (an unknown lab or node, a bad option).")
        @OptionGroup var target: NodeTarget
        @Argument(help: ArgumentHelp("LAB NODE DEST (DEST alone with --netns).", valueName: "lab node dest"), completion: .custom(Completions.labThenNode)) var positional: [String]
        @OptionGroup var lookup: LookupOptions
        @Option(help: "Source port.") var sport: UInt16 = 0
        @Option(help: "Destination port (default 80 with --connect).") var dport: UInt16?
        @Flag(help: "Resolve as connect() does (lookup sequence) and compare with a real kernel connect.") var connect = false
        @Flag(help: "Show the decision trace.") var trace = false
        @OptionGroup var output: JSONOutput

        func validate() throws {
            try target.validate(positional, operands: ["DEST"])
            _ = try destination()
            try lookup.validate(connect: connect)
        }

        func destination() throws -> IPv4Address { try target.operand(positional, named: "DEST", as: IPv4Address.self) }

        func run() throws {
            let out = try output.prepare()
            try Terminal.requireRoot("route")
            let node = try target.resolve(positional)
            let ns = node.namespace
            let query = RouteQuery(destination: try destination(), source: lookup.from ?? .any,
                                   device: lookup.dev, mark: lookup.mark?.value ?? 0,
                                   tos: lookup.tos?.value ?? 0, proto: lookup.ipproto, sourcePort: sport,
                                   destinationPort: dport ?? (connect ? 80 : 0), uid: lookup.uid, inputDevice: lookup.iif)
            let c = try RouteComparison.run(query, in: ns, connect: connect)
            // Tables by the file's names where the lab names them (`isp2`, not 102).
            let names: RouteComparison.TableNames = node.topology.map { t in { t.tableName($0) } } ?? RouteComparison.builtinTableNames
            if out != .standardOutput { print(c.text(withTrace: trace, tableNames: names)) }
            try emitJSON(c.report(withTrace: trace, tableNames: names), to: out)
            if !c.agree { throw ExitStatus.failed }
        }
    }
}
