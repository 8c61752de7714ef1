import Glibc
import SystemPackage

/// Reads and writes /proc/sys/net. /proc/sys/net resolves against the calling task's network namespace, so callers
/// run these on a namespace's dedicated thread (`NetworkNamespace.run`).
public enum Sysctls {
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
