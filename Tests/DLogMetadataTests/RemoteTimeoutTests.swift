import DLogMetadata
import Foundation
import Testing

@Suite struct RemoteTimeoutTests {
    /// Proves a metadata role that takes the connection and never answers fails a call with `unavailable` naming
    /// it and the timeout, after about the timeout (the handler sweeps deadlines a few times per timeout), not a
    /// hang; and that every other call in flight on that connection ends with it, so a thousand calls waiting
    /// on a dead host all return.
    @Test func aSilentMetadataRoleFailsEveryCallAfterTheTimeout() async throws {
        let silent = try SilentListener()
        defer { silent.close() }
        let store = RemoteStore(endpoints: [.init(host: "127.0.0.1", port: silent.port)], requestTimeout: .milliseconds(300))
        let clock = ContinuousClock()
        let began = clock.now
        let error = await #expect(throws: MetadataError.self) {
            try await within(.seconds(5)) { try await store.get("/k") }
        }
        #expect(error?.description.contains("no answer from 127.0.0.1:\(silent.port) within 300 ms") == true,
                "\(String(describing: error))")
        let alone = clock.now - began
        #expect(alone >= .milliseconds(300) && alone < .seconds(3), "\(alone)")

        let burst = clock.now
        let failures = try await within(.seconds(10)) {
            await withTaskGroup(of: Bool.self) { group in
                for i in 0 ..< 1_000 {
                    group.addTask {
                        do {
                            _ = try await store.get("/k/\(i)")
                            return false
                        } catch {
                            return error is MetadataError
                        }
                    }
                }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }
        #expect(failures == 1_000)
        #expect(clock.now - burst < .seconds(3), "\(clock.now - burst)")
        await store.shutdown()
    }
}
