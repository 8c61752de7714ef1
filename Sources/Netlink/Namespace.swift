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

    public var exists: Bool { access(path, F_OK) == 0 }

    /// `ip netns add NAME`: make /run/netns a shared mount, create the file exclusively, then on a dedicated thread
    /// unshare a new network namespace and bind-mount it there. On failure nothing is left behind.
    public static func create(named name: String) throws(NetlinkError) -> NetworkNamespace {
        let r: Result<NetworkNamespace, NetlinkError> = DedicatedThread.run { Result { () throws(NetlinkError) in try createHere(named: name) } }
        return try r.get()
    }

    /// Create the namespace from the calling thread, which is left inside it: for dedicated threads only (see
    /// `DedicatedThread`), so the caller can open sockets or write sysctls there before the thread ends.
    public static func createHere(named name: String) throws(NetlinkError) -> NetworkNamespace {
        let ns = NetworkNamespace(named: name)
        let op = "ip netns add \(name)"
        try prepareDirectory()
        let fd = Glibc.open(ns.path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0)
        if fd < 0 {
            let e = Errno(rawValue: Glibc.errno)
            throw NetlinkError(operation: op, errno: e,
                               kernelMessage: e == .fileExists ? "namespace \(name) already exists" : nil)
        }
        close(fd)
        if netsys_unshare_net() != 0 {
            let e = Errno(rawValue: Glibc.errno)
            unlink(ns.path)
            throw NetlinkError(operation: op + " (unshare)", errno: e)
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
    public static func delete(named name: String) throws(NetlinkError) {
        let path = "\(directory)/\(name)"
        if netsys_umount_detach(path) != 0 {
            let e = Errno(rawValue: Glibc.errno)
            if e == .noSuchFileOrDirectory { return }
            // EINVAL: not a mount point (a crash between creating the file and mounting it): just remove the file.
            if e != .invalidArgument { throw NetlinkError(operation: "ip netns del \(name) (umount)", errno: e) }
        }
        if unlink(path) != 0 && Glibc.errno != ENOENT {
            throw NetlinkError(operation: "ip netns del \(name) (unlink)", errno: Errno(rawValue: Glibc.errno))
        }
    }

    /// An fd on the namespace, for IFLA_NET_NS_FD and setns. The caller closes it.
    public func open() throws(NetlinkError) -> FileDescriptor {
        let p = path
        let fd = try syscall("open \(p)") { Glibc.open(p, O_RDONLY | O_CLOEXEC) }
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
