@testable import Driver
import Engine
import NetCore
import Oracle
import SystemPackage
import Testing

// The engine-versus-kernel decision on outcome fixtures: two connects as the driver reports them (what each side
// decided, what the capture saw), the differences and notes the comparison must find. No root, no namespace.

func a(_ s: String) -> IPv4Address { IPv4Address(s)! }

/// An established connect from 198.51.100.10:40000 by eth0 via 198.51.100.1, seen on client → r1 → server.
func outcome(source: String = "198.51.100.10", port: UInt16 = 40000, dev: String = "eth0", via: String = "198.51.100.1",
             errno: Errno? = nil, ttl: Int = 64, reply: String = "SYN-ACK", path: [String] = ["client", "r1", "server"],
             syns: Int = 1) -> ConnectOutcome {
    var o = ConnectOutcome(errno: errno, source: a(source), sourcePort: port)
    o.device = dev
    o.nextHop = a(via)
    let syn = SynSummary(options: ["mss", "sackOK", "TS", "nop", "wscale"], mss: 1460, window: 64240, windowScale: 7, ttl: ttl,
                         df: true, tos: 0, ipOptions: [], flags: "S", seq: 1000, tsEcho: 0)
    o.observed = ObservedPath(synHops: ["client:\(dev)>"], replyHops: [], path: path, replyPath: path.reversed(), device: dev,
                              nextHopMAC: nil, synDestination: a("192.0.2.80"), syn: syn, reply: reply, synsSent: syns)
    return o
}

@Suite struct CompareTests {
    @Test func identicalConnectsAgree() {
        let v = Oracle.compare(engine: outcome(), kernel: outcome())
        #expect(v.differences.isEmpty && v.notes.isEmpty && !v.otherLeg && v.agree)
    }

    @Test func refusedAgainstEstablishedDiffersInResultAndErrno() {
        var k = outcome(errno: .connectionRefused, reply: "RST")
        k.observed?.synsSent = 1
        let v = Oracle.compare(engine: outcome(), kernel: k)
        #expect(v.differences == [.result(engine: .established, kernel: .refused), .errno(engine: nil, kernel: .connectionRefused)])
        #expect(v.differences.map(\.description) == ["result: engine established, kernel refused", "errno: engine -, kernel ECONNREFUSED"])
    }

    @Test func anotherLegTheEngineAllowsIsANoteNotADifference() {
        var e = outcome()
        let other = ConnectOutcome.Leg(source: a("203.0.113.10"), device: "eth1", nextHop: a("203.0.113.1"))
        e.alternatives = [ConnectOutcome.Leg(source: a("198.51.100.10"), device: "eth0", nextHop: a("198.51.100.1")), other]
        e.sourceLegs = e.alternatives
        let k = outcome(source: "203.0.113.10", dev: "eth1", via: "203.0.113.1", path: ["client", "r2", "server"])
        let v = Oracle.compare(engine: e, kernel: k)
        #expect(v.otherLeg && v.differences.isEmpty)
        #expect(v.notes.map(\.description) == ["the kernel's hash chose another equal-cost leg (src 203.0.113.10 dev eth1 via 203.0.113.1); the engine allows it"])
        // The engine runs again with the kernel's leg first, and the leg its source came from first.
        let spec = ConnectSpec(destination: a("192.0.2.80"), port: 80)
        let again = Oracle.rerunOnKernelLeg(spec, v)
        #expect(again?.preferredLeg?.device == "eth1" && again?.preferredLeg?.nextHop == a("203.0.113.1"))
        #expect(again?.preferredSourceLeg?.device == "eth1" && again?.destination == spec.destination)
        #expect(Oracle.rerunOnKernelLeg(spec, Oracle.compare(engine: e, kernel: e)) == nil)
    }

