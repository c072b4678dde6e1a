import NIOCore
import NIOPosix
import Synchronization

/// A TCP relay on loopback between clients and one server, for tests that need a network
/// failure at a chosen moment: a request that reaches the server while its answer never comes
/// back, then a connection lost. Bytes pass as they are, so TLS goes through untouched, and a
/// client connects to `port` as it would to the server.
///
/// It relays both ways until `swallowReplies()`; from then on what the server sends is dropped
/// (the server has done its part; the client waits). `cutConnections()` closes every relayed
/// connection, as a network failure would, and relays new connections normally again.
public final class TCPRelay: Sendable {
    /// Where clients connect.
    public let port: Int
    private let listener: any Channel
    private let shared: Shared

    /// What the listener's connections share with the relay.
    private final class Shared: Sendable {
        struct State {
            var swallowing = false
            var swallowedBytes = 0
            var stopped = false
            /// Open relayed connections, both sides, by channel identity.
            var connections: [ObjectIdentifier: any Channel] = [:]
            /// Connections relayed since the start, open or closed.
            var accepted = 0
        }
        let state = Mutex(State())

        /// Whether bytes from the server are dropped now; counts them when they are.
        func swallow(_ bytes: Int) -> Bool {
            state.withLock { state in
                if state.swallowing { state.swallowedBytes += bytes }
                return state.swallowing
            }
        }
    }

    private init(port: Int, listener: any Channel, shared: Shared) {
        self.port = port
        self.listener = listener
        self.shared = shared
    }

    /// Listens on 127.0.0.1 (a free port) and relays each connection to `host`:`port`.
    public static func start(to host: String = "127.0.0.1", port upstreamPort: Int) async throws -> TCPRelay {
        let shared = Shared()
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { client in
                ClientBootstrap(group: client.eventLoop)
                    .connect(host: host, port: upstreamPort)
                    .flatMapThrowing { server in
                        // Both channels are on the client's event loop.
                        try client.pipeline.syncOperations.addHandler(Forward(to: server, swallow: nil))
                        try server.pipeline.syncOperations.addHandler(Forward(to: client, swallow: shared.swallow))
                        let stopped = shared.state.withLock { state in
                            if !state.stopped {
                                for channel in [client, server] { state.connections[ObjectIdentifier(channel)] = channel }
                                state.accepted += 1
                            }
                            return state.stopped
                        }
                        // Set up while the relay stopped: closed like the others.
                        if stopped {
                            server.close(promise: nil)
                            throw TCPRelayError.stopped
                        }
                        for channel in [client, server] {
                            channel.closeFuture.whenComplete { _ in
                                shared.state.withLock { _ = $0.connections.removeValue(forKey: ObjectIdentifier(channel)) }
                            }
                        }
                    }
                    .flatMap { client.setOption(.autoRead, value: true) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        guard let port = listener.localAddress?.port else {
            try await listener.close()
            throw TCPRelayError.noPort
        }
        return TCPRelay(port: port, listener: listener, shared: shared)
    }

    /// From now on the server's bytes are dropped: a request sent now reaches the server, and
    /// its answer never reaches the client.
    public func swallowReplies() {
        shared.state.withLock { $0.swallowing = true }
    }

    /// The connections relayed since the start, open or closed: whether a client kept its connection.
    public var connectionsRelayed: Int { shared.state.withLock { $0.accepted } }

    /// The server's bytes dropped so far.
    public var swallowedBytes: Int { shared.state.withLock { $0.swallowedBytes } }

    /// Closes every relayed connection on both sides, as a network failure would, and relays
    /// the connections made afterwards normally (replies no longer swallowed).
    public func cutConnections() async {
        let connections = shared.state.withLock { state in
            state.swallowing = false
            defer { state.connections = [:] }
            return Array(state.connections.values)
        }
        for connection in connections { try? await connection.close() }
    }

    /// Stops listening and closes every relayed connection, also one being set up meanwhile.
    public func stop() async {
        shared.state.withLock { $0.stopped = true }
        try? await listener.close()
        await cutConnections()
    }
}

public enum TCPRelayError: Error {
    case noPort
    /// A connection set up after `stop()`: it is closed.
    case stopped
}

/// Writes what one side of a relayed connection reads to the other side, unless `swallow` says
/// to drop it; closes the other side when this one closes.
private final class Forward: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let peer: any Channel
    private let swallow: (@Sendable (Int) -> Bool)?

    init(to peer: any Channel, swallow: (@Sendable (Int) -> Bool)?) {
        self.peer = peer
        self.swallow = swallow
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        if let swallow, swallow(bytes.readableBytes) { return }
        peer.writeAndFlush(bytes, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        peer.close(promise: nil)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
