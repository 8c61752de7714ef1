import Driver
import Engine
import Files
import Foundation
import Netlink
import Oracle
import Topology

/// One check's outcome: what was expected, what the engine and the kernel did, and why it failed if it did.
public struct CheckResult: Codable, Sendable {
    public var name: String
    public var from: String
    public var connect: String
    public var line: Int
    public var passed: Bool
    /// Expectations the engine missed, differences from the kernel, and errors running the check.
    public var failures: [String]
    public var expected: [String: String]
    public var engine: SideReport?
    public var kernel: SideReport?
    public var differences: [String]
    public var notes: [String]
    public var pcap: String?
    public var seconds: Double
    /// A swept check's cells (its own engine and kernel are then nil).
    public var sweep: SweepReport?
    /// What failed, as values (`failures` and `differences` are their report text); not in the JSON.
    public var problems: [CheckFailure] = []
    /// The comparison the check ran, as values; not in the JSON.
    public var verdict: ConnectVerdict?

    enum CodingKeys: String, CodingKey {
        case name, from, connect, line, passed, failures, expected, engine, kernel, differences, notes, pcap, seconds, sweep
    }
}

extension CheckResult {
    /// A result whose failures, differences and notes are the report text of `problems` and `verdict`.
    init(_ check: Check, connect: String, problems: [CheckFailure], verdict: ConnectVerdict?, pcap: String?, seconds: Double,
         sweep: SweepReport? = nil, notes: [String]? = nil) {
        self.init(name: check.name, from: check.from, connect: connect, line: check.location.line, passed: problems.isEmpty,
                  failures: problems.flatMap(\.lines), expected: CheckRunner.expectedFields(check),
                  engine: verdict.map { SideReport($0.engine) }, kernel: verdict?.kernel.map(SideReport.init),
                  differences: verdict?.differences.map(\.description) ?? [], notes: notes ?? verdict?.notes.map(\.description) ?? [],
                  pcap: pcap, seconds: seconds, sweep: sweep, problems: problems, verdict: verdict)
    }
}

/// A swept check's matrix: the dimensions, their values, and every cell's result in row-major order.
public struct SweepReport: Codable, Sendable {
    public struct Cell: Codable, Sendable {
        /// One value per dimension.
        public var values: [String]
        public var result: CheckResult
    }
    public var dimensions: [String]
    public var values: [[String]]
    public var cells: [Cell]
    public var passed: Int { cells.filter(\.result.passed).count }
}

public struct CheckRun: Codable, Sendable {
    public var lab: String
    public var file: String
    public var started: Date
    public var seconds: Double
    public var results: [CheckResult]
    /// The experiments run after the checks, each a suite of steps.
    public var experiments: [ExperimentResult] = []
    public var passed: Int { results.filter(\.passed).count }
    public var failed: Int { results.count - passed }
    /// Whether every check and every experiment passed.
    public var allPassed: Bool { failed == 0 && experiments.allSatisfy(\.passed) }

    enum CodingKeys: String, CodingKey { case lab, file, started, seconds, results, passed, failed, experiments }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(lab, forKey: .lab); try c.encode(file, forKey: .file); try c.encode(started, forKey: .started)
        try c.encode(seconds, forKey: .seconds); try c.encode(results, forKey: .results)
        try c.encode(passed, forKey: .passed); try c.encode(failed, forKey: .failed)
        try c.encode(experiments, forKey: .experiments)
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        lab = try c.decode(String.self, forKey: .lab); file = try c.decode(String.self, forKey: .file)
        started = try c.decode(Date.self, forKey: .started); seconds = try c.decode(Double.self, forKey: .seconds)
        results = try c.decode([CheckResult].self, forKey: .results)
        experiments = try c.decodeIfPresent([ExperimentResult].self, forKey: .experiments) ?? []
    }
    public init(lab: String, file: String, started: Date, seconds: Double, results: [CheckResult]) {
        self.lab = lab; self.file = file; self.started = started; self.seconds = seconds; self.results = results
    }
}

/// Runs a topology's checks on a lab that is up: each connect by the engine and by the kernel, captured on every
/// interface, evaluated against the check's expectations.
public enum CheckRunner {
    public typealias Progress = (_ index: Int, _ total: Int, _ check: Check, _ result: CheckResult?) -> Void

    public static func run(_ topology: Topology, session: LabSession, pcapDirectory: String? = nil,
                           only: [Check]? = nil, progress: Progress? = nil, interrupted: () -> Bool = { false }) -> CheckRun {
        let started = Date()
        var results: [CheckResult] = []
        let checks = only ?? topology.checks
        for (i, check) in checks.enumerated() {
            if interrupted() { break }
            progress?(i, checks.count, check, nil)
            let r = run(check, topology: topology, session: session, pcapDirectory: pcapDirectory, index: i)
            results.append(r)
            progress?(i, checks.count, check, r)
        }
        return CheckRun(lab: topology.lab, file: topology.file, started: started, seconds: Date().timeIntervalSince(started), results: results)
    }

