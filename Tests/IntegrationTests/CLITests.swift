import Foundation
import Testing

func jsonObject(_ text: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not a JSON object: \(text.prefix(300))")
}

/// Without root: usage, plain file errors, words.
struct CLIUsageTests {
    /// `netlab` alone is a usage error: the help on standard error, exit 2 (it was exit 0).
    @Test func netlabAloneIsUsageExitTwo() throws {
        let r = try run(try netlabBinary(), [])
        #expect(r.status == 2 && r.stderr.contains("SUBCOMMANDS") && r.stdout.isEmpty, "\(r.status) \(r.stderr)")
    }

    /// Plain words for files that cannot be topology files; never a Foundation error domain.
    @Test func validateSaysWhatIsWrongWithTheFile() throws {
        let dir = NSTemporaryDirectory() + "pc-validate-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/latin1.topo", contents: Data([0x6C, 0x61, 0x62, 0x3A, 0x20, 0xE9, 0x0A]))
        #expect(mkfifo(dir + "/fifo.topo", 0o600) == 0)
        let cases: [(String, String)] = [(dir + "/nonexist.topo", "\(dir)/nonexist.topo: error: no such file"),
                                         (".", ".: error: is a directory"),
                                         (dir + "/fifo.topo", "error: is a FIFO (named pipe) and nothing was written to it"),
                                         (dir + "/latin1.topo", "\(dir)/latin1.topo:1:6: error: not UTF-8 text: byte 0xe9")]
        for (file, words) in cases {
            let r = try netlab("validate", file)
            #expect(r.status == 2 && r.stderr.contains(words), "\(file): \(r.stderr)")
            #expect(!r.stderr.contains("NSCocoaErrorDomain") && !r.stderr.contains("could not be completed") && !r.stderr.contains("permission"))
        }
    }

    /// A topology file's control characters reach the terminal escaped: `validate` is run on files from anywhere.
    @Test func validateEscapesTheFilesControlCharacters() throws {
        let file = NSTemporaryDirectory() + "pc-esc-\(getpid()).topo"
        try "lab: pc-esc\nnodes:\n  a: {interfaces: {eth0: {addresses: [\"10.0.0.1/24\u{1B}[2J\"]}}}\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try netlab("validate", file)
        #expect(r.status == 2 && !r.stderr.contains("\u{1B}") && r.stderr.contains("\\x1B[2J"), "\(r.stderr)")
    }

    /// "1 link", not "1 links"; help says a default once.
    @Test func countsAreSingularForOne() throws {
        let file = NSTemporaryDirectory() + "pc-one-\(getpid()).topo"
        try """
            lab: pc-one
            nodes:
              a: {interfaces: {eth0: {addresses: [192.0.2.1/24]}}}
              b: {interfaces: {eth0: {addresses: [192.0.2.2/24]}}}
            links:
              - [a:eth0, b:eth0]
            """.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let r = try netlab("validate", file)
        #expect(r.status == 0 && r.stdout.contains("2 nodes, 1 link, 2 addresses, 0 routes, 0 rules"), "\(r.stdout)")
        let h = try netlab("route", "--help").stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(!h.contains("(default tcp)") && h.contains("or a number. (default: tcp)"), "\(h)")
    }

    /// Every typed argument refuses a bad word at parse time, before root or a lab is needed: exit 2, the word and
    /// the option named, and what to give.
    @Test func badArgumentWordsAreNamedExitTwo() throws {
        let cases: [([String], [String])] = [
            (["connect", "--netns", "x", "192.0.2.80"], ["DEST:PORT must look like 192.0.2.80:80", "\"192.0.2.80\" has no port"]),
            (["connect", "--netns", "x", "192.0.2.300:80"], ["\"192.0.2.300\" is not an IPv4 address"]),
            (["connect", "--netns", "x", "192.0.2.80:99999"], ["the port \"99999\" is not 0-65535"]),
            (["connect", "--netns", "x", "192.0.2.80:80", "--bind", "192.0.2.1:x"], ["'192.0.2.1:x' is invalid for '--bind", "--bind must be ADDR or ADDR:PORT"]),
            (["connect", "--netns", "x", "192.0.2.80:80", "--mark", "0xfg"], ["'0xfg' is invalid for '--mark", "--mark must be a number from 0 to 0xffffffff"]),
            (["connect", "--netns", "x", "192.0.2.80:80", "--tos", "256"], ["'256' is invalid for '--tos", "--tos must be a number from 0 to 255"]),
            (["connect", "--netns", "x", "192.0.2.80:80", "--lsrr", "192.0.2.1,nine"], ["--lsrr", "\"nine\" is not an IPv4 address"]),
            (["connect", "--netns", "x", "192.0.2.80:80", "--syn-retries", "0"], ["'0' is invalid for '--syn-retries", "from 1 to 127"]),
            (["connect", "--netns", "../etc", "192.0.2.80:80"], ["'../etc' is invalid for '--netns", "is not a namespace name"]),
            (["route", "--netns", "x", "192.0.2.999"], ["DEST: \"192.0.2.999\" is not an IPv4 address"]),
            (["route", "--netns", "x", "192.0.2.80", "--from", "me"], ["'me' is invalid for '--from", "\"me\" is not an IPv4 address"]),
            (["route", "--netns", "x", "192.0.2.80", "--ipproto", "sctp"], ["'sctp' is invalid for '--ipproto", "tcp, udp, icmp or 0-255"]),
            (["explain", "192.0.2.80:0"], ["'192.0.2.80:0' is invalid", "\"0\" is not a port"]),
            (["snapshot", "--ports", "80,http"], ["'80,http' is invalid for '--ports", "\"http\" is not one"]),
            (["snapshot", "--name", "Bad_Name"], ["'Bad_Name' is invalid for '--name", "is not a lab name"]),
            (["graph", "--format", "png", "x.topo"], ["'png' is invalid for '--format", "'svg' and 'dot'"]),
            (["down", "--prefix", "UP"], ["'UP' is invalid for '--prefix", "the start of a lab name"]),
            (["status", "Bad_Lab"], ["'Bad_Lab' is invalid", "is neither a lab name nor a topology file"]),
            (["set", "somelab", "client"], ["give a change after NODE, e.g. netlab set somelab client link eth0 down"]),
            (["route", "--lab", "somelab", "--netns", "x", "192.0.2.80"], ["give LAB NODE or --netns NAME, not both"]),
            (["route", "somelab", "client"], ["give LAB NODE DEST"]),
        ]
        for (args, words) in cases {
            let r = try run(try netlabBinary(), args)
            #expect(r.status == 2, "\(args): exit \(r.status) \(r.stderr)")
            for w in words { #expect(r.stderr.contains(w), "\(args): no \"\(w)\" in \(r.stderr)") }
        }
    }

    /// `check --json PATH` (the old form) says what to write instead, before anything runs.
    @Test func oldJSONPathFormSaysWhatToWrite() throws {
        let r = try netlab("check", "Labs/none.topo", "--json", "out.json")
        #expect(r.status == 2 && r.stderr.contains("--json-file out.json"), "\(r.stderr)")
        let both = try netlab("connect", "--netns", "x", "192.0.2.1:80", "--json", "--pcap", "-")
        #expect(both.status == 2 && both.stderr.contains("both name standard output"), "\(both.stderr)")
    }
}

