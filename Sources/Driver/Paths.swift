import NetCore
import Wire

/// A TCP flow as the connecting node sees it (the final destination, not a source-route hop).
public struct FlowKey: Sendable, Hashable, CustomStringConvertible {
    public var source: IPv4Address
    public var sourcePort: UInt16
    public var destination: IPv4Address
    public var destinationPort: UInt16
    public init(source: IPv4Address, sourcePort: UInt16, destination: IPv4Address, destinationPort: UInt16) {
        self.source = source; self.sourcePort = sourcePort; self.destination = destination; self.destinationPort = destinationPort
    }
    public var description: String { "\(source):\(sourcePort) → \(destination):\(destinationPort)" }
}

/// The first SYN on the wire, as the options and header fields a comparison looks at.
public struct SynSummary: Sendable, Codable, Equatable {
    public var options: [String]
    public var mss: Int?
    public var window: Int
    public var windowScale: Int?
    public var ttl: Int
    public var df: Bool
    public var tos: Int
    public var ipOptions: [String]
    public var flags: String

    /// The sequence number and the TS echo (`tsecr`: 0, or the `ts_recent` a TIME_WAIT passed on).
    public var seq: UInt32 = 0
    public var tsEcho: UInt32?

    /// snake_case in JSON, as every key netlab writes.
    enum CodingKeys: String, CodingKey {
        case options, mss, window, windowScale = "window_scale", ttl, df, tos, ipOptions = "ip_options", flags, seq, tsEcho = "ts_echo"
    }
}

/// What the capture shows of one connect: the SYN's hops and the reply's hops, in time order.
public struct ObservedPath: Sendable {
    /// `node:interface` with `>` for out and `<` for in, e.g. `client:eth0>`.
    public var synHops: [String]
    public var replyHops: [String]
    /// Nodes in the order the SYN (reply) crossed them.
    public var path: [String]
    public var replyPath: [String]
    /// Where the first SYN left the source node, and the MAC it was sent to.
    public var device: String?
    public var nextHopMAC: [UInt8]?
    /// The first SYN's IP destination (on a loopback device, the frame goes to that address itself).
    public var synDestination: IPv4Address?
    public var syn: SynSummary?
    /// What the reply was: `SYN-ACK`, `RST`, `ICMP 3/1 from 192.0.2.1`.
    public var reply: String?
    /// How many times the SYN left the source node (1 + retransmissions).
    public var synsSent = 0

