import DLogMetadata
import Foundation

/// What a principal may do with the logs whose names start with a prefix, through a proxy whose port requires
/// TLS (docs/security.md, "Per-log rights"): `read` (find a stream's owner), `write` (write, heartbeat, release),
/// `admin` (create, truncate, delete).
public enum LogRight: String, Sendable, CaseIterable, Codable, Comparable {
    case read, write, admin

    public static func < (a: LogRight, b: LogRight) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
}

/// One grant: `rights` on every log whose name starts with `prefix` ("" is every log).
public struct LogGrant: Sendable, Hashable, Codable {
    public var prefix: String
    public var rights: Set<LogRight>

    public init(prefix: String, rights: Set<LogRight>) {
        self.prefix = prefix
        self.rights = rights
    }
}

/// The per-log grants of every principal, in metadata: one record per principal, `/acl/NAME` (the name
/// percent-encoded), holding its grants as JSON. Changed by compare-and-set, so concurrent `dlogctl acl` calls
/// never lose one another's grants.
public enum LogACL {
    public static let keyPrefix = "/acl/"
    static let keyCharacters = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")

    public static func key(_ principal: String) -> String {
        keyPrefix + (principal.addingPercentEncoding(withAllowedCharacters: keyCharacters) ?? principal)
    }

    /// The principal a key belongs to; nil for a key that is not an ACL record's.
    public static func principal(ofKey key: String) -> String? {
        guard key.hasPrefix(keyPrefix) else { return nil }
        return String(key.dropFirst(keyPrefix.count)).removingPercentEncoding
    }

    public static func decode(_ value: [UInt8]) -> [LogGrant] {
        (try? JSONDecoder().decode([LogGrant].self, from: Data(value))) ?? []
    }

    static func encode(_ grants: [LogGrant]) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Array((try? encoder.encode(grants.sorted { $0.prefix < $1.prefix })) ?? Data("[]".utf8))
    }

    /// Adds `rights` on `prefix` to `principal`'s grants.
    public static func grant(_ rights: Set<LogRight>, on prefix: String, to principal: String,
                             in store: any MetadataStore) async throws {
        try await change(principal, in: store) { grants in
            if let i = grants.firstIndex(where: { $0.prefix == prefix }) {
                grants[i].rights.formUnion(rights)
            } else {
                grants.append(LogGrant(prefix: prefix, rights: rights))
            }
        }
    }

    /// Takes `rights` on `prefix` from `principal` (all of them when nil); a grant left with none goes.
    public static func revoke(_ rights: Set<LogRight>?, on prefix: String, from principal: String,
                              in store: any MetadataStore) async throws {
        try await change(principal, in: store) { grants in
            guard let i = grants.firstIndex(where: { $0.prefix == prefix }) else { return }
            grants[i].rights.subtract(rights ?? Set(LogRight.allCases))
            if grants[i].rights.isEmpty { grants.remove(at: i) }
        }
    }

    /// Every principal's grants, by principal name.
    public static func list(in store: any MetadataStore) async throws -> [String: [LogGrant]] {
        var all: [String: [LogGrant]] = [:]
        for item in try await store.list(prefix: keyPrefix).items {
            if let principal = principal(ofKey: item.key) { all[principal] = decode(item.value) }
        }
        return all
    }

    private static func change(_ principal: String, in store: any MetadataStore,
                               _ edit: (inout [LogGrant]) -> Void) async throws {
        let key = key(principal)
        for _ in 0..<16 {
            let current = try await store.get(key)
            var grants = current.map { decode($0.value) } ?? []
            edit(&grants)
            do {
                switch (current, grants.isEmpty) {
                case (nil, true): return
                case (nil, false): _ = try await store.create(key, value: encode(grants))
                case (let record?, true): try await store.delete(key, ifVersion: record.version)
                case (let record?, false): _ = try await store.put(key, value: encode(grants), ifVersion: record.version)
                }
                return
            } catch MetadataError.versionConflict, MetadataError.keyExists, MetadataError.noSuchKey {
                continue  // another change came first: apply this one to what it left
            }
        }
        throw MetadataError.unavailable("the grants of \(principal) kept changing; try again")
    }

    /// The rights `grants` give on log `name`: the union of every grant whose prefix starts the name.
    public static func rights(_ grants: [LogGrant], on name: String) -> Set<LogRight> {
        grants.reduce(into: Set<LogRight>()) { rights, grant in
            if name.hasPrefix(grant.prefix) { rights.formUnion(grant.rights) }
        }
    }
}
