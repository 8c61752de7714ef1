import Yams

/// A scripted experiment (`experiments:` in a `.topo` file; docs/topology.md#experiments): steps run in order on a
/// lab in the state the file declares. A failing step stops the experiment unless `continue-on-failure: true`.
public struct Experiment: Sendable {
    public var name: String
    public var location: SourceLocation
    public var continueOnFailure: Bool
    public var steps: [ExperimentStep]
    public init(name: String, location: SourceLocation = .unknown, continueOnFailure: Bool = false, steps: [ExperimentStep] = []) {
        self.name = name; self.location = location; self.continueOnFailure = continueOnFailure; self.steps = steps
    }
}

public struct ExperimentStep: Sendable {
    public enum Kind: Sendable {
        /// Run a check (engine and kernel) once; it must pass.
        case check(Check)
        /// A live change, as `netlab set` makes it.
        case set(LiveChange)
        /// Sleep.
        case wait(milliseconds: Int)
        /// Run the check again and again until it passes, for at most `within` (an attempt is started only before
        /// then); the time to convergence is reported.
        case waitUntil(Check, withinMilliseconds: Int)
    }
    public var kind: Kind
    public var location: SourceLocation
    /// How the step reads in reports: `set: client link eth0 down`, `wait-until: after failover (within 5s)`.
    public var text: String
    public var kindName: String {
        switch kind { case .check: "check"; case .set: "set"; case .wait: "wait"; case .waitUntil: "wait-until" }
    }
}

