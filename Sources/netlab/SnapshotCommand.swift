import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    /// `netlab snapshot`: a host's routing state (the caller's namespace, or a named one) as a lab file. Read-only.
    struct Snapshot: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a namespace's routing state (this host's by default) as a lab file: the host and a peer per device.",
            discussion: """
                The clone is a lab like any other: `netlab up` it, add checks, try `netlab set` changes without touching \
                the host. Nothing is changed on the host. Exit status: 0 written, 1 the state could not be read, 2 bad input.
                """)
        @OptionGroup var namespace: NamespaceOption
        @Option(help: "The clone's lab name.") var name = LabName(name: "clone")
        @Option(help: "The host's node name in the clone.") var node = NodeName(name: "host")
        @Option(help: ArgumentHelp("TCP ports the peers listen on (comma-separated).", valueName: "ports")) var ports = PortList(ports: [80, 443])
        @Option(name: [.short, .long], help: ArgumentHelp("Write the file here (- for standard output).", valueName: "path")) var output = OutputPath("-")
        @Flag(help: "Write the routing state as the resolver reads it (RoutingSnapshot, JSON) instead of a lab file.") var json = false

        func run() throws {
            let target = try output.prepare(option: "--output")
            let ns = try namespace.existing()
            let (snapshot, sysctls) = try Self.read(ns)
            if json {
                // What scripts/record-resolver-fixtures stores beside the kernel's answers (Tests/ResolverTests/Fixtures).
                let encoder = JSONEncoder()
                encoder.keyEncodingStrategy = .convertToSnakeCase
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                try Terminal.write(String(decoding: try encoder.encode(snapshot), as: UTF8.self) + "\n", to: target)
                return
            }
            let clone = HostClone(snapshot: snapshot, sysctls: sysctls, lab: name.name, node: node.name, ports: ports.ports,
                                  origin: ns.map { "namespace \($0.name)" } ?? "this host")
            try Terminal.write(clone.text, to: target)
        }

        /// Links, addresses, routes of every table, rules and the sysctls the clone carries, read in the namespace.
        static func read(_ namespace: NetworkNamespace?) throws -> (RoutingSnapshot, [String: String]) {
            let body = { () throws -> (RoutingSnapshot, [String: String]) in
                // The one snapshot reader (links, addresses, routes, rules, nexthop objects with their buckets), in the
                // namespace this thread is in; then the sysctls the clone carries.
                let snap = try RoutingSnapshot.read(socket: try NetlinkSocket(), namespace: nil)
                var values: [String: String] = [:]
                for k in HostClone.keys(devices: snap.links.map(\.name)) { values[k.key] = try? Sysctls.read(k.path) }
                return (snap, values)
            }
            do {
                if let namespace { return try namespace.run(body) }
                return try body()
            } catch {
                Terminal.error("cannot read the routing state\(namespace.map { " of \($0.name)" } ?? ""): \(error)")
                throw ExitStatus.failed
            }
        }
    }
}
