import CNetSys

/// Ctrl-C and SIGTERM as a flag that long operations check between steps, so they can undo their work and stop.
public enum Interrupts {
    /// Record SIGINT/SIGTERM instead of dying on them.
    public static func trap() { netsys_trap_interrupts() }
    /// The signal that arrived, or nil.
    public static var signal: Int32? { let s = netsys_interrupted(); return s == 0 ? nil : s }
    /// How many signals arrived so far: work that starts as cleanup after an interrupt (a `down` after Ctrl-C)
    /// takes a mark and stops only for a signal that arrives after it (`since(_:)`).
    public static var count: Int32 { netsys_interrupt_count() }
    /// The signal, if one arrived after `mark` was taken from `count`.
    public static func since(_ mark: Int32) -> Int32? { count > mark ? signal : nil }
}
