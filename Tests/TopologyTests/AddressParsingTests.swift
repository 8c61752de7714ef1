import NetCore
import Testing

/// Dotted quads as the topology format takes them (no shorthand, no octal-looking leading zeros), parsed in one pass.
struct AddressParsing {
    @Test(arguments: ["0.0.0.0", "255.255.255.255", "192.0.2.1", "198.51.100.10", "10.0.0.0", "1.2.3.4"])
    func roundTrips(_ text: String) throws {
        let a = try #require(IPv4Address(text))
        #expect(a.description == text)
        let o = text.split(separator: ".").map { UInt32($0)! }
        #expect(a.value == o[0] << 24 | o[1] << 16 | o[2] << 8 | o[3])
    }

    @Test(arguments: ["", ".", "1.2.3", "1.2.3.4.5", "1..2.3", "1.2.3.", ".1.2.3", "256.1.1.1", "1.2.3.1000", "01.2.3.4",
                      "1.2.3.04", "00.1.1.1", "1.2.3.4 ", " 1.2.3.4", "1.2.3.a", "1.2.3.-1", "١.2.3.4", "1.2.3.4/24", "0x1.2.3.4"])
    func rejects(_ text: String) {
        #expect(IPv4Address(text) == nil)
    }

    @Test func prefixes() throws {
        #expect(IPv4Prefix("192.0.2.0/24") == IPv4Prefix(IPv4Address(192, 0, 2, 0), 24))
        #expect(IPv4Prefix("192.0.2.7") == IPv4Prefix(IPv4Address(192, 0, 2, 7), 32))
        #expect(IPv4Prefix("192.0.2.7", defaultLength: 24)?.length == 24)
        #expect(IPv4Prefix("0.0.0.0/0")?.length == 0)
        for bad in ["192.0.2.0/33", "192.0.2.0/", "192.0.2.0/-1", "192.0.2.0/2a", "192.0.2.0/24/1", "/24", "192.0.2/24"] {
            #expect(IPv4Prefix(bad) == nil, "\(bad)")
        }
    }
}
