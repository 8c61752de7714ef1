// netlab-bench: engine micro-benchmarks with baselines measured in the same run (scripts/bench). Not a test.
import Engine
import Foundation
import NetCore
import Wire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

@inline(never) func blackHole<T>(_ x: T) { withExtendedLifetime(x) {} }

/// Median nanoseconds per iteration over `rounds` rounds of `iterations` each.
func measure(rounds: Int = 7, iterations: Int, _ body: () -> Void) -> Double {
    var samples: [Double] = []
    for _ in 0..<rounds {
        let t0 = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<iterations { body() }
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / Double(iterations))
    }
    return samples.sorted()[rounds / 2]
}

struct StaticResolver: RouteResolver {
    func outputRoute(_ flow: Flow) -> Result<ResolvedRoute, Errno> {
        .success(ResolvedRoute(destination: flow.destination, source: IPv4Address(192, 0, 2, 10), device: "eth0",
                               gateway: IPv4Address(192, 0, 2, 1)))
    }
    func inetAddrType(_ address: IPv4Address) -> RouteType { address == IPv4Address(192, 0, 2, 10) ? .local : .unicast }
}

/// One whole simulated handshake: connect, the SYN, a SYN-ACK built and fed back, the ACK.
@inline(never) func simulatedHandshake(seed: UInt64) -> Bool {
    var e = ConnectEngine(resolver: StaticResolver(), config: EngineConfig(seed: seed))
    let (_, actions) = e.connect(.inet(IPv4Address(198, 51, 100, 80), 80), now: .zero)
    guard case .send(let syn)? = actions.first(where: { if case .send = $0 { true } else { false } }),
          let v = try? IPv4PacketView(checking: syn.bytes), let t = try? TCPSegmentView(checking: v.payload) else { return false }
    let tcp = TCPHeader(sourcePort: 80, destinationPort: t.sourcePort, seq: SeqNumber(1), ack: t.seq + 1, flags: [.syn, .ack],
                        window: 65160, options: [.mss(1460), .sackPermitted, .timestamps(value: 1, echo: 0), .nop, .windowScale(7)])
    var reply: [UInt8] = []
    IPv4Header(proto: .tcp, source: v.destination, destination: v.source).emit(payloadLength: tcp.headerLength, into: &reply)
    tcp.emit(source: IPv4Address(198, 51, 100, 80), destination: v.source, into: &reply)
    return e.receive(reply, now: .milliseconds(1)).contains(.established)
}

/// One kernel handshake over loopback: socket, connect to a listener, accept, close both.
func kernelHandshake(listener: Int32, port: UInt16) -> Bool {
    let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    let a = accept(listener, nil, nil)
    var linger = linger(l_onoff: 1, l_linger: 0)   // RST on close: no TIME_WAIT piling up
    setsockopt(c, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
    close(a)
    close(c)
    return ok && a >= 0
}

func listener() -> (Int32, UInt16) {
    let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var one: Int32 = 1
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, 4)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(l, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    listen(l, 128)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(l, $0, &len) } }
    return (l, UInt16(bigEndian: addr.sin_port))
}

@main
struct Bench {
    static func main() throws {
        // `netlab-bench route [ROUNDS]`: only the route benchmark (for profiling), ROUNDS passes over the lookups.
        if CommandLine.arguments.dropFirst().first == "route" {
            print(try RouteBench.run(rounds: CommandLine.arguments.dropFirst(2).first.flatMap { Int($0) } ?? 5))
            return
        }
        // A kernel SYN with LSRR (the fixture), as bytes.
        let hex = "47000044d4a940004006d4ccc000020ac0000201830704c633645000c2720050d836f63900000000a002faf0ecbc0000020405b40402080a71bb5739000000000103030a"
        let syn: [UInt8] = stride(from: 0, to: hex.count, by: 2).map {
            let i = hex.index(hex.startIndex, offsetBy: $0); return UInt8(hex[i..<hex.index(i, offsetBy: 2)], radix: 16)!
        }
        let n = 200_000
        let baseline = measure(iterations: n) { blackHole(Checksum.sum(syn)) }
        let parse = measure(iterations: n) {
            let v = try! IPv4PacketView(checking: syn)
            let ip = try! IPv4Header.parse(v)
            let tcp = try! TCPHeader.parse(try! TCPSegmentView(checking: v.payload))
            blackHole((ip, tcp))
        }
        let v = try IPv4PacketView(checking: syn)
        let ip = try IPv4Header.parse(v)
        let tcp = try TCPHeader.parse(try TCPSegmentView(checking: v.payload))
        let emit = measure(iterations: n) {
            var out: [UInt8] = []
            out.reserveCapacity(80)
            ip.emit(payloadLength: tcp.headerLength, into: &out)
            tcp.emit(source: ip.source, destination: IPv4Address(198, 51, 100, 80), into: &out)
            blackHole(out)
        }
        var seed: UInt64 = 0
        let handshake = measure(iterations: 20_000) { seed &+= 1; precondition(simulatedHandshake(seed: seed)) }
        let (l, port) = listener()
        let kernel = measure(rounds: 5, iterations: 2_000) { precondition(kernelHandshake(listener: l, port: port)) }
        close(l)
        func f(_ x: Double) -> String { String(format: "%.0f", x) }
        print("| benchmark | result | baseline (same run) | ratio |")
        print("|---|---:|---:|---:|")
        print("| parse IPv4+LSRR+TCP SYN (68 B) | \(f(parse)) ns/packet | checksum of the same bytes: \(f(baseline)) ns | \(String(format: "%.1f", parse / baseline))× |")
        print("| emit IPv4+LSRR+TCP SYN with checksums | \(f(emit)) ns/packet | checksum of the same bytes: \(f(baseline)) ns | \(String(format: "%.1f", emit / baseline))× |")
        defer {
            if geteuid() == 0 {
                print()
                do { print(try RouteBench.run()) } catch { print("route benchmark failed: \(error)") }
            }
        }
        print("| simulated handshake (connect, SYN, SYN-ACK, ACK) | \(f(1e9 / handshake)) handshakes/s | kernel loopback connect+accept: \(f(1e9 / kernel))/s | \(String(format: "%.1f", kernel / handshake))× the kernel's rate |")
    }
}
