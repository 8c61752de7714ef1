import Yams

extension Topology {
    /// Read and validate a `.topo` file. Throws `TopologyError` with every problem found, each at its line and column.
    public static func load(path: String) throws -> Topology {
        let source: String
        do {
            source = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw TopologyError(file: path, source: "", diagnostics: [
                // Foundation's words ("The operation could not be completed", error domains) say nothing useful;
                // the CLI reads files with InputFile, which says what is wrong.
                Diagnostic(.unknown, "cannot read the topology file (missing, not a regular file, unreadable or not UTF-8)",
                           hint: "`netlab validate \(path)` says which"),
            ])
        }
        return try parse(source, file: path)
    }

    /// Parse and validate topology text; `file` names it in messages.
    public static func parse(_ source: String, file: String = "<topology>") throws -> Topology {
        var parser = TopologyParser(file: file, source: source)
        let topology = parser.run()
        if !parser.reader.diagnostics.isEmpty || topology == nil {
            var diags = parser.reader.diagnostics
            if diags.isEmpty { diags = [Diagnostic(SourceLocation(line: 1, column: 1), "the file describes no lab")] }
            throw TopologyError(file: file, source: source, diagnostics: diags)
        }
        return topology!
    }
}

/// Names that become file names under /run/netns and parts of interface names: lower-case letters, digits and `-`,
/// starting with a letter.
/// The names that become file names under /run/netns and /run/netlab (labs, nodes), checked wherever they enter:
/// a topology file, a journal, a command-line argument.
public enum LabNames {
    public static let labLimit = 20
    public static let nodeLimit = 30
    public static let labRule = "1-20 characters from a-z, 0-9 and '-', starting with a letter, not ending with '-'"
    public static let nodeRule = "1-30 characters from a-z, 0-9 and '-', starting with a letter, not ending with '-'"

    public static func isLab(_ s: String) -> Bool { isSafeName(s) && s.count <= labLimit }
    public static func isNode(_ s: String) -> Bool { isSafeName(s) && s.count <= nodeLimit }

    /// Whether `namespace` is one netlab names for lab `lab`: `<lab>-<node>` or a LAN segment's `<lab>_lan<N>`.
    public static func namespace(_ namespace: String, belongsTo lab: String) -> Bool {
        guard isLab(lab) else { return false }
        if namespace.hasPrefix(lab + "-") { return isNode(String(namespace.dropFirst(lab.count + 1))) }
        if namespace.hasPrefix(lab + "_lan") {
            let n = namespace.dropFirst(lab.count + 4)
            return !n.isEmpty && n.count <= 6 && n.allSatisfy { $0.isASCII && $0.isNumber }
        }
        return false
    }

    /// Two labs whose namespaces could share a name (`x` with node `y-z` and `x-y` with node `z` both give `x-y-z`):
    /// one lab's name followed by `-` starts the other's. Such labs are never up at the same time.
    public static func mayClash(_ a: String, _ b: String) -> Bool {
        a == b || a.hasPrefix(b + "-") || b.hasPrefix(a + "-")
    }
}

func isSafeName(_ s: String) -> Bool {
    guard let first = s.unicodeScalars.first, ("a"..."z").contains(first) else { return false }
    return s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" } && !s.hasSuffix("-")
}

/// Linux's `dev_valid_name`: 1–15 bytes, not `.` or `..`, no `/`, `:` or white space.
func interfaceNameProblem(_ s: String) -> String? {
    if s.isEmpty { return "an interface name cannot be empty" }
    if s.utf8.count > 15 { return "interface name \"\(s)\" is \(s.utf8.count) bytes; Linux allows at most 15 (IFNAMSIZ - 1)" }
    if s == "." || s == ".." { return "\"\(s)\" is not a valid interface name" }
    if s.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) {
        return "interface name \"\(s)\" contains '/', ':' or white space, which Linux does not allow"
    }
    return nil
}

