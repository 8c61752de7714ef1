import Foundation

/// A lab that is up, for scripted experiments in Swift: change it, connect from its nodes (engine and kernel), run
/// checks and experiments, and read the results as values.
///
/// Made only by ``Lab/with(_:keep:_:)``, which takes the lab down again on every exit path:
/// ```swift
/// let topology = try Topology.load(path: "Labs/isp-failover.topo")
/// try await Lab.with(topology) { lab in
///     let before = try await lab.connect(from: "client", to: "192.0.2.80", port: 80)
///     try lab.set("client link eth0 down")
///     let moved = try await lab.waitUntil(within: .seconds(5)) {
///         try await lab.connect(from: "client", to: "192.0.2.80", port: 80).engine.source == "203.0.113.10"
///     }
///     print(before.engine.source ?? "-", moved.map { "converged after \($0)" } ?? "no failover")
/// }
/// ```
/// The calls block their thread while the kernel works (netlink, sockets in the lab's namespaces); each one holds
/// the lab's lock, as the `netlab` commands do, so a concurrent `netlab set` or `check` of the lab waits.
public final class Lab: @unchecked Sendable {
    /// The topology the lab came up with.
    public let topology: Topology
    /// The lab's name (its namespaces are `<name>-<node>`).
    public var name: String { topology.lab }
    private var session: LabSession?

    private init(topology: Topology, session: LabSession) { self.topology = topology; self.session = session }

    /// Bring `topology` up, run `body` with the lab, and take the lab down whatever happens: a return, a thrown
    /// error, or SIGINT/SIGTERM (trapped for the duration; the next call on the lab throws
    /// `LabError.interrupted`, and the lab is removed before it propagates). With `keep`, a lab whose body
    /// returned normally is left up.
    public static func with<T>(_ topology: Topology, keep: Bool = false, _ body: (Lab) async throws -> T) async throws -> T {
        Interrupts.trap()
        let session = try LabSession.open(topology, bringUp: .fresh(leftover: .none))
        let lab = Lab(topology: topology, session: session)
        do {
            let value = try await body(lab)
            lab.session = nil
            try session.end(keep: keep)
            if let s = Interrupts.signal { throw LabError.interrupted(signal: s) }
            return value
        } catch {
            lab.session = nil
            try? session.end()
            throw error
        }
    }

    private func checkInterrupt() throws {
        if let s = Interrupts.signal { throw LabError.interrupted(signal: s) }
    }

    private func liveSession() throws -> LabSession {
        if let session { return session }
        let s = try LabSession(topology: try expectedTopology())
        session = s
        return s
    }

    /// The state the lab should be in: its topology plus the changes made since it came up.
    public func expectedTopology() throws -> Topology {
        guard let j = try Journal.read(lab: name) else { throw LabError.notUp(lab: name) }
        return try LabController.expected(j).topology
    }

    /// A live change in the words of `netlab set` after the lab's name: `"client link eth0 down"`,
    /// `"client route add \"default via 203.0.113.1 metric 50\""`. Throws `LabError.badChange` (with the wrong word's
    /// place) before anything changes, or `LabError.changeRefused` with the kernel's words (nothing changed).
    @discardableResult
    public func set(_ words: String) throws -> SetOutcome {
        try checkInterrupt()
        let change: LiveChange
        do { change = try LiveChange.parse(line: words, topology: try expectedTopology()) } catch let e as TopologyError {
            throw LabError.badChange(e)
        }
        let o = try LabController.set(lab: name, change: change)
        if case .listen = change.action { try liveSession().listen(as: try expectedTopology()) }
        return o
    }

    /// Connect from `node` to `destination:port` through netlab's engine on the wire and, with `kernel`, through a
    /// kernel socket with the same options; the two compared (`agree`, `differences`), each with its source, device,
    /// next hop, paths and outcome.
    public func connect(from node: String, to destination: IPv4Address, port: UInt16, bind: IPv4Address? = nil,
                        device: String? = nil, mark: UInt32? = nil, tos: UInt8? = nil, synRetries: Int? = nil,
                        kernel: Bool = true) async throws -> ConnectComparison {
        try checkInterrupt()
        guard topology.node(node) != nil else { throw LabError.system("lab \(name) has no node \(node)") }
        let lock = try LabLock.acquire(lab: name, command: "connect")
        defer { lock.release() }
        let spec = ConnectSpec(destination: destination, port: port, bindAddress: bind, device: device, mark: mark, tos: tos,
                               synRetries: synRetries)
        let s = try liveSession()
        // A connect cut short by Ctrl-C (or one a signal arrived during) says nothing: the lab is interrupted.
        do {
            let v = try ConnectRun.run(spec, scope: s.scope(from: node), kernel: kernel, cache: s.cache)
            try checkInterrupt()
            return ConnectComparison(v)
        } catch let i as Interrupted {
            throw LabError.interrupted(signal: i.signal)
        }
    }

    /// Run one check (engine and kernel, evaluated against its expectations).
    public func check(_ check: Check) throws -> CheckResult {
        try checkInterrupt()
        let lock = try LabLock.acquire(lab: name, command: "check")
        defer { lock.release() }
        return CheckRunner.run(check, topology: topology, session: try liveSession(), pcapDirectory: nil, index: 0)
    }

    /// Run an experiment's steps on the lab as it is now.
    public func run(_ experiment: Experiment) throws -> ExperimentResult {
        try checkInterrupt()
        let lock = try LabLock.acquire(lab: name, command: "check")
        defer { lock.release() }
        return ExperimentRunner.run(experiment, topology: topology, session: try liveSession(), interrupted: { Interrupts.signal != nil })
    }

    /// The lab's drift from its file plus the changes made since it came up (empty when they match).
    public func status() throws -> LabStatus { try LabController.status(lab: name) }

    /// Evaluate `condition` every `every` until it is true, for at most `within`; returns how long that took (from
    /// the call to the start of the evaluation that was true), or nil when it never was.
    public func waitUntil(within: Duration, every: Duration = .milliseconds(50), _ condition: () async throws -> Bool) async throws -> Duration? {
        let clock = ContinuousClock()
        let start = clock.now
        while true {
            try checkInterrupt()
            let attempt = clock.now
            if try await condition() { return attempt - start }
            if clock.now + every >= start + within { return nil }
            try await Task.sleep(for: every)
        }
    }
}
