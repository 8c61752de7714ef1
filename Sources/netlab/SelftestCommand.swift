import ArgumentParser
import Foundation
import NetLab

extension Netlab {
    struct Selftest: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Differential tests against the running kernel.",
                                                        subcommands: [SelftestRoute.self, SelftestConnect.self])
    }

    /// `netlab selftest route`: the resolver against RTM_GETROUTE, on a lab that is up or on random labs built for it.
    struct SelftestRoute: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "route",
            abstract: "Compare the resolver with the kernel on many lookups; disagreements become reproductions.")
        @Option(help: "Test the nodes of a lab that is up instead of random labs.") var lab: LabName?
        @Option(help: "Random seed.") var seed: UInt64 = 1
        @Option(help: "Random topologies to build.") var topologies: Int = 10
        @Option(help: "Lookups per node (random sample); all combinations when omitted with --lab.") var lookups: Int?
        @Option(help: "Directory for reproductions (.topo plus the lookup).") var reproDir: String = "route-repros"
        @Option(help: "Lab names: PREFIX-0, PREFIX-1, ... (default st<seed mod 1000>).") var prefix: SelftestPrefix?
        @Flag(help: "Print one JSON summary.") var json = false

        func validate() throws {
            if lab != nil, prefix != nil { throw ValidationError("--prefix names random labs; --lab tests a lab that is up: give one") }
        }

        func run() throws {
            try Terminal.requireRoot("selftest route")
            let driver = RouteSelftestRun(seed: seed, topologies: topologies, lookups: lookups, prefix: prefix?.text ?? "st\(seed % 1000)",
                                          reproDirectory: reproDir)
            let s = try reporting { try driver.run(lab: try lab.map { try Terminal.labThatIsUp($0.name) }) { Terminal.progress("lookups", $0.total.lookups, $0.total.lookups) } }
            let total = s.total
            Terminal.endProgress()
            let line = "\(total.agreements)/\(count(total.lookups, "lookup")) agree over \(count(s.namespaces, "namespace"))" +
                (lab == nil ? " (\(s.perturbation.linksDown) links taken down, \(s.perturbation.primariesDeleted) primaries deleted live)" : "")
            if json {
                struct Summary: Encodable { var lookups, agreements, namespaces, disagreements: Int; var outcomes: [String: Int] }
                try Terminal.printJSON(Summary(lookups: total.lookups, agreements: total.agreements, namespaces: s.namespaces,
                                               disagreements: total.disagreements.count, outcomes: total.outcomes))
            } else {
                print(line)
                for s in total.outcomeSummary { print("  " + s) }
                for d in total.disagreements.prefix(20) { print(d.text(withTrace: false)) }
                if !total.disagreements.isEmpty { print("reproductions in \(reproDir)/") }
            }
            if !total.disagreements.isEmpty { throw ExitStatus.failed }
        }
    }

    /// `netlab selftest connect`: the engine against kernel connects on random labs with random checks (labs no test has
    /// seen). Every check runs on the wire twice (engine, kernel); any difference is written as a one-check `.topo`.
    struct SelftestConnect: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "connect",
            abstract: "Compare engine and kernel connects on random labs; disagreements become one-check .topo files.",
            discussion: "Exit status: 0 every connect agreed, 1 a disagreement (reproductions written), 2 bad input.")
        @Option(help: "Random seed.") var seed: UInt64 = 1
        @Option(help: "Random labs to build, one after the other.") var labs: Int = 3
        @Option(help: "Nodes per lab.") var nodes: Int = 6
        @Option(help: "Random connects per lab.") var checks: Int = 12
        @Option(help: "Directory for reproductions (a .topo holding the lab and the one check).") var reproDir: String = "connect-repros"
        @Option(help: "Lab names: PREFIX-0, PREFIX-1, ... (default sc<seed mod 1000>).") var prefix: SelftestPrefix?
        /// The option's first name, still read.
        @Option(help: .hidden) var namePrefix: SelftestPrefix?
        @Option(help: "Also write each generated lab (with all its checks) into this directory.") var writeLabs: String?
        @Flag(help: "Print one JSON summary.") var json = false

        func validate() throws {
            guard (2...40).contains(nodes) else { throw ValidationError("--nodes must be 2...40") }
            guard labs >= 1, checks >= 1 else { throw ValidationError("--labs and --checks must be at least 1") }
        }

        func run() throws {
            try Terminal.requireRoot("selftest connect")
            Interrupts.trap()
            let driver = ConnectSelftestRun(seed: seed, labs: labs, nodes: nodes, checks: checks, prefix: (prefix ?? namePrefix)?.text ?? "sc\(seed % 1000)",
                                            reproDirectory: reproDir, writeLabs: writeLabs)
            let s = try reporting {
                try driver.run(checkProgress: { k, c, i, n in Terminal.progress("lab \(k + 1)/\(labs): \(c.name)", i, n) }, labDone: { k, lab, run in
                    Terminal.endProgress()
                    Terminal.note("lab \(k + 1)/\(labs) \(lab): \(run.passed)/\(count(run.results.count, "connect")) agree (\(String(format: "%.1f", run.seconds)) s)")
                }, interrupted: { Interrupts.signal != nil })
            }
            Terminal.endProgress()
            if json {
                struct Summary: Encodable { var connects, agreements, labs, namespaces, seconds: Int }
                try Terminal.printJSON(Summary(connects: s.connects, agreements: s.agreements, labs: s.labs, namespaces: s.namespaces,
                                               seconds: Int(s.seconds)))
            } else {
                print("\(s.agreements)/\(count(s.connects, "connect")) agree over \(count(s.labs, "lab")) (\(count(s.namespaces, "namespace"))) in \(String(format: "%.0f", s.seconds)) s")
                print("engine outcomes: " + s.outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
                if !s.classes.isEmpty {
                    print("classes drawn: " + s.classes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
                }
                if !s.waited.isEmpty {
                    print("waited for shared lab state: " + s.waited.sorted { $0.key < $1.key }
                        .map { String(format: "%@ %.1f s", $0.key, Double($0.value) / 1e9) }.joined(separator: ", "))
                }
                for f in s.failures { print("  ✘ " + f) }
                if !s.failures.isEmpty { print("reproduce one with `netlab check FILE`") }
            }
            if let sig = Interrupts.signal { Terminal.error("interrupted"); throw ExitCode(128 + sig) }
            if !s.failures.isEmpty { throw ExitStatus.failed }
        }
    }

    /// A selftest's run, its errors in the terminal's words: a lab of the selftest's name that someone else made (exit 1,
    /// naming --prefix), a reproduction directory that cannot be made (exit 2) or a reproduction that cannot be written
    /// (exit 1).
    static func reporting<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as LabSessionError {
            Terminal.endProgress()
            Terminal.error(e.description)
            Terminal.hint("give another --prefix")
            throw ExitStatus.failed
        } catch ReproductionError.directory(let error) {
            Terminal.endProgress()
            Terminal.error("\(error.path): \(error.problem)")
            if let h = error.hint { Terminal.hint(h) }
            throw ExitStatus.badInput
        } catch ReproductionError.write(let error) {
            Terminal.endProgress()
            Terminal.error(error.description)
            throw ExitStatus.failed
        }
    }
}
