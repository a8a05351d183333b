import Foundation

/// Prometheus text read back, as a scraper reads it: families by name with their type, and every sample.
/// `problems` lists what a scraper would reject or what breaks the exposition's rules (a family declared twice,
/// a histogram without `_sum`, `_count` or a `+Inf` bucket, buckets that fall, a sample outside any family).
public struct Exposition: Sendable {
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public private(set) var types: [String: String] = [:]
    public private(set) var samples: [Sample] = []
    public private(set) var problems: [String] = []

    public init(_ text: String) {
        for line in text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) {
            if line.hasPrefix("# TYPE ") {
                let parts = line.dropFirst(7).split(separator: " ")
                guard parts.count == 2 else { problems.append("bad TYPE line: \(line)"); continue }
                let name = String(parts[0])
                if types[name] != nil { problems.append("family \(name) declared twice") }
                types[name] = String(parts[1])
            } else if line.hasPrefix("#") {
                continue
            } else if let sample = Self.sample(line) {
                guard family(of: sample.name) != nil else { problems.append("sample outside any family: \(line)"); continue }
                samples.append(sample)
            } else {
                problems.append("unreadable line: \(line)")
            }
        }
        for (name, type) in types where type == "histogram" { checkHistogram(name) }
        for (name, type) in types where type == "counter" && !name.hasSuffix("_total") {
            problems.append("counter \(name) does not end in _total")
        }
    }

    /// The family a sample belongs to: its own name, or a histogram's for `_bucket`, `_sum` and `_count`.
    public func family(of name: String) -> String? {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] == "histogram" { return base }
        }
        return nil
    }

    /// The samples named `name` whose labels include `labels`.
    public func values(_ name: String, _ labels: [String: String] = [:]) -> [Double] {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }.map(\.value)
    }

    /// A histogram series' observation count (nil when it has none).
    public func count(_ histogram: String, _ labels: [String: String] = [:]) -> Double? {
        values(histogram + "_count", labels).first
    }

    private mutating func checkHistogram(_ name: String) {
        let counts = samples.filter { $0.name == name + "_count" }
        if counts.isEmpty { problems.append("histogram \(name) has no _count") }
        for count in counts {
            let series = count.labels
            guard values(name + "_sum", series).count == 1 else {
                problems.append("histogram \(name)\(series) has no _sum")
                continue
            }
            let buckets = samples.filter { $0.name == name + "_bucket" && $0.labels.filter { $0.key != "le" } == series }
            guard let infinite = buckets.first(where: { $0.labels["le"] == "+Inf" }) else {
                problems.append("histogram \(name)\(series) has no +Inf bucket")
                continue
            }
            if infinite.value != count.value { problems.append("histogram \(name)\(series): +Inf bucket \(infinite.value) is not _count \(count.value)") }
            let ordered = buckets.compactMap { b in Double(b.labels["le"] == "+Inf" ? "inf" : b.labels["le"] ?? "").map { ($0, b.value) } }
                .sorted { $0.0 < $1.0 }
            if zip(ordered, ordered.dropFirst()).contains(where: { $0.1 > $1.1 }) {
                problems.append("histogram \(name)\(series): buckets fall")
            }
        }
    }

    private static func sample(_ line: String) -> Sample? {
        var rest = Substring(line)
        let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }
        guard !name.isEmpty else { return nil }
        rest = rest.dropFirst(name.count)
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                let key = rest.prefix { $0 != "=" }
                rest = rest.dropFirst(key.count)
                guard rest.hasPrefix("=\"") else { return nil }
                rest = rest.dropFirst(2)
                var value = ""
                while let c = rest.first, c != "\"" {
                    if c == "\\", let next = rest.dropFirst().first {
                        value.append(next == "n" ? "\n" : next)
                        rest = rest.dropFirst(2)
                    } else {
                        value.append(c)
                        rest = rest.dropFirst()
                    }
                }
                guard rest.first == "\"" else { return nil }
                rest = rest.dropFirst()
                labels[String(key)] = value
                if rest.first == "," { rest = rest.dropFirst() }
                if rest.isEmpty { return nil }
            }
            rest = rest.dropFirst()
        }
        let fields = rest.split(separator: " ")
        guard let first = fields.first else { return nil }
        let value: Double? = switch first {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: Double(first)
        }
        return value.map { Sample(name: String(name), labels: labels, value: $0) }
    }
}
