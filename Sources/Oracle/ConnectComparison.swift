import Driver
import Engine
import NetCore
import SystemPackage

// Engine against kernel, decided on typed values: two outcomes of the same connect in, the differences out. Pure (no
// Foundation, no Glibc): the run that produces the outcomes is `ConnectRun`, the JSON and text are built from the
// verdict at the edge (`ConnectComparison`, `SideReport`, `Difference.description`).

/// One field on which the engine and the kernel (or the engine and its own packets) differ, with both values.
public enum Difference: Sendable, Equatable, CustomStringConvertible {
    /// The engine decided one device but its SYN left by another.
    case engineDeviceNotOnWire(decided: String, wire: String)
    /// The engine decided one next hop but its SYN went to another's MAC.
    case engineNextHopNotOnWire(decided: IPv4Address, wire: IPv4Address)
    case result(engine: ConnectResult, kernel: ConnectResult)
    case errno(engine: Errno?, kernel: Errno?)
    case source(engine: IPv4Address, kernel: IPv4Address)
    case device(engine: String?, kernel: String?)
    case nextHop(engine: IPv4Address?, kernel: IPv4Address?)
    case path(engine: [String], kernel: [String])
    case replyPath(engine: [String], kernel: [String])
    /// One side sent no SYN (`engineSent`: which one did).
    case synSentByOneSide(engineSent: Bool)
    case syn(SynField)
    /// On the same 4-tuple: whether each side took the TIME_WAIT there over.
    case timeWaitTakenOver(engine: Bool, kernel: Bool)
    /// Both connected, one after more SYNs than the other.
    case synsSent(engine: Int?, kernel: Int?)
    case echoed(engine: [UInt8]?, kernel: [UInt8]?)

    /// A field of the first SYN, with both sides' values.
    public enum SynField: Sendable, Equatable {
        case options(engine: [String], kernel: [String])
        case mss(engine: Int?, kernel: Int?)
        case window(engine: Int, kernel: Int)
        case windowScale(engine: Int?, kernel: Int?)
        case ttl(engine: Int, kernel: Int)
        case df(engine: Bool, kernel: Bool)
        case tos(engine: Int, kernel: Int)
        case ipOptions(engine: [String], kernel: [String])
        case flags(engine: String, kernel: String)
        case tsEcho(engine: UInt32?, kernel: UInt32?)
        /// A TIME_WAIT taken over fixes the ISN: tw_snd_nxt + 65535 + 2.
        case seqAfterTimeWait(engine: UInt32, kernel: UInt32)
    }

    /// `field: engine A, kernel B` (`-` for none), as reports have always printed it.
    public var description: String {
        func pair<T>(_ field: String, _ a: T?, _ b: T?) -> String {
            "\(field): engine \(a.map { "\($0)" } ?? "-"), kernel \(b.map { "\($0)" } ?? "-")"
        }
        switch self {
        case .engineDeviceNotOnWire(let d, let w): return "engine decided dev \(d) but its SYN left by \(w)"
        case .engineNextHopNotOnWire(let d, let w): return "engine decided next hop \(d) but its SYN went to \(w)"
        case .result(let a, let b): return pair("result", a.kind, b.kind)
        case .errno(let a, let b): return pair("errno", a?.name, b?.name)
        case .source(let a, let b): return pair("source", a.description, b.description)
        case .device(let a, let b): return pair("dev", a, b)
        case .nextHop(let a, let b): return pair("via", a?.description, b?.description)
        case .path(let a, let b): return "path: engine \(a), kernel \(b)"
        case .replyPath(let a, let b): return "reply_path: engine \(a), kernel \(b)"
        case .synSentByOneSide(let engineSent): return "syn: \(engineSent ? "kernel sent none" : "engine sent none")"
        case .timeWaitTakenOver(let a, let b):
            return pair("time_wait", a ? "taken over" : "not taken over", b ? "taken over" : "not taken over")
        case .synsSent(let a, let b): return pair("syns sent", a, b)
        case .echoed(let a, let b):
            return pair("echoed", a.map { String(decoding: $0, as: UTF8.self) }, b.map { String(decoding: $0, as: UTF8.self) })
        case .syn(let f):
            switch f {
            case .options(let a, let b): return pair("syn options", a, b)
            case .mss(let a, let b): return pair("syn mss", a, b)
            case .window(let a, let b): return pair("syn window", a, b)
            case .windowScale(let a, let b): return pair("syn window_scale", a, b)
            case .ttl(let a, let b): return pair("syn ttl", a, b)
            case .df(let a, let b): return pair("syn df", a, b)
            case .tos(let a, let b): return pair("syn tos", a, b)
            case .ipOptions(let a, let b): return pair("syn ip_options", a, b)
            case .flags(let a, let b): return pair("syn flags", a, b)
            case .tsEcho(let a, let b): return pair("syn ts echo", a, b)
            case .seqAfterTimeWait(let a, let b): return pair("syn seq (tw_snd_nxt + 65537)", a, b)
            }
        }
    }
}

