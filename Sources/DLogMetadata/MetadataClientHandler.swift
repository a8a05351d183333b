import DLogWire
import NIOCore

/// The client side of one metadata connection: numbers requests, matches answers to them by id, streams
/// watch batches, times requests out, and fails everything pending when the connection goes.
///
/// Requests time out by a sweep a few times per timeout over their deadlines in send order, not by a timer each:
/// a proxy opening or draining 100,000 streams keeps thousands of requests in flight, and arming and cancelling
/// a timer apiece (the event loop's heap, searched to cancel) cost 7 % of its CPU.
final class MetadataClientHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = ClientCall
    typealias OutboundOut = ByteBuffer

    private enum Pending {
        case call(MetadataOp, EventLoopPromise<MetadataReply>)
        case watch(WatchConsumer)
    }

    let endpoint: RemoteStore.Endpoint
    let requestTimeout: TimeAmount
    private var pending: [UInt64: Pending] = [:]
    /// Calls by deadline, oldest first (every call has the same timeout, so send order is deadline order); ids
    /// of answered ones are dropped once they reach the front, at each answer, so the queue holds about what is
    /// in flight, not every call of the last sweep period. Watches have none.
    private var deadlines = CircularBuffer<(id: UInt64, deadline: NIODeadline)>()
    private var sweep: RepeatedTask?
    private var nextRequestID: UInt64 = 1

    init(endpoint: RemoteStore.Endpoint, requestTimeout: TimeAmount) {
        self.endpoint = endpoint
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let every = TimeAmount.nanoseconds(max(requestTimeout.nanoseconds / 4, 10_000_000))
        sweep = context.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
            let (handler, context) = bound.value
            handler.closeIfOverdue(context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweep?.cancel()
        sweep = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .requests(let calls):
            let deadline = NIODeadline.now() + requestTimeout
            var buffer = context.channel.allocator.buffer(capacity: 128 * calls.count)
            for (request, reply) in calls {
                let requestID = takeRequestID()
                // After a cancel the server sends nothing more for that watch: forget it now.
                if case .cancelWatch(let watchID) = request { pending[watchID] = nil }
                pending[requestID] = .call(request.op, reply)
                deadlines.append((requestID, deadline))
                request.encode(requestID: requestID, into: &buffer)
            }
            context.write(wrapOutboundOut(buffer), promise: promise)
        case .watch(let request, let consumer):
            let requestID = takeRequestID()
            var buffer = context.channel.allocator.buffer(capacity: 128)
            pending[requestID] = .watch(consumer)
            request.encode(requestID: requestID, into: &buffer)
            context.write(wrapOutboundOut(buffer), promise: promise)
            // Only now may a cancel be sent: written before the watch, it would find nothing to cancel.
            consumer.registered(on: context.channel, requestID: requestID)
        }
    }

    private func takeRequestID() -> UInt64 {
        defer { nextRequestID += 1 }
        return nextRequestID
    }

    /// Fails the oldest call left unanswered past its deadline, and drops the connection: a silent peer (a dead
    /// host sends no reset) would keep it, and its watches, forever. The next call reconnects, to another
    /// endpoint if there is one; closing fails every other call on this one.
    private func closeIfOverdue(context: ChannelHandlerContext) {
        dropAnsweredFronts()
        guard let front = deadlines.first, front.deadline < NIODeadline.now() else { return }
        deadlines.removeFirst()
        if case .call(_, let reply)? = pending.removeValue(forKey: front.id) {
            reply.fail(MetadataError.unavailable("no answer from \(endpoint) within \(requestTimeout.nanoseconds / 1_000_000) ms"))
        }
        context.close(promise: nil)
    }

    private func dropAnsweredFronts() {
        while let front = deadlines.first, pending[front.id] == nil { deadlines.removeFirst() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let header = frame.header
        guard header.isResponse, let op = MetadataOp(rawValue: header.op & ~FrameHeader.responseBit) else {
            return protocolViolation(context: context, "a frame that is not a metadata response (op \(header.op))")
        }
        let ok = header.flagsOrStatus == MetadataStatus.ok.rawValue
        switch pending[header.requestID] {
        case nil:
            return  // answer to a request that timed out, or an event of a cancelled watch
        case .call(let expected, let reply)?:
            pending[header.requestID] = nil
            dropAnsweredFronts()
            guard expected == op else { return reply.fail(RemoteStore.mismatch) }
            if !ok { return reply.fail(MetadataError.decode(status: header.flagsOrStatus, body: frame.body)) }
            do { reply.succeed(try MetadataReply.decode(op: op, body: frame.body)) } catch { reply.fail(error) }
        case .watch(let consumer)?:
            if !ok {
                pending[header.requestID] = nil
                return consumer.finish(MetadataError.decode(status: header.flagsOrStatus, body: frame.body))
            }
            do {
                guard case .events(let events) = try MetadataReply.decode(op: .watch, body: frame.body) else { return }
                if !consumer.yield(events) { pending[header.requestID] = nil }
            } catch {
                pending[header.requestID] = nil
                consumer.finish(error)
            }
        }
    }

    private func protocolViolation(context: ChannelHandlerContext, _ what: String) {
        failAll(.internalError("metadata role at \(endpoint) sent \(what)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: MetadataError) {
        let all = pending
        pending.removeAll()
        for entry in all.values {
            switch entry {
            case .call(_, let reply):
                reply.fail(error)
            case .watch(let consumer):
                consumer.finish(error)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(.unavailable("connection to the metadata role at \(endpoint) was lost"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(.unavailable("connection to the metadata role at \(endpoint) failed: \(error)"))
        context.close(promise: nil)
    }
}
