/// Byte offsets of an Ethernet II header (IEEE 802.3), as smoltcp's `ethernet::field`: what a packet socket reads
/// and a classic BPF filter tests.
public enum EthernetField {
    public static let destination = 0
    public static let source = 6
    public static let etherType = 12
    /// The header's length: the payload (an IPv4 datagram) starts here.
    public static let headerLength = 14
    public static let addressLength = 6
}

/// EtherType values (IEEE 802 numbers).
public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
}
