import ArgumentParser
import Foundation
import NetLab

/// `netlab explain`: the live host's routing decision with the why, beside the kernel's answer. Read-only.
struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explain a route (or connect's lookups) in this host's namespace, or a named one, beside the kernel.",
        usage: "netlab explain [--netns NAME] DEST[:PORT] [--from A] [--dev IF] [--iif IF] [--mark M] [--tos T] [--uid U] [--ipproto P] [--sport N] [--connect] [--json | --json-file PATH]",
        discussion: """
            Reads the namespace's links, addresses, routes, rules, nexthop objects and sysctls, resolves as Linux does \
            (one lookup, or with --connect the lookups connect() makes: the source, then with it, then with the port), \
            and prints which rules were tried and why, which route won in its table and over which others, which source \
            and why, and how lookups 2 and 3 differed from the first. It asks the kernel the same question through \
            RTM_GETROUTE (no packet is sent, nothing changes). Without root it works on this process's own namespace \
            (every read it needs is allowed); --netns needs root (setns). \
            Exit status: 0 the explanation agrees with the kernel, 1 it does not, 2 bad input.
            """)
    @Option(help: "A named network namespace (/run/netns/NAME) instead of this process's.") var netns: String?
    @Argument(help: ArgumentHelp("The destination, with the port for --connect (default 80).", valueName: "dest[:port]")) var destination: String
    @Option(help: "Source address (a bound address with --connect).") var from: String?
    @Option(help: "Output device (SO_BINDTODEVICE with --connect).") var dev: String?
    @Option(help: "Input device: the route of a packet from --from arriving on IF.") var iif: String?
    @Option(help: "Firewall mark (decimal or 0x hex).") var mark: String?
    @Option(help: "TOS byte.") var tos: String?
    @Option(help: "The socket owner's uid.") var uid: UInt32 = 0
    @Option(help: "IP protocol for one lookup: tcp, udp, icmp or a number.") var ipproto: String = "tcp"
    @Option(help: "Source port (for --connect: the port lookup #3 uses; default the first of ip_local_port_range).") var sport: UInt16?
    @Flag(help: "Explain connect()'s lookups (ConnectRoute.decide) instead of one lookup.") var connect = false
    @OptionGroup var output: JSONOutput

    var parsed: (IPv4Address, UInt16?)? {
        let parts = destination.split(separator: ":", maxSplits: 1)
        guard let a = IPv4Address(parts[0]) else { return nil }
        if parts.count == 2 { guard let p = UInt16(parts[1]), p > 0 else { return nil }; return (a, p) }
        return (a, nil)
    }
    var protoNumber: IPProtocol? { LookupOptions.protocolNumber(ipproto) }

    func validate() throws {
        if let netns, !NetworkNamespace.isValidName(netns) {
            throw ValidationError("--netns: \"\(netns)\" is not a namespace name: give a name under /run/netns (no '/', not '.' or '..')")
        }
        guard parsed != nil else { throw ValidationError("DEST must be an IPv4 address, optionally with :PORT (1-65535)") }
        try LookupOptions.validate(from: from, mark: mark, tos: tos, dev: dev, iif: iif, connect: connect, ipproto: ipproto)
    }

    func run() throws {
        let out = try output.prepare()
        if netns != nil { try Terminal.requireRoot("explain --netns") }
        let namespace = netns.map(NetworkNamespace.init(named:))
        if let namespace, !namespace.exists {
            Terminal.error("no namespace \(namespace.name) under /run/netns")
            throw ExitStatus.badInput
        }
        let (dest, port) = parsed!
        let body = { () throws -> Explanation in
            let socket = try NetlinkSocket()
            let snapshot = try RoutingSnapshot.read(socket: socket, namespace: nil)
            if let d = dev ?? iif, !snapshot.links.contains(where: { $0.name == d }) {
                throw ValidationError("no device \(d) here; devices: \(snapshot.links.map(\.name).joined(separator: ", "))")
            }
            let range = snapshot.sysctls["net.ipv4.ip_local_port_range"]?.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { UInt16($0) } ?? 32768
            let q = RouteQuery(destination: dest, source: from.flatMap(IPv4Address.init) ?? .any, device: dev,
                               mark: try SocketOption.mark(mark) ?? 0, tos: try SocketOption.tos(tos) ?? 0,
                               proto: connect ? .tcp : protoNumber!, sourcePort: connect ? 0 : (sport ?? 0),
                               destinationPort: port ?? (connect ? 80 : 0), uid: uid, inputDevice: iif)
            let e = Explanation.explain(q, resolver: FibResolver(snapshot: snapshot), socket: socket, connect: connect,
                                        port: sport ?? range)
            return e
        }
        let e: Explanation
        do {
            e = try namespace.map { try $0.run(body) } ?? body()
        } catch let v as ValidationError {
            Terminal.error(v.message)
            throw ExitStatus.badInput
        }
        if out != .standardOutput { print(e.text(tableName: { RoutingTable.builtinName($0) ?? String($0) })) }
        try emitJSON(e.report, to: out)
        if !e.agree { throw ExitStatus.failed }
    }
}
