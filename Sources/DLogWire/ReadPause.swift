import NIOCore

/// Why a server connection is not being read, and the switching of the channel's reading that goes with it:
/// reading stops with the first reason and starts again when the last one is gone. A client that sends
/// faster than it is answered is slowed by TCP itself instead of growing our queues.
/// Used on the channel's event loop only.
public struct ReadPause {
    /// Why a connection is not read; it is read again when no reason is left.
    public enum Reason: Hashable, Sendable {
        /// Too many requests unanswered (`RequestGate.limit`).
        case outstanding
        /// Answers pile up in the socket buffer: the client does not read them.
        case unwritable
        /// The bookie's write cache is over its checkpoint size; reading resumes once a checkpoint frees it.
        case writePressure
    }

    private var reasons: Set<Reason> = []

    public init() {}

    public func contains(_ reason: Reason) -> Bool { reasons.contains(reason) }

    public mutating func pause(_ reason: Reason, channel: Channel) {
        if reasons.isEmpty { channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
        reasons.insert(reason)
    }

    public mutating func resume(_ reason: Reason, channel: Channel) {
        guard reasons.remove(reason) != nil, reasons.isEmpty else { return }
        channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        channel.read()
    }

    /// Pauses while answers pile up unsent in the socket buffer (the client is not reading them).
    public mutating func followWritability(of channel: Channel) {
        if channel.isWritable { resume(.unwritable, channel: channel) } else { pause(.unwritable, channel: channel) }
    }
}
