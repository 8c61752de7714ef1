import ArgumentParser
import Foundation
import NetLab

// The values a command line names, each parsed once, by its type: an option declared with one of these types
// cannot reach `run()` unchecked, and the words of its error live beside its parser. A bad word is a usage error
// (exit 2, `Netlab.main`), and the message names the word, the option and what to give:
//
//   Error: The value '0x1ffffffff' is invalid for '--mark <mark>': --mark must be a number from 0 to 0xffffffff (decimal or 0x hex)
//
// Each type is `ExpressibleByArgument`, declared as `@Option var mark: Mark?` (defaults and completions as
// ArgumentParser shows them). Its `init?(argument:)` can only fail, so the reason a word failed is kept
// (`BadArgument.last`) and `Netlab.main` adds it to ArgumentParser's "The value 'W' is invalid for '--x <x>'".
// (A throwing `transform:` would carry the reason too, but drops the default from the help.)

/// Why a word is not the value an option takes, in the user's words.
struct BadArgument: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }

    /// The word that failed to parse last and why (parsing is one thread, before any command runs).
    nonisolated(unsafe) static var last: (word: String, problem: BadArgument)?
}

/// A value parsed from one command-line word, or a `BadArgument` saying why not.
protocol ArgumentValue: ExpressibleByArgument {
    static func parse(_ word: String) throws(BadArgument) -> Self
}

extension ArgumentValue {
    init?(argument: String) {
        do { self = try Self.parse(argument) } catch {
            BadArgument.last = (argument, error)
            return nil
        }
    }
}

/// `ADDR:PORT`: connect's destination (`192.0.2.80:80`).
struct Endpoint: ArgumentValue, Hashable {
    var address: IPv4Address
    var port: UInt16

    static func parse(_ word: String) throws(BadArgument) -> Endpoint {
        let b = try BindAddress.parse(word, what: "DEST:PORT")
        guard let port = b.port else { throw BadArgument("DEST:PORT must look like 192.0.2.80:80: \"\(visible(word))\" has no port") }
        return Endpoint(address: b.address, port: port)
    }
}

/// `ADDR` or `ADDR:PORT`: what `connect --bind` binds (port 0 or none: an ephemeral port).
struct BindAddress: ArgumentValue, Hashable {
    var address: IPv4Address
    var port: UInt16?

    static func parse(_ word: String) throws(BadArgument) -> BindAddress { try parse(word, what: "--bind") }

    static func parse(_ word: String, what: String) throws(BadArgument) -> BindAddress {
        let p = word.split(separator: ":", omittingEmptySubsequences: false)
        let example = what == "--bind" ? "ADDR or ADDR:PORT (192.0.2.10 or 192.0.2.10:4000)" : "192.0.2.80:80"
        guard p.count <= 2 else { throw BadArgument("\(what) must be \(example): \"\(visible(word))\" has more than one ':'") }
        guard let a = IPv4Address(p[0]) else { throw BadArgument("\(what) must be \(example): \"\(visible(String(p[0])))\" is not an IPv4 address") }
        guard p.count == 2 else { return BindAddress(address: a, port: nil) }
        guard let port = UInt16(p[1]) else { throw BadArgument("\(what) must be \(example): the port \"\(visible(String(p[1])))\" is not 0-65535") }
        return BindAddress(address: a, port: port)
    }
}

/// `ADDR` or `ADDR:PORT` with a port from 1: what `explain` explains (the port matters with --connect).
struct Destination: ArgumentValue, Hashable {
    var address: IPv4Address
    var port: UInt16?

    static func parse(_ word: String) throws(BadArgument) -> Destination {
        let parts = word.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        let rule = "DEST must be an IPv4 address, optionally with :PORT (1-65535)"
        guard let a = IPv4Address(parts[0]) else { throw BadArgument("\(rule): \"\(visible(String(parts[0])))\" is not an IPv4 address") }
        guard parts.count == 2 else { return Destination(address: a, port: nil) }
        guard let p = UInt16(parts[1]), p > 0 else { throw BadArgument("\(rule): \"\(visible(String(parts[1])))\" is not a port") }
        return Destination(address: a, port: p)
    }
}

/// An IPv4 address (`route DEST`, `--from`).
extension IPv4Address: ExpressibleByArgument, ArgumentValue {
    public init?(argument: String) {
        do { self = try Self.parse(argument) } catch {
            BadArgument.last = (argument, error)
            return nil
        }
    }

    static func parse(_ word: String) throws(BadArgument) -> IPv4Address {
        guard let a = IPv4Address(word) else { throw BadArgument("\"\(visible(word))\" is not an IPv4 address (as 192.0.2.10)") }
        return a
    }
}

