/// The in-memory file system behind `SimulatedDisk`: nodes (files and directories) by number, with what a
/// power cut would keep apart from what the process sees.
///
/// - A file has `durable` bytes (as of its last sync) and `current` bytes (what reads return), plus the
///   writes and truncations since its last sync, in order (`pending`): a crash keeps none of them, or a
///   seeded subset of their 512-byte sectors (a torn write).
/// - A directory has `names` (what the process sees) and `durableNames` (as of its last sync): a crash puts
///   back the durable ones, so a create, rename or remove whose directory was never synced is undone.
/// - A failed sync drops the pending changes from the durable path without undoing them in `current`: the
///   process still reads its bytes, a later sync succeeds without them, and a crash loses them. That is what
///   Linux does after a failed fsync (the pages are marked clean), and why the storage must never retry one.
struct DiskModel {
    static let rootID = 0
    static let sectorBytes = 512

    enum Change {
        case write(offset: Int, bytes: [UInt8])
        case resize(Int)
    }

    struct Node {
        var isDirectory: Bool
        var durable: [UInt8] = []
        var current: [UInt8] = []
        var pending: [Change] = []
        var names: [String: Int] = [:]
        var durableNames: [String: Int] = [:]
    }

    var nodes: [Int: Node] = [rootID: Node(isDirectory: true)]
    var nextID = 1
    /// Open handles: handle number → node. A crash closes them all.
    var handles: [Int: Int] = [:]
    var nextHandle = 1
    /// Bumped by every crash: handles of an earlier generation are dead.
    var generation = 0

    /// The parts of a path; "." and empty parts are dropped, so "/a//b/." is ["a", "b"].
    static func components(_ path: String) -> [String] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init).filter { $0 != "." }
        precondition(!parts.contains(".."), "a simulated disk does not resolve \"..\" (\(path))")
        return parts
    }

    func lookup(_ path: String) -> Int? {
        var id = Self.rootID
        for part in Self.components(path) {
            guard let node = nodes[id], node.isDirectory, let next = node.names[part] else { return nil }
            id = next
        }
        return id
    }

    /// The directory that holds `path`'s last part, and that part. Errno as a real file system gives it.
    func parent(of path: String) -> Result<(directory: Int, name: String), Errno> {
        let parts = Self.components(path)
        guard let name = parts.last else { return .fail(EISDIR) }
        var id = Self.rootID
        for part in parts.dropLast() {
            guard let next = nodes[id]!.names[part] else { return .fail(ENOENT) }
            guard nodes[next]!.isDirectory else { return .fail(ENOTDIR) }
            id = next
        }
        return .success((id, name))
    }

    mutating func add(_ node: Node) -> Int {
        defer { nextID += 1 }
        nodes[nextID] = node
        return nextID
    }

    /// Applies a change to the bytes a process sees; the same change applied to `durable` at a sync.
    static func apply(_ change: Change, to bytes: inout [UInt8]) {
        switch change {
        case .write(let offset, let data):
            if bytes.count < offset + data.count { bytes += [UInt8](repeating: 0, count: offset + data.count - bytes.count) }
            bytes.replaceSubrange(offset ..< offset + data.count, with: data)
        case .resize(let length):
            if length < bytes.count { bytes.removeLast(bytes.count - length) } else { bytes += [UInt8](repeating: 0, count: length - bytes.count) }
        }
    }

    mutating func change(_ id: Int, _ change: Change) {
        Self.apply(change, to: &nodes[id]!.current)
        nodes[id]!.pending.append(change)
    }

    /// A successful sync: everything pending becomes durable.
    mutating func synced(_ id: Int) {
        var node = nodes[id]!
        for change in node.pending { Self.apply(change, to: &node.durable) }
        node.pending.removeAll()
        nodes[id] = node
    }

    /// Bytes the files take: those a name or an open handle reaches now. A removed file's bytes are free at
    /// once, as on a real file system, though a crash before its directory is synced brings the file back.
    var usedBytes: Int64 {
        reachable(durableNames: false).reduce(0) { total, id in
            let node = nodes[id]!
            return total + Int64(node.isDirectory ? 0 : max(node.current.count, node.durable.count))
        }
    }

    /// Nodes reached from the root through names (and durable names, if asked) and from open handles.
    func reachable(durableNames: Bool) -> Set<Int> {
        var reached: Set<Int> = [Self.rootID]
        reached.formUnion(handles.values)
        var work = Array(reached)
        while let id = work.popLast() {
            guard let node = nodes[id], node.isDirectory else { continue }
            let children = durableNames ? Array(node.names.values) + node.durableNames.values : Array(node.names.values)
            for child in children where reached.insert(child).inserted { work.append(child) }
        }
        return reached
    }

    /// Forgets nodes no name (seen or durable) and no open handle reaches: nothing can bring them back.
    mutating func collectGarbage() {
        let reached = reachable(durableNames: true)
        nodes = nodes.filter { reached.contains($0.key) }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// An errno as a `Result`'s failure, inside the model.
struct Errno: Error {
    var code: Int32
}

extension Result where Failure == Errno {
    static func fail(_ code: Int32) -> Self { .failure(Errno(code: code)) }
}
