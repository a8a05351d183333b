import DLogBookie
import DLogMetadata
import DLogProxy
import DLogWire
import Foundation
import Logging

/// The admin commands of each role, registered on its admin socket (`dlogctl admin ...`).
public enum AdminCommands {
    /// Opens the admin socket at `path`; a daemon that cannot (no permission on /run/dlog outside systemd, a
    /// path in use) runs on without one, saying why once.
    static func open(_ path: String?, logger: Logger) -> AdminSocket? {
        guard let path else { return nil }
        do {
            let socket = try AdminSocket(path: path)
            socket.start()
            logger.info("admin socket ready", metadata: ["path": "\(path)"])
            return socket
        } catch {
            logger.warning("running without an admin socket: \(error)")
            return nil
        }
    }

    /// The settings as text, for the `config` command; values of keys naming a password are redacted.
    static func describe(_ settings: Any) -> [String: String] {
        var out: [String: String] = [:]
        for child in Mirror(reflecting: settings).children {
            guard let label = child.label else { continue }
            if label.lowercased().contains("password") {
                out[label] = "(redacted)"
                continue
            }
            let inner = Mirror(reflecting: child.value)
            out[label] = inner.displayStyle == .optional ? inner.children.first.map { "\($0.value)" } ?? "-" : "\(child.value)"
        }
        return out
    }

    /// status, config and log-level, the same for every role.
    static func common(_ socket: AdminSocket, role: String, config: [String: String], status: @escaping @Sendable () -> [String: Any]) {
        let started = Date()
        let pid = ProcessInfo.processInfo.processIdentifier
        socket.register("status", help: "one-line health: role, uptime, and the role's own figures") { _ in
            var result = status()
            result["role"] = role
            result["pid"] = Int(pid)
            result["uptime_s"] = Int(Date().timeIntervalSince(started))
            result["log_level"] = DaemonLogLevel.shared.level.rawValue
            return result
        }
        let effective = config
        socket.register("config", help: "the effective settings (secrets redacted)") { _ in effective }
        socket.register("log-level", help: "log-level [trace|debug|info|notice|warning|error|critical]: show or set") { args in
            if let name = args.first {
                guard let level = Logger.Level(rawValue: name) else {
                    throw AdminSocket.Refusal("log level '\(name)' is not one of trace, debug, info, notice, warning, error, critical")
                }
                DaemonLogLevel.shared.level = level
            }
            return ["log_level": DaemonLogLevel.shared.level.rawValue]
        }
    }

    static func bookie(_ socket: AdminSocket, _ bookie: Bookie) {
        socket.register("info", help: "the bookie's state, ledgers, cache, entry logs, disks and journal counters") { _ in
            (try? JSONSerialization.jsonObject(with: Data(bookie.infoJSON().utf8))) ?? [:]
        }
        socket.register("readonly", help: "readonly on|off: stop or resume taking adds (the disk check still applies)") { args in
            switch args.first {
            case "on": bookie.setOperatorReadOnly(true)
            case "off": bookie.setOperatorReadOnly(false)
            default: throw AdminSocket.Refusal("readonly takes on or off")
            }
            return ["read_only": bookie.isReadOnly]
        }
        socket.register("checkpoint", help: "ask for a checkpoint now (the write cache goes to entry logs)") { _ in
            bookie.requestCheckpoint()
            return ["checkpoint": "requested"]
        }
    }

    /// `metrics`: the role's metrics as Prometheus text, the same as its metrics port serves.
    static func metrics(_ socket: AdminSocket, _ registry: RoleRegistry) {
        socket.register("metrics", help: "the metrics, as Prometheus text") { _ in registry.render() }
    }

    /// Starts the metrics listener when a port is configured; a port in use leaves the role running without it.
    static func metrics(port: Int?, host: String, tls: ServerTLS? = nil, logger: Logger,
                        render: @escaping @Sendable () -> String) -> MetricsServer? {
        guard let port else { return nil }
        do {
            let server = try MetricsServer(host: host, port: port, tls: tls, render: render)
            logger.info("metrics serving", metadata: ["address": "\(host):\(server.port)", "path": "/metrics",
                                                      "tls": "\(tls?.mode.rawValue ?? "off")"])
            return server
        } catch {
            logger.warning("running without metrics: cannot listen on \(host):\(port): \(error)")
            return nil
        }
    }

    static func proxy(_ socket: AdminSocket, _ service: ProxyService) {
        socket.register("streams", help: "the streams this proxy owns") { _ in ["streams": service.ownedStreams] }
        socket.register("release", help: "release STREAM: flush it and let another proxy take it") { args in
            guard let stream = args.first else { throw AdminSocket.Refusal("release takes a stream name") }
            try runBlocking { await service.release(stream) }
            return ["released": stream]
        }
        socket.register("drain", help: "take no new streams, release every owned one, leave the registry") { _ in
            try runBlocking { await service.drain() }
            return ["drained": true]
        }
    }

    static func metadata(_ socket: AdminSocket, _ store: EmbeddedStore) {
        socket.register("stats", help: "the store's revision, leases, watchers and commits") { _ in
            let stats = try runBlocking { await store.stats() }
            return (try? JSONSerialization.jsonObject(with: Data(stats.json.utf8))) ?? [:]
        }
        socket.register("keys", help: "keys PREFIX: the keys under a prefix (at most 1,000)") { args in
            let prefix = args.first ?? "/"
            let page = try runBlocking { try await store.range(.prefix(prefix), limit: 1000) }
            return ["keys": page.items.map(\.key), "more": page.more]
        }
    }
}
