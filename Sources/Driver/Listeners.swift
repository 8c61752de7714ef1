import CNetSys
import Glibc
import Netlink

/// Kernel TCP listeners for a lab's `listen:` ports: each a socket in its node's namespace bound to 0.0.0.0:PORT,
/// served by one thread that accepts and echoes whatever arrives until the peer closes. `stop()` (or deinit)
/// closes them all; a port nobody listens on is answered by the kernel with RST, as on any host.
public final class Listeners: @unchecked Sendable {
    public struct Endpoint: Sendable, Hashable { public var namespace: String; public var port: UInt16 }
    public private(set) var endpoints: [Endpoint] = []
    private var listenFDs: [Int32] = []
    private var wake: [Int32] = [-1, -1]
    private var thread: pthread_t?

    public init(_ wanted: [(namespace: NetworkNamespace, port: UInt16)]) throws {
        guard netsys_pipe2(&wake, O_CLOEXEC | O_NONBLOCK) == 0 else {
            throw DriverError(operation: "pipe2", errno: .init(rawValue: Glibc.errno))
        }
        do {
            for (ns, port) in wanted {
                let fd = try ns.run { () throws -> Int32 in
                    let fd = try sys("socket(AF_INET, SOCK_STREAM) in \(ns.name)") {
                        socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                    }
                    do {
                        try setOption(fd, SOL_SOCKET, SO_REUSEADDR, Int32(1), "SO_REUSEADDR")
                        var a = sockaddrIn(0, port)
                        try sys("bind 0.0.0.0:\(port) in \(ns.name)") {
                            withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
                        }
                        try sys("listen :\(port) in \(ns.name)") { listen(fd, 128) }
                    } catch { close(fd); throw error }
                    return fd
                }
                listenFDs.append(fd)
                endpoints.append(Endpoint(namespace: ns.name, port: port))
            }
        } catch {
            // Closed once: deinit runs after a throw from a fully initialised class, and `stop()` closes only what
            // is still recorded.
            stop()
            throw error
        }
        if !listenFDs.isEmpty { start() }
    }

    deinit { stop() }

    /// Close every listener and connection, and end the thread.
    public func stop() {
        if let t = thread {
            var b: UInt8 = 1
            _ = write(wake[1], &b, 1)
            pthread_join(t, nil)
            thread = nil
        }
        for fd in listenFDs { close(fd) }
        listenFDs = []
        if wake[0] >= 0 { close(wake[0]); close(wake[1]); wake = [-1, -1] }
    }

    private func start() {
        let box = Unmanaged.passRetained(ServeLoop(listeners: listenFDs, wake: wake[0]))
        var t = pthread_t()
        pthread_create(&t, nil, { raw in
            let loop = Unmanaged<ServeLoop>.fromOpaque(raw!).takeRetainedValue()
            loop.run()
            return nil
        }, box.toOpaque())
        thread = t
    }
}

/// The echo loop: poll the listeners, the accepted connections and the wake pipe.
private final class ServeLoop: @unchecked Sendable {
    let listeners: [Int32]
    let wake: Int32
    var connections: [Int32] = []
    init(listeners: [Int32], wake: Int32) { self.listeners = listeners; self.wake = wake }

    func run() {
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            var fds = [pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            fds += listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            fds += connections.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let polled = connections
            let n = poll(&fds, nfds_t(fds.count), -1)
            if n < 0 { if errno == EINTR { continue }; break }
            if fds[0].revents != 0 { break }
            for i in 0..<listeners.count where fds[1 + i].revents != 0 {
                while true {
                    let c = netsys_accept4(listeners[i], Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
                    if c < 0 { break }
                    connections.append(c)
                }
            }
            var closed: Set<Int32> = []
            for (k, c) in polled.enumerated() where fds[1 + listeners.count + k].revents != 0 {
                let r = read(c, &buf, buf.count)
                if r > 0 {
                    var off = 0
                    while off < r {
                        let w = buf.withUnsafeBytes { write(c, $0.baseAddress! + off, r - off) }
                        if w <= 0 { break }
                        off += w
                    }
                } else if r == 0 || (errno != EAGAIN && errno != EINTR) {
                    close(c)
                    closed.insert(c)
                }
            }
            if !closed.isEmpty { connections.removeAll { closed.contains($0) } }
        }
        for c in connections { close(c) }
    }
}
