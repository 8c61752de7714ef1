import Yams

/// `sweep:` on a check: the values each swept field takes, in the order written; the check runs once per
/// combination (a cell), and reports render the cells as a matrix (docs/topology.md#sweeps).
public struct Sweep: Sendable {
    public enum Dimension: String, Sendable, CaseIterable { case from, connect, bind, dev, mark, tos }
    /// The swept fields in the order written, each with its values as written (`192.0.2.80:80`, `0x1`).
    public var dimensions: [(dimension: Dimension, values: [String])]
    public var from: [String]? { values(.from) }
    public var connect: [String]? { values(.connect) }
    public func values(_ d: Dimension) -> [String]? { dimensions.first { $0.dimension == d }?.values }
    /// How many cells: the product of the value counts.
    public var count: Int { dimensions.reduce(1) { $0 * $1.values.count } }
}

/// A row of `expect-table:`: the cells whose swept values equal `match` (the dimensions it names) get `expect`.
public struct ExpectRow: Sendable {
    public var match: [Sweep.Dimension: String]
    public var expect: Expectation
    public var location: SourceLocation
}

/// One combination of a sweep: its values (one per dimension, in the sweep's order) and the check it runs.
public struct SweepCell: Sendable {
    public var values: [String]
    public var check: Check
}

extension Check {
    /// The cells of a swept check, in row-major order of the sweep's dimensions (the last varies fastest); each is
    /// the check with the cell's values and its expectation: `expect:`, then every matching `expect-table:` row's
    /// fields over it. Empty for a check without `sweep:`.
    public var cells: [SweepCell] {
        guard let sweep else { return [] }
        var out: [SweepCell] = [SweepCell(values: [], check: self)]
        for (dim, values) in sweep.dimensions {
            var next: [SweepCell] = []
            for cell in out {
                for v in values {
                    var c = cell.check
                    c.sweep = nil
                    c.expectTable = []
                    switch dim {
                    case .from: c.from = v
                    case .connect:
                        let parts = v.split(separator: ":")
                        c.destination = IPv4Address(String(parts[0])) ?? c.destination
                        c.port = parts.count > 1 ? UInt16(parts[1]) ?? c.port : c.port
                    case .bind:
                        let parts = v.split(separator: ":")
                        let a = IPv4Address(String(parts[0]))
                        c.bindAddress = a == .any ? nil : a
                        c.bindPort = parts.count > 1 ? UInt16(parts[1]) : nil
                    case .dev: c.dev = v == "none" ? nil : v
                    case .mark: c.mark = parseNumber(v).map { UInt32(truncatingIfNeeded: $0) }
                    case .tos: c.tos = parseNumber(v).map { UInt8(truncatingIfNeeded: $0) }
                    }
                    next.append(SweepCell(values: cell.values + [v], check: c))
                }
            }
            out = next
        }
        let dims = sweep.dimensions.map(\.dimension)
        for k in out.indices {
            var e = expect
            for row in expectTable where row.match.allSatisfy({ d, v in dims.firstIndex(of: d).map { out[k].values[$0] == v } ?? false }) {
                e.merge(row.expect)
            }
            out[k].check.expect = e
            out[k].check.name = "\(name) [\(zip(dims, out[k].values).map { "\($0.rawValue)=\($1)" }.joined(separator: " "))]"
        }
        return out
    }
}

extension Expectation {
    /// The fields `other` sets, over this one's.
    public mutating func merge(_ other: Expectation) {
        if let v = other.result { result = v }
        if let v = other.source { source = v }
        if let v = other.dev { dev = v }
        if let v = other.via { via = v }
        if let v = other.path { path = v }
        if let v = other.replyPath { replyPath = v }
    }
}

