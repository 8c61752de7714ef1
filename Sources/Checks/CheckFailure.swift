import Driver
import NetCore
import Oracle
import Topology

/// Why a check failed, as values: an expectation the engine missed, a disagreement with the kernel, a run that could
/// not be made, or Ctrl-C. Reports print `description` (the words they always had).
public indirect enum CheckFailure: Sendable, CustomStringConvertible {
    case expectation(Expectation)
    case disagreement([Difference])
    case notRun(any Error)
    /// The connect was cut short by a signal: neither an agreement nor a difference.
    case interrupted(Interrupted)
    /// A swept check's failed cell (by its values) and the cell's first failure; `moreCells` counts those not listed.
    case cell(values: [String], first: CheckFailure?)
    case moreCells(Int)

    /// One expectation of the check against what the engine did on the wire.
    public enum Expectation: Sendable, CustomStringConvertible {
        case result(expected: ConnectResult, engine: ConnectResult, errno: String?)
        case source(expected: IPv4Address, engine: String?)
        case dev(expected: String, engine: String?)
        case via(expected: IPv4Address, engine: String?)
        case path(expected: [String], engine: [String])
        case replyPath(expected: [String], engine: [String])
        case echo(sent: String, got: String?)

        public var description: String {
            func nodes(_ p: [String]) -> String { p.isEmpty ? "-" : p.joined(separator: " → ") }
            switch self {
            case .result(let want, let got, let errno): return "result: expected \(want), engine \(got)\(errno.map { " (\($0))" } ?? "")"
            case .source(let want, let got): return "source: expected \(want), engine \(got ?? "-")"
            case .dev(let want, let got): return "dev: expected \(want), engine \(got ?? "-")"
            case .via(let want, let got): return "via: expected \(want), engine \(got ?? "-")"
            case .path(let want, let got): return "path: expected \(want.joined(separator: " → ")), engine \(nodes(got))"
            case .replyPath(let want, let got): return "reply-path: expected \(want.joined(separator: " → ")), engine \(nodes(got))"
            case .echo(let sent, let got): return "echo: sent \"\(sent)\", got back \"\(got ?? "")\""
            }
        }
    }

    /// The report's lines for this failure (a disagreement gives one per difference).
    public var lines: [String] {
        switch self {
        case .disagreement(let d): d.map { "kernel differs: \($0)" }
        default: [description]
        }
    }

    public var description: String {
        switch self {
        case .expectation(let e): e.description
        case .disagreement(let d): d.map { "kernel differs: \($0)" }.joined(separator: "; ")
        case .notRun(let error): "could not run: \(error)"
        case .interrupted(let i): "could not run: \(i)"
        case .cell(let values, let first): "[\(values.joined(separator: " "))] " + (first?.lines.first ?? "failed")
        case .moreCells(let n): "and \(n) more cells"
        }
    }

    public var isInterrupted: Bool { if case .interrupted = self { true } else { false } }
}
