import CoreMetrics
import DLogWire
import Logging
import NIOCore
import NIOPosix

/// The bookie's TCP server. Handlers stay on their event loop; journal completions come back through
/// `Channel.writeAndFlush`, which is safe from any thread; reads that must touch disk run on a thread pool.
public final class BookieServer: Sendable, FrameListening {
    public let bookie: Bookie
    let pool: NIOThreadPool
    public let listener: FrameServer
    let maxFrameBytes: Int

    /// `access`: who may do what, checked on every request (a port that requires TLS); nil: anyone may do anything.
    /// `group`: event loops lent by the caller, who stops them (a standalone's, shared by its parts); else
    /// `threads` of its own.
    public init(bookie: Bookie, host: String, port: Int, maxFrameBytes: Int, threads: Int = 2,
                group: MultiThreadedEventLoopGroup? = nil, tls: ServerTLS? = nil, budget: ConnectionBudget? = nil,
                access: BookieAccess? = nil, logger: Logger) throws {
        self.bookie = bookie
        self.maxFrameBytes = maxFrameBytes
        pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let pool = self.pool
        do {
            listener = try FrameServer(host: host, port: port, threads: threads, group: group,
                                       maxFrameBytes: maxFrameBytes, splitsFrames: true, tls: tls, budget: budget) {
                BookieRequestHandler(bookie: bookie, pool: pool, maxFrameBytes: maxFrameBytes, access: access, logger: logger)
            }
        } catch {
            try? pool.syncShutdownGracefully()
            throw error
        }
    }

    public func close() {
        listener.close()
        try? pool.syncShutdownGracefully()
    }
}

/// Decodes one request per frame and dispatches it. A frame that cannot be decoded closes this connection
/// only, with the reason logged.
final class BookieRequestHandler: ChannelInboundHandler {
    /// The bytes as read: the handler splits them into frames itself (`FrameSplitter`).
    typealias InboundIn = ByteBuffer

    /// Requests one connection may have unanswered before the bookie stops reading it: bounds what a
    /// client that pipelines without reading its answers can make the bookie hold.
    static let outstandingMax = 4096
    /// Long polls wait at most this long, whatever the client asks.
    static let longPollMax: Int64 = 60_000

    let bookie: Bookie
    let pool: NIOThreadPool
    let logger: Logger
    private let gate = RequestGate(limit: BookieRequestHandler.outstandingMax)
    /// ADDs read and not yet taken: the run of them one read of the socket brings is taken together
    /// (`Bookie.add(run:)`), at the end of the read, before any other request, or at `runMax` adds or
    /// `runBytesMax` bytes (a run is queued for the journal all or none: a long one would wait for more room).
    private var run: [Bookie.RunAdd] = []
    private var runBytes = 0
    static let runMax = 64
    static let runBytesMax = 1 << 20

    private var splitter: FrameSplitter
    let access: BookieAccess?
    /// The connection's principal, once its TLS handshake named it (`PeerPrincipal`).
    private var principal: Principal?
    /// Operations refused on this connection so far: each is logged once per connection.
    private var refused: Set<BookieOp> = []
    /// Where the connection's answers go: made with its batcher, let go of with it at close.
    private var answers: ConnectionAnswers?
    /// The connection's long polls waiting for their timeout, and the one timer that serves them.
    private var longPolls = DeadlineQueue<WaitingPoll>()
    private let longPollTimer = LoopTimer()
    /// At this many polls kept, those answered already are dropped (see `keep`).
    private var longPollsCompactAt = BookieRequestHandler.outstandingMax
    struct WaitingPoll {
        var ledger: LedgerID
        /// The bookie's watch token for the poll.
        var token: UInt64
        var reply: Bookie.Reply
    }

