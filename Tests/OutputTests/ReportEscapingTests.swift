import Foundation
import FoundationXML
import Testing
import Topology
@testable import Checks

/// A check name with an escape sequence, a bell, a NUL, a newline, a table bar and a right-to-left override, as a
/// hostile topology file can carry in a YAML double-quoted string.
let hostile = "evil\u{1B}[31m\u{7}\u{0}\nname|\u{202E}txt"

func run(named name: String) -> CheckRun {
    let r = CheckResult(name: name, from: "client", connect: "192.0.2.80:80", line: 3, passed: false,
                        failures: ["result: expected established, engine refused \(name)"], expected: ["result": "established"],
                        engine: nil, kernel: nil, differences: [], notes: [name], pcap: nil, seconds: 0.1)
    return CheckRun(lab: "pc-esc", file: "esc.topo", started: Date(timeIntervalSince1970: 0), seconds: 0.1, results: [r])
}

/// No output carries a raw control character or bidirectional override (XML 1.0 may not carry them at all).
func raw(_ s: String) -> [UInt32] {
    s.unicodeScalars.map(\.value).filter { ($0 < 0x20 && $0 != 0x0A && $0 != 0x09) || (0x7F..<0xA0).contains($0) || $0 == 0x202E }
}

struct ReportEscapingTests {
    @Test func visibleEscapesEveryControlCharacter() {
        #expect(visible(hostile) == "evil\\x1B[31m\\x07\\x00\\nname|\\u{202E}txt")
        #expect(visible("plain name: → ✓") == "plain name: → ✓")
    }

    @Test func junitIsValidXMLWithTheNameVisible() throws {
        let x = Reports.junit(run(named: hostile))
        #expect(raw(x).isEmpty, "\(raw(x))")
        #expect(x.contains("name=\"evil\\x1B[31m\\x07\\x00\\nname|\\u{202E}txt\""))
        _ = try XMLDocument(xmlString: x)   // parses: no character XML 1.0 forbids
    }

    @Test func markdownKeepsOneRowPerCheck() {
        let m = Reports.markdown(run(named: hostile))
        #expect(raw(m).isEmpty)
        let rows = m.split(separator: "\n").filter { $0.hasPrefix("| ❌") }
        #expect(rows.count == 1 && rows[0].contains("evil\\x1B[31m\\x07\\x00\\nname\\|\\u{202E}txt"), "\(m)")
    }

    @Test func htmlCarriesNoControlCharacters() throws {
        let t = try Topology.parse("lab: pc-esc\nnodes:\n  client: {}\n", file: "esc.topo")
        let h = Reports.html(run(named: hostile), topology: t)
        #expect(raw(h).isEmpty, "\(raw(h))")
        #expect(h.contains("evil\\x1B[31m\\x07\\x00\\nname|\\u{202E}txt"))
    }
}
