import Yams

/// A connect a topology declares, with what it must do (`checks:` in a `.topo` file; docs/topology.md).
public struct Check: Sendable {
    public var name: String
    public var location: SourceLocation
    /// The node whose namespace makes the connect.
    public var from: String
    public var destination: IPv4Address
    public var port: UInt16
    /// bind() before connect: an address (0.0.0.0 for none) and a port (0 for none).
    public var bindAddress: IPv4Address?
    public var bindPort: UInt16?
    /// SO_BINDTODEVICE.
    public var dev: String?
    /// SO_MARK and IP_TOS.
    public var mark: UInt32?
    public var tos: UInt8?
    /// IP_OPTIONS with a loose or strict source route.
    public var sourceRoute: SourceRoute?
    /// Sent once established; the listener must echo it back.
    public var payload: String?
    /// TCP_SYNCNT.
    public var synRetries: Int?
    public var expect: Expectation
    /// Compare with a kernel connect in the same namespace (`kernel: agree`, the default) or not (`kernel: skip`).
    public var compareWithKernel: Bool
    /// `sweep:`: the check is run once per combination of these values (a matrix in reports).
    public var sweep: Sweep?
    /// `expect-table:`: expectations for the cells whose swept values match a row's (later rows win).
    public var expectTable: [ExpectRow] = []

    public init(name: String, location: SourceLocation = .unknown, from: String, destination: IPv4Address, port: UInt16,
                bindAddress: IPv4Address? = nil, bindPort: UInt16? = nil, dev: String? = nil, mark: UInt32? = nil,
                tos: UInt8? = nil, sourceRoute: SourceRoute? = nil, payload: String? = nil, synRetries: Int? = nil,
                expect: Expectation = Expectation(), compareWithKernel: Bool = true) {
        self.name = name; self.location = location; self.from = from; self.destination = destination; self.port = port
        self.bindAddress = bindAddress; self.bindPort = bindPort; self.dev = dev; self.mark = mark; self.tos = tos
        self.sourceRoute = sourceRoute; self.payload = payload; self.synRetries = synRetries; self.expect = expect
        self.compareWithKernel = compareWithKernel
    }
}

public struct Expectation: Sendable, Hashable {
    public var result: ConnectResult?
    public var source: IPv4Address?
    public var dev: String?
    public var via: IPv4Address?
    public var path: [String]?
    public var replyPath: [String]?
    public init(result: ConnectResult? = nil, source: IPv4Address? = nil, dev: String? = nil, via: IPv4Address? = nil,
                path: [String]? = nil, replyPath: [String]? = nil) {
        self.result = result; self.source = source; self.dev = dev; self.via = via; self.path = path; self.replyPath = replyPath
    }
}

extension TopologyParser {
    static let checkKeys = ["name", "from", "connect", "bind", "dev", "mark", "tos", "source-route", "payload",
                            "syn-retries", "expect", "kernel", "sweep", "expect-table"]
    static let expectKeys = ["result", "source", "dev", "via", "path", "reply-path"]

    /// `checks:` — a list of connects with expectations. Node and interface names are checked against the nodes.
    mutating func parseChecks(_ value: Yams.Node, nodes: [Node]) -> [Check] {
        var out: [Check] = []
        var names: [String: Int] = [:]
        for item in reader.sequence(value, "checks") ?? [] {
            if let c = parseCheck(item, nodes: nodes, names: &names) { out.append(c) }
        }
        return out
    }

