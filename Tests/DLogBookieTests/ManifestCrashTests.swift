@testable import DLogBookie
import DLogIO
import DLogTestSupport
import Testing

/// The checkpoint manifest on a simulated disk, cut off by a power cut at every step of its write.
@Suite struct ManifestCrashTests {
    private func manifest(_ generation: UInt64) -> Manifest {
        var m = Manifest()
        m.generation = generation
        m.journalMarks = [JournalPosition(fileNumber: generation, offset: 4096, nextSeq: generation * 10)]
        return m
    }

    /// A manifest write stopped after any number of its disk changes, then a crash that drops or tears what
    /// was not synced: start-up loads the old generation or the new one, never refuses; and once `write`
    /// returned, the new one. Run with one ledger directory and with two (the copy in the other).
    @Test(arguments: [["/l0"], ["/l0", "/l1"]]) func everyCutLeavesALoadableManifest(_ directories: [String]) throws {
        var completedAt: Int?
        for cut in 0 ..< 100 where completedAt == nil {
            let disk = SimulatedDisk()
            for dir in directories { try disk.makeDirectory(dir) }
            let store = ManifestStore(directories: directories, disk: disk)
            try store.write(manifest(1))
            disk.haltAfter(changes: cut)
            let completed = (try? store.write(manifest(2))) != nil
            let seed = UInt64(cut)
            disk.crash(seed: seed, keep: cut.isMultiple(of: 2) ? .nothing : .randomSectors)
            let loaded: ManifestStore.Loaded
            do {
                loaded = try store.load()
            } catch {
                Issue.record("cut after \(cut) changes (seed \(seed)): start-up refused: \(error)")
                continue
            }
            let generation = loaded.manifest.generation
            #expect(generation == 1 || generation == 2, "cut after \(cut) changes: generation \(generation)")
            #expect(loaded.manifest == manifest(generation), "cut after \(cut) changes: not the manifest written")
            if completed {
                #expect(generation == 2, "the write returned, yet a crash after it lost it (\(cut) changes)")
                completedAt = cut
            }
        }
        #expect(completedAt != nil, "a manifest write never completed within 100 changes")
    }
}
