extension SimulatedDisk {
    /// A power cut: every handle dies, every directory goes back to its durable names, and every file to its
    /// durable bytes plus what `keep` lets survive of its unsynced changes (chosen by `seed`). Faults and the
    /// halt are cleared; capacity and latency stay.
    public func crash(seed: UInt64, keep: Keep = .nothing) {
        state.withLock { s in
            var random = SeededGenerator(seed: seed)
            s.model.generation += 1
            s.model.handles.removeAll()
            // Sorted, so the seed decides the same sectors for the same disk every time.
            for id in s.model.nodes.keys.sorted() {
                var node = s.model.nodes[id]!
                if node.isDirectory {
                    node.names = node.durableNames
                } else {
                    var survived = node.durable
                    if keep == .randomSectors {
                        for change in node.pending { Self.keepSome(of: change, in: &survived, &random) }
                    }
                    node.durable = survived
                    node.current = survived
                    node.pending.removeAll()
                }
                s.model.nodes[id] = node
            }
            s.model.collectGarbage()
            s.faults.removeAll()
            s.haltAt = nil
        }
    }

    /// Applies a seeded part of an unsynced change: each 512-byte sector a write touches (counted from the
    /// start of the file) independently; a resize whole or not at all.
    private static func keepSome(of change: DiskModel.Change, in bytes: inout [UInt8], _ random: inout SeededGenerator) {
        switch change {
        case .resize:
            if Bool.random(using: &random) { DiskModel.apply(change, to: &bytes) }
        case .write(let offset, let data):
            let sector = DiskModel.sectorBytes
            var start = offset
            while start < offset + data.count {
                let end = min((start / sector + 1) * sector, offset + data.count)
                if Bool.random(using: &random) {
                    DiskModel.apply(.write(offset: start, bytes: Array(data[(start - offset) ..< (end - offset)])), to: &bytes)
                }
                start = end
            }
        }
    }
}
