import Foundation
import Testing

/// TIME_WAIT reuse on the wire (`__inet_hash_connect` → `__inet_check_established` → `tcp_twsk_unique`): each node
/// has one ephemeral port, so its second connect to the server finds the 4-tuple held by the TIME_WAIT the first
/// (kernel) connect left. The kernel decides; the engine, reading the TIME_WAIT with NETLINK_SOCK_DIAG and its
/// `tw_snd_nxt`/`tw_ts_recent` from the capture of the first connect, must decide the same, send the same ISN
/// (`tw_snd_nxt + 65535 + 2`) and TS echo, and round its window as the kernel does.
@Suite(.serialized, .enabled(if: Root.enabled, "needs root; under CI=true it runs and fails without root"))
struct TimeWaitReuseTests {
    init() throws { try #require(Root.isRoot, "integration tests need root") }

    struct Report: Decodable {
        struct Syn: Decodable { var seq: UInt32; var tsEcho: UInt32?; var window: Int; enum CodingKeys: String, CodingKey { case seq, tsEcho = "ts_echo", window } }
        struct Side: Decodable { var result: String; var errno: String?; var sport: UInt16?; var time_wait: String?; var syn: Syn? }
        struct Result: Decodable { var name: String; var passed: Bool; var failures: [String]; var engine: Side?; var kernel: Side?; var notes: [String] }
        var results: [Result]
    }

    /// Nodes a0..a5 each reach s over their own link; `reuse`/`delay` per node, two connects each.
    static let cases: [(node: String, sysctl: String, dev: String?, taken: Bool)] = [
        ("a0", "net.ipv4.tcp_tw_reuse: 0", nil, false),
        ("a1", "net.ipv4.tcp_tw_reuse: 1, net.ipv4.tcp_tw_reuse_delay: 1", nil, true),
        ("a2", "net.ipv4.tcp_tw_reuse: 2", nil, false),                                     // not loopback
        ("a3", "net.ipv4.tcp_tw_reuse: 1, net.ipv4.tcp_tw_reuse_delay: 60000", nil, false),  // never old enough
        ("a4", "net.ipv4.tcp_tw_reuse: 1, net.ipv4.tcp_tw_reuse_delay: 1500", nil, true),    // the driver waits it out
        ("a5", "net.ipv4.tcp_tw_reuse: 2", "lo", true),                                      // bound to lo: loopback
        ("a6", "net.ipv4.tcp_tw_reuse: 1, net.ipv4.tcp_timestamps: 0", nil, false),         // tw_ts_recent_stamp 0
    ]

    func lab() -> String {
        var nodes = "", links = "", checks = "", sIfs = ""
        for (k, c) in Self.cases.enumerated() {
            let me = "198.51.100.\(k * 8 + 1)", server = "198.51.100.\(k * 8 + 2)"
            // With dev lo the connect goes to the node's own address (its own listener).
            let target = c.dev == "lo" ? "192.0.2.\(k + 1)" : server
            nodes += """
              \(c.node):
                sysctl: {net.ipv4.ip_local_port_range: "40000 40000", \(c.sysctl)}
                interfaces: {eth0: [\(me)/29], lo: [192.0.2.\(k + 1)/32]}
                listen: [80]

            """
            sIfs += "eth\(k): [\(server)/29], "
            links += "  - [\(c.node):eth0, s:eth\(k)]\n"
            for round in ["first", "second"] {
                checks += "  - name: \(c.node) \(round)\n    from: \(c.node)\n    connect: \(target):80\n    payload: \(round)\n"
                if let d = c.dev { checks += "    dev: \(d)\n" }
            }
        }
        return "lab: tw\nnodes:\n\(nodes)  s:\n    interfaces: {\(sIfs.dropLast(2))}\n    listen: [80]\nlinks:\n\(links)checks:\n\(checks)"
    }

    @Test func engineTakesOverATimeWaitExactlyWhenTheKernelDoes() throws {
        let f = try LabFixture(text: lab(), base: "twreuse")
        let r = try netlab("check", f.file, "--json-file", "\(f.directory)/r.json")
        try #require(FileManager.default.fileExists(atPath: "\(f.directory)/r.json"), "\(r.stdout)\n\(r.stderr)")
        let report = try JSONDecoder().decode(Report.self, from: Data(contentsOf: URL(fileURLWithPath: "\(f.directory)/r.json")))
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        for c in Self.cases {
            let first = try #require(report.results.first { $0.name == "\(c.node) first" })
            let second = try #require(report.results.first { $0.name == "\(c.node) second" })
            #expect(first.passed && second.passed, "\(c.node): \(first.failures) \(second.failures)")
            let k = try #require(second.kernel), e = try #require(second.engine)
            if c.taken {
                #expect(k.result == "established" && k.sport == 40000 && k.time_wait != nil, "\(c.node): kernel \(k)")
                #expect(e.time_wait != nil, "\(c.node): the engine did not take the TIME_WAIT over")
                // The ISN comes from the TIME_WAIT and the SYN echoes its ts_recent (timestamps on).
                let ks = try #require(k.syn), es = try #require(e.syn)
                #expect(ks.seq == es.seq && ks.tsEcho == es.tsEcho && (ks.tsEcho ?? 0) != 0, "\(c.node): \(ks) \(es)")
                #expect(ks.window == es.window, "\(c.node): tcp_connect_init rounds to advmss - 12")
            } else {
                #expect(k.errno == "EADDRNOTAVAIL" && e.errno == "EADDRNOTAVAIL", "\(c.node): kernel \(k), engine \(e)")
            }
        }
        #expect(f.namespaces().isEmpty, "left behind: \(f.namespaces())")
    }
}