extension TopologyParser {
    /// `sweep: {from: [...], connect: [...], bind: [...], dev: [...], mark: [...], tos: [...]}`.
    mutating func parseSweep(_ value: Yams.Node, nodes: [Node], fixedFrom: Node?) -> Sweep? {
        guard let entries = reader.mapping(value, "sweep", allowed: Sweep.Dimension.allCases.map(\.rawValue)) else { return nil }
        var sweep = Sweep(dimensions: [])
        var devAt: [(String, SourceLocation)] = []
        for (key, _, v) in entries {
            let dim = Sweep.Dimension(rawValue: key)!
            var values: [String] = []
            for item in reader.sequence(v, "sweep \(key)") ?? [] {
                guard let s = reader.scalar(item, "a \(key) value") else { continue }
                let at = reader.textLocation(item)
                if values.contains(s) {
                    reader.error(at, "\(key) value \"\(s)\" is swept twice", length: s.count)
                    continue
                }
                switch dim {
                case .from:
                    if !nodes.contains(where: { $0.name == s }) {
                        reader.error(at, "sweep source \"\(s)\" is not a node of this lab",
                                     hint: nearest(s, in: nodes.map(\.name)).map { "did you mean \"\($0)\"?" }, length: s.count)
                        continue
                    }
                case .connect: if endpoint(s, at: at, what: "connect", needPort: true) == nil { continue }
                case .bind: if endpoint(s, at: at, what: "bind", needPort: false) == nil { continue }
                case .dev:
                    if s != "none", let p = interfaceNameProblem(s) { reader.error(at, p, length: s.count); continue }
                    devAt.append((s, at))
                case .mark:
                    guard let n = parseNumber(s), n <= UInt32.max else {
                        reader.error(at, "mark \"\(s)\" must be a number (decimal or 0x hex) up to 0xffffffff", length: s.count)
                        continue
                    }
                case .tos:
                    guard let n = parseNumber(s), n <= 255 else {
                        reader.error(at, "tos \"\(s)\" must be a number from 0 to 255 (e.g. 0x10)", length: s.count)
                        continue
                    }
                }
                values.append(s)
            }
            if values.isEmpty {
                reader.error(reader.location(v), "sweep \(key) needs at least one value", hint: "e.g. \(key): [A, B]")
                continue
            }
            sweep.dimensions.append((dim, values))
        }
        if sweep.dimensions.isEmpty {
            reader.error(reader.location(value), "`sweep:` sweeps nothing", hint: "e.g. sweep: {from: [client, laptop], mark: [0, 1]}")
            return nil
        }
        // A swept device must exist on every node the cells connect from.
        let sources = sweep.from.map { names in nodes.filter { names.contains($0.name) } } ?? fixedFrom.map { [$0] } ?? []
        for (d, at) in devAt where d != "none" {
            if let n = sources.first(where: { $0.interface(d) == nil }) {
                reader.error(at, "node \(n.name) has no interface \"\(d)\"", hint: "every swept `from` node needs each swept `dev` (or write `none` for no device)",
                             length: d.count)
            }
        }
        if sweep.count > 10_000 {
            reader.error(reader.location(value), "the sweep has \(sweep.count) cells; at most 10000", hint: "sweep fewer values")
            return nil
        }
        return sweep
    }

    /// `expect-table:`: a list of rows, each naming swept values (a subset of the sweep's dimensions) and an
    /// `expect:` for the cells that have them.
    mutating func parseExpectTable(_ value: Yams.Node, sweep: Sweep, nodes: [Node]) -> [ExpectRow] {
        var out: [ExpectRow] = []
        let dims = sweep.dimensions.map(\.dimension.rawValue)
        for item in reader.sequence(value, "expect-table") ?? [] {
            guard let entries = reader.mapping(item, "a row of expect-table", allowed: dims + ["expect"]) else { continue }
            var row = ExpectRow(match: [:], expect: Expectation(), location: reader.location(item))
            var sawExpect = false
            for (key, _, v) in entries {
                if key == "expect" {
                    row.expect = parseExpectation(v, nodes: nodes)
                    sawExpect = true
                    continue
                }
                guard let s = reader.scalar(v, key) else { continue }
                let d = Sweep.Dimension(rawValue: key)!
                let values = sweep.values(d) ?? []
                if !values.contains(s) {
                    reader.error(reader.textLocation(v), "\(key) \"\(s)\" is not one of the swept values",
                                 hint: nearest(s, in: values).map { "did you mean \"\($0)\"?" } ?? "swept: " + values.joined(separator: ", "),
                                 length: s.count)
                    continue
                }
                row.match[d] = s
            }
            if !sawExpect { reader.error(row.location, "a row of expect-table needs `expect:`", hint: "e.g. {mark: 1, expect: {dev: eth1}}") }
            out.append(row)
        }
        return out
    }
}
