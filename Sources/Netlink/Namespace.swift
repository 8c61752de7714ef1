import CNetSys
import Glibc
import SystemPackage

/// A named network namespace, pinned the way iproute2 pins it: a bind mount of the namespace file on
/// `/run/netns/NAME`, so `ip -n NAME` and `ip netns exec NAME` work on it.
public struct NetworkNamespace: Sendable, Hashable {
    public static let directory = "/run/netns"
    public let name: String
    public var path: String { "\(Self.directory)/\(name)" }

    public init(named name: String) { self.name = name }

    /// Names of all pinned namespaces (`ip netns list`).
    public static func list() -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Whether `name` can name a pinned namespace: one path component under /run/netns (1-255 bytes, no `/`, no NUL,
    /// not `.` or `..`). Every name that reaches a path goes through this, whoever gave it (a file, a journal, a flag).
    public static func isValidName(_ name: String) -> Bool {
        let u = name.utf8
        return !u.isEmpty && u.count <= 255 && name != "." && name != ".." && !u.contains(0x2F) && !u.contains(0)
    }

    /// Throws unless `isValidName(name)`.
    public static func validate(_ name: String) throws(NetlinkError) {
        guard isValidName(name) else {
            throw NetlinkError(operation: "namespace name \"\(name.debugDescription.dropFirst().dropLast())\"", errno: .invalidArgument,
                               kernelMessage: "not a namespace name: use one file name under \(directory) (no '/', not '.' or '..')")
        }
    }

    public var exists: Bool {
        guard Self.isValidName(name) else { return false }
        var st = stat()
        return fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// Which namespace this is, as the kernel names it: the nsfs device and inode behind the pinned file (what
    /// `stat /run/netns/NAME` and `readlink /proc/PID/ns/net` show). Nil when nothing is pinned under the name, or
    /// when the file is not a namespace (a placeholder left by a crash between creating the file and mounting).
    public var identity: Identity? {
        guard Self.isValidName(name) else { return nil }
        var st = stat()
        guard fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
        var root = stat()
        // A pinned namespace is a bind mount from nsfs, so its device differs from the directory's (tmpfs).
        guard stat(Self.directory, &root) == 0, st.st_dev != root.st_dev else { return nil }
        return Identity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The text of the file pinned under the name when it is not a namespace (an unmounted placeholder): what
    /// `createHere(mark:)` wrote into it; nil when it is a namespace, missing, not a small regular file, or a symlink.
    public var placeholderText: String? {
        guard Self.isValidName(name), identity == nil else { return nil }
        let fd = Glibc.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0, st.st_size <= 512 else { return nil }
        var buf = [UInt8](repeating: 0, count: Int(st.st_size))
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        return n == buf.count ? String(decoding: buf, as: UTF8.self) : nil
    }

    /// The nsfs device and inode of a network namespace: equal for every file that refers to the same namespace.
    public struct Identity: Sendable, Hashable, Codable {
        public var device: UInt64
        public var inode: UInt64
        public init(device: UInt64, inode: UInt64) { self.device = device; self.inode = inode }
    }

    /// `ip netns add NAME`: make /run/netns a shared mount, create the file exclusively, then on a dedicated thread
    /// unshare a new network namespace and bind-mount it there. On failure nothing is left behind.
    public static func create(named name: String) throws(NetlinkError) -> NetworkNamespace {
        let r: Result<NetworkNamespace, NetlinkError> = DedicatedThread.run { Result { () throws(NetlinkError) in try createHere(named: name) } }
        return try r.get()
    }

    /// Create the namespace from the calling thread, which is left inside it: for dedicated threads only (see
    /// `DedicatedThread`), so the caller can open sockets or write sysctls there before the thread ends.
    /// `prepare` runs inside the new namespace before it is pinned (netlab marks its namespaces there, so that a
    /// namespace found under the name always carries the mark); if it throws, nothing is pinned.
    ///
    /// `mark`, when given, is written into the file before the namespace is mounted over it: a file found unmounted
    /// under the name (the creator was killed in between) then says who made it (`placeholderText`).
    public static func createHere(named name: String, mark: String? = nil,
                                  prepare: (() throws(NetlinkError) -> Void)? = nil) throws(NetlinkError) -> NetworkNamespace {
        try validate(name)
        let ns = NetworkNamespace(named: name)
        let op = "ip netns add \(name)"
        try prepareDirectory()
        // The placeholder the namespace is mounted on: created exclusively (EEXIST when the name is taken), with the
        // mark inside from its first instant, so a creator killed at any point leaves either nothing or a file that
        // says it is netlab's.
        if netsys_create_with_text(directory, name, mark ?? "") != 0 {
            let e = Errno(rawValue: Glibc.errno)
            throw NetlinkError(operation: op, errno: e,
                               kernelMessage: e == .fileExists ? "namespace \(name) already exists" : nil)
        }
        if netsys_unshare_net() != 0 {
            let e = Errno(rawValue: Glibc.errno)
            unlink(ns.path)
            throw NetlinkError(operation: op + " (unshare)", errno: e)
        }
        if let prepare {
            do { try prepare() } catch {
                unlink(ns.path)
                throw error
            }
        }
        if netsys_bind_mount("/proc/thread-self/ns/net", ns.path) != 0 {
            let e = Errno(rawValue: Glibc.errno)
            unlink(ns.path)
            throw NetlinkError(operation: op + " (mount --bind)", errno: e)
        }
        return ns
    }

    nonisolated(unsafe) private static var directoryReady = false
    private static let directoryLock = NSLockLike()

    private static func prepareDirectory() throws(NetlinkError) {
        directoryLock.lock()
        defer { directoryLock.unlock() }
        if directoryReady { return }
        if mkdir("/run", 0o755) != 0 && Glibc.errno != EEXIST { throw NetlinkError(operation: "mkdir /run", errno: Errno(rawValue: Glibc.errno)) }
        if mkdir(directory, 0o755) != 0 && Glibc.errno != EEXIST {
            throw NetlinkError(operation: "mkdir \(directory)", errno: Errno(rawValue: Glibc.errno))
        }
        if netsys_make_rshared(directory) != 0 {
            throw NetlinkError(operation: "mount --make-rshared \(directory)", errno: Errno(rawValue: Glibc.errno))
        }
        directoryReady = true
    }

    /// `ip netns del NAME`: detach the bind mount and remove the file. The kernel frees the namespace, and every
    /// device, address, route and rule in it, once nothing else holds it. Deleting a missing namespace is not an error.
    ///
    /// With `expecting`, only the namespace with that identity is deleted: if the name now pins another namespace
    /// (or a file that is not one), nothing is touched and `false` is returned.
    @discardableResult
    public static func delete(named name: String, expecting: Identity? = nil) throws(NetlinkError) -> Bool {
        try validate(name)
        let ns = NetworkNamespace(named: name)
        if let expecting, ns.identity != expecting { return false }
        let path = ns.path
        if netsys_umount_detach(path) != 0 {
            let e = Errno(rawValue: Glibc.errno)
            if e == .noSuchFileOrDirectory { return true }
            // EINVAL: not a mount point (a crash between creating the file and mounting it): just remove the file.
            if e != .invalidArgument { throw NetlinkError(operation: "ip netns del \(name) (umount)", errno: e) }
        }
        if unlink(path) != 0 && Glibc.errno != ENOENT {
            throw NetlinkError(operation: "ip netns del \(name) (unlink)", errno: Errno(rawValue: Glibc.errno))
        }
        return true
    }

    /// An fd on the namespace, for IFLA_NET_NS_FD and setns. The caller closes it.
    public func open() throws(NetlinkError) -> FileDescriptor {
        try Self.validate(name)
        let p = path
        let fd = try syscall("open \(p)") { Glibc.open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        return FileDescriptor(rawValue: fd)
    }

    /// Run `body` on a dedicated thread inside this namespace and return what it made (typically file descriptors,
    /// which keep their namespace). The caller's thread, and the concurrency pool, never change namespace.
    public func run<T>(_ body: () throws -> T) throws -> T {
        let fd = try open()
        defer { try? fd.close() }
        let name = self.name
        return try withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            let r: Result<T, Error> = DedicatedThread.run {
                if netsys_setns_net(fd.rawValue) != 0 {
                    return .failure(NetlinkError(operation: "setns \(name)", errno: Errno(rawValue: Glibc.errno)))
                }
                return Result { try box.value() }
            }
            return try r.get()
        }
    }
}

struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A pthread mutex (the Netlink room does not import Foundation).
final class NSLockLike: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func lock() { pthread_mutex_lock(&m) }
    func unlock() { pthread_mutex_unlock(&m) }
}

/// Runs a closure on a fresh pthread and waits for it. The thread ends with the closure, so a namespace it entered
/// dies with it.
public enum DedicatedThread {
    private final class Job: @unchecked Sendable {
        let work: () -> Void
        init(_ work: @escaping () -> Void) { self.work = work }
    }

    /// Run `body(i)` for i in 0..<count on `threads` fresh pthreads (each takes every `threads`-th index), and wait.
    /// Each thread ends when its share is done, taking whatever namespace it entered with it.
    public static func forEach(_ count: Int, threads: Int, _ body: (Int) -> Void) {
        let t = max(1, min(threads, count))
        withoutActuallyEscaping(body) { body in
            let b = UncheckedBox(body)
            var handles: [pthread_t] = []
            for w in 0..<t {
                let job = Job { var i = w; while i < count { b.value(i); i += t } }
                let arg = Unmanaged.passRetained(job).toOpaque()
                var thread = pthread_t()
                let rc = pthread_create(&thread, nil, { raw in
                    Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue().work()
                    return nil
                }, arg)
                precondition(rc == 0, "pthread_create failed: \(rc)")
                handles.append(thread)
            }
            for h in handles { pthread_join(h, nil) }
        }
    }

    static func run<T>(_ body: () -> T) -> T {
        withoutActuallyEscaping(body) { body in
            var result: T?
            withUnsafeMutablePointer(to: &result) { slot in
                let slotBox = UncheckedBox(slot)
                let job = Job { slotBox.value.pointee = body() }
                let arg = Unmanaged.passRetained(job).toOpaque()
                var thread = pthread_t()
                let rc = pthread_create(&thread, nil, { raw in
                    let job = Unmanaged<Job>.fromOpaque(raw!).takeRetainedValue()
                    job.work()
                    return nil
                }, arg)
                precondition(rc == 0, "pthread_create failed: \(rc)")
                pthread_join(thread, nil)
            }
            return result!
        }
    }
}
