import ArgumentParser
import DLogBookie
import Foundation

/// `dlogctl inspect`: a stopped bookie's files, read only. Each reads what it is pointed at and changes nothing;
/// a bad path or a damaged file gives a message naming it, never a crash. Exit 1 when damage is found.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Look inside a stopped bookie's journal, entry logs and ledger index (read only).",
        subcommands: [Journal.self, EntryLog.self, Manifest.self, Ledger.self])

    struct Journal: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Each journal file: header, batches and records (CRCs checked), and where its readable part ends.")
        @Argument(help: "A bookie's journal directory.") var dir: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let report = try inspecting { try JournalInspection.inspect(directory: dir) }
            if json { try printJSON(report) } else {
                print("journal \(report.directory): \(report.files.count) file(s)")
                let rows = [["FILE", "NUMBER", "SEQUENCES", "BATCHES", "RECORDS", "LEDGERS", "END"]] + report.files.map { f in
                    [URL(fileURLWithPath: f.path).lastPathComponent, f.fileNumber.map { "\($0)" } ?? "-",
                     f.firstSeq.map { first in f.lastSeq.map { "\(first)-\($0)" } ?? "none from \(first)" } ?? "-",
                     "\(f.batches)", "\(f.records)", "\(f.ledgers)", f.ending]
                }
                for line in alignedColumns(rows) { print(line) }
            }
            if report.files.contains(where: \.damaged) { throw ExitCode(1) }
        }
    }

    struct EntryLog: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "entrylog", abstract: "One entry-log file: its entries by ledger, each checked against its CRC.")
        @Argument(help: "An entry-log file (entrylog-N.log in a ledger directory).") var file: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let report = try inspecting { try EntryLogInspection.inspect(path: file) }
            if json { try printJSON(report) } else {
                print("entry log \(report.path): version \(report.version), \(report.bytes) bytes, \(report.entries) entries "
                      + "of \(report.ledgers.count) ledger(s), \(report.damaged.count) damaged")
                let rows = [["LEDGER", "ENTRIES", "FIRST", "LAST", "BYTES"]] + report.ledgers.map {
                    ["\($0.ledger)", "\($0.entries)", "\($0.first)", "\($0.last)", "\($0.bytes)"]
                }
                for line in alignedColumns(rows) { print(line) }
                for d in report.damaged { print("damaged: ledger \(d.ledger) entry \(d.entry) at offset \(d.offset): \(d.reason)") }
            }
            if !report.damaged.isEmpty { throw ExitCode(1) }
        }
    }

    struct Manifest: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The checkpoint state in the ledger index: journal marks, entry logs, ledgers.")
        @Argument(help: "The bookie's ledger directories, in its config's order.") var dirs: [String]
        @Flag(help: "Print one JSON object (with every ledger).") var json = false

        func run() throws {
            let report = try inspecting { try IndexInspection.inspect(directories: dirs) }
            if json { try printJSON(report); return }
            print("ledger index of \(report.directories.joined(separator: ", ")): generation \(report.generation), "
                  + "\(report.ledgerCount) ledger(s), \(report.entryLogs.count) entry log(s), next entry log \(report.nextEntryLogID)")
            for (i, mark) in report.journalMarks.enumerated() { print("journal \(i) replays from: \(mark)") }
            for note in report.notes { print("note: \(note)") }
            let rows = [["ENTRY LOG", "BYTES", "LIVE", "LEDGERS"]] + report.entryLogs.map {
                [$0.path, "\($0.totalBytes)", "\($0.liveBytes)", "\($0.ledgers)"]
            }
            for line in alignedColumns(rows) { print(line) }
        }
    }

    struct Ledger: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One ledger on this bookie: its state in the index and its entries in the entry logs, CRCs checked.")
        @Argument(help: ArgumentHelp("The bookie's ledger directories (in its config's order) and the ledger's id, in either order.",
                                     valueName: "dir|id"))
        var words: [String]
        @Flag(help: "Print one JSON object.") var json = false

        /// `DIR… ID` or `ID DIR…`: an id is a number that names no directory here.
        static func split(_ words: [String]) throws -> (id: UInt64, dirs: [String]) {
            func id(_ word: String?) -> UInt64? {
                guard let word, let id = UInt64(word), !FileManager.default.fileExists(atPath: word) else { return nil }
                return id
            }
            if words.count >= 2, let first = id(words.first) { return (first, Array(words.dropFirst())) }
            if words.count >= 2, let last = id(words.last) { return (last, Array(words.dropLast())) }
            throw ValidationError("give the ledger directories and the ledger's id (a number), as DIR… ID or ID DIR…; got: \(words.joined(separator: " "))")
        }

        func validate() throws { _ = try Self.split(words) }

        func run() throws {
            let (id, dirs) = try Self.split(words)
            let report = try inspecting { try IndexInspection.ledger(id, directories: dirs) }
            if json { try printJSON(report) } else {
                if let state = report.state {
                    print("ledger \(report.ledger): last entry \(state.lastEntry), last add confirmed \(state.lastAddConfirmed)"
                          + (state.fenced ? ", fenced" : ""))
                } else {
                    print("ledger \(report.ledger): not in the index (never stored here, deleted, or only in the journal since the last checkpoint)")
                }
                let rows = [["ENTRY LOG", "ENTRIES", "FIRST", "LAST", "DAMAGED"]] + report.files.map {
                    [$0.path, "\($0.entries)", "\($0.first)", "\($0.last)", "\($0.damaged.count)"]
                }
                if !report.files.isEmpty { for line in alignedColumns(rows) { print(line) } }
                for f in report.files {
                    for d in f.damaged { print("damaged: entry \(d.entry) in \(f.path) at offset \(d.offset): \(d.reason)") }
                }
            }
            if report.damaged > 0 { throw ExitCode(1) }
        }
    }
}

/// Runs an inspection; what it throws becomes one line on standard error and exit code 2.
private func inspecting<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch {
        FileHandle.standardError.write(Data("dlogctl: \(error)\n".utf8))
        throw ExitCode(2)
    }
}
