import DLogMetadata
import DLogTestSupport
import Foundation
import Synchronization
import Testing

/// The metadata role as a real child process, killed with SIGKILL under load.
@Suite struct MetadataCrashTests {
    struct Ack: Sendable, Hashable {
        var key: String
        var version: Version
        var value: [UInt8]
        var cycle: Int
    }

    final class Acks: Sendable {
        let list = Mutex<[Ack]>([])
        let cycle = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
        let failure = Mutex<String?>(nil)
        func count(inCycle cycle: Int) -> Int { list.withLock { $0.lazy.filter { $0.cycle == cycle }.count } }
    }

    @Test func killedRoleLosesNoAcknowledgedUpdateAndReusesNoVersion() async throws {
        // Proves every compare-and-set the metadata role acknowledged survives SIGKILL (10 cycles during
        // concurrent load from several clients), with its value, and no version is ever handed out twice.
        let dir = TempDir("dlog-md-crash")
        let data = dir.sub("metadata")
        var daemon = try await DaemonProcess.start(["--data-dir", data], role: "metadata")
        let port = daemon.port
        let keys = (0..<16).map { "/crash/k\($0)" }
        let setup = RemoteStore(endpoints: [.init(host: "127.0.0.1", port: port)], requestTimeout: .seconds(2))
        for key in keys { try await setup.create(key, value: bytes("initial")) }
        let acks = Acks()
        // A watcher on its own connection follows every change across all the kills.
        let watcherStore = RemoteStore(endpoints: [.init(host: "127.0.0.1", port: port)], requestTimeout: .seconds(2))
        let watched = Mutex<[WatchEvent]>([])
        let start = try await setup.range(.key("/none"), limit: 1).revision
        let watcher = Task {
            do {
                for try await event in watcherStore.watch(.prefix("/crash/"), from: start.next) {
                    watched.withLock { $0.append(event) }
                }
            } catch {}
        }
        let workers = (0..<6).map { worker in
            Task { await Self.work(worker: worker, keys: keys, port: port, acks: acks) }
        }
        for cycle in 1...10 {
            // Each kill lands under load, however slow the machine: wait (bounded) for updates acknowledged
            // since the last restart, then a random moment more.
            let loaded = ContinuousClock.now + .seconds(30)
            while acks.count(inCycle: cycle - 1) < 12, ContinuousClock.now < loaded {
                try await Task.sleep(for: .milliseconds(10))
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...500)))
            daemon.kill(SIGKILL)
            _ = await daemon.exited()
            acks.cycle.store(cycle, ordering: .relaxed)
            daemon = try await DaemonProcess.start(["--data-dir", data, "--port", "\(port)"], role: "metadata")
        }
        let settled = ContinuousClock.now + .seconds(30)
        while acks.count(inCycle: 10) < 12, ContinuousClock.now < settled {
            try await Task.sleep(for: .milliseconds(10))
        }
        acks.stop.store(true, ordering: .relaxed)
        for worker in workers { await worker.value }
        #expect(acks.failure.withLock { $0 } == nil, "\(acks.failure.withLock { $0 } ?? "")")

        let acknowledged = acks.list.withLock { $0 }
        let cycles = Set(acknowledged.map(\.cycle))
        print("metadata crash test: \(acknowledged.count) acknowledged updates across 10 SIGKILLs")
        #expect(acknowledged.count >= 100, "load made progress (\(acknowledged.count) acknowledged updates)")
        #expect(cycles.isSuperset(of: 0...10), "updates were acknowledged between all kills (cycles: \(cycles.sorted()))")
        let versions = acknowledged.map(\.version)
        #expect(Set(versions).count == versions.count, "a version was acknowledged twice")

        try await verify(acknowledged, keys: keys, store: setup)
        try await verifyWatch(watched, acknowledged: acknowledged, store: setup)
        watcher.cancel()
        await watcherStore.shutdown()
        await setup.shutdown()
        daemon.kill(SIGTERM)
        #expect(await daemon.exited() == 0)
    }

    /// Every key's current state is at or past its last acknowledged update, and the change history holds
    /// every acknowledged update at its version with its value.
    private func verify(_ acknowledged: [Ack], keys: [String], store: RemoteStore) async throws {
        let current = try await retryingUnavailable { try await store.list(prefix: "/crash/") }
        let byKey = Dictionary(uniqueKeysWithValues: current.items.map { ($0.key, $0) })
        for key in keys {
            guard let last = acknowledged.filter({ $0.key == key }).max(by: { $0.version < $1.version }) else { continue }
            let now = try #require(byKey[key], "\(key) vanished")
            #expect(now.version >= last.version, "\(key) went back from \(last.version) to \(now.version)")
            if now.version == last.version { #expect(now.value == last.value, "\(key) at \(now.version) has another value") }
        }
        let end = current.revision
        let events = try await withTimeout(30, "reading the change history") {
            var out: [WatchEvent] = []
            for try await event in store.watch(.prefix("/crash/"), from: Revision(1)) {
                out.append(event)
                if event.revision >= end { break }
            }
            return out
        }
        let history = Dictionary(events.map { (Version($0.revision), $0) }, uniquingKeysWith: { first, _ in first })
        for ack in acknowledged {
            let event = history[ack.version]
            #expect(event?.key == ack.key && event?.value == ack.value,
                    "acknowledged \(ack.key) at \(ack.version) is not in the history as written")
        }
    }

    /// The watcher, which lived through every kill, saw each change once, in revision order, and every
    /// acknowledged update among them.
    private func verifyWatch(_ watched: borrowing Mutex<[WatchEvent]>, acknowledged: [Ack], store: RemoteStore) async throws {
        let end = try await store.range(.key("/none"), limit: 1).revision
        let deadline = ContinuousClock.now + .seconds(20)
        while watched.withLock({ $0.last?.revision ?? .zero }) < end && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let events = watched.withLock { $0 }
        #expect(events.last?.revision == end, "the watch caught up to revision \(end)")
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.revision < $1.revision },
                "the watch repeated or reordered a change")
        let seen = Dictionary(events.map { (Version($0.revision), $0.value) }, uniquingKeysWith: { a, _ in a })
        let missing = acknowledged.filter { seen[$0.version] != $0.value }
        #expect(missing.isEmpty, "the watch missed \(missing.count) acknowledged updates, first \(missing.first.map { "\($0.key)@\($0.version)" } ?? "")")
    }

    private static func work(worker: Int, keys: [String], port: Int, acks: Acks) async {
        let store = RemoteStore(endpoints: [.init(host: "127.0.0.1", port: port)], requestTimeout: .seconds(2))
        var n = 0
        while !acks.stop.load(ordering: .relaxed) {
            let key = keys.randomElement()!
            let cycle = acks.cycle.load(ordering: .relaxed)
            do {
                guard let item = try await store.get(key) else {
                    acks.failure.withLock { $0 = "\(key) vanished" }
                    return
                }
                n += 1
                let value = bytes("w\(worker)-\(n)")
                let version = try await store.put(key, value: value, ifVersion: item.version)
                acks.list.withLock { $0.append(Ack(key: key, version: version, value: value, cycle: cycle)) }
            } catch let error as MetadataError {
                switch error {
                case .versionConflict: continue
                case .unavailable: try? await Task.sleep(for: .milliseconds(20))
                default:
                    acks.failure.withLock { $0 = "worker \(worker): \(error)" }
                    return
                }
            } catch {
                acks.failure.withLock { $0 = "worker \(worker): \(error)" }
                return
            }
        }
        await store.shutdown()
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Retries while the store reports itself unavailable (it is restarting), for at most 20 s.
func retryingUnavailable<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    try await retrying(while: { ($0 as? MetadataError)?.isRetryable == true }, body)
}
