import Foundation
import Testing
import WeftTestSupport
import WeftTransport
import WeftWire

/// The generated typed stubs (`client.health`, `Provider.register(on:)`) and
/// the standard services every node serves, over TLS on loopback.
@Suite(.timeLimit(.minutes(5))) struct ServicesTests {
    @Test func checkReportsTheStatusSet() async throws {
        let status = HealthStatus(.notServing, detail: "starting")
        let node = try await RPCTestNode.start { router in router.registerStandardServices(health: status) }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }

        #expect(try await client.health.check(.init()) == .init(status: .notServing, detail: "starting"))
        status.set(.serving)
        #expect(try await client.health.check(.init()) == .init(status: .serving))
        status.set(.notServing, detail: "database unreachable", for: "weft.v1.SequencerService")
        #expect(
            try await client.health.check(.init(service: "weft.v1.SequencerService"))
                == .init(status: .notServing, detail: "database unreachable"))
        // The node's own entry is independent of the service's.
        #expect(try await client.health.check(.init()).status == .serving)
    }

    @Test func checkOfAnUnknownServiceIsNotFound() async throws {
        let status = HealthStatus()
        status.set(.serving, for: "weft.v1.SequencerService")
        let node = try await RPCTestNode.start { router in router.registerStandardServices(health: status) }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }

        func expectNotFound(_ service: String) async {
            let error = await #expect(throws: RPCError.self) { try await client.health.check(.init(service: service)) }
            #expect(error?.code == .notFound, "\(service)")
            #expect(error?.errorID == "HEALTH_UNKNOWN_SERVICE", "\(service)")
        }
        await expectNotFound("weft.v1.Nothing")
        #expect(try await client.health.check(.init(service: "weft.v1.SequencerService")).status == .serving)
        status.remove(service: "weft.v1.SequencerService")
        await expectNotFound("weft.v1.SequencerService")
    }

    @Test func watchSendsTheCurrentStatusThenEachChange() async throws {
        let status = HealthStatus(.serving)
        let node = try await RPCTestNode.start { router in router.registerStandardServices(health: status) }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }

        var updates = try client.health.watch(.init(), timeout: .seconds(60)).makeAsyncIterator()
        #expect(try await updates.next() == .init(status: .serving))
        status.set(.notServing, detail: "database unreachable")
        #expect(try await updates.next() == .init(status: .notServing, detail: "database unreachable"))
        status.set(.serving)
        #expect(try await updates.next() == .init(status: .serving))
    }

    @Test func watchOfAServiceFollowsItIntoAndOutOfExistence() async throws {
        let status = HealthStatus()
        let node = try await RPCTestNode.start { router in router.registerStandardServices(health: status) }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }

        let service = "weft.v1.SequencerService"
        var updates = try client.health.watch(.init(service: service), timeout: .seconds(60)).makeAsyncIterator()
        #expect(try await updates.next()?.status == .serviceUnknown)
        status.set(.serving, for: service)
        #expect(try await updates.next()?.status == .serving)
        status.set(.notServing, detail: "node status changes are not this watcher's", for: "")
        status.remove(service: service)
        #expect(try await updates.next()?.status == .serviceUnknown)
    }

    /// A watcher that is cancelled unsubscribes: no status source keeps a dead stream.
    @Test func aCancelledWatcherUnsubscribes() async throws {
        let status = HealthStatus()
        let (received, receivedContinuation) = AsyncStream<Weft.V1.ServingStatus>.makeStream()
        let watcher = Task {
            for await update in status.updates() { receivedContinuation.yield(update.status) }
        }
        var iterator = received.makeAsyncIterator()
        #expect(await iterator.next() == .serving)
        #expect(status.watcherCount == 1)
        watcher.cancel()
        await watcher.value
        #expect(status.watcherCount == 0)
    }

    @Test func reflectionServesTheSchemaAndTheServedServices() async throws {
        let node = try await RPCTestNode.start { router in
            router.register(Weft.V1.SequencerService.getDomainInfo) { _, _ in .init() }
            router.registerStandardServices(health: HealthStatus())
        }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }

        let response = try await client.reflection.getDescriptorSet(.init())
        #expect(response.services == ["weft.v1.HealthService", "weft.v1.ReflectionService", "weft.v1.SequencerService"])

        // Google's protobuf (Python) reads the descriptor set: every file of
        // Proto/weft/v1 is there, with Watch marked as server-streaming.
        let root = repositoryRoot()
        let protoFiles = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Proto/weft/v1").path)
            .filter { $0.hasSuffix(".proto") }.map { "weft/v1/" + $0 }.sorted()
        #expect(protoFiles.count >= 12)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("weft-descriptor-set-\(UUID()).pb")
        try Data(response.fileDescriptorSet).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let script = """
            import sys
            from google.protobuf import descriptor_pb2
            s = descriptor_pb2.FileDescriptorSet()
            s.ParseFromString(open(sys.argv[1], "rb").read())
            for f in sorted(s.file, key=lambda f: f.name):
                print("file", f.name)
                for service in f.service:
                    for m in service.method:
                        print("method", f.package + "." + service.name + "/" + m.name,
                              "client_streaming=%s server_streaming=%s" % (m.client_streaming, m.server_streaming))
            """
        let (exit, output) = try await run(["python3", "-c", script, file.path])
        #expect(exit == 0, "\(output)")
        let lines = output.split(separator: "\n").map(String.init)
        #expect(lines.filter { $0.hasPrefix("file ") } == protoFiles.map { "file " + $0 })
        #expect(lines.contains("method weft.v1.HealthService/Watch client_streaming=False server_streaming=True"))
        #expect(lines.contains("method weft.v1.HealthService/Check client_streaming=False server_streaming=False"))
        #expect(lines.contains("method weft.v1.ParticipantAdministrationService/ImportAcs client_streaming=True server_streaming=False"))
        // Every method the generated code knows is in the served schema.
        let paths = lines.filter { $0.hasPrefix("method ") }.map { "/" + $0.split(separator: " ")[1] }
        #expect(Set(paths) == Set(Weft.V1.methods.map(\.path)))
    }

    /// A generated `Provider` with every kind of method the schema has (unary,
    /// server- and client-streaming), called through the generated client.
    @Test func generatedStubsCarryEveryKindOfCall() async throws {
        let node = try await RPCTestNode.start { router in ParticipantAdmin().register(on: &router) }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        let admin = client.participantAdministration

        let id = try await admin.getParticipantID(.init(), metadata: [.init(key: "who", value: .textValue("test"))])
        #expect(id.participant == "participant1::test")

        var batches: [Int] = []
        for try await batch in try admin.exportAcs(.init(parties: ["alice", "bob", "carol"])) {
            batches.append(batch.contracts.count)
        }
        #expect(batches == [1, 2, 3])

        let imported = try await admin.importAcs { requests in
            for count in 1...4 { try await requests.send(.init(contracts: Array(repeating: .init(), count: count))) }
        }
        #expect(imported.imported == 10)

        let error = await #expect(throws: RPCError.self) { try await admin.connectDomain(.init(alias: "d")) }
        #expect(error?.code == .unimplemented)
    }
}

