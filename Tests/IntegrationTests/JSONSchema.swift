import Foundation
import Testing

/// The subset of JSON Schema (2020-12) that docs/schemas/ uses: `type`, `properties`, `required`,
/// `additionalProperties` (false or a schema), `items`, `enum`, `minimum`, `anyOf` and `$ref` to `#/$defs/NAME`.
/// A keyword outside it is itself an error, so a schema cannot silently say more than is checked.
struct JSONSchema {
    let root: [String: Any]
    static let annotations: Set<String> = ["$schema", "$id", "$defs", "title", "description"]
    static let keywords: Set<String> = ["type", "properties", "required", "additionalProperties", "items", "enum", "minimum",
                                        "anyOf", "$ref"]

    /// docs/schemas/NAME.schema.json.
    init(named name: String) throws {
        let data = try Data(contentsOf: repoRoot.appendingPathComponent("docs/schemas/\(name).schema.json"))
        root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    init(_ root: [String: Any]) { self.root = root }

    /// Every way `value` (parsed by JSONSerialization) breaks the schema, each with its JSON path.
    func problems(_ value: Any) -> [String] {
        var out: [String] = []
        check(value, root, "$", &out)
        return out
    }

    func problems(json text: String) -> [String] {
        guard let v = try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) else {
            return ["not JSON: \(text.prefix(200))"]
        }
        return problems(v)
    }

    func check(_ v: Any, _ s: [String: Any], _ path: String, _ out: inout [String]) {
        for k in s.keys where !Self.keywords.contains(k) && !Self.annotations.contains(k) {
            out.append("\(path): the schema uses \(k), which this validator does not check")
        }
        if let ref = s["$ref"] as? String {
            let name = ref.replacingOccurrences(of: "#/$defs/", with: "")
            guard let d = (root["$defs"] as? [String: Any])?[name] as? [String: Any] else { out.append("\(path): no \(ref)"); return }
            check(v, d, path, &out)
        }
        if let any = s["anyOf"] as? [[String: Any]] {
            let fits = any.contains { alt in var o: [String] = []; check(v, alt, path, &o); return o.isEmpty }
            if !fits { out.append("\(path): matches none of anyOf") }
        }
        if let t = s["type"] {
            let types = (t as? [String]) ?? [t as? String ?? "?"]
            if !types.contains(where: { Self.isType(v, $0) }) { out.append("\(path): \(Self.describe(v)), expected \(types.joined(separator: " or "))") ; return }
        }
        if let e = s["enum"] as? [String], !e.contains(v as? String ?? "\u{0}") { out.append("\(path): \(v) is not one of \(e)") }
        if let m = s["minimum"] as? Double, let x = (v as? NSNumber)?.doubleValue, x < m { out.append("\(path): \(x) < \(m)") }
        if let o = v as? [String: Any] {
            let props = s["properties"] as? [String: Any] ?? [:]
            for r in s["required"] as? [String] ?? [] where o[r] == nil { out.append("\(path): missing \(r)") }
            for (k, x) in o {
                if let p = props[k] as? [String: Any] { check(x, p, "\(path).\(k)", &out); continue }
                switch s["additionalProperties"] {
                case let b as Bool where !b: out.append("\(path): unexpected key \(k)")
                case let a as [String: Any]: check(x, a, "\(path).\(k)", &out)
                default: break
                }
            }
        }
        if let a = v as? [Any], let items = s["items"] as? [String: Any] {
            for (i, x) in a.enumerated() { check(x, items, "\(path)[\(i)]", &out) }
        }
    }

    static func isType(_ v: Any, _ t: String) -> Bool {
        // JSONSerialization gives booleans as NSNumber of objCType "c" (a char), numbers as "i", "q", "d", ...
        let isBool = (v as? NSNumber).map { String(cString: $0.objCType) == "c" } ?? false
        switch t {
        case "object": return v is [String: Any]
        case "array": return v is [Any]
        case "string": return v is String
        case "boolean": return isBool
        case "integer": if let n = v as? NSNumber, !isBool { return n.doubleValue == n.doubleValue.rounded() } else { return false }
        case "number": return v is NSNumber && !isBool
        case "null": return v is NSNull
        default: return false
        }
    }

