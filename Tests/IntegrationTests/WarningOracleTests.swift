import Foundation
import Testing

/// `validate`'s warnings against the kernel: what a warning says will go wrong does go wrong in a real lab (a
/// kernel connect through the gateway nobody has does not establish; a source route through a node that refuses
/// them times out), and the check nobody warned about establishes. Exit 0 with warnings, 2 with `--strict`.
struct WarningOracleTests {
    static let lab = """
        lab: warn
        nodes:
          a:
            source-route: true
            interfaces: {eth0: [192.0.2.1/29], eth1: [192.0.2.9/30]}
            routes: [198.51.100.0/24 via 192.0.2.2, 203.0.113.0/24 via 192.0.2.10]
          b:
            interfaces: {eth0: [192.0.2.3/29]}
            listen: [80]
          c:
            interfaces: {eth0: [192.0.2.10/30], lo: [203.0.113.7/32, 198.51.100.7/32]}
            listen: [80]
        links:
          - [a:eth0, b:eth0]
          - [a:eth1, c:eth0]
        checks:
          - name: plain
            from: a
            connect: 192.0.2.3:80
            expect: {result: established}
          - name: gateway nobody has
            from: a
            connect: 198.51.100.7:80
            syn-retries: 1
            expect: {result: established}
          - name: source route through c
            from: a
            connect: 203.0.113.7:80
            source-route: {loose: [192.0.2.10]}
            syn-retries: 1
            expect: {result: established}
        """

    @Test func whatAWarningSaysTheKernelDoes() throws {
        let f = try LabFixture(text: Self.lab, base: "warn")
        let bin = try netlabBinary()
        let v = try run(bin, ["validate", f.file, "--json"])
        #expect(v.status == 0, "\(v.stderr)")
        let reports = try #require(try JSONSerialization.jsonObject(with: Data(v.stdout.utf8)) as? [[String: Any]])
        let warnings = try #require(reports.first?["warnings"] as? [[String: Any]])
        let lines = warnings.compactMap { $0["line"] as? Int }
        #expect(lines == [6, 26], "\(warnings)")
        let p = try JSONSchema(named: "validate").problems(json: v.stdout)
        #expect(p.isEmpty, "\(p)")
        let strict = try run(bin, ["validate", "--strict", f.file])
        #expect(strict.status == 2 && strict.stderr.contains("error: gateway 192.0.2.2"), "\(strict.status) \(strict.stderr)")

        let c = try run(bin, ["check", f.file, "--json"])
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as? [String: Any], "\(c.stderr)")
        let results = try #require(obj["results"] as? [[String: Any]])
        func kernel(_ name: String) -> String? {
            (results.first { $0["name"] as? String == name }?["kernel"] as? [String: Any])?["result"] as? String
        }
        #expect(kernel("plain") == "established")
        #expect(kernel("gateway nobody has") != nil && kernel("gateway nobody has") != "established")
        #expect(kernel("source route through c") == "timeout")
        #expect(c.status == 1)
    }
}
