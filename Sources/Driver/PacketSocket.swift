import CNetSys
import Glibc
import Netlink
import Wire

/// One frame read from a packet socket: when, on which device, in which direction, and its bytes (Ethernet).
public struct Frame: Sendable {
    /// CLOCK_REALTIME nanoseconds (SO_TIMESTAMPNS), the same clock in every namespace.
    public var time: Int64
    public var ifindex: Int32
    /// PACKET_HOST (0), PACKET_BROADCAST (1), PACKET_MULTICAST (2), PACKET_OTHERHOST (3), PACKET_OUTGOING (4).
    public var packetType: UInt8
    public var bytes: [UInt8]
    public var isOutgoing: Bool { packetType == UInt8(PACKET_OUTGOING) }
    /// The IPv4 datagram inside an Ethernet frame.
    public var ipv4: ArraySlice<UInt8>? {
        guard bytes.count > EthernetField.headerLength + IPv4Field.minHeaderLength,
              UInt16(bytes[EthernetField.etherType]) << 8 | UInt16(bytes[EthernetField.etherType + 1]) == EtherType.ipv4 else { return nil }
        return bytes[EthernetField.headerLength...]
    }
    public var destinationMAC: [UInt8] { Array(bytes[EthernetField.destination..<(EthernetField.destination + EthernetField.addressLength)]) }
}

/// An AF_PACKET socket opened inside a namespace (the fd keeps it), bound to every device (ifindex 0), filtered by a
/// classic BPF program attached before any packet can queue. `ip netns exec NS tcpdump -i any` sees the same.
/// One reader at a time: `receive` reuses one buffer (zeroing 64 KB per read cost ~10 µs per frame).
public final class PacketSocket: @unchecked Sendable {
    public let fd: Int32
    public let namespace: NetworkNamespace
    private var buf = [UInt8](repeating: 0, count: 65536 + 64)
    private var control = [UInt8](repeating: 0, count: 128)

    public init(in namespace: NetworkNamespace, filter: BPFProgram, receiveBuffer: Int32 = 4 << 20) throws {
        self.namespace = namespace
        // Protocol 0 at socket(): nothing is queued until bind() names ETH_P_ALL, after the filter is in place.
        // Configured through a local first and stored last: the fd has one owner at every moment (this init until
        // it is stored, deinit afterwards), so a failure closes it exactly once.
        let fd = try namespace.run { () throws(DriverError) -> Int32 in
            try sys("socket(AF_PACKET, SOCK_RAW) in \(namespace.name)") {
                socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            }
        }
        do {
            try filter.attach(to: fd)
            try setOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, receiveBuffer, "SO_RCVBUFFORCE")
            try setOption(fd, SOL_SOCKET, SO_TIMESTAMPNS, Int32(1), "SO_TIMESTAMPNS")
            var sll = sockaddr_ll()
            sll.sll_family = UInt16(AF_PACKET)
            sll.sll_protocol = UInt16(ETH_P_ALL).bigEndian
            sll.sll_ifindex = 0
            try sys("bind(AF_PACKET, ETH_P_ALL) in \(namespace.name)") {
                withUnsafePointer(to: &sll) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                } }
            }
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Read one frame if one is queued (non-blocking); nil when none is.
    public func receive() throws(DriverError) -> Frame? {
        var from = sockaddr_ll()
        var ts: Int64 = 0
        let received = buf.withUnsafeMutableBytes { b in
            control.withUnsafeMutableBytes { c in
                withMessage(name: &from, data: b, control: c) { msg in
                    retryingInterrupts { () -> Int in
                        let r = recvmsg(fd, &msg, 0)
                        if r >= 0 { ts = Self.timestamp(&msg) }
                        return r
                    }
                }
            }
        }
        let n: Int
        switch received {
        case .success(let count): n = count
        case .failure(.wouldBlock): return nil
        case .failure(let e): throw DriverError(operation: "recvmsg(AF_PACKET) in \(namespace.name)", errno: e)
        }
        return Frame(time: ts == 0 ? realtimeNanoseconds() : ts, ifindex: from.sll_ifindex, packetType: from.sll_pkttype,
                     bytes: Array(buf[0..<n]))
    }

    /// Every frame queued now.
    public func drain() throws(DriverError) -> [Frame] {
        var out: [Frame] = []
        while let f = try receive() { out.append(f) }
        return out
    }

    /// Wait up to `timeoutNanoseconds` for a frame to be readable.
    public func wait(timeoutNanoseconds: Int64) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: max(0, (timeoutNanoseconds + 999_999) / 1_000_000))
        return poll(&p, 1, ms) > 0
    }

    static func timestamp(_ msg: inout msghdr) -> Int64 {
        var c = netsysFirstHeader(&msg)
        while let h = c {
            if h.pointee.cmsg_level == SOL_SOCKET, h.pointee.cmsg_type == SO_TIMESTAMPNS {
                let data = UnsafeRawPointer(h).advanced(by: MemoryLayout<cmsghdr>.size)
                let t = data.loadUnaligned(as: timespec.self)
                return Int64(t.tv_sec) * 1_000_000_000 + Int64(t.tv_nsec)
            }
            c = netsysNextHeader(&msg, h)
        }
        return 0
    }
}

/// CMSG_FIRSTHDR / CMSG_NXTHDR (macros Swift cannot import).
func netsysFirstHeader(_ msg: inout msghdr) -> UnsafeMutablePointer<cmsghdr>? {
    guard msg.msg_controllen >= MemoryLayout<cmsghdr>.size, let c = msg.msg_control else { return nil }
    return c.assumingMemoryBound(to: cmsghdr.self)
}

func netsysNextHeader(_ msg: inout msghdr, _ h: UnsafeMutablePointer<cmsghdr>) -> UnsafeMutablePointer<cmsghdr>? {
    let align = MemoryLayout<Int>.size
    let len = (Int(h.pointee.cmsg_len) + align - 1) & ~(align - 1)
    let next = UnsafeMutableRawPointer(h).advanced(by: len)
    let end = msg.msg_control!.advanced(by: Int(msg.msg_controllen))
    guard len > 0, next + MemoryLayout<cmsghdr>.size <= end else { return nil }
    let n = next.assumingMemoryBound(to: cmsghdr.self)
    guard UnsafeMutableRawPointer(n) + Int(n.pointee.cmsg_len) <= end else { return nil }
    return n
}
