import Foundation

/// SIGTERM/SIGINT delivery, set up before anything is announced: a signal that arrives while the
/// daemon is still starting is remembered, never lost or fatal.
final class Termination {
    private let done = DispatchSemaphore(value: 0)
    private let sources: [DispatchSourceSignal]

    init() {
        let done = self.done
        sources = [SIGTERM, SIGINT].map { sig in
            signal(sig, SIG_IGN)  // the source, not the default action, handles it from here on
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { done.signal() }
            source.resume()
            return source
        }
    }

    func wait() { done.wait() }
}
