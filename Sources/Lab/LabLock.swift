import Foundation
import Netlink
import Topology

/// The lock of one lab: `flock` on /run/netlab/<lab>.lock, held by `up`, `down`, `set` and `check` for as long as
/// they work on the lab, so two of them never interleave (two `up`s of one lab, a `down` during an `up`). The file
/// says who holds it (`pid command`), for the second caller's message. The kernel drops the lock when its holder
/// dies, so a crash never leaves a lab locked.
///
/// Re-entrant within the process (`check` holds it while `up` and `down` take it again). The last release removes
/// the file of a lab that is not up, while holding the lock; a waiter that locked the removed file notices (its inode is no longer
/// the path's) and tries again.
public final class LabLock: @unchecked Sendable {
    public let lab: String
    private var released = false

    /// Who holds a lock, from its file.
    public struct Holder: Sendable, CustomStringConvertible {
        public var pid: Int32?
        public var command: String
        public var description: String { pid.map { "netlab \(command) (pid \($0))" } ?? "another netlab" }
    }

    private struct Held { var fd: Int32; var count: Int }
    nonisolated(unsafe) private static var held: [String: Held] = [:]
    private static let mutex = NSLock()

    /// Set when the previous holder died holding the lock (killed: a clean release empties the file): what it was.
    public let orphanedBy: Holder?

    private init(lab: String, orphanedBy: Holder? = nil) { self.lab = lab; self.orphanedBy = orphanedBy }

    static func path(lab: String) throws(JournalError) -> String {
        guard LabNames.isLab(lab) else { throw .badLabName(lab) }
        return "\(Journal.directory)/\(lab).lock"
    }

    /// Take the lab's lock. When another process holds it: with `wait`, call `waiting` once with the holder and retry
    /// every 20 ms until it is free (SIGINT/SIGTERM stop the wait: `LabError.interrupted`); without, throw
    /// `LabError.busy`.
    public static func acquire(lab: String, command: String, wait: Bool = true,
                               waiting: ((Holder) -> Void)? = nil) throws -> LabLock {
        let p = try path(lab: lab)
        mutex.lock()
        if var h = held[lab] {
            h.count += 1
            held[lab] = h
            mutex.unlock()
            return LabLock(lab: lab)
        }
        mutex.unlock()
        try Journal.makeDirectory()
        var told = false
        let mark = Interrupts.count
        while true {
            let fd = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw JournalError.io(path: p, String(cString: strerror(errno))) }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                var mine = stat(), now = stat()
                // The file may have been removed (by the holder we waited for) between open and flock.
                if fstat(fd, &mine) == 0, lstat(p, &now) == 0, mine.st_ino == now.st_ino, mine.st_dev == now.st_dev {
                    let previous = readHolder(fd)
                    let text = "\(getpid()) \(command)\n"
                    _ = ftruncate(fd, 0)
                    _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
                    mutex.lock()
                    held[lab] = Held(fd: fd, count: 1)
                    mutex.unlock()
                    return LabLock(lab: lab, orphanedBy: previous.pid == nil ? nil : previous)
                }
                close(fd)
                continue
            }
            let e = errno
            let holder = readHolder(fd)
            close(fd)
            guard e == EWOULDBLOCK else { throw JournalError.io(path: p, String(cString: strerror(e))) }
            guard wait else { throw LabError.busy(lab: lab, holder: holder) }
            if !told { waiting?(holder); told = true }
            if let s = Interrupts.since(mark) { throw LabError.interrupted(signal: s) }
            usleep(20_000)
        }
    }

    private static func readHolder(_ fd: Int32) -> Holder {
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        let text = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
        let words = text.split(separator: " ", maxSplits: 1)
        let pid = words.first.flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let command = words.count > 1 ? words[1].trimmingCharacters(in: .whitespacesAndNewlines) : "?"
        return Holder(pid: pid, command: String(command.unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7f }.map(Character.init)))
    }

    /// Who holds the lab's lock now, or held it when killed: the lock file's line (empty after a clean release).
    public static func lastHolder(lab: String) -> Holder? {
        guard let p = try? path(lab: lab) else { return nil }
        let fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let h = readHolder(fd)
        return h.pid == nil ? nil : h
    }

    /// Whether this process holds the lab's lock.
    public static func isHeld(lab: String) -> Bool {
        mutex.lock(); defer { mutex.unlock() }
        return held[lab] != nil
    }

    /// Give the lock back. The outermost release of a re-entrant lock unlocks; when the lab then has no journal (it
    /// is down, or its `up` failed) the lock file is removed first, while still held, so /run/netlab keeps nothing
    /// for labs that are not up.
    public func release() {
        guard !released else { return }
        released = true
        Self.mutex.lock()
        defer { Self.mutex.unlock() }
        guard var h = Self.held[lab] else { return }
        h.count -= 1
        if h.count > 0 { Self.held[lab] = h; return }
        Self.held[lab] = nil
        if let p = try? Self.path(lab: lab), let j = try? Journal.path(lab: lab), access(j, F_OK) != 0 { unlink(p) }
        _ = ftruncate(h.fd, 0)   // empty: released cleanly (a holder killed leaves its line, see `orphanedBy`)
        close(h.fd)
    }

    deinit { release() }
}

/// Serialises what spans labs (the check that no two labs whose namespace names could clash are up together, and
/// the journal's creation): `flock` on the /run/netlab directory itself, held for a moment.
enum DirectoryLock {
    static func with<T>(_ body: () throws -> T) throws -> T {
        try Journal.makeDirectory()
        let fd = open(Journal.directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw JournalError.io(path: Journal.directory, String(cString: strerror(errno))) }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw JournalError.io(path: Journal.directory, String(cString: strerror(errno))) }
            if let s = Interrupts.signal { throw LabError.interrupted(signal: s) }
        }
        return try body()
    }
}
