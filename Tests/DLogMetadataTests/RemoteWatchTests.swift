import DLogMetadata
import DLogTestSupport
import Foundation
import Testing

@Suite struct RemoteWatchTests {
    @Test func aWatchEndedByItsConnectionClosingIsCancelledCleanly() async throws {
        // Proves a watch whose connection to the metadata role closes ends with `unavailable`, and cancelling
        // it then (a write to the closed connection) fails its reply promise instead of leaking it, which in a
        // debug build stopped the whole process ("leaking promise"). The client goes on working afterwards.
        try await withStore(.embedded) { fixture, store in
            let stream = store.subscribe(.prefix("/w/"), from: Revision(1))
            let ended = Task { () -> (any Error)? in
                do {
                    for try await _ in stream {}
                    return nil
                } catch {
                    return error
                }
            }
            _ = try await store.create("/w/a", value: [1])
            try await Task.sleep(for: .milliseconds(300))  // the watch is registered on its connection
            try await fixture.restart()
            let error = await ended.value
            #expect(error is MetadataError, "the watch ends with the store's error when its connection closes: \(String(describing: error))")
            try await Task.sleep(for: .milliseconds(300))  // the cancel's write fails on the closed connection
            _ = try await store.create("/w/b", value: [2])
            #expect(try await store.get("/w/b")?.value == [2])
        }
    }
}
