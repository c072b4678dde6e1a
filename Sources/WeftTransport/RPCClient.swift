import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
public import WeftWire

/// Typed calls over one connection whose pipeline ends in an `RPCClientHandler`.
///
/// Cancelling the calling task cancels the call on the server; a `timeout`
/// makes the server stop the call's work and answer DEADLINE_EXCEEDED.
/// Generated clients (`client.health.check(…)`) are thin wrappers over these.
public struct RPCClient: Sendable {
    public let channel: any Channel
    /// The limits this connection was made with (the client handler's, too).
    public let configuration: RPCConfiguration
    /// The connection's call handler, kept so that calls made after the connection failed
    /// still learn why it failed (the pipeline no longer holds the handler then).
    private let knownHandler: NIOLoopBound<RPCClientHandler>?
    /// Metadata sent with every call ahead of the call's own, e.g. `authorization: Bearer …`
    /// (`withMetadata`): a console verb sets its token once, not at each call site.
    public private(set) var callMetadata: [Weft.V1.MetadataEntry] = []

    public init(channel: any Channel, configuration: RPCConfiguration = .default) {
        self.channel = channel
        self.configuration = configuration
        knownHandler = nil
    }

    private init(channel: any Channel, configuration: RPCConfiguration, handler: NIOLoopBound<RPCClientHandler>) {
        self.channel = channel
        self.configuration = configuration
        knownHandler = handler
    }

    /// The call handler; on the channel's event loop.
    func handler() throws -> RPCClientHandler {
        if let knownHandler { return knownHandler.value }
        return try channel.pipeline.syncOperations.handler(type: RPCClientHandler.self)
    }