/// What a comparison remarks that is not a difference.
public indirect enum ComparisonNote: Sendable, Equatable, CustomStringConvertible {
    /// The kernel's multipath hash chose another equal-cost leg, one the engine's lookups allow.
    case kernelTookOtherLeg(source: IPv4Address?, device: String, nextHop: IPv4Address)
    /// The TIME_WAIT taken over was there before this session watched it: its ISN and TS echo are unknown.
    case timeWaitNotWatched
    /// A note of the first comparison, after which the engine ran again on the kernel's leg.
    case engineRanAgainOnLeg(ComparisonNote)
    /// tcp_twsk_unique's answer for a TIME_WAIT changed between the runs: the engine ran again on the kernel's state.
    case timeWaitChanged(destination: IPv4Address, port: UInt16)
    /// ... three times: compared as they were.
    case timeWaitKeptChanging(destination: IPv4Address, port: UInt16)
    /// The first comparison differed by an ICMP error while the routers' rate-limit buckets were not known full:
    /// both ran again once they were.
    case icmpRerun(firstDifferences: [Difference])

    public var description: String {
        switch self {
        case .kernelTookOtherLeg(let s, let d, let n):
            return "the kernel's hash chose another equal-cost leg (src \(s?.description ?? "-") dev \(d) via \(n)); the engine allows it"
        case .timeWaitNotWatched:
            return "the TIME_WAIT the connect took over left before this session watched it: ISN and TS echo not compared"
        case .engineRanAgainOnLeg(let n): return "\(n); the engine ran again on that leg"
        case .timeWaitChanged(let d, let p):
            return "a TIME_WAIT to \(d):\(p) changed tcp_twsk_unique's answer after the engine's run (tcp_tw_reuse_delay passed or it expired): the engine ran again on the kernel's state"
        case .timeWaitKeptChanging(let d, let p):
            return "TIME_WAIT sockets to \(d):\(p) changed between the runs (tcp_tw_reuse_delay passed or expired) three times; compared as they were"
        case .icmpRerun(let first):
            return "first comparison differed by an ICMP error (\(first.map(\.description).joined(separator: "; "))); the routers' ICMP rate-limit buckets were not known full, so both ran again once they were"
        }
    }

    /// Whether the runs were repeated or qualified for state the lab shares between them (TIME_WAIT sockets, ICMP
    /// rate-limit buckets).
    public var isAboutSharedState: Bool {
        switch self {
        case .kernelTookOtherLeg: false
        case .timeWaitNotWatched, .timeWaitChanged, .timeWaitKeptChanging, .icmpRerun: true
        case .engineRanAgainOnLeg(let n): n.isAboutSharedState
        }
    }
}

/// The engine's and (optionally) the kernel's connect, and what the comparison found.
public struct ConnectVerdict: Sendable {
    public var engine: ConnectOutcome
    public var kernel: ConnectOutcome?
    public var differences: [Difference]
    public var notes: [ComparisonNote]
    /// The kernel took another equal-cost leg than the engine, one the engine's lookups allow.
    public var otherLeg: Bool
    public var agree: Bool { differences.isEmpty }

    public init(engine: ConnectOutcome, kernel: ConnectOutcome?, differences: [Difference] = [], notes: [ComparisonNote] = [],
                otherLeg: Bool = false) {
        self.engine = engine; self.kernel = kernel; self.differences = differences; self.notes = notes; self.otherLeg = otherLeg
    }
}

extension ConnectOutcome {
    /// The outcome as checks classify it.
    public var result: ConnectResult { ConnectResult(errno: errno) }
    /// Whether the reply the wire showed was an ICMP error.
    public var repliedWithICMP: Bool { observed?.reply?.hasPrefix("ICMP") == true }
}

