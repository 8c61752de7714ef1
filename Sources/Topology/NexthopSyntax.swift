import Yams

/// A nexthop object as a node declares it (`nexthops:` in iproute2 words, as `ip nexthop add` takes them).
public struct NexthopSpec: Sendable {
    public var location: SourceLocation
    public var text: String
    public var id: UInt32
    public var gateway: IPv4Address?
    public var dev: String?
    public var onlink: Bool
    public var blackhole: Bool
    /// `group 1/2,3`: member ids with weights.
    public var group: [(id: UInt32, weight: Int)]
    /// `type resilient`.
    public var resilient: Bool
    /// `buckets N` of a resilient group (the kernel requires it).
    public var buckets: Int? = nil
}

extension TopologyParser {
    static let nexthopWords = ["id", "via", "dev", "onlink", "blackhole", "group", "type", "buckets"]

    /// `id N via G dev D [onlink]`, `id N group A[,W][/B[,W]...] [type mpath|resilient [buckets N]]`, `id N blackhole`.
    mutating func parseNexthopObject(_ node: Yams.Node, node owner: String) -> NexthopSpec? {
        guard let text = reader.scalar(node, "a nexthop") else { return nil }
        let at = reader.textLocation(node)
        let tokens = tokenize(text, at: at)
        var spec = NexthopSpec(location: at, text: text, id: 0, gateway: nil, dev: nil, onlink: false, blackhole: false,
                               group: [], resilient: false)
        var ok = true
        var i = 0
        func value(_ t: Token) -> Token? {
            guard i + 1 < tokens.count else { reader.error(t.at, "\"\(t.text)\" needs a value", length: t.text.count); ok = false; return nil }
            i += 1
            return tokens[i]
        }
        while i < tokens.count {
            let t = tokens[i]
            switch t.text {
            case "id":
                if let v = value(t) {
                    if let n = number(v, "nexthop id"), n >= 1 { spec.id = UInt32(n) } else {
                        if parseNumber(v.text) == 0 { reader.error(v.at, "nexthop id 0 asks the kernel to choose one; give an id from 1", length: v.text.count) }
                        ok = false
                    }
                }
            case "via": if let v = value(t) { if let a = address(v, "gateway") { spec.gateway = a } else { ok = false } }
            case "dev":
                if let v = value(t) {
                    spec.dev = v.text
                    if let p = interfaceNameProblem(v.text) { reader.error(v.at, p, length: v.text.count); ok = false }
                }
            case "onlink": spec.onlink = true
            case "blackhole": spec.blackhole = true
            case "group":
                guard let v = value(t) else { break }
                for part in v.text.split(separator: "/", omittingEmptySubsequences: false) {
                    let f = part.split(separator: ",", omittingEmptySubsequences: false)
                    guard f.count <= 2, let id = UInt32(f[0]), id >= 1, f.count == 1 || (UInt32(f[1]).map { (1...256).contains($0) } ?? false) else {
                        reader.error(v.at, "group \"\(v.text)\" is not ID[,WEIGHT][/ID[,WEIGHT]...]", hint: "e.g. group 1/2,3 (weights 1-256)",
                                     length: v.text.count)
                        ok = false
                        break
                    }
                    spec.group.append((id, f.count == 2 ? Int(f[1])! : 1))
                }
            case "type":
                if let v = value(t) {
                    switch v.text {
                    case "mpath": spec.resilient = false
                    case "resilient": spec.resilient = true
                    default: reader.error(v.at, "group type \"\(v.text)\" is not mpath or resilient", length: v.text.count); ok = false
                    }
                }
            case "buckets":
                if let v = value(t) { if let n = number(v, "buckets", max: 65535), n >= 1 { spec.buckets = Int(n) } else { ok = false } }
            default:
                let hint = nearest(t.text, in: Self.nexthopWords).map { "did you mean \"\($0)\"?" }
                    ?? "a nexthop takes: " + Self.nexthopWords.joined(separator: ", ")
                reader.error(t.at, "unknown word \"\(t.text)\" in nexthop", hint: hint, length: t.text.count)
                ok = false
            }
            i += 1
        }
        if spec.id == 0, ok {
            reader.error(at, "nexthop \"\(text)\" has no id", hint: "start with `id N`, e.g. id 1 via 198.51.100.1 dev eth0")
            return nil
        }
        let kinds = [spec.blackhole, !spec.group.isEmpty, spec.gateway != nil || spec.dev != nil].filter { $0 }.count
        if ok, kinds != 1 {
            reader.error(at, "nexthop \(spec.id) must be one of: via/dev, group, blackhole",
                         hint: "id N via G dev D | id N group A/B | id N blackhole")
            ok = false
        }
        if ok, kinds == 1, spec.group.isEmpty, !spec.blackhole, spec.dev == nil {
            reader.error(at, "nexthop \(spec.id) needs `dev` (the kernel requires a device for a gateway nexthop)",
                         hint: "id \(spec.id) via \(spec.gateway?.description ?? "G") dev eth0")
            ok = false
        }
        if ok, spec.resilient, spec.buckets == nil {
            reader.error(at, "resilient group \(spec.id) needs `buckets N` (the kernel requires the number of buckets)",
                         hint: "e.g. id \(spec.id) group 1/2 type resilient buckets 32")
            ok = false
        }
        return ok ? spec : nil
    }
}
