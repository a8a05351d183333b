/// Typed readers for config values: each returns nil when the key is absent and throws a problem naming the
/// file, line, key, value and what is allowed when the value is wrong.
extension ConfigFile {
    public func string(_ key: String) -> String? { values[key]?.value }

    func problem(_ key: String, allowed: String) -> Problem {
        Problem(message: "\(location(key)): config key '\(key)' has value '\(string(key) ?? "")'; allowed: \(allowed)")
    }

    public func int(_ key: String, _ range: ClosedRange<Int>) throws(Problem) -> Int? {
        guard let s = string(key) else { return nil }
        guard let n = Self.parseSize(s), range.contains(n) else {
            throw problem(key, allowed: "a whole number from \(range.lowerBound) to \(range.upperBound) (K, M, G suffixes allowed)")
        }
        return n
    }

    public func fraction(_ key: String) throws(Problem) -> Double? {
        guard let s = string(key) else { return nil }
        guard let d = Double(s), d > 0, d <= 1 else { throw problem(key, allowed: "a fraction between 0 (exclusive) and 1") }
        return d
    }

    public func bool(_ key: String) throws(Problem) -> Bool? {
        guard let s = string(key) else { return nil }
        guard s == "true" || s == "false" else { throw problem(key, allowed: "true, false") }
        return s == "true"
    }

    public func nonEmpty(_ key: String, allowed: String) throws(Problem) -> String? {
        guard let s = string(key) else { return nil }
        guard !s.isEmpty else { throw problem(key, allowed: allowed) }
        return s
    }

    /// A comma-separated list of distinct, non-empty items.
    public func list(_ key: String, allowed: String) throws(Problem) -> [String]? {
        guard let s = string(key) else { return nil }
        let list = s.split(separator: ",").map { $0.trimmingCharacters(in: " \t") }.filter { !$0.isEmpty }
        guard !list.isEmpty, Set(list).count == list.count else { throw problem(key, allowed: allowed) }
        return list
    }

    /// "64M" → 67108864. Plain numbers pass through.
    static func parseSize(_ s: String) -> Int? {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let last = s.last, let mult = units[Character(last.uppercased())] {
            return Int(s.dropLast()).flatMap { $0.multipliedReportingOverflow(by: mult).overflow ? nil : $0 * mult }
        }
        return Int(s)
    }
}
