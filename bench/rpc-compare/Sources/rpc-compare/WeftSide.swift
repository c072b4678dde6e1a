// Weft's side of the comparison: an `RPCServer` (pipeline: TLS, frames,
// keepalive, `RPCServerHandler`) and one `RPCClient` connection, set up as
// Tests/WeftTransportTests/RPCTestNode.swift does. Kept to this one file so it
// follows the transport's API as it changes.
import NIOCore
import WeftCrypto
import WeftTransport
import WeftWire

enum WeftBench {
    static let echo = Method<Weft.V1.FrameMessage, Weft.V1.FrameMessage>(path: "/weft.bench.v1.Bench/Echo", kind: .unary)
    static let stream = Method<Weft.V1.FrameMessage, Weft.V1.FrameMessage>(path: "/weft.bench.v1.Bench/Stream", kind: .serverStreaming)
}

final class WeftSide: RPCSide {
    let name = "Weft"
    private let server: RPCServer
    private let client: RPCClient

    private init(server: RPCServer, client: RPCClient) {
        self.server = server
        self.client = client
    }

    static func start(_ certificates: BenchCertificates, serverGroup: any EventLoopGroup, clientGroup: any EventLoopGroup) async throws -> WeftSide {
        var router = RPCRouter()
        router.register(WeftBench.echo) { request, _ in request }
        router.registerServerStream(WeftBench.stream) { request, writer, _ in
            let response = BenchMessages.streamResponse()
            for _ in 0..<BenchMessages.streamCount(request) { try await writer.send(response) }
        }
        let serverTLS = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: certificates.node))
        let server = try await RPCServer.start(host: "127.0.0.1", port: 0, security: .tls(serverTLS), router: router, group: serverGroup)
        let clientTLS = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: certificates.root.certificatePEM))
        let client = try await RPCClient.connect(host: "127.0.0.1", port: server.port, security: .tls(clientTLS), group: clientGroup)
        return WeftSide(server: server, client: client)
    }

    func echo(_ request: Weft.V1.FrameMessage) async throws -> Weft.V1.FrameMessage {
        try await client.unary(WeftBench.echo, request)
    }

    func stream(_ request: Weft.V1.FrameMessage) async throws -> StreamTally {
        var tally = StreamTally()
        for try await message in try client.serverStream(WeftBench.stream, request) { tally.add(message) }
        return tally
    }

    func shutdown() async {
        await client.close()
        await server.close()
    }
}
