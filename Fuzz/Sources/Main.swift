#if canImport(Glibc)
import Glibc
#endif
import Foundation

// Two builds of one program. Without `-D DLOG_FUZZ` (the normal `swift build`) it is a driver that writes the
// seed corpus and replays inputs through the same entry points, so API drift breaks the ordinary build. With
// `-sanitize=fuzzer -D DLOG_FUZZ` (Fuzz/run.sh) `main` hands over to libFuzzer's driver. SwiftPM links an
// executable's `main` to this module's entry point, so libFuzzer's own `main` cannot be used; its
// `LLVMFuzzerRunDriver` is the documented way in for programs that keep their own `main`.

/// The target `LLVMFuzzerTestOneInput` feeds, from `DLOG_FUZZ_TARGET` (read once).
let selectedTarget: FuzzTarget? = ProcessInfo.processInfo.environment["DLOG_FUZZ_TARGET"].flatMap(FuzzTarget.named)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target = selectedTarget else { fatalError("DLOG_FUZZ_TARGET names no target; see `dlog-fuzz list`") }
    target.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

#if DLOG_FUZZ
@_silgen_name("LLVMFuzzerRunDriver")
func llvmFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt
#endif

@main
struct DLogFuzz {
    static let usage = """
        usage: dlog-fuzz list                     names of the fuzz targets
               dlog-fuzz seed DIR                 write each target's seeds to DIR/<target>/
               dlog-fuzz replay TARGET PATH...    run files (or every file of directories) through TARGET
               DLOG_FUZZ_TARGET=T dlog-fuzz [libFuzzer flags] [corpus dirs]   (fuzzer build only)
        """

    static func main() throws {
        let args = Array(CommandLine.arguments.dropFirst())
        switch args.first {
        case "list":
            for target in FuzzTarget.all { print(target.name) }
        case "seed" where args.count == 2:
            try writeSeeds(into: args[1])
        case "replay" where args.count >= 3:
            guard let target = FuzzTarget.named(args[1]) else { fail("no target \(args[1])") }
            let files = try args.dropFirst(2).flatMap(filesUnder)
            for path in files { target.run(Array(try Data(contentsOf: URL(fileURLWithPath: path)))) }
            print("\(target.name): \(files.count) inputs replayed, contract held")
        default:
            #if DLOG_FUZZ
            guard selectedTarget != nil else { fail("set DLOG_FUZZ_TARGET to one of: " + names) }
            var argc = CommandLine.argc
            var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
            exit(llvmFuzzerRunDriver(&argc, &argv) { fuzzTestOneInput($0, $1) })
            #else
            fail(usage + "\n(this build has no libFuzzer; Fuzz/run.sh makes one)")
            #endif
        }
    }

    static var names: String { FuzzTarget.all.map(\.name).joined(separator: ", ") }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(2)
    }

    static func writeSeeds(into directory: String) throws {
        for target in FuzzTarget.all {
            let dir = URL(fileURLWithPath: directory).appendingPathComponent(target.name)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for (i, seed) in target.seeds().enumerated() {
                target.run(seed)  // a seed that breaks the contract is a bug in the seed or in the codec
                try Data(seed).write(to: dir.appendingPathComponent(String(format: "seed-%02d", i)))
            }
        }
    }

    static func filesUnder(_ path: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { fail("no file \(path)") }
        guard isDirectory.boolValue else { return [path] }
        return try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { path + "/" + $0 }
    }
}
