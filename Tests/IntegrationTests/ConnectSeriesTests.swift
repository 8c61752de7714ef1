import Foundation
import Testing
import NetLab

/// A series of connects on one lab keeps sockets and the routing snapshot across runs (`NodeHandles`, issue 13 §5);
/// the snapshot must never be stale: every change between two runs — announced by the kernel (a rule, a route) or
/// not (a sysctl) — is seen by the next run, whose engine then agrees with the kernel on the new path.
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct ConnectSeriesTests {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    @Test func snapshotIsReadAgainAfterEveryChange() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        let topology = try Topology.load(path: f.file)
        _ = try LabController.up(topology)
        defer { _ = try? LabController.down(lab: topology.lab) }
        let session = try LabSession(topology: topology, fresh: true)
        defer { session.close() }
        let scope = session.scope(from: "client")
        let handles = session.cache.handles(for: scope.sourceNamespace)
        let marked = ConnectSpec(destination: IPv4Address("192.0.2.80")!, port: 80, mark: 1)
        func connect(_ spec: ConnectSpec) throws -> ConnectComparison {
            let c = ConnectComparison(try ConnectRun.run(spec, scope: scope, kernel: true, cache: session.cache))
            #expect(c.agree, "\(c.differences)")
            #expect(c.engine.result == "established")
            return c
        }
        func set(_ words: String...) throws { _ = try LabController.set(lab: topology.lab, words: words) }

        // Two runs on an unchanged lab: the second reuses the snapshot.
        #expect(try connect(marked).engine.dev == "eth0")
        let reads = handles.snapshotReads
        #expect(try connect(marked).engine.dev == "eth0")
        #expect(handles.snapshotReads == reads && handles.snapshotReuses >= 1, "reads \(handles.snapshotReads), reuses \(handles.snapshotReuses)")

        // A rule between two runs (announced: RTM_NEWRULE): the marked connect moves to ISP2.
        try set("client", "rule", "add", "fwmark 0x1 lookup isp2 pref 50")
        let moved = try connect(marked)
        #expect(moved.engine.dev == "eth1" && moved.engine.source == "203.0.113.10", "\(moved.engine)")
        #expect(handles.snapshotReads == reads + 1)

        // A route deleted between two runs (RTM_DELROUTE): the unmarked connect takes the metric-200 default.
        let plain = ConnectSpec(destination: IPv4Address("192.0.2.80")!, port: 80)
        #expect(try connect(plain).engine.dev == "eth0")
        try set("client", "route", "del", "default via 198.51.100.1 dev eth0 metric 100")
        let rerouted = try connect(plain)
        #expect(rerouted.engine.dev == "eth1" && rerouted.engine.via == "203.0.113.1", "\(rerouted.engine)")

        // A sysctl between two runs (not announced for this key): the snapshot is read again and holds it.
        let before = handles.snapshotReads
        _ = try NodeState.read(handles)
        #expect(handles.snapshotReads == before)
        try set("client", "sysctl", "net.ipv4.conf.all.src_valid_mark=1")
        let state = try NodeState.read(handles)
        #expect(handles.snapshotReads == before + 1)
        #expect(state.snapshot.sysctls["net.ipv4.conf.all.src_valid_mark"] == "1")
        // What the handles read is what a fresh read of the namespace gives.
        let fresh = try NodeState.read(scope.sourceNamespace)
        #expect(state.snapshot.routes == fresh.snapshot.routes && state.snapshot.rules == fresh.snapshot.rules
                && state.snapshot.sysctls == fresh.snapshot.sysctls && state.snapshot.links == fresh.snapshot.links)
        #expect(try connect(plain).engine.dev == "eth1")
    }
}
