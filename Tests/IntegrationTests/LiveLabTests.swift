import Foundation
import Testing

/// A lab that is up: `check` says it reuses it and refuses it once it has drifted (unless --allow-drift); `down
/// --prefix` asks on a terminal and goes ahead in a script.
struct LiveLabTests {
    static func fixedTutorialLab() throws -> String {
        let md = try String(contentsOf: repoRoot.appendingPathComponent("docs/tutorial.md"), encoding: .utf8)
        return TutorialTests.blocks(md, "yaml")[2]
    }

    @Test func checkReusesALabAndRefusesItDrifted() throws {
        let f = try LabFixture(text: try Self.fixedTutorialLab(), base: "drift")
        let bin = try netlabBinary()
        #expect(try run(bin, ["up", f.file]).status == 0)
        let clean = try run(bin, ["check", f.file])
        #expect(clean.status == 0 && clean.stderr.contains("lab \(f.name) is already up (since "), "\(clean.stderr)")
        #expect(f.namespaces().count == 4, "a lab that was up stays up")
        // Drift made behind netlab's back, as a user would: the kernel is told directly.
        let del = try run("/usr/bin/env", ["ip", "-n", "\(f.name)-client", "addr", "del", "203.0.113.10/29", "dev", "eth1"])
        #expect(del.status == 0, "\(del.stderr)")
        let refused = try run(bin, ["check", f.file])
        #expect(refused.status == 1, "\(refused.stderr)")
        #expect(refused.stderr.contains("has drifted from its file") && refused.stderr.contains("client: missing address 203.0.113.10/29 dev eth1")
                && refused.stderr.contains("--allow-drift"), "\(refused.stderr)")
        #expect(!refused.stdout.contains("✔") && !refused.stderr.contains("✔"), "no check ran")
        let allowed = try run(bin, ["check", f.file, "--allow-drift"])
        #expect(allowed.status == 1 && (allowed.stdout + allowed.stderr).contains("EADDRNOTAVAIL"), "\(allowed.stdout) \(allowed.stderr)")
        #expect(try run(bin, ["down", f.name]).status == 0)
    }

    /// `down --prefix` on a terminal (a pty from util-linux's `script`) asks, and "n" leaves the lab up; without a
    /// terminal it goes ahead. (--all is never run here: other labs on the machine are not the test's.)
    @Test func downByPrefixAsksOnATerminal() throws {
        let f = try LabFixture(text: try Self.fixedTutorialLab(), base: "ask")
        let bin = try netlabBinary()
        #expect(try run(bin, ["up", f.file]).status == 0)
        let no = try run("/usr/bin/script", ["-qec", "\(bin) down --prefix \(f.name)", "/dev/null"], input: "n\n")
        #expect(no.stdout.contains("take down 1 lab: \(f.name)? [y/N]") && no.stdout.contains("nothing was taken down"), "\(no.stdout)")
        #expect(f.namespaces().count == 4)
        let script = try run(bin, ["down", "--prefix", f.name, "--json"], input: "")
        #expect(script.status == 0 && script.stdout.contains(f.name), "\(script.stdout)")
        #expect(f.namespaces().isEmpty)
        #expect(try run(bin, ["down", "--prefix", "Bad"]).status == 2)
    }
}
