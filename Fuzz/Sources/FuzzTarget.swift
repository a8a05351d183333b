/// One decoder under fuzzing: a name (the corpus directory and the `DLOG_FUZZ_TARGET` value), the entry point
/// that feeds it one input and checks its contract, and the seed inputs made by the real encoders.
struct FuzzTarget: Sendable {
    let name: String
    let run: @Sendable ([UInt8]) -> Void
    let seeds: @Sendable () -> [[UInt8]]

    /// Every target, in the order `run.sh` runs them.
    static let all: [FuzzTarget] = [
        WireTargets.bookie, WireTargets.proxy, WireTargets.metadata, LedgerMetadataTarget.target,
    ] + internalDecoders

    #if DEBUG || DLOG_FUZZ
    /// Targets of internal decoders (`@testable import`): debug builds (`make test`) and the fuzzer build
    /// (`run.sh`, optimized with `-enable-testing`). `swift build -c release` (the package, the .deb) then still
    /// compiles this driver.
    static let internalDecoders = [RecordBatchTarget.target, JournalTarget.target, EntryLogTarget.target,
                                   ManifestTarget.target, IndexTarget.target]
    #else
    static let internalDecoders: [FuzzTarget] = []
    #endif

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}

/// A broken contract is a finding like a crash: trap, so libFuzzer saves the input. Decoders must throw on bad
/// input; they must never get here.
func require(_ condition: Bool, _ what: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) {
    if !condition { fatalError("contract broken: \(what())", file: file, line: line) }
}

/// The first byte of an input picks how a target lays out the rest (raw bytes, or a structure the harness
/// completes with CRCs, so that mutations get past the checksums to the code behind them).
struct ModedInput {
    var mode: UInt8
    var rest: [UInt8]
    init(_ bytes: [UInt8]) {
        mode = bytes.first ?? 0
        rest = Array(bytes.dropFirst())
    }
}
