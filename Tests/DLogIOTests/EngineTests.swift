import DLogIO
import Foundation
import Testing

@Suite struct EngineTests {
    static var engines: [(EngineChoice, SyncMode)] {
        let kinds: [EngineChoice] = [.blocking] + (URingEngine.probe() == nil ? [.ioUring] : [])
            + (AIOEngine.probe() == nil ? [.libaio] : [])
        return kinds.flatMap { k in SyncMode.allCases.map { (k, $0) } }
    }

    /// A pre-written 64 KiB file opened for `sync`, with its directory (removed by the caller).
    func preparedFile(_ sync: SyncMode) throws -> (String, File) {
        let (dir, plain) = try tempFile()
        plain.close()
        return (dir, try File.open(dir + "/f", sync.fileOptions))
    }

    func tempFile() throws -> (String, File) {
        let dir = NSTemporaryDirectory() + "dlog-io-\(UUID().uuidString)"
        try FileSystem.makeDirectory(dir)
        let path = dir + "/f"
        let prep = try File.open(path, [.create])
        let zeros = AlignedBuffer(capacity: 1 << 16)
        zeros.count = 1 << 16
        try prep.pwriteAll(UnsafeRawBufferPointer(zeros.bytes), at: 0)
        prep.close()
        return (dir, try File.open(path))
    }

    /// What an engine reports durable reads back byte for byte, in submission order of tokens.
    @Test(arguments: engines)
    func writesAreReadBack(kind: EngineChoice, sync: SyncMode) throws {
        let (dir, file) = try preparedFile(sync)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        defer { file.close() }
        let engine = try EngineSelector.make(kind, syncMode: sync)
        let buffer = AlignedBuffer(capacity: 8192)
        for round in 0..<4 {
            buffer.count = 8192
            for i in 0..<8192 { buffer.base.storeBytes(of: UInt8(truncatingIfNeeded: i + round), toByteOffset: i, as: UInt8.self) }
            try engine.submit(file: PosixFile(file: file), buffer: buffer.base, count: 8192, offset: Int64(round * 8192), token: UInt64(round))
            #expect(engine.inFlight == 1)
            #expect(try engine.awaitCompletion() == UInt64(round))
        }
        let reader = try File.open(dir + "/f", [.readOnly])
        defer { reader.close() }
        for round in 0..<4 {
            let back = try reader.pread(count: 8192, at: Int64(round * 8192))
            #expect(back == (0..<8192).map { UInt8(truncatingIfNeeded: $0 + round) })
        }
    }

    /// A refused write surfaces as an error naming the call and file, never as success. O_DIRECT with a
    /// misaligned length makes the kernel refuse it with EINVAL.
    @Test(arguments: engines.filter { $0.1 == .dsync })
    func refusedWriteIsAnError(kind: EngineChoice, sync: SyncMode) throws {
        let (dir, file) = try preparedFile(sync)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        defer { file.close() }
        let engine = try EngineSelector.make(kind, syncMode: sync)
        let buffer = AlignedBuffer(capacity: 4096)
        do {
            try engine.submit(file: PosixFile(file: file), buffer: buffer.base, count: 100, offset: 0, token: 1)
            _ = try engine.awaitCompletion()
            Issue.record("a misaligned O_DIRECT write succeeded")
        } catch {
            #expect(error.errno == EINVAL)
            #expect(error.path == dir + "/f")
        }
    }

    /// `auto` goes io_uring → libaio → blocking, naming each refusal and its likely cause; an engine chosen
    /// by name fails rather than falling back.
    @Test func autoFallsBackWithReason() throws {
        let uringRefused = SystemError(call: "io_uring_queue_init", path: "journal ring", errno: EPERM)
        let noURing = EngineSelector(probeURing: { uringRefused }, probeAIO: { nil })
        let toAIO = try noURing.decide(.auto)
        #expect(toAIO.engine == .libaio)
        #expect(toAIO.fallbackReason?.contains("io_uring_queue_init") == true && toAIO.fallbackReason?.contains("seccomp") == true,
                "\(toAIO)")
        #expect(throws: SystemError.self) { try noURing.decide(.ioUring) }
        #expect(try noURing.decide(.libaio) == .init(engine: .libaio, fallbackReason: nil))
        let refused = EngineSelector(probeURing: { uringRefused },
                                     probeAIO: { SystemError(call: "io_setup", path: "journal AIO context", errno: ENOSYS) })
        let decision = try refused.decide(.auto)
        #expect(decision.engine == .blocking)
        #expect(decision.fallbackReason?.contains("io_uring_queue_init") == true
                && decision.fallbackReason?.contains("libaio refused (io_setup") == true
                && decision.fallbackReason?.contains("the kernel lacks it") == true, "\(decision)")
        #expect(throws: SystemError.self) { try refused.decide(.ioUring) }
        #expect(throws: SystemError.self) { try refused.decide(.libaio) }
        let works = EngineSelector(probeURing: { nil })
        #expect(try works.decide(.auto) == .init(engine: .ioUring, fallbackReason: nil))
        #expect(try works.decide(.blocking) == .init(engine: .blocking, fallbackReason: nil))
    }

    /// Directory helpers: atomic write replaces content; usage and device identity are readable.
    @Test func fileSystemHelpers() throws {
        let dir = NSTemporaryDirectory() + "dlog-fs-\(UUID().uuidString)/a/b"
        try FileSystem.makeDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileSystem.writeAtomically(dir + "/x", Array("one".utf8))
        try FileSystem.writeAtomically(dir + "/x", Array("two".utf8))
        #expect(try FileSystem.readAll(dir + "/x") == Array("two".utf8))
        #expect(try FileSystem.list(dir) == ["x"])
        let usage = try FileSystem.usage(of: dir)
        #expect(usage.totalBytes > 0 && usage.usedFraction >= 0 && usage.usedFraction <= 1)
        #expect(try FileSystem.device(of: dir) == FileSystem.device(of: FileSystem.parent(of: dir)))
        #expect(throws: SystemError.self) { try FileSystem.readAll(dir + "/missing") }
    }
}
