import NIOCore
import NIOPosix
import Testing
import WeftCrypto
import WeftTransport
import WeftWire

/// Server-streaming calls: Health/Watch over TLS on loopback.
@Suite struct StreamingTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// Watch("three") sends serving, not serving, serving and ends; Watch("fail")
    /// sends one update then fails UNAVAILABLE; Watch("forever") sends one update
    /// and then waits (cancellably) for an hour, reporting on `events`.
    func startServer(events: AsyncStream<String>.Continuation) async throws -> (Channel, TLSCredentials) {
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let node = try CertificateAuthority.issue(commonName: "node1", hostnames: ["localhost"], signedBy: ca)
        var router = RPCRouter()
        router.registerStream(Weft.V1.HealthService.watch) { request, writer in
            switch request.service {
            case "three":
                for status in [Weft.V1.ServingStatus.serving, .notServing, .serving] { try await writer.send(.init(status: status)) }
            case "fail":
                try await writer.send(.init(status: .serving))
                throw RPCError(.unavailable, "the database went away", errorID: "HEALTH_DEPENDENCY_DOWN")
            default:
                try await writer.send(.init(status: .serving))
                events.yield("started")
                do {
                    try await Task.sleep(for: .seconds(3600))  // the long wait under test; cancellation ends it
                } catch {
                    events.yield("stopped")
                    throw error
                }
            }
        }
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
        return (server, ca)
    }

    func connect(_ port: Int, ca: TLSCredentials) async throws -> RPCClient {
        let tls = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))
        let channel = try await ClientBootstrap(group: group)
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

    @Test func watchStreamsEveryUpdateAndEnds() async throws {
        let (_, continuation) = AsyncStream<String>.makeStream()
        let (server, ca) = try await startServer(events: continuation)
        defer { server.close(promise: nil) }
        let client = try await connect(server.localAddress!.port!, ca: ca)
        defer { client.channel.close(promise: nil) }
        var statuses: [Weft.V1.ServingStatus] = []
        for try await update in try client.serverStream(Weft.V1.HealthService.watch, .init(service: "three")) {
            statuses.append(update.status)
        }
        #expect(statuses == [.serving, .notServing, .serving])
    }

    @Test func aStreamEndsWithItsErrorStatus() async throws {
        let (_, continuation) = AsyncStream<String>.makeStream()
        let (server, ca) = try await startServer(events: continuation)
        defer { server.close(promise: nil) }
        let client = try await connect(server.localAddress!.port!, ca: ca)
        defer { client.channel.close(promise: nil) }
        var received = 0
        await #expect(throws: RPCError(.unavailable, "the database went away", errorID: "HEALTH_DEPENDENCY_DOWN")) {
            for try await _ in try client.serverStream(Weft.V1.HealthService.watch, .init(service: "fail")) { received += 1 }
        }
        #expect(received == 1)
    }

    @Test func aConsumerThatStopsEarlyCancelsTheServersHandler() async throws {
        let (events, continuation) = AsyncStream<String>.makeStream()
        let (server, ca) = try await startServer(events: continuation)
        defer { server.close(promise: nil) }
        let client = try await connect(server.localAddress!.port!, ca: ca)
        defer { client.channel.close(promise: nil) }
        func first() async throws -> Weft.V1.WatchResponse? {
            for try await update in try client.serverStream(Weft.V1.HealthService.watch, .init(service: "forever")) { return update }
            return nil
        }
        #expect(try await first()?.status == .serving)
        var iterator = events.makeAsyncIterator()
        #expect(await iterator.next() == "started")
        #expect(await iterator.next() == "stopped")
    }
}
