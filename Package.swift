// swift-tools-version:6.0
// Swift 6 language mode everywhere. Dependencies are few on purpose: CI builds from a fresh clone on 2 cores.
import PackageDescription

let package = Package(
    name: "DistributedLog",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "dlogd", targets: ["dlogd"]),
        .executable(name: "dlog-bench", targets: ["dlog-bench"]),
        .executable(name: "dlogctl", targets: ["dlogctl"]),
        .library(name: "DLogLedger", targets: ["DLogLedger"]),
        .library(name: "DistributedLog", targets: ["DistributedLog"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // TLS on every port (BoringSSL inside NIOSSL), and the small cluster CA `dlogctl tls` makes.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        // Metrics: the libraries record through swift-metrics (an application's own backend sees them); the
        // daemon exports them with swift-prometheus.
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C access. Nothing above these sees a C library header.
        .systemLibrary(name: "CURing", pkgConfig: "liburing", providers: [.apt(["liburing-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .target(name: "CDLogURing", dependencies: ["CURing"]),
        .systemLibrary(name: "CAIO", providers: [.apt(["libaio-dev"])]),
        .target(name: "CDLogAIO", dependencies: ["CAIO"]),
        .target(name: "CDLogSys"),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),

        .target(name: "DLogWire", dependencies: [
            "CDLogSys",
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
        ]),
        // What dlogctl and dlog-bench share on their command lines.
        .target(name: "DLogCLI", dependencies: [
            "DLogWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Making a cluster CA and its certificates (dlogctl tls, the standalone's first start, tests).
        .target(name: "DLogPKI", dependencies: [
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
        ]),
        .target(name: "DLogIO", dependencies: [
            "CDLogURing", "CDLogAIO", "CAIO", "CDLogSys",
            .product(name: "DequeModule", package: "swift-collections"),
        ]),
        // An in-memory disk that crashes, tears writes and fails on purpose: for tests and for tools that run
        // the storage without a real disk.
        .target(name: "DLogSimulation", dependencies: ["DLogIO"]),
        .target(name: "DLogMetadata", dependencies: [
            "DLogWire", "DLogIO", "CSQLite",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        .target(name: "DLogBookie", dependencies: [
            "DLogIO", "DLogWire",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        .target(name: "DLogLedger", dependencies: [
            "DLogWire", "DLogMetadata",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        .target(name: "DLogDaemon", dependencies: [
            "DLogBookie", "DLogIO", "DLogMetadata", "CSystemd", "CDLogSys", "DLogProxy", "DistributedLog", "DLogLedger", "DLogPKI",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .target(name: "DistributedLog", dependencies: [
            "DLogLedger", "DLogMetadata", "DLogWire", "CLZ4",
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .target(name: "DLogProxy", dependencies: [
            "DistributedLog", "DLogLedger", "DLogMetadata", "DLogWire",
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // The daemon and the benchmark client allocate through jemalloc (Debian's libjemalloc2): under glibc's
        // malloc a proxy draining 100,000 streams spent over a third of its CPU in arena locks and chunk consolidation.
        .executableTarget(name: "dlogd", dependencies: [
            "DLogDaemon", "DLogIO", "DLogMetadata", "DLogWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], linkerSettings: [.linkedLibrary("jemalloc")]),
        .executableTarget(name: "dlogctl", dependencies: [
            "DLogMetadata", "DLogWire", "DistributedLog", "DLogLedger", "DLogDaemon", "DLogPKI", "DLogCLI", "DLogBookie", "DLogProxy",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .executableTarget(name: "dlog-bench", dependencies: [
            "DLogLedger", "DLogIO", "DLogWire", "DLogMetadata", "DistributedLog", "DLogCLI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ], linkerSettings: [.linkedLibrary("jemalloc")]),

        // Helpers shared by the test targets (temp dirs, seeded randomness, the docs' worked examples); never linked
        // into products.
        .target(name: "DLogTestSupport", dependencies: ["DLogWire", "DLogSimulation", .product(name: "NIOCore", package: "swift-nio")],
                path: "Tests/DLogTestSupport"),
        // An in-process cluster (embedded metadata store, bookies on loopback) for the client-side test targets.
        .target(name: "DLogClusterSupport", dependencies: [
            "DLogBookie", "DLogIO", "DLogLedger", "DLogMetadata", "DLogTestSupport", "DLogWire",
            .product(name: "Logging", package: "swift-log"),
        ], path: "Tests/DLogClusterSupport"),
        .testTarget(name: "DLogWireTests", dependencies: ["DLogWire", "DLogTestSupport",
                                                          .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "DLogIOTests", dependencies: ["DLogIO", "DLogSimulation", "DLogTestSupport"]),
        .testTarget(name: "DLogMetadataTests", dependencies: ["DLogMetadata", "DLogWire", "DLogTestSupport", "DLogPKI",
                                                              .product(name: "Logging", package: "swift-log"),
                                                              .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "DLogLedgerTests", dependencies: [
            "DLogLedger", "DLogWire", "DLogMetadata", "DLogBookie", "DLogIO", "DLogTestSupport", "DLogClusterSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .testTarget(name: "DLogBookieTests", dependencies: [
            "DLogBookie", "DLogLedger", "DLogIO", "DLogWire", "DLogTestSupport",
            .product(name: "MetricsTestKit", package: "swift-metrics"),
        ]),
        .testTarget(name: "DistributedLogTests", dependencies: [
            "DistributedLog", "DLogLedger", "DLogMetadata", "DLogWire", "DLogTestSupport", "DLogClusterSupport",
        ]),
        .testTarget(name: "DLogProxyTests", dependencies: [
            "DLogProxy", "DistributedLog", "DLogLedger", "DLogMetadata", "DLogWire", "DLogTestSupport", "DLogClusterSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "DLogDaemonTests", dependencies: ["DLogDaemon", "DLogLedger", "DLogMetadata", "DLogWire", "DLogTestSupport",
                                                            "DistributedLog", "DLogPKI",
                                                            .product(name: "NIOSSL", package: "swift-nio-ssl"),
                                                            .product(name: "NIOPosix", package: "swift-nio")]),

        // libFuzzer targets for the decoders of socket and disk bytes (Fuzz/run.sh builds them with the fuzzer and
        // address sanitizer into .build/fuzz). The plain build is a driver that writes seeds and replays corpus
        // files, so `swift build` keeps it compiling against the decoders' APIs.
        .executableTarget(name: "dlog-fuzz", dependencies: [
            "DLogBookie", "DLogIO", "DLogMetadata", "DLogSimulation", "DLogWire", "DistributedLog",
            .product(name: "NIOCore", package: "swift-nio"),
        ], path: "Fuzz/Sources"),
    ]
)
