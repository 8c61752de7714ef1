import Glibc
import Netlink
import SystemPackage

/// Where an output option (`--json-file`, `--junit`, `--markdown`, `--html`, `--pcap`, `--pcap-dir`'s files) sends
/// its bytes: standard output (`-`) or a file. The one writer of every report and capture netlab makes.
///
/// A file is never written through a symbolic link and never replaced when it is a directory: the bytes go to a
/// new temporary file created with `O_CREAT|O_EXCL|O_NOFOLLOW` in the target's directory, which is then renamed over
/// the target (`renameat` replaces a directory entry, it never follows a link at the target). An existing FIFO, the
/// null device or a terminal is written in place (opened with `O_NOFOLLOW`, never created, never replaced).
public enum OutputTarget: Sendable, Equatable, CustomStringConvertible {
    case standardOutput
    case file(String)

    public var description: String {
        switch self {
        case .standardOutput: "standard output"
        case .file(let p): p
        }
    }

    public var isStandardOutput: Bool { self == .standardOutput }

    /// Check an output option's value before any work: `-` is standard output; a file's directory is created (as
    /// `mkdir -p`) and must take a new file; the file may not be a directory, a symbolic link or a device other
    /// than a terminal or the null device. Problems are in plain words and name the option.
    public static func prepare(_ value: String, option: String) throws(FileProblem) -> OutputTarget {
        if value == "-" { return .standardOutput }
        let label = "\(option) \(value.isEmpty ? "\"\"" : value)"
        guard !value.isEmpty else {
            throw FileProblem(path: label, "the path is empty", hint: "give a file name, or - for standard output")
        }
        let base = lastComponent(value)
        if value.hasSuffix("/") || base == "." || base == ".." {
            throw FileProblem(path: label, "names a directory", hint: "give a file name, e.g. \(value.hasSuffix("/") ? value : value + "/")report")
        }
        let dir = directoryPart(value)
        do { try makeDirectories(dir) } catch { throw FileProblem(path: label, error.problem, hint: error.hint) }
        let dirfd = try openDirectory(dir, label: label)
        defer { close(dirfd) }
        _ = try disposition(dirfd, base, label: label)
        // The directory takes a new file (a read-only file system or a directory we may not write says so now).
        let probe = temporaryName()
        switch retryingInterrupts({ openat(dirfd, probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }) {
        case .success(let fd): close(fd); unlinkat(dirfd, probe, 0)
        case .failure(let e): throw FileProblem(path: label, "cannot create a file in \(dir): " + FileProblem.words(e))
        }
        return .file(value)
    }

    public func write(_ text: String) throws(FileProblem) { try write(Array(text.utf8)) }

    /// Write every byte: to standard output (after what `print` buffered), or to the file as described above.
    public func write(_ bytes: [UInt8]) throws(FileProblem) {
        switch self {
        case .standardOutput:
            fflush(nil)   // what `print` buffered comes first
            try writeAll(1, bytes, label: "standard output")
        case .file(let path):
            let base = lastComponent(path)
            let dirfd = try Self.openDirectory(directoryPart(path), label: path)
            defer { close(dirfd) }
            switch try Self.disposition(dirfd, base, label: path) {
            case .inPlace:
                let fd = try Self.open(dirfd, base, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, label: path)
                defer { close(fd) }
                try writeAll(fd, bytes, label: path)
            case .replace:
                let temp = temporaryName()
                let fd = try Self.open(dirfd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, label: path)
                do {
                    try writeAll(fd, bytes, label: path)
                } catch {
                    close(fd); unlinkat(dirfd, temp, 0)
                    throw error
                }
                close(fd)
                if case .failure(let e) = retryingInterrupts({ renameat(dirfd, temp, dirfd, base) }) {
                    unlinkat(dirfd, temp, 0)
                    throw FileProblem(path: path, "cannot be replaced: " + FileProblem.words(e))
                }
            }
        }
    }

    enum Disposition { case replace, inPlace }

    /// What may be done at `base` in the directory: replace it (nothing there, or a regular file), write it in
    /// place (a FIFO, the null device, a terminal), or nothing (a directory, a symbolic link, any other device).
    static func disposition(_ dirfd: Int32, _ base: String, label: String) throws(FileProblem) -> Disposition {
        var st = stat()
        switch retryingInterrupts({ fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) }) {
        case .failure(.noSuchFileOrDirectory): return .replace
        case .failure(let e): throw FileProblem(path: label, FileProblem.words(e))
        case .success: break
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .replace
        case S_IFIFO: return .inPlace
        case S_IFDIR:
            throw FileProblem(path: label, "is a directory", hint: "name a file in it")
        case S_IFLNK:
            throw FileProblem(path: label, "is a symbolic link; netlab does not write through links",
                              hint: "remove it or name another file; - is standard output")
        case S_IFCHR:
            // The null device (1:3) and terminals are written in place; no other character device is.
            let isNull = major(st.st_rdev) == 1 && minor(st.st_rdev) == 3
            let fd = openat(dirfd, base, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
            let tty = fd >= 0 && isatty(fd) == 1
            if fd >= 0 { close(fd) }
            if isNull || tty { return .inPlace }
            fallthrough
        default:
            throw FileProblem(path: label, "is \(kindWords(st.st_mode)); netlab writes reports only to files, FIFOs, terminals and /dev/null")
        }
    }