/// `--mark`: SO_MARK, a 32-bit number, decimal or 0x hex as in a topology file (`parseNumber`). A socket's mark
/// has no mask (a rule's `fwmark 0x1/0xff` does; that is the topology file's).
struct Mark: ArgumentValue, Hashable {
    var value: UInt32
    static func parse(_ word: String) throws(BadArgument) -> Mark {
        guard let n = parseNumber(word), n <= UInt32.max else {
            throw BadArgument("--mark must be a number from 0 to 0xffffffff (decimal or 0x hex)")
        }
        return Mark(value: UInt32(n))
    }
}

/// `--tos`: IP_TOS, the TOS byte (decimal or 0x hex).
struct TOS: ArgumentValue, Hashable {
    var value: UInt8
    static func parse(_ word: String) throws(BadArgument) -> TOS {
        guard let n = parseNumber(word), n <= 255 else {
            throw BadArgument("--tos must be a number from 0 to 255 (decimal or 0x hex)")
        }
        return TOS(value: UInt8(n))
    }
}

/// `--ipproto`: a lookup's IP protocol, by name (tcp, udp, icmp) or number (`IPProtocol.init(_:)` reads the word).
extension IPProtocol: ExpressibleByArgument, ArgumentValue {
    public init?(argument: String) {
        do { self = try Self.parse(argument) } catch {
            BadArgument.last = (argument, error)
            return nil
        }
    }

    static func parse(_ word: String) throws(BadArgument) -> IPProtocol {
        guard let p = IPProtocol(word) else { throw BadArgument("--ipproto must be tcp, udp, icmp or 0-255") }
        return p
    }

    /// The help's default in the words `--ipproto` takes (`tcp`, not 6).
    public var defaultValueDescription: String {
        switch self {
        case .tcp: "tcp"
        case .udp: "udp"
        case .icmp: "icmp"
        default: description
        }
    }
}

/// `--lsrr` / `--ssrr`: the hops of an IP source route, IPv4 addresses separated by commas (1 to 8: the option's room).
struct SourceRouteHops: ArgumentValue, Hashable {
    var hops: [IPv4Address]
    static func parse(_ word: String) throws(BadArgument) -> SourceRouteHops {
        let words = word.split(separator: ",", omittingEmptySubsequences: false)
        let rule = "source-route hops must be IPv4 addresses separated by commas (1 to 8)"
        guard (1...8).contains(words.count) else { throw BadArgument("\(rule): \"\(visible(word))\" has \(words.count)") }
        var hops: [IPv4Address] = []
        for w in words {
            guard let a = IPv4Address(w) else { throw BadArgument("\(rule): \"\(visible(String(w)))\" is not an IPv4 address") }
            hops.append(a)
        }
        return SourceRouteHops(hops: hops)
    }
}

/// `--syn-retries`: TCP_SYNCNT, 1 to 127 (the kernel's MAX_TCP_SYNCNT).
struct SynRetries: ArgumentValue, Hashable {
    var value: Int
    static func parse(_ word: String) throws(BadArgument) -> SynRetries {
        guard let n = Int(word), (1...127).contains(n) else { throw BadArgument("--syn-retries must be from 1 to 127") }
        return SynRetries(value: n)
    }
}

/// `snapshot --ports`: TCP ports 1-65535 separated by commas.
struct PortList: ArgumentValue, Hashable, CustomStringConvertible {
    var ports: [UInt16]
    static func parse(_ word: String) throws(BadArgument) -> PortList {
        var ports: [UInt16] = []
        for w in word.split(separator: ",", omittingEmptySubsequences: false) {
            guard let p = UInt16(w.trimmingCharacters(in: .whitespaces)), p > 0 else {
                throw BadArgument("--ports must be port numbers 1-65535 separated by commas: \"\(visible(String(w)))\" is not one")
            }
            ports.append(p)
        }
        return PortList(ports: ports)
    }
    var description: String { ports.map(String.init).joined(separator: ",") }
    var defaultValueDescription: String { description }
}

/// `graph --format`.
enum GraphFormat: String, ExpressibleByArgument, CaseIterable {
    case svg, dot
}

/// A lab name as `up` names labs (`snapshot --name`): checked before it becomes a path under /run/netns.
struct LabName: ArgumentValue, Hashable, CustomStringConvertible {
    var name: String
    static func parse(_ word: String) throws(BadArgument) -> LabName {
        guard LabNames.isLab(word) else { throw BadArgument("\"\(visible(word))\" is not a lab name (\(LabNames.labRule))") }
        return LabName(name: word)
    }
    var description: String { name }
    var defaultValueDescription: String { name }
}

