import Glibc
import Netlink
import SystemPackage

/// Reading a text file a user named (a topology file), with plain errors: no such file, a directory, permission
/// denied, not UTF-8 (with the line and column of the first bad byte). A FIFO or `/dev/stdin` is read as a stream
/// (`netlab validate <(gen-lab)` works); `-` is standard input.
public enum InputFile {
    /// Larger than this is not a topology file (and /dev/zero must end).
    public static let limit = 64 << 20

    /// The text of `path`, or what is wrong with it.
    public static func readText(_ path: String) throws(FileProblem) -> String {
        let bytes = try readBytes(path)
        switch decodeUTF8(bytes) {
        case .success(let s): return s
        case .failure(let bad):
            throw FileProblem(path: path, "not UTF-8 text: byte 0x\(String(bytes[bad.offset], radix: 16)) at line \(bad.line), column \(bad.column)",
                              hint: "a topology file is UTF-8 text; convert it, e.g. iconv -f latin1 -t utf-8",
                              line: bad.line, column: bad.column)
        }
    }

    /// Where the first byte that is not UTF-8 is.
    public struct BadByte: Error, Equatable { public var offset, line, column: Int }

    /// Decode UTF-8 strictly; the position of the first invalid byte otherwise (line and column 1-based, columns in
    /// characters as editors count them).
    public static func decodeUTF8(_ bytes: [UInt8]) -> Result<String, BadByte> {
        var it = bytes.makeIterator()
        var decoder = UTF8()
        var offset = 0, line = 1, column = 1
        var out = String.UnicodeScalarView()
        while true {
            switch decoder.decode(&it) {
            case .scalarValue(let s):
                out.append(s)
                offset += UTF8.width(s)
                if s == "\n" { line += 1; column = 1 } else { column += 1 }
            case .emptyInput: return .success(String(out))
            case .error: return .failure(BadByte(offset: offset, line: line, column: column))
            }
        }
    }

    /// The bytes of `path` (`-`: standard input).
    public static func readBytes(_ path: String) throws(FileProblem) -> [UInt8] {
        if path == "-" { return try readAll(0, path: "standard input") }
        guard !path.isEmpty else { throw FileProblem(path: "\"\"", "the path is empty", hint: "give a .topo file") }
        // O_NONBLOCK: opening a FIFO nobody writes to must not hang; cleared below for the read.
        let fd: Int32
        switch retryingInterrupts({ open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) }) {
        case .success(let f): fd = f
        case .failure(let e):
            if e == .noSuchFileOrDirectory {
                // Say which part is missing: the file or its directory.
                let dir = directoryPart(path)
                if linkStatus(path) != nil { throw FileProblem(path: path, "is a symbolic link to nothing") }
                if linkStatus(dir) == nil { throw FileProblem(path: path, "no such file: the directory \(dir) does not exist") }
                throw FileProblem(path: path, "no such file")
            }
            throw FileProblem(path: path, FileProblem.words(e))
        }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw FileProblem(path: path, FileProblem.words(Errno(rawValue: errno))) }
        switch st.st_mode & S_IFMT {
        case S_IFREG, S_IFIFO, S_IFCHR:
            break
        case S_IFDIR:
            throw FileProblem(path: path, "is a directory", hint: "give a .topo file, e.g. \(path == "." ? "" : path + "/")lab.topo")
        default:
            throw FileProblem(path: path, "is \(kindWords(st.st_mode)), not a file")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        let bytes = try readAll(fd, path: path)
        if bytes.isEmpty, st.st_mode & S_IFMT == S_IFIFO {
            throw FileProblem(path: path, "is a FIFO (named pipe) and nothing was written to it")
        }
        return bytes
    }

    static func readAll(_ fd: Int32, path: String) throws(FileProblem) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { b in retryingInterrupts { read(fd, b.baseAddress, b.count) } }
            switch n {
            case .failure(let e): throw FileProblem(path: path, "cannot be read: " + FileProblem.words(e))
            case .success(0): return out
            case .success(let k):
                out += chunk[0..<k]
                if out.count > limit { throw FileProblem(path: path, "is larger than \(limit >> 20) MiB: not a topology file") }
            }
        }
    }
}

/// The directory part of a path (`.` for a bare name), as `dirname` gives it.
func directoryPart(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    let d = String(path[..<slash])
    return d.isEmpty ? "/" : d
}
