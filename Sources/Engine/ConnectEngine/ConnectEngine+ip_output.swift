import NetCore
import SystemPackage
import Wire

/// net/ipv4/ip_output.c: `__ip_queue_xmit`: the IPv4 header of the socket's packets, and where they may not go.

extension ConnectEngine {
    /// The IPv4 header `__ip_queue_xmit` puts on a segment: TOS, DF (`ip_dont_fragment`: pmtudisc on and the mtu
    /// not locked), TTL (`ip_select_ttl`: IP_TTL, else the route's hoplimit, else ip_default_ttl), the next `inet_id`,
    /// the options (`ip_options_build`), and a source route's first hop as the destination.
    mutating func ipv4Header() -> IPv4Header {
        let rt = sk.route
        let ttl = inet.ttl > 0 ? inet.ttl : (rt?.hoplimit ?? config.sysctls.ipDefaultTTL)
        let df = config.sysctls.ipNoPmtuDisc == 0 && !(rt?.mtuLocked ?? false)
        let ip = IPv4Header(tos: inet.tos, identification: inet.ipID, dontFragment: df, ttl: UInt8(clamping: ttl), proto: .tcp,
                            source: inet.sourceAddress, destination: inet.ipOptions?.firstHop ?? inet.destination,
                            options: inet.wireOptions)
        inet.ipID &+= 1
        return ip
    }

    /// `__ip_queue_xmit()` (net/ipv4/ip_output.c): a strict source route whose first hop is not on-link (the route
    /// to it uses a gateway) goes nowhere: EHOSTUNREACH, which `tcp_connect` and the retransmission timer ignore, so
    /// the SYN is never sent and the connect times out.
    func ipQueueXmit(_ p: OutgoingPacket, now: Instant) -> Action {
        if let o = inet.ipOptions, o.isStrict, let g = sk.route?.gateway {
            return trace(now, "__ip_queue_xmit", "strict source route, but the first hop \(sk.route?.destination.description ?? "?") is behind gateway \(g): EHOSTUNREACH, not sent")
        }
        return .send(p)
    }
}
