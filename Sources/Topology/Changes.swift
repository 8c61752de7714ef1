/// A live change to a lab that is up, in the topology's own words: what `netlab set LAB NODE ...` and an experiment's
/// `set:` step do (docs/commands.md#netlab-set). Parsed and validated against a topology without touching the kernel;
/// `Topology.apply(_:)` gives the state the lab should be in afterwards (what `netlab status` compares with).
public struct LiveChange: Sendable {
    public enum RouteOp: String, Sendable, CaseIterable { case add, del, replace }

    public enum Action: Sendable {
        /// `link IF down|up [--both]`: one end of a link (or both) administratively down or up.
        case link(interface: String, up: Bool, both: Bool)
        /// `carrier IF off|on`: the node's device loses (or regains) its carrier because the peer end goes down (up).
        case carrier(interface: String, on: Bool)
        /// `address add|del IF PREFIX [scope S] [noprefixroute] [metric N]`.
        case address(add: Bool, interface: String, InterfaceAddress)
        /// `route add|del|replace ROUTE` in the syntax of a file's `routes:`.
        case route(RouteOp, Route)
        /// `rule add|del RULE` in the syntax of a file's `rules:`.
        case rule(add: Bool, Rule)
        /// `sysctl KEY=VALUE` (net.* keys, in the node's namespace).
        case sysctl(key: String, value: String)
        /// `listen PORT` / `unlisten PORT`: the node's `listen:` ports, served while checks and connects run.
        case listen(port: UInt16, on: Bool)
    }

    public var node: String
    public var action: Action
    /// The words after the node, as given (what the journal records, re-parsed when read).
    public var words: [String]
    /// Where the change was written (an experiment step), or the column in a command line.
    public var location: SourceLocation

    /// `client link eth0 down`, for messages and reports.
    public var text: String { ([node] + words.map(LiveChange.quoted)).joined(separator: " ") }

    static func quoted(_ w: String) -> String { w.contains(where: { $0 == " " || $0 == "\t" }) || w.isEmpty ? "\"\(w)\"" : w }

    public static let verbs = ["link", "carrier", "address", "route", "rule", "sysctl", "listen", "unlisten"]

    /// Parse `NODE VERB ...` given as separate words (a command line): problems are reported against the words
    /// joined into one line (`file` names it), each at its word.
    public static func parse(words: [String], topology: Topology, file: String = "netlab set") throws(TopologyError) -> LiveChange {
        var line = ""
        var tokens: [Token] = []
        for w in words {
            if !line.isEmpty { line += " " }
            let q = quoted(w)
            tokens.append(Token(text: w, at: SourceLocation(line: 1, column: line.count + 1 + (q == w ? 0 : 1))))
            line += q
        }
        var p = TopologyParser(file: file, source: line)
        p.tables = topology.tables
        p.anyAddresses = topology.anyAddresses
        let c = p.parseChange(tokens, whole: SourceLocation(line: 1, column: 1), topology: topology)
        if let c, p.reader.diagnostics.isEmpty { return c }
        let d = p.reader.diagnostics.isEmpty ? [Diagnostic(SourceLocation(line: 1, column: 1), "not a change")] : p.reader.diagnostics
        throw TopologyError(file: file, source: line, diagnostics: d)
    }

    /// Parse one line as an experiment's `set:` holds it (`client route add "default via 203.0.113.1"`).
    public static func parse(line: String, topology: Topology, file: String = "netlab set") throws(TopologyError) -> LiveChange {
        var p = TopologyParser(file: file, source: line)
        p.tables = topology.tables
        p.anyAddresses = topology.anyAddresses
        let start = SourceLocation(line: 1, column: 1)
        if let tokens = p.splitWords(line, at: start), let c = p.parseChange(tokens, whole: start, topology: topology),
           p.reader.diagnostics.isEmpty { return c }
        throw TopologyError(file: file, source: line, diagnostics: p.reader.diagnostics)
    }
}

