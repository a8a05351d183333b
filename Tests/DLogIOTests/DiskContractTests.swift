#if canImport(Glibc)
import Glibc
#endif
import DLogIO
import DLogSimulation
import DLogTestSupport
import Testing

/// A disk under test: the real one on a fresh directory, or a simulated one at the same path.
struct DiskUnderTest: CustomStringConvertible, Sendable {
    enum Kind: String, CaseIterable, Sendable { case posix, simulated }
    let kind: Kind
    let disk: any Disk
    let base: String
    let dir: TempDir

    init(_ kind: Kind) throws {
        self.kind = kind
        dir = TempDir("dlog-disk")
        base = dir.path + "/base"
        disk = kind == .posix ? PosixDisk() : SimulatedDisk()
        try disk.makeDirectory(base)
    }

    var description: String { kind.rawValue }
    func path(_ name: String) -> String { base + "/" + name }
}

/// The `Disk` contract: every test runs on the real file system and on `SimulatedDisk`, so the simulation
/// behaves as the real thing wherever no fault is injected.
@Suite struct DiskContractTests {
    /// Bytes written read back whole; a read past the end is short; a gap past the end reads as zeros.
    @Test(arguments: DiskUnderTest.Kind.allCases) func writesReadBackAndGapsAreZero(_ kind: DiskUnderTest.Kind) throws {
        let t = try DiskUnderTest(kind)
        let f = try t.disk.open(t.path("a"), [.create])
        defer { f.close() }
        try f.write(Array("hello".utf8), at: 0)
        try f.write(Array("world".utf8), at: 10)
        #expect(try f.size() == 15)
        #expect(try f.read(count: 15, at: 0) == Array("hello".utf8) + [0, 0, 0, 0, 0] + Array("world".utf8))
        #expect(try f.read(count: 100, at: 12) == Array("rld".utf8))
        #expect(try f.read(count: 4, at: 15) == [])
        #expect(try f.read(count: 4, at: 99) == [])
        try f.dataSync()
        try f.sync()
        #expect(try t.disk.readAll(t.path("a")).count == 15)
    }

    /// Opening a missing file without `.create` is ENOENT; an exclusive create of an existing one is EEXIST;
    /// `.truncate` empties; both errors name the path.
    @Test(arguments: DiskUnderTest.Kind.allCases) func openErrorsMatchTheRealFileSystem(_ kind: DiskUnderTest.Kind) throws {
        let t = try DiskUnderTest(kind)
        #expect(throws: SystemError.self) { try t.disk.open(t.path("missing"), []) }
        do {
            _ = try t.disk.open(t.path("missing"), [])
        } catch {
            #expect(error.errno == ENOENT && error.path == t.path("missing"))
        }
        do {
            _ = try t.disk.open(t.path("none/inside"), [.create])
        } catch {
            #expect(error.errno == ENOENT)
        }
        let f = try t.disk.open(t.path("x"), [.create, .exclusive])
        try f.write([1, 2, 3], at: 0)
        f.close()
        do {
            _ = try t.disk.open(t.path("x"), [.create, .exclusive])
            Issue.record("exclusive create of an existing file succeeded")
        } catch {
            #expect(error.errno == EEXIST)
        }
        let again = try t.disk.open(t.path("x"), [.create, .truncate])
        #expect(try again.size() == 0)
        again.close()
        let reader = try t.disk.open(t.path("x"), [.readOnly])
        #expect(try reader.size() == 0)
        reader.close()
    }

