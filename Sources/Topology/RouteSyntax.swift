import Yams

extension TopologyParser {
    static let routeKeys = ["to", "via", "dev", "src", "table", "metric", "scope", "proto", "mtu", "advmss", "hoplimit",
                            "onlink", "type", "tos", "nexthops", "nhid"]
    static let nexthopKeys = ["via", "dev", "weight", "onlink"]
    static let routeWords = ["via", "dev", "oif", "src", "table", "metric", "priority", "preference", "scope", "proto",
                             "protocol", "mtu", "advmss", "hoplimit", "onlink", "nexthop", "type", "tos", "dsfield", "nhid"]

    /// A route in iproute2 syntax (`default via 198.51.100.1 dev eth0 metric 100`) or as a mapping with the same keys.
    mutating func parseRoute(_ node: Yams.Node, node owner: String) -> Route? {
        if case .mapping = node {
            let s = settings(fromMapping: node, "a route of node \(owner)", allowed: Self.routeKeys, listKey: "nexthops",
                             listAllowed: Self.nexthopKeys)
            return makeRoute(s, text: nil)
        }
        guard let text = reader.scalar(node, "a route") else { return nil }
        return parseRoute(text: text, tokens: tokenize(text, at: reader.textLocation(node)), at: reader.textLocation(node))
    }

    /// A route in iproute2 syntax, already split into words (a file's string, or `netlab set ... route add ...`).
    mutating func parseRoute(text: String, tokens: [Token], at: SourceLocation) -> Route? {
        var s = Settings(at: at)
        var i = 0
        func value(_ t: Token) -> Token? {
            guard i + 1 < tokens.count else {
                reader.error(t.at, "\"\(t.text)\" needs a value", length: t.text.count)
                return nil
            }
            i += 1
            return tokens[i]
        }
        if i < tokens.count, RouteType(rawValue: tokens[i].text) != nil { s.set("type", tokens[i]); i += 1 }
        if i < tokens.count, tokens[i].text == "to" { i += 1 }
        if i < tokens.count, !Self.routeWords.contains(tokens[i].text) {
            s.set("to", tokens[i]); i += 1
        } else {
            reader.error(s.at, "route \"\(text)\" has no destination", hint: "start with a prefix or `default`, e.g. `default via 198.51.100.1`")
            return nil
        }
        var current: Settings? = nil   // the nexthop being read
        while i < tokens.count {
            let t = tokens[i]
            if t.text == "nexthop" {
                if let c = current { s.nexthops.append(c) }
                current = Settings(at: t.at)
                i += 1
                continue
            }
            if current != nil {
                switch t.text {
                case "via":
                    if i + 1 < tokens.count, tokens[i + 1].text == "inet" { i += 1 }
                    if let v = value(t) { current!.set("via", v) }
                case "dev": if let v = value(t) { current!.set("dev", v) }
                case "weight": if let v = value(t) { current!.set("weight", v) }
                case "onlink": current!.set("onlink", Token(text: "true", at: t.at))
                default:
                    reader.error(t.at, "\"\(t.text)\" cannot follow `nexthop`",
                                 hint: "a nexthop takes via, dev, weight and onlink; put route-wide keys before the first `nexthop`",
                                 length: t.text.count)
                }
                i += 1
                continue
            }
            switch t.text {
            case "via":
                if i + 1 < tokens.count, tokens[i + 1].text == "inet" { i += 1 }
                if let v = value(t) { s.set("via", v) }
            case "dev", "oif": if let v = value(t) { s.set("dev", v) }
            case "metric", "priority", "preference": if let v = value(t) { s.set("metric", v) }
            case "protocol", "proto": if let v = value(t) { s.set("proto", v) }
            case "dsfield", "tos": if let v = value(t) { s.set("tos", v) }
            case "src", "table", "scope", "mtu", "advmss", "hoplimit", "type", "nhid": if let v = value(t) { s.set(t.text, v) }
            case "onlink": s.set("onlink", Token(text: "true", at: t.at))
            default:
                let hint = nearest(t.text, in: Self.routeWords).map { "did you mean \"\($0)\"?" }
                    ?? "a route takes: " + Self.routeWords.joined(separator: ", ")
                reader.error(t.at, "unknown word \"\(t.text)\" in route", hint: hint, length: t.text.count)
            }
            i += 1
        }
        if let c = current { s.nexthops.append(c) }
        return makeRoute(s, text: text)
    }

