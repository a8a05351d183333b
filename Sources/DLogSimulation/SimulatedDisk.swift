#if canImport(Glibc)
import Glibc
#endif
import DLogIO
import Synchronization

/// A `Disk` in memory that knows what a power cut would keep (see `DiskModel`), for tests and tools that run
/// the storage without a real disk:
/// - `crash(seed:keep:)` drops what was never synced: file bytes, and the creates, renames and removes of
///   directories never synced since; with `.randomSectors` it keeps a seeded subset of the unsynced 512-byte
///   sectors instead, which tears writes.
/// - `inject(_:)` fails chosen calls with an errno (EIO on a write or a sync, say); `capacityBytes` makes
///   writes past it fail with ENOSPC; `haltAfter(changes:)` fails every change from the Nth on, as if the
///   process died there; `setLatency(_:for:)` advances a `SimulatedClock` by each call's cost.
///
/// Everything is deterministic: the same calls and seeds give the same disk. Thread-safe: one lock.
public final class SimulatedDisk: Disk {
    public enum Operation: String, Sendable, CaseIterable {
        case open, read, write, dataSync, sync, truncate, allocate, makeDirectory, syncDirectory, rename, link, remove
    }

    /// What a crash keeps of the changes that were never synced.
    public enum Keep: Sendable {
        /// Nothing: the disk as of each file's and directory's last sync.
        case nothing
        /// Each unsynced 512-byte sector of a write, and each unsynced resize, survives or not by the seed.
        case randomSectors
    }

    /// Fails the next `count` calls of `operation` on a path containing `pathContains` ("" for any) with
    /// `errno`. A failed call changes nothing, except a failed sync, which loses the file's unsynced changes
    /// (see `DiskModel`).
    public struct Fault: Sendable {
        public var operation: Operation
        public var pathContains: String
        public var errno: Int32
        public var count: Int
        public init(_ operation: Operation, pathContains: String = "", errno: Int32 = EIO, count: Int = 1) {
            precondition(count > 0)
            self.operation = operation
            self.pathContains = pathContains
            self.errno = errno
            self.count = count
        }
    }

    struct State {
        var model = DiskModel()
        var faults: [Fault] = []
        var capacityBytes: Int64
        var latency: [Operation: Duration] = [:]
        var calls: [Operation: Int] = [:]
        /// Changes (writes, syncs, creates, renames, ...) made, and from which one on every change fails.
        var changes = 0
        var haltAt: Int?
    }

    let state: Mutex<State>
    public let clock: SimulatedClock

    /// `capacityBytes`: what `usage` reports as the file system's size, and past which writes fail with ENOSPC.
    public init(capacityBytes: Int64 = 1 << 40, clock: SimulatedClock = SimulatedClock()) {
        precondition(capacityBytes > 0)
        state = Mutex(State(capacityBytes: capacityBytes))
        self.clock = clock
    }

    // MARK: Faults and their knobs

    public func inject(_ fault: Fault) { state.withLock { $0.faults.append(fault) } }

    /// Bit rot: flips the bits of `mask` in the byte at `offset` of the file at `path`, in what is read now
    /// and in what a crash keeps, so the disk returns wrong bytes from then on without an error.
    public func damage(_ path: String, at offset: Int64, xor mask: UInt8) throws(SystemError) {
        precondition(mask != 0, "a damage that changes nothing")
        try state.withLock { s throws(SystemError) in
            guard let id = s.model.lookup(path), !s.model.nodes[id]!.isDirectory else {
                throw SystemError(call: "damage", path: path, errno: ENOENT)
            }
            let at = Int(offset)
            guard at >= 0, at < s.model.nodes[id]!.current.count else {
                throw SystemError(call: "damage", path: path, errno: EINVAL)
            }
            s.model.nodes[id]!.current[at] ^= mask
            if at < s.model.nodes[id]!.durable.count { s.model.nodes[id]!.durable[at] ^= mask }
        }
    }

