import Yams

/// Walks a composed YAML tree and collects diagnostics instead of stopping at the first problem.
struct YAMLReader {
    var diagnostics: [Diagnostic] = []

    /// A name that must be unique among its siblings (checks, experiments): taken in `names` (name → line) at
    /// `keyLine`, or an error naming the line that has it already.
    mutating func claim(_ name: String, at node: Yams.Node, keyLine: Int, in names: inout [String: Int], what: String, hint: String) {
        if let line = names[name] {
            error(textLocation(node), "\(what) name \"\(name)\" is already used by the \(what) at line \(line)", hint: hint, length: name.count)
        }
        names[name] = keyLine
    }

    mutating func error(_ at: SourceLocation, _ message: String, hint: String? = nil, length: Int = 1) {
        diagnostics.append(Diagnostic(at, message, hint: hint, length: length))
    }

    func location(_ node: Yams.Node) -> SourceLocation {
        guard let m = node.mark else { return .unknown }
        return SourceLocation(line: m.line, column: m.column)
    }

    /// Where the text of a scalar starts (after an opening quote).
    func textLocation(_ node: Yams.Node) -> SourceLocation {
        let l = location(node)
        if case .scalar(let s) = node, s.style == .singleQuoted || s.style == .doubleQuoted { return l.advanced(by: 1) }
        return l
    }

    /// A mapping's entries in file order. Keys not in `allowed` are reported with the nearest valid key.
    mutating func mapping(_ node: Yams.Node, _ what: String, allowed: [String]?) -> [(key: String, at: SourceLocation, value: Yams.Node)]? {
        guard case .mapping(let m) = node else {
            error(location(node), "\(what) must be a mapping (key: value)", hint: allowed.map { "valid keys: " + $0.joined(separator: ", ") })
            return nil
        }
        var out: [(String, SourceLocation, Yams.Node)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else {
                error(location(k), "a key in \(what) must be a plain name")
                continue
            }
            if let allowed, !allowed.contains(ks.string) {
                let hint = nearest(ks.string, in: allowed).map { "did you mean \"\($0)\"?" }
                    ?? "valid keys: " + allowed.joined(separator: ", ")
                error(location(k), "unknown key \"\(ks.string)\" in \(what)", hint: hint, length: ks.string.count)
                continue
            }
            out.append((ks.string, location(k), v))
        }
        return out
    }

    mutating func sequence(_ node: Yams.Node, _ what: String) -> [Yams.Node]? {
        switch node {
        case .sequence(let s): return Array(s)
        case .scalar(let s) where s.string.isEmpty && s.style == .plain && s.tag.description.hasSuffix("null"): return []
        default:
            error(location(node), "\(what) must be a list")
            return nil
        }
    }

    mutating func scalar(_ node: Yams.Node, _ what: String) -> String? {
        guard case .scalar(let s) = node else {
            error(location(node), "\(what) must be a single value, not a list or mapping")
            return nil
        }
        return s.string
    }

    mutating func bool(_ node: Yams.Node, _ what: String) -> Bool? {
        guard let s = scalar(node, what) else { return nil }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            error(textLocation(node), "\(what) must be true or false, not \"\(s)\"", length: s.count)
            return nil
        }
    }

    func isNull(_ node: Yams.Node) -> Bool {
        if case .scalar(let s) = node, s.style == .plain, ["", "~", "null"].contains(s.string) { return true }
        return false
    }
}

/// A word of a one-line iproute2-style string with its place in the file.
struct Token {
    var text: String
    var at: SourceLocation
}

func tokenize(_ text: String, at start: SourceLocation) -> [Token] {
    var out: [Token] = []
    var current = "", begin = 0, col = 0
    for ch in text {
        if ch == " " || ch == "\t" {
            if !current.isEmpty { out.append(Token(text: current, at: start.advanced(by: begin))) }
            current = ""
        } else {
            if current.isEmpty { begin = col }
            current.append(ch)
        }
        col += 1
    }
    if !current.isEmpty { out.append(Token(text: current, at: start.advanced(by: begin))) }
    return out
}

/// Key/value settings gathered from either form of a route or rule (an iproute2 string or a YAML mapping), so one
/// builder turns both into the model.
struct Settings {
    var values: [String: Token] = [:]
    var order: [String] = []
    var nexthops: [Settings] = []
    var at: SourceLocation

    init(at: SourceLocation) { self.at = at }
    subscript(key: String) -> Token? { values[key] }
    mutating func set(_ key: String, _ token: Token) {
        if values[key] == nil { order.append(key) }
        values[key] = token
    }
}

/// Parse an unsigned number in decimal or 0x hex (the syntax of marks, TOS and table ids in files and on the command
/// line).
public func parseNumber(_ s: String) -> UInt64? {
    if s.hasPrefix("0x") || s.hasPrefix("0X") { return UInt64(s.dropFirst(2), radix: 16) }
    return UInt64(s)
}
