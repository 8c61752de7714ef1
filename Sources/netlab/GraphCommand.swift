import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    /// `netlab graph FILE`: the topology laid out by Graphviz, as SVG (or the DOT it is drawn from).
    struct Graph: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Draw a topology: SVG laid out by Graphviz's dot, or the DOT source.",
            discussion: "Interface names sit at their ends of each link, LAN segments are nodes of their own. Needs Graphviz (apt-get install graphviz) for SVG.")
        @Argument(help: "The topology file.") var file: String
        @Option(help: "The drawing: SVG, or the DOT source it is laid out from.") var format: GraphFormat = .svg
        @Flag(help: "Show the interface addresses at the link ends and the subnets on LAN segments.") var addresses = false

        func run() throws {
            let t = try Terminal.load(file)
            let g = TopologyGraph(t, addresses: addresses)
            if format == .dot { print(g.dot(), terminator: ""); return }
            do {
                print(try g.svg())
            } catch let e as Graphviz.Failure {
                Terminal.error(e.description)
                Terminal.note("`--format dot` prints the drawing's source without Graphviz")
                throw ExitStatus.failed
            }
        }
    }
}
