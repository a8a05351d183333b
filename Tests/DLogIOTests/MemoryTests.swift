import DLogIO
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@Suite struct MemoryTests {
    /// Resident bytes of this process, from /proc/self/statm (its second field, in pages).
    private func residentBytes() -> Int {
        let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? ""
        let fields = text.split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// 160 MB freed in 1 KiB blocks below a block still in use stays resident (the allocator keeps it, and
    /// cannot shrink its heap past the live block) until `returnFreedToSystem`, which hands it back.
    @Test func freedMemoryGoesBackToTheSystem() {
        var blocks: [UnsafeMutableRawPointer] = []
        blocks.reserveCapacity(160_000)
        for _ in 0 ..< 160_000 {
            let p = malloc(1_000)!
            memset(p, 1, 1_000)
            blocks.append(p)
        }
        let pin = malloc(64)!
        for p in blocks { free(p) }
        let before = residentBytes()
        Memory.returnFreedToSystem()
        let after = residentBytes()
        free(pin)
        #expect(before - after > 100_000_000, "resident \(before >> 20) MiB before, \(after >> 20) MiB after")
    }
}
