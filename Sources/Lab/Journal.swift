import Foundation

/// What netlab made for one lab, written to /run/netlab/<lab>.json before each kernel change, atomically (temp file
/// and rename), so `netlab down` can remove it all even after `kill -9` part-way through `up`.
///
/// Every kernel object a lab owns lives inside one of its namespaces (veth ends are created directly in them), so
/// the namespaces are the unit of ownership: they are recorded before the first one is created, and deleting them
/// removes every device, address, route and rule inside.
public struct Journal: Codable, Sendable {
    public static let directory = "/run/netlab"

    public enum State: String, Codable, Sendable { case applying, up, failed, tearingDown = "tearing-down" }

    public var version = 1
    public var lab: String
    /// The topology file, absolute.
    public var file: String
    /// Its text when the lab came up, so `status` can compare even if the file changed or moved.
    public var source: String
    public var state: State
    /// The step `up` was at: namespaces, links, addresses, sysctls, routes, rules, done.
    public var phase: String
    public var pid: Int32
    public var started: Date
    /// Namespaces recorded before creation; `down` deletes those that exist.
    public var namespaces: [String]

    public static func path(lab: String) -> String { "\(directory)/\(lab).json" }

    public func write() throws {
        try FileManager.default.createDirectory(atPath: Self.directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try encoder.encode(self).write(to: URL(fileURLWithPath: Self.path(lab: lab)), options: .atomic)
    }

    public static func read(lab: String) throws -> Journal? {
        let p = path(lab: lab)
        guard FileManager.default.fileExists(atPath: p) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(Journal.self, from: Data(contentsOf: URL(fileURLWithPath: p)))
    }

    public static func remove(lab: String) {
        try? FileManager.default.removeItem(atPath: path(lab: lab))
    }

    /// Labs with a journal, by name.
    public static func labs() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }
}
