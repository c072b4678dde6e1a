import NIOCore
import NIOPosix
import WeftCrypto
import WeftTransport

/// A Weft node on loopback for the RPC tests: a fresh domain root, a server
/// certificate for `localhost`, and the full server pipeline (TLS, frames,
/// RPC) serving `router`.
struct RPCTestNode {
    let ca: TLSCredentials
    let server: Channel
    var port: Int { server.localAddress!.port! }

    static let group = MultiThreadedEventLoopGroup.singleton

    static func start(_ configure: (inout RPCRouter) -> Void) async throws -> RPCTestNode {
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let node = try CertificateAuthority.issue(commonName: "node1", hostnames: ["localhost"], signedBy: ca)
        var router = RPCRouter()
        configure(&router)
        let tls = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: node))
        let finalRouter = router
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(TLSHandler(context: tls))
                    try sync.addHandler(FrameHandler(role: .server))
                    try sync.addHandler(RPCServerHandler(router: finalRouter))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return RPCTestNode(ca: ca, server: server)
    }

    /// A TLS client context trusting this node's root, for `localhost`.
    func clientTLS() throws -> TLSContext {
        try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))
    }

    /// A client connection with the full client pipeline (TLS, frames, RPC).
    func connect() async throws -> RPCClient {
        let tls = try clientTLS()
        let channel = try await ClientBootstrap(group: Self.group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(TLSHandler(context: tls))
                    try sync.addHandler(FrameHandler(role: .client))
                    try sync.addHandler(RPCClientHandler())
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RPCClient(channel: channel)
    }

    func close() { server.close(promise: nil) }
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
