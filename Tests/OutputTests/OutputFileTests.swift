import Foundation
import Glibc
import Testing
@testable import Files

/// A temporary directory of its own, removed when the test ends.
final class Scratch {
    let path: String
    init() throws {
        var template = Array((NSTemporaryDirectory() + "pc-output-XXXXXX").utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: try #require(p))
    }
    func file(_ name: String) -> String { path + "/" + name }
    func text(_ name: String) -> String? { try? String(contentsOfFile: file(name), encoding: .utf8) }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

func isSymlink(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK
}

struct OutputFileTests {
    /// A symbolic link planted at the report path: refused before any work, and again at write time; the link stays
    /// a link to the same place and the file it points to keeps its bytes.
    @Test func symlinkAtTheReportPathIsNeverFollowed() throws {
        let s = try Scratch()
        try "precious".write(toFile: s.file("victim"), atomically: false, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: s.file("report.json"), withDestinationPath: s.file("victim"))
        #expect(throws: FileProblem.self) { try OutputTarget.prepare(s.file("report.json"), option: "--json-file") }
        #expect(throws: FileProblem.self) { try OutputTarget.file(s.file("report.json")).write("{}") }
        #expect(isSymlink(s.file("report.json")))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: s.file("report.json")) == s.file("victim"))
        #expect(s.text("victim") == "precious")
    }

    /// The link appears after the check (a race): the write refuses it too, and nothing reaches the victim.
    @Test func symlinkPlantedAfterTheCheckIsNeverFollowed() throws {
        let s = try Scratch()
        try "precious".write(toFile: s.file("victim"), atomically: false, encoding: .utf8)
        let target = try OutputTarget.prepare(s.file("cap.pcapng"), option: "--pcap")
        try FileManager.default.createSymbolicLink(atPath: s.file("cap.pcapng"), withDestinationPath: s.file("victim"))
        let e = try #require(throws: FileProblem.self) { try target.write([1, 2, 3]) }
        #expect(e.problem.contains("symbolic link"))
        #expect(isSymlink(s.file("cap.pcapng")) && s.text("victim") == "precious")
        // No temporary file is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path).sorted() == ["cap.pcapng", "victim"])
    }

    /// A regular file is replaced whole (a new inode: a hard link to the old one keeps the old bytes).
    @Test func regularFileIsReplacedByRename() throws {
        let s = try Scratch()
        try "old".write(toFile: s.file("r.md"), atomically: false, encoding: .utf8)
        try FileManager.default.linkItem(atPath: s.file("r.md"), toPath: s.file("hardlink"))
        try OutputTarget.prepare(s.file("r.md"), option: "--markdown").write("new")
        #expect(s.text("r.md") == "new" && s.text("hardlink") == "old")
    }

    @Test func directoryTargetIsRefusedInPlainWords() throws {
        let s = try Scratch()
        try FileManager.default.createDirectory(atPath: s.file("d"), withIntermediateDirectories: false)
        let e = try #require(throws: FileProblem.self) { try OutputTarget.prepare(s.file("d"), option: "--html") }
        #expect(e.description == "--html \(s.file("d")): is a directory (name a file in it)")
        let root = try #require(throws: FileProblem.self) { try OutputTarget.prepare("/", option: "--markdown") }
        #expect(root.description.hasPrefix("--markdown /: names a directory"))
        #expect(throws: FileProblem.self) { try OutputTarget.file(s.file("d")).write("x") }
        #expect(FileManager.default.fileExists(atPath: s.file("d")))
    }

    @Test func emptyPathIsRefusedAndDashIsStandardOutput() throws {
        let e = try #require(throws: FileProblem.self) { try OutputTarget.prepare("", option: "--json-file") }
        #expect(e.description == "--json-file \"\": the path is empty (give a file name, or - for standard output)")
        #expect(try OutputTarget.prepare("-", option: "--junit") == .standardOutput)
        #expect(!e.description.contains("NSCocoaErrorDomain"))
    }

    /// Missing directories are made before any work (`mkdir -p`); a path through a file is an error.
    @Test func missingDirectoriesAreMadeAndFilesInThePathRefused() throws {
        let s = try Scratch()
        let t = try OutputTarget.prepare(s.file("a/b/c.xml"), option: "--junit")
        #expect(FileManager.default.fileExists(atPath: s.file("a/b")))
        try t.write("<x/>")
        #expect(s.text("a/b/c.xml") == "<x/>")
        let e = try #require(throws: FileProblem.self) { try OutputTarget.prepare(s.file("a/b/c.xml/d.json"), option: "--json-file") }
        #expect(e.problem == "\(s.file("a/b/c.xml")) is not a directory", "\(e)")
    }

    /// /dev/null is written in place: as root a rename would have replaced the device with a file.
    @Test func nullDeviceIsWrittenInPlace() throws {
        try OutputTarget.prepare("/dev/null", option: "--junit").write("discarded")
        var st = stat()
        #expect(stat("/dev/null", &st) == 0 && st.st_mode & S_IFMT == S_IFCHR)
    }

    @Test func pcapDirectoryMustBeADirectory() throws {
        let s = try Scratch()
        try "x".write(toFile: s.file("f"), atomically: false, encoding: .utf8)
        #expect(throws: FileProblem.self) { try OutputDirectory.prepare(s.file("f"), option: "--pcap-dir") }
        #expect(throws: FileProblem.self) { try OutputDirectory.prepare("-", option: "--pcap-dir") }
        #expect(try OutputDirectory.prepare(s.file("p/q"), option: "--pcap-dir") == s.file("p/q"))
    }
}

struct InputFileTests {
    @Test func missingFileAndMissingDirectorySaySo() throws {
        let s = try Scratch()
        let e = try #require(throws: FileProblem.self) { try InputFile.readText(s.file("nonexist.topo")) }
        #expect(e.description == "\(s.file("nonexist.topo")): no such file")
        let d = try #require(throws: FileProblem.self) { try InputFile.readText(s.file("no/lab.topo")) }
        #expect(d.problem == "no such file: the directory \(s.file("no")) does not exist")
    }

    @Test func directoryIsNamedAsADirectory() throws {
        let e = try #require(throws: FileProblem.self) { try InputFile.readText(".") }
        #expect(e.problem == "is a directory" && !e.description.contains("NSCocoaErrorDomain"))
    }

    /// A FIFO nobody writes to does not hang and does not say "permission denied".
    @Test func emptyFifoSaysWhatItIs() throws {
        let s = try Scratch()
        #expect(mkfifo(s.file("lab.topo"), 0o600) == 0)
        let e = try #require(throws: FileProblem.self) { try InputFile.readText(s.file("lab.topo")) }
        #expect(e.problem == "is a FIFO (named pipe) and nothing was written to it")
    }

    @Test func nonUTF8NamesTheByteLineAndColumn() throws {
        let s = try Scratch()
        _ = FileManager.default.createFile(atPath: s.file("bad.topo"), contents: Data("lab: x\nnodes:\n  h\u{e9}".utf8.prefix(17) + [0xE9, 0x0A]))
        let e = try #require(throws: FileProblem.self) { try InputFile.readText(s.file("bad.topo")) }
        #expect(e.problem == "not UTF-8 text: byte 0xe9 at line 3, column 4" && e.place == s.file("bad.topo") + ":3:4", "\(e)")
        #expect(InputFile.decodeUTF8(Array("h\u{e9}\n\u{1F600}x".utf8)) == .success("h\u{e9}\n\u{1F600}x"))
    }
}
