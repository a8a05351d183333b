/// Picks the journal engine from the configured choice. `auto` prefers io_uring and falls back to the
/// blocking engine, returning the reason so the caller can log it once.
public struct EngineSelector: Sendable {
    /// Seam for tests: reports why io_uring is unusable, or nil when it works.
    public var probeURing: @Sendable () -> SystemError?

    public init(probeURing: @escaping @Sendable () -> SystemError? = { URingEngine.probe() }) {
        self.probeURing = probeURing
    }

    public struct Decision: Sendable, Equatable {
        public var engine: EngineChoice
        /// Why an engine earlier in the order was refused (nil when the first choice was taken).
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
        case .auto:
            if let error = probeURing() {
                return Decision(engine: .blocking,
                                fallbackReason: "io_uring unavailable (\(error)); likely a seccomp filter, "
                                    + "kernel.io_uring_disabled, or an old kernel")
            }
            return Decision(engine: .ioUring, fallbackReason: nil)
        }
    }

    /// Builds the engine for a decision. Called on the thread that will own it.
    public static func make(_ engine: EngineChoice, syncMode: SyncMode,
                            maxInFlight: Int = 1) throws(SystemError) -> any WriteSyncEngine {
        switch engine {
        case .ioUring: return try URingEngine(syncMode: syncMode, maxInFlight: maxInFlight)
        case .blocking, .auto: return BlockingEngine(syncMode: syncMode)
        }
    }
}
