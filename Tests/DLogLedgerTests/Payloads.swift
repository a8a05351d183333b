/// Deterministic payloads, so a reader can check bytes without keeping them.
func payload(_ entry: Int, size: Int = 100) -> [UInt8] {
    (0..<size + entry % 13).map { UInt8(truncatingIfNeeded: entry &* 31 &+ $0) }
}

