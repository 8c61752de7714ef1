import Yams

extension TopologyParser {
    static let ruleKeys = ["pref", "from", "to", "iif", "oif", "fwmark", "tos", "dscp", "ipproto", "sport", "dport",
                           "uidrange", "not", "suppress_prefixlength", "action", "lookup", "table", "goto"]
    static let ruleWords = ["not", "from", "to", "iif", "oif", "fwmark", "tos", "dsfield", "dscp", "ipproto", "sport",
                            "dport", "uidrange", "pref", "priority", "order", "lookup", "table", "goto", "nop",
                            "unreachable", "prohibit", "blackhole", "type", "suppress_prefixlength", "dev"]
    static let ruleActions = ["lookup", "goto", "nop", "unreachable", "prohibit", "blackhole"]

    /// A policy rule in `ip rule` syntax (`from 203.0.113.10 lookup isp2 pref 100`) or as a mapping.
    mutating func parseRule(_ node: Yams.Node, node owner: String) -> Rule? {
        if case .mapping = node {
            let s = settings(fromMapping: node, "a rule of node \(owner)", allowed: Self.ruleKeys)
            return makeRule(s, text: nil)
        }
        guard let text = reader.scalar(node, "a rule") else { return nil }
        return parseRule(text: text, tokens: tokenize(text, at: reader.textLocation(node)), at: reader.textLocation(node))
    }

    /// A rule in `ip rule` syntax, already split into words.
    mutating func parseRule(text: String, tokens: [Token], at: SourceLocation) -> Rule? {
        var s = Settings(at: at)
        var i = 0
        while i < tokens.count {
            let t = tokens[i]
            func value() -> Token? {
                guard i + 1 < tokens.count else {
                    reader.error(t.at, "\"\(t.text)\" needs a value", length: t.text.count)
                    return nil
                }
                i += 1
                return tokens[i]
            }
            switch t.text {
            case "not": s.set("not", Token(text: "true", at: t.at))
            case "from", "to", "oif", "fwmark", "dscp", "ipproto", "sport", "dport", "uidrange", "goto", "suppress_prefixlength":
                if let v = value() { s.set(t.text, v) }
            case "iif", "dev": if let v = value() { s.set("iif", v) }
            case "tos", "dsfield": if let v = value() { s.set("tos", v) }
            case "pref", "priority", "order": if let v = value() { s.set("pref", v) }
            case "lookup", "table": if let v = value() { s.set("lookup", v) }
            case "nop", "unreachable", "prohibit", "blackhole": s.set("action", t)
            case "type": if let v = value() { s.set("action", v) }
            default:
                let hint = nearest(t.text, in: Self.ruleWords).map { "did you mean \"\($0)\"?" }
                    ?? "a rule takes: " + Self.ruleWords.joined(separator: ", ")
                reader.error(t.at, "unknown word \"\(t.text)\" in rule", hint: hint, length: t.text.count)
            }
            i += 1
        }
        return makeRule(s, text: text)
    }

