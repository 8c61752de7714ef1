import NetCore
import NetlabTestSupport
import SystemPackage
import Testing
import Wire
@testable import Engine

/// `__inet_hash_connect` → `__inet_check_established` → `tcp_twsk_unique` with a one-port range whose only 4-tuple
/// to the server is held by a TIME_WAIT socket. The wire behaviour (tw_reuse 0, 1, 2, the delay, the ISN and the
/// SYN's TS echo) is checked against the kernel in IntegrationTests/TimeWaitReuseTests.
@Suite struct TimeWaitReuse {
    static let port: UInt16 = 40000
    static let tuple = PortTable.FourTuple(source: client, sourcePort: port, destination: server, destinationPort: 80)

    func sysctls(reuse: Int, delay: Int = 1000) -> NodeSysctls {
        var s = NodeSysctls()
        s.ipLocalPortRange = Self.port...Self.port
        s.tcpTwReuse = reuse
        s.tcpTwReuseDelay = delay
        return s
    }

    func timeWait(age ms: Int64, timestamps: Bool = true, device: String? = nil, finWait2: Bool = false,
                  source: IPv4Address = client) -> PortTable.TimeWait {
        PortTable.TimeWait(tuple: .init(source: source, sourcePort: Self.port, destination: server, destinationPort: 80),
                           boundDevice: device, finWait2: finWait2, enteredAt: .milliseconds(-ms), timestamps: timestamps,
                           sndNxt: 0x1234_0000, tsRecent: 777)
    }

    func connect(_ s: NodeSysctls, _ tw: PortTable.TimeWait, device: String? = nil) -> (Errno?, TestEngine, [Action]) {
        var e = engine(sysctls: s, ports: PortTable(timeWait: [tw]))
        if let device { _ = e.setOption(.bindToDevice(device)) }
        let (err, actions) = e.connect(.inet(server, 80), now: .zero)
        return (err, e, actions)
    }

    @Test func reuseZeroNeverTakesOverAnEphemeralPort() {
        let (err, e, a) = connect(sysctls(reuse: 0), timeWait(age: 30_000))
        #expect(err == .addressNotAvailable && e.state == .close)
        #expect(a.traces.contains { $0.function == "inet_hash_connect" && $0.detail.contains("EADDRNOTAVAIL") })
    }

    @Test func reuseOneTakesOverOnlyAfterTheDelay() throws {
        #expect(connect(sysctls(reuse: 1), timeWait(age: 1000)).0 == .addressNotAvailable, "time_after32 is strict")
        #expect(connect(sysctls(reuse: 1, delay: 5000), timeWait(age: 4000)).0 == .addressNotAvailable)
        let (err, e, a) = connect(sysctls(reuse: 1), timeWait(age: 1001))
        #expect(err == .nowInProgress && e.sourcePort == Self.port)
        #expect(a.traces.contains { $0.function == "tcp_twsk_unique" })
        // write_seq = tw_snd_nxt + 65535 + 2, and the SYN echoes the inherited ts_recent.
        let syn = try Parsed(a.packets[0].bytes)
        #expect(syn.tcp.seq.raw == 0x1234_0000 &+ 65537)
        #expect(syn.tcp.options.contains(.timestamps(value: syn.tsValue!, echo: 777)))
        // tcp_connect_init: ts_recent_stamp inherited, so the window is rounded to advmss - 12 (measured: 65160).
        #expect(syn.tcp.window == 65160)
        #expect(connect(sysctls(reuse: 1, delay: 0), timeWait(age: 1)).0 == .nowInProgress)
    }

    @Test func reuseTwoOnlyForLoopbackOrABindToLo() {
        #expect(connect(sysctls(reuse: 2), timeWait(age: 5000)).0 == .addressNotAvailable, "documentation addresses are not loopback")
        #expect(connect(sysctls(reuse: 2), timeWait(age: 5000, device: "lo"), device: "lo").0 == .nowInProgress)
    }

    @Test func noTimestampsOrFinWait2SubstateIsNeverTakenOver() {
        #expect(connect(sysctls(reuse: 1), timeWait(age: 5000, timestamps: false)).0 == .addressNotAvailable)
        #expect(connect(sysctls(reuse: 1), timeWait(age: 5000, finWait2: true)).0 == .addressNotAvailable)
    }

    @Test func aTimeWaitBoundToAnotherDeviceDoesNotMatch() {
        // inet_match → inet_sk_bound_dev_eq: a TIME_WAIT bound to eth1 is another 4-tuple for an unbound socket.
        #expect(connect(sysctls(reuse: 0), timeWait(age: 10, device: "eth1")).0 == .nowInProgress)
    }

    @Test func aBoundPortTakesOverWhateverTheSysctl() {
        // __inet_hash_connect with inet_num set calls check_established(..., twp = NULL).
        var e = engine(sysctls: sysctls(reuse: 0), ports: PortTable(timeWait: [timeWait(age: 10)]))
        _ = e.bind(address: client, port: Self.port)
        #expect(e.connect(.inet(server, 80), now: .zero).0 == .nowInProgress)
        var f = engine(sysctls: sysctls(reuse: 0), ports: PortTable(timeWait: [timeWait(age: 10, timestamps: false)]))
        _ = f.bind(address: client, port: Self.port)
        #expect(f.connect(.inet(server, 80), now: .zero).0 == .addressNotAvailable)
    }

    @Test func anUnknownSndNxtKeepsTheKeyedIsn() throws {
        var tw = timeWait(age: 2000)
        tw.sndNxt = nil
        tw.tsRecent = nil
        let (err, _, a) = connect(sysctls(reuse: 1), tw)
        #expect(err == .nowInProgress)
        #expect(a.traces.contains { $0.detail.contains("tw_snd_nxt unknown") })
    }
}

extension Parsed {
    var tsValue: UInt32? {
        for o in tcp.options { if case .timestamps(let v, _) = o { return v } }
        return nil
    }
}

/// bind() to port 0 takes the port at bind time (`inet_csk_get_port` → `inet_csk_find_open_port`), not at connect.
@Suite struct BindPortZero {
    @Test func bindTakesAPortOfTheOtherParityNow() {
        var s = NodeSysctls()
        s.ipLocalPortRange = 40000...40099
        for seed in 1...30 {
            var e = engine(sysctls: s, seed: UInt64(seed))
            #expect(e.bind(address: client, port: 0).0 == nil)
            #expect(e.boundPort % 2 == 1 && (40000...40099).contains(e.boundPort), "odd offset first (seed \(seed))")
        }
    }

    @Test func aTimeWaitOnTheOnlyPortWithAnOverlappingAddressIsEADDRINUSE() {
        var s = NodeSysctls()
        s.ipLocalPortRange = 40001...40001
        let tw = PortTable.TimeWait(tuple: .init(source: client, sourcePort: 40001, destination: server, destinationPort: 80),
                                    enteredAt: .milliseconds(-5000))
        let ports = PortTable(endpoints: [.init(address: client, port: 40001)], timeWait: [tw])
        var e = engine(sysctls: s, ports: ports)
        #expect(e.bind(address: client, port: 0).0 == .addressInUse)
        let twoAddresses = FakeResolver.fixtureClient()
        twoAddresses.localAddresses = [client, IPv4Address(192, 0, 2, 11)]
        var other = engine(twoAddresses, sysctls: s, ports: ports)
        #expect(other.bind(address: IPv4Address(192, 0, 2, 11), port: 0).0 == nil, "another address does not overlap")
        #expect(other.boundPort == 40001)
    }
}
