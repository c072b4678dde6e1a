import Testing
import WeftTransport
import WeftWire

/// Server-streaming calls: Health/Watch over TLS on loopback.
@Suite(.timeLimit(.minutes(5))) struct StreamingTests {
    /// Watch("three") sends serving, not serving, serving and ends; Watch("fail")
    /// sends one update then fails UNAVAILABLE; Watch("forever") sends one update
    /// and then waits until cancelled, reporting on `events`.
    func startNode(events: AsyncStream<String>.Continuation) async throws -> RPCTestNode {
        try await RPCTestNode.start { router in
            router.registerServerStream(Weft.V1.HealthService.watch) { request, writer, _ in
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
                        try await waitUntilCancelled()
                    } catch {
                        events.yield("stopped")
                        throw error
                    }
                }
            }
        }
    }

    @Test func watchStreamsEveryUpdateAndEnds() async throws {
        let (_, continuation) = AsyncStream<String>.makeStream()
        let node = try await startNode(events: continuation)
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        var statuses: [Weft.V1.ServingStatus] = []
        for try await update in try client.serverStream(Weft.V1.HealthService.watch, .init(service: "three")) {
            statuses.append(update.status)
        }
        #expect(statuses == [.serving, .notServing, .serving])
    }

    @Test func aStreamEndsWithItsErrorStatus() async throws {
        let (_, continuation) = AsyncStream<String>.makeStream()
        let node = try await startNode(events: continuation)
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        var received = 0
        await #expect(throws: RPCError(.unavailable, "the database went away", errorID: "HEALTH_DEPENDENCY_DOWN")) {
            for try await _ in try client.serverStream(Weft.V1.HealthService.watch, .init(service: "fail")) { received += 1 }
        }
        #expect(received == 1)
    }

    @Test func aConsumerThatStopsEarlyCancelsTheServersHandler() async throws {
        let (events, continuation) = AsyncStream<String>.makeStream()
        let node = try await startNode(events: continuation)
        defer { node.close() }
        let client = try await node.connect()
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
