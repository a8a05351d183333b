#if canImport(Glibc)
import Glibc
#endif

/// Picks the journal engine from the configured choice. `auto` tries io_uring, then libaio (Linux native AIO),
/// then the blocking engine, and says why each earlier one was refused, so the caller can log it once.
public struct EngineSelector: Sendable {
    /// Seams for tests: each reports why its engine is unusable here, or nil when it works.
    public var probeURing: @Sendable () -> SystemError?
    public var probeAIO: @Sendable () -> SystemError?

    public init(probeURing: @escaping @Sendable () -> SystemError? = { URingEngine.probe() },
                probeAIO: @escaping @Sendable () -> SystemError? = { AIOEngine.probe() }) {
        self.probeURing = probeURing
        self.probeAIO = probeAIO
    }

    public struct Decision: Sendable, Equatable {
        public var engine: EngineChoice
        /// Why engines earlier in the order were refused (nil when the first choice was taken).
        public var fallbackReason: String?
        public init(engine: EngineChoice, fallbackReason: String?) {
            self.engine = engine
            self.fallbackReason = fallbackReason
        }
    }

    public func decide(_ choice: EngineChoice) throws(SystemError) -> Decision {
        switch choice {
        case .blocking:
            return Decision(engine: .blocking, fallbackReason: nil)
        case .ioUring:
            if let error = probeURing() { throw error }
            return Decision(engine: .ioUring, fallbackReason: nil)
        case .libaio:
            if let error = probeAIO() { throw error }
            return Decision(engine: .libaio, fallbackReason: nil)
        case .auto:
            guard let uringError = probeURing() else { return Decision(engine: .ioUring, fallbackReason: nil) }
            let uringWhy = "io_uring refused (\(uringError)): \(Self.likelyCause(uringError, engine: .ioUring))"
            guard let aioError = probeAIO() else { return Decision(engine: .libaio, fallbackReason: uringWhy) }
            return Decision(engine: .blocking, fallbackReason: uringWhy + "; libaio refused (\(aioError)): "
                                + Self.likelyCause(aioError, engine: .libaio))
        }
    }

    /// What an errno from setting up an engine most likely means, for the one log line an operator reads.
    static func likelyCause(_ error: SystemError, engine: EngineChoice) -> String {
        switch (engine, error.errno) {
        case (.ioUring, EPERM) where error.call.contains("io_uring_disabled"):
            return "the sysctl kernel.io_uring_disabled forbids it"
        case (.ioUring, EPERM), (.libaio, EPERM):
            return "likely a seccomp filter (container runtime or systemd SystemCallFilter=)"
        case (_, ENOSYS):
            return "the kernel lacks it, or a seccomp filter answers ENOSYS"
        case (.libaio, EAGAIN):
            return "fs.aio-max-nr is exhausted; raise it or stop other AIO users"
        case (_, ENOMEM):
            return "out of memory or a locked-memory limit (ulimit -l)"
        default:
            return "see the errno"
        }
    }

    /// Builds the engine for a decision. Called on the thread that will own it.
    public static func make(_ engine: EngineChoice, syncMode: SyncMode,
                            maxInFlight: Int = 1) throws(SystemError) -> any WriteSyncEngine {
        switch engine {
        case .ioUring: return try URingEngine(syncMode: syncMode, maxInFlight: maxInFlight)
        case .libaio: return try AIOEngine(syncMode: syncMode, maxInFlight: maxInFlight)
        case .blocking, .auto: return BlockingEngine(syncMode: syncMode)
        }
    }
}
