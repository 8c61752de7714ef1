import NetLab

/// Shell completion of the names of what is up: labs (their journals), a lab's nodes and a node's interfaces (the
/// file recorded at `up`). swift-argument-parser calls these with the command line's words, the index of the word
/// being completed and its prefix (`netlab --generate-completion-script bash|zsh|fish`). They read /run/netlab
/// only, and never fail: nothing readable completes to nothing.
enum Completions {
    static func upLabs() -> [String] {
        Journal.labs().filter { ((try? Journal.read(lab: $0))??.state) == .up }.sorted()
    }

    static func topology(_ lab: String) -> Topology? { (try? LabSession.topology(ofLab: lab)) ?? nil }

    static func matching(_ names: [String], _ prefix: String) -> [String] { names.filter { $0.hasPrefix(prefix) } }

    @Sendable static func labs(_ args: [String], _ index: Int, _ prefix: String) -> [String] { matching(upLabs(), prefix) }

    /// The node after LAB (the word before this one).
    @Sendable static func nodes(_ args: [String], _ index: Int, _ prefix: String) -> [String] {
        guard index >= 1, let t = topology(args[index - 1]) else { return [] }
        return matching(t.nodes.map(\.name), prefix)
    }

    /// The interface after LAB NODE.
    @Sendable static func interfaces(_ args: [String], _ index: Int, _ prefix: String) -> [String] {
        guard index >= 2, let t = topology(args[index - 2]), let n = t.node(args[index - 1]) else { return [] }
        return matching(n.interfaces.map(\.name) + (n.interface("lo") == nil ? ["lo"] : []), prefix)
    }

    /// `route` and `connect`: LAB NODE first among the positional words (words after an option that takes a value
    /// are skipped), then what follows is not completed.
    @Sendable static func labThenNode(_ args: [String], _ index: Int, _ prefix: String) -> [String] {
        guard let cmd = args.firstIndex(where: { $0 == "route" || $0 == "connect" }), index > cmd else { return [] }
        var positional: [String] = []
        var k = cmd + 1
        while k < index {
            let w = args[k]
            if w.hasPrefix("--") { if !w.contains("="), !["--kernel", "--trace", "--json", "--connect"].contains(w) { k += 1 } } else { positional.append(w) }
            k += 1
        }
        switch positional.count {
        case 0: return labs(args, index, prefix)
        case 1: return topology(positional[0]).map { matching($0.nodes.map(\.name), prefix) } ?? []
        default: return []
        }
    }
}
