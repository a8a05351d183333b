import Foundation

/// docs/metrics.md's table of every series, read back: family name → type, from rows like
/// "| `dlog_x_total` | counter | …".
public enum MetricsDoc {
    public static func families() throws -> [String: String] {
        let text = try DocExamples("metrics.md").text
        var families: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| `dlog_") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 2 else { continue }
            families[cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))] = cells[1]
        }
        return families
    }
}
