import NIOCore
import NIOPosix
import WeftCrypto
import WeftTransport

/// A Weft node on loopback for the RPC tests: a fresh domain root, a server
/// certificate for `localhost`, and an `RPCServer` serving `router`.
struct RPCTestNode {
    let ca: TLSCredentials
    let server: RPCServer
    var port: Int { server.port }

    static let group = MultiThreadedEventLoopGroup.singleton

    static func start(configuration: RPCConfiguration = .default, _ configure: (inout RPCRouter) -> Void) async throws -> RPCTestNode {
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let node = try CertificateAuthority.issue(commonName: "node1", hostnames: ["localhost"], signedBy: ca)
        var router = RPCRouter()
        configure(&router)
        let tls = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: node))
        let server = try await RPCServer.start(host: "127.0.0.1", port: 0, security: .tls(tls), router: router, configuration: configuration)
        return RPCTestNode(ca: ca, server: server)
    }

    /// A TLS client context trusting this node's root, for `localhost`.
    func clientTLS() throws -> TLSContext {
        try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))
    }

    /// A client connection with the full client pipeline (TLS, frames, keepalive, RPC).
    func connect(configuration: RPCConfiguration = .default) async throws -> RPCClient {
        try await RPCClient.connect(host: "127.0.0.1", port: port, security: .tls(clientTLS()), configuration: configuration)
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
