import NIOCore
import NIOPosix
import Testing
import WeftCrypto
import WeftTransport
import WeftWire

/// A deadline and a client's cancellation both stop the server's handler.
@Suite struct DeadlineTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// A server whose Health/Check "works" for an hour unless cancelled, and
    /// reports "started" and "stopped" on `events`.
    func startServer(events: AsyncStream<String>.Continuation) async throws -> (Channel, TLSCredentials) {
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let node = try CertificateAuthority.issue(commonName: "node1", hostnames: ["localhost"], signedBy: ca)
        var router = RPCRouter()
        router.register(Weft.V1.HealthService.check) { _ in
            events.yield("started")
            do {
                // The long work under test; cancellation ends it at once.
                try await Task.sleep(for: .seconds(3600))
            } catch {
                events.yield("stopped")
                throw error
            }
            return .init(status: .serving)
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

    @Test func aPassedDeadlineAnswersDeadlineExceededAndStopsTheHandler() async throws {
        let (events, continuation) = AsyncStream<String>.makeStream()
        let (server, ca) = try await startServer(events: continuation)
        defer { server.close(promise: nil) }
        let client = try await connect(server.localAddress!.port!, ca: ca)
        defer { client.channel.close(promise: nil) }
        await #expect(throws: RPCError(.deadlineExceeded, "the call's deadline passed", errorID: "RPC_DEADLINE_EXCEEDED")) {
            _ = try await client.unary(Weft.V1.HealthService.check, .init(), timeout: .milliseconds(100))
        }
        var iterator = events.makeAsyncIterator()
        #expect(await iterator.next() == "started")
        #expect(await iterator.next() == "stopped")
    }

    @Test func cancellingTheCallerStopsTheHandler() async throws {
        let (events, continuation) = AsyncStream<String>.makeStream()
        let (server, ca) = try await startServer(events: continuation)
        defer { server.close(promise: nil) }
        let client = try await connect(server.localAddress!.port!, ca: ca)
        defer { client.channel.close(promise: nil) }
        let call = Task { try await client.unary(Weft.V1.HealthService.check, .init()) }
        var iterator = events.makeAsyncIterator()
        #expect(await iterator.next() == "started")
        call.cancel()
        #expect(await iterator.next() == "stopped")
        await #expect(throws: RPCError(.cancelled, "the call was cancelled by its caller", errorID: "RPC_CANCELLED")) {
            _ = try await call.value
        }
        // The connection serves new calls afterwards (one that does finish: it is cancelled by its deadline).
        await #expect(throws: RPCError.self) {
            _ = try await client.unary(Weft.V1.HealthService.check, .init(), timeout: .milliseconds(50))
        }
    }
}
