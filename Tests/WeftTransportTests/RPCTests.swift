import NIOCore
import NIOPosix
import Testing
import WeftCrypto
import WeftTransport
import WeftWire

/// Unary calls over frames over TLS on loopback.
@Suite(.timeLimit(.minutes(5))) struct RPCTests {
    let group = MultiThreadedEventLoopGroup.singleton

    /// A node whose Health/Check answers SERVING and echoes the service name as
    /// detail; `weft.v1.Nothing` answers NOT_FOUND.
    func startNode() async throws -> RPCTestNode {
        try await RPCTestNode.start { router in
            router.register(Weft.V1.HealthService.check) { request, _ in
                guard request.service != "weft.v1.Nothing" else {
                    throw RPCError(.notFound, "no service \(request.service)", errorID: "HEALTH_UNKNOWN_SERVICE")
                }
                return .init(status: .serving, detail: request.service)
            }
        }
    }

    @Test func healthCheckAndManyConcurrentCalls() async throws {
        let node = try await startNode()
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        let response = try await client.unary(Weft.V1.HealthService.check, .init(service: "weft.v1.SequencerService"))
        #expect(response == .init(status: .serving, detail: "weft.v1.SequencerService"))
        // 64 calls in flight at once on one connection, each answered on its own stream.
        let details = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<64 {
                group.addTask { try await client.unary(Weft.V1.HealthService.check, .init(service: "service\(index)")).detail }
            }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(details == Set((0..<64).map { "service\($0)" }))
    }

    @Test func errorsCarryTheirStatusAndErrorID() async throws {
        let node = try await startNode()
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        await #expect(throws: RPCError(.notFound, "no service weft.v1.Nothing", errorID: "HEALTH_UNKNOWN_SERVICE")) {
            _ = try await client.unary(Weft.V1.HealthService.check, .init(service: "weft.v1.Nothing"))
        }
        await #expect(throws: RPCError(.unimplemented, "no method /weft.v1.ParticipantAdministrationService/GetParticipantId on this server", errorID: "RPC_UNKNOWN_METHOD")) {
            _ = try await client.unary(Weft.V1.ParticipantAdministrationService.getParticipantID, .init())
        }
        // The connection still works after failed calls.
        #expect(try await client.unary(Weft.V1.HealthService.check, .init(service: "x")).status == .serving)
    }

    @Test func protocolMisuseGetsAStatus() async throws {
        let node = try await startNode()
        defer { node.close() }
        // A message for a stream that was never opened: NOT_FOUND for that stream.
        let unknown = try await node.firstAnswer([.init(streamID: 5, kind: .message(.init(payload: [1])))])
        guard case .close(let close)? = unknown.kind else { Issue.record("expected a close, got \(unknown)"); return }
        #expect(unknown.streamID == 5)
        #expect(close.status?.code == StatusCode.notFound.rawValue && close.status?.errorID == "RPC_UNKNOWN_STREAM")
        // A request that is not a CheckRequest: INVALID_ARGUMENT.
        let malformed = try await node.firstAnswer([
            .init(streamID: 1, kind: .open(.init(method: Weft.V1.HealthService.check.path))),
            .init(streamID: 1, kind: .message(.init(payload: [0xFF, 0xFF]))),
            .init(streamID: 1, kind: .halfClose(.init())),
        ])
        guard case .close(let rejected)? = malformed.kind else { Issue.record("expected a close, got \(malformed)"); return }
        #expect(rejected.status?.code == StatusCode.invalidArgument.rawValue && rejected.status?.errorID == "RPC_MALFORMED_REQUEST")
        // A ping is answered with a pong carrying its data.
        let pong = try await node.firstAnswer([.init(streamID: 0, kind: .ping(.init(data: 42)))])
        #expect(pong == .init(streamID: 0, kind: .pong(.init(data: 42))))
    }

    @Test func plaintextWorksOnlyWhenBothSidesAskForIt() async throws {
        var router = RPCRouter()
        router.register(Weft.V1.HealthService.check) { request, _ in .init(status: .serving, detail: request.service) }
        let server = try await RPCServer.start(host: "127.0.0.1", port: 0, security: .plaintext, router: router)
        let plain = try await RPCClient.connect(host: "127.0.0.1", port: server.port, security: .plaintext)
        #expect(try await plain.unary(Weft.V1.HealthService.check, .init(service: "plain")).detail == "plain")
        await plain.close()
        // A TLS client never falls back to plaintext: its handshake fails against a plaintext server.
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let tls = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))
        let secure = try await RPCClient.connect(host: "127.0.0.1", port: server.port, security: .tls(tls))
        await #expect(throws: RPCError.self) { _ = try await secure.unary(Weft.V1.HealthService.check, .init()) }
        await secure.close()
        await server.close()
    }
}