    init(bookie: Bookie, pool: NIOThreadPool, maxFrameBytes: Int, access: BookieAccess? = nil, logger: Logger) {
        self.bookie = bookie
        self.pool = pool
        self.logger = logger
        self.access = access
        splitter = FrameSplitter(maxFrameBytes: maxFrameBytes)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let peer = event as? PeerPrincipal { principal = peer.principal }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        gate.added(context: context)
        answers = gate.batcher.map { ConnectionAnswers(batcher: $0, meters: bookie.meters) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        gate.writabilityChanged(channel: context.channel)
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The frames of one read arrived together: one clock read serves as the arrival of each.
        let received = BookieMeters.now
        do {
            try splitter.split(unwrapInboundIn(data)) { serve($0, received: received, context: context) }
        } catch {
            takeRun(context: context, pausing: false)  // the adds before the bad frame are served
            reject(context: context, reason: "\(error)")
        }
    }

    private func serve(_ frame: Frame, received: UInt64, context: ChannelHandlerContext) {
        let request: BookieRequest
        do {
            request = try BookieRequest.decode(frame)
        } catch {
            reject(context: context, reason: "\(error)")
            return
        }
        guard let answers else { return }  // nil once the connection closed
        var longPoll = false
        if case .readLAC(_, _?) = request { longPoll = true }
        let answer = Answer.connection(answers, request.op, requestID: frame.header.requestID,
                                       received: received, longPoll: longPoll)
        gate.took(channel: context.channel)
        if let access, !access.allows(request.op, by: principal) { return deny(request.op, answer: answer, context: context) }
        if let refusal = request.entryIDRefusal { return answer(.failed(.badRequest, message: refusal)) }
        if case .add(let key, let entry, let recovery) = request {
            // The hot path: no closure per add (see `Answer`).
            bookie.addsReceived.add(1, ordering: .relaxed)
            run.append(Bookie.RunAdd(key: key, entry: entry, recovery: recovery, answer: answer))
            runBytes += entry.count
            if run.count >= Self.runMax || runBytes >= Self.runBytesMax { takeRun(context: context) }
            return
        }
        // Requests are served in the order they came: the adds before this one are taken first.
        takeRun(context: context)
        let reply = answer.reply
        switch request {
        case .add:
            preconditionFailure("answered above")
        case .addBatch(let key, let entries, let recovery):
            bookie.addsReceived.add(UInt64(entries.count), ordering: .relaxed)
            bookie.addBatch(masterKey: key, entries: entries, recovery: recovery, reply: reply)
            pauseUnderWritePressure(context: context)
        case .readRange(let ledger, let first, let last, let maxBytes):
            bookie.readsReceived.add(1, ordering: .relaxed)
            let bookie = self.bookie
            pool.submit { _ in reply(bookie.readRange(ledger: ledger, first: first, last: last, maxBytes: maxBytes)) }
        case .read(let ledger, let entry, let fenceKey):
            bookie.readsReceived.add(1, ordering: .relaxed)
            let bookie = self.bookie
            let pool = self.pool
            let read: @Sendable () -> Void = {
                switch bookie.readEntry(ledger: ledger, entry: entry) {
                case .answer(let response): reply(response)
                case .disk(let work): pool.submit { _ in reply(work()) }
                }
            }
            if let key = fenceKey {
                bookie.fenceAndRead(ledger: ledger, entry: entry, masterKey: key, reply: reply, read: read)
            } else {
                read()
            }
        case .readLAC(let ledger, let poll):
            if poll != nil { bookie.longPollsReceived.add(1, ordering: .relaxed) }
            if let token = bookie.readLAC(ledger: ledger, longPollPrevious: poll?.previous, withEntry: poll?.withEntry ?? false,
                                          reply: reply), let poll {
                let wait = min(Int64(poll.timeoutMilliseconds), Self.longPollMax)
                keep(WaitingPoll(ledger: ledger, token: token, reply: reply), until: .now() + .milliseconds(wait),
                     context: context)
            }
        case .writeLAC(let ledger, let key, let lac):
            bookie.lacWritesReceived.add(1, ordering: .relaxed)
            bookie.writeLAC(ledger: ledger, masterKey: key, lac: lac, reply: reply)
        case .deleteLedger(let ledger):
            bookie.deleteLedger(ledger, reply: reply)
        case .getInfo:
            let bookie = self.bookie
            pool.submit { _ in reply(.info(json: bookie.infoJSON())) }  // statvfs stays off the event loop
        case .listEntries(let ledger, let from, let rangesMax):
            let bookie = self.bookie
            pool.submit { _ in reply(bookie.listEntries(ledger: ledger, from: from, rangesMax: rangesMax)) }  // may read indexes
        case .ledgerKey(let ledger):
            reply(bookie.ledgerKey(ledger))
        }
    }

    /// PERMISSION_DENIED, naming the principal and the operation; logged (once per operation and connection)
    /// and counted.
    private func deny(_ op: BookieOp, answer: Answer, context: ChannelHandlerContext) {
        let message = BookieAccess.refusal(op, by: principal)
        bookie.permissionDenied.add(1, ordering: .relaxed)
        if refused.insert(op).inserted {
            logger.warning("permission denied: \(message)", metadata: [
                "principal": "\(principal?.name ?? "-")", "role": "\(principal?.role.rawValue ?? "-")", "op": "\(op.name)",
                "peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "-")",
            ])
        }
        takeRun(context: context)
        answer(.failed(.permissionDenied, message: message))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        takeRun(context: context)
        context.fireChannelReadComplete()
    }

    private func takeRun(context: ChannelHandlerContext, pausing: Bool = true) {
        guard !run.isEmpty else { return }
        if run.count == 1 {
            let add = run[0]
            bookie.add(masterKey: add.key, entry: add.entry, recovery: add.recovery, answer: add.answer)
        } else {
            bookie.add(run: run)
        }
        run.removeAll(keepingCapacity: true)
        runBytes = 0
        if pausing { pauseUnderWritePressure(context: context) }
    }

    /// After adds: while the write cache is over its limit, stops reading this connection until a checkpoint
    /// frees cache. The client sees latency, not errors; frames already read are still served.
    private func pauseUnderWritePressure(context: ChannelHandlerContext) {
        guard bookie.underWritePressure && !gate.paused.contains(.writePressure) else { return }
        gate.paused.pause(.writePressure, channel: context.channel)
        let channel = context.channel
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        bookie.whenWritePressureEases {
            channel.eventLoop.execute { bound.value.gate.paused.resume(.writePressure, channel: channel) }
        }
    }

    /// Keeps a long poll until its timeout. Polls answered by their LAC stay until then too (the bookie answers
    /// them, not this handler), so a client that polls fast with long waits would make the connection keep a
    /// poll per answer for the whole wait (up to 60 s of them): past a bound, twice what was left the time
    /// before (at least `outstandingMax`), those answered are dropped, at a cost of one look each.
    private func keep(_ poll: WaitingPoll, until deadline: NIODeadline, context: ChannelHandlerContext) {
        if longPolls.count >= longPollsCompactAt {
            let bookie = self.bookie
            longPolls.removeAll { !bookie.isWaiting(longPoll: $0.token, of: $0.ledger) }
            longPollsCompactAt = max(Self.outstandingMax, 2 * longPolls.count)
        }
        if let arm = longPolls.add(poll, at: deadline) { armLongPollTimer(at: arm, context: context) }
    }

    /// Its work holds this handler until it fires or the connection closes.
    private func armLongPollTimer(at deadline: NIODeadline, context: ChannelHandlerContext) {
        longPollTimer.arm(at: deadline, on: context.eventLoop) { self.expireLongPolls(context: context) }
    }

    private func expireLongPolls(context: ChannelHandlerContext) {
        let (due, next) = longPolls.fire(now: .now())
        // A poll answered already (its LAC moved) is no longer watched: expiring it does nothing.
        for poll in due { bookie.expireLongPoll(ledger: poll.ledger, token: poll.token, reply: poll.reply) }
        if let next { armLongPollTimer(at: next, context: context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Adds already read are taken (their answers go nowhere, but they may be stored, as when the connection
        // closes just after their read).
        takeRun(context: context, pausing: false)
        // Nobody is left to answer: the bookie stops watching for them now, not at their timeouts.
        longPollTimer.cancel()
        for poll in longPolls.removeAll() { bookie.abandonLongPoll(ledger: poll.ledger, token: poll.token) }
        // The batcher's callback holds this handler: let go of it, or every closed connection stays in memory.
        gate.closed()
        answers = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if error is FrameError || error is ProtocolError {
            reject(context: context, reason: "\(error)")
        } else {
            // A reset or similar from the peer: not the client's input, and not worth a warning.
            logger.debug("connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    private func reject(context: ChannelHandlerContext, reason: String) {
        bookie.malformedRequests.add(1, ordering: .relaxed)
        logger.warning("closing connection: malformed input", metadata: [
            "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")", "reason": "\(reason)"])
        context.close(promise: nil)
    }
}
