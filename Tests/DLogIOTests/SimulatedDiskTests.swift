#if canImport(Glibc)
import Glibc
#endif
import DLogIO
import DLogSimulation
import DLogTestSupport
import Testing

/// What `SimulatedDisk` adds to the contract: the power cut, torn writes and injected faults.
@Suite struct SimulatedDiskTests {
    let disk = SimulatedDisk()
    let dir = "/data"

    init() throws { try disk.makeDirectory(dir) }

    private func file(_ name: String, _ bytes: [UInt8], dataSync: Bool, directorySync: Bool) throws {
        let f = try disk.open(dir + "/" + name, [.create])
        try f.write(bytes, at: 0)
        if dataSync { try f.dataSync() }
        f.close()
        if directorySync { try disk.syncDirectory(dir) }
    }

    /// A crash keeps a file only when both its bytes and its name were synced: an unsynced write is lost, and
    /// so is a synced file whose directory was not.
    @Test func aCrashKeepsOnlyWhatWasSynced() throws {
        try file("both", [1], dataSync: true, directorySync: false)
        try file("nameOnly", [2], dataSync: false, directorySync: true)
        try file("dataOnly", [3], dataSync: true, directorySync: false)
        // The last directory sync came before dataOnly was created.
        disk.crash(seed: 1)
        #expect(try disk.list(dir) == ["both", "nameOnly"])
        #expect(try disk.readAll(dir + "/both") == [1])
        #expect(try disk.readAll(dir + "/nameOnly") == [], "its name survived, its bytes did not")
    }

    /// A rename or remove whose directory was not synced is undone by a crash; once synced, it stays.
    @Test func unsyncedRenamesAndRemovesAreUndone() throws {
        try disk.writeAtomically(dir + "/a", [1])
        try disk.writeAtomically(dir + "/b", [2])
        try disk.rename(dir + "/a", dir + "/c")
        try disk.remove(dir + "/b")
        disk.crash(seed: 2)
        #expect(try disk.list(dir) == ["a", "b"])
        try disk.rename(dir + "/a", dir + "/c")
        try disk.remove(dir + "/b")
        try disk.syncDirectory(dir)
        disk.crash(seed: 3)
        #expect(try disk.list(dir) == ["c"])
        #expect(try disk.readAll(dir + "/c") == [1])
    }

    /// A directory made by makeDirectory survives a crash (its parent was synced), and so does what was synced
    /// inside it; a file in a directory whose own name was never synced vanishes with it.
    @Test func directoriesNeedTheirParentSynced() throws {
        try disk.makeDirectory(dir + "/made")
        try disk.writeAtomically(dir + "/made/file", [5])
        let handRolled = dir + "/handRolled"
        try disk.makeDirectory(handRolled)
        try disk.remove(dir + "/made/file")
        disk.crash(seed: 4)
        #expect(try disk.list(dir) == ["handRolled", "made"])
        #expect(try disk.list(dir + "/made") == ["file"], "the remove was never synced")
    }

    /// A torn crash keeps each unsynced 512-byte sector whole or not at all, chosen by the seed: across seeds
    /// some writes survive in part, and the same seed always keeps the same sectors.
    @Test func tornWritesKeepWholeSectorsBySeed() throws {
        let old = [UInt8](repeating: 0xAA, count: 4096)
        let new = [UInt8](repeating: 0x55, count: 4096)
        var torn = 0
        var results: [UInt64: [UInt8]] = [:]
        for seed in UInt64(1)...20 {
            let disk = SimulatedDisk()
            try disk.makeDirectory(dir)
            try disk.writeAtomically(dir + "/f", old)
            let f = try disk.open(dir + "/f", [])
            try f.write(new, at: 0)
            disk.crash(seed: seed, keep: .randomSectors)
            let after = try disk.readAll(dir + "/f")
            #expect(after.count == 4096)
            for sector in stride(from: 0, to: 4096, by: 512) {
                let part = after[sector ..< sector + 512]
                #expect(part.allSatisfy { $0 == 0xAA } || part.allSatisfy { $0 == 0x55 }, "seed \(seed): sector \(sector) is mixed")
            }
            if after != old && after != new { torn += 1 }
            results[seed] = after
            // Again with the same seed: the same sectors.
            let again = SimulatedDisk()
            try again.makeDirectory(dir)
            try again.writeAtomically(dir + "/f", old)
            try again.open(dir + "/f", []).write(new, at: 0)
            again.crash(seed: seed, keep: .randomSectors)
            #expect(try again.readAll(dir + "/f") == after, "seed \(seed) is not deterministic")
        }
        #expect(torn >= 10, "only \(torn) of 20 seeds tore the write")
    }

