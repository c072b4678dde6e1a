import Logging
import NIOCore
import Synchronization
import Testing
import WeftTransport
import WeftWire

/// The server's lines about a call carry the trace its handler runs under: the handler's own,
/// `handler failed` (with the correlation id the client is shown), `call failed` and `call
/// refused`. The server writes the last three on the event loop, outside the handler's
/// `TraceContext.current`; without the trace an operator cannot join them to the call.
@Suite(.timeLimit(.minutes(5))) struct CallLogTraceTests {
    struct HandlerBroke: Error {}

    /// The Python client sends no `traceparent`: the server starts a trace of its own, and the
    /// lines it logs about the failure must name that one, not the empty header.
    @Test func everyLineOfAFailedCallWithoutTraceparentCarriesTheHandlersTrace() async throws {
        let sink = LogSink()
        let logger = Logger(label: "weft.rpc.server") { CapturingLogHandler(label: $0, sink: sink) }
        let seen = Captured<TraceContext?>(nil)
        let node = try await RPCTestNode.start(logger: logger) { router in
            router.register(Weft.V1.HealthService.check) { request, _ in
                seen.value = TraceContext.current
                logger.info("checking a service", metadata: ["service": "\(request.service)"])
                throw HandlerBroke()
            }
        }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }

        let failure: RPCError
        do {
            _ = try await client.unary(Weft.V1.HealthService.check, .init(service: "weft.v1.SequencerService"))
            Issue.record("the call succeeded; its handler throws")
            return
        } catch let error as RPCError {
            failure = error
        }
        #expect(failure.errorID == "RPC_HANDLER_FAILED" && !failure.correlationID.isEmpty)

        // The server logs before it sends the close the client just read: every line is in.
        let trace = try #require(seen.value, "the handler ran without a trace")
        #expect(trace.traceID.count == 32)
        let lines = sink.lines.filter { $0.metadata["stream"] != nil || $0.message == "checking a service" }
        for message in ["checking a service", "handler failed", "call failed"] {
            #expect(lines.contains { $0.message == message }, "no '\(message)' line in \(sink.lines)")
        }
        for line in lines {
            #expect(line.metadata["trace_id"] == trace.traceID, "\(line)")
            #expect(line.metadata["span_id"] == trace.spanID, "\(line)")
        }
        // The correlation id the client was shown leads to the line, and from it to the trace.
        let failed = try #require(lines.first { $0.message == "handler failed" })
        #expect(failed.metadata["correlation_id"] == failure.correlationID)
    }

    /// A call refused before any handler runs names the caller's trace, or a new one.
    @Test func aRefusedCallNamesTheCallersTraceOrANewOne() async throws {
        let sink = LogSink()
        let logger = Logger(label: "weft.rpc.server") { CapturingLogHandler(label: $0, sink: sink) }
        let node = try await RPCTestNode.start(logger: logger) { _ in }
        defer { node.close() }
        let client = try await node.connect()
        defer { client.channel.close(promise: nil) }

        let callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        let calls: [[Weft.V1.MetadataEntry]] = [
            [],
            [Weft.V1.MetadataEntry(key: "traceparent", value: .textValue("00-\(callerTraceID)-00f067aa0ba902b7-01"))],
        ]
        for metadata in calls {
            // Not served by this node: refused with UNIMPLEMENTED before any handler runs.
            await #expect(throws: RPCError.self) {
                _ = try await client.unary(Weft.V1.ParticipantAdministrationService.getParticipantID, .init(), metadata: metadata)
            }
        }

        let refused = sink.lines.filter { $0.message == "call refused" }
        try #require(refused.count == 2, "\(sink.lines)")
        #expect(refused.allSatisfy { $0.metadata["error_id"] == "RPC_UNKNOWN_METHOD" })
        let generated = try #require(refused[0].metadata["trace_id"], "\(refused[0])")
        #expect(generated.count == 32 && generated != callerTraceID)
        #expect(refused[0].metadata["span_id"]?.count == 16)
        #expect(refused[1].metadata["trace_id"] == callerTraceID, "\(refused[1])")
        let span = try #require(refused[1].metadata["span_id"], "\(refused[1])")
        #expect(span.count == 16 && span != "00f067aa0ba902b7")  // a span of the server's own
    }
}

/// Every line the loggers built on it wrote, with metadata as text.
final class LogSink: Sendable {
    struct Line: Sendable, CustomStringConvertible {
        let level: Logger.Level
        let message: String
        let metadata: [String: String]

        var description: String { "\(level) \(message) \(metadata.sorted { $0.key < $1.key })" }
    }

    private let captured = Mutex<[Line]>([])

    func append(_ line: Line) { captured.withLock { $0.append(line) } }

    var lines: [Line] { captured.withLock { $0 } }
}

/// Writes into a `LogSink`, merging metadata as `JSONLogHandler` does (the logger's, the task's
/// trace from `TraceContext.loggingMetadata`, the line's), so a test sees what `weft run` logs.
/// A value, as a `LogHandler` should be: metadata set on one logger stays on that logger.
struct CapturingLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var metadataProvider: Logger.MetadataProvider? = TraceContext.loggingMetadata
    let label: String
    let sink: LogSink

    init(label: String, sink: LogSink) {
        self.label = label
        self.sink = sink
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        sink.append(.init(level: event.level, message: event.message.description, metadata: merged.mapValues { "\($0)" }))
    }
}

/// A value a handler records for the test to read after the call.
final class Captured<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>

    init(_ value: Value) { storage = Mutex(value) }

    var value: Value {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
}
