import DLogIO
import Foundation

/// The JSON checkpoint manifest that earlier dlogd versions kept, read once when a bookie upgrades (the
/// ledger index, `IndexStore`, replaces it and removes these files). Sealed (`SealedFile`, kind
/// `dlog-manifest`), in two copies that were written one after the other at every checkpoint:
///
///     <first ledger dir>/checkpoint.manifest
///     <last ledger dir>/checkpoint.manifest.copy     (the same directory when there is one)
///
/// Journals are released and dropped entry logs unlinked only after both copies are written, so either copy
/// alone describes files that all still exist and a journal that still holds everything after its marks.
/// Start-up therefore may use whichever intact copy is newer. The decision table of `load()`:
///
/// | checkpoint.manifest | .copy | result |
/// |---|---|---|
/// | intact | intact | the higher generation |
/// | intact | absent or damaged | the intact one; the damage is reported |
/// | absent or damaged | intact | the same, the other way round |
/// | damaged | damaged or absent | refused, naming each file and what is wrong with it |
/// | absent | damaged | refused |
/// | absent | absent | an unsealed `checkpoint.json` (version 1, written by dlogd before 0.7) is read; with none, the bookie is new, unless entry logs exist, which is refused |
struct ManifestStore {
    static let kind = "dlog-manifest"
    static let fileName = "checkpoint.manifest"
    static let copyName = "checkpoint.manifest.copy"
    static let legacyName = "checkpoint.json"

    let directories: [String]
    /// Every file call goes through the disk seam (the fuzz target reads from a simulated disk).
    var disk: any Disk = PosixDisk()

    var primaryPath: String { directories[0] + "/" + Self.fileName }
    var copyPath: String { directories[directories.count - 1] + "/" + Self.copyName }
    var legacyPath: String { directories[0] + "/" + Self.legacyName }

    enum Copy {
        case absent
        case intact(Manifest)
        case damaged(String)
    }

    struct Loaded {
        var manifest: Manifest
        /// What start-up had to work around (a damaged copy, an unsealed manifest): logged as warnings.
        var notes: [String]
    }

    func load() throws -> Loaded {
        let primary = read(primaryPath)
        let copy = read(copyPath)
        switch (primary, copy) {
        case (.intact(let a), .intact(let b)):
            return Loaded(manifest: a.generation >= b.generation ? a : b, notes: [])
        case (.intact(let m), .damaged(let why)), (.damaged(let why), .intact(let m)):
            let (bad, good) = Self.isIntact(primary) ? (copyPath, primaryPath) : (primaryPath, copyPath)
            return Loaded(manifest: m, notes: ["\(bad) is damaged (\(why)); started from \(good), generation "
                                               + "\(m.generation)"])
        case (.intact(let m), .absent), (.absent, .intact(let m)):
            let (missing, good) = Self.isIntact(primary) ? (copyPath, primaryPath) : (primaryPath, copyPath)
            // A crash between the two writes of the very first checkpoint leaves only the first copy.
            return Loaded(manifest: m, notes: m.generation <= 1 ? [] : ["\(missing) is missing; started from \(good), "
                                                                        + "generation \(m.generation)"])
        case (.damaged, _), (_, .damaged):
            var reasons: [String] = []
            if case .damaged(let why) = primary { reasons.append("\(primaryPath): \(why)") }
            if case .damaged(let why) = copy { reasons.append("\(copyPath): \(why)") }
            if case .absent = primary { reasons.append("\(primaryPath): missing") }
            if case .absent = copy { reasons.append("\(copyPath): missing") }
            throw StorageCorruption(path: primaryPath, reason: "no intact copy of the checkpoint manifest ("
                                    + reasons.joined(separator: "; ") + "). Nothing was changed on disk. Restore "
                                    + "one copy from a backup, or treat this bookie's ledger disks as lost: move "
                                    + "its journal and ledger directories aside and start it afresh")
        case (.absent, .absent):
            return try loadLegacyOrNew()
        }
    }

    private static func isIntact(_ copy: Copy) -> Bool {
        if case .intact = copy { return true }
        return false
    }

    /// One copy, checked: the seal, the version, the JSON, and that it names only configured directories.
    func read(_ path: String) -> Copy {
        guard disk.exists(path) else { return .absent }
        do {
            let bytes = try disk.readAll(path)
            guard SealedFile.looksSealed(bytes, kind: Self.kind) else {
                return .damaged("it does not start with a \(Self.kind) header")
            }
            let (version, body) = try SealedFile.open(bytes, kind: Self.kind, path: path)
            guard version == Manifest.currentVersion else {
                return .damaged("format version \(version) is not supported; this dlogd reads version "
                                + "\(Manifest.currentVersion)")
            }
            let manifest = try JSONDecoder().decode(Manifest.self, from: Data(body))
            // A negative index is damage too: start-up indexes `directories` with it.
            if let wrong = manifest.entryLogs.first(where: { !directories.indices.contains($0.directory) }) {
                return .damaged("entry log \(wrong.id) is in ledger directory #\(wrong.directory + 1), but "
                                + "\(directories.count) are configured")
            }
            return .intact(manifest)
        } catch let error as StorageCorruption {
            return .damaged(error.reason)
        } catch {
            return .damaged("\(error)")
        }
    }

    private func loadLegacyOrNew() throws -> Loaded {
        guard disk.exists(legacyPath) else {
            let stray = try directories.flatMap { dir in
                try disk.list(dir).filter { EntryLogName.parse($0)?.temporary == false }.map { dir + "/" + $0 }
            }
            guard stray.isEmpty else {
                throw StorageCorruption(path: directories[0] + "/" + IndexStore.fileName, reason: "the ledger index "
                                        + "is missing (every copy, and no checkpoint manifest of an earlier version is "
                                        + "here either) while entry logs exist (\(stray.prefix(3).joined(separator: ", "))"
                                        + "\(stray.count > 3 ? ", …" : "")). Nothing was changed on disk. Restore the "
                                        + "index from a backup, or move the ledger and journal directories aside "
                                        + "to start this bookie afresh")
            }
            return Loaded(manifest: Manifest(), notes: [])
        }
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(try disk.readAll(legacyPath)))
        } catch {
            throw StorageCorruption(path: legacyPath, reason: "unsealed checkpoint manifest cannot be parsed: \(error)")
        }
        guard manifest.version == 1 else {
            throw StorageCorruption(path: legacyPath, reason: "unsealed checkpoint manifest has version "
                                    + "\(manifest.version); only version 1 was ever written unsealed")
        }
        return Loaded(manifest: manifest, notes: ["read the unsealed version 1 manifest \(legacyPath)"])
    }
}

/// The names of entry-log files: `entrylog-ID.log`, and `entrylog-ID.log.tmp` while one is written.
struct EntryLogName: Equatable {
    var id: UInt64
    var temporary: Bool

    static func parse(_ name: String) -> EntryLogName? {
        guard name.hasPrefix("entrylog-") else { return nil }
        var rest = name.dropFirst("entrylog-".count)
        let temporary = rest.hasSuffix(".log.tmp")
        guard temporary || rest.hasSuffix(".log") else { return nil }
        rest = rest.dropLast(temporary ? 8 : 4)
        guard !rest.isEmpty, rest.allSatisfy(\.isASCII), rest.allSatisfy(\.isNumber), let id = UInt64(rest) else { return nil }
        return EntryLogName(id: id, temporary: temporary)
    }
}
