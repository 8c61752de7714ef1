// The resolver against the kernel's own answers, without root: each fixture in Fixtures/ holds one namespace's
// routing state as netlab reads it (`netlab snapshot --json`: links, addresses, routes of every table, rules, nexthop
// objects, sysctls) and what the kernel answered to `ip -j route get QUERY` for several hundred queries in it
// (output lookups with from/oif/mark/tos/ipproto/sport/dport/uid, and input lookups with `iif DEV from SRC`).
// The tests rebuild each query as the resolver's flow, ask it, and compare device, gateway, source, table, route type
// and errno with the kernel's.
//
// Regenerate (as root, on the kernel the fixtures should describe; namespaces rr-*, documentation addresses only,
// deleted by name afterwards):
//     scripts/record-resolver-fixtures             # every fixture
//     scripts/record-resolver-fixtures rules       # one (rules, tables, multipath, multipath-l4, source, input)
// then `swift test --filter ResolverTests`. A disagreement names the fixture, the query, both answers and the
// resolver's trace. To add a case, add the setup and the queries to the script, never an answer by hand.
// The tests can fail: reversing rule preference, ignoring any one rule selector, `nop`, `goto`, suppress_prefixlength
// off by one, suppress_ifgroup, route tos, linkdown, prefsrc, the gateway's subnet in inet_select_addr, the
// multipath hash key or its L4 fields, the group hash threshold, rp_filter 2, forwarding, each made some fixture fail
// (checked when they were recorded).

import Engine
import Foundation
import NetCore
import Resolver
import SystemPackage
import Testing

/// One recorded namespace.
struct KernelFixture: Decodable {
    var namespace: String
    var note: String
    var kernel: String
    var setup: [String]
    var snapshot: RoutingSnapshot
    var queries: [Query]

    struct Query: Decodable {
        /// The words after `ip route get`.
        var q: String
        /// The kernel's answer.
        var a: Answer
    }

    /// `ip -d -j route get` reduced to what a lookup decides: `table` absent when the answer came from no table
    /// (RTA_TABLE 0), `type` absent for unicast.
    struct Answer: Decodable, Equatable, CustomStringConvertible {
        var dev: String?
        var gateway: String?
        var src: String?
        var table: String?
        var type: String?
        var error: String?

        var description: String {
            if let error { return error }
            return ["dev \(dev ?? "?")", gateway.map { "via \($0)" }, src.map { "src \($0)" }, table.map { "table \($0)" },
                    type.map { "type \($0)" }].compactMap { $0 }.joined(separator: " ")
        }
    }

    static let names = ["rules", "tables", "multipath", "multipath-l4", "source", "input"]

    static func load(_ name: String) throws -> KernelFixture {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: "json"))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(KernelFixture.self, from: Data(contentsOf: url))
    }
}

/// A query's words as the kernel's RTM_GETROUTE reads them (`inet_rtm_getroute`): no protocol unless `ipproto`,
/// uid 0 (the recording ran as root) unless `uid`, no FLOWI_FLAG_ANY_SPORT.
struct RecordedQuery {
    var flow: Flow
    var inputDevice: String?

    init(_ words: String) throws {
        let w = words.split(separator: " ").map(String.init)
        flow = Flow(destination: try #require(IPv4Address(w[0]), "destination in \(words)"), proto: 0)
        var i = 1
        while i + 1 < w.count {
            let v = w[i + 1]
            func number<T: FixedWidthInteger>(_: T.Type) throws -> T {
                try #require(v.hasPrefix("0x") ? T(v.dropFirst(2), radix: 16) : T(v), "\(w[i]) \(v) in \(words)")
            }
            switch w[i] {
            case "from": flow.source = try #require(IPv4Address(v))
            case "oif": flow.outputDevice = v
            case "iif": inputDevice = v
            case "mark": flow.mark = try number(UInt32.self)
            case "tos": flow.tos = try number(UInt8.self)
            case "uid": flow.uid = try number(UInt32.self)
            case "sport": flow.sourcePort = try number(UInt16.self)
            case "dport": flow.destinationPort = try number(UInt16.self)
            case "ipproto": flow.proto = try #require(IPProtocol(v), "ipproto \(v) in \(words)")
            default: Issue.record("unknown word \(w[i]) in \(words)")
            }
            i += 2
        }
        flow.anySourcePort = false
    }
}

extension FibResolver {
    /// The resolver's answer to a recorded query, in the fixture's terms, with every candidate (equal-cost legs
    /// whose hash is unseen) and the trace.
    func answer(_ q: RecordedQuery) -> (answers: [KernelFixture.Answer], trace: [String]) {
        let d = q.inputDevice.map { decideInput(q.flow, inputDevice: $0) } ?? decide(q.flow)
        func table(_ t: UInt32?) -> String? {
            guard let t, t != 0 else { return nil }    // from no table
            return RoutingTable.builtinName(t) ?? String(t)
        }
        func answer(_ r: ResolvedRoute) -> KernelFixture.Answer {
            KernelFixture.Answer(dev: r.device, gateway: r.gateway?.description, src: r.source == .any ? nil : r.source.description,
                                 table: table(r.table), type: r.kind == .unicast ? nil : r.kind.rawValue)
        }
        switch d.result {
        case .failure(let e): return ([KernelFixture.Answer(error: errnoName(e))], d.trace)
        case .success(let r):
            let all = d.candidates.isEmpty ? [answer(r)] : d.candidates.map(answer)
            return (all + d.candidateErrors.map { KernelFixture.Answer(error: errnoName($0)) }, d.trace)
        }
    }
}

/// The errno names the kernel's answers use (`errno.errorcode` in the recording script): NetCore's.
func errnoName(_ e: Errno) -> String { e.name }

/// Whether the resolver's answer is the kernel's: every field, the table included.
func agrees(_ mine: KernelFixture.Answer, _ kernel: KernelFixture.Answer) -> Bool { mine == kernel }

struct KernelRecordedLookups {
    /// Every recorded query of one namespace: the resolver's answer (or, where the kernel's multipath hash is unseen,
    /// one of its candidates) is the kernel's.
    @Test(arguments: KernelFixture.names)
    func resolverAnswersAsTheKernelDid(_ name: String) throws {
        let fixture = try KernelFixture.load(name)
        #expect(fixture.queries.count >= 80, "\(name): too few recorded queries to say much")
        let resolver = FibResolver(snapshot: fixture.snapshot)
        var disagreements = 0
        for query in fixture.queries {
            let (answers, trace) = resolver.answer(try RecordedQuery(query.q))
            if answers.contains(where: { agrees($0, query.a) }) { continue }
            disagreements += 1
            if disagreements <= 15 {
                Issue.record("""
                    \(name): ip route get \(query.q)
                      kernel:   \(query.a)
                      resolver: \(answers.map(\.description).joined(separator: " | "))
                      trace: \(trace.joined(separator: "; "))
                    """)
            }
        }
        #expect(disagreements == 0, "\(name): \(disagreements) of \(fixture.queries.count) queries disagree with the kernel")
    }

