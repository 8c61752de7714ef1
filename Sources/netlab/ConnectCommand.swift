import ArgumentParser
import Foundation
import NetLab

/// `netlab connect`: the engine's connect on the wire, optionally beside the kernel's.
struct Connect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the connect engine from a node (raw sockets) and show source, device, next hop and the path; --kernel compares with a kernel connect.",
        usage: "netlab connect (--lab LAB NODE | --netns NAME) DEST:PORT [--bind ADDR[:PORT]] [--dev IF] [--mark M] [--tos T] [--lsrr HOP,HOP...|--ssrr HOP,HOP...] [--payload TEXT] [--syn-retries N] [--kernel] [--pcap FILE] [--trace] [--json]")
    @OptionGroup var target: NodeTarget
    @Argument(help: "NODE DEST:PORT with --lab, DEST:PORT with --netns.") var positional: [String]
    @Option(help: "bind() first: ADDR or ADDR:PORT.") var bind: String?
    @Option(help: "SO_BINDTODEVICE.") var dev: String?
    @Option(help: "SO_MARK (decimal or 0x hex).") var mark: String?
    @Option(help: "IP_TOS.") var tos: String?
    @Option(help: "Loose source route through these hops (comma-separated).") var lsrr: String?
    @Option(help: "Strict source route through these hops (comma-separated).") var ssrr: String?
    @Option(help: "Send this once established; the listener echoes it.") var payload: String?
    @Option(help: "TCP_SYNCNT.") var synRetries: Int?
    @Flag(help: "Also connect through a kernel socket and compare field by field.") var kernel = false
    @Option(help: "Write both connects' frames from every interface to this pcapng file.") var pcap: String?
    @Flag(help: "Show the engine's decision trace.") var trace = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        try target.validate(positional, operand: "DEST:PORT")
        if endpoint(positional.last!, needPort: true) == nil { throw ValidationError("DEST:PORT must look like 192.0.2.80:80") }
        if let b = bind, endpoint(b, needPort: false) == nil { throw ValidationError("--bind must be ADDR or ADDR:PORT") }
        if lsrr != nil && ssrr != nil { throw ValidationError("give --lsrr or --ssrr, not both") }
        if let r = lsrr ?? ssrr, hops(r) == nil { throw ValidationError("source-route hops must be IPv4 addresses separated by commas (1 to 8)") }
        _ = try SocketOption.mark(mark)
        _ = try SocketOption.tos(tos)
        if let n = synRetries, !(1...127).contains(n) { throw ValidationError("--syn-retries must be from 1 to 127") }
    }

    func endpoint(_ s: String, needPort: Bool) -> (IPv4Address, UInt16?)? {
        let p = s.split(separator: ":", omittingEmptySubsequences: false)
        guard p.count <= 2, let a = IPv4Address(p[0]) else { return nil }
        if p.count == 2 { guard let port = UInt16(p[1]) else { return nil }; return (a, port) }
        return needPort ? nil : (a, nil)
    }

    func hops(_ s: String) -> [IPv4Address]? {
        let h = s.split(separator: ",").compactMap { IPv4Address($0) }
        return h.count == s.split(separator: ",").count && (1...8).contains(h.count) ? h : nil
    }

    func run() throws {
        try Terminal.requireRoot("connect")
        let (dest, port) = endpoint(positional.last!, needPort: true)!
        var spec = ConnectSpec(destination: dest, port: port!)
        if let b = bind.flatMap({ endpoint($0, needPort: false) }) { spec.bindAddress = b.0; spec.bindPort = b.1 }
        spec.device = dev
        spec.mark = try SocketOption.mark(mark)
        spec.tos = try SocketOption.tos(tos)
        if let r = lsrr { spec.sourceRoute = (false, hops(r)!) }
        if let r = ssrr { spec.sourceRoute = (true, hops(r)!) }
        spec.payload = payload.map { Array($0.utf8) }
        spec.synRetries = synRetries

        var session: LabSession?
        let scope: ConnectScope
        if let lab = target.lab {
            guard let t = try LabSession.topology(ofLab: lab) else {
                Terminal.error("lab \(lab) is not up (`netlab up FILE` first; `netlab status` lists labs)")
                throw ExitStatus.failed
            }
            guard t.node(positional[0]) != nil else {
                Terminal.error("lab \(lab) has no node \(positional[0]); its nodes: \(t.nodes.map(\.name).joined(separator: ", "))")
                throw ExitStatus.badInput
            }
            session = try LabSession(topology: t)
            scope = session!.scope(from: positional[0])
        } else {
            let ns = target.namespace(positional)
            guard ns.exists else { Terminal.error("no namespace \(ns.name) (`ip netns list`)"); throw ExitStatus.failed }
            scope = ConnectScope(sourceNode: ns.name, nodes: [(ns.name, ns)])
        }
        let c = try ConnectRun.run(spec, scope: scope, kernel: kernel, pcap: pcap)
        session = nil
        if json {
            var copy = c
            if !trace { copy.engine.trace = []; copy.kernel?.trace = [] }
            try Terminal.printJSON(copy)
        } else {
            print(ConnectText.render(c, trace: trace))
        }
        if kernel && !c.agree { throw ExitStatus.failed }
        if !kernel && !c.differences.isEmpty { throw ExitStatus.failed }
    }
}
