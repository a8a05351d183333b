import DLogIO
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@Suite struct MemoryTests {
    /// How many of `pages` (page-aligned addresses) are resident, by `mincore`.
    private static func resident(_ pages: [UInt], pageSize: Int) -> Int {
        var count = 0
        var vector: UInt8 = 0
        for page in pages where mincore(UnsafeMutableRawPointer(bitPattern: page), pageSize, &vector) == 0 && vector & 1 == 1 {
            count += 1
        }
        return count
    }

    /// 160 MB freed in 1 KiB blocks below a block still in use stays resident (the allocator keeps it, and
    /// cannot shrink its heap past the live block) until `returnFreedToSystem`, which hands it back.
    /// What is measured is the residency of the freed blocks' own pages, not the process's resident size: tests
    /// running beside this one (the bookie simulation, in-process TLS servers) allocate meanwhile, and once hid
    /// the drop in the process's total (14, -1, 21, 5 and 6 MiB of 160 in five tries, under the whole suite's
    /// load). A page another test reuses meanwhile, or shares with a live block, stays resident: a quarter of
    /// the pages must go. Without the trim none does.
    ///
    /// The trim is process-wide, and the bookies of tests beside this one trim after their checkpoints: one
    /// that falls between the frees and the first count returns the pages before this test's trim does (10,059
    /// of 39,401 were left once). Such a try proves nothing either way and is made again, up to five times.
    @Test func freedMemoryGoesBackToTheSystem() {
        for _ in 0..<5 {
            let (pages, before, after) = Self.freeAndTrim()
            guard before > pages / 2 else { continue }
            #expect(before - after > pages / 4, "pages returned: \(before - after) of \(pages)")
            return
        }
        Issue.record("in five tries, the freed pages were never left resident until the trim")
    }

    /// Frees 160,000 blocks of 1,000 bytes below a live one; the freed blocks' pages, and how many of them were
    /// resident before and after `returnFreedToSystem`.
    private static func freeAndTrim() -> (pages: Int, before: Int, after: Int) {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var blocks: [UnsafeMutableRawPointer] = []
        blocks.reserveCapacity(160_000)
        for _ in 0 ..< 160_000 {
            let p = malloc(1_000)!
            memset(p, 1, 1_000)
            blocks.append(p)
        }
        let pin = malloc(64)!
        defer { free(pin) }
        let mask = ~UInt(pageSize - 1)
        let pages = Array(Set(blocks.map { UInt(bitPattern: $0) & mask }))
        for p in blocks { free(p) }
        let before = resident(pages, pageSize: pageSize)
        Memory.returnFreedToSystem()
        return (pages.count, before, resident(pages, pageSize: pageSize))
    }
}
