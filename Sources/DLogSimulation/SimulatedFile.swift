#if canImport(Glibc)
import Glibc
#endif
import DLogIO

/// An open file of a `SimulatedDisk`. A handle opened before a crash is dead after it (EBADF), as the process
/// that held it is.
struct SimulatedFile: DiskFile {
    let disk: SimulatedDisk
    let path: String
    let handle: Int
    let generation: Int
    let readOnly: Bool

    /// The node behind this handle, or the errno of a dead or closed one.
    private func node(_ m: DiskModel) -> Result<Int, Errno> {
        guard m.generation == generation, let id = m.handles[handle] else { return .fail(EBADF) }
        return .success(id)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(SystemError) {
        precondition(offset >= 0)
        let data = [UInt8](bytes)
        try disk.perform(.write, path, changes: true) { m, capacity -> Result<Void, Errno> in
            guard case .success(let id) = node(m) else { return .fail(EBADF) }
            guard !readOnly else { return .fail(EBADF) }
            let growth = max(0, Int64(offset) + Int64(data.count) - Int64(m.nodes[id]!.current.count))
            guard m.usedBytes + growth <= capacity else { return .fail(ENOSPC) }
            m.change(id, .write(offset: Int(offset), bytes: data))
            return .success(())
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        precondition(offset >= 0)
        return try disk.perform(.read, path, changes: false) { m, _ -> Result<Int, Errno> in
            guard case .success(let id) = node(m) else { return .fail(EBADF) }
            let bytes = m.nodes[id]!.current
            guard Int(offset) < bytes.count else { return .success(0) }
            let count = min(buffer.count, bytes.count - Int(offset))
            bytes.withUnsafeBytes { source in
                buffer.baseAddress!.copyMemory(from: source.baseAddress! + Int(offset), byteCount: count)
            }
            return .success(count)
        }
    }

    func dataSync() throws(SystemError) { try sync(.dataSync) }
    func sync() throws(SystemError) { try sync(.sync) }

    private func sync(_ operation: SimulatedDisk.Operation) throws(SystemError) {
        do {
            try disk.perform(operation, path, changes: true) { m, _ -> Result<Void, Errno> in
                guard case .success(let id) = node(m) else { return .fail(EBADF) }
                m.synced(id)
                return .success(())
            }
        } catch {
            // A failed sync loses what it was to make durable, though reads still return it (see DiskModel).
            if error.errno != EBADF { disk.state.withLock { s in
                if case .success(let id) = node(s.model) { s.model.nodes[id]!.pending.removeAll() }
            } }
            throw error
        }
    }

    func size() throws(SystemError) -> Int64 {
        try disk.perform(.read, path, changes: false) { m, _ -> Result<Int64, Errno> in
            guard case .success(let id) = node(m) else { return .fail(EBADF) }
            return .success(Int64(m.nodes[id]!.current.count))
        }
    }

    func truncate(to length: Int64) throws(SystemError) {
        precondition(length >= 0)
        try disk.perform(.truncate, path, changes: true) { m, capacity -> Result<Void, Errno> in
            guard case .success(let id) = node(m), !readOnly else { return .fail(EBADF) }
            let growth = max(0, length - Int64(m.nodes[id]!.current.count))
            guard m.usedBytes + growth <= capacity else { return .fail(ENOSPC) }
            m.change(id, .resize(Int(length)))
            return .success(())
        }
    }

    func allocate(offset: Int64, length: Int64) throws(SystemError) {
        precondition(offset >= 0 && length > 0)
        try disk.perform(.allocate, path, changes: true) { m, capacity -> Result<Void, Errno> in
            guard case .success(let id) = node(m), !readOnly else { return .fail(EBADF) }
            let size = Int64(m.nodes[id]!.current.count)
            guard offset + length > size else { return .success(()) }
            guard m.usedBytes + offset + length - size <= capacity else { return .fail(ENOSPC) }
            m.change(id, .resize(Int(offset + length)))
            return .success(())
        }
    }

    func close() {
        disk.state.withLock { s in
            guard s.model.generation == generation, s.model.handles.removeValue(forKey: handle) != nil else { return }
            s.model.collectGarbage()
        }
    }
}