public enum Oracle {
    /// Compare the engine's connect with the kernel's, field by field. Without a kernel outcome, only the engine's own
    /// packets are checked against its decision.
    public static func compare(engine e: ConnectOutcome, kernel k: ConnectOutcome?) -> ConnectVerdict {
        var diffs: [Difference] = []
        var notes: [ComparisonNote] = []
        // The engine's own packets must leave where it decided.
        if let wire = e.observed?.device, let dev = e.device, wire != dev {
            diffs.append(.engineDeviceNotOnWire(decided: dev, wire: wire))
        }
        guard let k else { return ConnectVerdict(engine: e, kernel: nil, differences: diffs) }
        let es = e.observed?.syn, ks = k.observed?.syn
        if e.result.kind != k.result.kind { diffs.append(.result(engine: e.result, kernel: k.result)) }
        if e.errno != k.errno { diffs.append(.errno(engine: e.errno, kernel: k.errno)) }
        // A kernel source of 0.0.0.0: getsockname before the kernel chose one (a connect that failed early).
        var sourceDiffers = false
        if let a = e.source, let b = k.source, b != .any, a != b { diffs.append(.source(engine: a, kernel: b)); sourceDiffers = true }
        // The kernel's multipath hash (unseen) took another leg than the engine's first, one the engine allows.
        var otherLeg = false
        if e.source != k.source || e.device != k.device || e.nextHop != k.nextHop, let kd = k.device, let kn = k.nextHop,
           e.alternatives.contains(where: { $0.device == kd && $0.nextHop == kn && $0.source == k.source }) {
            otherLeg = true
            if sourceDiffers { diffs.removeAll { if case .source = $0 { true } else { false } } }
            notes.append(.kernelTookOtherLeg(source: k.source, device: kd, nextHop: kn))
        }
        if !otherLeg, ks != nil || es != nil {
            if e.device != k.device { diffs.append(.device(engine: e.device, kernel: k.device)) }
            if e.nextHop != k.nextHop { diffs.append(.nextHop(engine: e.nextHop, kernel: k.nextHop)) }
        }
        if !otherLeg {
            let (ep, kp) = (e.observed?.path ?? [], k.observed?.path ?? [])
            if ep != kp { diffs.append(.path(engine: ep, kernel: kp)) }
            let (er, kr) = (e.observed?.replyPath ?? [], k.observed?.replyPath ?? [])
            if er != kr { diffs.append(.replyPath(engine: er, kernel: kr)) }
        }
        if let a = es, let b = ks {
            func syn(_ d: Difference.SynField, _ differs: Bool) { if differs { diffs.append(.syn(d)) } }
            syn(.options(engine: a.options, kernel: b.options), a.options != b.options)
            syn(.mss(engine: a.mss, kernel: b.mss), a.mss != b.mss)
            syn(.window(engine: a.window, kernel: b.window), a.window != b.window)
            syn(.windowScale(engine: a.windowScale, kernel: b.windowScale), a.windowScale != b.windowScale)
            syn(.ttl(engine: a.ttl, kernel: b.ttl), a.ttl != b.ttl)
            syn(.df(engine: a.df, kernel: b.df), a.df != b.df)
            syn(.tos(engine: a.tos, kernel: b.tos), a.tos != b.tos)
            syn(.ipOptions(engine: a.ipOptions, kernel: b.ipOptions), a.ipOptions != b.ipOptions)
            syn(.flags(engine: a.flags, kernel: b.flags), a.flags != b.flags)
        } else if (es == nil) != (ks == nil) {
            diffs.append(.synSentByOneSide(engineSent: es != nil))
        }
        // On the same 4-tuple both sides find the same TIME_WAIT (if any): both take it over or neither, and taken
        // over it fixes the ISN (tw_snd_nxt + 65535 + 2) and the SYN's TS echo (tw_ts_recent), when it was watched.
        if e.source == k.source, e.sourcePort == k.sourcePort, e.sourcePort != nil {
            let (et, kt) = (e.reusedTimeWait != nil, k.reusedTimeWait != nil)
            if et != kt { diffs.append(.timeWaitTakenOver(engine: et, kernel: kt)) }
            if let a = es, let b = ks {
                if let tw = e.reusedTimeWait, tw.sndNxt == nil {
                    notes.append(.timeWaitNotWatched)
                } else {
                    if a.tsEcho != b.tsEcho { diffs.append(.syn(.tsEcho(engine: a.tsEcho, kernel: b.tsEcho))) }
                    if e.reusedTimeWait != nil, a.seq != b.seq { diffs.append(.syn(.seqAfterTimeWait(engine: a.seq, kernel: b.seq))) }
                }
            }
        }
        // Both connected: a side that sent its SYN again missed a reply the other got (the first SYN-ACK lost to a
        // late packet socket, say) — a difference of the run, not of the network.
        if e.errno == nil, k.errno == nil {
            let (a, b) = (e.observed?.synsSent, k.observed?.synsSent)
            if a != b { diffs.append(.synsSent(engine: a, kernel: b)) }
        }
        if e.echoed != k.echoed { diffs.append(.echoed(engine: e.echoed, kernel: k.echoed)) }
        return ConnectVerdict(engine: e, kernel: k, differences: diffs, notes: notes, otherLeg: otherLeg)
    }

    /// The kernel's multipath hash (unseen) chose another equal-cost leg than the engine's first: where the SYN goes
    /// from there, and so the outcome, depend on the leg. The connect to run the engine again with, the kernel's leg
    /// first (and the leg the kernel's source came from first where that differs), so that everything else is
    /// compared on the same leg; nil when the kernel took the engine's leg.
    public static func rerunOnKernelLeg(_ spec: ConnectSpec, _ v: ConnectVerdict) -> ConnectSpec? {
        guard v.otherLeg, let k = v.kernel, let kd = k.device, let kn = k.nextHop else { return nil }
        var again = spec
        again.preferredLeg = Leg(device: kd, nextHop: kn)
        if let ks = k.source, ks != v.engine.source, let leg = v.engine.sourceLegs.first(where: { $0.source == ks }) {
            again.preferredSourceLeg = leg.leg
        }
        return again
    }

    /// Whether to run both connects again once the routers' ICMP buckets are surely full: the comparison differed,
    /// one side got an ICMP error, and the buckets may have been spent before this process watched them.
    public static func rerunForICMPBuckets(_ v: ConnectVerdict, historyKnown: Bool) -> Bool {
        guard !v.agree, !historyKnown, let k = v.kernel else { return false }
        return v.engine.repliedWithICMP || k.repliedWithICMP
    }
}
