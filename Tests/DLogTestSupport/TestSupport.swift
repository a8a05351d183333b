import Foundation
@_exported import DLogSimulation

/// A fresh directory under /tmp, removed when the value is released.
public final class TempDir: Sendable {
    public let path: String
    public init(_ name: String = "dlog-test") {
        var template = Array("/tmp/\(name)-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    public func sub(_ name: String) -> String { path + "/" + name }
}


public struct TimedOut: Error, CustomStringConvertible {
    public let what: String
    public let seconds: Double
    public init(what: String, seconds: Double) {
        self.what = what
        self.seconds = seconds
    }
    public var description: String { "\(what) did not finish within \(seconds) s" }
}

/// Runs `body`, failing with `TimedOut` if it takes longer than `seconds`: no test waits without a bound.
public func withTimeout<T: Sendable>(_ seconds: Double, _ what: String = "operation",
                                     _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            throw TimedOut(what: what, seconds: seconds)
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Runs `body` again (every 100 ms, for at most `seconds`) while it throws an error `isTransient` accepts:
/// for calls made while a server a test restarted is coming back.
public func retrying<T: Sendable>(seconds: Double = 20, while isTransient: (any Error) -> Bool,
                                  _ body: () async throws -> T) async throws -> T {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while true {
        do {
            return try await body()
        } catch where isTransient(error) && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