struct TopologyParser {
    let file: String
    let source: String
    var reader = YAMLReader()
    var tables: [(name: String, id: UInt32)] = []
    var anyAddresses = false
    /// Routes may lack `via` and `dev`, rules their action: what `route del` and `rule del` name (the kernel deletes
    /// the first match of the fields given).
    var bareRoutes = false

    static let topKeys = ["lab", "address-ranges", "tables", "nodes", "links", "checks", "experiments"]
    static let nodeKeys = ["forwarding", "source-route", "sysctl", "interfaces", "nexthops", "routes", "rules", "listen"]
    static let interfaceKeys = ["addresses", "mtu", "type", "up"]
    static let linkKeys = ["a", "b", "ends", "mtu"]

    init(file: String, source: String) {
        self.file = file
        self.source = source
    }

    mutating func run() -> Topology? {
        let root: Yams.Node?
        do {
            root = try Yams.compose(yaml: source)
        } catch let e as YamlError {
            reader.diagnostics.append(yamlDiagnostic(e))
            return nil
        } catch {
            reader.error(SourceLocation(line: 1, column: 1), "not valid YAML: \(error)")
            return nil
        }
        guard let root, let top = reader.mapping(root, "the topology", allowed: Self.topKeys) else {
            if root == nil { reader.error(SourceLocation(line: 1, column: 1), "the file is empty", hint: "start with `lab: NAME` and `nodes:`") }
            return nil
        }
        var lab: String?
        var nodesNode: Yams.Node?, linksNode: Yams.Node?, checksNode: Yams.Node?, experimentsNode: Yams.Node?
        for (key, at, value) in top {
            switch key {
            case "lab":
                guard let name = reader.scalar(value, "lab") else { break }
                if !LabNames.isLab(name) {
                    reader.error(reader.textLocation(value),
                                 "lab name \"\(name)\" is unsafe as a file name under /run/netns",
                                 hint: "use 1-20 characters from a-z, 0-9 and '-', starting with a letter (namespaces are named <lab>-<node>)",
                                 length: name.count)
                }
                lab = name
                _ = at
            case "address-ranges":
                guard let v = reader.scalar(value, "address-ranges") else { break }
                if v == "any" { anyAddresses = true } else if v != "documentation" {
                    reader.error(reader.textLocation(value), "address-ranges must be `documentation` (the default) or `any`",
                                 hint: "`any` lets a lab use any IPv4 address (a clone of a real host); labs are isolated either way",
                                 length: v.count)
                }
            case "tables": parseTables(value)
            case "nodes": nodesNode = value
            case "links": linksNode = value
            case "checks": checksNode = value
            case "experiments": experimentsNode = value
            default: break
            }
        }
        if lab == nil { reader.error(SourceLocation(line: 1, column: 1), "missing `lab:`", hint: "add `lab: NAME` at the top; namespaces are named <lab>-<node>") }
        guard let nodesNode else {
            reader.error(SourceLocation(line: 1, column: 1), "missing `nodes:`", hint: "declare at least one node under `nodes:`")
            return nil
        }
        var nodes = parseNodes(nodesNode)
        let links = linksNode.map { parseLinks($0) } ?? []
        var topology = Topology(file: file, source: source, lab: lab ?? "lab", tables: tables, nodes: nodes, links: links)
        topology.anyAddresses = anyAddresses
        Validator(topology: topology).attachLinkInterfaces(&nodes, reader: &reader)
        topology.nodes = nodes
        if let checksNode { topology.checks = parseChecks(checksNode, nodes: nodes) }
        var validator = Validator(topology: topology)
        validator.validate(reader: &reader)
        if let experimentsNode { topology.experiments = parseExperiments(experimentsNode, topology: topology) }
        return topology
    }

