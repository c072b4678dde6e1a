public import NIOCore
import WeftWire

/// Every limit and timer of the RPC layer, with the defaults a node uses
/// unless its configuration says otherwise (docs/wire-protocol.md §4.3).
///
/// The same values serve both ends: a server applies the stream and metadata
/// limits to what clients open, a client applies the window to what it reads.
public struct RPCConfiguration: Sendable {
    /// Largest frame accepted or sent, prefix excluded: 4 MiB. A longer
    /// frame is refused from its length prefix, before anything is buffered.
    public var maximumFrameBytes = FrameLimits.defaultMaximumFrameBytes
    /// Streams a peer may have open on one connection at once: 100. One more
    /// is answered RESOURCE_EXHAUSTED (`RPC_TOO_MANY_STREAMS`).
    public var maximumConcurrentStreams = 100
    /// Connections a server holds open at once: 4,096. One more is closed as soon as it is
    /// accepted, before its TLS handshake, with a warning in the log: each connection costs
    /// buffers, tasks and a TLS session, so the count is a limit like any other from the network.
    public var maximumConnections = 4_096
    /// Connections a server holds open at once from one IP address: 512. One more from that
    /// address is closed as it is accepted, with a warning: without it one host could take every
    /// connection the server allows and shut out the rest. Raise it when many clients share an
    /// address (a proxy or NAT in front of the server).
    public var maximumConnectionsPerAddress = 512
    /// Bytes of keys and values in one call's metadata: 16 KiB. More is
    /// answered RESOURCE_EXHAUSTED (`RPC_METADATA_TOO_LARGE`).
    public var maximumMetadataBytes = 16 * 1024
    /// Message bytes buffered per stream before the sender must wait for this
    /// side to read: 1 MiB (the stream's receive window; at least 64 KiB, the
    /// window every stream starts with).
    public var streamWindowBytes = 1 << 20
    /// How long a TLS handshake may take: 10 s.
    public var handshakeTimeout: TimeAmount = .seconds(10)
    /// A server closes a connection (with GOAWAY) that has had no open stream
    /// for this long: 5 minutes. nil: never.
    public var idleTimeout: TimeAmount? = .minutes(5)
    /// After this long without receiving anything, send a PING: 30 s. nil: no keepalive.
    public var keepaliveInterval: TimeAmount? = .seconds(30)
    /// Close the connection if nothing arrives this long after a PING: 10 s.
    public var keepaliveTimeout: TimeAmount = .seconds(10)

    public init() {}

    /// Largest message payload a frame of `maximumFrameBytes` carries: the
    /// frame's own fields (stream id, kind) take at most 32 bytes.
    public var maximumMessageBytes: Int { maximumFrameBytes - 32 }

    /// The error for a message too large to send.
    func messageTooLarge(_ count: Int) -> RPCError {
        RPCError(
            .resourceExhausted, "a message of \(count) bytes is over the limit of \(maximumMessageBytes) (frame limit \(maximumFrameBytes)); split it",
            errorID: "RPC_MESSAGE_TOO_LARGE")
    }

    /// The defaults above.
    public static let `default` = RPCConfiguration()
}

/// Flow control constants of the wire protocol (docs/wire-protocol.md §4.2).
public enum FlowControl {
    /// The send window every stream starts with, in each direction: 64 KiB.
    /// A receiver that buffers more grants the difference right after open.
    public static let initialWindowBytes = 65_536
    /// Largest window a sender may be granted; more is a protocol error.
    public static let maximumWindowBytes = Int(Int32.max)
}
