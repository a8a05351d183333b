import DLogWire
import NIOCore

/// The client side of one metadata connection: numbers requests, matches answers to them by id, streams
/// watch batches, times requests out, and fails everything pending when the connection goes.
final class MetadataClientHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = ClientCall
    typealias OutboundOut = ByteBuffer

    private enum Pending {
        case call(MetadataOp, EventLoopPromise<MetadataReply>, Scheduled<Void>?)
        case watch(WatchConsumer)
    }

    let endpoint: RemoteStore.Endpoint
    private var pending: [UInt64: Pending] = [:]
    private var nextRequestID: UInt64 = 1

    init(endpoint: RemoteStore.Endpoint) {
        self.endpoint = endpoint
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let requestID = nextRequestID
        nextRequestID += 1
        var buffer = context.channel.allocator.buffer(capacity: 128)
        switch unwrapOutboundIn(data) {
        case .request(let request, let reply, let timeout):
            // After a cancel the server sends nothing more for that watch: forget it now.
            if case .cancelWatch(let watchID) = request { pending[watchID] = nil }
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let endpoint = self.endpoint
            let channel = context.channel
            let timer = context.eventLoop.scheduleTask(in: timeout) {
                guard case .call(_, let reply, _)? = bound.value.pending.removeValue(forKey: requestID) else { return }
                reply.fail(MetadataError.unavailable("no answer from \(endpoint) within \(timeout.nanoseconds / 1_000_000) ms"))
                // A silent peer (a dead host sends no reset) would keep this connection, and its watches,
                // forever: drop it, so the next call reconnects, to another endpoint if there is one.
                channel.close(promise: nil)
            }
            pending[requestID] = .call(request.op, reply, timer)
            request.encode(requestID: requestID, into: &buffer)
        case .watch(let request, let consumer):
            pending[requestID] = .watch(consumer)
            request.encode(requestID: requestID, into: &buffer)
            context.write(wrapOutboundOut(buffer), promise: promise)
            // Only now may a cancel be sent: written before the watch, it would find nothing to cancel.
            consumer.registered(on: context.channel, requestID: requestID)
            return
        }
        context.write(wrapOutboundOut(buffer), promise: promise)
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
        case .call(let expected, let reply, let timer)?:
            pending[header.requestID] = nil
            timer?.cancel()
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
            case .call(_, let reply, let timer):
                timer?.cancel()
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
