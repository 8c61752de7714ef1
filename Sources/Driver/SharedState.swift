import Engine
import Glibc
import NetCore
import Netlink
import Wire

/// The state one run of a comparison (engine or kernel) leaves in the lab for the other, and what keeps the
/// comparison immune to it. Both runs send real packets through the same routers, so:
///
/// - **ICMP rate limits.** A router's ICMP error to the engine's SYN spends tokens of its per-peer inetpeer bucket
///   — `ip_error` for an error route (`route.error_cost`, burst `route.error_burst`) and `icmpv4_xrlim_allow` →
///   `inet_peer_xrlim_allow` (`icmp_ratelimit` ms per token, burst `XRLIM_BURST_FACTOR` 6, for the types in
///   `icmp_ratemask`), both on the same `rate_tokens` — and of the netns-wide `icmp_global` credit
///   (`icmp_msgs_per_sec`, `icmp_msgs_burst`). The captures see every packet a router drops and every error it
///   sends, so the buckets are replayed here (an upper bound of what was spent), and before each run the driver
///   waits until every bucket is full again — both runs then find the routers as a fresh lab has them. A bucket
///   starts full (`inet_getpeer` sets `rate_last` 60 s back). What was spent before this session is not known:
///   `unknownHistory` says so, and a comparison that differs by an ICMP error is run again once the buckets are
///   surely full (`ConnectRun`).
/// - **Neighbour entries.** A SYN to a next hop that does not answer ARP waits in an INCOMPLETE entry; the run's
///   outcome depends on how far the probing got (docs/engine.md, "Timing the engine cannot match"). Before each run
///   the driver waits until no entry in the lab is INCOMPLETE. REACHABLE, STALE, DELAY, PROBE and FAILED entries
///   send (or fail) a new packet alike, so they are left as they are.
/// - **TIME_WAIT.** The kernel's connect leaves a TIME_WAIT socket on the connecting node (the engine's leaves
///   none: the node's kernel never had its socket). The next comparison's engine and kernel both find it, but at
///   different ages; `tcp_twsk_unique` changes its answer when the age passes `tcp_tw_reuse_delay` and when the
///   socket expires. The driver waits out a delay that ends within `timeWaitHorizon` before the engine runs, and
///   re-reads the sockets before the kernel runs: if a TIME_WAIT of the destination changed its answer between the
///   two, the engine runs again on the state the kernel will see.
/// - **Conntrack.** None: no ruleset in a lab namespace uses `ct` (the engine's guard matches `ip daddr . tcp dport`
///   statelessly at raw prerouting), so netfilter keeps no connection state for the runs to share.
public final class SharedState: @unchecked Sendable {
    struct Node {
        var namespace: NetworkNamespace; var addresses: Set<IPv4Address>; var ratelimit: Int64; var ratemask: UInt32
        /// Kept open for the neighbour dumps of `settleNeighbours` (opening one is a thread entering the namespace).
        var netlink: NetlinkSocket
        /// Opened at the first dropped packet, for its input route lookup: a reply-only RTM_GETROUTE leaves libnl's
        /// sequence counter behind, and the neighbour dumps on `netlink` would then fail ("Message sequence number
        /// mismatch").
        var lookups: NetlinkSocket? = nil
    }
    struct Bucket: Hashable { var node: String; var peer: IPv4Address }
    var nodes: [String: Node] = [:]
    /// Per (node, peer): tokens (ns) after the last error seen, and its time (CLOCK_REALTIME ns, as frames carry).
    var buckets: [Bucket: (tokens: Int64, last: Int64)] = [:]
    /// Errors of each node in the last second (`icmp_global`, 1000/s with a burst of 50 by default).
    var recent: [String: [Int64]] = [:]
    /// What the captures saw of ended connections (`tw_snd_nxt`, `tw_ts_recent` of the TIME_WAIT they left).
    public var history = FlowHistory()
    /// Set when the nodes' buckets may have been spent before this state was made (a lab not brought up by this
    /// process): the first comparison cannot know them full.
    public var unknownHistory: Bool
    /// How far ahead a `tcp_tw_reuse_delay` boundary is waited out before the engine runs.
    public var timeWaitHorizon: Int64 = 3_000_000_000
    /// Time spent waiting, by cause (ns), for reports and benchmarks.
    public private(set) var waited: [String: Int64] = [:]

