import Driver
import Engine
import NetCore

/// One side of a comparison as reports print it (`netlab connect --json`: `engine` and `kernel`), built from the
/// typed outcome at the edge; snake_case keys in JSON, as every key netlab writes.
public struct SideReport: Codable, Sendable, Equatable {
    public var source: String?
    public var sport: UInt16?
    public var dev: String?
    /// The next hop the SYN was sent to (`via` as in the topology file).
    public var via: String?
    public var path: [String]
    public var replyPath: [String]
    /// established, refused, timeout, unreachable, or error.
    public var result: String
    public var errno: String?
    public var syn: SynSummary?
    public var reply: String?
    public var handshakeMs: Double?
    public var echoed: String?
    public var hops: [String]
    public var replyHops: [String]
    public var trace: [String]
    /// The TIME_WAIT socket this side's connect took over (`tcp_twsk_unique`), if any.
    public var timeWait: String?
    /// SYNs on the wire (1 + retransmissions).
    public var syns: Int?

    enum CodingKeys: String, CodingKey {
        case source, sport, dev, via, path, replyPath = "reply_path", result, errno, syn, reply, handshakeMs = "handshake_ms",
             echoed, hops, replyHops = "reply_hops", trace, timeWait = "time_wait", syns
    }

    public init(_ o: ConnectOutcome) {
        let obs = o.observed
        source = o.source.map(\.description); sport = o.sourcePort; dev = o.device; via = o.nextHop?.description
        path = obs?.path ?? []; replyPath = obs?.replyPath ?? []; result = o.result.kind; errno = o.errno?.name
        syn = obs?.syn; reply = obs?.reply; handshakeMs = o.handshakeNanoseconds.map { Double($0) / 1e6 }
        echoed = o.echoed.map { String(decoding: $0, as: UTF8.self) }
        hops = obs?.synHops ?? []; replyHops = obs?.replyHops ?? []; trace = o.trace
        timeWait = o.reusedTimeWait.map { tw in
            "took over TIME_WAIT \(tw.tuple.source):\(tw.tuple.sourcePort) → \(tw.tuple.destination):\(tw.tuple.destinationPort)" +
                (tw.sndNxt.map { " (tw_snd_nxt \($0))" } ?? " (tw_snd_nxt not watched)")
        }
        syns = obs.map(\.synsSent)
    }
}

/// A comparison as `netlab connect --json` prints it and the Swift API returns it.
public struct ConnectComparison: Codable, Sendable {
    public var engine: SideReport
    public var kernel: SideReport?
    public var differences: [String]
    public var agree: Bool
    /// Notes that are not differences (an equal-cost leg the kernel's hash chose).
    public var notes: [String]

    public init(_ v: ConnectVerdict) {
        engine = SideReport(v.engine)
        kernel = v.kernel.map(SideReport.init)
        differences = v.differences.map(\.description)
        agree = v.agree
        notes = v.notes.map(\.description)
    }
}
