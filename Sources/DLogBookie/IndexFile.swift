import DLogIO
import DLogWire

/// One copy of the ledger index read back: its records checked (`scan`), then its snapshot with every delta
/// after it applied (`decode`). Start-up scans every copy but decodes only the one it uses.
///
/// A checkpoint appends its delta and syncs it before the bookie acts on it, and a failed append is followed
/// by a whole new file (`IndexStore`), so only the last record of a copy can be cut short by a crash. A record
/// that fails its checks is therefore taken as a torn end, ignored with a note, when nothing that looks like
/// a record header follows it; with a record after it, the copy is damaged.
enum IndexFile {
    /// A copy whose records all check, up to an end that may be torn.
    struct Scanned {
        var bytes: [UInt8]
        /// Each record's generation and body, in file order; the first is the snapshot.
        var records: [(generation: UInt64, body: Range<Int>)]
        var generation: UInt64 { records.last!.generation }
        /// Bytes of the snapshot record, and of the delta records after it.
        var snapshotBytes: Int
        var deltaBytes: Int
        /// Where the next record goes: after the last intact one.
        var validBytes: Int { IndexFormat.fileHeaderBytes + snapshotBytes + deltaBytes }
        var fileBytes: Int { bytes.count }
        /// What was ignored after the last intact record, if anything.
        var tornTail: String?
    }

    /// A copy decoded: the state it holds and how it ends.
    struct Contents {
        var manifest: Manifest
        var generation: UInt64
        var snapshotBytes: Int
        var deltaBytes: Int
        var tornTail: String?
    }

    enum Copy {
        case absent
        case intact(Contents)
        case damaged(String)
    }

    enum ScannedCopy {
        case absent
        case scanned(Scanned)
        case damaged(String)
    }

    static func read(_ path: String, disk: any Disk, directories: Int) -> Copy {
        switch scan(path, disk: disk) {
        case .absent: return .absent
        case .damaged(let why): return .damaged(why)
        case .scanned(let scanned): return decode(scanned, directories: directories)
        }
    }

    static func scan(_ path: String, disk: any Disk) -> ScannedCopy {
        guard disk.exists(path) else { return .absent }
        do { return scan(try disk.readAll(path)) } catch { return .damaged("cannot be read: \(error)") }
    }

    /// The decoder proper, on bytes (the fuzz target calls it).
    static func parse(_ bytes: [UInt8], directories: Int) -> Copy {
        switch scan(bytes) {
        case .absent: return .absent
        case .damaged(let why): return .damaged(why)
        case .scanned(let scanned): return decode(scanned, directories: directories)
        }
    }

