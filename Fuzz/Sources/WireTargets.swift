import DLogMetadata
import DLogWire
import NIOCore

/// The socket decoders: `FrameDecoder` and `FrameSplitter` split the stream, then the bookie, proxy and metadata codecs read each
/// frame. Contracts: the stream splits into the same frames (or the same error) fed whole and in chunks; a
/// frame written again is the bytes it was read from; a decoded message encoded and decoded again is the same
/// message (bookie requests: the same body bytes too).
enum WireTargets {
    /// Large enough for every seed, small enough that a hostile length is refused early (as servers do).
    static let maxFrameBytes = 1 << 16

    static let bookie = FuzzTarget(name: "bookie", run: { bytes in
        for frame in frames(bytes) {
            if frame.header.isResponse { checkBookieResponse(frame) } else { checkBookieRequest(frame) }
        }
    }, seeds: BookieSeeds.all)

    static let proxy = FuzzTarget(name: "proxy", run: { bytes in
        for frame in frames(bytes) {
            if frame.header.isResponse {
                guard let op = ProxyOp(rawValue: frame.header.op & ~FrameHeader.responseBit) else { continue }
                guard case .success(let reply) = ProxyReply.decode(frame, op: op) else { continue }
                let again = ProxyReply.decode(reencoded { reply.encode(op: op, requestID: 1, into: &$0) }, op: op)
                require(again == .success(reply), "proxy reply \(reply) does not survive a round trip")
            } else {
                guard let request = try? ProxyRequest.decode(frame) else { continue }
                let again = try? ProxyRequest.decode(reencoded { request.encode(requestID: 1, into: &$0) })
                require(again == request, "proxy request \(request) does not survive a round trip")
            }
        }
    }, seeds: ProxySeeds.all)

    static let metadata = FuzzTarget(name: "metadata", run: { bytes in
        for frame in frames(bytes) {
            guard frame.header.isResponse else {
                guard let request = try? MetadataRequest.decode(frame) else { continue }
                let again = try? MetadataRequest.decode(reencoded { request.encode(requestID: 1, into: &$0) })
                require(again == request, "metadata request \(request) does not survive a round trip")
                continue
            }
            guard let op = MetadataOp(rawValue: frame.header.op & ~FrameHeader.responseBit) else { continue }
            guard frame.header.flagsOrStatus == MetadataStatus.ok.rawValue else {
                // Never throws: a malformed error answer becomes an internalError saying so.
                _ = MetadataError.decode(status: frame.header.flagsOrStatus, body: frame.body)
                continue
            }
            guard let reply = try? MetadataReply.decode(op: op, body: frame.body) else { continue }
            let again = try? MetadataReply.decode(op: op, body: reencoded { reply.encode(op: op, requestID: 1, into: &$0) }.body)
            require(again == reply, "metadata reply \(reply) does not survive a round trip")
        }
    }, seeds: MetadataSeeds.all)

    // MARK: Frames

    /// The frames of `bytes`, checking that whole and chunked feeding agree and that each frame re-encodes to
    /// its own bytes.
    static func frames(_ bytes: [UInt8]) -> [Frame] {
        let whole = split(bytes, chunk: bytes.count)
        // A chunk size taken from the input, so the fuzzer explores the boundaries too.
        let chunk = 1 + Int(bytes.last ?? 0) % 17
        let chunked = split(bytes, chunk: chunk)
        require(whole.error == chunked.error, "whole: \(String(describing: whole.error)), in \(chunk)-byte chunks: \(String(describing: chunked.error))")
        require(whole.frames.count == chunked.frames.count, "whole and chunked feeding give different frame counts")
        var offset = 0
        for (a, b) in zip(whole.frames, chunked.frames) {
            require(a.header == b.header && a.body == b.body, "whole and chunked feeding give different frames")
            var out = ByteBuffer()
            out.writeFrame(a.header) { $0.writeImmutableBuffer(a.body) }
            let written = Array(out.readableBytesView)
            require(Array(bytes[offset..<min(bytes.count, offset + written.count)]) == written,
                    "frame at \(offset) does not re-encode to its bytes")
            offset += written.count
        }
        return whole.frames
    }

    /// Whole: `FrameDecoder` on all the bytes at once. In chunks: `FrameSplitter` (what a bookie's connections
    /// and the bookie client use), fed `chunk` bytes a read.
    static func split(_ bytes: [UInt8], chunk: Int) -> (frames: [Frame], error: FrameError?) {
        var frames: [Frame] = []
        if chunk >= bytes.count {
            var buffer = ByteBuffer(bytes: bytes)
            do {
                while let frame = try FrameDecoder.next(from: &buffer, maxFrameBytes: maxFrameBytes) { frames.append(frame) }
            } catch {
                return (frames, error)
            }
            return (frames, nil)
        }
        var splitter = FrameSplitter(maxFrameBytes: maxFrameBytes)
        var start = 0
        while start < bytes.count {
            let read = ByteBuffer(bytes: bytes[start..<min(bytes.count, start + max(chunk, 1))])
            start += max(chunk, 1)
            do {
                try splitter.split(read) { frames.append($0) }
            } catch let error as FrameError {
                return (frames, error)
            } catch {
                require(false, "FrameSplitter threw something other than a FrameError: \(error)")
            }
        }
        return (frames, nil)
    }

    /// The one frame `write` encodes.
    static func reencoded(_ write: (inout ByteBuffer) -> Void) -> Frame {
        var buffer = ByteBuffer()
        write(&buffer)
        let frame = try? FrameDecoder.next(from: &buffer, maxFrameBytes: Int(UInt32.max))
        require(frame != nil && buffer.readableBytes == 0, "an encoder wrote something other than one frame")
        return frame!
    }

    // MARK: Bookie

    static func checkBookieRequest(_ frame: Frame) {
        guard let request = try? BookieRequest.decode(frame) else { return }
        let again = reencoded { request.encode(requestID: frame.header.requestID, into: &$0) }
        // Flag bits a request does not use are dropped; everything else is written back as it was read.
        require(again.header.op == frame.header.op && again.header.requestID == frame.header.requestID
                && again.body == frame.body, "bookie request \(request) re-encodes to other bytes")
        require((try? BookieRequest.decode(again)) == request, "bookie request \(request) does not survive a round trip")
    }

    static func checkBookieResponse(_ frame: Frame) {
        guard let (op, response) = try? BookieResponse.decode(frame) else { return }
        let again = reencoded { response.encode(op: op, requestID: frame.header.requestID, into: &$0) }
        let decoded = try? BookieResponse.decode(again)
        require(decoded?.0 == op && decoded?.1 == response, "bookie response \(response) does not survive a round trip")
        switch response {
        case .info, .failed: break  // text: invalid UTF-8 is replaced when read
        default: require(again.body == frame.body, "bookie response \(response) re-encodes to other bytes")
        }
    }
}