    /// Drops the injected faults no call has met yet.
    public func clearFaults() { state.withLock { $0.faults.removeAll() } }

    public var capacityBytes: Int64 {
        get { state.withLock { $0.capacityBytes } }
        set { state.withLock { $0.capacityBytes = newValue } }
    }

    public func setLatency(_ latency: Duration, for operation: Operation) {
        state.withLock { $0.latency[operation] = latency }
    }

    /// From the `n`th change on (0: the next one), every change fails with EIO and does nothing: the process
    /// died there. `crash` ends the halt.
    public func haltAfter(changes n: Int) {
        precondition(n >= 0)
        state.withLock { $0.haltAt = $0.changes + n }
    }

    /// How many calls of `operation` were made (failed ones included).
    public func calls(_ operation: Operation) -> Int { state.withLock { $0.calls[operation] ?? 0 } }

    /// Runs one call under the lock: counts it, advances the clock by its latency, fails it when a fault or the
    /// halt says so, else runs `body`.
    func perform<T>(_ operation: Operation, _ path: String, changes: Bool,
                    _ body: (inout DiskModel, _ capacityBytes: Int64) -> Result<T, Errno>) throws(SystemError) -> T {
        let (result, latency) = state.withLock { s -> (Result<T, Errno>, Duration?) in
            s.calls[operation, default: 0] += 1
            let latency = s.latency[operation]
            if changes {
                defer { s.changes += 1 }
                if let haltAt = s.haltAt, s.changes >= haltAt { return (.fail(EIO), latency) }
            }
            if let i = s.faults.firstIndex(where: { $0.operation == operation && (
                $0.pathContains.isEmpty || path.contains($0.pathContains)) }) {
                let errno = s.faults[i].errno
                s.faults[i].count -= 1
                if s.faults[i].count == 0 { s.faults.remove(at: i) }
                return (.fail(errno), latency)
            }
            let capacity = s.capacityBytes
            return (body(&s.model, capacity), latency)
        }
        if let latency { clock.advance(by: latency) }
        switch result {
        case .success(let value): return value
        case .failure(let errno): throw SystemError(call: operation.rawValue, path: path, errno: errno.code)
        }
    }

    // MARK: Disk

    public func open(_ path: String, _ options: File.Options) throws(SystemError) -> any DiskFile {
        let creating = options.contains(.create) || options.contains(.truncate)
        let (handle, generation) = try perform(.open, path, changes: creating) { m, _ -> Result<(Int, Int), Errno> in
            switch m.parent(of: path) {
            case .failure(let errno): return .failure(errno)
            case .success(let (directory, name)):
                var id = m.nodes[directory]!.names[name]
                if let existing = id {
                    if options.contains(.create) && options.contains(.exclusive) { return .fail(EEXIST) }
                    if m.nodes[existing]!.isDirectory { return .fail(EISDIR) }
                } else {
                    guard options.contains(.create) else { return .fail(ENOENT) }
                    id = m.add(DiskModel.Node(isDirectory: false))
                    m.nodes[directory]!.names[name] = id
                }
                if options.contains(.truncate) && !options.contains(.readOnly) && !m.nodes[id!]!.current.isEmpty {
                    m.change(id!, .resize(0))
                }
                defer { m.nextHandle += 1 }
                m.handles[m.nextHandle] = id!
                return .success((m.nextHandle, m.generation))
            }
        }
        return SimulatedFile(disk: self, path: path, handle: handle, generation: generation,
                             readOnly: options.contains(.readOnly))
    }

