import DLogMetadata
import DLogTestSupport
import DLogWire
import NIOCore
import Testing

/// The metadata role's worked byte examples in docs/protocol.md (a COMMIT, its answers, a WATCH and its events),
/// held against the real codec of `MetadataWire.swift`. A failure prints the encoder's bytes in the document's dump
/// format.
@Suite struct ProtocolDocMetadataTests {
    static func same(_ documented: [UInt8], _ actual: [UInt8], _ name: String,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(documented == actual, "example '\(name)' differs from the encoder, which gives:\n\(docHexDump(actual))",
                sourceLocation: sourceLocation)
    }

    /// The COMMIT that creates `/k`: the request encoder writes the documented bytes and the role's decoder reads
    /// them back to the same transaction; the OK and KEY_EXISTS answers are what the reply and error encoders write,
    /// and decode back.
    @Test func commitExamples() throws {
        let doc = try DocExamples("protocol.md")
        let request = MetadataRequest.commit(Transaction(checks: [.init(key: "/k", version: .absent)],
                                                         operations: [.put(key: "/k", value: Array("v".utf8), lease: nil)]))
        Self.same(try doc.bytes("metadata-commit-request"), docEncoded { request.encode(requestID: 1, into: &$0) },
                  "metadata-commit-request")
        #expect(try MetadataRequest.decode(try docFrame(try doc.bytes("metadata-commit-request"))) == request)

        let answer = MetadataReply.committed(Revision(1))
        Self.same(try doc.bytes("metadata-commit-answer"), docEncoded { answer.encode(op: .commit, requestID: 1, into: &$0) },
                  "metadata-commit-answer")
        let answerFrame = try docFrame(try doc.bytes("metadata-commit-answer"))
        #expect(answerFrame.header.op == 0xC2 && answerFrame.header.flagsOrStatus == 0)
        #expect(try MetadataReply.decode(op: .commit, body: answerFrame.body) == answer)

        let exists = MetadataError.keyExists(key: "/k")
        Self.same(try doc.bytes("metadata-commit-key-exists"),
                  docEncoded { exists.encode(op: MetadataOp.commit.rawValue, requestID: 1, into: &$0) }, "metadata-commit-key-exists")
        let existsFrame = try docFrame(try doc.bytes("metadata-commit-key-exists"))
        #expect(MetadataError.decode(status: existsFrame.header.flagsOrStatus, body: existsFrame.body) == exists)
    }

    /// The WATCH of `/k` from 0 and the event batch it gets when `/k` is set to "w" at revision 2, both ways
    /// through the codec.
    @Test func watchExample() throws {
        let doc = try DocExamples("protocol.md")
        let messages = try doc.messages("metadata-watch")
        try #require(messages.count == 2)
        let request = MetadataRequest.watch(KeyRange(start: "/k", end: nil), from: Revision(0))
        Self.same(messages[0], docEncoded { request.encode(requestID: 2, into: &$0) }, "metadata-watch request")
        #expect(try MetadataRequest.decode(try docFrame(messages[0])) == request)

        let events = MetadataReply.events([WatchEvent(kind: .put, key: "/k", value: Array("w".utf8), revision: Revision(2))])
        Self.same(messages[1], docEncoded { events.encode(op: .watch, requestID: 2, into: &$0) }, "metadata-watch events")
        #expect(try MetadataReply.decode(op: .watch, body: try docFrame(messages[1]).body) == events)
    }

    /// The key limits table: an over-long key is TOO_LARGE (even with bad bytes in it), an empty key or one with a
    /// byte outside printable ASCII is INVALID_ARGUMENT, as `MetadataLimits` decides for the role.
    @Test func keyLimitStatuses() {
        func status(_ key: String) -> MetadataStatus? {
            do {
                try MetadataLimits.validate(key: key)
                return nil
            } catch {
                return error.status
            }
        }
        #expect(status(String(repeating: "k", count: 1024)) == nil)
        #expect(status(String(repeating: "k", count: 1025)) == .tooLarge)
        #expect(status(String(repeating: " ", count: 1025)) == .tooLarge)
        #expect(status("") == .invalidArgument)
        #expect(status("a b") == .invalidArgument)
    }
}
