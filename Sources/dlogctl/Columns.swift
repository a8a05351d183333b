/// Rows of cells as lines of aligned columns, two spaces apart, without trailing blanks: the one way dlogctl
/// prints a table for people (the first row is usually the header).
func alignedColumns(_ rows: [[String]], indent: String = "") -> [String] {
    guard let first = rows.first else { return [] }
    let widths = first.indices.map { column in rows.map { $0[column].count }.max()! }
    return rows.map { row in
        var line = row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
        while line.last == " " { line.removeLast() }
        return indent + line
    }
}
