import Driver
import Files
import NetCore

/// A connect by the engine and (optionally) by the kernel in the same namespace, each watched on every interface of
/// the scope (`ConnectRig`, the I/O), and compared field by field (`Oracle.compare`). What runs again, and why, is
/// decided here: the engine on the kernel's TIME_WAIT state, the engine on the kernel's equal-cost leg, both once
/// the routers' ICMP buckets are known full.
public enum ConnectRun {
    /// `cache` keeps guards and captures open across runs (see `ConnectCache`); without it they live for this run only.
    /// `pcap` receives both connects' frames (checked beforehand with `OutputTarget.prepare`).
    public static func run(_ spec: ConnectSpec, scope: ConnectScope, kernel: Bool, pcap: OutputTarget? = nil,
                           seed: UInt64? = nil, cache: ConnectCache? = nil) throws -> ConnectVerdict {
        try run(spec, scope: scope, kernel: kernel, pcap: pcap, seed: seed, cache: cache, shared: nil)
    }

    static func run(_ spec: ConnectSpec, scope: ConnectScope, kernel: Bool, pcap: OutputTarget?, seed: UInt64?, cache: ConnectCache?,
                    shared given: SharedState?) throws -> ConnectVerdict {
        let rig = try ConnectRig(spec, scope: scope, seed: seed, cache: cache, shared: given)
        defer { rig.close() }
        try rig.settleLab()
        var state = try rig.readState()
        var (e, engineWireNextHop) = try rig.runEngine(spec, state: state, comment: "engine")

        var k: ConnectOutcome?
        var stateNotes: [ComparisonNote] = []
        if kernel {
            // The kernel must find the lab as the engine did: ICMP buckets and neighbours settled again, and every
            // TIME_WAIT to the destination giving tcp_twsk_unique's answer of the engine's run — else the engine
            // runs again on the state the kernel is about to find.
            for attempt in 0..<3 {
                if try rig.kernelFindsEngineState(state) { break }
                if attempt == 2 {
                    stateNotes.append(.timeWaitKeptChanging(destination: spec.destination, port: spec.port))
                    break
                }
                stateNotes.append(.timeWaitChanged(destination: spec.destination, port: spec.port))
                state = try rig.readState()
                try rig.settleLab()
                (e, engineWireNextHop) = try rig.runEngine(spec, state: state, comment: "engine, again on the kernel's TIME_WAIT state")
            }
            k = try rig.runKernel(state: state, preferNextHop: e.nextHop)
        }
        var v = Oracle.compare(engine: e, kernel: k)
        if let again = Oracle.rerunOnKernelLeg(spec, v) {
            // The node as the kernel's connect found it (its own socket, now in TIME_WAIT, was not there yet).
            try rig.settleLab()
            (e, engineWireNextHop) = try rig.runEngine(again, state: state, comment: "engine, on the kernel's leg")
            let first = v.notes
            v = Oracle.compare(engine: e, kernel: k)
            v.notes = first.map { .engineRanAgainOnLeg($0) } + v.notes
        }
        v.notes += stateNotes
        // The routers' ICMP buckets may have been spent before this process watched them: a difference where one
        // side got an ICMP error can be the order of the runs. Wait until every bucket is surely full and run both
        // again; the second comparison is the one reported.
        if Oracle.rerunForICMPBuckets(v, historyKnown: !rig.historyWasUnknown) {
            rig.shared.unknownHistory = false
            rig.shared.assumeSpent()
            var again = try run(spec, scope: scope, kernel: kernel, pcap: pcap, seed: seed, cache: cache, shared: rig.shared)
            again.notes.insert(.icmpRerun(firstDifferences: v.differences), at: 0)
            return again
        }
        if let pcap { try rig.writePcap(pcap) }
        if let wire = engineWireNextHop, let decided = e.nextHop, wire != decided, e.observed?.device != "lo" {
            v.differences.append(.engineNextHopNotOnWire(decided: decided, wire: wire))
        }
        return v
    }
}