extension TopologyParser {
    /// Words separated by blanks; "double" or 'single' quotes group words (a route's text), their location is the
    /// text's first character.
    mutating func splitWords(_ text: String, at start: SourceLocation) -> [Token]? {
        var out: [Token] = []
        var current = "", begin = 0, col = 0, inWord = false
        var quote: Character?
        var quoteAt = 0
        for ch in text {
            if let q = quote {
                if ch == q { quote = nil } else { current.append(ch) }
            } else if ch == " " || ch == "\t" {
                if inWord { out.append(Token(text: current, at: start.advanced(by: begin))) }
                current = ""
                inWord = false
            } else if ch == "\"" || ch == "'" {
                if !inWord { begin = col + 1; inWord = true }
                quote = ch
                quoteAt = col
            } else {
                if !inWord { begin = col; inWord = true }
                current.append(ch)
            }
            col += 1
        }
        if quote != nil {
            reader.error(start.advanced(by: quoteAt), "this quote is never closed", hint: "close it after the route's or rule's last word")
            return nil
        }
        if inWord { out.append(Token(text: current, at: start.advanced(by: begin))) }
        return out
    }

    /// `NODE VERB ARGS...` against the lab's nodes and interfaces. Everything that can be checked without the kernel
    /// is checked here (names, syntax, the lab's address ranges), so a change that gets past this touches nothing
    /// only when the kernel refuses it.
    mutating func parseChange(_ tokens: [Token], whole: SourceLocation, topology: Topology) -> LiveChange? {
        guard let nodeWord = tokens.first else {
            reader.error(whole, "a change needs NODE VERB ...", hint: "e.g. client link eth0 down")
            return nil
        }
        guard let node = topology.node(nodeWord.text) else {
            reader.error(nodeWord.at, "\"\(nodeWord.text)\" is not a node of lab \(topology.lab)",
                         hint: nearest(nodeWord.text, in: topology.nodes.map(\.name)).map { "did you mean \"\($0)\"?" }
                             ?? "its nodes: " + topology.nodes.map(\.name).joined(separator: ", "),
                         length: nodeWord.text.count)
            return nil
        }
        let words = Array(tokens.dropFirst())
        var change = LiveChange(node: node.name, action: .sysctl(key: "", value: ""), words: words.map(\.text), location: nodeWord.at)
        guard let verb = words.first else {
            reader.error(nodeWord.at.advanced(by: nodeWord.text.count), "what should change on \(node.name)?",
                         hint: "one of: " + LiveChange.verbs.joined(separator: ", "))
            return nil
        }
        let args = Array(words.dropFirst())
        func missing(_ what: String, _ example: String) {
            let last = words.last!
            reader.error(last.at.advanced(by: last.text.count), "`\(verb.text)` needs \(what)", hint: "e.g. \(node.name) \(example)")
        }
        func interface(_ t: Token, veth: Bool = false) -> String? {
            let names = node.interfaces.map(\.name) + (node.interface("lo") == nil ? ["lo"] : [])
            guard names.contains(t.text) else {
                reader.error(t.at, "node \(node.name) has no interface \"\(t.text)\"",
                             hint: nearest(t.text, in: names).map { "did you mean \"\($0)\"?" } ?? "its interfaces: " + names.joined(separator: ", "),
                             length: t.text.count)
                return nil
            }
            if veth, !topology.links.contains(where: { $0.ends.contains { $0.node == node.name && $0.interface == t.text } }) {
                reader.error(t.at, "interface \(t.text) of node \(node.name) is on no link: it has no peer whose end could go down",
                             hint: "use `link \(t.text) down` to take the interface itself down", length: t.text.count)
                return nil
            }
            return t.text
        }
        func choice(_ t: Token?, _ options: [String], _ what: String, _ example: String) -> String? {
            guard let t else { missing(what, example); return nil }
            guard options.contains(t.text) else {
                reader.error(t.at, "\"\(t.text)\" is not \(options.map { "`\($0)`" }.joined(separator: " or "))",
                             hint: nearest(t.text, in: options).map { "did you mean \"\($0)\"?" } ?? "e.g. \(node.name) \(example)",
                             length: t.text.count)
                return nil
            }
            return t.text
        }
        func extra(_ from: Int) -> Bool {
            guard args.count > from else { return false }
            reader.error(args[from].at, "unexpected \"\(args[from].text)\" after `\(verb.text)`", length: args[from].text.count)
            return true
        }
        /// The rest of the words, each split again (a quoted route is one word on a command line).
        func rest(_ from: Int) -> [Token] { args.dropFirst(from).flatMap { tokenize($0.text, at: $0.at) } }

        switch verb.text {
        case "link":
            guard let t = args.first else { missing("an interface and `down` or `up`", "link eth0 down"); return nil }
            guard let i = interface(t), let state = choice(args.count > 1 ? args[1] : nil, ["down", "up"], "`down` or `up`", "link \(t.text) down") else { return nil }
            var both = false
            if args.count > 2 {
                if args[2].text == "--both" || args[2].text == "both" { both = true } else {
                    reader.error(args[2].at, "unexpected \"\(args[2].text)\" after `link \(i) \(state)`", hint: "only `--both` (both ends of the link) may follow", length: args[2].text.count)
                    return nil
                }
                if extra(3) { return nil }
                if !topology.links.contains(where: { !$0.isSegment && $0.ends.contains { $0.node == node.name && $0.interface == i } }) {
                    reader.error(args[2].at, "`--both` needs a point-to-point link; \(node.name):\(i) has none", length: args[2].text.count)
                    return nil
                }
            }
            change.action = .link(interface: i, up: state == "up", both: both)
        case "carrier":
            guard let t = args.first else { missing("an interface and `off` or `on`", "carrier eth0 off"); return nil }
            guard let i = interface(t, veth: true), let state = choice(args.count > 1 ? args[1] : nil, ["off", "on"], "`off` or `on`", "carrier \(t.text) off"),
                  !extra(2) else { return nil }
            change.action = .carrier(interface: i, on: state == "on")
        case "address", "addr":
            guard let op = choice(args.first, ["add", "del"], "`add` or `del`", "address add eth0 198.51.100.20/25"),
                  args.count > 1 else { if args.count == 1 { missing("an interface and an address", "address \(args[0].text) eth0 198.51.100.20/25") }; return nil }
            guard let i = interface(args[1]) else { return nil }
            let words = rest(2)
            guard !words.isEmpty else { missing("an address", "address \(op) \(i) 198.51.100.20/25"); return nil }
            guard let a = parseAddress(tokens: words, at: words[0].at) else { return nil }
            if !(anyAddresses || LabAddressSpace.contains(a.address)) {
                reader.error(a.location, "address \(a.address) is outside the lab's address ranges",
                             hint: "labs use only \(LabAddressSpace.description)", length: a.prefix.description.count)
                return nil
            }
            if op == "add", i != "lo", let owner = topology.nodes.first(where: { n in
                n.name != node.name && n.addresses.contains { $0.address.address == a.address && $0.interface != "lo" }
            }) {
                reader.error(a.location, "address \(a.address) is already node \(owner.name)'s", length: a.prefix.description.count)
                return nil
            }
            change.action = .address(add: op == "add", interface: i, a)
        case "route":
            guard let opText = choice(args.first, LiveChange.RouteOp.allCases.map(\.rawValue), "`add`, `del` or `replace`", "route add \"default via 203.0.113.1 metric 50\"") else { return nil }
            let words = rest(1)
            guard !words.isEmpty else { missing("a route", "route \(opText) \"default via 203.0.113.1 metric 50\""); return nil }
            let text = args.dropFirst().map(\.text).joined(separator: " ")
            bareRoutes = opText == "del"
            defer { bareRoutes = false }
            guard let r = parseRoute(text: text, tokens: words, at: words[0].at), routeFits(r, node: node) else { return nil }
            change.action = .route(LiveChange.RouteOp(rawValue: opText)!, r)
        case "rule":
            guard let op = choice(args.first, ["add", "del"], "`add` or `del`", "rule add \"from 203.0.113.10 lookup isp2 pref 110\"") else { return nil }
            let words = rest(1)
            guard !words.isEmpty else { missing("a rule", "rule \(op) \"from 203.0.113.10 lookup isp2 pref 110\""); return nil }
            let text = args.dropFirst().map(\.text).joined(separator: " ")
            bareRoutes = op == "del"
            defer { bareRoutes = false }
            guard let r = parseRule(text: text, tokens: words, at: words[0].at) else { return nil }
            for p in [r.from, r.to].compactMap({ $0 }) where p.length > 0 && !(anyAddresses || LabAddressSpace.contains(p)) {
                reader.error(r.location, "rule prefix \(p) is outside the lab's address ranges", hint: "labs use only \(LabAddressSpace.description)")
                return nil
            }
            change.action = .rule(add: op == "add", r)
        case "sysctl":
            guard let t = args.first else { missing("KEY=VALUE", "sysctl net.ipv4.conf.all.rp_filter=2"); return nil }
            if extra(1) { return nil }
            guard let eq = t.text.firstIndex(of: "=") else {
                reader.error(t.at, "sysctl \"\(t.text)\" needs `=VALUE`", hint: "e.g. \(node.name) sysctl \(t.text)=1", length: t.text.count)
                return nil
            }
            let key = String(t.text[..<eq]), value = String(t.text[t.text.index(after: eq)...])
            guard isSysctlKey(key) else {
                reader.error(t.at, "sysctl \"\(key)\" is not a net.* key",
                             hint: "only net.* keys are set, inside the node's namespace (e.g. net.ipv4.conf.all.rp_filter)", length: key.count)
                return nil
            }
            if value.isEmpty || value.contains(where: { $0.isNewline }) {
                reader.error(t.at.advanced(by: key.count + 1), "sysctl \(key) needs a value on one line", length: max(1, value.count))
                return nil
            }
            change.action = .sysctl(key: key, value: value)
        case "listen", "unlisten":
            guard let t = args.first else { missing("a port", "\(verb.text) 8080"); return nil }
            if extra(1) { return nil }
            guard let port = UInt16(t.text), port > 0 else {
                reader.error(t.at, "port \"\(t.text)\" must be a number from 1 to 65535", length: t.text.count)
                return nil
            }
            let on = verb.text == "listen"
            if node.listen.contains(port) == on {
                reader.error(t.at, "node \(node.name) \(on ? "already listens" : "does not listen") on port \(port)",
                             hint: node.listen.isEmpty ? "it listens on no port" : "it listens on " + node.listen.map(String.init).joined(separator: ", "),
                             length: t.text.count)
                return nil
            }
            change.action = .listen(port: port, on: on)
        default:
            reader.error(verb.at, "unknown change \"\(verb.text)\"",
                         hint: nearest(verb.text, in: LiveChange.verbs).map { "did you mean \"\($0)\"?" } ?? "one of: " + LiveChange.verbs.joined(separator: ", "),
                         length: verb.text.count)
            return nil
        }
        return change
    }

