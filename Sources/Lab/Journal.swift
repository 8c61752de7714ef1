import Foundation
import Netlink
import Topology

/// What netlab made for one lab, so `netlab down` can remove it all, and only it, even after `kill -9` part-way
/// through `up`. Two files in /run/netlab, both written atomically (a temp file created with `O_EXCL|O_NOFOLLOW`,
/// then renamed over the old one) and only while the lab's lock (`LabLock`) is held:
/// - `<lab>.json`: this header — state, phase, the namespaces planned, and each one made with its identity;
/// - `<lab>.topo`: the topology text the lab came up with, written once (so phase updates stay small).
///
/// Every kernel object a lab owns lives inside one of its namespaces (veth ends are created directly in them), so
/// the namespaces are the unit of ownership. Each is marked as it is made (its `lo` carries the alias
/// `netlab lab=<lab> token=<token>` before it is pinned) and its nsfs identity is recorded once the namespaces phase
/// ends; `down` and rollback delete a namespace only if its identity, or failing that its mark, says it is this
/// lab's. A journal is untrusted input when read: it is decoded strictly and every name in it re-validated.
public struct Journal: Codable, Sendable {
    public static let directory = "/run/netlab"

    public enum State: String, Codable, Sendable { case applying, up, failed, tearingDown = "tearing-down" }

    /// A namespace this lab made, with the identity it had when made.
    public struct Made: Codable, Sendable, Hashable {
        public var name: String
        public var device: UInt64
        public var inode: UInt64
        public var identity: NetworkNamespace.Identity { .init(device: device, inode: inode) }
        public init(name: String, identity: NetworkNamespace.Identity) {
            self.name = name; device = identity.device; inode = identity.inode
        }
    }

    public var version = 2
    public var lab: String
    /// The topology file, absolute.
    public var file: String
    public var state: State
    /// The step `up` was at: namespaces, links, addresses, sysctls, routes, rules, done.
    public var phase: String
    public var pid: Int32
    public var started: Date
    /// Namespaces planned, recorded before the first is created.
    public var namespaces: [String]
    /// Random, per `up`: the mark inside each namespace carries it.
    public var token: String
    /// The namespaces made, with their identities (filled when the namespaces phase ends).
    public var made: [Made]
    /// The topology text the lab came up with (kept in `<lab>.topo`, not in the header).
    public var source: String = ""
    /// Live changes made since `up` (`netlab set`, experiments), in order; absent in journals written before them.
    public var changes: [RecordedChange]?

    /// One change in the words it was given (re-parsed against the topology when used).
    public struct RecordedChange: Codable, Sendable, Hashable {
        public var node: String
        /// The words after the node: `["route", "add", "default via 203.0.113.1 metric 50"]`.
        public var words: [String]
        public var time: Date
        public init(node: String, words: [String], time: Date) { self.node = node; self.words = words; self.time = time }
    }

