// swift-tools-version:6.1
import PackageDescription

// Rooms and their one-way dependencies (see docs/architecture.md):
//   netlab (CLI) ─► Lab ─► Netlink ─► CNetlink, CNetSys
//                   └────► Topology (pure) ─► NetCore (pure)
//                          Netlink ─────────► NetCore
let package = Package(
    name: "netlab",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "netlab", targets: ["netlab"]),
        .library(name: "NetLab", targets: ["NetLab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    ],
    targets: [
        // libnl-3 / libnl-route-3 from Debian's libnl-3-dev and libnl-route-3-dev.
        .systemLibrary(
            name: "CNetlink",
            pkgConfig: "libnl-route-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]
        ),
        // libnftables from Debian's libnftables-dev: the driver's guard table.
        .systemLibrary(name: "CNftables", pkgConfig: "libnftables", providers: [.apt(["libnftables-dev"])]),
        // The few glibc calls Swift cannot see (setns, unshare, mount flags, gettid).
        .target(name: "CNetSys"),
        // Pure value types shared by every room: IPv4 addresses and prefixes, kernel enumerations.
        .target(name: "NetCore", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
        // Pure: packets as checked views over bytes plus values with parse/emit (IPv4 + options, TCP + options, ICMP).
        .target(name: "Wire", dependencies: ["NetCore"]),
        // Pure: the connect engine, a sans-I/O rewrite of Linux's IPv4 active open (packets and time in; packets,
        // events and a trace out).
        .target(
            name: "Engine",
            dependencies: ["NetCore", "Wire", .product(name: "SystemPackage", package: "swift-system")]
        ),
        // Pure: Linux's IPv4 output route lookup over a namespace snapshot (implements the engine's RouteResolver).
        .target(
            name: "Resolver",
            dependencies: ["NetCore", "Engine", .product(name: "SystemPackage", package: "swift-system")]
        ),
        // The kernel as oracle: RTM_GETROUTE and real connect() in a namespace, compared with the resolver.
        .target(name: "Oracle", dependencies: ["NetCore", "Netlink", "Engine", "Resolver",
                                               .product(name: "SystemPackage", package: "swift-system")]),
        // Pure: the topology model, its YAML parser and validator. No root, no kernel.
        .target(
            name: "Topology",
            dependencies: ["NetCore", .product(name: "Yams", package: "Yams")]
        ),
        // The libnl wrapper: namespaces, links, addresses, routes, rules, sysctls.
        .target(
            name: "Netlink",
            dependencies: [
                "NetCore", "CNetlink", "CNetSys",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The files a user names: topology files read with plain errors, and the one writer of reports and captures
        // (`-` is standard output; never through a symbolic link: a temporary file renamed over the target).
        .target(name: "Files", dependencies: ["Netlink", .product(name: "SystemPackage", package: "swift-system")]),
        // The engine on the wire: raw and packet sockets in namespaces, the guard, captures, listeners, kernel runs.
        .target(name: "Driver", dependencies: ["NetCore", "Wire", "Engine", "Resolver", "Netlink", "Files", "CNftables", "CNetSys",
                                               .product(name: "SystemPackage", package: "swift-system")]),
        // Checks declared in a topology, run on the wire against the kernel, and the reports CI reads.
        .target(name: "Checks", dependencies: ["NetCore", "Topology", "Lab", "Driver", "Files", "Netlink", "Engine"]),
        // Plan → apply → teardown with a state journal.
        .target(name: "Lab", dependencies: ["Topology", "Netlink", "CNftables"]),
        // The library scripted experiments import.
        .target(name: "NetLab", dependencies: ["Topology", "Netlink", "Files", "Lab", "Wire", "Engine", "Resolver", "Oracle", "Driver", "Checks"]),
        // Engine micro-benchmarks (scripts/bench), with baselines measured in the same run.
        .executableTarget(name: "netlab-bench", dependencies: ["Engine", "Wire", "Resolver", "Netlink", "NetCore",
                                                            .product(name: "SystemPackage", package: "swift-system")], path: "Sources/Bench"),
        // The Swift API's failover experiment (docs/scripting.md), run in CI.
        .executableTarget(name: "netlab-failover-example", dependencies: ["NetLab"], path: "Sources/FailoverExample"),
        // libFuzzer target for the wire parsers (scripts/fuzz); a plain build replays files.
        .executableTarget(name: "WireFuzz", dependencies: ["Wire"]),
        .executableTarget(
            name: "netlab",
            dependencies: [
                "NetLab",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "TopologyTests", dependencies: ["Topology", "Lab"]),
        // Without root: the file reader and the one writer (symlinks, directories, FIFOs, non-UTF-8), and what
        // reports make of hostile text (control characters in check names).
        .testTarget(name: "OutputTests", dependencies: ["Files", "Checks", "Topology"]),
        // What the test targets share: the kernel-captured fixtures (scripts/capture-fixtures), the fixture lab's
        // addresses, packet helpers.
        .target(name: "NetlabTestSupport", dependencies: ["NetCore", "Wire"], path: "Tests/TestSupport",
                resources: [.copy("Fixtures")]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "NetlabTestSupport"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Wire", "NetlabTestSupport"]),
        // Without root: the resolver replays routing snapshots with the kernel's recorded answers
        // (Fixtures/, regenerated by scripts/record-resolver-fixtures).
        .testTarget(name: "ResolverTests", dependencies: ["Resolver", "Engine", "NetCore", .product(name: "SystemPackage", package: "swift-system")],
                    resources: [.copy("Fixtures")]),
        // Root tests: real namespaces, checked through iproute2's `ip -j` (an independent reader). They run in CI.
        // Labs/: the ported kernel selftest labs, read by path (repoRoot), not bundled as resources.
        .testTarget(name: "IntegrationTests", dependencies: ["NetLab", "netlab"], exclude: ["Labs"]),
    ]
)
