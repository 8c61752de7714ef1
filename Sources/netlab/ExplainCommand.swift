import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    /// `netlab explain`: the live host's routing decision with the why, beside the kernel's answer. Read-only.
    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Explain a route (or connect's lookups) in this host's namespace, or a named one, beside the kernel.",
            discussion: """
                Reads the namespace's links, addresses, routes, rules, nexthop objects and sysctls, resolves as Linux does \
                (one lookup, or with --connect the lookups connect() makes: the source, then with it, then with the port), \
                and prints which rules were tried and why, which route won in its table and over which others, which source \
                and why, and how lookups 2 and 3 differed from the first. It asks the kernel the same question through \
                RTM_GETROUTE (no packet is sent, nothing changes). Without root it works on this process's own namespace \
                (every read it needs is allowed); --netns needs root (setns). \
                Exit status: 0 the explanation agrees with the kernel, 1 it does not, 2 bad input.
                """)
        @OptionGroup var namespace: NamespaceOption
        @Argument(help: ArgumentHelp("The destination, with the port for --connect (default 80).", valueName: "dest[:port]")) var destination: Destination
        @OptionGroup var lookup: LookupOptions
        @Option(help: "Source port (for --connect: the port lookup #3 uses; default the first of ip_local_port_range).") var sport: UInt16?
        @Flag(help: "Explain connect()'s lookups (ConnectRoute.decide) instead of one lookup.") var connect = false
        @OptionGroup var output: JSONOutput

        func validate() throws {
            try lookup.validate(connect: connect)
        }

        func run() throws {
            let out = try output.prepare()
            if namespace.netns != nil { try Terminal.requireRoot("explain --netns") }
            let namespace = try self.namespace.existing()
            let (dest, port) = (destination.address, destination.port)
            let body = { () throws -> Explanation in
                let socket = try NetlinkSocket()
                let snapshot = try RoutingSnapshot.read(socket: socket, namespace: nil)
                if let d = lookup.dev ?? lookup.iif, !snapshot.links.contains(where: { $0.name == d }) {
                    throw BadArgument("no device \(d) here; devices: \(snapshot.links.map(\.name).joined(separator: ", "))")
                }
                let range = snapshot.sysctls["net.ipv4.ip_local_port_range"]?.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { UInt16($0) } ?? 32768
                let q = RouteQuery(destination: dest, source: lookup.from ?? .any, device: lookup.dev,
                                   mark: lookup.mark?.value ?? 0, tos: lookup.tos?.value ?? 0,
                                   proto: connect ? .tcp : lookup.ipproto, sourcePort: connect ? 0 : (sport ?? 0),
                                   destinationPort: port ?? (connect ? 80 : 0), uid: lookup.uid, inputDevice: lookup.iif)
                let e = Explanation.explain(q, resolver: FibResolver(snapshot: snapshot), socket: socket, connect: connect,
                                            port: sport ?? range)
                return e
            }
            let e: Explanation
            do {
                e = try namespace.map { try $0.run(body) } ?? body()
            } catch let v as BadArgument {
                Terminal.error(v.description)
                throw ExitStatus.badInput
            }
            if out != .standardOutput { print(e.text(tableName: { RoutingTable.builtinName($0) ?? String($0) })) }
            try emitJSON(e.report, to: out)
            if !e.agree { throw ExitStatus.failed }
        }
    }
}
