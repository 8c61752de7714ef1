/// A point in the engine's time, in nanoseconds since an arbitrary origin chosen by the driver. The engine reads no
/// clock: every call receives `now`.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64
    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func seconds(_ s: Double) -> Instant { Instant(nanoseconds: Int64(s * 1e9)) }
    public static func milliseconds(_ ms: Int64) -> Instant { Instant(nanoseconds: ms * 1_000_000) }
    public static let zero = Instant(nanoseconds: 0)
    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Instant, ns: Int64) -> Instant { Instant(nanoseconds: a.nanoseconds + ns) }
    public static func - (a: Instant, b: Instant) -> Int64 { a.nanoseconds - b.nanoseconds }
    public var milliseconds: Int64 { nanoseconds / 1_000_000 }
    public var seconds: Double { Double(nanoseconds) / 1e9 }
    public var description: String {
        let s = seconds
        return s == s.rounded() ? "\(Int64(s))s" : String(format3(s)) + "s"
    }
}

func format3(_ x: Double) -> String {
    let v = (x * 1000).rounded() / 1000
    return "\(v)"
}

public let nsPerSecond: Int64 = 1_000_000_000
public let nsPerMillisecond: Int64 = 1_000_000
