import DLogMetadata
import DLogWire

extension BookiePool {
    /// Deletes ledger `id`: its metadata goes at once; each bookie reclaims the entries in its next garbage
    /// collection (a bookie keeps only ledgers metadata still has). The password must match, so a wrong id
    /// typed by hand deletes nothing. A writer still adding to the ledger loses it: deleting is final.
    public func deleteLedger(_ id: LedgerID, password: String) async throws {
        // A writer's ensemble change may move the version between the read and the delete: read again.
        for _ in 0..<8 {
            guard let (metadata, version) = try await cluster.ledger(id) else { throw LedgerError.noSuchLedger(id) }
            guard metadata.passwordHash == LedgerPassword(password).check else { throw LedgerError.wrongPassword(id) }
            do {
                try await cluster.deleteLedger(id, ifVersion: version)
                return
            } catch MetadataError.versionConflict {
                continue
            } catch MetadataError.noSuchKey {
                throw LedgerError.noSuchLedger(id)
            }
        }
        throw LedgerError.conflict(id, "its metadata kept changing while it was being deleted (a writer changing its ensemble?); try again")
    }
}