    public static func run(_ check: Check, topology: Topology, session: LabSession, pcapDirectory: String?, index: Int) -> CheckResult {
        if let sweep = check.sweep { return run(sweep: sweep, check, topology: topology, session: session, pcapDirectory: pcapDirectory, index: index) }
        let t0 = Date()
        // The directory was made before any work (`OutputDirectory.prepare`); each file goes through the one writer.
        let pcap = pcapDirectory.map { "\($0)/\(String(format: "%02d", index + 1))-\(slug(check.name)).pcapng" }
        let connect = "\(check.destination):\(check.port)"
        do {
            let v = try ConnectRun.run(check.spec, scope: session.scope(from: check.from), kernel: check.compareWithKernel, pcap: pcap.map(OutputTarget.file),
                                       cache: session.cache)
            let problems = evaluate(check, v.engine).map(CheckFailure.expectation) + (v.agree ? [] : [.disagreement(v.differences)])
            return CheckResult(check, connect: connect, problems: problems, verdict: v, pcap: pcap, seconds: Date().timeIntervalSince(t0))
        } catch let i as Interrupted {
            return CheckResult(check, connect: connect, problems: [.interrupted(i)], verdict: nil, pcap: nil, seconds: Date().timeIntervalSince(t0))
        } catch {
            return CheckResult(check, connect: connect, problems: [.notRun(error)], verdict: nil, pcap: nil, seconds: Date().timeIntervalSince(t0))
        }
    }

    /// A swept check: every cell run as a check of its own (engine and kernel), in row-major order; the check passes
    /// when every cell does.
    static func run(sweep: Sweep, _ check: Check, topology: Topology, session: LabSession, pcapDirectory: String?, index: Int) -> CheckResult {
        let t0 = Date()
        var cells: [SweepReport.Cell] = []
        for (k, cell) in check.cells.enumerated() {
            // The cells' pcaps go beside the others, numbered after the check's (check 3's cells: 3001-, 3002-, ...).
            var r = run(cell.check, topology: topology, session: session, pcapDirectory: pcapDirectory, index: (index + 1) * 1000 + k)
            r.line = check.location.line
            cells.append(.init(values: cell.values, result: r))
        }
        let failed = cells.filter { !$0.result.passed }
        var problems: [CheckFailure] = failed.prefix(5).map { .cell(values: $0.values, first: $0.result.problems.first) }
        if failed.count > 5 { problems.append(.moreCells(failed.count - 5)) }
        let connect = sweep.connect == nil ? "\(check.destination):\(check.port)" : "swept"
        var r = CheckResult(check, connect: connect, problems: problems, verdict: nil, pcap: nil, seconds: Date().timeIntervalSince(t0),
                            sweep: SweepReport(dimensions: sweep.dimensions.map(\.dimension.rawValue), values: sweep.dimensions.map(\.values), cells: cells),
                            notes: ["\(cells.count - failed.count)/\(cells.count) cells passed"])
        if sweep.from != nil { r.from = "swept" }
        return r
    }

    static func expectedFields(_ c: Check) -> [String: String] {
        var e: [String: String] = [:]
        if let v = c.expect.result { e["result"] = v.description }
        if let v = c.expect.source { e["source"] = v.description }
        if let v = c.expect.dev { e["dev"] = v }
        if let v = c.expect.via { e["via"] = v.description }
        if let v = c.expect.path { e["path"] = v.joined(separator: " → ") }
        if let v = c.expect.replyPath { e["reply_path"] = v.joined(separator: " → ") }
        if let p = c.payload { e["echo"] = p }
        return e
    }

    /// The check's expectations against what the engine did on the wire.
    public static func evaluate(_ c: Check, _ e: ConnectOutcome) -> [CheckFailure.Expectation] {
        var f: [CheckFailure.Expectation] = []
        let observed = e.result
        let errno = e.errno?.name
        let path = e.observed?.path ?? [], replyPath = e.observed?.replyPath ?? []
        if let want = c.expect.result, !want.isMet(by: observed, errno: errno) {
            f.append(.result(expected: want, engine: observed, errno: errno))
        }
        if let want = c.expect.source, e.source != want { f.append(.source(expected: want, engine: e.source?.description)) }
        if let want = c.expect.dev, e.device != want { f.append(.dev(expected: want, engine: e.device)) }
        if let want = c.expect.via, e.nextHop != want { f.append(.via(expected: want, engine: e.nextHop?.description)) }
        if let want = c.expect.path, path != want { f.append(.path(expected: want, engine: path)) }
        if let want = c.expect.replyPath, replyPath != want { f.append(.replyPath(expected: want, engine: replyPath)) }
        if let p = c.payload, observed == .established {
            let echoed = e.echoed.map { String(decoding: $0, as: UTF8.self) }
            if echoed != p { f.append(.echo(sent: p, got: echoed)) }
        }
        return f
    }

    static func slug(_ s: String) -> String {
        var out = ""
        for ch in s.lowercased() { out.append(ch.isLetter || ch.isNumber ? ch : "-") }
        while out.contains("--") { out = out.replacingOccurrences(of: "--", with: "-") }
        return String(out.trimmingCharacters(in: CharacterSet(charactersIn: "-")).prefix(48))
    }
}
