import NetCore
import NetlabTestSupport
import SystemPackage
import Testing
import Wire
@testable import Engine

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

/// A SYN-ACK from the server for the engine's SYN.
func synAck(for syn: Parsed, seq: UInt32 = 1000, ack: UInt32? = nil, flags: TCPFlags = [.syn, .ack], tsVal: UInt32 = 777,
            wscale: UInt8 = 7, window: UInt16 = 65160, source: IPv4Address = server) -> [UInt8] {
    let tcp = TCPHeader(sourcePort: syn.tcp.destinationPort, destinationPort: syn.tcp.sourcePort, seq: SeqNumber(seq),
                        ack: SeqNumber(ack ?? syn.tcp.seq.raw &+ 1), flags: flags, window: window,
                        options: [.mss(1460), .sackPermitted, .timestamps(value: tsVal, echo: 0), .nop, .windowScale(wscale)])
    return packet(tcp, source: source, destination: syn.ip.source)
}
