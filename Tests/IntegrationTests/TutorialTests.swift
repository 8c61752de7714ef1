import Foundation
import Testing

/// docs/tutorial.md runs as written: its topology files validate, and its commands (lab name and file swapped for
/// the test's own) give the exit statuses and the lines the tutorial shows.
struct TutorialTests {
    static func blocks(_ text: String, _ kind: String) -> [String] {
        var out: [String] = [], cur: [String]? = nil
        for line in text.components(separatedBy: "\n") {
            if cur == nil, line == "```" + kind { cur = [] } else if cur != nil, line == "```" { out.append(cur!.joined(separator: "\n") + "\n"); cur = nil } else { cur?.append(line) }
        }
        return out
    }

    @Test func theTutorialRunsAsWritten() throws {
        let md = try String(contentsOf: repoRoot.appendingPathComponent("docs/tutorial.md"), encoding: .utf8)
        let yaml = Self.blocks(md, "yaml"), sh = Self.blocks(md, "sh")
        try #require(yaml.count == 3 && sh.count == 6, "\(yaml.count) yaml and \(sh.count) sh blocks")
        // The three versions of the file: the lab, the lab with its checks, the fixed lab.
        let versions = [yaml[0], yaml[0] + yaml[1], yaml[2]]
        #expect(yaml[2].hasSuffix(yaml[1]), "the fixed file ends with the checks of step 3")
        let f = try LabFixture(text: versions[0], base: "tutorial")
        let bin = try netlabBinary()
        func use(_ v: Int) throws {
            try versions[v].replacingOccurrences(of: "lab: tutorial\n", with: "lab: \(f.name)\n").write(toFile: f.file, atomically: true, encoding: .utf8)
        }
        /// One command line of the tutorial, with the test's lab and file; its output and status.
        func shell(_ line: String) throws -> RunResult {
            let swap = ["tutorial.topo": f.file, "tutorial.svg": f.directory + "/t.svg", "report.html": f.directory + "/report.html",
                        "tutorial": f.name]
            let words = line.split(whereSeparator: \.isWhitespace).map { swap[String($0)] ?? String($0) }
            #expect(words.first == "netlab", "\(line)")
            if let gt = words.firstIndex(of: ">") {
                let r = try run(bin, Array(words[1..<gt]))
                try r.stdout.write(toFile: words[gt + 1], atomically: true, encoding: .utf8)
                return r
            }
            return try run(bin, Array(words.dropFirst()))
        }
        func all(_ block: String, status: Int32 = 0) throws -> String {
            var out = ""
            for l in block.split(separator: "\n").map(String.init) {
                let r = try shell(l)
                #expect(r.status == status, "\(l): exit \(r.status)\n\(r.stderr)")
                out += r.stdout + r.stderr
            }
            return out
        }
        try use(0)
        #expect(try all(sh[0]).contains("ok (lab \(f.name): 4 nodes, 4 links, 9 addresses, 5 routes, 0 rules)"))
        let connect = try all(sh[1])
        #expect(connect.contains("path:  client → isp1 → server   (client:eth0> isp1:eth0< isp1:eth1> server:eth0<)"), "\(connect)")
        let bound = try all(sh[2])
        #expect(bound.contains("dev eth0 via 192.0.2.1") && bound.contains("reply: server → isp2 → client"), "\(bound)")
        try use(1)
        let failing = try all(sh[3], status: 1)
        #expect(failing.contains("via: expected 203.0.113.9, engine 192.0.2.1") && failing.contains("1/2 checks passed"), "\(failing)")
        try use(2)
        #expect(try all(sh[4]).contains("2/2 checks passed"))
        let route = try all(sh[5])
        #expect(route.contains("engine: src 203.0.113.10 dev eth1 via 203.0.113.9 table isp2") && route.contains("agree"), "\(route)")
        #expect(f.namespaces().isEmpty, "the tutorial ends with the lab down")
    }
}
