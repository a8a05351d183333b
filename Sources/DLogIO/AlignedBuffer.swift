#if canImport(Glibc)
import Glibc
#endif

/// A page-aligned byte buffer for O_DIRECT and io_uring writes. Owned by one thread at a time.
public final class AlignedBuffer {
    public static let alignment = 4096
    public let capacity: Int
    public let base: UnsafeMutableRawPointer
    /// Bytes filled so far.
    public var count: Int = 0

    public init(capacity: Int) {
        precondition(capacity > 0 && capacity % Self.alignment == 0, "capacity must be a multiple of 4096")
        var p: UnsafeMutableRawPointer? = nil
        let rc = posix_memalign(&p, Self.alignment, capacity)
        precondition(rc == 0 && p != nil, "posix_memalign(\(capacity)) failed: out of memory")
        base = p!
        self.capacity = capacity
        // memset, not initializeMemory(as:repeating:count:): that generic loop is inlined unoptimized into a debug
        // build, where zeroing a journal's buffers took seconds and held up the thread that starts the bookie.
        memset(base, 0, capacity)
    }

    deinit { free(base) }

    public var remaining: Int { capacity - count }

    public func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count <= remaining, "aligned buffer overflow")
        if let src = bytes.baseAddress, bytes.count > 0 {
            (base + count).copyMemory(from: src, byteCount: bytes.count)
        }
        count += bytes.count
    }

    /// Fills with zeros up to the next multiple of `alignment`.
    public func padToAlignment() {
        let target = (count + Self.alignment - 1) / Self.alignment * Self.alignment
        precondition(target <= capacity)
        memset(base + count, 0, target - count)
        count = target
    }

    public func reset() { count = 0 }

    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: count) }
}
