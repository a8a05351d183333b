/// Our config files: `key = value` lines, `#` comments, blank lines ignored. Every key is known and
/// checked; a mistake names the file, line, key, value and what is allowed.
public struct ConfigFile: Sendable {
    public var path: String
    public var values: [String: (value: String, line: Int)] = [:]

    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var message: String
        public var description: String { message }
    }

    public static func parse(_ text: String, path: String, knownKeys: Set<String>) throws(Problem) -> ConfigFile {
        var file = ConfigFile(path: path)
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = line.trimmingCharacters(in: " \t\r")
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw Problem(message: "\(path):\(i + 1): expected 'key = value', found '\(trimmed)'")
            }
            let key = String(trimmed[..<eq]).trimmingCharacters(in: " \t")
            let value = String(trimmed[trimmed.index(after: eq)...]).trimmingCharacters(in: " \t")
            guard knownKeys.contains(key) else {
                throw Problem(message: "\(path):\(i + 1): unknown config key '\(key)'; known keys: "
                                  + knownKeys.sorted().joined(separator: ", "))
            }
            if let earlier = file.values[key] {
                throw Problem(message: "\(path):\(i + 1): config key '\(key)' is already set on line \(earlier.line)")
            }
            file.values[key] = (value, i + 1)
        }
        return file
    }

    func location(_ key: String) -> String {
        values[key].map { "\(path):\($0.line)" } ?? path
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