/// A node name (`snapshot --node`).
struct NodeName: ArgumentValue, Hashable, CustomStringConvertible {
    var name: String
    static func parse(_ word: String) throws(BadArgument) -> NodeName {
        guard LabNames.isNode(word) else { throw BadArgument("\"\(visible(word))\" is not a node name (\(LabNames.nodeRule))") }
        return NodeName(name: word)
    }
    var description: String { name }
    var defaultValueDescription: String { name }
}

/// The start of lab names (`down --prefix`): 1-20 of a-z, 0-9 and '-'.
struct LabPrefix: ArgumentValue, Hashable {
    var text: String
    static func parse(_ word: String) throws(BadArgument) -> LabPrefix {
        guard !word.isEmpty, word.count <= LabNames.labLimit,
              word.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }) else {
            throw BadArgument("--prefix takes the start of a lab name (1-\(LabNames.labLimit) of a-z, 0-9 and '-')")
        }
        return LabPrefix(text: word)
    }
}

/// `--prefix` of both selftests: labs are named PREFIX-0, PREFIX-1, ..., which must be lab names (docs/topology.md).
struct SelftestPrefix: ArgumentValue, Hashable {
    var text: String
    static func parse(_ word: String) throws(BadArgument) -> SelftestPrefix {
        guard LabNames.isLab(word + "-0"), word.count <= 16 else {
            throw BadArgument("1 to 16 characters from a-z, 0-9 and '-', starting with a letter (labs are named PREFIX-0, PREFIX-1, ...)")
        }
        return SelftestPrefix(text: word)
    }
}

/// A lab named by its name or by its topology file (`down FILE|LAB`, `status [FILE|LAB]`): a word with `/` or ending
/// in `.topo` is a file (read for its `lab:` by `labName()`), any other must be a lab name.
enum LabTarget: ArgumentValue, Hashable {
    case name(String)
    case file(String)

    static func parse(_ word: String) throws(BadArgument) -> LabTarget {
        if word.hasSuffix(".topo") || word.contains("/") { return .file(word) }
        guard LabNames.isLab(word) else {
            throw BadArgument("\"\(visible(word))\" is neither a lab name nor a topology file: a lab name has 1-20 characters "
                              + "from a-z, 0-9 and '-'; a topology file ends in .topo or has a '/'")
        }
        return .name(word)
    }
}

/// `--netns NAME`: a namespace under /run/netns netlab did not make; the name becomes a path, so it is checked here.
struct NamespaceName: ArgumentValue, Hashable, CustomStringConvertible {
    var name: String
    static func parse(_ word: String) throws(BadArgument) -> NamespaceName {
        guard NetworkNamespace.isValidName(word) else {
            throw BadArgument("\"\(visible(word))\" is not a namespace name: give a name under /run/netns (no '/', not '.' or '..')")
        }
        return NamespaceName(name: word)
    }
    var namespace: NetworkNamespace { NetworkNamespace(named: name) }
    var description: String { name }
}

/// An output option's path, where `-` is standard output (`--pcap`, `-w`, `-o`, `--json-file`, check's reports).
/// Any word parses; `prepare` checks it (directories made, links refused) before any work, exit 2 on a problem.
struct OutputPath: ExpressibleByArgument, Hashable, CustomStringConvertible {
    var path: String
    init(_ path: String) { self.path = path }
    init?(argument: String) { path = argument }
    var isStandardOutput: Bool { path == "-" }
    var description: String { path }
    var defaultValueDescription: String { path }

    /// The target, checked now; a problem names the option and exits 2.
    func prepare(option: String) throws -> OutputTarget { try Terminal.output(path, option: option) }
}

/// `--netns NAME` wherever a command works in a namespace netlab did not make (explain, snapshot; route and
/// connect through `NodeTarget`).
struct NamespaceOption: ParsableArguments {
    @Option(help: ArgumentHelp("A network namespace netlab did not make (/run/netns/NAME).", valueName: "name"))
    var netns: NamespaceName?

    /// The namespace, which must exist (exit 2 otherwise).
    func existing() throws -> NetworkNamespace? {
        guard let netns else { return nil }
        let ns = netns.namespace
        guard ns.exists else {
            Terminal.error("no network namespace \(netns.name) under /run/netns")
            Terminal.hint("`ip netns list` lists them; a lab's node is named LAB NODE, without --netns")
            throw ExitStatus.badInput
        }
        return ns
    }
}
