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

    /// Creates cookies on a fresh bookie, or checks them. Returns the instance id.
    @discardableResult
    public static func verifyOrCreate(journal: [String], ledger: [String]) throws -> String {
        let all = journal.enumerated().map { ($0.element, "journal", $0.offset) }
            + ledger.enumerated().map { ($0.element, "ledger", $0.offset) }
        var found: [(String, Cookie)] = []
        for (dir, _, _) in all {
            try FileSystem.makeDirectory(dir)
            let path = dir + "/" + fileName
            guard FileSystem.exists(path) else { continue }
            let bytes = try FileSystem.readAll(path)
            guard let cookie = try? JSONDecoder().decode(Cookie.self, from: Data(bytes)) else {
                throw Mismatch(directory: dir, reason: "has an unreadable COOKIE file")
            }
            found.append((dir, cookie))
        }
        let instance: String
        if found.isEmpty {
            instance = UUID().uuidString.lowercased()
        } else {
            instance = found[0].1.instance
        }
        for (dir, cookie) in found where cookie.instance != instance {
            throw Mismatch(directory: dir, reason: "belongs to another bookie (instance \(cookie.instance), "
                               + "while \(found[0].0) belongs to \(instance))")
        }
        for (dir, role, index) in all {
            let expected = Cookie(instance: instance, role: role, index: index, journalDirectories: journal,
                                  ledgerDirectories: ledger)
            if let cookie = found.first(where: { $0.0 == dir })?.1 {
                if cookie.role != role || cookie.index != index {
                    throw Mismatch(directory: dir, reason: "was \(cookie.role) directory #\(cookie.index + 1) and is now "
                                       + "configured as \(role) directory #\(index + 1) (swapped?)")
                }
                if cookie != expected {
                    throw Mismatch(directory: dir, reason: "was set up with journal dirs \(cookie.journalDirectories) "
                                       + "and ledger dirs \(cookie.ledgerDirectories); the configuration now lists "
                                       + "\(journal) and \(ledger)")
                }
            } else if !found.isEmpty {
                throw Mismatch(directory: dir, reason: "has no COOKIE while the other directories of this bookie do "
                                   + "(a new or wiped disk?)")
            }
        }
        if found.isEmpty {
            for (dir, role, index) in all {
                let cookie = Cookie(instance: instance, role: role, index: index, journalDirectories: journal,
                                    ledgerDirectories: ledger)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                try FileSystem.writeAtomically(dir + "/" + fileName, Array(try encoder.encode(cookie)))
            }
        }
        return instance
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
