import CNetSys
import Glibc
import Netlink
import NetCore

/// A raw IPv4 socket (IPPROTO_RAW, so IP_HDRINCL) opened inside a namespace: the engine's packets go out exactly as
/// it built them. Each send names the device (IP_PKTINFO) and the next hop (the sendto address): with IP_HDRINCL the
/// kernel routes toward that address with FLOWI_FLAG_KNOWN_NH, so the frame goes to the next hop the engine chose,
/// whatever the header's destination (which differs with a source route). MSG_DONTROUTE (RT_SCOPE_LINK) keeps policy
/// rules that the raw flow matches differently from the TCP flow (ipproto, ports) from sending it elsewhere: only an
/// on-link route can answer, and with the device given the kernel otherwise assumes the next hop is on-link.
public final class RawSocket: @unchecked Sendable {
    public let fd: Int32
    public let namespace: NetworkNamespace

    public init(in namespace: NetworkNamespace) throws {
        self.namespace = namespace
        fd = try namespace.run {
            try sys("socket(AF_INET, SOCK_RAW, IPPROTO_RAW) in \(namespace.name)") {
                socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_RAW))
            }
        }
    }

    deinit { close(fd) }

    /// sendmsg(2) of one IPv4 datagram to `nextHop` through device `ifindex`, with `source` as the flow's saddr.
    public func send(_ packet: [UInt8], nextHop: IPv4Address, ifindex: Int32, source: IPv4Address) throws(DriverError) {
        var to = sockaddrIn(nextHop.value, 0)
        var info = in_pktinfo()
        info.ipi_ifindex = ifindex
        info.ipi_spec_dst.s_addr = source.value.bigEndian
        let space = MemoryLayout<cmsghdr>.size + MemoryLayout<in_pktinfo>.size
        var control = [UInt8](repeating: 0, count: (space + 7) & ~7)
        var bytes = packet
        let sent = bytes.withUnsafeMutableBytes { b in
            control.withUnsafeMutableBytes { c in
                let h = c.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                h.pointee.cmsg_len = MemoryLayout<cmsghdr>.size + MemoryLayout<in_pktinfo>.size
                h.pointee.cmsg_level = Int32(IPPROTO_IP)
                h.pointee.cmsg_type = Int32(IP_PKTINFO)
                c.baseAddress!.advanced(by: MemoryLayout<cmsghdr>.size).copyMemory(from: &info, byteCount: MemoryLayout<in_pktinfo>.size)
                return withMessage(name: &to, data: b, control: c) { msg in
                    retryingInterrupts { sendmsg(fd, &msg, Int32(MSG_DONTROUTE)) }
                }
            }
        }
        if case .failure(let e) = sent {
            throw DriverError(operation: "sendmsg(raw IPv4, \(packet.count) bytes) to \(nextHop) ifindex \(ifindex) in \(namespace.name)",
                              errno: e)
        }
    }
}
