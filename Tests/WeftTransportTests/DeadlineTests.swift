import Testing
import WeftTransport
import WeftWire

/// A deadline and a client's cancellation both stop the server's handler.
@Suite(.timeLimit(.minutes(5))) struct DeadlineTests {
    /// A node whose Health/Check "works" until cancelled, and reports
    /// "started" and "stopped" on `events`.
    func startNode(events: AsyncStream<String>.Continuation) async throws -> RPCTestNode {
        try await RPCTestNode.start { router in
            router.register(Weft.V1.HealthService.check) { _, _ in
                events.yield("started")
                do {
                    try await waitUntilCancelled()
                } catch {
                    events.yield("stopped")
                    throw error
                }
                return .init(status: .serving)
            }
        }
    }

    @Test func aPassedDeadlineAnswersDeadlineExceededAndStopsTheHandler() async throws {
        let (events, continuation) = AsyncStream<String>.makeStream()
        let node = try await startNode(events: continuation)
        defer { node.close() }
        let client = try await node.connect()
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
        let node = try await startNode(events: continuation)
        defer { node.close() }
        let client = try await node.connect()
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