    /// Checks the file header and every record's framing, CRCs and generations, without decoding a body.
    static func scan(_ bytes: [UInt8]) -> ScannedCopy {
        guard bytes.count >= IndexFormat.fileHeaderBytes else {
            return .damaged("is \(bytes.count) bytes, shorter than its \(IndexFormat.fileHeaderBytes)-byte header")
        }
        return bytes.withUnsafeBytes { raw -> ScannedCopy in
            let (magic, version, headerCRC) = (raw.loadBigEndian(UInt32.self, at: 0), raw.loadBigEndian(UInt32.self, at: 4),
                                               raw.loadBigEndian(UInt32.self, at: 12))
            guard magic == IndexFormat.magic, headerCRC == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<12])) else {
                return .damaged("its file header is damaged (magic or CRC32C)")
            }
            guard version == IndexFormat.version else {
                return .damaged("format version \(version) is not supported; this dlogd reads version \(IndexFormat.version)")
            }
            var records: [(generation: UInt64, body: Range<Int>)] = []
            var offset = IndexFormat.fileHeaderBytes
            var tornTail: String? = nil
            while offset < bytes.count {
                let last = records.last?.generation ?? 0
                guard let (length, generation, bodyCRC) = header(raw, at: offset),
                      offset + IndexFormat.recordHeaderBytes + length <= bytes.count else {
                    if records.isEmpty { return .damaged("its snapshot record at byte \(offset) is damaged or cut short") }
                    if let next = nextHeader(raw, after: offset) {
                        return .damaged("the record at byte \(offset) is damaged, yet a record follows at byte \(next)")
                    }
                    tornTail = "ignored \(bytes.count - offset) bytes at byte \(offset), after generation \(last): "
                        + "a checkpoint's write cut short"
                    break
                }
                let body = offset + IndexFormat.recordHeaderBytes ..< offset + IndexFormat.recordHeaderBytes + length
                guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[body])) == bodyCRC else {
                    if records.isEmpty { return .damaged("its snapshot record at byte \(offset) fails its CRC32C") }
                    guard body.upperBound == bytes.count, nextHeader(raw, after: offset) == nil else {
                        return .damaged("the record at byte \(offset) (generation \(generation)) fails its CRC32C, "
                                        + "and more follows it")
                    }
                    tornTail = "ignored the last record at byte \(offset) (generation \(generation)): its CRC32C "
                        + "fails, a checkpoint's write cut short"
                    break
                }
                guard records.isEmpty || generation == last + 1 else {
                    return .damaged("the record at byte \(offset) has generation \(generation) after \(last)")
                }
                records.append((generation, body))
                offset = body.upperBound
            }
            guard let first = records.first else { return .damaged("it holds no snapshot record") }
            let snapshotBytes = first.body.upperBound - IndexFormat.fileHeaderBytes
            return .scanned(Scanned(bytes: bytes, records: records, snapshotBytes: snapshotBytes,
                                    deltaBytes: offset - IndexFormat.fileHeaderBytes - snapshotBytes, tornTail: tornTail))
        }
    }

    /// Applies the scanned records in order: `.damaged` when a body that passed its CRC does not decode.
    static func decode(_ scanned: Scanned, directories: Int) -> Copy {
        var m = Manifest()
        let failure: String? = scanned.bytes.withUnsafeBytes { raw in
            for (i, record) in scanned.records.enumerated() {
                do {
                    try IndexFormat.apply(raw, record.body, to: &m, expecting: i == 0 ? .snapshot : .delta,
                                          directories: directories)
                } catch {
                    return "the record of generation \(record.generation) at byte "
                        + "\(record.body.lowerBound - IndexFormat.recordHeaderBytes) is malformed: \(error)"
                }
            }
            return nil
        }
        if let failure { return .damaged(failure) }
        var known = Set<UInt64>()
        m.forgetChanges(known: &known)
        m.generation = scanned.generation
        return .intact(Contents(manifest: m, generation: scanned.generation, snapshotBytes: scanned.snapshotBytes,
                                deltaBytes: scanned.deltaBytes, tornTail: scanned.tornTail))
    }

    /// The length, generation and body CRC of an intact record header at `offset`.
    private static func header(_ raw: UnsafeRawBufferPointer, at offset: Int) -> (Int, UInt64, UInt32)? {
        guard offset + IndexFormat.recordHeaderBytes <= raw.count,
              raw.loadBigEndian(UInt32.self, at: offset) == IndexFormat.recordMagic,
              raw.loadBigEndian(UInt32.self, at: offset + 20)
                == CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[offset ..< offset + 20])) else { return nil }
        let length = Int(raw.loadBigEndian(UInt32.self, at: offset + 4))
        guard length <= IndexFormat.bodyBytesMax else { return nil }
        return (length, raw.loadBigEndian(UInt64.self, at: offset + 8), raw.loadBigEndian(UInt32.self, at: offset + 16))
    }

    /// The offset of the first intact record header after `offset`, if any.
    private static func nextHeader(_ raw: UnsafeRawBufferPointer, after offset: Int) -> Int? {
        var at = offset + 1
        while at + IndexFormat.recordHeaderBytes <= raw.count {
            if raw[at] == 0x44, header(raw, at: at) != nil { return at }  // 0x44: "D", the magic's first byte
            at += 1
        }
        return nil
    }
}
