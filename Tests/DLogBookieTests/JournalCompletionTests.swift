@testable import DLogBookie
import DLogWire
import MetricsTestKit
import NIOCore
import NIOPosix
import Synchronization
import Testing

@Suite struct JournalCompletionTests {
    /// Collects the bytes a connection receives.
    private final class Received: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let bytes = Mutex(ByteBuffer())
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var chunk = unwrapInboundIn(data)
            bytes.withLock { _ = $0.writeBuffer(&chunk) }
        }
    }

    /// A synced batch answers its adds in journal order, each connection getting exactly its own answers, with
    /// their request ids, whether they come in runs or one by one, and other completions run in between, and
    /// records one service time per answer (long polls apart). Over real loopback connections: the answers are
    /// read back from the client side.
    @Test func answersGoToTheirConnectionsInOrder() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let accepted = Mutex<[Channel]>([])
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.withLock { $0.append(channel) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        var clients: [(Channel, Received)] = []
        for _ in 0 ..< 2 {
            let received = Received()
            let channel = try await ClientBootstrap(group: group)
                .channelInitializer { $0.pipeline.addHandler(received) }
                .connect(to: server.localAddress!).get()
            clients.append((channel, received))
            while accepted.withLock({ $0.count }) < clients.count { try await Task.sleep(for: .milliseconds(5)) }
        }
        let counted = Mutex([0, 0])
        let metrics = TestMetrics()
        let meters = BookieMeters(factory: metrics)
        let connections = (0 ..< 2).map { c in
            let batcher = ResponseBatcher(channel: accepted.withLock { $0[c] }) { n in counted.withLock { $0[c] += n } }
            return ConnectionAnswers(batcher: batcher, meters: meters)
        }
        let called = Mutex(0)
        func add(_ c: Int, _ id: UInt64) -> JournalCompletion {
            .answerAdd(.connection(connections[c], .add, requestID: id, received: BookieMeters.now, longPoll: false),
                       LedgerID(UInt64(c + 1)), EntryID(Int64(id)))
        }
        JournalCompletion.succeed([add(0, 1), add(0, 2), add(0, 3), .call { _ in called.withLock { $0 += 1 } },
                                   add(1, 1), add(0, 4), add(1, 2), add(1, 3)])
        #expect(called.withLock { $0 } == 1)
        for (c, ids) in [(0, [UInt64(1), 2, 3, 4]), (1, [1, 2, 3])] {
            var answers: [(UInt64, BookieResponse)] = []
            let deadline = ContinuousClock.now + .seconds(10)
            while answers.count < ids.count && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
                var bytes = clients[c].1.bytes.withLock { $0 }
                answers = []
                while let frame = try FrameDecoder.next(from: &bytes, maxFrameBytes: 1 << 20) {
                    answers.append((frame.header.requestID, try BookieResponse.decode(frame).1))
                }
            }
            #expect(answers.map(\.0) == ids)
            #expect(answers.map(\.1) == ids.map { .added(ledger: LedgerID(UInt64(c + 1)), entry: EntryID(Int64($0))) })
        }
        #expect(counted.withLock { $0 } == [4, 3])
        let label = "dlog_bookie_request_duration_seconds"
        #expect(try metrics.expectTimer(label, [("op", "add")]).values.count == 7)
        // An answer outside a batch (a READ_LAC that waited) is timed as it is given, under `long_poll`.
        let poll = Answer.connection(connections[0], .readLAC, requestID: 9, received: BookieMeters.now - 5_000_000,
                                     longPoll: true)
        poll(.lac(lac: EntryID(4), lastEntry: EntryID(4)))
        #expect(try metrics.expectTimer(label, [("op", "long_poll")]).values.allSatisfy { $0 >= 5_000_000 })
        #expect(try metrics.expectTimer(label, [("op", "long_poll")]).values.count == 1)
        #expect(try metrics.expectTimer(label, [("op", "read_lac")]).values.isEmpty)
        for (channel, _) in clients { try await channel.close() }
        try await server.close()
    }
}
