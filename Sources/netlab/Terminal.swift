import ArgumentParser
import Foundation
import NetLab

/// One value as JSON (indented, keys sorted, `Reports.jsonText`) to its target.
func emitJSON(_ value: some Encodable, to target: OutputTarget?, dates: JSONEncoder.DateEncodingStrategy = .deferredToDate) throws {
    guard let target else { return }
    try Terminal.write(try Reports.jsonText(value, dates: dates) + "\n", to: target)
}

/// `1 link`, `2 links`.
func count(_ n: Int, _ noun: String, _ plural: String? = nil) -> String { "\(n) \(n == 1 ? noun : plural ?? noun + "s")" }

/// Messages and progress for humans, on standard error.
enum Terminal {
    /// One value as indented JSON with sorted keys on standard output (what every `--json` prints).
    static func printJSON(_ value: some Encodable, dates: JSONEncoder.DateEncodingStrategy = .deferredToDate) throws {
        try emitJSON(value, to: .standardOutput, dates: dates)
    }

    /// An output option's value checked before any work: `-` is standard output; a problem exits 2.
    static func output(_ value: String, option: String) throws -> OutputTarget {
        do { return try OutputTarget.prepare(value, option: option) } catch {
            Terminal.error(error.problem.isEmpty ? error.path : "\(error.path): \(error.problem)")
            if let h = error.hint { hint(h) }
            throw ExitStatus.badInput
        }
    }

    /// A directory option (`--pcap-dir`) checked and made before any work; a problem exits 2.
    static func outputDirectory(_ value: String, option: String) throws -> String {
        do { return try OutputDirectory.prepare(value, option: option) } catch {
            Terminal.error("\(error.path): \(error.problem)")
            if let h = error.hint { hint(h) }
            throw ExitStatus.badInput
        }
    }

    /// Write to a prepared output; a failure (a full disk, a closed pipe) exits 1.
    static func write(_ text: String, to target: OutputTarget) throws {
        do { try target.write(text) } catch {
            Terminal.error(error.description)
            throw ExitStatus.failed
        }
    }

    /// At most one output option may be `-` (a usage error, from a command's `validate`).
    static func oneStandardOutput(_ options: [(String, String?)]) throws {
        let std = options.filter { $0.1 == "-" }.map(\.0)
        if std.count > 1 { throw ValidationError("\(std.joined(separator: " and ")) both name standard output (-): give one of them a file") }
    }

    /// Text for the reader: standard output, or standard error when standard output carries a report or a capture.
    nonisolated(unsafe) static var textToStandardError = false
    static func say(_ s: String) {
        if textToStandardError { note(s) } else { print(s) }
    }

    static let isTTY = isatty(2) == 1
    static var color: Bool { isTTY && ProcessInfo.processInfo.environment["NO_COLOR"] == nil }

    static func error(_ s: String) {
        fflush(nil)
        let prefix = color ? "\u{1B}[1;31merror:\u{1B}[0m " : "error: "
        FileHandle.standardError.write((prefix + s + "\n").data(using: .utf8)!)
    }
    static func warning(_ s: String) {
        fflush(nil)
        let prefix = color ? "\u{1B}[1;33mwarning:\u{1B}[0m " : "warning: "
        FileHandle.standardError.write((prefix + s + "\n").data(using: .utf8)!)
    }
    static func note(_ s: String) {
        fflush(nil)   // what was printed first is read first, also with both streams on one terminal or file
        FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
    }
    static func hint(_ s: String) { note("   hint: " + s) }