    /// Names: list is sorted and complete, remove of a missing file is no error, rename replaces its target.
    @Test(arguments: DiskUnderTest.Kind.allCases) func namesListRenameAndRemove(_ kind: DiskUnderTest.Kind) throws {
        let t = try DiskUnderTest(kind)
        for name in ["c", "a", "b"] { try t.disk.writeAtomically(t.path(name), Array(name.utf8)) }
        #expect(try t.disk.list(t.base) == ["a", "b", "c"])
        try t.disk.rename(t.path("a"), t.path("c"))
        #expect(try t.disk.list(t.base) == ["b", "c"])
        #expect(try t.disk.readAll(t.path("c")) == Array("a".utf8))
        #expect(!t.disk.exists(t.path("a")) && t.disk.exists(t.path("c")))
        try t.disk.remove(t.path("b"))
        try t.disk.remove(t.path("b"))
        #expect(try t.disk.list(t.base) == ["c"])
        do {
            try t.disk.rename(t.path("gone"), t.path("elsewhere"))
            Issue.record("rename of a missing file succeeded")
        } catch {
            #expect(error.errno == ENOENT)
        }
        do {
            _ = try t.disk.list(t.path("nothing"))
            Issue.record("list of a missing directory succeeded")
        } catch {
            #expect(error.errno == ENOENT && error.path == t.path("nothing"))
        }
    }

    /// A removed file stays readable through a handle opened before the remove.
    @Test(arguments: DiskUnderTest.Kind.allCases) func anOpenHandleOutlivesItsName(_ kind: DiskUnderTest.Kind) throws {
        let t = try DiskUnderTest(kind)
        let f = try t.disk.open(t.path("kept"), [.create])
        defer { f.close() }
        try f.write([7, 8, 9], at: 0)
        try t.disk.remove(t.path("kept"))
        #expect(!t.disk.exists(t.path("kept")))
        #expect(try f.read(count: 3, at: 0) == [7, 8, 9])
    }

    /// Truncation shrinks and grows (with zeros); allocation grows a shorter file and never shrinks one.
    @Test(arguments: DiskUnderTest.Kind.allCases) func truncateAndAllocate(_ kind: DiskUnderTest.Kind) throws {
        let t = try DiskUnderTest(kind)
        let f = try t.disk.open(t.path("t"), [.create])
        defer { f.close() }
        try f.write([1, 2, 3, 4, 5, 6], at: 0)
        try f.truncate(to: 2)
        #expect(try f.read(count: 10, at: 0) == [1, 2])
        try f.truncate(to: 4)
        #expect(try f.read(count: 10, at: 0) == [1, 2, 0, 0])
        try f.allocate(offset: 0, length: 8192)
        #expect(try f.size() == 8192)
        try f.allocate(offset: 0, length: 16)
        #expect(try f.size() == 8192)
        #expect(try f.read(count: 4, at: 0) == [1, 2, 0, 0])
    }

    /// Directories: nested creation, an existing one is no error, and they show up in their parent's list.
    @Test(arguments: DiskUnderTest.Kind.allCases) func directories(_ kind: DiskUnderTest.Kind) throws {
        let t = try DiskUnderTest(kind)
        try t.disk.makeDirectory(t.path("d/e/f"))
        try t.disk.makeDirectory(t.path("d/e"))
        #expect(t.disk.exists(t.path("d/e/f")))
        #expect(try t.disk.list(t.path("d")) == ["e"])
        try t.disk.syncDirectory(t.path("d/e"))
        try t.disk.writeAtomically(t.path("d/e/f/file"), [1])
        #expect(try t.disk.list(t.path("d/e/f")) == ["file"])
        do {
            try t.disk.syncDirectory(t.path("d/none"))
            Issue.record("sync of a missing directory succeeded")
        } catch {
            #expect(error.errno == ENOENT)
        }
    }

    /// Usage: a size, and free space no larger than it, for a path that exists; ENOENT for one that does not.
    @Test(arguments: DiskUnderTest.Kind.allCases) func usage(_ kind: DiskUnderTest.Kind) throws {
        let t = try DiskUnderTest(kind)
        let u = try t.disk.usage(of: t.base)
        #expect(u.totalBytes > 0 && u.freeBytes <= u.totalBytes)
        #expect(throws: SystemError.self) { try t.disk.usage(of: t.path("nothing")) }
    }
}