    public func makeDirectory(_ path: String) throws(SystemError) {
        var prefix = ""
        for part in DiskModel.components(path) {
            let parentPath = prefix.isEmpty ? "/" : prefix
            prefix += "/" + part
            let full = prefix
            try perform(.makeDirectory, full, changes: true) { m, _ -> Result<Void, Errno> in
                guard case .success(let (directory, name)) = m.parent(of: full) else { return .fail(ENOENT) }
                guard m.nodes[directory]!.names[name] == nil else { return .success(()) }
                let id = m.add(DiskModel.Node(isDirectory: true))
                m.nodes[directory]!.names[name] = id
                return .success(())
            }
            // As the real one does: each directory it makes is durable in its parent.
            try syncDirectory(parentPath)
        }
    }

    public func syncDirectory(_ path: String) throws(SystemError) {
        try perform(.syncDirectory, path, changes: true) { m, _ -> Result<Void, Errno> in
            guard let id = m.lookup(path) else { return .fail(ENOENT) }
            guard m.nodes[id]!.isDirectory else { return .fail(ENOTDIR) }
            m.nodes[id]!.durableNames = m.nodes[id]!.names
            m.collectGarbage()
            return .success(())
        }
    }

    public func rename(_ from: String, _ to: String) throws(SystemError) {
        try perform(.rename, "\(from) -> \(to)", changes: true) { m, _ -> Result<Void, Errno> in
            guard case .success(let source) = m.parent(of: from), case .success(let target) = m.parent(of: to)
            else { return .fail(ENOENT) }
            guard let id = m.nodes[source.directory]!.names[source.name] else { return .fail(ENOENT) }
            if let replaced = m.nodes[target.directory]!.names[target.name], replaced != id {
                if m.nodes[replaced]!.isDirectory != m.nodes[id]!.isDirectory {
                    return .fail(m.nodes[replaced]!.isDirectory ? EISDIR : ENOTDIR)
                }
            }
            m.nodes[source.directory]!.names[source.name] = nil
            m.nodes[target.directory]!.names[target.name] = id
            return .success(())
        }
    }

    public func link(_ existing: String, _ new: String) throws(SystemError) {
        try perform(.link, "\(existing) -> \(new)", changes: true) { m, _ -> Result<Void, Errno> in
            guard case .success(let source) = m.parent(of: existing), case .success(let target) = m.parent(of: new),
                  let id = m.nodes[source.directory]!.names[source.name] else { return .fail(ENOENT) }
            guard m.nodes[target.directory]!.names[target.name] == nil else { return .fail(EEXIST) }
            guard !m.nodes[id]!.isDirectory else { return .fail(EPERM) }
            m.nodes[target.directory]!.names[target.name] = id
            return .success(())
        }
    }

    public func remove(_ path: String) throws(SystemError) {
        try perform(.remove, path, changes: true) { m, _ -> Result<Void, Errno> in
            guard case .success(let (directory, name)) = m.parent(of: path),
                  let id = m.nodes[directory]!.names[name] else { return .success(()) }
            if m.nodes[id]!.isDirectory { return .fail(EISDIR) }
            m.nodes[directory]!.names[name] = nil
            m.collectGarbage()
            return .success(())
        }
    }

    public func exists(_ path: String) -> Bool { state.withLock { $0.model.lookup(path) != nil } }

    public func list(_ directory: String) throws(SystemError) -> [String] {
        try state.withLock { s throws(SystemError) -> [String] in
            guard let id = s.model.lookup(directory) else { throw SystemError(call: "opendir", path: directory, errno: ENOENT) }
            guard s.model.nodes[id]!.isDirectory else { throw SystemError(call: "opendir", path: directory, errno: ENOTDIR) }
            return s.model.nodes[id]!.names.keys.sorted()
        }
    }

    public func usage(of path: String) throws(SystemError) -> FileSystem.Usage {
        try state.withLock { s throws(SystemError) -> FileSystem.Usage in
            guard s.model.lookup(path) != nil else { throw SystemError(call: "statvfs", path: path, errno: ENOENT) }
            let used = min(s.model.usedBytes, s.capacityBytes)
            return FileSystem.Usage(totalBytes: UInt64(s.capacityBytes), freeBytes: UInt64(s.capacityBytes - used))
        }
    }
}
