extension Array where Element == UInt8 {
    /// `withUnsafeBytes` for a body that throws a typed error, which the standard library's (`rethrows`) would
    /// widen to `any Error`.
    func withBytes<E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> Void) throws(E) {
        var failure: E?
        withUnsafeBytes { raw in
            do throws(E) { try body(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }
}
