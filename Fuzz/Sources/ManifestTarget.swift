// Reaches internal decoders through `@testable import`, which only a build with testability allows (debug, or
// the fuzzer build): a release build of the package leaves this target out (FuzzTarget.all).
#if DEBUG || DLOG_FUZZ
@testable import DLogBookie
import DLogIO
import DLogSimulation
import Foundation

/// `SealedFile.open` and `ManifestStore.read` (the JSON checkpoint manifest of earlier versions, which a
/// bookie reads once when it upgrades), on a file of a `SimulatedDisk` in a two-directory bookie. Mode bit 1: the input is the JSON body and the harness seals it
/// (bit 2: as version 1), so mutations reach the JSON; otherwise the input is the file.
/// Contracts: an intact seal re-seals to the same bytes; an intact manifest names only configured
/// directories, and sealed again and read it is the same manifest.
enum ManifestTarget {

    static let target = FuzzTarget(name: "manifest", run: { bytes in
        let input = ModedInput(bytes)
        let file = input.mode & 1 != 0
            ? SealedFile.seal(kind: ManifestStore.kind, version: input.mode & 2 != 0 ? 1 : Manifest.currentVersion, body: input.rest)
            : input.rest
        if let (version, body) = try? SealedFile.open(file, kind: ManifestStore.kind, path: "fuzz") {
            require(SealedFile.seal(kind: ManifestStore.kind, version: version, body: body) == file,
                    "an intact sealed file re-seals to other bytes")
        }
        let store = ManifestStore(directories: ["/d0", "/d1"], disk: SimulatedDisk())
        guard case .intact(let loaded) = read(file, in: store) else { return }
        require(loaded.entryLogs.allSatisfy { (0..<store.directories.count).contains($0.directory) },
                "an intact manifest names a ledger directory that is not configured")
        // read() checks the sealed header's version, not the body's: seal it again as the current version.
        var manifest = loaded
        manifest.version = Manifest.currentVersion
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let body = try? encoder.encode(manifest) else { fatalError("an intact manifest does not encode") }
        let sealed = SealedFile.seal(kind: ManifestStore.kind, version: Manifest.currentVersion, body: Array(body))
        guard case .intact(let again) = read(sealed, in: store) else { fatalError("a sealed manifest does not read back") }
        require(again == manifest, "the manifest does not survive sealing and reading")
    }, seeds: ManifestSeeds.all)

    static func read(_ file: [UInt8], in store: ManifestStore) -> ManifestStore.Copy {
        do {
            for directory in store.directories { try store.disk.makeDirectory(directory) }
            try store.disk.writeAtomically(store.primaryPath, file)
        } catch {
            fatalError("the simulated disk refused the file: \(error)")
        }
        return store.read(store.primaryPath)
    }
}

/// Manifests as a checkpoint writes them (sorted-key JSON), sealed and as bodies.
enum ManifestSeeds {
    @Sendable static func all() -> [[UInt8]] {
        var manifest = Manifest()
        manifest.generation = 3
        manifest.journalMarks = [JournalPosition(fileNumber: 2, offset: 8192, nextSeq: 40), nil]
        manifest.nextEntryLogID = 5
        manifest.entryLogs = [EntryLogInfo(id: 4, directory: 1, totalBytes: 16384, dataBytes: 900,
                                           ledgers: [7: EntryLogLedgerRange(first: 0, last: 9, count: 10, bytes: 900)])]
        manifest.removing = [RemovedEntryLog(id: 3, directory: 0)]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bodies = [Manifest(), manifest].map { Array((try? encoder.encode($0)) ?? Data()) }
        return bodies.flatMap { body in
            [[0] + SealedFile.seal(kind: ManifestStore.kind, version: Manifest.currentVersion, body: body), [1] + body]
        }
    }
}
#endif