    static let burstFactor: Int64 = 6   // XRLIM_BURST_FACTOR
    /// Until when (CLOCK_REALTIME ns) buckets spent outside our sight may still be refilling.
    var spentUntil: Int64 = 0

    public init(_ scope: [(node: String, namespace: NetworkNamespace)], unknownHistory: Bool = true) throws {
        self.unknownHistory = unknownHistory
        for (node, ns) in scope {
            let netlink = try NetlinkSocket(in: ns)
            let addresses = Set(try netlink.addresses.list().map(\.prefix.address))
            let (rl, mask): (String, String) = try ns.run {
                ((try? Sysctls.read("net.ipv4.icmp_ratelimit")) ?? "1000", (try? Sysctls.read("net.ipv4.icmp_ratemask")) ?? "6168")
            }
            nodes[node] = Node(namespace: ns, addresses: addresses,
                               ratelimit: (Int64(rl.trimmingWhitespace) ?? 1000) * 1_000_000,
                               ratemask: UInt32(mask.trimmingWhitespace) ?? 6168, netlink: netlink)
        }
    }

    /// Replay what spends a router's tokens for a peer, from these observations. Two limiters share one inetpeer
    /// (`peer->rate_tokens`, `rate_last`): `ip_error` (an error route: `route.error_cost` a token, capped at
    /// `route.error_burst`, 1 s and 5 s by default; checked before `icmp_send`) and `icmpv4_xrlim_allow`
    /// (`icmp_ratelimit` a token, capped at 6 of them). So an error route's ICMP costs 1 s + `icmp_ratelimit`, and
    /// a peer whose packets keep hitting it once a second never gets one once the bucket is empty — measured: a
    /// node at default limits with six SYNs a second apart got no ICMP (`IcmpOutRateLimitHost`). Each packet a
    /// node received from a peer and did not forward (nor was addressed to), and each ICMP error it originated
    /// about a packet not seen dropped, is counted as spending both costs (an upper bound: a blackhole or a
    /// queued packet spends nothing), so the waits in `settle` are long enough.
    public func record(_ observations: [Observation]) {
        struct Identity: Hashable { var source: IPv4Address; var id: UInt16; var proto: IPProtocol }
        var sent: [String: Set<Identity>] = [:]
        var views: [(Observation, IPv4PacketView)] = []
        for o in observations {
            guard nodes[o.node] != nil, let ip = o.frame.ipv4, let v = try? IPv4PacketView(checking: ip) else { continue }
            views.append((o, v))
            if o.frame.isOutgoing { sent[o.node, default: []].insert(Identity(source: v.source, id: v.identification, proto: v.proto)) }
        }
        var dropped: Set<Identity> = []
        for (o, v) in views {
            let n = nodes[o.node]!
            if o.frame.isOutgoing {
                guard v.proto == .icmp, n.addresses.contains(v.source), !n.addresses.contains(v.destination), v.payload.count >= 8,
                      [3, 4, 5, 11, 12].contains(v.payload[v.payload.startIndex]) else { continue }
                recent[o.node, default: []].append(o.time)
                if let m = try? ICMPv4Message.parse(v.payload), let q = m.quote,
                   dropped.contains(Identity(source: q.header.source, id: q.header.identification, proto: q.header.proto)) { continue }
                spend(Bucket(node: o.node, peer: v.destination), at: o.time)
            } else if o.frame.packetType == 0, !n.addresses.contains(v.source), !n.addresses.contains(v.destination),
                      !v.destination.isMulticast, v.destination != IPv4Address(UInt32.max) {
                let id = Identity(source: v.source, id: v.identification, proto: v.proto)
                if sent[o.node]?.contains(id) == true || dropped.contains(id) { continue }
                dropped.insert(id)
                // ip_error (net/ipv4/route.c) takes a token only for the errors it answers with ICMP; a drop whose
                // input route is an EINVAL one (a blackhole route, a martian) or a packet delivered locally leaves the
                // bucket alone. The router's kernel says which: the packet's own input lookup (`ip route get DST from
                // SRC iif DEV`). Any other answer (an error route, or a route the packet should have taken) is counted
                // as spent, as before.
                if nodes[o.node]!.lookups == nil { nodes[o.node]!.lookups = try? NetlinkSocket(in: n.namespace) }
                switch nodes[o.node]!.lookups?.routeGet(destination: v.destination, source: v.source, inputIndex: o.frame.ifindex,
                                                         tos: v.tos, proto: v.proto) {
                case .failure(.invalidArgument)?: continue
                // Delivered here (a subnet's broadcast address, which is not one of the node's addresses): no
                // ip_error; what the node answers (a RST) is on the wire.
                case .success(let r)? where r.type == .local || r.type == .broadcast || r.type == .multicast: continue
                default: break
                }
                spend(Bucket(node: o.node, peer: v.source), at: o.time)
            }
        }
    }

