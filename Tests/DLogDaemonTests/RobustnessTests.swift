import DLogTestSupport
import DLogLedger
import DLogWire
import Foundation
import NIOCore
import NIOPosix
import Testing

@Suite(.serialized) struct RobustnessTests {
    /// Random and mutated frames from many connections against a live dlogd: it stays up, and a well-formed
    /// client keeps being served throughout and reads back everything it wrote.
    @Test func fuzzedFramesNeverHurtOthers() async throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("RobustnessTests seed \(seed)")
        var rng = SeededGenerator(seed: seed)
        let dir = TempDir()
        let d = try await DaemonProcess.start(["--journal-dir", dir.sub("j"), "--ledger-dir", dir.sub("l")])
        let good = try await d.client()
        let goodLedger: UInt64 = 0x5EED_0000_DEAD_BEEF  // far (in bits) from every fuzzed ledger id
        let templates = validFrames()
        let group = MultiThreadedEventLoopGroup.singleton
        var written: Int64 = 0
        for round in 0..<300 {
            var bytes: [UInt8]
            switch round % 4 {
            case 0:  // pure noise
                bytes = (0..<Int.random(in: 1...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:  // a valid frame with bits flipped
                bytes = templates.randomElement(using: &rng)!
                for _ in 0..<Int.random(in: 1...6, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8(1 << Int.random(in: 0...7, using: &rng))
                }
            case 2:  // a valid frame cut short, then the connection closed
                let t = templates.randomElement(using: &rng)!
                bytes = Array(t.prefix(Int.random(in: 1..<t.count, using: &rng)))
            default:  // a huge declared length
                bytes = [0x7F, 0xFF, 0xFF, UInt8.random(in: 0...255, using: &rng)] + [1, 1, 0, 0]
            }
            let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: d.port).get()
            try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
            // The well-formed client is served between every hostile connection.
            try await good.add(key: testKey, entry: entry(goodLedger, written))
            written += 1
            try? await channel.close()
        }
        #expect(d.process.isRunning)
        for e in 0..<written {
            #expect(try await good.read(ledger: LedgerID(goodLedger), entry: EntryID(e)) == entry(goodLedger, e))
        }
        #expect(d.stderr.contains("closing connection: malformed input"))
        await good.close()
        d.kill(SIGTERM)
        #expect(await d.exited() == 0)
    }

    func validFrames() -> [[UInt8]] {
        let key = MasterKey(password: "fuzz")
        let requests: [BookieRequest] = [
            .add(masterKey: key, entry: entry(77, 0), recovery: false),
            .add(masterKey: key, entry: entry(78, 3), recovery: true),
            .read(ledger: LedgerID(77), entry: EntryID(0), fenceWith: nil),
            .read(ledger: LedgerID(79), entry: EntryID(-1), fenceWith: key),
            .readLAC(ledger: LedgerID(77), longPoll: .init(previous: EntryID(5), timeoutMilliseconds: 50)),
            .writeLAC(ledger: LedgerID(77), masterKey: key, lac: EntryID(0)),
            .deleteLedger(ledger: LedgerID(80)),
            .getInfo,
            .listEntries(ledger: LedgerID(77), from: EntryID(0), rangesMax: 16),
            .readRange(ledger: LedgerID(77), first: EntryID(0), last: EntryID(9), maxBytes: 4096),
            .addBatch(masterKey: key, entries: [entry(81, 0), entry(81, 1)], recovery: true),
        ]
        return requests.map { r in
            var b = ByteBuffer()
            r.encode(requestID: 1, into: &b)
            return Array(b.readableBytesView)
        }
    }
}
