#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// Why a connection could not be made, in a few words: "connection refused" rather than NIO's nested
/// description of every address tried, for the messages people read (dlogctl, logs).
public enum ConnectionErrorText {
    public static func reason(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return reason(first.error)
        }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        if case ChannelError.connectTimeout(let timeout) = error {
            return "no connection within \(timeout.nanoseconds / 1_000_000) ms"
        }
        return "\(error)"
    }
}