    mutating func makeRule(_ s: Settings, text: String?) -> Rule? {
        var ok = true
        var rule = Rule(location: s.at, text: text ?? "", pref: nil, invert: false, from: nil, to: nil, iif: nil, oif: nil,
                        fwmark: nil, fwmask: nil, tos: nil, dscp: nil, ipproto: nil, sport: nil, dport: nil,
                        uidrange: nil, suppressPrefixLength: nil, action: .nop)
        func prefix(_ t: Token) -> IPv4Prefix? {
            if t.text == "all" { return nil }
            if let p = IPv4Prefix(t.text) {
                if !p.isCanonical {
                    reader.error(t.at, "prefix \(t.text) has host bits set", hint: "did you mean \(p.canonical)?", length: t.text.count)
                    ok = false
                }
                return p
            }
            reader.error(t.at, "\"\(t.text)\" is not an IPv4 prefix", hint: "write A.B.C.D, A.B.C.D/LEN or all", length: t.text.count)
            ok = false
            return nil
        }
        func ports(_ t: Token) -> PortRange? {
            let parts = t.text.split(separator: "-", omittingEmptySubsequences: false)
            if parts.count <= 2, let a = UInt16(parts[0]), let b = parts.count == 2 ? UInt16(parts[1]) : a, a <= b {
                return PortRange(start: a, end: b)
            }
            reader.error(t.at, "port \"\(t.text)\" must be N or N-M with N <= M <= 65535", length: t.text.count)
            ok = false
            return nil
        }
        if let t = s["pref"] { if let n = number(t, "pref") { rule.pref = UInt32(n) } else { ok = false } }
        if let t = s["not"] { rule.invert = t.text == "true" || t.text == "yes" }
        if let t = s["from"] { rule.from = prefix(t) }
        if let t = s["to"] { rule.to = prefix(t) }
        for (key, path) in [("iif", \Rule.iif), ("oif", \Rule.oif)] {
            if let t = s[key] {
                if let p = interfaceNameProblem(t.text) { reader.error(t.at, p, length: t.text.count); ok = false }
                rule[keyPath: path] = t.text
            }
        }
        if let t = s["fwmark"] {
            let parts = t.text.split(separator: "/", omittingEmptySubsequences: false)
            if parts.count <= 2, let m = parseNumber(String(parts[0])), m <= UInt32.max,
               let mask = parts.count == 2 ? parseNumber(String(parts[1])) : UInt64(UInt32.max), mask <= UInt32.max {
                rule.fwmark = UInt32(m)
                if parts.count == 2 { rule.fwmask = UInt32(mask) }
            } else {
                reader.error(t.at, "fwmark \"\(t.text)\" must be VALUE or VALUE/MASK (decimal or 0x hex)", length: t.text.count)
                ok = false
            }
        }
        if let t = s["tos"] {
            if let n = number(t, "tos", max: 255) {
                if n & 3 != 0 {
                    reader.error(t.at, "tos \(t.text) sets ECN bits; the kernel rejects it", hint: "use a multiple of 4, e.g. \(n & ~3)", length: t.text.count)
                    ok = false
                }
                rule.tos = UInt8(n)
            } else { ok = false }
        }
        if let t = s["dscp"] { if let n = number(t, "dscp", max: 63) { rule.dscp = UInt8(n) } else { ok = false } }
        if let t = s["ipproto"] {
            let names: [String: UInt8] = ["icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "sctp": 132]
            if let p = names[t.text] ?? parseNumber(t.text).flatMap({ $0 <= 255 ? UInt8($0) : nil }) { rule.ipproto = p } else {
                reader.error(t.at, "ipproto \"\(t.text)\" is not tcp, udp, icmp or a number", length: t.text.count)
                ok = false
            }
        }
        if let t = s["sport"] { rule.sport = ports(t) }
        if let t = s["dport"] { rule.dport = ports(t) }
        if let t = s["uidrange"] {
            let parts = t.text.split(separator: "-")
            if parts.count == 2, let a = UInt32(parts[0]), let b = UInt32(parts[1]), a <= b { rule.uidrange = a...b } else {
                reader.error(t.at, "uidrange \"\(t.text)\" must be START-END", length: t.text.count)
                ok = false
            }
        }
        if let t = s["suppress_prefixlength"] {
            if let n = number(t, "suppress_prefixlength", max: 32) { rule.suppressPrefixLength = Int(n) } else { ok = false }
        }
        // The action: `lookup T`, `goto N`, or one of the words.
        let actionWord = s["action"]
        if let t = actionWord, !Self.ruleActions.contains(t.text) {
            reader.error(t.at, "rule action \"\(t.text)\" is not one of " + Self.ruleActions.joined(separator: ", "),
                         hint: nearest(t.text, in: Self.ruleActions).map { "did you mean \"\($0)\"?" }, length: t.text.count)
            return nil
        }
        let table = s["lookup"] ?? s["table"]
        if let t = table {
            if let a = actionWord, a.text != "lookup" {
                reader.error(a.at, "a rule has one action: \"\(a.text)\" and `lookup \(t.text)` cannot both be given", length: a.text.count)
                return nil
            }
            if let id = self.table(t) { rule.action = .lookup(id) } else { ok = false }
        } else if let g = s["goto"] {
            if let n = number(g, "goto") { rule.action = .goto(UInt32(n)) } else { ok = false }
            if let p = rule.pref, case .goto(let target) = rule.action, target <= p {
                reader.error(g.at, "goto \(target) jumps backwards from pref \(p); the kernel only jumps forwards",
                             hint: "goto a pref greater than \(p)", length: g.text.count)
                ok = false
            }
            if rule.pref == nil {
                reader.error(g.at, "a goto rule needs an explicit pref", hint: "add `pref N` with N below the goto target", length: g.text.count)
                ok = false
            }
        } else if let a = actionWord {
            switch a.text {
            case "nop": rule.action = .nop
            case "unreachable": rule.action = .unreachable
            case "prohibit": rule.action = .prohibit
            case "blackhole": rule.action = .blackhole
            default:
                reader.error(a.at, "`\(a.text)` needs a target", hint: a.text == "lookup" ? "add `lookup: TABLE`" : "add `goto: PREF`")
                ok = false
            }
        } else if !bareRoutes {
            reader.error(s.at, "rule \"\(text ?? "")\" has no action",
                         hint: "add `lookup TABLE`, `goto PREF`, `nop`, `unreachable`, `prohibit` or `blackhole`")
            ok = false
        }
        if rule.text.isEmpty { rule.text = rule.ipruleText(tableName: { self.tableName($0) }) }
        return ok ? rule : nil
    }
}

extension Rule {
    /// The rule in `ip rule add` syntax.
    public func ipruleText(tableName: (UInt32) -> String) -> String {
        var w: [String] = []
        if invert { w.append("not") }
        if let from { w += ["from", from.routeDescription == "default" ? "0.0.0.0/0" : from.description] }
        if let to { w += ["to", to.description] }
        if let tos { w += ["tos", "0x" + String(tos, radix: 16)] }
        if let dscp { w += ["dscp", String(dscp)] }
        if let fwmark { w += ["fwmark", "0x" + String(fwmark, radix: 16) + (fwmask.map { "/0x" + String($0, radix: 16) } ?? "")] }
        if let iif { w += ["iif", iif] }
        if let oif { w += ["oif", oif] }
        if let uidrange { w += ["uidrange", "\(uidrange.lowerBound)-\(uidrange.upperBound)"] }
        if let ipproto { w += ["ipproto", String(ipproto)] }
        if let sport { w += ["sport", sport.description] }
        if let dport { w += ["dport", dport.description] }
        switch action {
        case .lookup(let t): w += ["lookup", tableName(t)]
        case .goto(let p): w += ["goto", String(p)]
        case .nop: w.append("nop")
        case .unreachable: w.append("unreachable")
        case .prohibit: w.append("prohibit")
        case .blackhole: w.append("blackhole")
        }
        if let suppressPrefixLength { w += ["suppress_prefixlength", String(suppressPrefixLength)] }
        if let pref { w += ["pref", String(pref)] }
        return w.joined(separator: " ")
    }
}
