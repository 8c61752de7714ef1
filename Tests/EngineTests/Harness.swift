import Foundation
import NetCore
import SystemPackage
import Testing
import Wire
@testable import Engine

let client = IPv4Address(192, 0, 2, 10), r1 = IPv4Address(192, 0, 2, 1), server = IPv4Address(198, 51, 100, 80)
let wireFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("WireTests/Fixtures")

func hexFixture(_ name: String) throws -> [UInt8] {
    let hex = try String(contentsOf: wireFixtures.appendingPathComponent(name + ".hex"), encoding: .utf8)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    return stride(from: 0, to: hex.count, by: 2).map {
        let i = hex.index(hex.startIndex, offsetBy: $0)
        return UInt8(hex[i..<hex.index(i, offsetBy: 2)], radix: 16)!
    }
}

/// A resolver answering from a closure and recording every flow it was asked about.
final class FakeResolver: RouteResolver, @unchecked Sendable {
    var flows: [Flow] = []
    let answer: (Flow) -> Result<ResolvedRoute, Errno>
    init(_ answer: @escaping (Flow) -> Result<ResolvedRoute, Errno>) { self.answer = answer }
    func outputRoute(_ flow: Flow) -> Result<ResolvedRoute, Errno> {
        flows.append(flow)
        return answer(flow)
    }
    /// The node's own addresses (the fixture client's by default).
    var localAddresses: Set<IPv4Address> = [client]
    var broadcastAddresses: Set<IPv4Address> = []
    func inetAddrType(_ address: IPv4Address) -> RouteType {
        localAddresses.contains(address) ? .local : broadcastAddresses.contains(address) ? .broadcast : .unicast
    }
    /// The fixture lab's client: everything via r1 on eth0, source 192.0.2.10.
    static func fixtureClient(mtu: Int = 1500) -> FakeResolver {
        FakeResolver { f in
            .success(ResolvedRoute(destination: f.destination, source: f.source == .any ? client : f.source, device: "eth0",
                                   deviceMTU: mtu, gateway: f.destination == r1 ? nil : r1))
        }
    }
}

typealias TestEngine = ConnectEngine<FakeResolver>

func engine(_ resolver: FakeResolver = .fixtureClient(), sysctls: NodeSysctls = NodeSysctls(), ports: PortTable = PortTable(),
            seed: UInt64 = 1) -> TestEngine {
    ConnectEngine(resolver: resolver, config: EngineConfig(sysctls: sysctls, ports: ports, seed: seed))
}

extension Array where Element == Action {
    var packets: [OutgoingPacket] { compactMap { if case .send(let p) = $0 { p } else { nil } } }
    var timers: [Instant] { compactMap { if case .armTimer(let t) = $0 { t } else { nil } } }
    var failure: Errno? { compactMap { if case .failed(let e) = $0 { e } else { nil } }.first }
    var isEstablished: Bool { contains(.established) }
    var traceFunctions: [String] { compactMap { if case .trace(let t) = $0 { t.function } else { nil } } }
    var traces: [TraceEvent] { compactMap { if case .trace(let t) = $0 { t } else { nil } } }
    var received: [UInt8] { var out: [UInt8] = []; for a in self { if case .received(let d) = a { out += d } }; return out }
}

struct Parsed {
    let ip: IPv4Header
    let tcp: TCPHeader
    let payload: [UInt8]
    let view: IPv4PacketView
    init(_ bytes: [UInt8]) throws {
        view = try IPv4PacketView(checking: bytes)
        ip = try IPv4Header.parse(view)
        let t = try TCPSegmentView(checking: view.payload)
        tcp = try TCPHeader.parse(t)
        payload = Array(t.payload)
    }
}

/// A SYN-ACK from the server for the engine's SYN.
func synAck(for syn: Parsed, seq: UInt32 = 1000, ack: UInt32? = nil, flags: TCPFlags = [.syn, .ack], tsVal: UInt32 = 777,
            wscale: UInt8 = 7, window: UInt16 = 65160, source: IPv4Address = server) -> [UInt8] {
    let tcp = TCPHeader(sourcePort: syn.tcp.destinationPort, destinationPort: syn.tcp.sourcePort, seq: SeqNumber(seq),
                        ack: SeqNumber(ack ?? syn.tcp.seq.raw &+ 1), flags: flags, window: window,
                        options: [.mss(1460), .sackPermitted, .timestamps(value: tsVal, echo: 0), .nop, .windowScale(wscale)])
    return packet(tcp, source: source, destination: syn.ip.source)
}

func packet(_ tcp: TCPHeader, payload: [UInt8] = [], source: IPv4Address, destination: IPv4Address) -> [UInt8] {
    var out: [UInt8] = []
    IPv4Header(ttl: 63, proto: 6, source: source, destination: destination).emit(payloadLength: tcp.headerLength + payload.count, into: &out)
    tcp.emit(payload: payload, source: source, destination: destination, into: &out)
    return out
}
