import CNetSys

/// Ctrl-C and SIGTERM as a flag that long operations check between steps, so they can undo their work and stop.
public enum Interrupts {
    /// Record SIGINT/SIGTERM instead of dying on them.
    public static func trap() { netsys_trap_interrupts() }
    /// The signal that arrived, or nil.
    public static var signal: Int32? { let s = netsys_interrupted(); return s == 0 ? nil : s }
}