    /// `route.error_cost` and `route.error_burst` (global sysctls, in jiffies): 1 s a token, 5 of them.
    static let errorCost: Int64 = 1_000_000_000, errorBurst: Int64 = 5_000_000_000

    /// A bucket's cap as seen by whichever limiter refills it next: both caps reached means one state for both runs.
    func cap(_ n: Node) -> Int64 { max(Self.errorBurst, Self.burstFactor * n.ratelimit) }

    func spend(_ b: Bucket, at t: Int64) {
        guard let n = nodes[b.node] else { return }
        // A fresh peer starts full (inet_getpeer sets rate_last 60 s back), at the lower of the two caps.
        var (tokens, last) = buckets[b] ?? (min(Self.errorBurst, n.ratelimit > 0 ? Self.burstFactor * n.ratelimit : Self.errorBurst), t)
        tokens = min(tokens + max(0, t - last), cap(n))
        tokens = max(0, tokens - Self.errorCost - n.ratelimit)
        buckets[b] = (tokens, t)
    }

    /// When every bucket is full again (CLOCK_REALTIME ns), and 50 ms after a node's last error for its share of
    /// `icmp_global` (a burst of 50 refilled at 1000/s).
    func bucketsFullAt(for source: String? = nil) -> Int64 {
        var at: Int64 = spentUntil
        let mine = source.flatMap { nodes[$0]?.addresses }
        for (b, s) in buckets {
            guard let n = nodes[b.node], mine?.contains(b.peer) ?? true else { continue }
            at = max(at, s.last + (cap(n) - s.tokens))
        }
        for (_, times) in recent { if let t = times.last { at = max(at, t + 1_000_000_000 / 20) } }
        return at
    }

    /// Treat every bucket as spent now (errors sent before this process watched): full after the larger cap.
    public func assumeSpent() {
        spentUntil = realtimeNanoseconds() + (nodes.values.map(cap).max() ?? Self.errorBurst)
    }

    /// Wait until the routers' ICMP buckets for the addresses of `source` (every bucket: nil) are full and no
    /// neighbour entry in the lab is still resolving.
    public func settle(for source: String? = nil) throws {
        let full = bucketsFullAt(for: source)
        let now = realtimeNanoseconds()
        if full > now { sleep(ns: full - now, cause: "icmp rate limit") }
        buckets = buckets.filter { b in nodes[b.key.node].map { b.value.last + cap($0) - b.value.tokens > realtimeNanoseconds() } ?? false }
        recent = [:]
        try settleNeighbours()
    }

