/// Text from a topology file (a check's name, a payload) made safe to print: control characters (C0, DEL, C1) and
/// the bidirectional overrides that reorder what a reader sees become visible escapes (`\x1B`, `\n`, `\u{202E}`),
/// so a name cannot move a terminal's cursor, colour it, break a Markdown table or make JUnit XML invalid.
/// `keepNewlines`: line breaks and tabs stay (a multi-line message).
public func visible(_ s: String, keepNewlines: Bool = false) -> String {
    var o = ""
    for u in s.unicodeScalars { appendVisible(u, to: &o, keepNewlines: keepNewlines) }
    return o
}

/// One scalar of `visible`, appended to `o`; `keepNewlines` keeps line breaks and tabs (multi-line text: XML, a
/// report body).
public func appendVisible(_ u: Unicode.Scalar, to o: inout String, keepNewlines: Bool) {
    switch u.value {
    case 0x0A where keepNewlines: o.append("\n")
    case 0x09: o += keepNewlines ? "\t" : "\\t"
    case 0x0A: o += "\\n"
    case 0x0D: o += "\\r"
    case 0x00..<0x20, 0x7F..<0xA0:
        let h = String(u.value, radix: 16, uppercase: true)
        o += "\\x" + (h.count < 2 ? "0" + h : h)
    case 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
        o += "\\u{\(String(u.value, radix: 16, uppercase: true))}"
    default: o.unicodeScalars.append(u)
    }
}
