import Engine
import NetCore
import SystemPackage

// MARK: net/ipv4/devinet.c — source address choice

extension CompiledFib {
    /// Mirrors `inet_select_addr()` in net/ipv4/devinet.c: primaries of `dev` in list order within `scope`, the one
    /// whose subnet holds `dst` first; else any device's primary that is not link-scoped, lo first.
    func inetSelectAddr(_ index: Int32, dst: IPv4Address, scope: UInt8, trace: inout Tracer) -> IPv4Address {
        let name = linkByIndex[index]?.name ?? "#\(index)"
        let localnet: UInt8 = routeLocalnet(index) ? 253 : 255
        var first: IPv4Address?
        for a in addressesByIndex[index] ?? [] where !a.isSecondary && min(a.scope, localnet) <= scope {
            if dst != .any, a.subnet.contains(dst) {     // inet_ifa_match: against IFA_ADDRESS (the peer, if any)
                trace.add("saddr \(a.prefix.address): primary of \(name) whose subnet holds \(dst) (inet_select_addr)")
                return a.prefix.address
            }
            if first == nil { first = a.prefix.address }
        }
        if let f = first {
            trace.add("saddr \(f): first primary of \(name) within scope (inet_select_addr)")
            return f
        }
        for l in snapshot.links.sorted(by: { $0.index < $1.index }) {
            for a in addressesByIndex[l.index] ?? [] where !a.isSecondary && a.scope != 253 && a.scope <= scope {
                trace.add("saddr \(a.prefix.address): \(name) has none; first primary of \(l.name) (inet_select_addr fallback)")
                return a.prefix.address
            }
        }
        trace.add("saddr 0.0.0.0: no address to choose")
        return .any
    }
}
