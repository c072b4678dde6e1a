import Logging
import NIOCore
import NIOPosix
import WeftCrypto
import WeftTransport
import WeftWire

/// A Weft node on loopback for the RPC tests: a fresh domain root, a server
/// certificate for `localhost`, and an `RPCServer` serving `router`.
struct RPCTestNode {
    let ca: TLSCredentials
    let server: RPCServer
    var port: Int { server.port }

    static let group = MultiThreadedEventLoopGroup.singleton

    /// The defaults without keepalive: a missing flush then hangs the test (and
    /// fails it at its time limit) instead of being rescued by the next PING.
    static var testConfiguration: RPCConfiguration {
        var configuration = RPCConfiguration()
        configuration.keepaliveInterval = nil
        return configuration
    }

    static func start(
        configuration: RPCConfiguration = testConfiguration, logger: Logger = Logger(label: "weft.rpc.server"),
        group: (any EventLoopGroup)? = nil, _ configure: (inout RPCRouter) -> Void
    ) async throws -> RPCTestNode {
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let node = try CertificateAuthority.issue(commonName: "node1", hostnames: ["localhost"], signedBy: ca)
        var router = RPCRouter()
        configure(&router)
        let tls = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: node))
        let server = try await RPCServer.start(
            host: "127.0.0.1", port: 0, security: .tls(tls), router: router, configuration: configuration, logger: logger,
            group: group)
        return RPCTestNode(ca: ca, server: server)
    }

    /// A TLS client context trusting this node's root, for `localhost`.
    func clientTLS() throws -> TLSContext {
        try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))
    }

    /// A client connection with the full client pipeline (TLS, frames, keepalive, RPC).
    func connect(configuration: RPCConfiguration = testConfiguration, group: (any EventLoopGroup)? = nil) async throws -> RPCClient {
        try await RPCClient.connect(
            host: "127.0.0.1", port: port, security: .tls(clientTLS()), configuration: configuration, group: group)
    }

    /// A frame-level connection to this node, for tests that speak the
    /// protocol by hand (and break it on purpose).
    func rawConnection(from source: String = "127.0.0.1") async throws -> RawFrameConnection {
        try await RawFrameConnection.connect(port: port, tls: clientTLS(), from: source)
    }

    /// Sends `frames` on a raw connection and returns the first frame received
    /// other than a window update.
    func firstAnswer(_ frames: [Weft.V1.Frame]) async throws -> Weft.V1.Frame {
        let connection = try await rawConnection()
        defer { connection.close() }
        connection.send(frames)
        for await frame in connection.frames {
            if case .windowUpdate? = frame.kind { continue }  // flow-control grants are not answers
            return frame
        }
        throw ChannelError.ioOnClosedChannel
    }

    func close() {
        let server = self.server
        Task { await server.close() }
    }
}

/// Suspends until the calling task is cancelled, then throws
/// `CancellationError`: a server handler's never-ending work in tests that
/// check deadlines and cancellation stop it.
func waitUntilCancelled() async throws {
    let (never, continuation) = AsyncStream<Never>.makeStream()
    // Nothing is ever yielded, so the loop ends only when the task is cancelled;
    // finishing the continuation afterwards keeps it alive until then.
    for await _ in never {}
    continuation.finish()
    try Task.checkCancellation()
}

/// A client that speaks frames by hand: sends what a test says and hands
/// every frame it receives to `frames`, which ends when the connection closes.
struct RawFrameConnection {
    let channel: any Channel
    let frames: AsyncStream<Weft.V1.Frame>

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = Weft.V1.Frame
        let continuation: AsyncStream<Weft.V1.Frame>.Continuation
        init(_ continuation: AsyncStream<Weft.V1.Frame>.Continuation) { self.continuation = continuation }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { continuation.yield(unwrapInboundIn(data)) }
        func channelInactive(context: ChannelHandlerContext) { continuation.finish() }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// Connects from `source`, a loopback address of the test's choice (all of 127/8 is
    /// loopback on Linux), so that a server sees connections from different addresses.
    static func connect(port: Int, tls: TLSContext, from source: String = "127.0.0.1") async throws -> RawFrameConnection {
        let (frames, continuation) = AsyncStream<Weft.V1.Frame>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(TLSHandler(context: tls))
                    try sync.addHandler(FrameHandler(role: .client))
                    try sync.addHandler(Collector(continuation))
                }
            }
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .connect(host: "127.0.0.1", port: port).get()
        return RawFrameConnection(channel: channel, frames: frames)
    }

    func send(_ frames: [Weft.V1.Frame]) {
        for frame in frames { channel.write(frame, promise: nil) }
        channel.flush()
    }

    func close() { channel.close(promise: nil) }

    /// Stops or resumes reading from the socket (NIO's auto-read): a peer that reads nothing.
    func reading(_ on: Bool) async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: on).get()
        if on { channel.read() }
    }
}