/// Serves `ParticipantAdministrationService` with canned answers.
private struct ParticipantAdmin: Weft.V1.ParticipantAdministrationService.Provider {
    func getParticipantID(_ request: Weft.V1.GetParticipantIdRequest, context: RPCCallContext) async throws -> Weft.V1.GetParticipantIdResponse {
        .init(participant: "participant1::\(context["who"] ?? "?")")
    }

    func connectDomain(_ request: Weft.V1.ConnectDomainRequest, context: RPCCallContext) async throws -> Weft.V1.ConnectDomainResponse {
        throw RPCError(.unimplemented, "not in this test", errorID: "TEST_UNIMPLEMENTED")
    }

    func disconnectDomain(_ request: Weft.V1.DisconnectDomainRequest, context: RPCCallContext) async throws -> Weft.V1.DisconnectDomainResponse {
        throw RPCError(.unimplemented, "not in this test", errorID: "TEST_UNIMPLEMENTED")
    }

    func listDomainConnections(
        _ request: Weft.V1.ListDomainConnectionsRequest, context: RPCCallContext
    ) async throws -> Weft.V1.ListDomainConnectionsResponse {
        throw RPCError(.unimplemented, "not in this test", errorID: "TEST_UNIMPLEMENTED")
    }

    /// One batch per party, the n-th with n contracts.
    func exportAcs(
        _ request: Weft.V1.ExportAcsRequest, responses: RPCMessageWriter<Weft.V1.ExportAcsResponse>, context: RPCCallContext
    ) async throws {
        for index in request.parties.indices {
            try await responses.send(.init(contracts: Array(repeating: .init(), count: index + 1)))
        }
    }

