import DLogWire
import Logging

/// The limits every role's port holds its clients to (docs/security.md, "Limits"), from the config keys every
/// role shares.
public struct ConnectionSettings: Sendable, Hashable {
    public var limits = ConnectionLimits()

    public init() {}

    public static let keys: Set<String> = ["connections_max", "idle_timeout_s", "partial_frame_timeout_s",
                                           "unfinished_frame_bytes_max"]

    public mutating func apply(_ file: ConfigFile) throws(ConfigFile.Problem) {
        if let n = try file.int("connections_max", 1...1_000_000) { limits.connectionsMax = n }
        if let n = try file.int("idle_timeout_s", 1...86_400) { limits.idleTimeout = .seconds(n) }
        if let n = try file.int("partial_frame_timeout_s", 1...3_600) { limits.partialFrameTimeout = .seconds(n) }
        if let n = try file.int("unfinished_frame_bytes_max", (1 << 20)...(1 << 40)) { limits.unfinishedFrameBytesMax = n }
    }

    /// The port's shared budget; what it refuses or closes is logged as a warning.
    public func budget(logger: Logger) -> ConnectionBudget {
        ConnectionBudget(limits: limits) { line in logger.warning("\(line)") }
    }
}