    /// One check (an item of `checks:`, or an experiment's inline check); `names` holds the names used so far.
    mutating func parseCheck(_ item: Yams.Node, nodes: [Node], names: inout [String: Int]) -> Check? {
        do {
            let at = reader.location(item)
            guard let entries = reader.mapping(item, "a check", allowed: Self.checkKeys) else { return nil }
            var c = Check(name: "", location: at, from: "", destination: .any, port: 0)
            var fromNode: Node?
            var devAt: SourceLocation?
            var sawConnect = false
            var sweepNode: Yams.Node?, tableNode: Yams.Node?
            for (key, keyAt, v) in entries {
                switch key {
                case "name":
                    guard let s = reader.scalar(v, "name") else { break }
                    c.name = s
                    reader.claim(s, at: v, keyLine: keyAt.line, in: &names, what: "check", hint: "give each check its own name: reports list checks by name")
                case "from":
                    guard let s = reader.scalar(v, "from") else { break }
                    c.from = s
                    fromNode = nodes.first { $0.name == s }
                    if fromNode == nil {
                        reader.error(reader.textLocation(v), "check source \"\(s)\" is not a node of this lab",
                                     hint: nearest(s, in: nodes.map(\.name)).map { "did you mean \"\($0)\"?" } ?? "name a node declared under `nodes:`",
                                     length: s.count)
                    }
                case "connect":
                    guard let s = reader.scalar(v, "connect") else { break }
                    sawConnect = true
                    if let (a, p) = endpoint(s, at: reader.textLocation(v), what: "connect", needPort: true) {
                        c.destination = a
                        c.port = p ?? 0
                    }
                case "bind":
                    guard let s = reader.scalar(v, "bind") else { break }
                    if let (a, p) = endpoint(s, at: reader.textLocation(v), what: "bind", needPort: false) {
                        c.bindAddress = a
                        c.bindPort = p
                    }
                case "dev":
                    c.dev = reader.scalar(v, "dev")
                    devAt = reader.textLocation(v)
                case "mark":
                    guard let s = reader.scalar(v, "mark") else { break }
                    if let n = parseNumber(s), n <= UInt32.max { c.mark = UInt32(n) } else {
                        reader.error(reader.textLocation(v), "mark \"\(s)\" must be a number (decimal or 0x hex) up to 0xffffffff", length: s.count)
                    }
                case "tos":
                    guard let s = reader.scalar(v, "tos") else { break }
                    if let n = parseNumber(s), n <= 255 { c.tos = UInt8(n) } else {
                        reader.error(reader.textLocation(v), "tos \"\(s)\" must be a number from 0 to 255 (e.g. 0x10)", length: s.count)
                    }
                case "source-route": c.sourceRoute = parseSourceRoute(v)
                case "payload": c.payload = reader.scalar(v, "payload")
                case "syn-retries":
                    guard let s = reader.scalar(v, "syn-retries") else { break }
                    if let n = Int(s), (1...127).contains(n) { c.synRetries = n } else {
                        reader.error(reader.textLocation(v), "syn-retries \"\(s)\" must be a number from 1 to 127 (TCP_SYNCNT)", length: s.count)
                    }
                case "expect": c.expect = parseExpectation(v, nodes: nodes)
                case "sweep": sweepNode = v
                case "expect-table": tableNode = v
                case "kernel":
                    guard let s = reader.scalar(v, "kernel") else { break }
                    switch s {
                    case "agree": c.compareWithKernel = true
                    case "skip": c.compareWithKernel = false
                    default: reader.error(reader.textLocation(v), "kernel: \"\(s)\" must be `agree` or `skip`", length: s.count)
                    }
                default: break
                }
            }
            if c.name.isEmpty { reader.error(at, "a check needs a `name:`", hint: "e.g. name: default route uses ISP1") }
            if let sweepNode { c.sweep = parseSweep(sweepNode, nodes: nodes, fixedFrom: fromNode) }
            if let tableNode {
                if let sw = c.sweep { c.expectTable = parseExpectTable(tableNode, sweep: sw, nodes: nodes) } else {
                    reader.error(reader.location(tableNode), "`expect-table:` needs `sweep:`", hint: "a table gives expectations per swept value; without a sweep use `expect:`")
                }
            }
            if c.from.isEmpty && c.sweep?.from == nil { reader.error(at, "check \"\(c.name)\" needs `from:` (the node that connects)") }
            if !sawConnect && c.sweep?.connect == nil { reader.error(at, "check \"\(c.name)\" needs `connect: ADDR:PORT`", hint: "e.g. connect: 192.0.2.80:80") }
            if let d = c.dev, let n = fromNode, n.interface(d) == nil, let at = devAt {
                reader.error(at, "node \(n.name) has no interface \"\(d)\"",
                             hint: nearest(d, in: n.interfaces.map(\.name)).map { "did you mean \"\($0)\"?" }
                                 ?? "its interfaces: " + n.interfaces.map(\.name).joined(separator: ", "),
                             length: d.count)
            }
            return c
        }
    }