    @Test func anotherLegTheEngineDoesNotAllowIsADifference() {
        let k = outcome(source: "203.0.113.10", dev: "eth1", via: "203.0.113.1", path: ["client", "r2", "server"])
        let v = Oracle.compare(engine: outcome(), kernel: k)
        #expect(!v.otherLeg && v.notes.isEmpty)
        #expect(v.differences == [.source(engine: a("198.51.100.10"), kernel: a("203.0.113.10")),
                                  .device(engine: "eth0", kernel: "eth1"), .nextHop(engine: a("198.51.100.1"), kernel: a("203.0.113.1")),
                                  .path(engine: ["client", "r1", "server"], kernel: ["client", "r2", "server"]),
                                  .replyPath(engine: ["server", "r1", "client"], kernel: ["server", "r2", "client"])])
        #expect(v.differences.map(\.description) == [
            "source: engine 198.51.100.10, kernel 203.0.113.10", "dev: engine eth0, kernel eth1", "via: engine 198.51.100.1, kernel 203.0.113.1",
            #"path: engine ["client", "r1", "server"], kernel ["client", "r2", "server"]"#,
            #"reply_path: engine ["server", "r1", "client"], kernel ["server", "r2", "client"]"#])
    }

    @Test func aKernelSourceOfZeroIsNotCompared() {
        var k = outcome(source: "0.0.0.0", errno: .networkUnreachable)
        k.observed = nil
        k.device = nil; k.nextHop = nil
        var e = outcome(errno: .networkUnreachable)
        e.observed = nil
        e.device = nil; e.nextHop = nil
        #expect(Oracle.compare(engine: e, kernel: k).differences.isEmpty)
    }

    @Test func theEnginesOwnSYNMustLeaveWhereItDecided() {
        var e = outcome()
        e.observed?.device = "eth1"
        let v = Oracle.compare(engine: e, kernel: nil)
        #expect(v.differences == [.engineDeviceNotOnWire(decided: "eth0", wire: "eth1")])
        #expect(v.differences.map(\.description) == ["engine decided dev eth0 but its SYN left by eth1"])
    }

    @Test func synFieldsAndRetransmissions() {
        let v = Oracle.compare(engine: outcome(), kernel: outcome(ttl: 63, syns: 2))
        #expect(v.differences == [.syn(.ttl(engine: 64, kernel: 63)), .synsSent(engine: 1, kernel: 2)])
        #expect(v.differences.map(\.description) == ["syn ttl: engine 64, kernel 63", "syns sent: engine 1, kernel 2"])
        var k = outcome()
        k.observed?.syn = nil
        #expect(Oracle.compare(engine: outcome(), kernel: k).differences.map(\.description) == ["syn: kernel sent none"])
    }

    @Test func timeWaitTakenOverOnTheSame4Tuple() {
        var e = outcome()
        let tuple = PortTable.FourTuple(source: a("198.51.100.10"), sourcePort: 40000, destination: a("192.0.2.80"), destinationPort: 80)
        e.reusedTimeWait = PortTable.TimeWait(tuple: tuple, enteredAt: Instant(nanoseconds: 0), timestamps: true, sndNxt: 5000)
        let v = Oracle.compare(engine: e, kernel: outcome())
        #expect(v.differences == [.timeWaitTakenOver(engine: true, kernel: false)])
        #expect(v.differences.map(\.description) == ["time_wait: engine taken over, kernel not taken over"])
        // Taken over before this session watched it: ISN and TS echo are not compared, and a note says so.
        e.reusedTimeWait?.sndNxt = nil
        var k = outcome()
        k.reusedTimeWait = e.reusedTimeWait
        k.observed?.syn?.seq = 99
        let u = Oracle.compare(engine: e, kernel: k)
        #expect(u.differences.isEmpty && u.notes == [.timeWaitNotWatched] && u.notes[0].isAboutSharedState)
    }

    @Test func anICMPErrorUnderUnknownBucketsRunsBothAgain() {
        let k = outcome(errno: .noRouteToHost, reply: "ICMP 3/1 from 198.51.100.1")
        let v = Oracle.compare(engine: outcome(), kernel: k)
        #expect(!v.agree)
        #expect(Oracle.rerunForICMPBuckets(v, historyKnown: false))
        #expect(!Oracle.rerunForICMPBuckets(v, historyKnown: true))
        #expect(!Oracle.rerunForICMPBuckets(Oracle.compare(engine: outcome(), kernel: outcome()), historyKnown: false))
        #expect(ComparisonNote.icmpRerun(firstDifferences: v.differences).isAboutSharedState)
        #expect(!ComparisonNote.kernelTookOtherLeg(source: nil, device: "eth0", nextHop: a("192.0.2.1")).isAboutSharedState)
    }
}