    /// Wait (at most 4 s: three probes of one second, and a margin) until no IPv4 neighbour entry of the lab is
    /// INCOMPLETE.
    public func settleNeighbours() throws {
        let start = monotonicNanoseconds()
        while true {
            var resolving = false
            for n in nodes.values {
                if try n.netlink.neighbors.list().contains(where: { $0.state & 0x01 != 0 }) { resolving = true; break }
            }
            if !resolving || monotonicNanoseconds() - start > 4_000_000_000 { break }
            usleep(20_000)
        }
        let t = monotonicNanoseconds() - start
        if t > 1_000_000 { waited["neighbour resolution", default: 0] += t }
    }

    func sleep(ns: Int64, cause: String) {
        var ts = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        var rest = timespec()
        while nanosleep(&ts, &rest) != 0 && Glibc.errno == EINTR { ts = rest }
        waited[cause, default: 0] += ns
    }

    /// The answer `tcp_twsk_unique` gives now for each TIME_WAIT socket to `destination:port`, as the kernel's
    /// connect will find them (ephemeral port unless `bound`).
    public static func timeWaitAnswers(_ ports: PortTable, destination: IPv4Address, port: UInt16, bound: Bool,
                                       sysctls: NodeSysctls) -> [PortTable.FourTuple: Bool] {
        var out: [PortTable.FourTuple: Bool] = [:]
        for tw in ports.timeWait where tw.tuple.destination == destination && tw.tuple.destinationPort == port {
            if case .reuse = PortTable.tcpTwskUnique(tw, bound: bound, now: .zero, sysctls: sysctls) { out[tw.tuple] = true } else { out[tw.tuple] = false }
        }
        return out
    }

