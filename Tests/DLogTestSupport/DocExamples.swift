import Foundation

/// The worked byte examples of a document under `docs/`, read from the repository so that tests can hold them
/// against the real encoders and decoders.
///
/// Convention: a line `<!-- example: NAME -->` marks the fenced code block that follows it (blank lines may sit
/// between them). The block holds hex bytes: rows like `0010  00 01 …` (a leading 4-digit offset, checked
/// against the bytes before it), bare rows of byte pairs, or one long hex string. A blank line inside the block
/// starts a new message (a request and its answer, say), so an example is a list of byte strings.
public struct DocExamples: Sendable {
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    /// The document's text, as read.
    public let text: String
    /// Example name → its messages, in order.
    public let examples: [String: [[UInt8]]]

    /// Reads `docs/<name>` of the repository this file is in.
    public init(_ name: String, filePath: String = #filePath) throws {
        let root = URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let path = root.appendingPathComponent("docs").appendingPathComponent(name).path
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Problem(description: "cannot read \(path)")
        }
        self.text = text
        examples = try Self.parse(text, in: name)
    }

    /// The messages of example `name`; throws when the document has no such example.
    public func messages(_ name: String) throws -> [[UInt8]] {
        guard let found = examples[name] else { throw Problem(description: "no example '\(name)' in the document") }
        return found
    }

    /// The one message of example `name`.
    public func bytes(_ name: String) throws -> [UInt8] {
        let found = try messages(name)
        guard found.count == 1 else { throw Problem(description: "example '\(name)' holds \(found.count) messages, not 1") }
        return found[0]
    }

    public static func parse(_ text: String, in document: String) throws -> [String: [[UInt8]]] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var out: [String: [[UInt8]]] = [:]
        var index = 0
        while index < lines.count {
            defer { index += 1 }
            let line = lines[index].trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("<!-- example:"), line.hasSuffix("-->") else { continue }
            let name = line.dropFirst("<!-- example:".count).dropLast(3).trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, out[name] == nil else {
                throw Problem(description: "\(document):\(index + 1): example name '\(name)' is empty or used twice")
            }
            var fence = index + 1
            while fence < lines.count, lines[fence].trimmingCharacters(in: .whitespaces).isEmpty { fence += 1 }
            guard fence < lines.count, lines[fence].hasPrefix("```") else {
                throw Problem(description: "\(document):\(index + 1): example '\(name)' is not followed by a fenced block")
            }
            var messages: [[UInt8]] = [[]]
            var row = fence + 1
            while row < lines.count, !lines[row].hasPrefix("```") {
                let tokens = lines[row].split(separator: " ").map(String.init)
                if tokens.isEmpty {
                    if !messages[messages.count - 1].isEmpty { messages.append([]) }
                } else {
                    try Self.read(tokens, into: &messages[messages.count - 1], at: "\(document):\(row + 1)")
                }
                row += 1
            }
            guard row < lines.count else { throw Problem(description: "\(document): example '\(name)' is not closed") }
            if messages.last!.isEmpty { messages.removeLast() }
            guard !messages.isEmpty else { throw Problem(description: "\(document): example '\(name)' is empty") }
            out[name] = messages
            index = row
        }
        return out
    }

    private static func read(_ tokens: [String], into bytes: inout [UInt8], at place: String) throws {
        var tokens = tokens[...]
        if let first = tokens.first, first.count == 4 {
            guard let offset = Int(first, radix: 16), offset == bytes.count else {
                throw Problem(description: "\(place): row offset \(first) does not match the \(bytes.count) bytes before it")
            }
            tokens = tokens.dropFirst()
        }
        for token in tokens {
            guard token.count % 2 == 0, token.count >= 2 else { throw Problem(description: "\(place): '\(token)' is not hex bytes") }
            var at = token.startIndex
            while at < token.endIndex {
                let next = token.index(at, offsetBy: 2)
                guard let byte = UInt8(token[at..<next], radix: 16) else {
                    throw Problem(description: "\(place): '\(token)' is not hex bytes")
                }
                bytes.append(byte)
                at = next
            }
        }
    }
}

/// `bytes` in the documents' dump format (16 bytes a row, each row led by its offset), to paste into a
/// document when an example changes on purpose.
public func docHexDump(_ bytes: [UInt8]) -> String {
    stride(from: 0, to: bytes.count, by: 16).map { start in
        let row = bytes[start..<min(start + 16, bytes.count)].map { String(format: "%02x", $0) }.joined(separator: " ")
        return String(format: "%04x  ", start) + row
    }.joined(separator: "\n")
}
