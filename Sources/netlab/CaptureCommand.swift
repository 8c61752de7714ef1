import ArgumentParser
import CNetSys
import Foundation
import Glibc
import NetLab

extension Netlab {
    /// `netlab capture LAB NODE IF`: a pcapng stream of one interface of a node, until Ctrl-C.
    struct Capture: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stream a pcapng capture of a node's interface until Ctrl-C (for tshark or Wireshark).",
            discussion: """
                The interface is named node:if in the capture and every packet carries its direction (pcapng epb_flags). \
                Without -w, the capture goes to standard output when that is not a terminal (netlab capture LAB NODE IF \
                | tshark -r -). Exit status: 0 after Ctrl-C (or SIGTERM), 2 for an unknown lab, node or interface.
                """)
        @Argument(help: "The lab.", completion: .custom(Completions.labs)) var lab: String
        @Argument(help: "The node.", completion: .custom(Completions.nodes)) var node: String
        @Argument(help: "The interface.", completion: .custom(Completions.interfaces)) var interface: String
        @Option(name: .customShort("w"), help: ArgumentHelp("Write the pcapng to this file (- for standard output).", valueName: "file"))
        var write: OutputPath?

        func run() throws {
            try Terminal.requireRoot("capture")
            let target = try NodeTarget.resolve(lab: lab, node: node)
            let links = try NetlinkSocket(in: target.namespace).links.list()
            guard let link = links.first(where: { $0.name == interface }) else {
                let names = links.map(\.name)
                Terminal.error("node \(node) of lab \(lab) has no interface \(visible(interface)); its interfaces: \(names.joined(separator: ", "))")
                if let near = nearest(interface, in: names) { Terminal.hint("did you mean \(near)?") }
                throw ExitStatus.badInput
            }
            if write == nil, isatty(1) == 1 {
                Terminal.error("a pcapng capture is binary: give -w FILE, or pipe it (netlab capture \(lab) \(node) \(interface) | tshark -r -)")
                throw ExitStatus.badInput
            }
            let out = try (write ?? OutputPath("-")).prepare(option: "-w")
            if out == .standardOutput { Terminal.textToStandardError = true }
            Interrupts.trap()
            let socket = try PacketSocket(in: target.namespace, filter: .everything)
            let stream = try out.stream()
            let name = "\(node):\(interface)"
            var file = PcapNG()
            file.addInterface(name)
            try stream.write(file.take())
            Terminal.note("capturing on \(name) (lab \(lab)); Ctrl-C stops")
            var packets = 0
            while Interrupts.signal == nil {
                guard socket.wait(timeoutNanoseconds: 200_000_000) else { continue }
                for f in try socket.drain() where f.ifindex == link.index {
                    file.add(f.bytes, interface: name, time: f.time, direction: f.isOutgoing ? .outbound : .inbound)
                    packets += 1
                }
                try stream.write(file.take())
            }
            try stream.finish()
            Terminal.note("\(count(packets, "packet")) captured on \(name)" + (out == .standardOutput ? "" : " into \(out)"))
        }
    }
}
