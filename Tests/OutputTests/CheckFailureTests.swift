@testable import Checks
@testable import Driver
import Oracle
import SystemPackage
import Testing
import Topology

// What a check reports when it fails, from typed values: a check's expectations against an engine outcome fixture,
// a disagreement, a run cut short. No root.

let checkLab = """
    lab: cf
    nodes:
      client:
        interfaces:
          eth0: [198.51.100.10/25]
      isp1:
        forwarding: true
        interfaces:
          eth0: [198.51.100.1/25]
    links:
      - [client:eth0, isp1:eth0]
    checks:
      - name: by isp1
        from: client
        connect: 198.51.100.1:80
        payload: hi
        expect:
          result: established
          source: 198.51.100.10
          dev: eth0
          via: 198.51.100.1
          path: [client, isp1]
          reply-path: [isp1, client]

    """

@Suite struct CheckFailureTests {
    func check() throws -> Check { try #require(try Topology.parse(checkLab, file: "cf.topo").checks.first) }

    func engine(errno: Errno? = nil) -> ConnectOutcome {
        var o = ConnectOutcome(errno: errno, source: IPv4Address("198.51.100.11")!, sourcePort: 40000)
        o.device = "eth1"
        o.echoed = Array("ho".utf8)
        o.observed = ObservedPath(synHops: [], replyHops: [], path: ["client", "isp2"], replyPath: [], device: "eth1", nextHopMAC: nil,
                                  synDestination: nil, syn: nil, reply: nil)
        return o
    }

    @Test func everyMissedExpectationInTheReportsWords() throws {
        let f = CheckRunner.evaluate(try check(), engine())
        #expect(f.map(\.description) == [
            "source: expected 198.51.100.10, engine 198.51.100.11", "dev: expected eth0, engine eth1", "via: expected 198.51.100.1, engine -",
            "path: expected client → isp1, engine client → isp2", "reply-path: expected isp1 → client, engine -",
            "echo: sent \"hi\", got back \"ho\""])
        let refused = CheckRunner.evaluate(try check(), engine(errno: .connectionRefused)).map(\.description)
        #expect(refused.first == "result: expected established, engine refused (ECONNREFUSED)" && !refused.contains { $0.hasPrefix("echo") })
    }

    @Test func aDisagreementIsALinePerDifferenceAndCtrlCIsTyped() throws {
        let d: [Difference] = [.device(engine: "eth0", kernel: "eth1"), .synsSent(engine: 1, kernel: 2)]
        #expect(CheckFailure.disagreement(d).lines == ["kernel differs: dev: engine eth0, kernel eth1", "kernel differs: syns sent: engine 1, kernel 2"])
        let i = CheckFailure.interrupted(Interrupted(operation: "engine connect", signal: 2))
        #expect(i.isInterrupted && i.lines == ["could not run: engine connect: interrupted by signal 2"])
        #expect(!CheckFailure.notRun(DriverError(operation: "socket", detail: "x")).isInterrupted)
        #expect(CheckFailure.cell(values: ["eth0", "0x10"], first: .disagreement(d)).description == "[eth0 0x10] kernel differs: dev: engine eth0, kernel eth1")
    }
}
