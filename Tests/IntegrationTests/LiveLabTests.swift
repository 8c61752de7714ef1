import Foundation
import Testing

/// A lab that is up: `check` says it reuses it and refuses it once it has drifted (unless --allow-drift); `down
/// --prefix` asks on a terminal and goes ahead in a script.
struct LiveLabTests {
    static func fixedTutorialLab() throws -> String {
        let md = try String(contentsOf: repoRoot.appendingPathComponent("docs/tutorial.md"), encoding: .utf8)
        return TutorialTests.blocks(md, "yaml")[2]
    }

    @Test func checkReusesALabAndRefusesItDrifted() throws {
        let f = try LabFixture(text: try Self.fixedTutorialLab(), base: "drift")
        let bin = try netlabBinary()
        #expect(try run(bin, ["up", f.file]).status == 0)
        let clean = try run(bin, ["check", f.file])
        #expect(clean.status == 0 && clean.stderr.contains("lab \(f.name) is already up (since "), "\(clean.stderr)")
        #expect(f.namespaces().count == 4, "a lab that was up stays up")
        // Drift made behind netlab's back, as a user would: the kernel is told directly.
        let del = try run("/usr/bin/env", ["ip", "-n", "\(f.name)-client", "addr", "del", "203.0.113.10/29", "dev", "eth1"])
        #expect(del.status == 0, "\(del.stderr)")
        let refused = try run(bin, ["check", f.file])
        #expect(refused.status == 1, "\(refused.stderr)")
        #expect(refused.stderr.contains("has drifted from its file") && refused.stderr.contains("client: missing address 203.0.113.10/29 dev eth1")
                && refused.stderr.contains("--allow-drift"), "\(refused.stderr)")
        #expect(!refused.stdout.contains("✔") && !refused.stderr.contains("✔"), "no check ran")
        let allowed = try run(bin, ["check", f.file, "--allow-drift"])
        #expect(allowed.status == 1 && (allowed.stdout + allowed.stderr).contains("EADDRNOTAVAIL"), "\(allowed.stdout) \(allowed.stderr)")
        #expect(try run(bin, ["down", f.name]).status == 0)
    }

    /// `down --prefix` on a terminal (a pty from util-linux's `script`) asks, and "n" leaves the lab up; without a
    /// terminal it goes ahead. (--all is never run here: other labs on the machine are not the test's.)
    @Test func downByPrefixAsksOnATerminal() throws {
        let f = try LabFixture(text: try Self.fixedTutorialLab(), base: "ask")
        let bin = try netlabBinary()
        #expect(try run(bin, ["up", f.file]).status == 0)
        let no = try run("/usr/bin/script", ["-qec", "\(bin) down --prefix \(f.name)", "/dev/null"], input: "n\n")
        #expect(no.stdout.contains("take down 1 lab: \(f.name)? [y/N]") && no.stdout.contains("nothing was taken down"), "\(no.stdout)")
        #expect(f.namespaces().count == 4)
        let script = try run(bin, ["down", "--prefix", f.name, "--json"], input: "")
        #expect(script.status == 0 && script.stdout.contains(f.name), "\(script.stdout)")
        #expect(f.namespaces().isEmpty)
        #expect(try run(bin, ["down", "--prefix", "Bad"]).status == 2)
    }

    /// The blocks of a pcapng file read back by hand (section, interfaces with their if_name, packets with their
    /// interface, epb_flags direction and IPv4 source/destination).
    struct Packet { var interface: String; var direction: UInt32?; var source: String; var destination: String; var tcpFlags: UInt8? }
    static func readPcapNG(_ data: [UInt8]) -> (interfaces: [String], packets: [Packet]) {
        func u16(_ o: Int) -> Int { Int(data[o]) | Int(data[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        var names: [String] = [], packets: [Packet] = []
        var o = 0
        while o + 12 <= data.count {
            let type = u32(o), len = u32(o + 4)
            guard len >= 12, o + len <= data.count else { break }
            func options(from start: Int) -> [(Int, [UInt8])] {
                var out: [(Int, [UInt8])] = [], p = start
                while p + 4 <= o + len - 4 {
                    let code = u16(p), l = u16(p + 2)
                    if code == 0 { break }
                    out.append((code, Array(data[(p + 4)..<(p + 4 + l)])))
                    p += 4 + (l + 3) / 4 * 4
                }
                return out
            }
            if type == 1 {
                names.append(options(from: o + 16).first { $0.0 == 2 }.map { String(decoding: $0.1, as: UTF8.self) } ?? "?")
            } else if type == 6 {
                let iface = u32(o + 8), caplen = u32(o + 20)
                let frame = Array(data[(o + 28)..<(o + 28 + caplen)])
                let flags = options(from: o + 28 + (caplen + 3) / 4 * 4).first { $0.0 == 2 }.map { b in Int(b.1[0]) | Int(b.1[1]) << 8 }
                if frame.count >= 34, frame[12] == 0x08, frame[13] == 0 {
                    let ip = Array(frame[14...])
                    let ihl = Int(ip[0] & 0x0f) * 4
                    packets.append(Packet(interface: iface < names.count ? names[iface] : "?", direction: flags.map { UInt32($0 & 3) },
                                          source: ip[12..<16].map(String.init).joined(separator: "."),
                                          destination: ip[16..<20].map(String.init).joined(separator: "."),
                                          tcpFlags: ip[9] == 6 && ip.count > ihl + 13 ? ip[ihl + 13] : nil))
                }
            }
            o += len
        }
        return (names, packets)
    }

    /// `netlab capture` streams until SIGINT: one interface named node:if, every packet with its direction: the
    /// client's SYN outbound, the server's SYN-ACK inbound. The check pcaps carry the same flags.
    @Test func captureStreamsAnInterfaceWithDirections() throws {
        let f = try LabFixture(text: try Self.fixedTutorialLab(), base: "cap")
        let bin = try netlabBinary()
        #expect(try run(bin, ["up", f.file]).status == 0)
        let wrong = try run(bin, ["capture", f.name, "client", "eth9", "-w", f.directory + "/x.pcapng"])
        #expect(wrong.status == 2 && wrong.stderr.contains("its interfaces: lo, eth0, eth1"), "\(wrong.stderr)")
        let path = f.directory + "/c.pcapng"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = ["capture", f.name, "client", "eth1", "-w", path]
        p.standardError = FileHandle.nullDevice
        try p.run()
        usleep(700_000)
        let c = try run(bin, ["connect", f.name, "client", "198.51.100.80:80", "--bind", "203.0.113.10"])
        #expect(c.status == 0, "\(c.stderr)")
        usleep(300_000)
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let (names, packets) = Self.readPcapNG(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        #expect(names == ["client:eth1"])
        let syn = packets.first { $0.tcpFlags == 0x02 }, synAck = packets.first { $0.tcpFlags == 0x12 }
        #expect(syn?.source == "203.0.113.10" && syn?.direction == 2, "\(packets)")
        #expect(synAck?.source == "198.51.100.80" && synAck?.direction == 1, "\(packets)")

        let dir = f.directory + "/pcaps"
        #expect(try run(bin, ["check", f.file, "--pcap-dir", dir]).status == 0)
        for file in try FileManager.default.contentsOfDirectory(atPath: dir) {
            let (ifs, pk) = Self.readPcapNG(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + file))))
            #expect(ifs.allSatisfy { $0.contains(":") } && !pk.isEmpty, "\(ifs)")
            // Every SYN leaves the client (outbound there) and arrives at the server (inbound there).
            for s in pk where s.tcpFlags == 0x02 {
                if s.interface.hasPrefix("client:") { #expect(s.direction == 2, "\(file) \(s)") }
                if s.interface.hasPrefix("server:") { #expect(s.direction == 1, "\(file) \(s)") }
            }
            #expect(pk.contains { $0.interface.hasPrefix("server:") && $0.tcpFlags == 0x02 }, "\(file)")
        }
        #expect(try run(bin, ["down", f.name]).status == 0)
    }

    /// Completion through swift-argument-parser's protocol (what the generated bash script calls): labs that are
    /// up, the lab's nodes, the node's interfaces.
    @Test func completesLabsNodesAndInterfaces() throws {
        let f = try LabFixture(text: try Self.fixedTutorialLab(), base: "comp")
        let bin = try netlabBinary()
        #expect(try run(bin, ["up", f.file]).status == 0)
        func complete(_ args: [String]) throws -> [String] {
            try run(bin, args).stdout.split(separator: "\n").map(String.init)
        }
        #expect(try complete(["---completion", "capture", "--", "positional@0", "2", "\(f.name.count)", "netlab", "capture", f.name]) == [f.name])
        #expect(try complete(["---completion", "exec", "--", "positional@1", "3", "0", "netlab", "exec", f.name, ""]) == ["client", "isp1", "isp2", "server"])
        #expect(try complete(["---completion", "capture", "--", "positional@2", "4", "1", "netlab", "capture", f.name, "client", "e"]) == ["eth0", "eth1"])
        #expect(try complete(["---completion", "route", "--", "positional@0", "3", "1", "netlab", "route", f.name, "s"]) == ["server"])
        let script = try run(bin, ["--generate-completion-script", "bash"])
        #expect(script.status == 0 && script.stdout.contains("---completion capture -- positional@2"))
        #expect(try run(bin, ["down", f.name]).status == 0)
        #expect(try complete(["---completion", "exec", "--", "positional@1", "3", "0", "netlab", "exec", f.name, ""]).isEmpty)
    }
}