    /// The checks a file's route passes that need only the node: the lab's address ranges and its devices. Whether
    /// a gateway is reachable is the kernel's to say (its refusal comes back with its extack message).
    mutating func routeFits(_ r: Route, node: Node) -> Bool {
        let devs = node.interfaces.map(\.name) + (node.interface("lo") == nil ? ["lo"] : [])
        if r.destination.length > 0, !(anyAddresses || LabAddressSpace.contains(r.destination)) {
            reader.error(r.location, "route destination \(r.destination) is outside the lab's address ranges",
                         hint: "labs route only \(LabAddressSpace.description) (or default)")
            return false
        }
        for h in r.nexthops {
            if let d = h.dev, !devs.contains(d) {
                reader.error(h.devLocation ?? h.location, "node \(node.name) has no interface \"\(d)\"",
                             hint: nearest(d, in: devs).map { "did you mean \"\($0)\"?" } ?? "its interfaces: " + devs.joined(separator: ", "),
                             length: d.count)
                return false
            }
            if let g = h.gateway, !(anyAddresses || LabAddressSpace.contains(g)) {
                reader.error(h.location, "gateway \(g) is outside the lab's address ranges", hint: "labs use only \(LabAddressSpace.description)")
                return false
            }
        }
        return true
    }
}

func isSysctlKey(_ key: String) -> Bool {
    key.hasPrefix("net.") && !key.contains("..") && !key.hasSuffix(".") &&
        key.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0) }
}