    /// Connects to `host:port` with the full client pipeline (TLS or, when
    /// asked for, plaintext; frames; keepalive; calls).
    public static func connect(
        host: String, port: Int, security: RPCSecurity, configuration: RPCConfiguration = .default,
        group: (any EventLoopGroup)? = nil
    ) async throws -> RPCClient {
        if case .plaintext = security {
            Logger(label: "weft.rpc.client").warning(
                "connecting WITHOUT TLS: traffic is neither encrypted nor authenticated; never do this outside a local experiment",
                metadata: ["address": "\(host):\(port)"])
        }
        let handlers = NIOLockedValueBox<NIOLoopBound<RPCClientHandler>?>(nil)
        let channel = try await ClientBootstrap(group: group ?? MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = RPCClientHandler(configuration: configuration)
                    handlers.withLockedValue { $0 = NIOLoopBound(handler, eventLoop: channel.eventLoop) }
                    try RPCPipeline.add(to: channel, role: .client, security: security, configuration: configuration) { handler }
                }
            }
            .connect(host: host, port: port).get()
        guard let handler = handlers.withLockedValue({ $0 }) else { return RPCClient(channel: channel, configuration: configuration) }
        return RPCClient(channel: channel, configuration: configuration, handler: handler)
    }

    /// This client, sending `metadata` with every call (after what it sent already).
    public func withMetadata(_ metadata: [Weft.V1.MetadataEntry]) -> RPCClient {
        var client = self
        client.callMetadata += metadata
        return client
    }

    /// Closes the connection; calls still open fail with UNAVAILABLE.
    public func close() async {
        try? await channel.close()
    }

    /// Calls a unary method.
    public func unary<Request, Response>(
        _ method: Method<Request, Response>, _ request: Request, metadata: [Weft.V1.MetadataEntry] = [], timeout: Duration? = nil
    ) async throws -> Response {
        precondition(method.kind == .unary, "\(method.path) is \(method.kind), not unary")
        let response = try await single(method.path, request: try request.serializedBytes(), metadata: callMetadata + metadata, timeout: timeout)
        return try Self.decode(response)
    }

    /// Calls a server-streaming method: the responses as they arrive, ending
    /// with the call (or throwing its error status). Stopping the iteration
    /// early cancels the call on the server. Responses not yet read are
    /// buffered up to the stream window; the server waits beyond it.
    public func serverStream<Request, Response>(
        _ method: Method<Request, Response>, _ request: Request, metadata: [Weft.V1.MetadataEntry] = [], timeout: Duration? = nil
    ) throws -> RPCMessageStream<Response> {
        precondition(method.kind == .serverStreaming, "\(method.path) is \(method.kind), not server-streaming")
        let bytes = try request.serializedBytes()
        let metadata = callMetadata + metadata
        let channel = self.channel
        let client = self
        let eventLoop = channel.eventLoop
        let (payloads, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        let call = CallState(eventLoop: eventLoop)
        eventLoop.execute {
            guard !call.cancelled else { return }
            guard let handler = try? client.handler() else {
                continuation.finish(throwing: RPCError(.unavailable, "the connection is closed", errorID: "RPC_CONNECTION_CLOSED"))
                return
            }
            let started = handler.start(
                path: method.path, metadata: metadata, timeout: timeout, request: bytes, responses: continuation, on: eventLoop)
            call.stream = started.stream
            // The handler finishes `continuation` itself; a failure before the call started is reported here.
            if started.stream == nil {
                started.result.whenFailure { continuation.finish(throwing: $0) }
            }
        }
        continuation.onTermination = { termination in
            guard case .cancelled = termination else { return }
            call.cancel(client)
        }
        let credit = ReadCredit(windowBytes: configuration.streamWindowBytes)
        return RPCMessageStream(
            payloads: payloads,
            consumed: { count in
                guard let increment = credit.read(count) else { return }
                call.grant(client, increment)
            }, malformed: Self.malformedResponse)
    }

    /// Calls a client-streaming method: `requests` sends the requests through
    /// the writer (each send waits for flow-control credit); when it returns,
    /// the call half-closes and the server's one response is returned. If
    /// `requests` throws, the call is cancelled and its error rethrown,
    /// unless the server had already ended the call with an error status.
    public func clientStream<Request, Response>(
        _ method: Method<Request, Response>, metadata: [Weft.V1.MetadataEntry] = [], timeout: Duration? = nil,
        requests: @Sendable (RPCMessageWriter<Request>) async throws -> Void
    ) async throws -> Response {
        precondition(method.kind == .clientStreaming, "\(method.path) is \(method.kind), not client-streaming")
        let metadata = callMetadata + metadata
        let channel = self.channel
        let client = self
        let eventLoop = channel.eventLoop
        let call = CallState(eventLoop: eventLoop)
        let (result, window) = try await eventLoop.submit {
            let handler = try client.handler()
            let started = handler.start(path: method.path, metadata: metadata, timeout: timeout, request: nil, responses: nil, on: eventLoop)
            call.stream = started.stream
            return (started.result, started.window)
        }.get()
        let maximumMessageBytes = configuration.maximumMessageBytes
        let configuration = self.configuration
        return try await withTaskCancellationHandler {
            let writer = RPCMessageWriter<Request> { payload in
                guard let window else { throw RPCError(.cancelled, "the call is over", errorID: "RPC_CALL_OVER") }
                guard payload.count <= maximumMessageBytes else { throw configuration.messageTooLarge(payload.count) }
                try await window.acquire(payload.count)
                call.write(client, payload)
            }
            do {
                try await requests(writer)
            } catch {
                call.cancel(client)
                // The server's status, if it ended the call first, says more than the writer's error.
                do { _ = try await result.get() } catch let status as RPCError where status.errorID != "RPC_CANCELLED" { throw status }
                throw error
            }
            eventLoop.execute {
                guard let stream = call.stream else { return }
                try? client.handler().halfClose(stream)
            }
            guard let response = try await result.get() else {
                throw RPCError(.internal, "the server closed the call without a response", errorID: "RPC_NO_RESPONSE")
            }
            return try Self.decode(response)
        } onCancel: {
            call.cancel(client)
        }
    }

    /// Sends one request and waits for the one response (unary calls).
    private func single(_ path: String, request: [UInt8], metadata: [Weft.V1.MetadataEntry], timeout: Duration?) async throws -> [UInt8] {
        let channel = self.channel
        let client = self
        let eventLoop = channel.eventLoop
        let call = CallState(eventLoop: eventLoop)
        let response = try await withTaskCancellationHandler {
            try await eventLoop.flatSubmit { () -> EventLoopFuture<[UInt8]?> in
                if call.cancelled {
                    return eventLoop.makeFailedFuture(RPCError(.cancelled, "the call was cancelled by its caller", errorID: "RPC_CANCELLED"))
                }
                do {
                    let handler = try client.handler()
                    let started = handler.start(path: path, metadata: metadata, timeout: timeout, request: request, responses: nil, on: eventLoop)
                    call.stream = started.stream
                    return started.result
                } catch {
                    return eventLoop.makeFailedFuture(RPCError(.unavailable, "the connection is closed", errorID: "RPC_CONNECTION_CLOSED"))
                }
            }.get()
        } onCancel: {
            call.cancel(client)
        }
        guard let response else {
            throw RPCError(.internal, "the server closed the call without a response", errorID: "RPC_NO_RESPONSE")
        }
        return response
    }

    private static func decode<Response: WireMessage>(_ bytes: [UInt8]) throws -> Response {
        do {
            return try Response(serializedBytes: bytes)
        } catch {
            throw malformedResponse(error)
        }
    }

    @Sendable private static func malformedResponse(_ error: WireError) -> RPCError {
        RPCError(.internal, "the server's response does not decode: \(error)", errorID: "RPC_MALFORMED_RESPONSE")
    }
}

/// A call's stream id and whether its caller cancelled it before it started;
/// read and written on the connection's event loop only.
private final class CallState: @unchecked Sendable {
    // Confined to `eventLoop` (asserted): the unchecked Sendable is for carrying it there.
    private let eventLoop: any EventLoop
    private var _stream: UInt32?
    private var _cancelled = false

    init(eventLoop: any EventLoop) { self.eventLoop = eventLoop }

    var stream: UInt32? {
        get { eventLoop.preconditionInEventLoop(); return _stream }
        set { eventLoop.preconditionInEventLoop(); _stream = newValue }
    }

    var cancelled: Bool {
        eventLoop.preconditionInEventLoop()
        return _cancelled
    }

    /// Cancels the call from any thread: a cancel frame if it started, else it never will.
    func cancel(_ client: RPCClient) {
        eventLoop.execute {
            self._cancelled = true
            guard let stream = self._stream else { return }
            try? client.handler().cancel(stream)
        }
    }

    /// Grants the server `increment` more response bytes (the caller has read them).
    func grant(_ client: RPCClient, _ increment: UInt32) {
        eventLoop.execute {
            guard let stream = self._stream else { return }
            try? client.handler().grant(stream, increment)
        }
    }

    /// Sends one request whose credit the caller has taken.
    func write(_ client: RPCClient, _ payload: [UInt8]) {
        eventLoop.execute {
            guard let stream = self._stream else { return }
            try? client.handler().writeMessage(stream, payload)
        }
    }
}