    /// `ADDR:PORT` (or `ADDR` when the port is optional), inside the lab's address ranges.
    mutating func endpoint(_ s: String, at: SourceLocation, what: String, needPort: Bool) -> (IPv4Address, UInt16?)? {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let a = IPv4Address(parts[0]) else {
            reader.error(at, "\(what) \"\(s)\" is not \(needPort ? "ADDR:PORT" : "ADDR or ADDR:PORT")",
                         hint: needPort ? "e.g. 192.0.2.80:80" : "e.g. 203.0.113.10 or 203.0.113.10:40000", length: s.count)
            return nil
        }
        var port: UInt16?
        if parts.count == 2 {
            guard let p = UInt16(parts[1]), p > 0 || !needPort else {
                reader.error(at.advanced(by: parts[0].count + 1), "port \"\(parts[1])\" must be a number from 1 to 65535",
                             length: max(1, parts[1].count))
                return nil
            }
            port = p
        } else if needPort {
            reader.error(at.advanced(by: s.count), "\(what) \"\(s)\" needs a port", hint: "write ADDR:PORT, e.g. \(s):80")
            return nil
        }
        if a != .any, !(anyAddresses || LabAddressSpace.contains(a)) {
            reader.error(at, "\(what) address \(a) is outside the lab's address space",
                         hint: "labs use only \(LabAddressSpace.description); a check never leaves the lab",
                         length: parts[0].count)
            return nil
        }
        return (a, port)
    }

    /// `{loose: [A, B]}` or `{strict: [A, B]}`.
    mutating func parseSourceRoute(_ v: Yams.Node) -> SourceRoute? {
        guard let entries = reader.mapping(v, "source-route", allowed: ["loose", "strict"]) else { return nil }
        guard entries.count == 1, let (key, _, list) = entries.first else {
            reader.error(reader.location(v), "source-route takes one of `loose:` or `strict:`", hint: "e.g. {loose: [192.0.2.1, 192.0.2.18]}")
            return nil
        }
        var hops: [IPv4Address] = []
        for h in reader.sequence(list, key) ?? [] {
            guard let s = reader.scalar(h, "a hop") else { continue }
            if let a = IPv4Address(s), anyAddresses || LabAddressSpace.contains(a) { hops.append(a) } else {
                reader.error(reader.textLocation(h), "hop \"\(s)\" is not an IPv4 address of the lab",
                             hint: "hops are router addresses in \(LabAddressSpace.description)", length: s.count)
            }
        }
        // IP_OPTIONS holds 40 bytes: 3 for the option header, 4 per address, the final destination included.
        if hops.isEmpty || hops.count > 8 {
            reader.error(reader.location(list), "a source route needs 1 to 8 hops (IP options hold 40 bytes; the destination takes a slot)")
            return nil
        }
        return SourceRoute(strict: key == "strict", hops: hops)
    }

    mutating func parseExpectation(_ v: Yams.Node, nodes: [Node]) -> Expectation {
        var e = Expectation()
        for (key, _, value) in reader.mapping(v, "expect", allowed: Self.expectKeys) ?? [] {
            switch key {
            case "result":
                guard let s = reader.scalar(value, "result") else { break }
                if let r = ConnectResult(s) { e.result = r } else {
                    reader.error(reader.textLocation(value), "result \"\(s)\" is not known",
                                 hint: "one of established, refused, timeout, unreachable, error:ENAME (e.g. error:EACCES)",
                                 length: s.count)
                }
            case "source":
                guard let s = reader.scalar(value, "source") else { break }
                if let a = IPv4Address(s) { e.source = a } else {
                    reader.error(reader.textLocation(value), "source \"\(s)\" is not an IPv4 address", length: s.count)
                }
            case "dev": e.dev = reader.scalar(value, "dev")
            case "via":
                guard let s = reader.scalar(value, "via") else { break }
                if let a = IPv4Address(s) { e.via = a } else {
                    reader.error(reader.textLocation(value), "via \"\(s)\" is not an IPv4 address", length: s.count)
                }
            case "path", "reply-path":
                var path: [String] = []
                for n in reader.sequence(value, key) ?? [] {
                    guard let s = reader.scalar(n, "a node") else { continue }
                    if !nodes.contains(where: { $0.name == s }) {
                        reader.error(reader.textLocation(n), "\(key) names \"\(s)\", which is not a node",
                                     hint: nearest(s, in: nodes.map(\.name)).map { "did you mean \"\($0)\"?" }, length: s.count)
                    }
                    path.append(s)
                }
                if key == "path" { e.path = path } else { e.replyPath = path }
            default: break
            }
        }
        return e
    }
}
