import DLogIO
import Foundation

/// Directory identity. On first start every journal and ledger directory gets a `COOKIE` file naming the
/// bookie instance and the directory's role and place; later starts check them all, so a missing, swapped
/// or foreign directory (a wiped disk, a disk from another bookie, a config edit) is refused by name.
public enum Cookies {
    public static let fileName = "COOKIE"

    struct Cookie: Codable, Equatable {
        var instance: String
        var role: String
        var index: Int
        var journalDirectories: [String]
        var ledgerDirectories: [String]
    }

    public struct Mismatch: Error, CustomStringConvertible {
        public var directory: String
        public var reason: String
        public var description: String {
            "directory \(directory) \(reason). Refusing to start: if the disk was replaced or the configuration "
                + "changed on purpose, move the old data aside and remove the COOKIE files to start this bookie afresh"
        }
    }

    static let kind = "dlog-cookie"
    static let version = 2
    /// A cookie written on first start, renamed to `COOKIE` once every directory has one.
    public static let pendingName = "COOKIE.new"

    /// What one directory holds.
    enum Found {
        case none
        case cookie(Cookie)
        /// Only a `COOKIE.new`: a first start stopped between writing the cookies and putting them in place.
        case pending(Cookie)
    }

    /// Creates cookies on a fresh bookie, or checks them. Returns the instance id.
    ///
    /// A first start is all or nothing: it writes `COOKIE.new` into every directory (each synced), and only
    /// then renames them to `COOKIE`. So a start after a crash finds either no `COOKIE` at all (the pending
    /// cookies are discarded and the start begins again), or a `COOKIE` in some directories and a
    /// `COOKIE.new` of the same instance in the others (the renames are finished). Only a directory with
    /// neither, beside others that have one, is a new or wiped disk and refused.
    @discardableResult
    public static func verifyOrCreate(journal: [String], ledger: [String], disk: any Disk = PosixDisk()) throws -> String {
        let all = journal.enumerated().map { ($0.element, "journal", $0.offset) }
            + ledger.enumerated().map { ($0.element, "ledger", $0.offset) }
        var found: [(String, Found)] = []
        for (dir, _, _) in all {
            try disk.makeDirectory(dir)
            found.append((dir, try read(dir, disk: disk)))
        }
        let placed = found.compactMap { dir, f -> (String, Cookie)? in
            if case .cookie(let c) = f { return (dir, c) }
            return nil
        }
        if placed.isEmpty {
            // A new bookie, or a first start that stopped before any cookie was in place: begin again.
            for (dir, f) in found {
                if case .pending = f { try disk.remove(dir + "/" + pendingName) }
            }
            let instance = UUID().uuidString.lowercased()
            for (dir, role, index) in all {
                try write(Cookie(instance: instance, role: role, index: index, journalDirectories: journal,
                                 ledgerDirectories: ledger), to: dir + "/" + pendingName, disk: disk)
            }
            for (dir, _, _) in all { try promote(dir, disk: disk) }
            return instance
        }
        let instance = placed[0].1.instance
        // A foreign disk is named as such before any finer mismatch.
        for (dir, f) in found {
            if case .cookie(let cookie) = f, cookie.instance != instance {
                throw Mismatch(directory: dir, reason: "belongs to another bookie (instance \(cookie.instance), "
                                   + "while \(placed[0].0) belongs to \(instance))")
            }
        }
        for (i, (dir, role, index)) in all.enumerated() {
            let expected = Cookie(instance: instance, role: role, index: index, journalDirectories: journal,
                                  ledgerDirectories: ledger)
            switch found[i].1 {
            case .cookie(let cookie):
                try check(cookie, expected, dir, placed[0].0)
            case .pending(let cookie):
                // Every cookie was written before any was renamed: finish the renames.
                try check(cookie, expected, dir, placed[0].0)
                try promote(dir, disk: disk)
            case .none:
                throw Mismatch(directory: dir, reason: "has no COOKIE while the other directories of this bookie do "
                                   + "(a new or wiped disk?)")
            }
        }
        return instance
    }

    private static func check(_ cookie: Cookie, _ expected: Cookie, _ dir: String, _ first: String) throws {
        if cookie.instance != expected.instance {
            throw Mismatch(directory: dir, reason: "belongs to another bookie (instance \(cookie.instance), "
                               + "while \(first) belongs to \(expected.instance))")
        }
        if cookie.role != expected.role || cookie.index != expected.index {
            throw Mismatch(directory: dir, reason: "was \(cookie.role) directory #\(cookie.index + 1) and is now "
                               + "configured as \(expected.role) directory #\(expected.index + 1) (swapped?)")
        }
        if cookie != expected {
            throw Mismatch(directory: dir, reason: "was set up with journal dirs \(cookie.journalDirectories) "
                               + "and ledger dirs \(cookie.ledgerDirectories); the configuration now lists "
                               + "\(expected.journalDirectories) and \(expected.ledgerDirectories)")
        }
    }

    /// Reads a directory's cookie: sealed (kind `dlog-cookie`, version 2), or the unsealed JSON of
    /// version 1, which is sealed in place.
    static func read(_ dir: String, disk: any Disk = PosixDisk()) throws -> Found {
        let path = dir + "/" + fileName
        if disk.exists(path) {
            let bytes = try disk.readAll(path)
            if !SealedFile.looksSealed(bytes, kind: kind), let legacy = try? JSONDecoder().decode(Cookie.self, from: Data(bytes)) {
                try write(legacy, to: path, disk: disk)
                return .cookie(legacy)
            }
            return .cookie(try decode(bytes, path, dir))
        }
        let pending = dir + "/" + pendingName
        if disk.exists(pending) {
            // A damaged pending cookie is one whose write did not finish: none was renamed yet, so begin again.
            guard let cookie = try? decode(try disk.readAll(pending), pending, dir) else {
                try disk.remove(pending)
                return .none
            }
            return .pending(cookie)
        }
        return .none
    }

    private static func decode(_ bytes: [UInt8], _ path: String, _ dir: String) throws -> Cookie {
        do {
            let (version, body) = try SealedFile.open(bytes, kind: kind, path: path)
            guard version == Self.version else {
                throw Mismatch(directory: dir, reason: "has a COOKIE of format version \(version); this dlogd reads "
                                   + "version \(Self.version)")
            }
            return try JSONDecoder().decode(Cookie.self, from: Data(body))
        } catch let error as StorageCorruption {
            throw Mismatch(directory: dir, reason: "has a damaged COOKIE file (\(error.reason))")
        } catch let error as Mismatch {
            throw error
        } catch {
            throw Mismatch(directory: dir, reason: "has an unreadable COOKIE file (\(error))")
        }
    }

    private static func write(_ cookie: Cookie, to path: String, disk: any Disk) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try disk.writeAtomically(path, SealedFile.seal(kind: kind, version: version,
                                                             body: Array(try encoder.encode(cookie))))
    }

    /// `COOKIE.new` → `COOKIE`, made durable.
    private static func promote(_ dir: String, disk: any Disk) throws {
        try disk.rename(dir + "/" + pendingName, dir + "/" + fileName)
        try disk.syncDirectory(dir)
    }

    /// Pairs of (journal dir, ledger dir) on the same device.
    public static func sharedDevices(journal: [String], ledger: [String]) -> [(String, String)] {
        var out: [(String, String)] = []
        for j in journal {
            guard let dj = try? FileSystem.device(of: j) else { continue }
            for l in ledger where (try? FileSystem.device(of: l)) == dj { out.append((j, l)) }
        }
        return out
    }
}