    enum CodingKeys: String, CodingKey { case version, lab, file, state, phase, pid, started, namespaces, token, made, source, changes }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        lab = try c.decode(String.self, forKey: .lab)
        file = try c.decode(String.self, forKey: .file)
        state = try c.decode(State.self, forKey: .state)
        phase = try c.decode(String.self, forKey: .phase)
        pid = try c.decode(Int32.self, forKey: .pid)
        started = try c.decode(Date.self, forKey: .started)
        namespaces = try c.decode([String].self, forKey: .namespaces)
        if version == 1 {
            // Written by netlab before identities and marks (its topology text was inside): nothing proves ownership.
            token = ""
            made = []
            source = try c.decodeIfPresent(String.self, forKey: .source) ?? ""
        } else {
            token = try c.decode(String.self, forKey: .token)
            made = try c.decode([Made].self, forKey: .made)
        }
        changes = try c.decodeIfPresent([RecordedChange].self, forKey: .changes)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version, forKey: .version); try c.encode(lab, forKey: .lab); try c.encode(file, forKey: .file)
        try c.encode(state, forKey: .state); try c.encode(phase, forKey: .phase); try c.encode(pid, forKey: .pid)
        try c.encode(started, forKey: .started); try c.encode(namespaces, forKey: .namespaces)
        try c.encode(token, forKey: .token); try c.encode(made, forKey: .made)
        try c.encodeIfPresent(changes, forKey: .changes)
    }

    /// A journal of netlab before version 2, which recorded names only.
    public var isLegacy: Bool { version == 1 }

    public init(lab: String, file: String, source: String, state: State, phase: String, pid: Int32, started: Date,
                namespaces: [String]) {
        self.lab = lab; self.file = file; self.source = source; self.state = state; self.phase = phase; self.pid = pid
        self.started = started; self.namespaces = namespaces
        token = (0..<2).map { _ in String(UInt64.random(in: .min ... .max), radix: 16) }.joined()
        made = []
    }

    /// The alias netlab gives `lo` in every namespace of this `up`: what proves a namespace is ours.
    public var mark: String { Self.mark(lab: lab, token: token) }
    public static func mark(lab: String, token: String) -> String { "netlab lab=\(lab) token=\(token)" }
    /// The start of every mark of a lab, whatever its token (for `down` when the journal is unreadable).
    public static func markPrefix(lab: String) -> String { "netlab lab=\(lab) token=" }

    public static func path(lab: String) throws(JournalError) -> String {
        guard LabNames.isLab(lab) else { throw .badLabName(lab) }
        return "\(directory)/\(lab).json"
    }
    static func sourcePath(lab: String) throws(JournalError) -> String {
        guard LabNames.isLab(lab) else { throw .badLabName(lab) }
        return "\(directory)/\(lab).topo"
    }

    /// Write the header (and, with `source: true`, the topology text) atomically.
    public func write(source withSource: Bool = false) throws {
        try Self.makeDirectory()
        if withSource { try AtomicFile.write(Data(source.utf8), to: try Self.sourcePath(lab: lab)) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try AtomicFile.write(try encoder.encode(self), to: try Self.path(lab: lab))
    }

    static func makeDirectory() throws {
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw JournalError.io(path: directory, String(cString: strerror(errno)))
        }
    }

    /// The journal of `lab`, nil when there is none. Throws `JournalError.corrupt` for a file that is not a journal
    /// of this lab (truncated, another lab's, names that are not this lab's namespaces): `down` then finds the lab's
    /// namespaces by their mark instead.
    public static func read(lab: String) throws(JournalError) -> Journal? {
        let p = try path(lab: lab)
        let data: Data
        switch AtomicFile.read(p) {
        case .missing: return nil
        case .failed(let why): throw .io(path: p, why)
        case .read(let d): data = d
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        var j: Journal
        do { j = try decoder.decode(Journal.self, from: data) } catch {
            throw .corrupt(lab: lab, path: p, why: "not a netlab journal (\(Self.plain(error)))")
        }
        guard j.lab == lab else { throw .corrupt(lab: lab, path: p, why: "it names lab \"\(j.lab)\"") }
        for n in j.namespaces + j.made.map(\.name) where !(NetworkNamespace.isValidName(n) && LabNames.namespace(n, belongsTo: lab)) {
            throw .corrupt(lab: lab, path: p, why: "\"\(n)\" is not a namespace of lab \(lab)")
        }
        if let m = j.made.first(where: { !j.namespaces.contains($0.name) }) {
            throw .corrupt(lab: lab, path: p, why: "namespace \(m.name) is recorded as made but was not planned")
        }
        guard j.isLegacy || (j.version == 2 && j.token.count >= 16 && j.token.allSatisfy(\.isHexDigit)) else {
            throw .corrupt(lab: lab, path: p, why: "bad version or token")
        }
        // Recorded changes are words for the topology parser: a node name, then a few short printable words.
        for c in j.changes ?? [] {
            guard LabNames.isNode(c.node) else { throw .corrupt(lab: lab, path: p, why: "a recorded change names \"\(c.node)\", not a node") }
            guard !c.words.isEmpty, c.words.count <= 64,
                  c.words.allSatisfy({ $0.utf8.count <= 1024 && $0.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7f } }) else {
                throw .corrupt(lab: lab, path: p, why: "a recorded change of node \(c.node) is not a change")
            }
        }
        if !j.isLegacy, case .read(let s) = AtomicFile.read(try sourcePath(lab: lab)) { j.source = String(decoding: s, as: UTF8.self) }
        return j
    }

    /// Remove the journal, the topology copy and any temp files a killed writer left.
    public static func remove(lab: String) {
        guard let p = try? path(lab: lab), let s = try? sourcePath(lab: lab) else { return }
        unlink(p)
        unlink(s)
        AtomicFile.removeStaleTemps(in: directory, for: [p, s])
    }

    /// Labs with a journal, by name (files whose name is not a valid lab name are ignored).
    public static func labs() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.filter(LabNames.isLab).sorted()
    }

    static func plain(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return c.debugDescription
        case DecodingError.keyNotFound(let k, _): return "no \"\(k.stringValue)\""
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "bad \"\(c.codingPath.map(\.stringValue).joined(separator: "."))\""
        default: return "\(error)"
        }
    }
}

