import Netlink
import Topology

/// Why a lab operation failed, in the topology's terms.
public enum LabError: Error, CustomStringConvertible {
    /// The kernel refused one object of the file: `lab.topo:14:9: route "..." rejected by the kernel: ...`.
    case rejected(file: String, location: SourceLocation, object: String, error: NetlinkError, hint: String?)
    case alreadyUp(lab: String, journal: Journal)
    case namespaceTaken(lab: String, namespace: String)
    case notUp(lab: String)
    case system(String)
    /// SIGINT or SIGTERM arrived; what was made has been removed.
    case interrupted(signal: Int32)

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
            return "lab \(lab) is not up (no journal at \(Journal.path(lab: lab)))"
        case .system(let s):
            return s
        case .interrupted(let sig):
            return "interrupted by \(sig == 2 ? "SIGINT" : sig == 15 ? "SIGTERM" : "signal \(sig)")"
        }
    }
}