// MARK: the state a change leaves

extension Topology {
    /// The lab's state after `change`, as far as the model holds it (what `netlab status` and the tests compare the
    /// kernel with). The kernel's own consequences are modelled where they change what is declared:
    /// - a device going down flushes the routes that leave only by it (fib_sync_down_dev); its own `link up` puts
    ///   them back (netlab re-adds them, see LabController.set), so both are the `up` flag here;
    /// - deleting a primary address deletes the secondaries of its subnet unless promote_secondaries is set
    ///   (__inet_del_ifa), and the node's routes whose prefsrc it was (fib_sync_down_addr) once no device has it;
    /// - `route replace` replaces the first route with the same table, destination, TOS and metric, else adds;
    /// - `route del` and `rule del` remove the first match on the fields given (fib_table_delete, fib_nl_delrule).
    public mutating func apply(_ change: LiveChange) {
        guard let n = nodes.firstIndex(where: { $0.name == change.node }) else { return }
        func setUp(_ node: Int, _ iface: String, _ up: Bool) {
            if let i = nodes[node].interfaces.firstIndex(where: { $0.name == iface }) { nodes[node].interfaces[i].up = up }
        }
        switch change.action {
        case .link(let iface, let up, let both):
            setUp(n, iface, up)
            if both, let peer = peer(of: change.node, iface), let p = nodes.firstIndex(where: { $0.name == peer.node }) {
                setUp(p, peer.interface, up)
            }
        case .carrier(let iface, let on):
            if let peer = peer(of: change.node, iface), let p = nodes.firstIndex(where: { $0.name == peer.node }) {
                setUp(p, peer.interface, on)
            }
        case .address(let add, let iface, let a):
            var i = nodes[n].interfaces.firstIndex(where: { $0.name == iface })
            if i == nil, iface == "lo" {
                nodes[n].interfaces.append(Interface(name: "lo", location: .unknown, kind: .loopback, addresses: [], mtu: nil))
                i = nodes[n].interfaces.count - 1
            }
            guard let i else { return }
            if add { nodes[n].interfaces[i].addresses.append(a); return }
            let list = nodes[n].interfaces[i].addresses
            guard let k = list.firstIndex(where: { $0.prefix == a.prefix }) else { return }
            let sameSubnet: (InterfaceAddress) -> Bool = { $0.prefix.length == a.prefix.length && $0.prefix.contains(a.address) }
            let primary = !list[..<k].contains(where: sameSubnet)
            let promote = nodes[n].sysctls.last { $0.key == "net.ipv4.conf.\(iface).promote_secondaries" || $0.key == "net.ipv4.conf.all.promote_secondaries" }?.value == "1"
            var kept = list
            kept.remove(at: k)
            if primary && !promote { kept = kept.enumerated().filter { $0.offset < k || !sameSubnet($0.element) }.map(\.element) }
            nodes[n].interfaces[i].addresses = kept
            let gone = Set(list.map(\.address)).subtracting(nodes[n].addresses.map(\.address.address))
            nodes[n].routes.removeAll { r in r.src.map(gone.contains) ?? false }
            if kept.isEmpty {
                // The device's last address: its routes go with it (fib_disable_ip).
                let node = nodes[n]
                nodes[n].routes.removeAll { r in !r.nexthops.isEmpty && r.nexthops.allSatisfy { node.device(of: $0) == iface } }
            }
        case .route(let op, let r):
            switch op {
            case .add: nodes[n].routes.append(r)
            case .replace:
                if let k = nodes[n].routes.firstIndex(where: { $0.table == r.table && $0.destination == r.destination && ($0.tos ?? 0) == (r.tos ?? 0) && ($0.metric ?? 0) == (r.metric ?? 0) }) {
                    nodes[n].routes[k] = r
                } else { nodes[n].routes.append(r) }
            case .del:
                let candidates = nodes[n].routes.indices.filter { k in
                    let c = nodes[n].routes[k]
                    guard c.table == r.table, c.destination == r.destination, (c.tos ?? 0) == (r.tos ?? 0) else { return false }
                    if let m = r.metric, (c.metric ?? 0) != m { return false }
                    if r.type != .unicast, c.type != r.type { return false }
                    if let s = r.src, c.src != s { return false }
                    for h in r.nexthops {
                        guard c.nexthops.contains(where: { (h.gateway == nil || $0.gateway == h.gateway) && (h.dev == nil || nodes[n].device(of: $0) == h.dev) }) else { return false }
                    }
                    return true
                }
                if let k = candidates.min(by: { (nodes[n].routes[$0].metric ?? 0) < (nodes[n].routes[$1].metric ?? 0) }) { nodes[n].routes.remove(at: k) }
            }
        case .rule(let add, let r):
            if add { nodes[n].rules.append(r); return }
            if let k = nodes[n].rules.firstIndex(where: { $0.matchesForDelete(r) }) { nodes[n].rules.remove(at: k) }
        case .listen(let port, let on):
            nodes[n].listen.removeAll { $0 == port }
            if on { nodes[n].listen.append(port) }
        case .sysctl(let key, let value):
            nodes[n].sysctls.removeAll { $0.key == key }
            nodes[n].sysctls.append(Sysctl(key: key, value: value, location: change.location))
        }
    }

