import SystemPackage

/// The one table of errno names netlab reports and accepts: errno ⇄ name here, errno → `ConnectResult` in
/// `ConnectResult(errno:)`. Every room names an errno through `Errno.name`.
public enum ErrnoNames {
    /// The names netlab reports and accepts in checks (EAGAIN: the resolver's `fib_lookup` "try the next rule").
    static let byNumber: [Int32: String] = [
        1: "EPERM", 2: "ENOENT", 4: "EINTR", 11: "EAGAIN", 13: "EACCES", 19: "ENODEV", 22: "EINVAL", 32: "EPIPE",
        64: "ENONET", 71: "EPROTO", 90: "EMSGSIZE", 92: "ENOPROTOOPT", 95: "EOPNOTSUPP",
        97: "EAFNOSUPPORT", 98: "EADDRINUSE", 99: "EADDRNOTAVAIL", 101: "ENETUNREACH",
        103: "ECONNABORTED", 104: "ECONNRESET", 106: "EISCONN", 110: "ETIMEDOUT",
        111: "ECONNREFUSED", 112: "EHOSTDOWN", 113: "EHOSTUNREACH", 114: "EALREADY", 115: "EINPROGRESS",
    ]
    static let byName = Dictionary(byNumber.map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
}

extension Errno {
    /// The symbolic name (`ECONNREFUSED`), or `errno N` for one netlab does not name.
    public var name: String { ErrnoNames.byNumber[rawValue] ?? "errno \(rawValue)" }

    /// The errno for a name (`ECONNREFUSED` → 111, any case), for checks written by users.
    public init?(named n: String) {
        guard let v = ErrnoNames.byName[n.uppercased()] else { return nil }
        self.init(rawValue: v)
    }
}