/// `200ms`, `5s`, `1.5s`: a duration in milliseconds (0 to 10 minutes), or nil.
public func parseDuration(_ s: String) -> Int? {
    let t = s.trimmingSpaces
    var number = Substring(t), scale = 1000.0
    if t.hasSuffix("ms") { number = t.dropLast(2); scale = 1 } else if t.hasSuffix("s") { number = t.dropLast(1) } else { return nil }
    guard let v = Double(number.trimmingSpaces), v >= 0, v.isFinite else { return nil }
    let ms = v * scale
    guard ms <= 600_000 else { return nil }
    return Int(ms.rounded())
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

extension TopologyParser {
    static let experimentKeys = ["name", "steps", "continue-on-failure"]
    static let stepKeys = ["check", "set", "wait", "wait-until"]
    static let waitUntilKeys = ["check", "within"]

    mutating func parseExperiments(_ value: Yams.Node, topology: Topology) -> [Experiment] {
        var out: [Experiment] = []
        var names: [String: Int] = [:]
        let items = reader.sequence(value, "experiments") ?? []
        // First every inline check, so any step may name one written later, in its experiment or another.
        var inlineNames: [String: Int] = Dictionary(topology.checks.map { ($0.name, $0.location.line) }, uniquingKeysWith: { a, _ in a })
        var inline = InlineChecks()
        for item in items {
            guard case .mapping(let m) = item, let steps = m.first(where: { $0.key.scalar?.string == "steps" })?.value,
                  case .sequence(let seq) = steps else { continue }
            for step in seq {
                guard case .mapping(let sm) = step else { continue }
                for (k, v) in sm {
                    guard case .scalar(let ks) = k, ks.string == "check" || ks.string == "wait-until" else { continue }
                    var target = v
                    if ks.string == "wait-until", case .mapping(let wm) = v {
                        guard let c = wm.first(where: { $0.key.scalar?.string == "check" })?.value else { continue }
                        target = c
                    }
                    guard case .mapping = target else { continue }
                    if let c = parseCheck(target, nodes: topology.nodes, names: &inlineNames) {
                        inline.byName[c.name] = c
                        inline.byPlace["\(reader.location(target))"] = c
                    }
                }
            }
        }
        for item in items {
            let at = reader.location(item)
            guard let entries = reader.mapping(item, "an experiment", allowed: Self.experimentKeys) else { continue }
            var e = Experiment(name: "", location: at)
            var stepsNode: Yams.Node?
            for (key, keyAt, v) in entries {
                switch key {
                case "name":
                    guard let s = reader.scalar(v, "name") else { break }
                    e.name = s
                    reader.claim(s, at: v, keyLine: keyAt.line, in: &names, what: "experiment", hint: "give each experiment its own name: reports and --experiment use it")
                case "continue-on-failure": e.continueOnFailure = reader.bool(v, "continue-on-failure") ?? false
                case "steps": stepsNode = v
                default: break
                }
            }
            if e.name.isEmpty { reader.error(at, "an experiment needs a `name:`", hint: "e.g. name: isp1 failover") }
            guard let stepsNode else {
                reader.error(at, "experiment \"\(e.name)\" needs `steps:`", hint: "a list of check:, set:, wait: and wait-until: steps")
                out.append(e)
                continue
            }
            e.steps = parseSteps(stepsNode, experiment: e.name, topology: topology, inline: inline)
            if e.steps.isEmpty, reader.sequence(stepsNode, "steps")?.isEmpty == true {
                reader.error(reader.location(stepsNode), "experiment \"\(e.name)\" has no steps")
            }
            out.append(e)
        }
        return out
    }

    /// The inline checks of every experiment, by name and by where they are written.
    struct InlineChecks {
        var byName: [String: Check] = [:]
        var byPlace: [String: Check] = [:]
    }

    /// The steps of one experiment. Checks are named or inline; a name is looked up among the inline checks (of any
    /// experiment, wherever they are written) and then the file's `checks:`.
    mutating func parseSteps(_ value: Yams.Node, experiment: String, topology: Topology, inline: InlineChecks) -> [ExperimentStep] {
        let items = reader.sequence(value, "steps") ?? []
        func check(_ v: Yams.Node, _ what: String) -> Check? {
            if case .mapping = v { return inline.byPlace["\(reader.location(v))"] }
            guard let name = reader.scalar(v, what) else { return nil }
            if let c = inline.byName[name] ?? topology.checks.first(where: { $0.name == name }) { return c }
            let known = Array(inline.byName.keys) + topology.checks.map(\.name)
            reader.error(reader.textLocation(v), "no check is named \"\(name)\"",
                         hint: nearest(name, in: known).map { "did you mean \"\($0)\"?" }
                             ?? "name a check of `checks:` or write one inline: {name: ..., from: ..., connect: ..., expect: {...}}",
                         length: name.count)
            return nil
        }
        var out: [ExperimentStep] = []
        var state = topology   // changes are checked against the state the steps before them leave
        for item in items {
            let at = reader.location(item)
            guard let entries = reader.mapping(item, "a step", allowed: Self.stepKeys) else { continue }
            guard entries.count == 1, let (kind, _, v) = entries.first else {
                if !entries.isEmpty {
                    reader.error(at, "a step is one of check:, set:, wait: or wait-until:, not several",
                                 hint: "write each as its own list item (- set: ..., - wait: ...)")
                }
                continue
            }
            switch kind {
            case "check":
                if let c = check(v, "check") { out.append(ExperimentStep(kind: .check(c), location: at, text: "check: \(c.name)")) }
            case "set":
                guard let s = reader.scalar(v, "set") else { continue }
                let start = reader.textLocation(v)
                guard let tokens = splitWords(s, at: start) else { continue }
                if let c = parseChange(tokens, whole: start, topology: state) {
                    state.apply(c)
                    out.append(ExperimentStep(kind: .set(c), location: at, text: "set: \(c.text)"))
                }
            case "wait":
                guard let s = reader.scalar(v, "wait") else { continue }
                if let ms = parseDuration(s) { out.append(ExperimentStep(kind: .wait(milliseconds: ms), location: at, text: "wait: \(s)")) } else {
                    durationError(v, s)
                }
            case "wait-until":
                guard let wm = reader.mapping(v, "wait-until", allowed: Self.waitUntilKeys) else { continue }
                var c: Check?, within: Int?, withinText = ""
                for (k, _, wv) in wm {
                    if k == "check" { c = check(wv, "check") }
                    if k == "within", let s = reader.scalar(wv, "within") {
                        if let ms = parseDuration(s), ms > 0 { within = ms; withinText = s } else { durationError(wv, s) }
                    }
                }
                if !wm.contains(where: { $0.key == "check" }) {
                    reader.error(at, "wait-until needs `check:` (a check's name, or one inline)", hint: "e.g. wait-until: {check: after failover, within: 5s}")
                }
                if !wm.contains(where: { $0.key == "within" }) {
                    reader.error(at, "wait-until needs `within:` (how long to keep trying)", hint: "e.g. wait-until: {check: after failover, within: 5s}")
                }
                if let c, let within {
                    out.append(ExperimentStep(kind: .waitUntil(c, withinMilliseconds: within), location: at,
                                              text: "wait-until: \(c.name) (within \(withinText))"))
                }
            default: break
            }
        }
        return out
    }

    mutating func durationError(_ v: Yams.Node, _ s: String) {
        reader.error(reader.textLocation(v), "\"\(s)\" is not a duration", hint: "write milliseconds or seconds up to 10 minutes, e.g. 200ms or 5s",
                     length: s.count)
    }
}
