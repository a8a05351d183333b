import CDLogSys

/// CRC32C (Castagnoli), the checksum on every entry and every journal record.
/// The check value of "123456789" is 0xE3069283.
public enum CRC32C {
    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return seed }
        return dlog_crc32c(seed, base, bytes.count)
    }

    public static func checksum(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, seed: seed) }
    }

    /// The portable (table) path, for tests that check both paths agree.
    public static func portableChecksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return seed }
        return dlog_crc32c_portable(seed, base, bytes.count)
    }

    public static var usesHardware: Bool { dlog_crc32c_hardware() == 1 }
}
