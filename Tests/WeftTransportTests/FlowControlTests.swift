import NIOCore
import Synchronization
import NIOPosix
import Testing
import WeftTransport
import WeftWire

/// Per-stream flow control (docs/wire-protocol.md §4.2): a reader that stops
/// reading stops its sender once the window is full, so neither side buffers
/// more than the window; reading again resumes the stream.
@Suite(.timeLimit(.minutes(5))) struct FlowControlTests {
    /// A 4 KiB detail makes each WatchResponse 4,101 bytes on the wire.
    static let detail = String(repeating: "x", count: 4096)
    static let messageBytes = try! Weft.V1.WatchResponse(status: .serving, detail: detail).serializedBytes().count

    /// How many messages a sender got past `send`, readable at any time.
    final class Counter: Sendable {
        private struct State {
            var value = 0
            var waiters: [(target: Int, continuation: CheckedContinuation<Void, Never>)] = []
        }
        private let state = Mutex(State())

        func increment() {
            let reached = state.withLock { state in
                state.value += 1
                let value = state.value
                let reached = state.waiters.filter { $0.target <= value }
                state.waiters.removeAll { $0.target <= value }
                return reached
            }
            for waiter in reached { waiter.continuation.resume() }
        }

        var current: Int { state.withLock { $0.value } }

        /// Whether the count reaches `target` within `limit`: awaited as it happens, or given
        /// up on after `limit` (an absence cannot be awaited as an event).
        func reaches(_ target: Int, within limit: Duration) async -> Bool {
            await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    await withCheckedContinuation { continuation in
                        let now = self.state.withLock { state -> Bool in
                            if state.value >= target { return true }
                            state.waiters.append((target, continuation))
                            return false
                        }
                        if now { continuation.resume() }
                    }
                    return true
                }
                group.addTask {
                    try? await Task.sleep(for: limit)
                    return false
                }
                let first = await group.next() ?? false
                if !first {
                    // Release the waiter: the count may never get there.
                    let waiting = self.state.withLock { state in
                        let waiting = state.waiters.filter { $0.target == target }
                        state.waiters.removeAll { $0.target == target }
                        return waiting
                    }
                    for waiter in waiting { waiter.continuation.resume() }
                }
                group.cancelAll()
                await group.waitForAll()
                return first
            }
        }
    }

    /// Time given to a blocked sender to (wrongly) go on: an absence cannot be awaited as an event.
    static let quietPeriod = Duration.milliseconds(500)

    @Test func aReaderThatStopsHoldsTheServerToTheWindow() async throws {
        // The server tries to send 320 messages (1.3 MB, five windows) and reports each one the
        // transport accepted. Not more: under a loaded suite every message costs several task hops
        // on a busy cooperative pool (2,000 messages once took 74 s on CI, 0.3 s alone).
        let total = 320
        let (sent, sentContinuation) = AsyncStream<Int>.makeStream()
        let counter = Counter()
        let node = try await RPCTestNode.start { router in
            router.registerServerStream(Weft.V1.HealthService.watch) { _, writer, _ in
                for index in 1...total {
                    try await writer.send(.init(status: .serving, detail: Self.detail))
                    counter.increment()
                    sentContinuation.yield(index)
                }
            }
        }
        defer { node.close() }
        var configuration = RPCTestNode.testConfiguration
        configuration.streamWindowBytes = 256 * 1024
        let client = try await node.connect(configuration: configuration)
        defer { client.channel.close(promise: nil) }

        // Open the stream but read nothing.
        let responses = try client.serverStream(Weft.V1.HealthService.watch, .init())
        // A sender may send while its window is positive: 64 messages of 4,101 bytes fill 256 KiB.
        let ceiling = (configuration.streamWindowBytes + Self.messageBytes - 1) / Self.messageBytes
        var events = sent.makeAsyncIterator()
        var accepted = 0
        while accepted < ceiling, let index = await events.next() { accepted = index }
        #expect(accepted == ceiling)
        // And then no more while nobody reads: the server holds the window and nothing beyond it.
        try await Task.sleep(for: Self.quietPeriod)
        #expect(counter.current == ceiling, "the server sent beyond the window of \(ceiling) messages")
        #expect(counter.current * Self.messageBytes <= configuration.streamWindowBytes + Self.messageBytes)

        // Reading resumes the stream to its end, every message in order.
        var received = 0
        for try await update in responses {
            #expect(update.detail.utf8.count == 4096)
            received += 1
        }
        #expect(received == total)
    }

    @Test func clientStreamingRespectsTheServersWindow() async throws {
        // A server with the smallest window (64 KiB) reads 300 requests of 4 KiB: the client must
        // wait for window updates many times over.
        var configuration = RPCTestNode.testConfiguration
        configuration.streamWindowBytes = FlowControl.initialWindowBytes
        let node = try await RPCTestNode.start(configuration: configuration) { router in
            router.registerClientStream(Weft.V1.ParticipantAdministrationService.importAcs) { requests, _ in
                var count: UInt64 = 0
                for try await request in requests {
                    guard request.alias == Self.detail else { throw RPCError(.invalidArgument, "corrupted", errorID: "TEST_CORRUPTED") }
                    count += 1
                }
                return .init(imported: count)
            }
        }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        let response = try await client.clientStream(Weft.V1.ParticipantAdministrationService.importAcs) { writer in
            for _ in 0..<300 { try await writer.send(.init(alias: Self.detail)) }
        }
        #expect(response.imported == 300)
    }

    @Test func aServerThatDoesNotReadBlocksTheClientsWriterThenItsErrorEndsTheCall() async throws {
        let (release, releaseContinuation) = AsyncStream<Void>.makeStream()
        let node = try await RPCTestNode.start { router in
            router.registerClientStream(Weft.V1.ParticipantAdministrationService.importAcs) { _, _ in
                // Reads nothing until released, then refuses the import.
                for await _ in release { break }
                throw RPCError(.failedPrecondition, "the participant is connected to a domain; disconnect first", errorID: "REPAIR_DOMAIN_CONNECTED")
            }
        }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }
        let (sent, sentContinuation) = AsyncStream<Int>.makeStream()
        let counter = Counter()
        let call = Task {
            try await client.clientStream(Weft.V1.ParticipantAdministrationService.importAcs) { writer in
                for index in 1...1000 {
                    try await writer.send(.init(alias: Self.detail))
                    counter.increment()
                    sentContinuation.yield(index)
                }
            }
        }
        // The server's window starts at 1 MiB (its configured window): 256 messages of 4,102 bytes.
        let requestBytes = try Weft.V1.ImportAcsRequest(alias: Self.detail).serializedBytes().count
        let ceiling = (RPCConfiguration.default.streamWindowBytes + requestBytes - 1) / requestBytes
        var events = sent.makeAsyncIterator()
        var accepted = 0
        while accepted < ceiling, let index = await events.next() { accepted = index }
        #expect(accepted == ceiling)
        try await Task.sleep(for: Self.quietPeriod)
        #expect(counter.current == ceiling, "the client sent beyond the window of \(ceiling) requests")
        // The server's error ends the call; the blocked writer learns it and the caller gets the status.
        releaseContinuation.yield()
        await #expect(throws: RPCError(.failedPrecondition, "the participant is connected to a domain; disconnect first", errorID: "REPAIR_DOMAIN_CONNECTED")) {
            _ = try await call.value
        }
    }

    @Test func aPeerThatSendsBeyondTheWindowIsRefused() async throws {
        // A raw frame client ignores flow control: 17 requests of 4,102 bytes pass the initial 64 KiB.
        var configuration = RPCTestNode.testConfiguration
        configuration.streamWindowBytes = FlowControl.initialWindowBytes
        let node = try await RPCTestNode.start(configuration: configuration) { router in
            router.registerClientStream(Weft.V1.ParticipantAdministrationService.importAcs) { requests, _ in
                var count: UInt64 = 0
                for try await _ in requests { count += 1 }
                return .init(imported: count)
            }
        }
        defer { node.close() }
        let payload = try Weft.V1.ImportAcsRequest(alias: Self.detail).serializedBytes()
        var frames: [Weft.V1.Frame] = [.init(streamID: 1, kind: .open(.init(method: Weft.V1.ParticipantAdministrationService.importAcs.path)))]
        frames += Array(repeating: .init(streamID: 1, kind: .message(.init(payload: payload))), count: 17)
        frames.append(.init(streamID: 1, kind: .halfClose(.init())))
        let answer = try await node.firstAnswer(frames)
        guard case .close(let close)? = answer.kind else { Issue.record("expected a close, got \(answer)"); return }
        #expect(close.status?.code == StatusCode.resourceExhausted.rawValue)
        #expect(close.status?.errorID == "RPC_FLOW_CONTROL_VIOLATION")
    }
    /// A peer that sends small requests for large answers and reads none of them: the server
    /// stops reading it once its answers back up (`RPCPipeline.serverWriteBufferWaterMark`),
    /// instead of answering every request into memory. Reading again, the peer gets every answer.
    @Test func aPeerThatReadsNothingIsReadNoFurtherUntilItReads() async throws {
        let total = 3_000
        let answer = String(repeating: "a", count: 64 * 1024)
        let served = Counter()
        let node = try await RPCTestNode.start { router in
            router.register(Weft.V1.HealthService.check) { _, _ in
                served.increment()
                return .init(status: .serving, detail: answer)
            }
        }
        defer { node.close() }
        let connection = try await node.rawConnection()
        defer { connection.close() }
        var frames = connection.frames.makeAsyncIterator()
        func call(_ id: UInt32) -> [Weft.V1.Frame] {
            [
                .init(streamID: id, kind: .open(.init(method: Weft.V1.HealthService.check.path))),
                .init(streamID: id, kind: .message(.init(payload: try! Weft.V1.CheckRequest().serializedBytes()))),
                .init(streamID: id, kind: .halfClose(.init())),
            ]
        }
        // One call answered: the handshake is done. Then the peer stops reading and asks 3,000
        // times for 64 KiB (192 MiB of answers).
        connection.send(call(1))
        var closes = 0
        while closes == 0, let frame = await frames.next() { if case .close? = frame.kind { closes += 1 } }
        try await connection.reading(false)
        // In batches of 50, each sent once the server has answered the last (more at once
        // would be refused, RPC_TOO_MANY_STREAMS), until the server stops answering.
        var sent = 0
        while sent < total {
            let batch = min(50, total - sent)
            for index in sent..<(sent + batch) { connection.send(call(UInt32(2 * index + 3))) }
            sent += batch
            guard await served.reaches(sent + 1, within: Self.quietPeriod) else { break }  // the server reads no more
        }
        try await Task.sleep(for: Self.quietPeriod)
        let answeredWhileNotReading = served.current - 1
        // What the socket buffers and the watermark hold, and a few reads' worth: far fewer.
        #expect(answeredWhileNotReading < total / 3, "the server answered \(answeredWhileNotReading) of \(total) calls into a peer that read nothing")
        // Reading again, every call is answered, each with its 64 KiB and OK.
        try await connection.reading(true)
        var ok = 0
        while ok < sent, let frame = await frames.next() {
            if case .close(let close)? = frame.kind, close.status?.code == StatusCode.ok.rawValue { ok += 1 }
        }
        #expect(ok == sent)
        #expect(served.current - 1 == sent)
    }
}
