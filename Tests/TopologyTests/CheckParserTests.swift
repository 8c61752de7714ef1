import Foundation
import Testing
@testable import Topology

/// `checks:` parse into the model; each mistake is reported at its line and column with a fix.
@Suite struct CheckParserTests {
    func lab(_ checks: String) -> String { base() + "checks:\n" + checks }

    @Test func everyKeyReachesTheModel() throws {
        let t = try Topology.parse(lab("""
          - name: all keys
            from: client
            connect: 198.51.100.1:80
            bind: 198.51.100.10:40000
            dev: eth0
            mark: 0x1f
            tos: 0x10
            source-route: {strict: [198.51.100.1, 192.0.2.1]}
            payload: hello
            syn-retries: 2
            kernel: skip
            expect:
              result: error:EOPNOTSUPP
              source: 198.51.100.10
              dev: eth0
              via: 198.51.100.1
              path: [client, isp1]
              reply-path: [isp1, client]
        """), file: "t.topo")
        let c = try #require(t.checks.first)
        #expect(c.name == "all keys" && c.from == "client" && c.destination == IPv4Address("198.51.100.1") && c.port == 80)
        #expect(c.bindAddress == IPv4Address("198.51.100.10") && c.bindPort == 40000 && c.dev == "eth0")
        #expect(c.mark == 0x1f && c.tos == 0x10 && c.payload == "hello" && c.synRetries == 2 && !c.compareWithKernel)
        #expect(c.sourceRoute == SourceRoute(strict: true, hops: [IPv4Address("198.51.100.1")!, IPv4Address("192.0.2.1")!]))
        #expect(c.expect.result == .error("EOPNOTSUPP") && c.expect.path == ["client", "isp1"] && c.expect.replyPath == ["isp1", "client"])
        #expect(c.expect.source == IPv4Address("198.51.100.10") && c.expect.via == IPv4Address("198.51.100.1") && c.expect.dev == "eth0")
        #expect(c.location.line == 13)
    }

    @Test func bundledLabsDeclareChecks() throws {
        for f in try labFiles() {
            let t = try Topology.load(path: f)
            #expect(!t.checks.isEmpty, "\(f) has no checks")
        }
    }

    @Test func mistakesPointAtTheirPlace() {
        let d = diagnostics(lab("""
          - name: one
            from: clinet
            connect: 10.0.0.1:80
            dev: eth9
            expect: {result: done, path: [client, nowhere]}
          - name: one
            from: client
            connect: 198.51.100.1
            source-route: {loose: []}
            syn-retries: 500
            colour: blue
        """))
        func at(_ line: Int, _ text: String) -> Bool { d.contains { $0.location.line == line && $0.message.contains(text) } }
        #expect(at(14, "\"clinet\" is not a node"))
        #expect(d.first { $0.message.contains("clinet") }?.hint == "did you mean \"client\"?")
        #expect(at(15, "outside the lab's address space"))
        #expect(at(17, "result \"done\" is not known"))
        #expect(at(17, "\"nowhere\", which is not a node"))
        #expect(at(18, "already used by the check at line 13"))
        #expect(at(20, "needs a port"))
        #expect(at(21, "1 to 8 hops"))
        #expect(at(22, "syn-retries \"500\""))
        #expect(at(23, "unknown key \"colour\""))
    }

    @Test func resultsMatchErrnos() {
        #expect(ConnectResult.unreachable.isMet(by: ConnectResult(errnoName: "EHOSTUNREACH"), errno: "EHOSTUNREACH"))
        #expect(ConnectResult.error("EHOSTUNREACH").isMet(by: .unreachable, errno: "EHOSTUNREACH"))
        #expect(!ConnectResult.error("ENETUNREACH").isMet(by: .unreachable, errno: "EHOSTUNREACH"))
        #expect(ConnectResult(errnoName: nil) == .established && ConnectResult(errnoName: "ETIMEDOUT") == .timeout)
        #expect(ConnectResult("error:eacces") == .error("EACCES") && ConnectResult("error:") == nil)
    }
}

/// The random labs of `netlab selftest connect`: valid for any seed, inside the lab ranges, the same per seed.
@Suite struct RandomConnectLabTests {
    @Test func everySeedGivesAValidLabInsideTheLabRanges() throws {
        let ranges = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"].map { IPv4Prefix($0)! }
        for seed in UInt64(1)...150 {
            let g = RandomConnectLab(seed: seed, name: "t\(seed)", nodes: 2 + Int(seed % 9), checks: 10)
            let t = try Topology.parse(g.text, file: "seed-\(seed).topo")
            #expect(t.checks.count == 10)
            for node in t.nodes {
                for a in node.addresses { #expect(ranges.contains { $0.contains(a.address.address) }, "seed \(seed): \(a.address)") }
                for r in node.routes { #expect(ranges.contains { $0.contains(r.destination) }, "seed \(seed): \(r.destination)") }
            }
            for c in t.checks {
                #expect(ranges.contains { $0.contains(c.destination) })
                #expect(t.nodes.contains { $0.name == c.from })
            }
            // A reproduction holds the lab and one check.
            #expect(try Topology.parse(g.text(onlyCheck: 3), file: "one.topo").checks.map(\.name) == [t.checks[3].name])
        }
    }

    @Test func sameSeedSameLabOtherSeedAnother() {
        #expect(RandomConnectLab(seed: 5).text == RandomConnectLab(seed: 5).text)
        #expect(RandomConnectLab(seed: 5).text != RandomConnectLab(seed: 6).text)
    }
}
