import DLogDaemon
import Logging
import Testing

@Suite struct DaemonLogHandlerTests {
    let origin = DaemonLogHandler.Origin(role: "bookie", instance: "bookie-a")

    @Test func journalEntriesCarryTheStructuredFields() {
        // Proves an event becomes one journal entry with the message, its syslog priority, who logged it, where
        // in the code, and the well-known fields for ledgers, logs and bookies (others under DLOG_).
        let fields = DaemonLogHandler.journalFields(.warning, "bookie failed a write",
                                                    ["ledger": "L42", "stream": "orders", "bookie": "bookie-3", "retry-after": "5"],
                                                    origin: origin, file: "DLogLedger/LedgerWriter.swift", function: "answered", line: 170)
        for expected in ["MESSAGE=bookie failed a write", "PRIORITY=4", "SYSLOG_IDENTIFIER=dlogd", "DLOG_ROLE=bookie",
                         "DLOG_INSTANCE=bookie-a", "CODE_FILE=DLogLedger/LedgerWriter.swift", "CODE_LINE=170", "CODE_FUNC=answered",
                         "LEDGER_ID=L42", "LOG_NAME=orders", "BOOKIE_ID=bookie-3", "DLOG_RETRY_AFTER=5"] {
            #expect(fields.contains(expected), "\(expected) in \(fields)")
        }
        #expect([Logger.Level.trace, .debug, .info, .notice, .warning, .error, .critical].map(DaemonLogHandler.priority)
                == [7, 7, 6, 5, 4, 3, 2])
    }

    @Test func stderrLinesHaveAPriorityPrefixAndStayOneLine() {
        let line = DaemonLogHandler.stderrLine(.error, "journal failed\nat offset 4096", ["journal": "/j"], origin: origin)
        #expect(line == "<3>dlogd[bookie/bookie-a]: journal failed\\nat offset 4096 journal=/j")
        // Not started by systemd (no JOURNAL_STREAM naming this stderr): lines go to stderr.
        #expect(!DaemonLogHandler.stderrIsJournal)
    }
}