    static func openDirectory(_ dir: String, label: String) throws(FileProblem) -> Int32 {
        switch retryingInterrupts({ Glibc.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }) {
        case .success(let fd): return fd
        case .failure(.noSuchFileOrDirectory): throw FileProblem(path: label, "the directory \(dir) does not exist")
        case .failure(.notDirectory): throw FileProblem(path: label, "\(dir) is not a directory")
        case .failure(let e): throw FileProblem(path: label, "the directory \(dir): " + FileProblem.words(e))
        }
    }

    static func open(_ dirfd: Int32, _ name: String, _ flags: Int32, label: String) throws(FileProblem) -> Int32 {
        switch retryingInterrupts({ openat(dirfd, name, flags, 0o644) }) {
        case .success(let fd): return fd
        case .failure(.tooManySymbolicLinkLevels): throw FileProblem(path: label, "is a symbolic link; netlab does not write through links")
        case .failure(let e): throw FileProblem(path: label, "cannot be written: " + FileProblem.words(e))
        }
    }
}

/// `--pcap-dir`: a directory for many output files, created before any work (as `mkdir -p`).
public enum OutputDirectory {
    public static func prepare(_ value: String, option: String) throws(FileProblem) -> String {
        let label = "\(option) \(value.isEmpty ? "\"\"" : value)"
        guard !value.isEmpty else { throw FileProblem(path: label, "the path is empty", hint: "give a directory") }
        guard value != "-" else { throw FileProblem(path: label, "a directory cannot be standard output", hint: "give a directory") }
        do { try makeDirectories(value) } catch { throw FileProblem(path: label, error.problem, hint: error.hint) }
        let fd = try OutputTarget.openDirectory(value, label: label)
        close(fd)
        return value
    }
}

/// `mkdir -p`: every missing directory of `path`, 0755; a part that exists but is not a directory is an error.
func makeDirectories(_ path: String) throws(FileProblem) {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + part
        var st = stat()
        if stat(prefix, &st) == 0 {
            if st.st_mode & S_IFMT != S_IFDIR { throw FileProblem(path: path, "\(prefix) is not a directory") }
            continue
        }
        if case .failure(let e) = retryingInterrupts({ mkdir(prefix, 0o755) }), e != .fileExists {
            throw FileProblem(path: path, "cannot create the directory \(prefix): " + FileProblem.words(e))
        }
    }
}

func writeAll(_ fd: Int32, _ bytes: [UInt8], label: String) throws(FileProblem) {
    var done = 0
    while done < bytes.count {
        let r = bytes.withUnsafeBytes { b in retryingInterrupts { Glibc.write(fd, b.baseAddress! + done, b.count - done) } }
        switch r {
        case .success(let n): done += n
        case .failure(let e): throw FileProblem(path: label, "writing failed: " + FileProblem.words(e))
        }
    }
}

func lastComponent(_ path: String) -> String {
    var p = Substring(path)
    while p.count > 1, p.hasSuffix("/") { p = p.dropLast() }
    return p.split(separator: "/").last.map(String.init) ?? String(p)
}

/// A name no one else picks: hidden, this process's pid, random.
func temporaryName() -> String { ".netlab-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp" }

func major(_ dev: dev_t) -> UInt32 { UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)) }
func minor(_ dev: dev_t) -> UInt32 { UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & ~0xff)) }

/// A file written as it goes (a capture until Ctrl-C): standard output, a FIFO or terminal in place, or — for a
/// regular file — a new temporary file (`O_CREAT|O_EXCL|O_NOFOLLOW`) in the target's directory, renamed over the
/// target by `finish` (the same rules as `OutputTarget.write`: never through a symbolic link).
public final class OutputStream {
    let fd: Int32
    let label: String
    let rename: (dirfd: Int32, temp: String, base: String)?
    private var finished = false

    init(fd: Int32, label: String, rename: (dirfd: Int32, temp: String, base: String)?) { self.fd = fd; self.label = label; self.rename = rename }

    public func write(_ bytes: [UInt8]) throws(FileProblem) { if !bytes.isEmpty { try writeAll(fd, bytes, label: label) } }

    /// Close, and put a regular file in place.
    public func finish() throws(FileProblem) {
        guard !finished else { return }
        finished = true
        if fd != 1 { close(fd) }
        guard let r = rename else { return }
        defer { close(r.dirfd) }
        if case .failure(let e) = retryingInterrupts({ renameat(r.dirfd, r.temp, r.dirfd, r.base) }) {
            unlinkat(r.dirfd, r.temp, 0)
            throw FileProblem(path: label, "cannot be replaced: " + FileProblem.words(e))
        }
    }

    deinit { try? finish() }
}

extension OutputTarget {
    /// Open for writing as it goes (`OutputStream`).
    public func stream() throws(FileProblem) -> OutputStream {
        switch self {
        case .standardOutput:
            fflush(nil)
            return OutputStream(fd: 1, label: "standard output", rename: nil)
        case .file(let path):
            let base = lastComponent(path)
            let dirfd = try Self.openDirectory(directoryPart(path), label: path)
            switch try Self.disposition(dirfd, base, label: path) {
            case .inPlace:
                defer { close(dirfd) }
                let fd = try Self.open(dirfd, base, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, label: path)
                return OutputStream(fd: fd, label: path, rename: nil)
            case .replace:
                let temp = temporaryName()
                let fd: Int32
                do { fd = try Self.open(dirfd, temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, label: path) } catch {
                    close(dirfd); throw error
                }
                return OutputStream(fd: fd, label: path, rename: (dirfd, temp, base))
            }
        }
    }
}
