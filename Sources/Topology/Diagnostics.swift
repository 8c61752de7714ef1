/// A place in a topology file: 1-based line and column, as editors and compilers count them.
public struct SourceLocation: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) { self.line = line; self.column = column }
    public static let unknown = SourceLocation(line: 0, column: 0)
    public static func < (a: Self, b: Self) -> Bool { (a.line, a.column) < (b.line, b.column) }
    public var description: String { "\(line):\(column)" }
    /// The same line, `n` columns further on (a token inside a scalar).
    public func advanced(by n: Int) -> SourceLocation { SourceLocation(line: line, column: column + n) }
}

/// One problem in a topology file, in the words of the file: where, what, and what to do.
public struct Diagnostic: Error, Hashable, Sendable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String
    public var hint: String?
    /// How many characters to underline at `location` (1 for a caret).
    public var length: Int
    /// An error makes the file invalid; a warning (`validate`'s lint: probably not what was meant) does not, unless
    /// `validate --strict`.
    public var severity: Severity

    public enum Severity: String, Sendable, Hashable, Codable { case error, warning }

    public init(_ location: SourceLocation, _ message: String, hint: String? = nil, length: Int = 1, severity: Severity = .error) {
        self.location = location
        self.message = message
        self.hint = hint
        self.length = max(1, length)
        self.severity = severity
    }
    public var description: String { "\(location): \(message)" }
}

/// Every problem found in one file, reported together.
public struct TopologyError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var source: String
    public var diagnostics: [Diagnostic]

    public init(file: String, source: String, diagnostics: [Diagnostic]) {
        self.file = file
        self.source = source
        self.diagnostics = diagnostics.sorted { $0.location < $1.location }
    }

    /// `FILE:LINE:COL: message`, the source line with a marker under the spot, and the hint.
    public func rendered(color: Bool = false) -> String {
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
        var out: [String] = []
        for d in diagnostics {
            let red = color ? (d.severity == .error ? "\u{1B}[1;31m" : "\u{1B}[1;33m") : "", bold = color ? "\u{1B}[1m" : "", reset = color ? "\u{1B}[0m" : ""
            // A hostile file's control characters are shown escaped, never sent to the terminal (the caret may then
            // sit a few columns early on that line).
            out.append("\(bold)\(visible(file)):\(d.location.line):\(d.location.column):\(reset) \(red)\(d.severity.rawValue):\(reset) \(visible(d.message, keepNewlines: true))")
            if d.location.line >= 1, d.location.line <= lines.count {
                let text = visible(String(lines[d.location.line - 1]).replacingTabs())
                let number = String(d.location.line)
                out.append(" \(number) | \(text)")
                let pad = String(repeating: " ", count: number.count)
                let col = max(1, d.location.column)
                let width = min(d.length, max(1, text.count - col + 1))
                out.append(" \(pad) | " + String(repeating: " ", count: col - 1) + "^" + String(repeating: "~", count: width - 1))
            }
            if let h = d.hint { out.append("   hint: \(visible(h, keepNewlines: true))") }
        }
        let e = diagnostics.filter { $0.severity == .error }.count, w = diagnostics.count - e
        let counts = [e > 0 || w == 0 ? "\(e) error\(e == 1 ? "" : "s")" : nil, w > 0 ? "\(w) warning\(w == 1 ? "" : "s")" : nil]
        out.append("\(counts.compactMap { $0 }.joined(separator: " and ")) in \(visible(file))")
        return out.joined(separator: "\n")
    }

    public var description: String { rendered() }
}

extension String {
    /// Tabs as single spaces (YAML forbids them in indentation; in a value they would otherwise print escaped).
    func replacingTabs() -> String { String(map { $0 == "\t" ? " " : $0 }) }
}

/// The nearest candidate by edit distance, when near enough to be a likely typo.
public func nearest(_ word: String, in candidates: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count), cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
    let w = Array(word.lowercased())
    let scored = candidates.map { ($0, distance(w, Array($0.lowercased()))) }.sorted { $0.1 < $1.1 }
    guard let best = scored.first else { return nil }
    return best.1 <= max(2, w.count / 3) ? best.0 : nil
}
