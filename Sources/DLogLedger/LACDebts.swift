import NIOCore
import Synchronization

/// The writers of a pool that told a new LAC only to the bookies a reader polls first (`LACTargets`) and owe it
/// to the rest. One timer for the whole pool settles them all, `delay` after the first debt: a writer that keeps
/// writing has by then carried the LAC to every bookie on its next add and sends nothing more, while an idle
/// one tells the rest. So under load each new LAC costs one request, and no writer arms a timer of its own.
final class LACDebts: Sendable {
    private struct State {
        var owed: [ObjectIdentifier: LedgerWriter] = [:]
        var armed = false
    }

    private let state = Mutex(State())
    private let group: any EventLoopGroup
    let delay: TimeAmount

    init(group: any EventLoopGroup, delay: TimeAmount) {
        self.group = group
        self.delay = delay
    }

    func owe(_ writer: LedgerWriter) {
        let arm = state.withLock { s -> Bool in
            s.owed[ObjectIdentifier(writer)] = writer
            defer { s.armed = true }
            return !s.armed
        }
        // On a group already shut down the task never runs: nothing could be sent then anyway.
        if arm { group.next().scheduleTask(in: delay) { self.settle() } }
    }

    private func settle() {
        let writers = state.withLock { s -> [LedgerWriter] in
            s.armed = false
            defer { s.owed.removeAll(keepingCapacity: true) }
            return Array(s.owed.values)
        }
        for writer in writers { writer.tellEveryone() }
    }
}
