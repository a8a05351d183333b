import DLogDaemon
import DLogMetadata
import DLogProxy
import DLogWire
import Foundation
import NIOCore

/// What `dlogctl top` reads of the cluster at one moment: the registrations in metadata (bookies with their
/// state and disks, proxies), where each part serves its metrics, one scrape of every metrics port, and how
/// long the metadata store takes to answer a read. Two samples make a view (`TopView`): rates and
/// percentiles come from what the counters and histograms gained between them.
struct TopSample: Sendable {
    struct Proxy: Sendable {
        var id: String
        var address: String
    }

    var at: ContinuousClock.Instant
    var wallClock: Date
    /// The metadata store's time to answer a read (the best of three), or why it did not.
    var roundTrip: Result<Duration, TopFailure>
    var bookies: [BookieRegistration] = []
    var proxies: [Proxy] = []
    var endpoints: [MetricsEndpoint] = []
    /// Each metrics port once (a standalone's parts share one), by address.
    var scrapes: [String: Result<Exposition, TopFailure>] = [:]

    /// Reads everything; only the metadata store being unreachable throws (then nothing can be listed).
    static func take(cluster: Cluster, metadataHost: String, tls: TLSIdentity?, group: EventLoopGroup) async throws -> TopSample {
        let roundTrip = await measureRoundTrip(cluster)
        var sample = TopSample(at: .now, wallClock: Date(), roundTrip: roundTrip)
        if case .failure(let failure) = roundTrip { throw failure }
        sample.bookies = try await cluster.bookies()
        sample.proxies = try await cluster.store.list(prefix: ProxyOwner.registrations).items.map {
            Proxy(id: String($0.key.dropFirst(ProxyOwner.registrations.count)), address: String(decoding: $0.value, as: UTF8.self))
        }
        sample.endpoints = try await cluster.metricsEndpoints()
        // A wildcard listen address is reachable at the host the part is known by elsewhere.
        for index in sample.endpoints.indices {
            let endpoint = sample.endpoints[index]
            let known: String? = switch endpoint.role {
            case "bookie": sample.bookies.first { $0.id.rawValue == endpoint.id }?.address
            case "proxy": sample.proxies.first { $0.id == endpoint.id }?.address
            default: metadataHost + ":0"
            }
            sample.endpoints[index].address = reachable(endpoint.address, knownAs: known)
        }
        let addresses = Set(sample.endpoints.map(\.address))
        sample.scrapes = await withTaskGroup(of: (String, Result<Exposition, TopFailure>).self) { group_ in
            for address in addresses {
                group_.addTask {
                    do {
                        return (address, .success(Exposition(try await MetricsScrape.text(at: address, tls: tls, group: group))))
                    } catch {
                        return (address, .failure(TopFailure(description: "\(error)")))
                    }
                }
            }
            var out: [String: Result<Exposition, TopFailure>] = [:]
            for await (address, result) in group_ { out[address] = result }
            return out
        }
        // The samples' moment is when the scrapes are in: rates divide by the time between two of them.
        sample.at = .now
        return sample
    }

    private static func measureRoundTrip(_ cluster: Cluster) async -> Result<Duration, TopFailure> {
        var best: Duration?
        for _ in 0..<3 {
            let start = ContinuousClock.now
            do {
                _ = try await cluster.store.get(ClusterKeys.instance)
            } catch {
                return .failure(TopFailure(description: "the metadata store does not answer: \(error)"))
            }
            let took = ContinuousClock.now - start
            best = min(best ?? took, took)
        }
        return .success(best ?? .zero)
    }

    /// `address` with a wildcard host (0.0.0.0, ::) replaced by the host of `known`.
    static func reachable(_ address: String, knownAs known: String?) -> String {
        guard let colon = address.lastIndex(of: ":"), let known, let knownColon = known.lastIndex(of: ":") else { return address }
        let host = address[..<colon]
        guard ["0.0.0.0", "[::]", "::", ""].contains(host) else { return address }
        return String(known[..<knownColon] + address[colon...])
    }
}

struct TopFailure: Error, Sendable, CustomStringConvertible {
    var description: String
}