    /// One rewritten status line on a terminal; nothing when output is not a terminal.
    static func progress(_ phase: String, _ done: Int, _ total: Int) {
        guard isTTY else { return }
        FileHandle.standardError.write("\r\u{1B}[K  \(phase) \(done)/\(total)".data(using: .utf8)!)
    }
    static func endProgress() {
        guard isTTY else { return }
        FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!)
    }

    /// What a command says once when another netlab holds the lab's lock and it waits.
    static func waiting(_ lab: String) -> LabController.Waiting {
        { holder in note("lab \(lab) is busy: \(holder) holds its lock; waiting for it (Ctrl-C to give up)") }
    }

    /// Root is needed for namespaces and netlink changes.
    static func requireRoot(_ what: String) throws {
        if geteuid() != 0 {
            error("`netlab \(what)` needs root (network namespaces and netlink changes); run it with sudo")
            throw ExitStatus.badInput
        }
    }

    /// Load and validate a topology; bad input prints every diagnostic and exits 2.
    static func load(_ path: String) throws -> Topology {
        do { return try Topology.parse(try InputFile.readText(path), file: path == "-" ? "<stdin>" : path) } catch let e as TopologyError {
            FileHandle.standardError.write((e.rendered(color: color) + "\n").data(using: .utf8)!)
            throw ExitStatus.badInput
        } catch let e as FileProblem {
            fileProblem(e)
            throw ExitStatus.badInput
        }
    }

    /// `PATH: error: what is wrong`, and the hint: a file that cannot be a topology file.
    static func fileProblem(_ e: FileProblem) {
        let bold = color ? "\u{1B}[1m" : "", red = color ? "\u{1B}[1;31m" : "", reset = color ? "\u{1B}[0m" : ""
        fflush(nil)
        FileHandle.standardError.write("\(bold)\(e.place):\(reset) \(red)error:\(reset) \(e.problem)\n".data(using: .utf8)!)
        if let h = e.hint { hint(h) }
    }

    /// The topology of a lab that is up; a name that is no lab that is up lists those that are, exit 2.
    static func labThatIsUp(_ lab: String) throws -> Topology {
        guard LabNames.isLab(lab) else {
            error("\"\(visible(lab))\" is not a lab name (\(LabNames.labRule))")
            throw ExitStatus.badInput
        }
        if let t = try LabSession.topology(ofLab: lab) { return t }
        notUp(lab)
        throw ExitStatus.badInput
    }

    /// `down` of a lab that is not up: not an error (down is idempotent), but say which labs are.
    static func notUpNote(_ lab: String) {
        let up = Journal.labs()
        note("   no lab \(lab) is up; " + (up.isEmpty ? "no lab is up" : "labs that are up: \(up.joined(separator: ", "))"))
        if let near = nearest(lab, in: up) { hint("did you mean \(near)?") }
    }

    /// "no lab X is up", the labs that are, and the nearest name.
    static func notUp(_ lab: String) {
        let up = Journal.labs()
        error("no lab \(visible(lab)) is up" + (up.isEmpty ? "; no lab is up" : "; labs that are up: \(up.joined(separator: ", "))"))
        if let near = nearest(lab, in: up) { hint("did you mean \(near)?") } else if up.isEmpty { hint("`netlab up FILE` brings a lab up") }
    }
}

/// The lab a `LabTarget` names: a topology file is read for its `lab:` (loosely, so a file that no longer validates
/// still works).
func labName(_ named: LabTarget) throws -> String {
    let target: String
    switch named {
    case .name(let name): return name
    case .file(let path): target = path
    }
    let text: String
    do { text = try InputFile.readText(target) } catch {
        Terminal.fileProblem(error)
        throw ExitStatus.badInput
    }
    if let t = try? Topology.parse(text, file: target) { return t.lab }
    for line in text.split(separator: "\n") where line.hasPrefix("lab:") {
        let name = line.dropFirst(4).split(separator: "#").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        if LabNames.isLab(name) { return name }
        Terminal.error("\(target): \"\(visible(name))\" is not a lab name")
        throw ExitStatus.badInput
    }
    Terminal.error("\(target): no `lab:` line")
    throw ExitStatus.badInput
}

struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ v: any Encodable) { value = v }
    func encode(to encoder: Encoder) throws { try value.encode(to: encoder) }
}
