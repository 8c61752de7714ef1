// A failover experiment through the NetLab API: take ISP1's link down, wait until new connections leave by ISP2
// (engine and kernel agreeing on every connect), report how long that took, bring ISP1 back, and check that the
// kernel holds exactly the file plus the changes made. The lab comes down on every exit path, Ctrl-C included.
//
//   netlab-failover-example [Labs/isp-failover.topo] [LAB-NAME]
import Foundation
import NetLab

let path = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Labs/isp-failover.topo"
let name = CommandLine.arguments.count > 2 ? CommandLine.arguments[2] : "ispfo-api"

func ms(_ d: Duration) -> String {
    let c = d.components
    return String(format: "%.1f ms", Double(c.seconds) * 1000 + Double(c.attoseconds) / 1e15)
}

func experiment() async throws -> Bool {
    var topology = try Topology.load(path: path)
    topology.lab = name
    return try await Lab.with(topology) { lab in
        let server = IPv4Address("192.0.2.80")!
        func viaISP(_ source: String) async throws -> Bool {
            let c = try await lab.connect(from: "client", to: server, port: 80)
            guard c.agree else { throw LabError.system("engine and kernel differ: \(c.differences)") }
            return c.engine.result == "established" && c.engine.source == source
        }
        guard try await viaISP("198.51.100.10") else { print("before: not by ISP1"); return false }
        print("before: by ISP1 (198.51.100.10, eth0)")
        try lab.set("client link eth0 down")
        guard let t = try await lab.waitUntil(within: .seconds(5), { try await viaISP("203.0.113.10") }) else {
            print("no failover within 5 s"); return false
        }
        print("failover: by ISP2 (203.0.113.10, eth1) after \(ms(t))")
        try lab.set("client link eth0 up")
        guard let back = try await lab.waitUntil(within: .seconds(5), { try await viaISP("198.51.100.10") }) else {
            print("ISP1 did not come back within 5 s"); return false
        }
        print("back: by ISP1 after \(ms(back))")
        let drift = try lab.status().drift
        print(drift.isEmpty ? "no drift: the kernel holds the file plus the 2 changes" : "drift: \(drift)")
        return drift.isEmpty
    }
}

do {
    exit(try await experiment() ? 0 : 1)
} catch LabError.interrupted(let signal) {
    FileHandle.standardError.write("interrupted; the lab was taken down\n".data(using: .utf8)!)
    exit(128 + signal)
} catch {
    FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
    exit(1)
}