    /// The recorded answers are not all alike: each fixture's queries reach errors and several devices, so a
    /// resolver answering one constant could not pass.
    @Test(arguments: KernelFixture.names)
    func fixturesExerciseSeveralOutcomes(_ name: String) throws {
        let fixture = try KernelFixture.load(name)
        let outcomes = Set(fixture.queries.map { $0.a.error ?? "\($0.a.dev ?? "")" })
        #expect(outcomes.count >= 3, "\(name): \(outcomes.sorted())")
    }
}

struct OneRuleMatcher {
    /// The engine's untraced lookups and the traced ones (`netlab route --trace`, explain) walk the rules with the
    /// same matcher: on every recorded output query they answer alike.
    @Test(arguments: KernelFixture.names)
    func tracedAndUntracedLookupsAgree(_ name: String) throws {
        let fixture = try KernelFixture.load(name)
        let resolver = FibResolver(snapshot: fixture.snapshot)
        for query in fixture.queries {
            let q = try RecordedQuery(query.q)
            guard q.inputDevice == nil else { continue }
            var fast = resolver.outputRoute(q.flow), traced = resolver.decide(q.flow).result
            fast = fast.map { var r = $0; r.explanation = ""; return r }
            traced = traced.map { var r = $0; r.explanation = ""; return r }
            #expect(fast == traced, "\(name): ip route get \(query.q)")
        }
    }

    /// The trace names the selector that failed, in the kernel's order (fib_rule_match: iif, oif, fwmark, uidrange;
    /// fib4_rule_match: from, to, tos, ipproto, ports), and a `not` rule whose selectors all matched.
    @Test func traceNamesTheSelectorThatFailed() throws {
        let resolver = FibResolver(snapshot: try KernelFixture.load("rules").snapshot)
        let trace = resolver.decide(try RecordedQuery("192.0.2.201 uid 2500").flow).trace
        for line in ["rule 100: no match (from)", "rule 110: no match (fwmark)", "rule 120: no match (not: its selectors matched)",
                     "rule 130: no match (tos)", "rule 150: no match (ipproto)", "rule 170: no match (uidrange)",
                     "rule 180: no match (oif)"] {
            #expect(trace.contains(line), "\(line) not in \(trace)")
        }
        let ports = resolver.decide(try RecordedQuery("192.0.2.5 ipproto tcp sport 2500 dport 80").flow).trace
        #expect(ports.contains("rule 160: no match (sport)"), "\(ports)")
        let input = resolver.decideInput(try RecordedQuery("192.0.2.5 from 203.0.113.50").flow, inputDevice: "e1").trace
        #expect(input.contains("rule 330: no match (iif)"), "\(input)")
        let to = resolver.decide(try RecordedQuery("192.0.2.5").flow).trace
        #expect(to.contains("rule 190: no match (to)"), "\(to)")
    }
}

struct SnapshotJSON {
    /// The snapshot's JSON form (snake_case keys, as `netlab snapshot --json` writes it) reads back whole: every
    /// route's nexthop object id (`nexthop_id`, the key a snake_case decoder could lose), buckets, rules, sysctls.
    @Test func recordedSnapshotRoundTrips() throws {
        let s = try KernelFixture.load("multipath").snapshot
        #expect(s.routes.filter { $0.nexthopID != nil }.count == 3)
        #expect(s.nexthopObjects.contains { $0.resilient && $0.buckets.count == 8 })
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let again = try decoder.decode(RoutingSnapshot.self, from: encoder.encode(s))
        #expect(again.links == s.links && again.addresses == s.addresses && again.routes == s.routes && again.rules == s.rules)
        #expect(again.nexthopObjects == s.nexthopObjects && again.neighbours == s.neighbours && again.sysctls == s.sysctls)
    }
}
