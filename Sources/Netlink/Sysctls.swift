import Glibc
import SystemPackage

/// Reads and writes /proc/sys/net inside a namespace. /proc/sys/net resolves against the opening task's network
/// namespace, so the files are opened on the namespace's dedicated thread.
public enum Sysctls {
    /// `sysctl -w KEY=VALUE` for each pair, in order, inside `namespace`. Throws for the first that fails.
    public static func set(_ pairs: [(key: String, value: String)], in namespace: NetworkNamespace) throws {
        try namespace.run {
            for (key, value) in pairs { try write(key, value) }
        }
    }

    /// `sysctl -n KEY` inside `namespace`.
    public static func get(_ key: String, in namespace: NetworkNamespace) throws -> String {
        try namespace.run { try read(key) }
    }

    /// `net.ipv4.ip_forward` or `net/ipv4/conf/eth0.100/rp_filter` (slashes when a part holds a dot, as sysctl(8) allows).
    static func path(_ key: String) -> String {
        "/proc/sys/" + (key.contains("/") ? key : key.split(separator: ".").joined(separator: "/"))
    }

    /// Write in the calling thread's namespace.
    public static func write(_ key: String, _ value: String) throws(NetlinkError) {
        let p = path(key)
        let fd = open(p, O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw NetlinkError(operation: "sysctl -w \(key)=\(value)", errno: Errno(rawValue: Glibc.errno)) }
        defer { close(fd) }
        let text = value + "\n"
        let n = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        if n < 0 { throw NetlinkError(operation: "sysctl -w \(key)=\(value)", errno: Errno(rawValue: Glibc.errno)) }
    }

    /// Read in the calling thread's namespace.
    public static func read(_ key: String) throws(NetlinkError) -> String {
        let p = path(key)
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw NetlinkError(operation: "sysctl -n \(key)", errno: Errno(rawValue: Glibc.errno)) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = Glibc.read(fd, &buf, buf.count)
        if n < 0 { throw NetlinkError(operation: "sysctl -n \(key)", errno: Errno(rawValue: Glibc.errno)) }
        return String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

private extension String {
    func trimmingCharacters(in _: Whitespace) -> String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
    enum Whitespace { case whitespacesAndNewlines }
}
