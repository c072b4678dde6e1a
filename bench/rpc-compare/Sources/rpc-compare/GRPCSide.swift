// grpc-swift-2's side of the comparison: GRPCServer and GRPCClient over the
// HTTP/2 transport on NIOPosix, TLS by swift-nio-ssl, with the transports'
// default configuration. No code generation: hand-written method descriptors
// and a serializer that encodes the same `Weft.V1.FrameMessage` with WeftWire,
// so both libraries do the same message work.
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import WeftWire

enum GRPCBench {
    static let service = ServiceDescriptor(fullyQualifiedService: "weft.bench.v1.Bench")
    static let echo = MethodDescriptor(service: service, method: "Echo", type: .unary)
    static let stream = MethodDescriptor(service: service, method: "Stream", type: .serverStreaming)
}

/// Encodes and decodes `Weft.V1.FrameMessage` through WeftWire (protobuf-c).
struct FrameMessageCoder: MessageSerializer, MessageDeserializer {
    typealias Message = Weft.V1.FrameMessage

    func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
        Bytes(try message.serializedBytes())
    }

    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> Message {
        try serializedMessageBytes.withUnsafeBytes { bytes in try Message(serializedBytes: bytes) }
    }
}

/// The bench service, registered by hand (what generated code would do).
struct GRPCBenchService: RegistrableRPCService {
    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(forMethod: GRPCBench.echo, deserializer: FrameMessageCoder(), serializer: FrameMessageCoder()) {
            request, _ in
            let single = try await ServerRequest(stream: request)
            return StreamingServerResponse(single: ServerResponse(message: single.message))
        }
        router.registerHandler(forMethod: GRPCBench.stream, deserializer: FrameMessageCoder(), serializer: FrameMessageCoder()) {
            request, _ in
            let single = try await ServerRequest(stream: request)
            let count = BenchMessages.streamCount(single.message)
            return StreamingServerResponse { writer in
                let response = BenchMessages.streamResponse()
                for _ in 0..<count { try await writer.write(response) }
                return [:]
            }
        }
    }
}

/// The TCP channels a client transport opened.
final class ChannelRecorder: Sendable {
    let channels = Mutex<[any Channel]>([])
}

final class GRPCSide: RPCSide {
    let name = "gRPC"
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let client: GRPCClient<HTTP2ClientTransport.Posix>
    private let serving: Task<Void, any Error>
    private let connecting: Task<Void, any Error>
    /// The TLS version the client's connection negotiated, read after the first call.
    let negotiatedTLS: String

    private init(
        server: GRPCServer<HTTP2ServerTransport.Posix>, client: GRPCClient<HTTP2ClientTransport.Posix>,
        serving: Task<Void, any Error>, connecting: Task<Void, any Error>, negotiatedTLS: String
    ) {
        self.server = server
        self.client = client
        self.serving = serving
        self.connecting = connecting
        self.negotiatedTLS = negotiatedTLS
    }

    static func start(
        _ certificates: BenchCertificates, flushCoalescing: Bool, serverGroup: MultiThreadedEventLoopGroup,
        clientGroup: MultiThreadedEventLoopGroup
    ) async throws -> GRPCSide {
        var serverConfig = HTTP2ServerTransport.Posix.Config.defaults
        if !flushCoalescing { serverConfig.connection.flushCoalescing = nil }
        let serverTransport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: "127.0.0.1", port: 0),
            transportSecurity: .tls(
                certificateChain: [.bytes(Array(certificates.node.certificatePEM.utf8), format: .pem)],
                privateKey: .bytes(Array(certificates.node.privateKeyPEM.utf8), format: .pem)
            ),
            config: serverConfig,
            eventLoopGroup: serverGroup
        )
        let server = GRPCServer(transport: serverTransport, services: [GRPCBenchService()])
        let serving = Task { try await server.serve() }
        guard let port = try await serverTransport.listeningAddress.ipv4?.port else {
            throw BenchError("the gRPC server is not listening on IPv4")
        }

        // The client's TCP connection, kept to read the negotiated TLS version.
        let connections = ChannelRecorder()
        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.http2.authority = "localhost"  // SNI and the name the certificate is checked for
        if !flushCoalescing { config.connection.flushCoalescing = nil }
        config.channelDebuggingCallbacks.onCreateTCPConnection = { channel in
            connections.channels.withLock { $0.append(channel) }
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        let clientTransport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: "127.0.0.1", port: port),
            transportSecurity: .tls { tls in
                tls.trustRoots = .certificates([.bytes(Array(certificates.root.certificatePEM.utf8), format: .pem)])
                tls.serverCertificateVerification = .fullVerification
            },
            config: config,
            eventLoopGroup: clientGroup
        )
        let client = GRPCClient(transport: clientTransport)
        let connecting = Task { try await client.runConnections() }

        // One call opens the connection; then its TLS version can be read.
        _ = try await client.unary(
            request: ClientRequest(message: BenchMessages.unaryRequest()), descriptor: GRPCBench.echo,
            serializer: FrameMessageCoder(), deserializer: FrameMessageCoder(), options: .defaults
        ) { try $0.message }
        let channels = connections.channels.withLock { $0 }
        guard channels.count == 1, let channel = channels.first else {
            throw BenchError("expected one gRPC client connection, found \(channels.count)")
        }
        let version = try await channel.nioSSL_tlsVersion().get()
        return GRPCSide(
            server: server, client: client, serving: serving, connecting: connecting,
            negotiatedTLS: version.map { "\($0)" } ?? "none")
    }

    func echo(_ request: Weft.V1.FrameMessage) async throws -> Weft.V1.FrameMessage {
        try await client.unary(
            request: ClientRequest(message: request), descriptor: GRPCBench.echo,
            serializer: FrameMessageCoder(), deserializer: FrameMessageCoder(), options: .defaults
        ) { try $0.message }
    }

    func stream(_ request: Weft.V1.FrameMessage) async throws -> StreamTally {
        try await client.serverStreaming(
            request: ClientRequest(message: request), descriptor: GRPCBench.stream,
            serializer: FrameMessageCoder(), deserializer: FrameMessageCoder(), options: .defaults
        ) { response in
            var tally = StreamTally()
            for try await message in response.messages { tally.add(message) }
            return tally
        }
    }

    func shutdown() async {
        client.beginGracefulShutdown()
        server.beginGracefulShutdown()
        _ = await connecting.result
        _ = await serving.result
    }
}
