import DLogTestSupport
import DLogLedger
import DLogWire
import Foundation
import Testing

@Suite(.serialized) struct DaemonTests {
    /// A bad config value stops the daemon with a message naming the key, value and what is allowed.
    @Test func badConfigIsRefusedByName() throws {
        let dir = TempDir()
        let conf = dir.sub("bookie.conf")
        try "journal_engine = turbo\n".write(toFile: conf, atomically: true, encoding: .utf8)
        let d = try DaemonProcess(["--config", conf], waitForListening: false)
        #expect(d.waitForExit() != 0)
        #expect(d.stderr.contains("journal_engine"))
        #expect(d.stderr.contains("turbo"))
        #expect(d.stderr.contains("auto, io_uring, blocking"))
    }

    /// Swapped, foreign or new directories are refused with a message naming the directory; the original
    /// layout starts again. Sharing a device draws a warning.
    @Test func cookiesGuardDirectories() throws {
        let dir = TempDir()
        let j = dir.sub("journal"), l = dir.sub("ledgers")
        var d = try DaemonProcess(["--journal-dir", j, "--ledger-dir", l])
        #expect(d.stderr.contains("same device"))
        d.kill(SIGTERM)
        #expect(d.waitForExit() == 0)

        d = try DaemonProcess(["--journal-dir", l, "--ledger-dir", j], waitForListening: false)
        #expect(d.waitForExit() == 2)
        #expect(d.stderr.contains("swapped"))

        let fresh = dir.sub("new-ledgers")
        d = try DaemonProcess(["--journal-dir", j, "--ledger-dir", fresh], waitForListening: false)
        #expect(d.waitForExit() == 2)
        #expect(d.stderr.contains(fresh))

        let other = TempDir()
        d = try DaemonProcess(["--journal-dir", other.sub("j"), "--ledger-dir", other.sub("l")])
        d.kill(SIGTERM)
        _ = d.waitForExit()
        d = try DaemonProcess(["--journal-dir", j, "--ledger-dir", other.sub("l")], waitForListening: false)
        #expect(d.waitForExit() == 2)
        #expect(d.stderr.contains("another bookie"))

        d = try DaemonProcess(["--journal-dir", j, "--ledger-dir", l])
        d.kill(SIGTERM)
        #expect(d.waitForExit() == 0)
    }
}
