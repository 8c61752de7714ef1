import Driver
import Foundation
import Lab
import Netlink
import Topology

/// One step of an experiment as it ran.
public struct StepResult: Codable, Sendable {
    /// 1-based, in the experiment's order.
    public var index: Int
    /// check, set, wait or wait-until.
    public var kind: String
    /// `set: client link eth0 down`.
    public var text: String
    public var line: Int
    /// passed, failed, or skipped (an earlier step failed and the experiment stopped).
    public var status: String
    public var passed: Bool { status == "passed" }
    /// Seconds from the experiment's start to this step's start.
    public var started: Double
    public var seconds: Double
    /// wait-until: seconds from the step's start to the start of the attempt that passed (the state had converged
    /// by then), and how many attempts ran.
    public var converged: Double?
    public var attempts: Int?
    /// The check's result (for wait-until: the attempt that passed, or the last one).
    public var check: CheckResult?
    /// set: what was done, as `ip` commands.
    public var operations: [String]?
    /// Why the step failed, when it was not a check's expectation (a refused change, a timeout).
    public var error: String?
    public var failures: [String] { (error.map { [$0] } ?? []) + (check?.failures ?? []) }

    enum CodingKeys: String, CodingKey { case index, kind, text, line, status, passed, started, seconds, converged, attempts, check, operations, error }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index); try c.encode(kind, forKey: .kind); try c.encode(text, forKey: .text)
        try c.encode(line, forKey: .line); try c.encode(status, forKey: .status); try c.encode(passed, forKey: .passed)
        try c.encode(started, forKey: .started); try c.encode(seconds, forKey: .seconds)
        try c.encodeIfPresent(converged, forKey: .converged); try c.encodeIfPresent(attempts, forKey: .attempts)
        try c.encodeIfPresent(check, forKey: .check); try c.encodeIfPresent(operations, forKey: .operations)
        try c.encodeIfPresent(error, forKey: .error)
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index); kind = try c.decode(String.self, forKey: .kind)
        text = try c.decode(String.self, forKey: .text); line = try c.decode(Int.self, forKey: .line)
        status = try c.decode(String.self, forKey: .status); started = try c.decode(Double.self, forKey: .started)
        seconds = try c.decode(Double.self, forKey: .seconds)
        converged = try c.decodeIfPresent(Double.self, forKey: .converged); attempts = try c.decodeIfPresent(Int.self, forKey: .attempts)
        check = try c.decodeIfPresent(CheckResult.self, forKey: .check); operations = try c.decodeIfPresent([String].self, forKey: .operations)
        error = try c.decodeIfPresent(String.self, forKey: .error)
    }
    init(index: Int, step: ExperimentStep) {
        self.index = index; kind = step.kindName; text = step.text; line = step.location.line; status = "skipped"
        started = 0; seconds = 0
    }
}

/// One experiment as it ran: a test suite of steps.
public struct ExperimentResult: Codable, Sendable {
    public var name: String
    public var line: Int
    public var passed: Bool
    public var continueOnFailure: Bool
    /// How the lab was brought to the file's state before it: `as built` (nothing had changed it) or `rebuilt`.
    public var lab: String
    public var seconds: Double
    public var steps: [StepResult]
    public var failed: Int { steps.filter { $0.status == "failed" }.count }
    enum CodingKeys: String, CodingKey { case name, line, passed, continueOnFailure = "continue_on_failure", lab, seconds, steps }
    public var skipped: Int { steps.filter { $0.status == "skipped" }.count }
}

func pause(_ d: Duration) {
    let c = d.components
    guard c.seconds >= 0, d > .zero else { return }
    usleep(UInt32(min(Int64(60_000_000), c.seconds * 1_000_000 + c.attoseconds / 1_000_000_000_000)))
}

/// Runs an experiment's steps on a lab that is up, in the state its file declares.
public enum ExperimentRunner {
    /// Called before a step runs (result nil) and after.
    public typealias Progress = (_ step: ExperimentStep, _ result: StepResult?) -> Void

    /// The pause between two attempts of a `wait-until`.
    public static let retryPause: Duration = .milliseconds(50)

    public static func run(_ e: Experiment, topology: Topology, session: LabSession, lab: String = "as built",
                           progress: Progress? = nil, interrupted: () -> Bool = { false }) -> ExperimentResult {
        let clock = ContinuousClock()
        let start = clock.now
        func since(_ t: ContinuousClock.Instant) -> Double {
            let d = (clock.now - t).components
            return Double(d.seconds) + Double(d.attoseconds) / 1e18
        }
        var steps = e.steps.enumerated().map { StepResult(index: $0.offset + 1, step: $0.element) }
        var state = topology   // for the listeners: `listen`/`unlisten` steps change which ports are served
        var stopped = false
        for (k, step) in e.steps.enumerated() {
            if stopped || interrupted() { break }
            progress?(step, nil)
            var r = steps[k]
            let t0 = clock.now
            r.started = since(start)
            switch step.kind {
            case .check(let c):
                let cr = CheckRunner.run(c, topology: topology, session: session, pcapDirectory: nil, index: k)
                r.check = cr
                r.status = cr.passed ? "passed" : "failed"
            case .set(let change):
                do {
                    let o = try LabController.set(lab: topology.lab, change: change)
                    r.operations = o.operations.isEmpty ? o.notes : o.operations
                    if case .listen = change.action {
                        state.apply(change)
                        try session.listen(as: state)
                    }
                    r.status = "passed"
                } catch {
                    r.error = "\(error)"
                    r.status = "failed"
                }
            case .wait(let ms):
                let until = t0 + .milliseconds(ms)
                while clock.now < until, !interrupted() { pause(min(.milliseconds(50), until - clock.now)) }
                r.status = "passed"
            case .waitUntil(let c, let within):
                let deadline = t0 + .milliseconds(within)
                var attempts = 0
                r.status = "failed"
                while !interrupted() {
                    attempts += 1
                    let a0 = clock.now
                    let cr = CheckRunner.run(c, topology: topology, session: session, pcapDirectory: nil, index: k)
                    r.check = cr
                    if cr.passed {
                        r.status = "passed"
                        r.converged = Double((a0 - t0).components.seconds) + Double((a0 - t0).components.attoseconds) / 1e18
                        break
                    }
                    if clock.now + retryPause >= deadline { break }
                    pause(retryPause)
                }
                r.attempts = attempts
                if r.status == "failed" {
                    r.error = "not converged within \(Double(within) / 1000) s (\(attempts) attempt\(attempts == 1 ? "" : "s"))"
                }
            }
            r.seconds = since(t0)
            steps[k] = r
            progress?(step, r)
            if r.status == "failed" && !e.continueOnFailure { stopped = true }
        }
        return ExperimentResult(name: e.name, line: e.location.line, passed: !steps.contains { $0.status != "passed" },
                                continueOnFailure: e.continueOnFailure, lab: lab, seconds: since(start), steps: steps)
    }
}
