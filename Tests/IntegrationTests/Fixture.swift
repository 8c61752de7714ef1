import Foundation
import Testing
import Topology
import NetLab

/// Root tests run when root, and must run (and fail without root) when CI=true.
enum Root {
    static var isRoot: Bool { geteuid() == 0 }
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }
    static var enabled: Bool { isRoot || inCI }
}

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Run a program and capture its output (`environment` added to this process's; `input` on its standard input).
@discardableResult
func run(_ program: String, _ args: [String], environment: [String: String] = [:], input: String? = nil) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let inPipe = Pipe()
    if input != nil { p.standardInput = inPipe }
    try p.run()
    if let input {
        inPipe.fileHandleForWriting.write(Data(input.utf8))
        try inPipe.fileHandleForWriting.close()
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

/// The netlab binary built beside the test bundle (or NETLAB_BIN).
func netlabBinary() throws -> String {
    if let b = ProcessInfo.processInfo.environment["NETLAB_BIN"] { return b }
    let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var candidates = [bundleDir.appendingPathComponent("netlab").path]
    // swift-testing may run from .../debug/<name>.xctest; the binary sits in .../debug.
    candidates.append(bundleDir.deletingLastPathComponent().appendingPathComponent("netlab").path)
    for c in candidates where FileManager.default.isExecutableFile(atPath: c) { return c }
    let built = try run("/usr/bin/env", ["swift", "build", "--package-path", repoRoot.path, "--show-bin-path"])
    let path = built.stdout.trimmingCharacters(in: .whitespacesAndNewlines) + "/netlab"
    try #require(FileManager.default.isExecutableFile(atPath: path), "build netlab first (swift build)")
    return path
}

func netlab(_ args: String...) throws -> RunResult { try run(try netlabBinary(), args) }

/// `netlab ARGS` running in the background, for tests that signal it: standard output discarded, standard error
/// into `stderr` when given.
func startNetlab(_ args: [String], stderr: Pipe? = nil) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try netlabBinary())
    p.arguments = args
    p.standardOutput = FileHandle.nullDevice
    p.standardError = stderr ?? FileHandle.nullDevice
    try p.run()
    return p
}

/// The text of `Labs/NAME.topo`.
func bundledLab(_ name: String) throws -> String {
    try String(contentsOfFile: repoRoot.appendingPathComponent("Labs/\(name).topo").path, encoding: .utf8)
}

/// The dualhome lab with `checks` (list items, indented two spaces) in place of its own.
func dualhome(checks: String) throws -> String {
    try bundledLab("dualhome").components(separatedBy: "checks:")[0] + "checks:\n" + checks
}

/// `ip -j ...` parsed as JSON.
func ipJSON(_ args: String...) throws -> [[String: Any]] {
    let r = try run("/usr/bin/env", ["ip", "-j"] + args)
    try #require(r.status == 0, "ip -j \(args.joined(separator: " ")): \(r.stderr)")
    let text = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    if text.isEmpty { return [] }
    return try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
}

/// The first letters of every lab and namespace a test makes: `it`, or NETLAB_TEST_PREFIX (2 lowercase letters) so
/// that several people's test runs on one machine keep apart.
let testPrefix: String = {
    let p = ProcessInfo.processInfo.environment["NETLAB_TEST_PREFIX"] ?? "it"
    return p.count == 2 && p.allSatisfy({ ("a"..."z").contains($0) }) ? p : "it"
}()

/// A lab under a name of its own (`it<random>-<name>`), deleted by name when the test ends, whatever happened.
final class LabFixture {
    let name: String
    let file: String
    let directory: String

    /// Copy `text` under a unique lab name into a temporary file.
    convenience init(text: String, base: String) throws {
        try self.init(text: text, base: base, name: "\(testPrefix)\(Int.random(in: 1000...9999))-\(String(base.prefix(8)))")
    }

    /// The lab under exactly `name` (which must start with `it<digits>-` (or NETLAB_TEST_PREFIX), the tests' prefix).
    init(text: String, base: String, name: String) throws {
        self.name = name
        directory = NSTemporaryDirectory() + "netlab-\(name)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var lines = text.components(separatedBy: "\n")
        let i = try #require(lines.firstIndex { $0.hasPrefix("lab:") }, "no lab: line")
        lines[i] = "lab: \(name)"
        file = directory + "/\(base).topo"
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
    }

    convenience init(lab path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try self.init(text: text, base: URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent)
    }

    /// The namespaces of this lab that exist now.
    func namespaces() -> [String] {
        let list = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        return list.filter { $0.hasPrefix(name + "-") || $0.hasPrefix(name + "_") }.sorted()
    }

    var journal: String { "/run/netlab/\(name).json" }

    deinit {
        for ns in namespaces() { _ = try? run("/usr/bin/env", ["ip", "netns", "del", ns]) }
        for f in LabFixture.files(ofLab: name) { try? FileManager.default.removeItem(atPath: f) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// The files netlab keeps for a lab in /run/netlab: journal, topology copy, lock, temp files.
    static func files(ofLab lab: String) -> [String] {
        let all = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netlab")) ?? []
        return all.filter { f in ["json", "topo", "lock"].contains { ext in f == "\(lab).\(ext)" || f.hasPrefix("\(lab).\(ext).tmp.") } }
            .map { "/run/netlab/\($0)" }
    }
}

/// Labs a command names itself from a prefix (`selftest connect --name-prefix`): a unique `it<random>-<tag>`
/// prefix and a temporary directory; every namespace with the prefix is deleted by name when the test ends.
final class PrefixFixture {
    let prefix: String
    let directory: String

    init(tag: String) {
        prefix = "\(testPrefix)\(Int.random(in: 1000...9999))-\(tag)"
        directory = NSTemporaryDirectory() + "netlab-\(prefix)"
    }

    /// The namespaces with the prefix that exist now.
    func namespaces() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []).filter { $0.hasPrefix(prefix) }
    }

    deinit {
        for ns in namespaces() { _ = try? run("/usr/bin/env", ["ip", "netns", "del", ns]) }
        for f in (try? FileManager.default.contentsOfDirectory(atPath: "/run/netlab")) ?? [] where f.hasPrefix(prefix) {
            try? FileManager.default.removeItem(atPath: "/run/netlab/\(f)")
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