/// Why a journal could not be used.
public enum JournalError: Error, CustomStringConvertible, Sendable {
    case badLabName(String)
    case corrupt(lab: String, path: String, why: String)
    case io(path: String, String)

    public var description: String {
        switch self {
        case .badLabName(let n):
            return "\"\(n.debugDescription.dropFirst().dropLast())\" is not a lab name (\(LabNames.labRule))"
        case .corrupt(_, let p, let why): return "\(p) is unreadable: \(why)"
        case .io(let p, let why): return "\(p): \(why)"
        }
    }
}

/// Small files written so that a reader sees the old or the new content, never part of one, and never through a
/// symlink: the bytes go to `<path>.tmp.<pid>` (created with `O_EXCL|O_NOFOLLOW`), which is renamed over `path`.
/// A writer killed part-way leaves only its temp file, which the next writer of the same path removes.
public enum AtomicFile {
    public enum ReadResult { case missing, read(Data), failed(String) }

    public static func write(_ data: Data, to path: String) throws {
        removeStaleTemps(in: (path as NSString).deletingLastPathComponent, for: [path])
        let tmp = "\(path).tmp.\(getpid())"
        unlink(tmp)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw JournalError.io(path: tmp, String(cString: strerror(errno))) }
        var ok = true
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; ok = false; return }
                off += n
            }
        }
        let e = errno
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            let why = String(cString: strerror(ok ? errno : e))
            unlink(tmp)
            throw JournalError.io(path: path, why)
        }
    }

    /// Read a regular file without following a symlink.
    public static func read(_ path: String) -> ReadResult {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { return errno == ENOENT ? .missing : .failed(String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return .failed("not a regular file") }
        var out = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return .failed(String(cString: strerror(errno))) }
            if n == 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return .read(out)
    }

    /// Remove `<path>.tmp.<pid>` files of `paths` whose writer is gone. (Foundation's `.dat.nosync*` files, which
    /// earlier versions left when killed mid-write, are not touched: one may be another process's write in flight.)
    public static func removeStaleTemps(in directory: String, for paths: [String]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        let bases = Set(paths.map { ($0 as NSString).lastPathComponent })
        for n in names {
            guard let r = n.range(of: ".tmp."), bases.contains(String(n[..<r.lowerBound])),
                  let pid = Int32(n[r.upperBound...]) else { continue }
            if pid == getpid() || (kill(pid, 0) != 0 && errno == ESRCH) { unlink("\(directory)/\(n)") }
        }
    }
}
