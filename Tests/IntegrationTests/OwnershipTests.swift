import Foundation
import NetLab
import Testing
import Topology

/// netlab runs as root and deletes things: these tests race it against people and against itself, and assert that
/// nothing it did not make is ever deleted (issue "Never touch what is not ours").
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct Ownership {
    init() throws {
        try #require(Root.isRoot, "integration tests need root")
    }

    /// `stat -c %d:%i /run/netns/NAME`: which namespace a name pins now (nil when none).
    func identity(_ ns: String) -> String? {
        var st = stat()
        guard stat("/run/netns/\(ns)", &st) == 0 else { return nil }
        return "\(st.st_dev):\(st.st_ino)"
    }

    /// `ip netns add NAME` (iproute2, as a user would), returning its identity when it was made.
    func handMade(_ ns: String) throws -> String? {
        let r = try run("/usr/bin/env", ["ip", "netns", "add", ns])
        return r.status == 0 ? identity(ns) : nil
    }

    func waitFor(_ seconds: Double = 30, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, !condition() { usleep(200) }
    }

    /// A failed `up` rolls back what it made, not what it planned: a namespace a user makes under a planned name
    /// while `up` runs survives (before the fix, rollback deleted every planned namespace).
    @Test func rollbackNeverDeletesWhatAUserMadeMeanwhile() throws {
        var raced = 0
        for trial in 0..<25 {
            let f = try LabFixture(text: RandomTopology(seed: UInt64(100 + trial), nodes: 40).text, base: "own\(trial)")
            let victim = "\(f.name)-n\(20 + trial % 20)"
            let p = try startNetlab(["up", f.file])
            waitFor { !f.namespaces().isEmpty || !p.isRunning }
            let mine = try handMade(victim)
            p.waitUntilExit()
            if let mine {
                raced += 1
                #expect(p.terminationStatus == 1, "trial \(trial): up must fail when a planned name is taken")
                #expect(identity(victim) == mine, "trial \(trial): the hand-made \(victim) was deleted or replaced")
                #expect(f.namespaces() == [victim], "trial \(trial): rollback left \(f.namespaces())")
            } else {
                #expect(p.terminationStatus == 0, "trial \(trial): up made \(victim) first and must succeed")
                let down = try netlab("down", f.name)
                #expect(down.status == 0 && f.namespaces().isEmpty, "\(down.stderr)")
            }
            _ = try? run("/usr/bin/env", ["ip", "netns", "del", victim])
        }
        #expect(raced > 0, "no trial raced: the hand-made namespace always came too late")
    }

    /// Two `up`s of one lab at once: the lock makes one build it and the other say it is already up; the lab is whole.
    @Test func twoUpsOfOneLabNeverDestroyEachOther() throws {
        for trial in 0..<20 {
            let f = try LabFixture(text: RandomTopology(seed: UInt64(200 + trial), nodes: 12).text, base: "twin\(trial)")
            let a = try startNetlab(["up", f.file]), b = try startNetlab(["up", f.file])
            a.waitUntilExit(); b.waitUntilExit()
            let codes = [a.terminationStatus, b.terminationStatus].sorted()
            #expect(codes == [0, 1], "trial \(trial): exit codes \(codes)")
            let status = try netlab("status", f.name)
            #expect(status.status == 0 && status.stdout.contains("no drift"), "trial \(trial): \(status.stdout)\(status.stderr)")
            #expect(try netlab("down", f.name).status == 0)
            #expect(f.namespaces().isEmpty)
            #expect(LabFixture.files(ofLab: f.name).isEmpty, "left in /run/netlab: \(LabFixture.files(ofLab: f.name))")
        }
    }

    /// A `down` during an `up` waits for it (the lab lock): the lab ends either whole and up, or entirely gone.
    @Test func downDuringUpLeavesAWholeLabOrNone() throws {
        for trial in 0..<12 {
            let f = try LabFixture(text: RandomTopology(seed: UInt64(300 + trial), nodes: 30).text, base: "dd\(trial)")
            let up = try startNetlab(["up", f.file])
            waitFor { !f.namespaces().isEmpty || !up.isRunning }
            let down = try netlab("down", f.name)
            up.waitUntilExit()
            #expect(up.terminationStatus == 0 && down.status == 0, "trial \(trial): up \(up.terminationStatus), down \(down.stderr)")
            if FileManager.default.fileExists(atPath: f.journal) {
                let status = try netlab("status", f.name)
                #expect(status.status == 0, "trial \(trial): a lab left up must be whole: \(status.stdout)")
                _ = try netlab("down", f.name)
            }
            #expect(f.namespaces().isEmpty, "trial \(trial): left \(f.namespaces())")
        }
    }

    /// After `kill -9` of `up`, names it planned but never made may be taken by someone else: `down` deletes what
    /// the `up` made and leaves those alone (before the fix it deleted them).
    @Test func downAfterKillNineLeavesOthersNamespacesAlone() throws {
        var others: [String: String] = [:]
        for trial in 0..<6 {
            let f = try LabFixture(text: RandomTopology(seed: UInt64(400 + trial), nodes: 120).text, base: "k9\(trial)")
            let p = try startNetlab(["up", f.file])
            waitFor { f.namespaces().count >= 3 + trial * 5 || !p.isRunning }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let planned = (0..<120).map { "\(f.name)-n\($0)" }
            var mine: [String: String] = [:]
            for n in planned where identity(n) == nil { if let id = try handMade(n) { mine[n] = id } }
            others.merge(mine) { a, _ in a }
            let down = try netlab("down", f.name)
            #expect(down.status == 0, "\(down.stderr)")
            for (n, id) in mine { #expect(identity(n) == id, "trial \(trial): \(n), made by hand, was deleted") }
            #expect(Set(f.namespaces()) == Set(mine.keys), "trial \(trial): \(f.namespaces().count) left, \(mine.count) hand-made")
            for n in mine.keys { _ = try? run("/usr/bin/env", ["ip", "netns", "del", n]) }
        }
        #expect(!others.isEmpty)
    }

    /// Lab `x` with node `y-z` and lab `x-y` with node `z` would both be namespace `x-y-z`: the second is refused.
    @Test func labsWhoseNamespacesCouldClashAreNeverUpTogether() throws {
        let base = "\(testPrefix)\(Int.random(in: 1000...9999))-cl"
        let a = try LabFixture(text: "lab: x\nnodes:\n  y-z:\n  q:\n", base: "cla", name: base)
        let b = try LabFixture(text: "lab: x\nnodes:\n  z:\n", base: "clb", name: base + "-y")
        let upA = try netlab("up", a.file)
        try #require(upA.status == 0, "\(upA.stderr)")
        let before = identity("\(base)-y-z")
        let upB = try netlab("up", b.file)
        #expect(upB.status == 1 && upB.stderr.contains("could share names"), "\(upB.stderr)")
        #expect(identity("\(base)-y-z") == before && before != nil)
        #expect(try netlab("down", b.name).stdout.contains("nothing to remove"))
        #expect(identity("\(base)-y-z") == before)
        #expect(try netlab("down", a.name).status == 0)
        #expect(a.namespaces().isEmpty)
    }

    /// A topology's `lab:` and a journal's names are untrusted: they never steer a delete outside /run/netns.
    @Test func hostileLabNameAndJournalDeleteNothingOutside() throws {
        let dir = NSTemporaryDirectory() + "netlab-it-hostile-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/x", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/x/victim"
        try "keep".write(toFile: victim, atomically: true, encoding: .utf8)
        // `down FILE` with a lab name that walks out of /run/netlab.
        let topo = dir + "/evil.topo"
        try "lab: ../../..\(dir)/x/j\nnodes:\n  a:\n".write(toFile: topo, atomically: true, encoding: .utf8)
        let down = try netlab("down", topo)
        #expect(down.status == 2, "\(down)")
        // A journal that names a namespace outside /run/netns, under a valid lab name.
        let lab = "\(testPrefix)\(Int.random(in: 1000...9999))-evil"
        defer { for f in LabFixture.files(ofLab: lab) { try? FileManager.default.removeItem(atPath: f) } }
        let journal = """
            {"file":"/x","lab":"\(lab)","made":[],"namespaces":["../../..\(dir)/x/victim"],"phase":"done","pid":1,
             "started":"2026-01-01T00:00:00Z","state":"up","token":"00112233445566778899","version":2}
            """
        try journal.write(toFile: "/run/netlab/\(lab).json", atomically: false, encoding: .utf8)
        let d2 = try netlab("down", lab)
        #expect(d2.status == 0, "\(d2)")
        #expect(d2.stderr.contains("unreadable"), "\(d2.stderr)")
        #expect(FileManager.default.fileExists(atPath: victim), "the victim was deleted")
        // Any --netns that is not one name under /run/netns is refused before anything opens it.
        for bad in ["../../proc/1/ns/net", "/proc/1/ns/net", "..", "a/b"] {
            let r = try netlab("route", "--netns", bad, "192.0.2.1")
            #expect(r.status == 2, "\(bad): \(r)")
            let c = try netlab("connect", "--netns", bad, "192.0.2.1:80")
            #expect(c.status == 2, "\(bad): \(c)")
        }
        for bad in ["../x", "a/b", "X"] {
            #expect(try netlab("exec", bad, "n", "--", "true").status == 2)
            #expect(try netlab("status", bad).status == 2)
        }
    }

    /// A truncated journal, one whose `lab` is another's, and a lab whose journal is gone but whose namespaces remain:
    /// `down` still removes exactly the lab's namespaces (found by netlab's mark) and says how; `status` of every lab
    /// still reports the others.
    @Test func unreadableJournalStillComesDownAndDoesNotBreakStatus() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        let g = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/policy.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        try #require(try netlab("up", g.file).status == 0)
        let gNamespaces = g.namespaces()
        // A stranger's namespace under the lab's prefix, not made by netlab.
        let stranger = "\(f.name)-stranger"
        let strangerID = try #require(try handMade(stranger))
        defer { _ = try? run("/usr/bin/env", ["ip", "netns", "del", stranger]) }
        let text = try String(contentsOfFile: f.journal, encoding: .utf8)
        try String(text.prefix(text.count / 2)).write(toFile: f.journal, atomically: false, encoding: .utf8)
        let status = try netlab("status")
        #expect(status.status == 1 && status.stdout.contains("\(g.name): up"), "\(status.stdout)\(status.stderr)")
        #expect(status.stderr.contains("unreadable"), "\(status.stderr)")
        let down = try netlab("down", f.name)
        #expect(down.status == 0, "\(down.stderr)")
        #expect(down.stderr.contains("by netlab's mark"), "\(down.stderr)")
        #expect(f.namespaces() == [stranger], "\(f.namespaces())")
        #expect(identity(stranger) == strangerID)
        // A journal naming another lab.
        try #require(try netlab("up", f.file).status == 0)
        let other = try String(contentsOfFile: f.journal, encoding: .utf8).replacingOccurrences(of: "\"lab\":\"\(f.name)\"", with: "\"lab\":\"\(g.name)\"")
        try other.write(toFile: f.journal, atomically: false, encoding: .utf8)
        let down2 = try netlab("down", f.name)
        #expect(down2.status == 0 && down2.stderr.contains("names lab"), "\(down2.stderr)")
        #expect(f.namespaces() == [stranger])
        #expect(g.namespaces() == gNamespaces, "lab \(g.name) must be untouched: \(g.namespaces())")
        #expect(try netlab("down", g.name).status == 0)
        #expect(LabFixture.files(ofLab: f.name).isEmpty && LabFixture.files(ofLab: g.name).isEmpty)
    }

    /// `kill -9` of `check` leaves its guard table in the node: `status` reports it, `down` removes it with the
    /// namespace and says so, naming the killed check.
    @Test func killedCheckLeavesAGuardThatStatusAndDownReport() throws {
        let f = try LabFixture(text: try dualhome(checks: """
          - name: a long silent drop
            from: client
            connect: 192.0.2.121:80
        """), base: "kguard")
        let p = try startNetlab(["check", f.file])
        waitFor(20) { pidsInside(f) == 0 && nftTables("\(f.name)-client").contains("netlab_guard") || !p.isRunning }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        try #require(nftTables("\(f.name)-client").contains("netlab_guard"), "the kill must land while the guard is in place")
        let status = try netlab("status", f.name)
        #expect(status.status == 1 && status.stdout.contains("netlab_guard"), "\(status.stdout)")
        let down = try netlab("down", f.name)
        #expect(down.status == 0, "\(down.stderr)")
        #expect(down.stderr.contains("netlab check (pid \(p.processIdentifier)) was killed") && down.stderr.contains("netlab_guard"), "\(down.stderr)")
        #expect(f.namespaces().isEmpty)
    }

    func nftTables(_ ns: String) -> String {
        (try? run("/usr/bin/env", ["ip", "netns", "exec", ns, "nft", "list", "tables"]).stdout) ?? ""
    }

    /// `down` ends the processes running inside the lab (by pid, found through /proc/PID/ns/net) and says how many.
    @Test func downEndsProcessesInsideTheLab() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        let sleeper = try startNetlab(["exec", f.name, "client", "--", "sleep", "300"])
        waitFor(5) { pidsInside(f) > 0 }
        let down = try netlab("down", f.name)
        #expect(down.status == 0 && down.stdout.contains("ended 1 process"), "\(down.stdout)")
        sleeper.waitUntilExit()
        #expect(!sleeper.isRunning)
        #expect(f.namespaces().isEmpty)
    }

    func pidsInside(_ f: LabFixture) -> Int {
        var st = stat()
        guard stat("/run/netns/\(f.name)-client", &st) == 0 else { return 0 }
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { Int32($0) != nil }
        return pids.filter { p in
            var s = stat()
            return stat("/proc/\(p)/ns/net", &s) == 0 && s.st_ino == st.st_ino && s.st_dev == st.st_dev
        }.count
    }

    /// `status` of a large lab prints a summary (missing namespaces still named); `--details` lists everything.
    @Test func statusOfALargeLabIsASummary() throws {
        let f = try LabFixture(text: RandomTopology(seed: 21, nodes: 40).text, base: "stsum")
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let short = try netlab("status", f.name)
        #expect(short.status == 0 && short.stdout.contains("40 of 40 namespaces exist") && short.stdout.split(separator: "\n").count < 10,
                "\(short.stdout)")
        let long = try netlab("status", f.name, "--details")
        #expect(long.stdout.split(separator: "\n").count > 40, "\(long.stdout)")
        _ = try run("/usr/bin/env", ["ip", "netns", "del", "\(f.name)-n7"])
        let gone = try netlab("status", f.name)
        #expect(gone.status == 1 && gone.stdout.contains("39 of 40") && gone.stdout.contains("✗ \(f.name)-n7"), "\(gone.stdout)")
    }

    /// At a descriptor limit far below the lab's size, `up` works (handles are bounded) instead of aborting in libnl
    /// (before the fix: SIGABRT, exit 134, 99 namespaces left).
    @Test func lowDescriptorLimitDoesNotCrash() throws {
        let f = try LabFixture(text: RandomTopology(seed: 5, nodes: 150).text, base: "fdlim")
        let r = try run("/bin/sh", ["-c", "ulimit -n 200 && exec \"$0\" up \"$1\"", try netlabBinary(), f.file])
        #expect(r.status == 0, "exit \(r.status): \(r.stderr)")
        #expect(try netlab("down", f.name).status == 0)
        #expect(f.namespaces().isEmpty)
    }

    /// Ctrl-C in the rules phase and in the carrier wait: `up` stops, rolls back and exits 130 (it used to finish).
    @Test func ctrlCDuringRulesRollsBack() throws {
        var text = "lab: x\nnodes:\n  a:\n    interfaces: {eth0: [192.0.2.1/24]}\n    rules:\n"
        for k in 0..<20000 { text += "      - from 192.0.2.\(k % 250 + 1) lookup \(100 + k % 50) pref \(1000 + k)\n" }
        text += "  b:\n    interfaces: {eth0: [192.0.2.2/24]}\nlinks: [[a:eth0, b:eth0]]\n"
        let f = try LabFixture(text: text, base: "rules")
        let err = Pipe()
        let p = try startNetlab(["up", f.file], stderr: err)
        // Into the rules phase: the journal says so.
        waitFor { ((try? String(contentsOfFile: f.journal, encoding: .utf8)) ?? "").contains("\"phase\":\"rules\"") || !p.isRunning }
        usleep(20_000)
        let sent = Date()
        kill(p.processIdentifier, SIGINT)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let took = Date().timeIntervalSince(sent)
        #expect(p.terminationStatus == 130, "\(stderr)")
        #expect(took < 5, "took \(took) s to stop")
        #expect(f.namespaces().isEmpty)
        #expect(LabFixture.files(ofLab: f.name).isEmpty, "\(LabFixture.files(ofLab: f.name))")
    }

    /// A journal write killed part-way leaves a temp file; the lab's next writer removes it, and `down` leaves nothing.
    @Test func killedWritesLeaveNoTempFiles() throws {
        let f = try LabFixture(text: RandomTopology(seed: 12, nodes: 60).text, base: "tmp")
        for _ in 0..<5 {
            let p = try startNetlab(["up", f.file])
            waitFor { FileManager.default.fileExists(atPath: f.journal) || !p.isRunning }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            // A temp file as a writer killed inside rename() would leave it.
            try "{".write(toFile: f.journal + ".tmp.999999", atomically: false, encoding: .utf8)
            let down = try netlab("down", f.name)
            #expect(down.status == 0, "\(down.stderr)")
            #expect(f.namespaces().isEmpty)
            #expect(LabFixture.files(ofLab: f.name).isEmpty, "\(LabFixture.files(ofLab: f.name))")
        }
    }
}
