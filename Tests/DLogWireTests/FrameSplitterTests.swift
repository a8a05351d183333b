import DLogTestSupport
import DLogWire
import NIOCore
import Testing

@Suite struct FrameSplitterTests {
    private func frame(_ id: UInt64, bodyBytes: Int) -> ByteBuffer {
        var out = ByteBuffer()
        out.writeFrame(FrameHeader(op: 1, flagsOrStatus: 0, requestID: id)) { body in
            body.writeBytes((0 ..< bodyBytes).map { UInt8(truncatingIfNeeded: $0 &+ Int(id)) })
        }
        return out
    }

    /// Frames of any size, cut into reads at random places (down to single bytes), come out whole and in order,
    /// as `FrameDecoder` gives them from the stream in one piece.
    @Test(arguments: 0 ..< 4) func framesComeOutWholeWhereverTheReadsCut(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        var stream = ByteBuffer()
        var expected: [Frame] = []
        for id in 0 ..< 200 as Range<UInt64> {
            var f = frame(id, bodyBytes: Int(random.next() % 3 == 0 ? random.next() % 70_000 : random.next() % 200))
            stream.writeBuffer(&f)
        }
        var whole = stream
        while let f = try FrameDecoder.next(from: &whole, maxFrameBytes: 1 << 20) { expected.append(f) }
        var splitter = FrameSplitter(maxFrameBytes: 1 << 20)
        var got: [Frame] = []
        while stream.readableBytes > 0 {
            let cut = min(stream.readableBytes, Int(random.next() % 4 == 0 ? 1 + random.next() % 8 : 1 + random.next() % 100_000))
            try splitter.split(stream.readSlice(length: cut)!) { got.append($0) }
        }
        #expect(got.map(\.header) == expected.map(\.header))
        #expect(got.map(\.body) == expected.map(\.body))
        #expect(splitter.heldBytes == 0)
    }

    /// A length over the limit is refused as soon as the length is read, before its body is kept.
    @Test func anOversizedFrameThrowsBeforeItsBodyArrives() throws {
        var splitter = FrameSplitter(maxFrameBytes: 1024)
        var header = ByteBuffer()
        header.writeInteger(UInt32(1 << 20))
        #expect(throws: FrameError.tooLarge(length: 1 << 20, max: 1024)) { try splitter.split(header) { _ in } }
        var ok = FrameSplitter(maxFrameBytes: 1024)
        var count = 0
        var two = frame(1, bodyBytes: 10)
        var second = frame(2, bodyBytes: 1000)
        two.writeBuffer(&second)
        try ok.split(two.getSlice(at: 0, length: 40)!) { _ in count += 1 }
        #expect(count == 1 && ok.heldBytes == 40 - 26)
        try ok.split(two.getSlice(at: 40, length: two.readableBytes - 40)!) { _ in count += 1 }
        #expect(count == 2 && ok.heldBytes == 0)
    }
}
