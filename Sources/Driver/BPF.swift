import CNetSys
import Glibc
import NetCore
import Wire

/// A classic BPF program for SO_ATTACH_FILTER on a packet socket (offsets from the Ethernet header), built from the
/// few instructions netlab needs. Mirrors what `tcpdump -dd` prints for the same filter.
public struct BPFProgram: Sendable, Equatable {
    public var instructions: [sock_filter]
    public static func == (a: Self, b: Self) -> Bool {
        a.instructions.count == b.instructions.count && zip(a.instructions, b.instructions).allSatisfy {
            $0.code == $1.code && $0.jt == $1.jt && $0.jf == $1.jf && $0.k == $1.k
        }
    }

    static let ldH: UInt16 = 0x28, ldB: UInt16 = 0x30, ldW: UInt16 = 0x20, ldxMSH: UInt16 = 0xb1, ldHInd: UInt16 = 0x48
    static let jeq: UInt16 = 0x15, jset: UInt16 = 0x45, ret: UInt16 = 0x06
    /// SKF_AD_OFF + SKF_AD_PKTTYPE: the packet type (PACKET_HOST, PACKET_OUTGOING, ...).
    static let pktTypeOffset = UInt32(bitPattern: -0x1000 + 4)

    /// Offsets from the Ethernet header of the fields the filters test.
    static let etherType = UInt32(EthernetField.etherType)
    static let ipProto = UInt32(EthernetField.headerLength + IPv4Field.proto)
    static let ipDestination = UInt32(EthernetField.headerLength + IPv4Field.destination)
    /// `ldxMSH`'s operand: X = 4 * (the IP header's IHL), the IP header starting here.
    static let ipHeader = UInt32(EthernetField.headerLength + IPv4Field.versionAndIHL)
    /// With X the IP header length: the TCP destination port (`ldHInd`).
    static let tcpDestinationPort = UInt32(EthernetField.headerLength + TCPField.destinationPort)
    /// Accept this many bytes of a frame (all of it).
    static let snapLength: UInt32 = 0x40000

    static func op(_ code: UInt16, _ k: UInt32, _ jt: UInt8 = 0, _ jf: UInt8 = 0) -> sock_filter {
        sock_filter(code: code, jt: jt, jf: jf, k: k)
    }

    /// Every frame (`netlab capture`: ARP too).
    public static let everything: BPFProgram = BPFProgram(instructions: [op(ret, snapLength)])

    /// IPv4 frames only (ethertype 0x0800): what a lab capture keeps.
    public static let ipv4: BPFProgram = BPFProgram(instructions: [
        op(ldH, etherType), op(jeq, UInt32(EtherType.ipv4), 0, 1), op(ret, snapLength), op(ret, 0),
    ])

    /// Frames the engine must read: received (not outgoing) IPv4 to `address`, either TCP to `port` or ICMP.
    public static func engineFlow(address: UInt32, port: UInt16) -> BPFProgram {
        BPFProgram(instructions: [
            op(ldW, pktTypeOffset), op(jeq, UInt32(PACKET_OUTGOING), 11, 0),                   // 0,1
            op(ldH, etherType), op(jeq, UInt32(EtherType.ipv4), 0, 9),                           // 2,3
            op(ldW, ipDestination), op(jeq, address, 0, 7),                                      // 4,5  ip daddr
            op(ldB, ipProto), op(jeq, UInt32(IPProtocol.icmp.rawValue), 4, 0),                   // 6,7  icmp → accept
            op(jeq, UInt32(IPProtocol.tcp.rawValue), 0, 4),                                      // 8    tcp?
            op(ldxMSH, ipHeader), op(ldHInd, tcpDestinationPort), op(jeq, UInt32(port), 0, 1),   // 9,10,11  tcp dport
            op(ret, snapLength), op(ret, 0),                                                     // 12,13
        ])
    }

    /// Attach to a socket (SO_ATTACH_FILTER).
    func attach(to fd: Int32) throws(DriverError) {
        var insns = instructions
        let rc = insns.withUnsafeMutableBufferPointer { buf -> Int32 in
            var prog = sock_fprog(len: UInt16(buf.count), filter: buf.baseAddress)
            return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, socklen_t(MemoryLayout<sock_fprog>.size))
        }
        if rc != 0 { throw DriverError(operation: "setsockopt(SO_ATTACH_FILTER)", errno: .init(rawValue: Glibc.errno)) }
    }
}