    func yamlDiagnostic(_ e: YamlError) -> Diagnostic {
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let ctx = context.map { " (\($0.text))" } ?? ""
            return Diagnostic(SourceLocation(line: mark.line, column: mark.column), "not valid YAML: \(problem)\(ctx)",
                              hint: "check indentation and that `:` is followed by a space")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let key = duplicates.first ?? "?"
            // Yams points at the first occurrence; point at the second, where the mistake usually is.
            let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
            var at = SourceLocation(line: context.mark.line, column: context.mark.column)
            var first = at
            for (i, line) in lines.enumerated() where i + 1 > context.mark.line {
                let indent = line.prefix(while: { $0 == " " }).count
                let rest = line.dropFirst(indent)
                if indent + 1 == context.mark.column, rest.hasPrefix(key), rest.dropFirst(key.count).first == ":" {
                    first = at
                    at = SourceLocation(line: i + 1, column: indent + 1)
                    break
                }
            }
            return Diagnostic(at, "duplicate key \"\(key)\"" + (first != at ? " (first defined at line \(first.line))" : ""),
                              hint: "each node, interface and key may appear once; merge or rename them", length: key.count)
        default:
            return Diagnostic(SourceLocation(line: 1, column: 1), "not valid YAML: \(e)")
        }
    }

    mutating func parseTables(_ node: Yams.Node) {
        guard let entries = reader.mapping(node, "tables", allowed: nil) else { return }
        for (name, at, value) in entries {
            guard let text = reader.scalar(value, "table \(name)") else { continue }
            if RoutingTable.builtinID(name) != nil {
                reader.error(at, "table name \"\(name)\" is built in", hint: "choose another name; main, local and default already exist", length: name.count)
                continue
            }
            if name.contains(where: { $0.isWhitespace }) || parseNumber(name) != nil {
                reader.error(at, "table name \"\(name)\" must be a word, not a number", length: name.count)
                continue
            }
            guard let id = parseNumber(text), id > 0, id < UInt64(UInt32.max), RoutingTable.builtinName(UInt32(id)) == nil else {
                reader.error(reader.textLocation(value), "table id \"\(text)\" must be a number from 1 to 4294967294 other than 253, 254, 255",
                             length: text.count)
                continue
            }
            if let other = tables.first(where: { $0.id == UInt32(id) }) {
                reader.error(reader.textLocation(value), "table id \(id) is already named \"\(other.name)\"", length: text.count)
                continue
            }
            tables.append((name, UInt32(id)))
        }
    }

    // MARK: nodes

    mutating func parseNodes(_ node: Yams.Node) -> [Node] {
        guard let entries = reader.mapping(node, "nodes", allowed: nil) else { return [] }
        if entries.isEmpty { reader.error(reader.location(node), "`nodes:` is empty", hint: "declare at least one node") }
        var nodes: [Node] = []
        for (name, at, value) in entries {
            if !LabNames.isNode(name) {
                reader.error(at, "node name \"\(name)\" is unsafe as a file name under /run/netns",
                             hint: "use 1-30 characters from a-z, 0-9 and '-', starting with a letter", length: name.count)
            }
            nodes.append(parseNode(name, at: at, value))
        }
        return nodes
    }

    mutating func parseNode(_ name: String, at: SourceLocation, _ value: Yams.Node) -> Node {
        var node = Node(name: name, location: at, forwarding: false, sourceRoute: false, sysctls: [], interfaces: [],
                        routes: [], rules: [], listen: [])
        if reader.isNull(value) { return node }
        guard let entries = reader.mapping(value, "node \(name)", allowed: Self.nodeKeys) else { return node }
        for (key, _, v) in entries {
            switch key {
            case "forwarding": node.forwarding = reader.bool(v, "forwarding") ?? false
            case "source-route": node.sourceRoute = reader.bool(v, "source-route") ?? false
            case "sysctl": node.sysctls = parseSysctls(v, node: name)
            case "interfaces": node.interfaces = parseInterfaces(v, node: name)
            case "nexthops":
                for r in reader.sequence(v, "nexthops") ?? [] {
                    if let n = parseNexthopObject(r, node: name) { node.nexthopObjects.append(n) }
                }
            case "routes":
                for r in reader.sequence(v, "routes") ?? [] {
                    if let route = parseRoute(r, node: name) { node.routes.append(route) }
                }
            case "rules":
                for r in reader.sequence(v, "rules") ?? [] {
                    if let rule = parseRule(r, node: name) { node.rules.append(rule) }
                }
            case "listen":
                for p in reader.sequence(v, "listen") ?? [] {
                    guard let s = reader.scalar(p, "a listen port") else { continue }
                    guard let port = UInt16(s), port > 0 else {
                        reader.error(reader.textLocation(p), "listen port \"\(s)\" must be a number from 1 to 65535", length: s.count)
                        continue
                    }
                    node.listen.append(port)
                    node.listenLocations.append(reader.textLocation(p))
                }
            default: break
            }
        }
        return node
    }

    mutating func parseSysctls(_ value: Yams.Node, node: String) -> [Sysctl] {
        var out: [Sysctl] = []
        for (key, at, v) in reader.mapping(value, "sysctl of node \(node)", allowed: nil) ?? [] {
            let ok = key.hasPrefix("net.") && !key.contains("..") &&
                key.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0) }
            guard ok else {
                reader.error(at, "sysctl \"\(key)\" is not a net.* key", hint: "only net.* keys are set, inside the node's namespace (e.g. net.ipv4.conf.all.rp_filter)", length: key.count)
                continue
            }
            guard let s = reader.scalar(v, "sysctl \(key)") else { continue }
            out.append(Sysctl(key: key, value: s, location: at))
        }
        return out
    }

    mutating func parseInterfaces(_ value: Yams.Node, node: String) -> [Interface] {
        var out: [Interface] = []
        for (name, at, v) in reader.mapping(value, "interfaces of node \(node)", allowed: nil) ?? [] {
            if let problem = interfaceNameProblem(name) { reader.error(at, problem, length: name.count) }
            var iface = Interface(name: name, location: at, kind: name == "lo" ? .loopback : .veth, addresses: [], mtu: nil)
            var addressNodes: [Yams.Node] = []
            if reader.isNull(v) {
                // `eth3:` alone: the interface exists without addresses.
            } else if case .mapping = v {
                for (key, _, kv) in reader.mapping(v, "interface \(name) of node \(node)", allowed: Self.interfaceKeys) ?? [] {
                    switch key {
                    case "addresses": addressNodes = reader.sequence(kv, "addresses") ?? []
                    case "mtu":
                        guard let s = reader.scalar(kv, "mtu") else { break }
                        if let m = Int(s), (68...65535).contains(m) { iface.mtu = m } else {
                            reader.error(reader.textLocation(kv), "mtu \"\(s)\" must be a number from 68 to 65535", length: s.count)
                        }
                    case "up":
                        if let b = reader.bool(kv, "up") { iface.up = b }
                    case "type":
                        guard let s = reader.scalar(kv, "type") else { break }
                        let standalone: [InterfaceKind] = [.dummy, .bridge, .vrf, .macvlan]
                        if let k = InterfaceKind(rawValue: s), standalone.contains(k) {
                            iface.kind = k
                            iface.kindLocation = reader.textLocation(kv)
                        } else {
                            reader.error(reader.textLocation(kv), "interface type \"\(s)\" is not known",
                                         hint: "veth interfaces come from `links:`; `type:` takes one of dummy, bridge, vrf, macvlan",
                                         length: s.count)
                        }
                    default: break
                    }
                }
            } else {
                addressNodes = reader.sequence(v, "addresses of \(name)") ?? []
            }
            for a in addressNodes {
                if let addr = parseAddress(a) { iface.addresses.append(addr) }
            }
            out.append(iface)
        }
        return out
    }

    /// `198.51.100.10/25 [scope S] [noprefixroute] [metric N] [peer P] [broadcast B]`
    mutating func parseAddress(_ node: Yams.Node) -> InterfaceAddress? {
        guard let text = reader.scalar(node, "an address") else { return nil }
        return parseAddress(tokens: tokenize(text, at: reader.textLocation(node)), at: reader.location(node))
    }

    /// An address in `ip addr` syntax, already split into words.
    mutating func parseAddress(tokens: [Token], at: SourceLocation) -> InterfaceAddress? {
        guard let first = tokens.first else {
            reader.error(at, "empty address", hint: "write an address with its prefix length, e.g. 198.51.100.10/25")
            return nil
        }
        guard first.text.contains("/"), let prefix = IPv4Prefix(first.text) else {
            reader.error(first.at, "\"\(first.text)\" is not an IPv4 address with a prefix length",
                         hint: "write it as A.B.C.D/LEN, e.g. 198.51.100.10/25", length: first.text.count)
            return nil
        }
        var a = InterfaceAddress(prefix: prefix, scope: nil, noprefixroute: false, metric: nil, location: first.at)
        var i = 1
        while i < tokens.count {
            let t = tokens[i]
            func arg() -> Token? {
                guard i + 1 < tokens.count else { reader.error(t.at, "\"\(t.text)\" needs a value", length: t.text.count); return nil }
                i += 1
                return tokens[i]
            }
            switch t.text {
            case "scope":
                guard let v = arg() else { break }
                if let s = parseScope(v.text) { a.scope = s } else {
                    reader.error(v.at, "scope \"\(v.text)\" is not one of global, site, link, host", length: v.text.count)
                }
            case "noprefixroute": a.noprefixroute = true
            case "metric", "priority":
                guard let v = arg() else { break }
                if let n = parseNumber(v.text), n <= UInt32.max { a.metric = UInt32(n) } else {
                    reader.error(v.at, "metric \"\(v.text)\" must be a number", length: v.text.count)
                }
            case "peer":
                guard let v = arg() else { break }
                if let p = IPv4Address(v.text) { a.peer = p } else {
                    reader.error(v.at, "peer \"\(v.text)\" is not an IPv4 address", hint: "the prefix length after the address applies to the peer", length: v.text.count)
                }
            case "broadcast", "brd":
                guard let v = arg() else { break }
                if let b = IPv4Address(v.text) { a.broadcast = b } else {
                    reader.error(v.at, "broadcast \"\(v.text)\" is not an IPv4 address", length: v.text.count)
                }
            case "secondary":
                reader.error(t.at, "\"secondary\" cannot be set; the kernel decides it",
                             hint: "list the address after another in the same subnet: the kernel makes it a secondary", length: t.text.count)
            default:
                let valid = ["scope", "noprefixroute", "metric", "peer", "broadcast"]
                reader.error(t.at, "unknown address flag \"\(t.text)\"",
                             hint: nearest(t.text, in: valid).map { "did you mean \"\($0)\"?" } ?? "valid flags: " + valid.joined(separator: ", "),
                             length: t.text.count)
            }
            i += 1
        }
        return a
    }

    // MARK: links

    mutating func parseLinks(_ node: Yams.Node) -> [Link] {
        var out: [Link] = []
        for l in reader.sequence(node, "links") ?? [] {
            let at = reader.location(l)
            var ends: [Yams.Node] = []
            var mtu: Int?
            switch l {
            case .sequence(let s): ends = Array(s)
            case .mapping:
                var a: Yams.Node?, b: Yams.Node?
                for (key, _, v) in reader.mapping(l, "a link", allowed: Self.linkKeys) ?? [] {
                    switch key {
                    case "a": a = v
                    case "b": b = v
                    case "ends": ends = reader.sequence(v, "ends") ?? []
                    case "mtu":
                        guard let s = reader.scalar(v, "mtu") else { break }
                        if let m = Int(s), (68...65535).contains(m) { mtu = m } else {
                            reader.error(reader.textLocation(v), "mtu \"\(s)\" must be a number from 68 to 65535", length: s.count)
                        }
                    default: break
                    }
                }
                if let a, let b {
                    if !ends.isEmpty { reader.error(at, "a link has either `a:`/`b:` or `ends:`, not both") }
                    ends = [a, b]
                } else if a != nil || b != nil {
                    reader.error(at, "a link needs both `a:` and `b:`", hint: "e.g. {a: client:eth1, b: isp2:eth0}")
                    continue
                }
            default:
                reader.error(at, "a link must be a list of ends like [client:eth0, isp1:eth0] or a mapping {a: ..., b: ...}")
                continue
            }
            var parsed: [LinkEnd] = []
            for e in ends {
                guard let s = reader.scalar(e, "a link end") else { continue }
                let parts = s.split(separator: ":", omittingEmptySubsequences: false)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    reader.error(reader.textLocation(e), "link end \"\(s)\" must be NODE:INTERFACE", hint: "e.g. client:eth0", length: s.count)
                    continue
                }
                parsed.append(LinkEnd(node: String(parts[0]), interface: String(parts[1]), location: reader.textLocation(e)))
            }
            if ends.count < 2 {
                reader.error(at, "a link needs at least two ends", hint: "two ends make a veth pair; three or more a LAN segment")
                continue
            }
            out.append(Link(location: at, ends: parsed, mtu: mtu))
        }
        return out
    }

    // MARK: shared value parsers

    func parseScope(_ s: String) -> AddressScope? {
        switch s {
        case "global", "universe", "0": .global
        case "site", "200": .site
        case "link", "253": .link
        case "host", "254": .host
        default: nil
        }
    }

    func parseTable(_ s: String) -> UInt32? {
        if let id = RoutingTable.builtinID(s) { return id }
        if let t = tables.first(where: { $0.name == s }) { return t.id }
        if let n = parseNumber(s), n > 0, n < UInt64(UInt32.max) { return UInt32(n) }
        return nil
    }

    mutating func table(_ t: Token) -> UInt32? {
        if let id = parseTable(t.text) { return id }
        let names = ["main", "local", "default"] + tables.map(\.name)
        reader.error(t.at, "unknown routing table \"\(t.text)\"",
                     hint: nearest(t.text, in: names).map { "did you mean \"\($0)\"?" }
                         ?? "name it under `tables:` (e.g. tables: {\(t.text): 100}) or use a number",
                     length: t.text.count)
        return nil
    }

    mutating func address(_ t: Token, _ what: String) -> IPv4Address? {
        if let a = IPv4Address(t.text) { return a }
        reader.error(t.at, "\(what) \"\(t.text)\" is not an IPv4 address", hint: "write it as A.B.C.D", length: t.text.count)
        return nil
    }

    mutating func number(_ t: Token, _ what: String, max: UInt64 = UInt64(UInt32.max)) -> UInt64? {
        if let n = parseNumber(t.text), n <= max { return n }
        reader.error(t.at, "\(what) \"\(t.text)\" must be a number from 0 to \(max)", length: t.text.count)
        return nil
    }

    /// Settings from a YAML mapping; nested lists of mappings under `listKey` become `nexthops`.
    mutating func settings(fromMapping node: Yams.Node, _ what: String, allowed: [String], listKey: String? = nil,
                           listAllowed: [String] = []) -> Settings {
        var s = Settings(at: reader.location(node))
        for (key, at, v) in reader.mapping(node, what, allowed: allowed) ?? [] {
            if key == listKey {
                for item in reader.sequence(v, key) ?? [] {
                    var sub = Settings(at: reader.location(item))
                    for (k2, at2, v2) in reader.mapping(item, "a nexthop", allowed: listAllowed) ?? [] {
                        if let text = reader.scalar(v2, k2) { sub.set(k2, Token(text: text, at: reader.textLocation(v2))) }
                        _ = at2
                    }
                    s.nexthops.append(sub)
                }
                continue
            }
            guard let text = reader.scalar(v, key) else { continue }
            s.set(key, Token(text: text, at: reader.textLocation(v)))
            _ = at
        }
        return s
    }
}