    /// Before the engine runs: wait out a `tcp_tw_reuse_delay` boundary of a TIME_WAIT to the destination that
    /// falls within `timeWaitHorizon`, so that both runs find it on the same side. Returns true if it waited.
    public func waitOutTimeWait(_ state: NodeState, destination: IPv4Address, port: UInt16) -> Bool {
        let s = state.sysctls
        guard s.tcpTwReuse != 0 else { return false }
        let now = monotonicNanoseconds()
        var until: Int64 = 0
        for tw in state.ports.timeWait where tw.tuple.destination == destination && tw.tuple.destinationPort == port && tw.timestamps && !tw.finWait2 {
            // Only a boundary that changes tcp_twsk_unique's answer matters (with tcp_tw_reuse 2, the default, a
            // TIME_WAIT that is not loopback's is taken at any age): ask it just before and just after.
            func reused(_ at: Instant) -> Bool {
                if case .reuse = PortTable.tcpTwskUnique(tw, bound: false, now: at, sysctls: s) { return true }
                return false
            }
            let edge = tw.enteredAt + .milliseconds(Int64(s.tcpTwReuseDelay))
            if reused(edge) == reused(edge + .milliseconds(2)) { continue }
            // Entered at readAt + enteredAt; taken over once older than the delay (plus a jiffy or two of margin).
            let boundary = state.readAt + tw.enteredAt.nanoseconds + Int64(s.tcpTwReuseDelay) * 1_000_000 + 20_000_000
            if boundary > now, boundary - now <= timeWaitHorizon { until = max(until, boundary) }
        }
        guard until > now else { return false }
        sleep(ns: until - now, cause: "tcp_tw_reuse_delay")
        return true
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}

extension FlowHistory {
    /// Record how the connection `flow` ended as `node` (its source) saw it: `snd_nxt` after its last segment (SYN
    /// and FIN count one), the last TS value of the peer (`ts_recent`), and whether both SYNs carried timestamps.
    public mutating func record(_ observations: [Observation], flow: PortTable.FourTuple, node: String, bound: Bool) {
        var sndNxt: UInt32?, tsRecent: UInt32?, synTS = false, synAckTS = false, fin = false
        for o in observations where o.node == node {
            guard let ip = o.frame.ipv4, let v = try? IPv4PacketView(checking: ip), v.proto == .tcp,
                  let t = try? TCPSegmentView(checking: v.payload), let h = try? TCPHeader.parse(t) else { continue }
            var ts: UInt32?
            for opt in h.options { if case .timestamps(let val, _) = opt { ts = val } }
            // By the source address and the ports: a source-routed packet's IP destination is the next hop on its route.
            if o.frame.isOutgoing, v.source == flow.source, t.sourcePort == flow.sourcePort, t.destinationPort == flow.destinationPort {
                let end = h.seq.raw &+ UInt32(t.payload.count) &+ (h.flags.contains(.syn) ? 1 : 0) &+ (h.flags.contains(.fin) ? 1 : 0)
                if sndNxt.map({ SeqNumber(end).after(SeqNumber($0)) }) ?? true { sndNxt = end }
                if h.flags.contains(.syn) { synTS = ts != nil }
                if h.flags.contains(.fin) { fin = true }
            } else if !o.frame.isOutgoing, t.destinationPort == flow.sourcePort, t.sourcePort == flow.destinationPort,
                      v.source == flow.destination {
                if h.flags.contains(.syn) { synAckTS = ts != nil }
                if let ts { tsRecent = ts }
            }
        }
        guard fin, let sndNxt else { return }
        ends[flow] = End(sndNxt: sndNxt, tsRecent: synTS && synAckTS ? tsRecent : nil, timestamps: synTS && synAckTS, bound: bound)
    }
}

extension SharedState {
    /// After a run that did not connect but reached the server (the server answered the flow), the server may keep a
    /// request socket (SYN_RECV) for the 4-tuple for a minute of SYN-ACK retransmissions. The next SYN on that
    /// 4-tuple — the other run's, or a later check's on a one-port node — gets an out-of-window ACK from it instead
    /// of a SYN-ACK (`tcp_check_req`), resets it, and connects only on its retransmission a second later (measured:
    /// engine 997 ms and 2 SYNs, kernel 0.14 ms and 1, selftest connect seed 2017). Reset it: a RST without ACK,
    /// seq = ISN + 1 (in the request's window: `tcp_check_req` → `embryonic_reset`), sent as the run's own SYN went
    /// (its IP header and options, device and next hop).
    public static func resetHalfOpen(_ observations: [Observation], flow: FlowKey, sourceNode: String, connected: Bool,
                                     device: String?, nextHop: IPv4Address?, links: [LinkInfo], namespace: NetworkNamespace) throws {
        guard !connected, let device, let link = links.first(where: { $0.name == device }) else { return }
        var syn: (IPv4Header, TCPHeader)?
        var answered = false
        for o in observations {
            guard let ip = o.frame.ipv4, let v = try? IPv4PacketView(checking: ip), v.proto == .tcp,
                  let t = try? TCPSegmentView(checking: v.payload) else { continue }
            if syn == nil, o.node == sourceNode, o.frame.isOutgoing, v.source == flow.source, t.sourcePort == flow.sourcePort,
               t.destinationPort == flow.destinationPort, t.flags.contains(.syn), !t.flags.contains(.ack),
               let h = try? IPv4Header.parse(v), let th = try? TCPHeader.parse(t) {
                syn = (h, th)
            }
            if v.source == flow.destination, t.sourcePort == flow.destinationPort, t.destinationPort == flow.sourcePort { answered = true }
        }
        guard answered, let (ip, tcp) = syn else { return }
        let rst = TCPHeader(sourcePort: tcp.sourcePort, destinationPort: tcp.destinationPort, seq: tcp.seq + 1, flags: .rst, window: 0)
        var bytes: [UInt8] = []
        var h = ip
        h.identification &+= 1
        h.emit(payloadLength: rst.headerLength, into: &bytes)
        rst.emit(source: flow.source, destination: flow.destination, into: &bytes)
        let loopback = link.isLoopback
        try RawSocket(in: namespace).send(bytes, nextHop: nextHop ?? ip.destination, ifindex: loopback ? 0 : link.index, source: flow.source)
    }
}
