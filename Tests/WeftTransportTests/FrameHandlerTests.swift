import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import WeftCrypto
import WeftTransport
import WeftWire

/// Frames over TLS over TCP on loopback: the preface, frames both ways, and
/// bad input that closes only the offending connection.
@Suite(.timeLimit(.minutes(5))) struct FrameHandlerTests {
    /// Echoes every frame.
    final class FrameEcho: ChannelInboundHandler {
        typealias InboundIn = Weft.V1.Frame
        typealias OutboundOut = Weft.V1.Frame
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
        func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
    }

    /// Records the first error of a server connection, or `ClosedCleanly`
    /// when it closes without one (every promise is completed exactly once).
    final class ErrorRecorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = Weft.V1.Frame
        struct ClosedCleanly: Error {}
        let first: EventLoopPromise<any Error>
        var completed = false
        init(_ first: EventLoopPromise<any Error>) { self.first = first }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if !completed { first.succeed(error) }
            completed = true
        }
        func channelInactive(context: ChannelHandlerContext) {
            if !completed { first.succeed(ClosedCleanly()) }
            completed = true
            context.fireChannelInactive()
        }
    }

    /// Collects `expected` frames.
    final class FrameCollector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = Weft.V1.Frame
        let expected: Int
        let done: EventLoopPromise<[Weft.V1.Frame]>
        var frames: [Weft.V1.Frame] = []
        init(expected: Int, loop: any EventLoop) {
            self.expected = expected
            done = loop.makePromise()
        }
        var completed = false
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            frames.append(unwrapInboundIn(data))
            if frames.count == expected, !completed {
                completed = true
                done.succeed(frames)
            }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if !completed { done.fail(error) }
            completed = true
        }
        func channelInactive(context: ChannelHandlerContext) {
            if !completed { done.fail(ChannelError.ioOnClosedChannel) }
            completed = true
        }
    }

    let group = MultiThreadedEventLoopGroup.singleton
    let pki: (ca: TLSCredentials, server: TLSCredentials)

    init() throws {
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        pki = (ca, try CertificateAuthority.issue(commonName: "sequencer1", hostnames: ["localhost"], signedBy: ca))
    }

    /// A server whose connections report their first error to `errors` (a new
    /// promise per connection, handed out in order).
    func startServer(maximumFrameBytes: Int = FrameLimits.defaultMaximumFrameBytes, errors: @escaping @Sendable (any EventLoop) -> EventLoopPromise<any Error>?)
        async throws -> Channel
    {
        let tls = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: pki.server))
        return try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(TLSHandler(context: tls))
                    try sync.addHandler(FrameHandler(role: .server, maximumFrameBytes: maximumFrameBytes))
                    if let promise = errors(channel.eventLoop) { try sync.addHandler(ErrorRecorder(promise)) }
                    try sync.addHandler(FrameEcho())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }

    func clientTLS() throws -> TLSContext {
        try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: pki.ca.certificatePEM))
    }

    /// A well-behaved client: sends `frames`, returns the echoes.
    func exchange(port: Int, _ frames: [Weft.V1.Frame]) async throws -> [Weft.V1.Frame] {
        let tls = try clientTLS()
        let loop = group.next()
        let collector = FrameCollector(expected: frames.count, loop: loop)
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls))
                    try channel.pipeline.syncOperations.addHandler(FrameHandler(role: .client))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        defer { channel.close(promise: nil) }
        for frame in frames { channel.write(frame, promise: nil) }
        channel.flush()
        return try await collector.done.futureResult.get()
    }

    /// A client that sends raw plaintext bytes over TLS (no frame layer), then
    /// optionally closes; returns when the server has closed the connection.
    func sendRaw(port: Int, _ bytes: [UInt8], thenClose: Bool = false) async throws {
        let tls = try clientTLS()
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls)) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        if thenClose {
            // Sent (after the TLS handshake), then a clean close from this side.
            try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
            try await channel.close()
        } else {
            // The write's own result is not awaited: the server may close the connection
            // (which is what these tests provoke) before the write completes.
            channel.writeAndFlush(ByteBuffer(bytes: bytes), promise: nil)
        }
        try await channel.closeFuture.get()
    }

    static let frames: [Weft.V1.Frame] = [
        .init(streamID: 1, kind: .open(.init(method: "/weft.v1.HealthService/Check"))),
        .init(streamID: 1, kind: .message(.init(payload: Array(repeating: 0x5A, count: 70_000)))),
        .init(streamID: 1, kind: .halfClose(.init())),
    ]

    @Test func framesTravelBothWaysAfterThePreface() async throws {
        let server = try await startServer { _ -> EventLoopPromise<any Error>? in nil }
        defer { server.close(promise: nil) }
        #expect(try await exchange(port: server.localAddress!.port!, Self.frames) == Self.frames)
    }

    /// Runs `misbehave` against a server and returns the error its connection
    /// reported; then checks the server still serves a well-behaved client.
    func serverError(maximumFrameBytes: Int = FrameLimits.defaultMaximumFrameBytes, _ misbehave: @Sendable (Int) async throws -> Void)
        async throws -> any Error
    {
        let errors = NIOLockedValueBox<[EventLoopPromise<any Error>]>([])
        let server = try await startServer(maximumFrameBytes: maximumFrameBytes) { loop in
            let promise = loop.makePromise(of: (any Error).self)
            errors.withLockedValue { $0.append(promise) }
            return promise
        }
        defer { server.close(promise: nil) }
        let port = server.localAddress!.port!
        try await misbehave(port)
        let first = try #require(errors.withLockedValue { $0.first })
        let error = try await first.futureResult.get()
        let small: [Weft.V1.Frame] = [.init(streamID: 3, kind: .ping(.init(data: 7)))]
        #expect(try await exchange(port: port, small) == small, "the server stopped serving others")
        return error
    }

    @Test func garbageInsteadOfThePrefaceClosesTheConnection() async throws {
        let error = try await serverError { port in try await self.sendRaw(port: port, Array("GET / HTTP/1.1\r\n\r\n".utf8)) }
        #expect(error as? TransportError == .badPreface(received: Array("GET / HT".utf8)))
    }

    @Test func aValidPrefaceThenGarbageIsMalformed() async throws {
        let error = try await serverError { port in
            try await self.sendRaw(port: port, ConnectionPreface.bytes + [0, 0, 0, 0, 4, 0xFF, 0xFF, 0xFF, 0x7F])
        }
        #expect(error as? TransportError == .frame(.malformed(message: "weft.v1.Frame", byteCount: 4)))
    }

    @Test func aLengthOverTheLimitIsRefusedFromThePrefixAlone() async throws {
        let error = try await serverError(maximumFrameBytes: 1024) { port in
            // Only the 5-byte prefix of a "frame" of 4 GiB - 1 is ever sent.
            try await self.sendRaw(port: port, ConnectionPreface.bytes + [0, 0xFF, 0xFF, 0xFF, 0xFF])
        }
        #expect(error as? TransportError == .frame(.frameTooLarge(lengthBytes: 0xFFFF_FFFF, limitBytes: 1024)))
    }

    @Test func aTruncatedFrameThenDisconnectIsReported() async throws {
        let error = try await serverError { port in
            try await self.sendRaw(port: port, ConnectionPreface.bytes + [0, 0, 0, 0, 10, 0x08, 0x01], thenClose: true)
        }
        #expect(error as? TransportError == .frame(.truncatedFrame(expectedBytes: 15, receivedBytes: 7)))
    }
}
