import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    /// `netlab connect`: the engine's connect on the wire, optionally beside the kernel's.
    struct Connect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the connect engine from a node (raw sockets) and show source, device, next hop and the path; --kernel compares with a kernel connect.",
            discussion: """
                Exit status (the engine's outcome; with --kernel, the outcome both agree on):
                  0 established, 3 refused (ECONNREFUSED), 4 timed out (ETIMEDOUT), 5 unreachable (ENETUNREACH,
                  EHOSTUNREACH), 6 another error (EACCES, EADDRINUSE, EINVAL, ...); 1 engine and kernel differ, or the
                  connect could not be run; 2 bad input (an unknown lab, node or --dev device, a bad option); 130/143
                  interrupted.
                """)
        @OptionGroup var target: NodeTarget
        @Argument(help: ArgumentHelp("LAB NODE DEST:PORT (DEST:PORT alone with --netns).", valueName: "lab node dest:port"), completion: .custom(Completions.labThenNode)) var positional: [String]
        @Option(help: "bind() first: ADDR or ADDR:PORT.") var bind: BindAddress?
        @Option(help: "SO_BINDTODEVICE.") var dev: String?
        @Option(help: "SO_MARK (decimal or 0x hex).") var mark: Mark?
        @Option(help: "IP_TOS (decimal or 0x hex).") var tos: TOS?
        @Option(help: "Loose source route through these hops (comma-separated).") var lsrr: SourceRouteHops?
        @Option(help: "Strict source route through these hops (comma-separated).") var ssrr: SourceRouteHops?
        @Option(help: "Send this once established; the listener echoes it.") var payload: String?
        @Option(help: "TCP_SYNCNT (1-127).") var synRetries: SynRetries?
        @Flag(help: "Also connect through a kernel socket and compare field by field.") var kernel = false
        @Option(help: "Write both connects' frames from every interface to this pcapng file (- for standard output).") var pcap: OutputPath?
        @Flag(help: "Show the engine's decision trace.") var trace = false
        @OptionGroup var output: JSONOutput

        /// The exit status for a connect's outcome (documented in docs/commands.md).
        static func exitStatus(_ result: ConnectResult) -> Int32 {
            switch result {
            case .established: 0
            case .refused: 3
            case .timeout: 4
            case .unreachable: 5
            case .error: 6
            }
        }

        func validate() throws {
            try target.validate(positional, operands: ["DEST:PORT"])
            try Terminal.oneStandardOutput([output.named, ("--pcap", pcap?.path)])
            _ = try destination()
            if lsrr != nil && ssrr != nil { throw ValidationError("give --lsrr or --ssrr, not both") }
        }

        func destination() throws -> Endpoint { try target.operand(positional, as: Endpoint.self) }

        func run() throws {
            let out = try output.prepare()
            let capture = try pcap.map { try $0.prepare(option: "--pcap") }
            // A capture on standard output (`| tshark -r -`) leaves the text to standard error.
            if capture == .standardOutput { Terminal.textToStandardError = true }
            try Terminal.requireRoot("connect")
            let dest = try destination()
            var spec = ConnectSpec(destination: dest.address, port: dest.port)
            if let bind { spec.bindAddress = bind.address; spec.bindPort = bind.port }
            spec.device = dev
            spec.mark = mark?.value
            spec.tos = tos?.value
            if let r = lsrr { spec.sourceRoute = SourceRoute(strict: false, hops: r.hops) }
            if let r = ssrr { spec.sourceRoute = SourceRoute(strict: true, hops: r.hops) }
            spec.payload = payload.map { Array($0.utf8) }
            spec.synRetries = synRetries?.value

            let node = try target.resolve(positional)
            if let dev {
                let devices = try NetlinkSocket(in: node.namespace).links.list().map(\.name)
                guard devices.contains(dev) else {
                    Terminal.error("node \(node.node) has no device \(visible(dev)); its devices: \(devices.joined(separator: ", "))")
                    if let near = nearest(dev, in: devices) { Terminal.hint("did you mean \(near)?") }
                    throw ExitStatus.badInput
                }
            }
            var session: LabSession?
            let scope: ConnectScope
            if let t = node.topology {
                session = try LabSession.open(t, bringUp: .no)
                scope = session!.scope(from: node.node)
            } else {
                scope = ConnectScope(sourceNode: node.namespace.name, nodes: [(node.namespace.name, node.namespace)])
            }
            let v = try ConnectRun.run(spec, scope: scope, kernel: kernel, pcap: capture)
            let c = ConnectComparison(v)
            session = nil
            if out != .standardOutput { Terminal.say(ConnectText.render(c, trace: trace)) }
            var copy = c
            if !trace { copy.engine.trace = []; copy.kernel?.trace = [] }
            try emitJSON(copy, to: out)
            if !c.agree { throw ExitStatus.failed }
            let status = Self.exitStatus(v.engine.result)
            if status != 0 { throw ExitCode(status) }
        }
    }
}
