import CSystemd
import DLogMetadata
import Foundation
import Logging

/// Runs the metadata role (the embedded store behind the common protocol) until SIGTERM/SIGINT or a
/// database failure.
public enum MetadataRole {
    /// Starts everything and blocks. Returns the process exit code: 0 after a clean stop, 2 when it cannot
    /// start, 3 when the database failed while serving.
    public static func run(settings: MetadataSettings, logger: Logger) -> Int32 {
        let termination = Termination()
        do {
            let store = try EmbeddedStore(settings.storeConfiguration) { failure in
                logger.critical("metadata database failed; nothing more is acknowledged; exiting",
                                metadata: ["error": "\(failure)"])
                exit(3)
            }
            let server = try MetadataServer(store: store, host: settings.host, port: settings.port,
                                            threads: settings.ioThreads, logger: logger)
            let port = server.localAddress?.port ?? settings.port
            logger.info("metadata role serving", metadata: ["address": "\(settings.host):\(port)",
                                                            "data_dir": "\(settings.dataDirectory)"])
            // Scripts and tests wait for this line on standard output.
            FileHandle.standardOutput.write(Data("dlogd metadata listening on \(settings.host):\(port)\n".utf8))
            _ = sd_notify(0, "READY=1\nSTATUS=serving on \(settings.host):\(port)")
            termination.wait()
            _ = sd_notify(0, "STOPPING=1")
            logger.info("stopping: closing connections, then the database")
            server.close()
            store.shutdownAndWait()
            return 0
        } catch {
            logger.critical("metadata role cannot start: \(error)")
            FileHandle.standardError.write(Data("dlogd: \(error)\n".utf8))
            return 2
        }
    }
}