    mutating func makeRoute(_ s: Settings, text: String?) -> Route? {
        var ok = true
        var type = RouteType.unicast
        if let t = s["type"] {
            if let rt = RouteType(rawValue: t.text), rt != .broadcast, rt != .multicast { type = rt } else {
                reader.error(t.at, "route type \"\(t.text)\" is not one of unicast, local, blackhole, unreachable, prohibit, throw",
                             length: t.text.count)
                ok = false
            }
        }
        guard let to = s["to"] else {
            reader.error(s.at, "a route needs `to:` (a prefix or default)")
            return nil
        }
        var destination = IPv4Prefix(IPv4Address.any, 0)
        if to.text != "default" && to.text != "0.0.0.0/0" {
            guard let p = IPv4Prefix(to.text) else {
                reader.error(to.at, "route destination \"\(to.text)\" is not a prefix", hint: "write A.B.C.D/LEN or default", length: to.text.count)
                return nil
            }
            if !p.isCanonical {
                reader.error(to.at, "route destination \(to.text) has host bits set; the kernel rejects it",
                             hint: "did you mean \(p.canonical)?", length: to.text.count)
                ok = false
            }
            destination = p
        }
        var route = Route(location: s.at, text: text ?? "", type: type, destination: destination,
                          table: RoutingTable.main, metric: nil, scope: nil, proto: nil, src: nil, mtu: nil, advmss: nil,
                          hoplimit: nil, tos: nil, nexthops: [], isMultipath: !s.nexthops.isEmpty)
        if let t = s["table"] { if let id = table(t) { route.table = id } else { ok = false } }
        else if type == .local { route.table = RoutingTable.local }   // as iproute2 does for `ip route add local ...`
        if let t = s["metric"] { if let n = number(t, "metric") { route.metric = UInt32(n) } else { ok = false } }
        if let t = s["scope"] {
            if let sc = parseScope(t.text) { route.scope = sc } else {
                reader.error(t.at, "scope \"\(t.text)\" is not one of global, site, link, host", length: t.text.count)
                ok = false
            }
        }
        if let t = s["proto"] {
            let names: [String: UInt8] = ["redirect": 1, "kernel": 2, "boot": 3, "static": 4, "ra": 9, "dhcp": 16, "zebra": 11, "bird": 12]
            if let p = names[t.text] ?? parseNumber(t.text).flatMap({ $0 <= 255 ? UInt8($0) : nil }) { route.proto = p } else {
                reader.error(t.at, "protocol \"\(t.text)\" is not a name (boot, static, kernel, dhcp, ...) or a number 0-255", length: t.text.count)
                ok = false
            }
        }
        if let t = s["src"] { if let a = address(t, "src") { route.src = a } else { ok = false } }
        if let t = s["mtu"] {
            if let n = number(t, "mtu", max: 65535), n >= 68 { route.mtu = UInt32(n) } else {
                if let n = parseNumber(t.text), n < 68 { reader.error(t.at, "mtu \(n) is below IPv4's minimum of 68", hint: "use 68-65535", length: t.text.count) }
                ok = false
            }
        }
        if let t = s["advmss"] { if let n = number(t, "advmss", max: 65535) { route.advmss = UInt32(n) } else { ok = false } }
        if let t = s["hoplimit"] {
            if let n = number(t, "hoplimit", max: 255), n >= 1 { route.hoplimit = UInt32(n) } else {
                if parseNumber(t.text) == 0 { reader.error(t.at, "hoplimit 0 is not a TTL", hint: "use 1-255", length: t.text.count) }
                ok = false
            }
        }
        if let t = s["tos"] {
            if let n = number(t, "tos", max: 255) {
                if n & 3 != 0 {
                    reader.error(t.at, "tos \(t.text) sets ECN bits; the kernel rejects it", hint: "use a multiple of 4", length: t.text.count)
                    ok = false
                }
                route.tos = UInt8(n)
            } else { ok = false }
        }
        let top = Settings(at: s.at)
        var single = top
        for k in ["via", "dev", "onlink", "weight"] { if let v = s[k] { single.set(k, v) } }
        let hops = s.nexthops.isEmpty ? (single.values.isEmpty ? [] : [single]) : s.nexthops
        if !s.nexthops.isEmpty, s["via"] != nil || s["onlink"] != nil {
            reader.error((s["via"] ?? s["onlink"])!.at, "a multipath route takes `via` inside each `nexthop`, not before them")
            ok = false
        }
        for h in hops {
            var nh = Nexthop(gateway: nil, dev: nil, weight: 1, onlink: false, location: h.at)
            if let t = h["via"] { if let a = address(t, "gateway") { nh.gateway = a; nh.location = t.at } else { ok = false } }
            if let t = h["dev"] {
                nh.dev = t.text
                nh.devLocation = t.at
                if let p = interfaceNameProblem(t.text) { reader.error(t.at, p, length: t.text.count); ok = false }
            }
            if let t = h["weight"] {
                if let w = number(t, "weight", max: 256), w >= 1 { nh.weight = Int(w) } else {
                    if parseNumber(t.text) == 0 { reader.error(t.at, "weight must be from 1 to 256", length: t.text.count) }
                    ok = false
                }
            }
            if let t = h["onlink"] {
                switch t.text { case "true", "yes": nh.onlink = true; case "false", "no": nh.onlink = false
                default: reader.error(t.at, "onlink must be true or false", length: t.text.count); ok = false }
            }
            if !s.nexthops.isEmpty, nh.gateway == nil, nh.dev == nil {
                reader.error(h.at, "a nexthop needs `via` or `dev`", length: 7)
                ok = false
            }
            route.nexthops.append(nh)
        }
        if let t = s["nhid"] {
            if let n = number(t, "nhid"), n >= 1 { route.nexthopID = UInt32(n) } else { ok = false }
            if !hops.isEmpty {
                reader.error(t.at, "a route with `nhid` takes its gateway and device from the nexthop object",
                             hint: "drop via/dev/nexthop, or drop nhid", length: 4)
                ok = false
            }
        }
        if type.isError, let h = route.nexthops.first {
            reader.error(h.location, "a \(type.rawValue) route has no gateway or device",
                         hint: "drop `via`/`dev`: \(type.rawValue) \(destination.routeDescription)")
            ok = false
        }
        if !type.isError, type != .local, route.nexthops.isEmpty, route.nexthopID == nil, !bareRoutes {
            reader.error(to.at, "route \(destination.routeDescription) needs `via` or `dev`",
                         hint: "e.g. \(destination.routeDescription) via GATEWAY, or an error type such as unreachable \(destination.routeDescription)",
                         length: to.text.count)
            ok = false
        }
        if route.text.isEmpty { route.text = route.iprouteText(tableName: { self.tableName($0) }) }
        return ok ? route : nil
    }

