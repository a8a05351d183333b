import DLogWire

// # Sealed files (COOKIE, and the JSON checkpoint manifest of earlier versions)
//
// Every small file a bookie trusts at start is sealed: a first line of text, then the body (JSON):
//
//     dlog-manifest 2 1234 9f3a0b12\n
//     {"entryLogs":[…],…}
//
// The first line holds four fields separated by one space: the kind, the format version (decimal), the
// body's length in bytes (decimal) and a CRC32C in 8 lowercase hex digits. The CRC covers the first three
// fields as written ("dlog-manifest 2 1234") followed directly by the body. So a flipped bit anywhere in the
// file is found before a byte of the body is believed: in the body or length by the CRC or the length, in
// the kind or version by the CRC (or by the kind itself). The text first line keeps the files readable with
// `cat`, as the JSON bodies were before they were sealed.
enum SealedFile {
    static let headerBytesMax = 128

    /// The sealed form of `body`.
    static func seal(kind: String, version: Int, body: [UInt8]) -> [UInt8] {
        precondition(!kind.isEmpty && !kind.contains(" ") && version > 0)
        let fields = "\(kind) \(version) \(body.count)"
        let crc = CRC32C.checksum(body, seed: CRC32C.checksum(Array(fields.utf8)))
        return Array("\(fields) \(hex8(crc))\n".utf8) + body
    }

    /// 8 lowercase hex digits.
    static func hex8(_ value: UInt32) -> String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// True when `bytes` start like a sealed file of `kind` (whether intact or not): tells a damaged sealed
    /// file from an unsealed one written by an older dlogd.
    static func looksSealed(_ bytes: [UInt8], kind: String) -> Bool {
        bytes.starts(with: Array("\(kind) ".utf8))
    }

    /// The version and body of an intact sealed file of `kind`; throws naming `path` and what is wrong.
    static func open(_ bytes: [UInt8], kind: String, path: String) throws(StorageCorruption) -> (version: Int, body: [UInt8]) {
        guard let newline = bytes.prefix(headerBytesMax).firstIndex(of: UInt8(ascii: "\n")) else {
            throw StorageCorruption(path: path, reason: "no \(kind) header line in its first \(headerBytesMax) bytes")
        }
        let fields = String(decoding: bytes[..<newline], as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        // Every field must be written exactly as `seal` writes it: parsing alone would take "A" for "a" in the
        // CRC or "02" for "2", and a flipped bit there would go unnoticed.
        guard fields.count == 4, fields[0] == kind, let version = Int(fields[1]), version > 0, "\(version)" == fields[1],
              let length = Int(fields[2]), "\(length)" == fields[2], let stored = UInt32(fields[3], radix: 16),
              hex8(stored) == fields[3] else {
            throw StorageCorruption(path: path, reason: "header line is not \"\(kind) VERSION LENGTH CRC32C\"")
        }
        let body = Array(bytes[(newline + 1)...])
        guard body.count == length else {
            throw StorageCorruption(path: path, reason: "body is \(body.count) bytes, its header says \(length)")
        }
        let computed = CRC32C.checksum(body, seed: CRC32C.checksum(Array("\(fields[0]) \(fields[1]) \(fields[2])".utf8)))
        guard computed == stored else {
            throw StorageCorruption(path: path, reason: "CRC32C mismatch (stored \(fields[3]), computed "
                                        + "\(String(computed, radix: 16)))")
        }
        return (version, body)
    }
}