    static func describe(_ v: Any) -> String {
        for t in ["boolean", "integer", "number", "string", "object", "array", "null"] where isType(v, t) { return "a \(t)" }
        return "\(type(of: v))"
    }

    /// Every property name the schema declares, at any depth (for the snake_case rule).
    func propertyNames() -> [String] {
        var names: [String] = []
        func walk(_ x: Any) {
            if let o = x as? [String: Any] {
                if let p = o["properties"] as? [String: Any] { names += p.keys }
                o.values.forEach(walk)
            } else if let a = x as? [Any] { a.forEach(walk) }
        }
        walk(root)
        return names
    }

    /// Problems of `text` against docs/schemas/NAME.schema.json (a schema that cannot be read is one).
    static func problems(_ name: String, _ text: String) -> [String] {
        guard let s = try? JSONSchema(named: name) else { return ["no schema \(name)"] }
        return s.problems(json: text)
    }

    static let all = ["validate", "up", "down", "status", "check", "connect", "route", "selftest-route", "selftest-connect"]
}

/// The validator itself, and the schemas' own rules; no root needed.
struct JSONSchemaTests {
    /// The validator can fail: a wrong type, a missing key, an unknown key and a value outside an enum are each caught.
    @Test func validatorRejectsWhatTheSchemaForbids() throws {
        let s = try JSONSchema(named: "route")
        let good = #"{"query":"192.0.2.80 ipproto 6","engine":{"dev":"eth0","via":"198.51.100.1","table":"isp2"},"kernel":{"error":"ENETUNREACH"},"candidates":[],"agree":true}"#
        #expect(s.problems(json: good).isEmpty, "\(s.problems(json: good))")
        #expect(s.problems(json: good.replacingOccurrences(of: #""via""#, with: #""gateway""#)) == ["$.engine: unexpected key gateway"])
        #expect(s.problems(json: good.replacingOccurrences(of: #""table":"isp2""#, with: #""table":102"#)) == ["$.engine.table: a integer, expected string"])
        #expect(s.problems(json: good.replacingOccurrences(of: #","agree":true"#, with: "")) == ["$: missing agree"])
        let c = try JSONSchema(named: "connect")
        let side = #"{"path":[],"reply_path":[],"result":"lost","hops":[],"reply_hops":[],"trace":[]}"#
        #expect(c.problems(json: #"{"engine":\#(side),"differences":[],"agree":true,"notes":[]}"#) == [#"$.engine.result: lost is not one of ["established", "refused", "timeout", "unreachable", "error"]"#])
        #expect(JSONSchema(["type": "object", "patternProperties": [:]]).problems([String: Any]()).count == 1)
    }

    /// One vocabulary: every key any schema declares is snake_case, and none is a word the topology file does not use.
    @Test func everySchemaKeyIsSnakeCaseInTheFilesWords() throws {
        for name in JSONSchema.all {
            let s = try JSONSchema(named: name)
            for k in s.propertyNames() {
                #expect(k.range(of: "^[a-z][a-z0-9]*(_[a-z0-9]+)*$", options: .regularExpression) != nil, "\(name): \(k)")
                #expect(!["nexthop", "gateway"].contains(k), "\(name): \(k) (the file says via)")
            }
        }
    }

    /// `validate --json` (no root): real output against its schema, for a valid file, an invalid one and a missing one.
    @Test func validateOutputFitsItsSchema() throws {
        let s = try JSONSchema(named: "validate")
        let bad = NSTemporaryDirectory() + "pc-schema-bad.topo"
        try "lab: x\nnodes:\n  a: {interfaces: {eth0: {addresses: [10.0.0.1/24]}}}\n".write(toFile: bad, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: bad) }
        let r = try netlab("validate", "--json", repoRoot.appendingPathComponent("Labs/dualhome.topo").path, bad, "/nonexistent.topo")
        #expect(r.status == 2)
        #expect(s.problems(json: r.stdout).isEmpty, "\(s.problems(json: r.stdout))\n\(r.stdout)")
        let list = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        #expect(list.map { $0["valid"] as? Bool } == [true, false, false])
        #expect(r.stderr.isEmpty, "--json says everything on standard output: \(r.stderr)")
    }
}
