/// A point in the engine's time, in nanoseconds since an arbitrary origin chosen by the driver. The engine reads no
/// clock: every call receives `now`.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func seconds(_ s: Double) -> Instant { Instant(nanoseconds: Int64(s * 1e9)) }
    public static func milliseconds(_ ms: Int64) -> Instant { Instant(nanoseconds: ms * 1_000_000) }
    public static let zero = Instant(nanoseconds: 0)
    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Instant, d: Duration) -> Instant { Instant(nanoseconds: a.nanoseconds + d.inNanoseconds) }
    /// The time from `b` to `a`.
    public static func - (a: Instant, b: Instant) -> Duration { .nanoseconds(a.nanoseconds - b.nanoseconds) }
    public var milliseconds: Int64 { nanoseconds / 1_000_000 }
    public var seconds: Double { Double(nanoseconds) / 1e9 }
    public var description: String {
        let s = seconds
        return s == s.rounded() ? "\(Int64(s))s" : String(format3(s)) + "s"
    }
}

/// Durations are the standard library's `Duration` (a distinct type from `Instant`: an RTO cannot be passed where
/// a deadline is meant); the engine counts them in whole nanoseconds.
extension Duration {
    /// The duration in whole nanoseconds (truncated).
    public var inNanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
    /// As traces print it: `1s`, `0.2s`, `1.234s`.
    public var traceDescription: String { Instant(nanoseconds: inNanoseconds).description }
}

func format3(_ x: Double) -> String {
    let v = (x * 1000).rounded() / 1000
    return "\(v)"
}

