import DLogTestSupport
@testable import DLogBookie
import DLogIO
import Foundation
import Testing

@Suite struct CookieTests {
    /// A first start is all or nothing. Its steps are: write COOKIE.new into each directory, then rename each
    /// to COOKIE. Cut off after any number of those steps (as a power cut would), the next start succeeds,
    /// and once any cookie was in place it keeps that instance. (Before, cookies were written one directory
    /// at a time, so a cut between two left a bookie that refused every later start.)
    @Test func aFirstStartCutShortAtAnyStepStartsNext() throws {
        let names = ["j0", "j1", "l0", "l1"]
        for cut in 0...(2 * names.count) {
            let dir = TempDir()
            let journal = [dir.sub("j0"), dir.sub("j1")], ledger = [dir.sub("l0"), dir.sub("l1")]
            let all = journal + ledger
            let roles = [("journal", 0), ("journal", 1), ("ledger", 0), ("ledger", 1)]
            let instance = "cut-\(cut)"
            for (i, path) in all.enumerated() where i < min(cut, names.count) {
                try FileSystem.makeDirectory(path)
                let cookie = Cookies.Cookie(instance: instance, role: roles[i].0, index: roles[i].1,
                                            journalDirectories: journal, ledgerDirectories: ledger)
                try FileSystem.writeAtomically(path + "/" + Cookies.pendingName, SealedFile.seal(
                    kind: Cookies.kind, version: Cookies.version, body: Array(try JSONEncoder().encode(cookie))))
            }
            for path in all.prefix(max(0, cut - names.count)) {
                try FileSystem.rename(path + "/" + Cookies.pendingName, path + "/" + Cookies.fileName)
            }
            let started = try Cookies.verifyOrCreate(journal: journal, ledger: ledger)
            if cut > names.count { #expect(started == instance, "cut after step \(cut)") }
            for path in all {
                #expect(FileSystem.exists(path + "/" + Cookies.fileName), "cut after step \(cut): \(path)")
                #expect(!FileSystem.exists(path + "/" + Cookies.pendingName), "cut after step \(cut): \(path)")
            }
            #expect(try Cookies.verifyOrCreate(journal: journal, ledger: ledger) == started)
        }
    }

    /// A directory without any cookie beside others that have one is still a new or wiped disk: refused.
    /// The same on a simulated disk, cut by a power cut after any number of disk changes, dropping or tearing
    /// what was not synced: the next start succeeds, and once a first start returned its instance stays.
    @Test func aFirstStartCutByAPowerCutAtAnyChangeStartsNext() throws {
        let journal = ["/b/j0", "/b/j1"], ledger = ["/b/l0", "/b/l1"]
        var completedAt: Int?
        for cut in 0 ..< 200 where completedAt == nil {
            let disk = SimulatedDisk()
            disk.haltAfter(changes: cut)
            let first = try? Cookies.verifyOrCreate(journal: journal, ledger: ledger, disk: disk)
            disk.crash(seed: UInt64(cut), keep: cut.isMultiple(of: 2) ? .nothing : .randomSectors)
            let next: String
            do {
                next = try Cookies.verifyOrCreate(journal: journal, ledger: ledger, disk: disk)
            } catch {
                Issue.record("cut after \(cut) changes: the next start refused: \(error)")
                continue
            }
            #expect(try Cookies.verifyOrCreate(journal: journal, ledger: ledger, disk: disk) == next)
            if let first {
                #expect(next == first, "cut after \(cut) changes: a completed first start's instance changed")
                completedAt = cut
            }
        }
        #expect(completedAt != nil, "a first start never completed within 200 changes")
    }

    @Test func aWipedDirectoryIsStillRefused() throws {
        let dir = TempDir()
        let journal = [dir.sub("j")], ledger = [dir.sub("l0"), dir.sub("l1")]
        try Cookies.verifyOrCreate(journal: journal, ledger: ledger)
        try FileSystem.remove(ledger[1] + "/" + Cookies.fileName)
        let refusal = #expect(throws: Cookies.Mismatch.self) { try Cookies.verifyOrCreate(journal: journal, ledger: ledger) }
        #expect(refusal?.directory == ledger[1])
    }

    /// Cookies are sealed: a flipped bit is refused by name instead of read as another bookie's identity.
    @Test func aDamagedCookieIsRefusedByName() throws {
        let dir = TempDir()
        let journal = [dir.sub("j")], ledger = [dir.sub("l")]
        try Cookies.verifyOrCreate(journal: journal, ledger: ledger)
        let path = ledger[0] + "/" + Cookies.fileName
        var bytes = try FileSystem.readAll(path)
        #expect(SealedFile.looksSealed(bytes, kind: Cookies.kind))
        bytes[bytes.count - 10] ^= 0x02
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let refusal = #expect(throws: Cookies.Mismatch.self) { try Cookies.verifyOrCreate(journal: journal, ledger: ledger) }
        #expect(refusal?.description.contains("damaged COOKIE") == true)
    }

    /// An unsealed JSON cookie of an earlier release is accepted and sealed in place.
    @Test func anUnsealedCookieIsSealed() throws {
        let dir = TempDir()
        let journal = [dir.sub("j")], ledger = [dir.sub("l")]
        let instance = try Cookies.verifyOrCreate(journal: journal, ledger: ledger)
        for (path, role) in [(journal[0], "journal"), (ledger[0], "ledger")] {
            let cookie = Cookies.Cookie(instance: instance, role: role, index: 0, journalDirectories: journal,
                                        ledgerDirectories: ledger)
            try Data(try JSONEncoder().encode(cookie)).write(to: URL(fileURLWithPath: path + "/" + Cookies.fileName))
        }
        #expect(try Cookies.verifyOrCreate(journal: journal, ledger: ledger) == instance)
        #expect(SealedFile.looksSealed(try FileSystem.readAll(ledger[0] + "/" + Cookies.fileName), kind: Cookies.kind))
    }

    /// The sealed-file format as docs/storage.md shows it, byte for byte.
    @Test func sealedFileBytesAreAsDocumented() throws {
        let sealed = SealedFile.seal(kind: "dlog-cookie", version: 2, body: Array("{}".utf8))
        #expect(String(decoding: sealed, as: UTF8.self) == "dlog-cookie 2 2 b8b833a1\n{}")
        #expect(try SealedFile.open(sealed, kind: "dlog-cookie", path: "x").body == Array("{}".utf8))
    }
}