    /// The other end of a point-to-point link, or nil (a LAN segment's members have a bridge port as peer).
    public func peer(of node: String, _ interface: String) -> LinkEnd? {
        guard let l = links.first(where: { !$0.isSegment && $0.ends.contains { $0.node == node && $0.interface == interface } }) else { return nil }
        return l.ends.first { !($0.node == node && $0.interface == interface) }
    }
}

extension Node {
    /// The device a nexthop leaves by: its `dev`, or the interface whose subnet holds its gateway.
    public func device(of h: Nexthop) -> String? {
        h.dev ?? h.gateway.flatMap { g in addresses.first { $0.address.prefix.contains(g) }?.interface }
    }
}

extension Rule {
    /// Whether `ip rule del PATTERN` would delete this rule: every field the pattern gives is equal (rule_find).
    public func matchesForDelete(_ p: Rule) -> Bool {
        if let x = p.pref, pref != x { return false }
        if p.from != nil, from != p.from { return false }
        if p.to != nil, to != p.to { return false }
        if p.iif != nil, iif != p.iif { return false }
        if p.oif != nil, oif != p.oif { return false }
        if p.fwmark != nil, fwmark != p.fwmark { return false }
        if p.tos != nil, tos != p.tos { return false }
        if p.invert != invert { return false }
        return !p.namesAction || action == p.action
    }

    /// Whether the rule's text names its action (a rule to delete may leave it out: then any action matches).
    public var namesAction: Bool {
        let words: Set<Substring> = ["lookup", "table", "goto", "nop", "unreachable", "prohibit", "blackhole", "type"]
        return text.split(separator: " ").contains { words.contains($0) } || text.isEmpty
    }
}