@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct CLITests {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    /// Every command's JSON against its schema in docs/schemas, on a real lab; table names and `via` in the file's words.
    @Test func everyJSONOutputFitsItsSchema() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        func fits(_ schema: String, _ r: RunResult, status: Int32 = 0, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
            #expect(r.status == status, "\(schema): exit \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
            let p = try JSONSchema(named: schema).problems(json: r.stdout)
            #expect(p.isEmpty, "\(schema): \(p)\n\(r.stdout.prefix(2000))", sourceLocation: sourceLocation)
        }
        try fits("up", try netlab("up", f.file, "--json"))
        defer { _ = try? netlab("down", f.name) }
        try fits("status", try netlab("status", f.name, "--json"))
        try fits("status", try netlab("status", f.file, "--json"))
        let route = try netlab("route", f.name, "client", "192.0.2.80", "--from", "203.0.113.10", "--json")
        try fits("route", route)
        let engine = try #require(try jsonObject(route.stdout)["engine"] as? [String: Any])
        #expect(engine["table"] as? String == "isp2" && engine["via"] as? String == "203.0.113.1", "\(engine)")
        let text = try netlab("route", f.name, "client", "192.0.2.80", "--from", "203.0.113.10")
        #expect(text.stdout.contains("via 203.0.113.1 table isp2") && !text.stdout.contains("table 102"), "\(text.stdout)")
        // The kernel side too (--kernel); the comparison itself is CheckCommandTests' business: exit 0 or 1 here.
        let connect = try netlab("connect", f.name, "client", "192.0.2.80:80", "--kernel", "--json")
        try fits("connect", connect, status: connect.status == 1 ? 1 : 0)
        #expect((try jsonObject(connect.stdout)["engine"] as? [String: Any])?["via"] as? String == "198.51.100.1")
        try fits("set", try netlab("set", f.name, "client", "sysctl", "net.ipv4.conf.all.rp_filter=0", "--json"))
        try fits("status", try netlab("status", f.name, "--json"))
        try fits("check", try netlab("check", f.file, "--only", "bound source", "--json"))
        try fits("selftest-route", try netlab("selftest", "route", "--lab", f.name, "--lookups", "5", "--repro-dir", f.directory + "/r", "--json"))
        try fits("down", try netlab("down", f.name, "--json"))
        #expect(f.namespaces().isEmpty)
    }

    /// The selftest summaries fit theirs; `selftest route --prefix` names its labs (they were always `st…`).
    @Test func selftestSummariesFitTheirSchemas() throws {
        let f = PrefixFixture(tag: "sj")
        let c = try netlab("selftest", "connect", "--seed", "3", "--labs", "1", "--nodes", "2", "--checks", "2", "--prefix", f.prefix,
                           "--repro-dir", f.directory, "--json")
        #expect(c.status == 0 && JSONSchema.problems("selftest-connect", c.stdout).isEmpty, "\(c.stdout)\(c.stderr)")
        let r = try netlab("selftest", "route", "--seed", "3", "--topologies", "1", "--lookups", "5", "--prefix", f.prefix,
                           "--repro-dir", f.directory, "--json")
        #expect(r.status == 0 && JSONSchema.problems("selftest-route", r.stdout).isEmpty, "\(r.stdout)\(r.stderr)")
        #expect(f.namespaces().isEmpty)
    }

    /// `check --json -` crashed (Illegal instruction in _startOfLastPathComponent, exit 132): the JSON is now the
    /// whole of standard output, and the per-check lines (with a name's control characters escaped) go to standard error.
    @Test func checkReportOnStandardOutput() throws {
        let f = try LabFixture(text: try dualhome(checks: """
              - name: "esc\\e[31mred\\aname"
                from: client
                connect: 192.0.2.80:80
                expect: {result: established}
            """), base: "dualhome")
        let r = try netlab("check", f.file, "--json", "-")
        #expect(r.status == 0, "\(r.stderr)")
        let j = try jsonObject(r.stdout)
        #expect(j["passed"] as? Int == 1 && (j["results"] as? [[String: Any]])?.first?["name"] as? String == "esc\u{1B}[31mred\u{7}name")
        #expect(r.stderr.contains("esc\\x1B[31mred\\x07name") && !r.stderr.contains("\u{1B}[31mred"), "\(r.stderr)")
        let x = try netlab("check", f.file, "--junit", "-")
        #expect(x.status == 0 && x.stdout.hasPrefix("<?xml") && x.stdout.contains("name=\"esc\\x1B[31mred\\x07name\""), "\(x.stdout)")
        #expect(f.namespaces().isEmpty)
    }

    /// Report and capture paths are checked before anything is built, in plain words, exit 2; a symbolic link at a
    /// report path stays a link and the file it points to keeps its bytes.
    @Test func reportPathsAreCheckedBeforeAnyWork() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        let victim = f.directory + "/victim", link = f.directory + "/junit.xml"
        try "precious".write(toFile: victim, atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: victim)
        try FileManager.default.createDirectory(atPath: f.directory + "/dir", withIntermediateDirectories: false)
        let cases: [([String], String)] = [(["--json-file", ""], "--json-file \"\": the path is empty"),
                                           (["--markdown", "/"], "--markdown /: names a directory"),
                                           (["--html", f.directory + "/dir"], "is a directory"),
                                           (["--junit", link], "is a symbolic link"),
                                           (["--junit", victim + "/x.xml"], "is not a directory"),
                                           (["--pcap-dir", victim], "is not a directory")]
        for (args, words) in cases {
            let r = try run(try netlabBinary(), ["check", f.file] + args)
            #expect(r.status == 2 && r.stderr.contains(words), "\(args): \(r.status) \(r.stderr)")
            #expect(!r.stderr.contains("NSCocoaErrorDomain") && !r.stdout.contains("✔"), "\(args): ran checks: \(r.stdout)")
            #expect(f.namespaces().isEmpty, "\(args): built the lab")
        }
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == victim)
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious")

        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let pcapLink = f.directory + "/c.pcapng"
        try FileManager.default.createSymbolicLink(atPath: pcapLink, withDestinationPath: victim)
        let c = try netlab("connect", f.name, "client", "192.0.2.80:80", "--pcap", pcapLink)
        #expect(c.status == 2 && c.stderr.contains("is a symbolic link"), "\(c.stderr)")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious")
        // `--pcap -`: the pcapng on standard output (it wrote a file named "-"), the text on standard error.
        let p = try netlab("connect", f.name, "client", "192.0.2.80:80", "--pcap", "-")
        #expect(p.status == 0 && p.stderr.contains("engine: established"), "\(p.stderr)")
        #expect(Array(p.stdout.utf8.prefix(4)) == [0x0A, 0x0D, 0x0D, 0x0A], "a pcapng section header block")
        #expect(!FileManager.default.fileExists(atPath: FileManager.default.currentDirectoryPath + "/-"))
    }

    /// One error for a wrong node or lab, in route, connect and exec alike: the lab's nodes (or the labs that are up)
    /// listed, exit 2. `connect --dev` of a device the node lacks lists its devices, exit 2.
    @Test func wrongNodeIsOneErrorEverywhere() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let nodes = "its nodes: client, isp1, isp2, core, server, mirror, crowded"
        for args in [["route", f.name, "clinet", "192.0.2.80"], ["connect", f.name, "clinet", "192.0.2.80:80"],
                     ["exec", f.name, "clinet", "--", "true"], ["route", "--lab", f.name, "clinet", "192.0.2.80"]] {
            let r = try run(try netlabBinary(), args)
            #expect(r.status == 2 && r.stderr.contains("lab \(f.name) has no node clinet; \(nodes)") && r.stderr.contains("did you mean client?"),
                    "\(args): \(r.status) \(r.stderr)")
        }
        let typo = String(f.name.dropLast())
        for args in [["route", typo, "client", "192.0.2.80"], ["exec", typo, "client"], ["status", typo]] {
            let r = try run(try netlabBinary(), args)
            #expect(r.status == 2 && r.stderr.contains("no lab \(typo) is up") && r.stderr.contains(f.name), "\(args): \(r.status) \(r.stderr)")
        }
        let dev = try netlab("connect", f.name, "client", "192.0.2.80:80", "--dev", "eth9")
        #expect(dev.status == 2 && dev.stderr.contains("node client has no device eth9; its devices: lo, eth0, eth1"), "\(dev.stderr)")
        // `down` of a lab that is not up stays idempotent (exit 0) and names the labs that are.
        let down = try netlab("down", typo)
        #expect(down.status == 0 && down.stdout.contains("nothing to remove") && down.stderr.contains(f.name), "\(down.stderr)")
        #expect(f.namespaces().count == 7)
    }

    /// The form before LAB NODE, `--lab LAB NODE`, still works in route and connect (users' scripts) and says on
    /// standard error the command line to type instead; the answer on standard output is the same.
    @Test func deprecatedLabOptionStillWorksAndSaysWhatToType() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let now = try netlab("route", f.name, "client", "192.0.2.80", "--from", "203.0.113.10")
        let old = try netlab("route", "--lab", f.name, "client", "192.0.2.80", "--from", "203.0.113.10")
        #expect(old.status == 0 && old.stdout == now.stdout, "\(old.status) \(old.stderr)")
        #expect(old.stderr.contains("warning: --lab LAB NODE is the old form")
                && old.stderr.contains("type instead: netlab route \(f.name) client 192.0.2.80 --from 203.0.113.10"), "\(old.stderr)")
        #expect(!now.stderr.contains("warning"), "\(now.stderr)")
        let c = try netlab("connect", "--lab=\(f.name)", "client", "192.0.2.80:80")
        #expect(c.status == 0 && c.stderr.contains("type instead: netlab connect \(f.name) client 192.0.2.80:80"), "\(c.stderr)")
        let both = try netlab("route", "--lab", f.name, "--netns", "x", "192.0.2.80")
        #expect(both.status == 2 && both.stderr.contains("give LAB NODE or --netns NAME, not both"), "\(both.stderr)")
    }

    /// connect's exit status is its outcome (engine alone, or both when they agree), so a script can branch on it.
    @Test func connectExitStatusIsTheOutcome() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let cases: [([String], Int32)] = [(["192.0.2.80:80"], 0), (["192.0.2.80:81"], 3), (["192.0.2.80:81", "--kernel"], 3),
                                          (["192.0.2.121:80", "--syn-retries", "1"], 4), (["192.0.2.113:80"], 5),
                                          (["192.0.2.113:80", "--kernel"], 5)]
        for (args, status) in cases {
            let r = try run(try netlabBinary(), ["connect", f.name, "client"] + args)
            #expect(r.status == status, "\(args): \(r.status)\n\(r.stdout)\(r.stderr)")
        }
        let busy = try netlab("connect", f.name, "crowded", "192.0.2.201:40000")
        #expect(busy.status == 6 && busy.stdout.contains("EADDRNOTAVAIL"), "\(busy.status) \(busy.stdout)")
    }

    /// `exec LAB NODE` without a command runs $SHELL inside the node (here a script that names its namespace).
    @Test func execWithoutACommandRunsTheShellInTheNode() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let shell = f.directory + "/shell"
        try "#!/bin/sh\nreadlink /proc/self/ns/net\nread line\necho \"$line\"\n".write(toFile: shell, atomically: true, encoding: .utf8)
        chmod(shell, 0o755)
        let r = try run(try netlabBinary(), ["exec", f.name, "server"], environment: ["SHELL": shell], input: "typed\n")
        var st = stat()
        #expect(stat("/run/netns/\(f.name)-server", &st) == 0)
        #expect(r.status == 0 && r.stdout == "net:[\(st.st_ino)]\ntyped\n", "\(r.stdout)\(r.stderr)")
    }

    /// `status FILE` is `status LAB`, as `down FILE` is.
    @Test func statusTakesTheTopologyFile() throws {
        let f = try LabFixture(lab: repoRoot.appendingPathComponent("Labs/dualhome.topo").path)
        try #require(try netlab("up", f.file).status == 0)
        defer { _ = try? netlab("down", f.name) }
        let r = try netlab("status", f.file)
        #expect(r.status == 0 && r.stdout.hasPrefix("\(f.name): up") && r.stdout.contains("no drift"), "\(r.stdout)\(r.stderr)")
    }
}