    /// Counts the contracts of every batch.
    func importAcs(_ requests: RPCMessageStream<Weft.V1.ImportAcsRequest>, context: RPCCallContext) async throws -> Weft.V1.ImportAcsResponse {
        var imported: UInt64 = 0
        for try await batch in requests { imported += UInt64(batch.contracts.count) }
        return .init(imported: imported)
    }

    func migrateDomain(_ request: Weft.V1.MigrateDomainRequest, context: RPCCallContext) async throws -> Weft.V1.MigrateDomainResponse {
        throw RPCError(.unimplemented, "not in this test", errorID: "TEST_UNIMPLEMENTED")
    }

    func listCommitmentMismatches(
        _ request: Weft.V1.ListCommitmentMismatchesRequest, context: RPCCallContext
    ) async throws -> Weft.V1.ListCommitmentMismatchesResponse {
        throw RPCError(.unimplemented, "not in this test", errorID: "TEST_UNIMPLEMENTED")
    }

    func getCommitmentSafePoint(
        _ request: Weft.V1.GetCommitmentSafePointRequest, context: RPCCallContext
    ) async throws -> Weft.V1.GetCommitmentSafePointResponse {
        throw RPCError(.unimplemented, "not in this test", errorID: "TEST_UNIMPLEMENTED")
    }

    func inspectCommitment(
        _ request: Weft.V1.InspectCommitmentRequest, context: RPCCallContext
    ) async throws -> Weft.V1.InspectCommitmentResponse {
        throw RPCError(.unimplemented, "not in this test", errorID: "TEST_UNIMPLEMENTED")
    }

    func getPruningSafePoint(
        _ request: Weft.V1.GetPruningSafePointRequest, context: RPCCallContext
    ) async throws -> Weft.V1.GetPruningSafePointResponse {
        throw RPCError(.unimplemented, "not in this test", errorID: "TEST_UNIMPLEMENTED")
    }

    func pruneParticipant(
        _ request: Weft.V1.PruneParticipantRequest, context: RPCCallContext
    ) async throws -> Weft.V1.PruneParticipantResponse {
        throw RPCError(.unimplemented, "not in this test", errorID: "TEST_UNIMPLEMENTED")
    }
}

private func repositoryRoot() -> URL {
    var root = URL(fileURLWithPath: #filePath)
    while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) { root.deleteLastPathComponent() }
    return root
}

/// Runs a command off the concurrency pool, returning its exit status and its output (stdout and stderr).
private func run(_ arguments: [String]) async throws -> (status: Int32, output: String) {
    let outcome = try await TestSubprocess.run(
        arguments, environment: ProcessInfo.processInfo.environment.merging(["PYTHONDONTWRITEBYTECODE": "1"]) { $1 })
    return (outcome.status, outcome.output + outcome.error)
}
