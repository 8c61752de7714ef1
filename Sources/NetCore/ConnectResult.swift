import SystemPackage

/// The outcome of a connect, as checks name it: what a topology's check expects and what the driver saw.
public enum ConnectResult: Sendable, Hashable, CustomStringConvertible {
    case established, refused, timeout, unreachable
    /// Any other errno, by name (`EINVAL`); also a specific unreachable (`EHOSTUNREACH`).
    case error(String)

    /// The outcome of a connect that returned this errno (nil: the connect completed). The one errno → kind mapping.
    public init(errno: Errno?) {
        switch errno {
        case nil: self = .established
        case .connectionRefused?: self = .refused
        case .timedOut?: self = .timeout
        case .networkUnreachable?, .noRouteToHost?: self = .unreachable
        case let e?: self = .error(e.name)
        }
    }

    /// The outcome for an errno name (nil: the connect completed); a name netlab does not know is `.error(name)`.
    public init(errnoName: String?) {
        guard let n = errnoName else { self = .established; return }
        if let e = Errno(named: n), e.name == n { self.init(errno: e) } else { self = .error(n) }
    }

    /// Parse `established`, `refused`, `timeout`, `unreachable` or `error:ENAME`.
    public init?(_ text: String) {
        switch text {
        case "established": self = .established
        case "refused": self = .refused
        case "timeout": self = .timeout
        case "unreachable": self = .unreachable
        default:
            guard text.hasPrefix("error:") else { return nil }
            let n = String(text.dropFirst(6)).uppercased()
            guard n.hasPrefix("E"), n.count > 1, n.allSatisfy({ $0.isLetter }) else { return nil }
            self = .error(n)
        }
    }

    /// The outcome's kind as reports print it: `established`, `refused`, `timeout`, `unreachable` or `error`.
    public var kind: String {
        if case .error = self { return "error" }
        return description
    }

    public var description: String {
        switch self {
        case .established: "established"
        case .refused: "refused"
        case .timeout: "timeout"
        case .unreachable: "unreachable"
        case .error(let n): "error:\(n)"
        }
    }

    /// Whether an observed outcome (with its errno name) satisfies this expectation: `error:EHOSTUNREACH` is met by
    /// an unreachable outcome with that errno, `unreachable` by ENETUNREACH or EHOSTUNREACH.
    public func isMet(by observed: ConnectResult, errno: String?) -> Bool {
        if case .error(let want) = self { return errno == want }
        return self == observed
    }
}