    func tableName(_ id: UInt32) -> String {
        tables.first { $0.id == id }?.name ?? RoutingTable.builtinName(id) ?? String(id)
    }
}

extension Route {
    /// The route in iproute2's `ip route add` syntax.
    public func iprouteText(tableName: (UInt32) -> String) -> String {
        var w: [String] = []
        if type != .unicast { w.append(type.rawValue) }
        w.append(destination.routeDescription)
        if let tos { w += ["tos", "0x" + String(tos, radix: 16)] }
        if !isMultipath, let h = nexthops.first {
            if let g = h.gateway { w += ["via", g.description] }
            if let d = h.dev { w += ["dev", d] }
            if h.onlink { w.append("onlink") }
        }
        if let nexthopID { w += ["nhid", String(nexthopID)] }
        if table != RoutingTable.main { w += ["table", tableName(table)] }
        if let proto { w += ["proto", String(proto)] }
        if let scope { w += ["scope", scope.rawValue] }
        if let metric { w += ["metric", String(metric)] }
        if let src { w += ["src", src.description] }
        if let mtu { w += ["mtu", String(mtu)] }
        if let advmss { w += ["advmss", String(advmss)] }
        if let hoplimit { w += ["hoplimit", String(hoplimit)] }
        if isMultipath {
            for h in nexthops {
                w.append("nexthop")
                if let g = h.gateway { w += ["via", g.description] }
                if let d = h.dev { w += ["dev", d] }
                w += ["weight", String(h.weight)]
                if h.onlink { w.append("onlink") }
            }
        }
        return w.joined(separator: " ")
    }
}
