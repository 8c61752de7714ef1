import Netlink
import Topology

/// Why a lab operation failed, in the topology's terms.
public enum LabError: Error, CustomStringConvertible {
    /// The kernel refused one object of the file: `lab.topo:14:9: route "..." rejected by the kernel: ...`.
    case rejected(file: String, location: SourceLocation, object: String, error: NetlinkError, hint: String?)
    case alreadyUp(lab: String, journal: Journal)
    case namespaceTaken(lab: String, namespace: String)
    case notUp(lab: String)
    /// Another process holds the lab's lock and the caller chose not to wait.
    case busy(lab: String, holder: LabLock.Holder)
    /// A lab whose namespace names could clash with this one's (`x` and `x-y`: node `y-z` of one and `z` of the other
    /// are both `x-y-z`) is up.
    case nameClash(lab: String, other: String)
    /// The journal cannot be used.
    case journal(JournalError)
    case system(String)
    /// SIGINT or SIGTERM arrived; what was made has been removed.
    case interrupted(signal: Int32)
    /// `netlab set` words that are not a change of this lab (nothing was touched).
    case badChange(TopologyError)
    /// The kernel refused a live change (nothing stays changed).
    case changeRefused(change: String, error: NetlinkError)

    public var description: String {
        switch self {
        case .rejected(let file, let at, let object, let error, let hint):
            var s = "\(file):\(at.line):\(at.column): \(object) rejected by the kernel: \(error.reason)"
            s += "\n   (\(error.operation))"
            if let hint { s += "\n   hint: \(hint)" }
            return s
        case .alreadyUp(let lab, let j):
            return "lab \(lab) is already up (from \(j.file), state \(j.state.rawValue)); run `netlab down \(lab)` first"
        case .namespaceTaken(let lab, let ns):
            return "namespace \(ns) already exists but lab \(lab) has no journal: netlab did not make it and will not touch it; delete it (`ip netns del \(ns)`) or rename the lab"
        case .notUp(let lab):
            return "lab \(lab) is not up (no journal at \(Journal.directory)/\(lab).json)"
        case .busy(let lab, let holder):
            return "lab \(lab) is busy: \(holder) holds its lock (/run/netlab/\(lab).lock)"
        case .nameClash(let lab, let other):
            return "lab \(other) is up, and its namespaces and lab \(lab)'s could share names (\(other)-<node> and \(lab)-<node>); take \(other) down first or rename one of them so neither name followed by '-' starts the other"
        case .journal(let e):
            return e.description
        case .system(let s):
            return s
        case .badChange(let e):
            return e.rendered()
        case .changeRefused(let change, let error):
            return "\(change): rejected by the kernel: \(error.reason)\n   (\(error.operation)); nothing was changed"
        case .interrupted(let sig):
            return "interrupted by \(sig == 2 ? "SIGINT" : sig == 15 ? "SIGTERM" : "signal \(sig)")"
        }
    }
}
