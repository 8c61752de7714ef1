/// A pcapng file (pure: bytes in, bytes out): one interface per `node:interface` (its `if_name`), nanosecond
/// timestamps, each packet's direction on its interface (`epb_flags`: inbound or outbound, so a packet seen on both
/// ends of a link reads as sent there and received here), and a comment (`engine` or `kernel`). Wireshark, tshark
/// and tcpdump -r read it. Written whole (`bytes`) or as it goes (`take`).
public struct PcapNG {
    public private(set) var bytes: [UInt8] = []
    var interfaceIDs: [String: UInt32] = [:]

    public init() {
        // Section Header Block: byte-order magic, version 1.0, unknown section length.
        block(0x0A0D0D0A, body: u32(0x1A2B3C4D) + u16(1) + u16(0) + u64(UInt64.max))
    }

    /// Interface Description Block: LINKTYPE_ETHERNET, if_name, if_tsresol = 9 (nanoseconds).
    public mutating func addInterface(_ name: String) {
        guard interfaceIDs[name] == nil else { return }
        interfaceIDs[name] = UInt32(interfaceIDs.count)
        let opts = option(2, Array(name.utf8)) + option(9, [9]) + option(0, [])
        block(1, body: u16(1) + u16(0) + u32(262144) + opts)
    }

    /// A packet's direction on its interface: pcapng `epb_flags` bits 0-1 (01 inbound, 10 outbound).
    public enum Direction: UInt32, Sendable { case inbound = 1, outbound = 2 }

    /// Enhanced Packet Block.
    public mutating func add(_ frame: [UInt8], interface: String, time: Int64, direction: Direction? = nil, comment: String? = nil) {
        addInterface(interface)
        let t = UInt64(bitPattern: time)
        var body = u32(interfaceIDs[interface]!) + u32(UInt32(t >> 32)) + u32(UInt32(t & 0xffff_ffff))
        body += u32(UInt32(frame.count)) + u32(UInt32(frame.count)) + padded(frame)
        var opts: [UInt8] = []
        if let comment { opts += option(1, Array(comment.utf8)) }
        if let direction { opts += option(2, u32(direction.rawValue)) }
        if !opts.isEmpty { body += opts + option(0, []) }
        block(6, body: body)
    }

    /// The bytes written since the last `take` (a stream: the section header and interfaces come first).
    public mutating func take() -> [UInt8] {
        defer { bytes = [] }
        return bytes
    }

    mutating func block(_ type: UInt32, body: [UInt8]) {
        let total = UInt32(12 + body.count)
        bytes += u32(type) + u32(total) + body + u32(total)
    }

    func option(_ code: UInt16, _ value: [UInt8]) -> [UInt8] { u16(code) + u16(UInt16(value.count)) + padded(value) }
    func padded(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: (4 - b.count % 4) % 4) }
    func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
}
