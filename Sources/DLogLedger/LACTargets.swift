import DLogWire

/// Which bookies a writer tells a new LAC explicitly (`WRITE_LAC`), so that a tailing reader's first poll finds it
/// without every bookie being told every LAC.
///
/// A reader that knows LAC `x` long-polls first the first bookie of the write set of entry `x + 2`
/// (`LedgerReader.waitForLastAddConfirmed`). Raising the LAC from `told` to `lac` can wake readers that know any
/// `x` from `told` to `lac − 1`, so the first bookies of the write sets of entries `told + 2 … lac + 1` are told.
/// Readers that know less than `told` find progress anywhere: with E = Qw every add goes to every bookie, carrying
/// the LAC of its time, and every earlier explicit LAC went to the bookies such readers poll. Each new LAC costs one
/// request where it cost E; a burst of E or more entries confirmed at once still goes to all.
///
/// Everyone is told when that reasoning does not hold: striped ensembles (E > Qw, an add reaches only its write
/// set), and ensembles with a position written around (the reader's first choice may be the missing bookie).
enum LACTargets {
    /// Ensemble positions to tell `lac`, of the `live` ones, when the bookies were last told `told`.
    static func positions(from told: EntryID, to lac: EntryID, quorums: Quorums, live: [Int]) -> Set<Int> {
        let everyone = Set(live)
        guard lac > told else { return [] }
        guard quorums.writeQuorum == quorums.ensembleSize, live.count == quorums.ensembleSize,
              lac.rawValue - told.rawValue < Int64(quorums.ensembleSize) else { return everyone }
        let entries = (told.rawValue + 2)...(lac.rawValue + 1)
        return Set(entries.map { quorums.writeSet(of: EntryID($0))[0] })
    }
}