    /// An injected EIO on a write fails it and changes nothing; on a sync, the bytes stay readable but are
    /// lost at the next crash even after a later sync succeeds (as on Linux after a failed fsync).
    @Test func aFailedSyncLosesItsBytesForGood() throws {
        try disk.writeAtomically(dir + "/f", [1, 1, 1])
        let f = try disk.open(dir + "/f", [])
        disk.inject(.init(.write, pathContains: "/f"))
        do {
            try f.write([9], at: 0)
            Issue.record("the injected write error did not happen")
        } catch {
            #expect(error.errno == EIO && error.path == dir + "/f")
        }
        #expect(try f.read(count: 3, at: 0) == [1, 1, 1])
        try f.write([2, 2, 2], at: 0)
        disk.inject(.init(.dataSync))
        #expect(throws: SystemError.self) { try f.dataSync() }
        #expect(try f.read(count: 3, at: 0) == [2, 2, 2], "reads still see the bytes of the failed sync")
        try f.write([3], at: 3)
        try f.dataSync()
        disk.crash(seed: 5)
        #expect(try disk.readAll(dir + "/f") == [1, 1, 1, 3], "the failed sync's bytes are gone, the later ones are not")
    }

    /// Past its capacity a write fails with ENOSPC naming the file, and removing a file frees its space.
    @Test func aFullDiskRefusesWritesUntilSpaceIsFreed() throws {
        let small = SimulatedDisk(capacityBytes: 10_000)
        try small.makeDirectory(dir)
        try small.writeAtomically(dir + "/big", [UInt8](repeating: 1, count: 8_000))
        let f = try small.open(dir + "/next", [.create])
        do {
            try f.write([UInt8](repeating: 2, count: 4_000), at: 0)
            Issue.record("a write past the capacity succeeded")
        } catch {
            #expect(error.errno == ENOSPC && error.path == dir + "/next")
        }
        #expect(try small.usage(of: dir).freeBytes == 2_000)
        try small.remove(dir + "/big")
        try f.write([UInt8](repeating: 2, count: 4_000), at: 0)
        #expect(try small.usage(of: dir).freeBytes == 6_000)
    }

    /// After `haltAfter(changes:)` every change fails and does nothing, as if the process died there; a crash
    /// ends it. Handles from before the crash are dead.
    @Test func haltStopsEveryChangeUntilTheCrash() throws {
        let f = try disk.open(dir + "/f", [.create])
        try f.write([1], at: 0)
        disk.haltAfter(changes: 1)
        try f.dataSync()
        #expect(throws: SystemError.self) { try disk.syncDirectory(dir) }
        #expect(throws: SystemError.self) { try f.write([2], at: 1) }
        #expect(try f.read(count: 2, at: 0) == [1], "reads still work")
        disk.crash(seed: 6)
        #expect(throws: SystemError.self) { try f.read(count: 1, at: 0) }
        #expect(try disk.list(dir) == [], "the directory sync never happened")
        try disk.writeAtomically(dir + "/g", [3])
        #expect(try disk.readAll(dir + "/g") == [3])
    }

    /// Bit rot changes what reads return and what a crash keeps, with no error.
    @Test func damageFlipsBitsForGood() throws {
        try disk.writeAtomically(dir + "/f", [0b0000_1111, 7])
        try disk.damage(dir + "/f", at: 0, xor: 0b0000_0101)
        #expect(try disk.readAll(dir + "/f") == [0b0000_1010, 7])
        disk.crash(seed: 7)
        #expect(try disk.readAll(dir + "/f") == [0b0000_1010, 7])
        #expect(throws: SystemError.self) { try disk.damage(dir + "/f", at: 2, xor: 1) }
    }

    /// Injected latency moves the disk's simulated clock, not the wall clock.
    @Test func latencyAdvancesTheSimulatedClock() throws {
        disk.setLatency(.milliseconds(5), for: .dataSync)
        let before = disk.clock.elapsedTime
        let f = try disk.open(dir + "/f", [.create])
        try f.write([1], at: 0)
        try f.dataSync()
        try f.dataSync()
        #expect(disk.clock.elapsedTime - before == .milliseconds(10))
        #expect(disk.calls(.dataSync) == 2)
    }
}
