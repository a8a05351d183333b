@testable import DLogBookie
import DLogIO
import Foundation

extension ManifestStore {
    /// Writes both copies of the JSON manifest as earlier dlogd versions did (each atomically, the second
    /// after the first), so upgrade tests start from their files.
    func write(_ manifest: Manifest) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let sealed = SealedFile.seal(kind: Self.kind, version: manifest.version, body: Array(try encoder.encode(manifest)))
        try disk.writeAtomically(primaryPath, sealed)
        try disk.writeAtomically(copyPath, sealed)
    }
}

/// Changes the checkpoint state on disk as `change` says, written as a snapshot to every index copy: the
/// state a bookie that crashed at a chosen moment would leave.
func rewriteIndex(_ directories: [String], disk: any Disk = PosixDisk(), _ change: (inout Manifest) -> Void) throws {
    var store = IndexStore(directories: directories, disk: disk)
    var m = try store.load().manifest
    change(&m)
    try store.writeSnapshot(m)
}

/// The index copies of a storage with these ledger directories, in the order they are written.
func indexPaths(_ directories: [String]) -> [String] { IndexStore(directories: directories, disk: PosixDisk()).paths }

extension IndexFile.Copy {
    var isIntact: Bool {
        if case .intact = self { return true }
        return false
    }

    var generation: UInt64? {
        if case .intact(let c) = self, c.tornTail == nil { return c.generation }
        return nil
    }
}
