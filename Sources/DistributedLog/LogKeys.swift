/// Where a namespace keeps its logs in metadata. A log name may nest with `/`, so each log's own keys sit behind
/// a `:` (never part of a name): the prefix of one log never covers another's.
///
///     /logs/NAME                       the log's record (`LogInfo`)
///     /log/NAME:seg/NNNNNNNNNNNNNNNNNNN  segment N (`LogSegment`), 19 digits so keys sort by number
///     /log/NAME:lock                   the owner of the log (bound to the owner's lease)
///     /log/NAME:sub/ID                 subscription ID's committed position (a stored DLSN)
///     /log/NAME:sublock/ID             the exclusive reader of subscription ID (bound to its lease)
public enum LogKeys {
    public static let logs = "/logs/"

    public static func info(_ name: String) -> String { logs + name }
    public static func segments(_ name: String) -> String { "/log/" + name + ":seg/" }
    public static func segment(_ name: String, _ sequence: Int64) -> String {
        let digits = String(sequence)
        return segments(name) + String(repeating: "0", count: max(0, 19 - digits.count)) + digits
    }
    public static func lock(_ name: String) -> String { "/log/" + name + ":lock" }
    public static func subscriptions(_ name: String) -> String { "/log/" + name + ":sub/" }
    public static func subscription(_ name: String, _ id: String) -> String { subscriptions(name) + id }
    /// The exclusive reader of a subscription (bound to that reader's lease).
    public static func subscriberLock(_ name: String, _ id: String) -> String { "/log/" + name + ":sublock/" + id }
    /// Every key of the log but its record.
    public static func all(_ name: String) -> String { "/log/" + name + ":" }
}

/// Log and subscription names: 1…200 characters of letters, digits, `.`, `_`, `-` and `/` (for nesting); no
/// empty, `.` or `..` component, no leading or trailing `/`.
public enum LogName {
    public static let charactersMax = 200

    /// Why `name` is not a valid log name, or nil.
    public static func problem(_ name: String) -> String? {
        guard !name.isEmpty else { return "it is empty" }
        guard name.count <= charactersMax else { return "it has \(name.count) characters; at most \(charactersMax)" }
        if let bad = name.unicodeScalars.first(where: { !Self.allowed($0) }) {
            return "'\(bad.escaped(asASCII: true))' is not allowed (use letters, digits, '.', '_', '-' and '/')"
        }
        for component in name.split(separator: "/", omittingEmptySubsequences: false) {
            if component.isEmpty { return "it has an empty component (a leading, trailing or doubled '/')" }
            if component == "." || component == ".." { return "'\(component)' is not allowed as a component" }
        }
        return nil
    }

    /// Why `id` is not a valid subscription id (the log name rules without `/`), or nil.
    public static func subscriptionProblem(_ id: String) -> String? {
        if id.contains("/") { return "'/' is not allowed in a subscription id" }
        return problem(id)
    }

    private static func allowed(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "a"..."z", "A"..."Z", "0"..."9", ".", "_", "-", "/": return true
        default: return false
        }
    }
}
