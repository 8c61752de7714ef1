import Driver
import Oracle
import NetCore

/// How a connect comparison reads on a terminal.
public enum ConnectText {
    public static func line(_ s: SideReport) -> String {
        var out = s.errno.map { "\(s.result) (\($0))" } ?? s.result
        if let src = s.source { out += "  \(src):\(s.sport ?? 0)" }
        if let d = s.dev { out += "  dev \(d)" }
        if let n = s.via { out += " via \(n)" }
        if let h = s.handshakeMs { out += "  handshake \(String(format2(h))) ms" }
        return out
    }

    public static func render(_ c: ConnectComparison, trace: Bool) -> String {
        var out: [String] = []
        func side(_ label: String, _ s: SideReport) {
            out.append("\(label) \(line(s))")
            if !s.path.isEmpty { out.append("    path:  " + s.path.joined(separator: " → ") + "   (" + s.hops.joined(separator: " ") + ")") }
            if !s.replyPath.isEmpty { out.append("    reply: " + s.replyPath.joined(separator: " → ") + (s.reply.map { "   (\($0))" } ?? "")) }
            if let e = s.echoed { out.append("    echoed: \"\(visible(e))\"") }   // bytes from the wire
            if let tw = s.timeWait { out.append("    \(tw)") }
        }
        side("engine:", c.engine)
        if let k = c.kernel { side("kernel:", k) }
        if trace {
            out.append("trace:")
            out += c.engine.trace.map { "    " + $0 }
        }
        for n in c.notes { out.append("note: \(n)") }
        if c.kernel != nil || !c.differences.isEmpty {
            out.append(c.agree ? "agree" : "DIFFER:")
            out += c.differences.map { "    " + $0 }
        }
        return out.joined(separator: "\n")
    }
}

func format2(_ x: Double) -> String {
    let v = (x * 100).rounded() / 100
    return "\(v)"
}