    /// Find the connect's packets among `observations` (time-ordered). The SYN is the first SYN of `flow` leaving
    /// `sourceNode`; its copies elsewhere are the frames with the same source, IP ID and sequence number. The reply is
    /// the first SYN-ACK or RST back to the flow, or an ICMP error quoting it.
    public static func analyse(_ observations: [Observation], flow: FlowKey, sourceNode: String) -> ObservedPath {
        var p = ObservedPath(synHops: [], replyHops: [], path: [], replyPath: [], device: nil, nextHopMAC: nil, synDestination: nil,
                             syn: nil, reply: nil)
        var synSeq: UInt32?
        struct Identity: Hashable { var source: IPv4Address; var id: UInt16; var proto: IPProtocol; var key: UInt32 }
        func identity(_ v: IPv4PacketView) -> Identity? {
            if v.proto == .tcp, let t = try? TCPSegmentView(checking: v.payload) {
                return Identity(source: v.source, id: v.identification, proto: .tcp, key: t.seq.raw)
            }
            if v.proto == .icmp { return Identity(source: v.source, id: v.identification, proto: .icmp, key: 0) }
            return nil
        }
        func isSyn(_ v: IPv4PacketView) -> Bool {
            guard v.proto == .tcp, v.source == flow.source, let t = try? TCPSegmentView(checking: v.payload) else { return false }
            return t.sourcePort == flow.sourcePort && t.destinationPort == flow.destinationPort && t.flags.contains(.syn) && !t.flags.contains(.ack)
        }
        func replyKind(_ v: IPv4PacketView) -> String? {
            // The destination of a source-routed reply changes hop by hop; its source and ports do not.
            if v.proto == .tcp, v.source == flow.destination, let t = try? TCPSegmentView(checking: v.payload),
               t.sourcePort == flow.destinationPort, t.destinationPort == flow.sourcePort {
                // The reply to this run's SYN acknowledges it: a SYN-ACK that a server's older request socket on the
                // same 4-tuple retransmits (acknowledging an earlier run's SYN) is not it.
                if let seq = synSeq, t.flags.contains(.ack), t.ack.raw != seq &+ 1 { return nil }
                if t.flags.contains(.syn), t.flags.contains(.ack) { return "SYN-ACK" }
                if t.flags.contains(.rst) { return "RST" }
                return nil
            }
            // An error about this run's SYN (its seq): one about an earlier run on the same 4-tuple is not the reply.
            if v.proto == .icmp, v.destination == flow.source, let m = try? ICMPv4Message.parse(v.payload), let q = m.quote,
               q.header.source == flow.source, let ports = q.tcpPorts, ports.source == flow.sourcePort,
               ports.destination == flow.destinationPort, synSeq == nil || q.tcpSeq?.raw == synSeq {
                let code = v.payload.count > 1 ? v.payload[v.payload.startIndex + 1] : 0
                return "ICMP \(m.type)/\(code) from \(v.source)"
            }
            return nil
        }
        var synID: Identity?, replyID: Identity?
        var copies: [(id: Identity, hop: String, node: String, ttl: UInt8, out: Bool, time: Int64)] = []
        for o in observations {
            guard let ip = o.frame.ipv4, let v = try? IPv4PacketView(checking: ip) else { continue }
            if o.node == sourceNode, o.frame.isOutgoing, isSyn(v) { p.synsSent += 1 }
            if synID == nil, o.node == sourceNode, o.frame.isOutgoing, isSyn(v) {
                synID = identity(v)
                p.device = o.interface
                p.nextHopMAC = o.frame.destinationMAC
                p.synDestination = v.destination
                p.syn = summary(v)
                synSeq = p.syn?.seq
            }
            if replyID == nil, o.frame.packetType != 3, let kind = replyKind(v) {
                replyID = identity(v)
                p.reply = kind
            }
            // Flooded copies a LAN delivers to other hosts (PACKET_OTHERHOST) are not hops.
            guard o.frame.packetType != 3, let id = identity(v) else { continue }
            copies.append((id, o.hop + (o.frame.isOutgoing ? ">" : "<"), o.node, v.ttl, o.frame.isOutgoing, o.time))
        }
        // The hops of one packet in causal order: the TTL falls by one per router, and at one TTL the copy sent
        // comes before the copy received. Timestamps alone are not causal across namespaces (a veth peer's copy is
        // stamped when queued to its backlog, a forwarded one when sent), and a busy machine inverted them.
        func hops(_ id: Identity?) -> [(hop: String, node: String)] {
            guard let id else { return [] }
            return copies.filter { $0.id == id }
                .sorted { ($1.ttl, $0.out ? 0 : 1, $0.time) < ($0.ttl, $1.out ? 0 : 1, $1.time) }
                .map { ($0.hop, $0.node) }
        }
        // A retransmission of the same packet (same identity) crosses the same hops again: count each hop once.
        for h in hops(synID) where !p.synHops.contains(h.hop) { p.synHops.append(h.hop); append(h.node, to: &p.path) }
        for h in hops(replyID) where !p.replyHops.contains(h.hop) { p.replyHops.append(h.hop); append(h.node, to: &p.replyPath) }
        return p
    }

    static func append(_ node: String, to path: inout [String]) {
        if path.last != node { path.append(node) }
    }

    static func summary(_ v: IPv4PacketView) -> SynSummary? {
        guard let h = try? IPv4Header.parse(v), let t = try? TCPSegmentView(checking: v.payload), let th = try? TCPHeader.parse(t) else { return nil }
        var mss: Int?, ws: Int?, echo: UInt32?
        for o in th.options {
            if case .mss(let m) = o { mss = Int(m) }
            if case .windowScale(let w) = o { ws = Int(w) }
            if case .timestamps(_, let e) = o { echo = e }
        }
        return SynSummary(options: th.options.map(optionName), mss: mss, window: Int(th.window), windowScale: ws,
                          ttl: Int(h.ttl), df: h.dontFragment, tos: Int(h.tos), ipOptions: h.options.map(ipOptionName),
                          flags: th.flags.description, seq: th.seq.raw, tsEcho: echo)
    }

    static func optionName(_ o: TCPOption) -> String {
        switch o {
        case .mss: "mss"
        case .nop: "nop"
        case .sackPermitted: "sackOK"
        case .timestamps: "TS"
        case .windowScale: "wscale"
        default: "\(o)".split(separator: "(").first.map(String.init) ?? "?"
        }
    }

    static func ipOptionName(_ o: IPv4Option) -> String {
        switch o {
        case .lsrr(let ptr, let r): "lsrr ptr \(ptr) [\(r.map(\.description).joined(separator: ","))]"
        case .ssrr(let ptr, let r): "ssrr ptr \(ptr) [\(r.map(\.description).joined(separator: ","))]"
        case .recordRoute(let ptr, let r): "rr ptr \(ptr) [\(r.map(\.description).joined(separator: ","))]"
        case .nop: "nop"
        case .end: "eol"
        case .unknown(let t, _): "option \(t)"
        }
    }
}
