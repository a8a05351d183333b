import DLogMetadata
import Foundation
import Synchronization

/// Says on standard error what a command waits for, so that no command sits silent while it retries a proxy
/// that does not answer or waits on a metadata store: each new reason is printed at once, the same one again
/// at most every 5 seconds.
final class WaitNotice: Sendable {
    private let said = Mutex<(reason: String, at: ContinuousClock.Instant)?>(nil)

    /// Prints `text` unless the same `reason` (by default the text itself) was printed less than 5 s ago.
    func say(_ text: String, about reason: String? = nil) {
        let now = ContinuousClock.now, reason = reason ?? text
        let fresh = said.withLock { last -> Bool in
            if let last, last.reason == reason, now - last.at < .seconds(5) { return false }
            last = (reason, now)
            return true
        }
        if fresh { FileHandle.standardError.write(Data("dlogctl: \(text)\n".utf8)) }
    }
}

/// A metadata store that says, through `notice`, when a call has had no answer for `after`: the store retries
/// an unreachable server until its request timeout, and a command would otherwise wait that long in silence.
struct NoticingStore: MetadataStore {
    let store: any MetadataStore
    let uri: String
    let notice: WaitNotice
    var after: Duration = .seconds(2)

    private func noticing<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let watch = Task { [notice, uri, after] in
            try await Task.sleep(for: after)
            notice.say("waiting for the metadata store at \(uri) to answer")
        }
        defer { watch.cancel() }
        return try await body()
    }

    func range(_ range: KeyRange, limit: Int) async throws -> RangePage { try await noticing { try await store.range(range, limit: limit) } }
    func commit(_ transaction: Transaction) async throws -> Revision { try await noticing { try await store.commit(transaction) } }
    func subscribe(_ range: KeyRange, from revision: Revision) -> AsyncThrowingStream<[WatchEvent], any Error> {
        store.subscribe(range, from: revision)
    }
    func grantLease(ttlSeconds: Int) async throws -> Lease { try await noticing { try await store.grantLease(ttlSeconds: ttlSeconds) } }
    func keepAlive(_ lease: LeaseID) async throws -> Int { try await noticing { try await store.keepAlive(lease) } }
    func revoke(_ lease: LeaseID) async throws { try await noticing { try await store.revoke(lease) } }
    func shutdown() async { await store.shutdown() }
}
