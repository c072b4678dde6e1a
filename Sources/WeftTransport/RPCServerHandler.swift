public import Logging
import Synchronization
public import NIOCore
public import WeftWire

/// Serves calls on one connection (docs/wire-protocol.md §4): opens a stream
/// per call, runs its handler as a task, feeds it the requests, sends its
/// responses under flow control and ends the stream with a close.
///
/// Everything here runs on the connection's event loop; handlers run on the
/// concurrency pool and reach the connection only through `eventLoop.submit`.
/// Misuse by the client ends the stream concerned with a status; the
/// connection goes on serving the others.
public final class RPCServerHandler: ChannelInboundHandler {
    public typealias InboundIn = Weft.V1.Frame
    public typealias OutboundOut = Weft.V1.Frame

    /// Sent through the pipeline (`fireUserInboundEventTriggered`) to drain the
    /// connection: GOAWAY, finish the open calls, then close.
    public struct Drain: Sendable {
        public init() {}
    }

    /// A call in progress.
    private struct Stream {
        var context: RPCCallContext
        var requests: AsyncThrowingStream<[UInt8], any Error>.Continuation
        /// The trace the handler runs under: named on the lines logged about the call here
        /// too, on the event loop, outside the handler's `TraceContext.current`.
        let trace: TraceContext
        var receive = ReceiveWindow()
        let send = SendWindow()
        var halfClosed = false
        var task: Task<Void, Never>?
        var deadline: Scheduled<Void>?
        /// When the call was opened, for `weft_rpc_server_call_duration_seconds`.
        let opened = ContinuousClock.now
    }

    private let router: RPCRouter
    private let configuration: RPCConfiguration
    /// This connection's id (`RPCCallContext.connectionID`).
    private let connectionID = RPCServerHandler.nextConnectionID.add(1, ordering: .relaxed).newValue
    private static let nextConnectionID = Atomic<UInt64>(0)
    private var logger: Logger
    private var context: ChannelHandlerContext?
    private var streams: [UInt32: Stream] = [:]
    /// Stream ids only increase: ids up to this one that are not in `streams`
    /// are over, and late frames for them are dropped rather than refused.
    private var highestStreamID: UInt32 = 0
    /// Set once GOAWAY went out: the last stream id still served.
    private var goAwayLastStreamID: UInt32?
    private var idleTimer: Scheduled<Void>?
    /// A flush is queued on the event loop: writes until then go out together.
    private var flushScheduled = false

    public init(router: RPCRouter, configuration: RPCConfiguration = .default, logger: Logger = Logger(label: "weft.rpc.server")) {
        self.router = router
        self.configuration = configuration
        self.logger = logger
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if let remote = context.channel.remoteAddress { logger[metadataKey: "peer"] = "\(remote)" }
        if context.channel.isActive { armIdleTimer() }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        stopEverything()
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        armIdleTimer()
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        stopEverything()
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.warning("connection failed", metadata: ["error": "\(error)", "open_streams": "\(streams.count)"])
        context.fireErrorCaught(error)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is Drain {
            goAway(context, RPCError(.unavailable, "the server is shutting down; retry on another connection", errorID: "RPC_SERVER_DRAINING"))
        } else if event is TLSHandshakeCompleted {
            // Idleness counts from when the connection can carry calls; the handshake has a
            // timeout of its own. (A slow handshake on a busy machine must not use it up.)
            idleTimer?.cancel()
            idleTimer = nil
            if streams.isEmpty { armIdleTimer() }
            context.fireUserInboundEventTriggered(event)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: Frames from the client

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let id = frame.streamID
        switch frame.kind {
        case .open(let open)?:
            opened(context, id, open)
        case .message(let message)?:
            guard var stream = streams[id] else { return unknownStream(context, id) }
            guard !stream.halfClosed else {
                return finish(id, RPCError(.invalidArgument, "a message after half-close on stream \(id)", errorID: "RPC_MESSAGE_AFTER_HALF_CLOSE"))
            }
            guard stream.receive.received(message.payload.count) else {
                return finish(id, RPCError(.resourceExhausted, "the client sent beyond stream \(id)'s flow-control window", errorID: "RPC_FLOW_CONTROL_VIOLATION"))
            }
            stream.requests.yield(message.payload)
            streams[id] = stream
        case .halfClose?:
            guard streams[id] != nil else { return unknownStream(context, id) }
            streams[id]!.halfClosed = true
            streams[id]!.requests.finish()
        case .cancel(let cancel)?:
            guard streams[id] != nil else { return }
            logger.debug("call cancelled by the client", metadata: Self.callMetadata(id, streams[id]?.trace, ["reason": "\(cancel.reason)"]))
            finish(id, RPCError(.cancelled, "the client cancelled the call", errorID: "RPC_CANCELLED"), sendClose: false)
        case .windowUpdate(let update)?:
            // Stream 0 (a connection window) is reserved in v1; 0 grants nothing.
            guard id != 0, update.incrementBytes > 0, let stream = streams[id] else { return }
            guard stream.send.grant(update.incrementBytes) else {
                return finish(id, RPCError(.resourceExhausted, "window update overflows stream \(id)'s window", errorID: "RPC_FLOW_CONTROL_VIOLATION"))
            }
        case .ping?, .goAway?, .pong?, .close?, nil:
            // Pings are KeepaliveHandler's (every RPCPipeline has one); the rest is not the client's to send.
            break
        }
    }

    private func opened(_ context: ChannelHandlerContext, _ id: UInt32, _ open: Weft.V1.FrameOpen) {
        // The caller's trace with a span of this call's own, or a new trace: the handler runs
        // under it, and every line about the call, a refusal included, names it.
        let trace = Self.trace(of: open.metadata)
        guard id % 2 == 1, id > highestStreamID else {
            let error = RPCError(.invalidArgument, "stream \(id) cannot be opened: client streams are odd and increasing", errorID: "RPC_BAD_STREAM_ID")
            if streams[id] != nil { finish(id, error) } else { refuse(context, id, error, trace: trace) }
            return
        }
        highestStreamID = id
        if goAwayLastStreamID != nil {
            return refuse(
                context, id, RPCError(.unavailable, "the server is shutting down; retry on another connection", errorID: "RPC_SERVER_DRAINING"),
                trace: trace)
        }
        guard let route = router.routes[open.method] else {
            return refuse(
                context, id, RPCError(.unimplemented, "no method \(open.method) on this server", errorID: "RPC_UNKNOWN_METHOD"), trace: trace)
        }
        let metadataBytes = open.metadata.reduce(0) { $0 + $1.countedBytes }
        guard metadataBytes <= configuration.maximumMetadataBytes else {
            return refuse(
                context, id,
                RPCError(
                    .resourceExhausted, "the call's metadata is \(metadataBytes) bytes; the limit is \(configuration.maximumMetadataBytes)",
                    errorID: "RPC_METADATA_TOO_LARGE"),
                trace: trace)
        }
        guard streams.count < configuration.maximumConcurrentStreams else {
            return refuse(
                context, id,
                RPCError(
                    .resourceExhausted, "\(streams.count) calls are open on this connection, the most allowed; wait for one to finish",
                    errorID: "RPC_TOO_MANY_STREAMS"),
                trace: trace)
        }
        idleTimer?.cancel()
        idleTimer = nil

        let deadline = open.timeout.map { NIODeadline.now() + .microseconds(max($0.micros, 0)) }
        let call = RPCCallContext(
            method: open.method, metadata: open.metadata, deadline: deadline, streamID: id, remoteAddress: context.channel.remoteAddress,
            connectionID: connectionID)
        let (payloads, requests) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        var stream = Stream(context: call, requests: requests, trace: trace)
        // Only a client-streaming call has use for a window beyond the initial one: the one
        // request of any other call always fits (a window may go negative, §4.2). A grant per
        // unary call was a frame, a TLS record and a system call of its own per `Send`.
        if route.kind == .clientStreaming, let grant = stream.receive.open(to: configuration.streamWindowBytes) {
            context.write(wrapOutboundOut(.init(streamID: id, kind: .windowUpdate(.init(incrementBytes: grant)))), promise: nil)
            scheduleFlush(context)
        }
        streams[id] = stream
        start(context, id, route, call, payloads)
        if let deadline {
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            streams[id]!.deadline = context.eventLoop.scheduleTask(deadline: deadline) {
                loopBound.value.finish(id, RPCError(.deadlineExceeded, "the call's deadline passed", errorID: "RPC_DEADLINE_EXCEEDED"))
            }
        }
    }

    private func start(
        _ context: ChannelHandlerContext, _ id: UInt32, _ route: RPCRouter.Route, _ call: RPCCallContext,
        _ payloads: AsyncThrowingStream<[UInt8], any Error>
    ) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let readCredit = ReadCredit(windowBytes: configuration.streamWindowBytes)
        let inbound = RPCRouter.Inbound(payloads: payloads) { count in
            guard let increment = readCredit.read(count) else { return }
            eventLoop.execute { loopBound.value.grant(id, increment) }
        }
        let window = streams[id]!.send
        let maximumMessageBytes = configuration.maximumMessageBytes
        let configuration = self.configuration
        let send: @Sendable ([UInt8]) async throws -> Void = { payload in
            guard payload.count <= maximumMessageBytes else { throw configuration.messageTooLarge(payload.count) }
            try await window.acquire(payload.count)
            eventLoop.execute { loopBound.value.writeMessage(id, payload) }
        }
        let handler = route.handler
        // Every log line written while serving the call carries its trace_id (TraceContext).
        let trace = streams[id]!.trace
        streams[id]!.task = Task {
            let result: Result<[UInt8]?, any Error>
            do {
                result = .success(try await TraceContext.$current.withValue(trace) { try await handler(inbound, send, call) })
            } catch {
                result = .failure(error)
            }
            eventLoop.execute { loopBound.value.completed(id, result) }
        }
    }

    // MARK: Handlers' side

    /// Grants the client `increment` more bytes on stream `id` (the handler has read them).
    private func grant(_ id: UInt32, _ increment: UInt32) {
        guard let context, streams[id] != nil else { return }
        streams[id]!.receive.granted(increment)
        context.write(wrapOutboundOut(.init(streamID: id, kind: .windowUpdate(.init(incrementBytes: increment)))), promise: nil)
        scheduleFlush(context)
    }

    /// A streamed response whose credit the writer has taken.
    private func writeMessage(_ id: UInt32, _ payload: [UInt8]) {
        guard let context, streams[id] != nil else { return }  // the call ended meanwhile
        context.write(wrapOutboundOut(.init(streamID: id, kind: .message(.init(payload: payload)))), promise: nil)
        scheduleFlush(context)
    }

    /// Flushes once the event loop has run what is queued now, so messages written in a
    /// burst leave in few TLS records and system calls.
    private func scheduleFlush(_ context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let server = loopBound.value
            server.flushScheduled = false
            server.context?.flush()
        }
    }

    /// The handler returned or threw.
    private func completed(_ id: UInt32, _ result: Result<[UInt8]?, any Error>) {
        guard let context, streams[id] != nil else { return }  // already ended (deadline, cancel, close)
        switch result {
        case .success(let response?) where response.count > configuration.maximumMessageBytes:
            finish(id, configuration.messageTooLarge(response.count))
        case .success(let response):
            if let response {
                streams[id]!.send.take(response.count)
                context.write(wrapOutboundOut(.init(streamID: id, kind: .message(.init(payload: response)))), promise: nil)
            }
            finish(id, nil)
        case .failure(let error as RPCError):
            finish(id, error)
        case .failure(let error):
            var failure = RPCError(
                .internal, "the server failed to handle the call; its log has the details under this correlation id", errorID: "RPC_HANDLER_FAILED")
            failure.correlationID = RPCError.makeCorrelationID()
            let stream = streams[id]!
            logger.error(
                "handler failed",
                metadata: Self.callMetadata(
                    id, stream.trace,
                    ["method": "\(stream.context.method)", "error": "\(error)", "correlation_id": "\(failure.correlationID)"]))
            finish(id, failure)
        }
    }

    // MARK: Ending streams and the connection

    /// Answers a stream that was never opened: id beyond any opened, NOT_FOUND;
    /// an id already over is a late frame, dropped.
    private func unknownStream(_ context: ChannelHandlerContext, _ id: UInt32) {
        guard id > highestStreamID || id % 2 == 0 else { return }
        // A stray frame, not a call: no OPEN, so no trace to name.
        refuse(context, id, RPCError(.notFound, "no open stream \(id) on this connection", errorID: "RPC_UNKNOWN_STREAM"), trace: nil)
    }

    /// Closes a stream that never started, with `error`; `trace` is the refused call's.
    private func refuse(_ context: ChannelHandlerContext, _ id: UInt32, _ error: RPCError, trace: TraceContext?) {
        logger.info(
            "call refused", metadata: Self.callMetadata(id, trace, ["error_id": "\(error.errorID)", "reason": "\(error.message)"]))
        RPCMetrics.refused(code: error.code)
        context.writeAndFlush(wrapOutboundOut(.init(streamID: id, kind: .close(.init(status: error.status)))), promise: nil)
    }

    /// Ends stream `id`: stops its handler, fails its waiting writers, and
    /// (unless the client cancelled) sends its close, OK when `error` is nil.
    private func finish(_ id: UInt32, _ error: RPCError?, sendClose: Bool = true) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        stream.deadline?.cancel()
        stream.task?.cancel()
        let over = error ?? RPCError(.cancelled, "the call is over", errorID: "RPC_CALL_OVER")
        stream.requests.finish(throwing: over)
        stream.send.close(over)
        RPCMetrics.finished(method: stream.context.method, code: error?.code ?? .ok, after: ContinuousClock.now - stream.opened)
        if let error, error.code != .ok, sendClose {  // a client's cancel is logged where it arrives
            logger.info(
                "call failed",
                metadata: Self.callMetadata(
                    id, stream.trace, ["method": "\(stream.context.method)", "code": "\(error.code)", "error_id": "\(error.errorID)"]))
        }
        guard let context else { return }
        if sendClose {
            // Flushed with whatever else the event loop writes now: calls that end together
            // (a group commit answers many `Send`s at once) leave in one TLS record.
            let status = error?.status ?? .init(code: StatusCode.ok.rawValue)
            context.write(wrapOutboundOut(.init(streamID: id, kind: .close(.init(status: status)))), promise: nil)
            scheduleFlush(context)
        }
        if streams.isEmpty {
            if goAwayLastStreamID != nil {
                context.flush()  // the last closes, before the connection goes
                context.close(promise: nil)  // drained
            } else {
                armIdleTimer()
            }
        }
    }

    /// The trace a call opened with `metadata` is served under: the caller's `traceparent`
    /// (its first text value, as `RPCCallContext` reads it) with a span of this call's own, or
    /// a new trace when it sent none or a malformed one.
    private static func trace(of metadata: [Weft.V1.MetadataEntry]) -> TraceContext {
        for entry in metadata where entry.key == "traceparent" {
            if case .textValue(let text)? = entry.value { return TraceContext(traceparent: text)?.childSpan() ?? .newTrace() }
        }
        return .newTrace()
    }

    /// `fields` with the stream and `trace_id` and `span_id` of call `id`: lines logged here run
    /// on the event loop, outside the handler's `TraceContext.current`, so they name its trace
    /// themselves; without it an operator could not join them to the handler's lines.
    private static func callMetadata(_ id: UInt32, _ trace: TraceContext?, _ fields: Logger.Metadata) -> Logger.Metadata {
        var metadata = fields
        metadata["stream"] = "\(id)"
        if let trace { metadata.merge(trace.logMetadata) { $1 } }
        return metadata
    }

    /// Sends GOAWAY: no new streams; the open ones finish, then the connection closes.
    private func goAway(_ context: ChannelHandlerContext, _ reason: RPCError) {
        guard goAwayLastStreamID == nil else { return }
        goAwayLastStreamID = highestStreamID
        idleTimer?.cancel()
        logger.info("draining connection", metadata: ["open_streams": "\(streams.count)", "reason": "\(reason.message)"])
        let frame = Weft.V1.Frame(streamID: 0, kind: .goAway(.init(lastStreamID: highestStreamID, status: reason.status)))
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        if streams.isEmpty { context.close(promise: nil) }
    }

    private func armIdleTimer() {
        guard let context, let timeout = configuration.idleTimeout, idleTimer == nil, goAwayLastStreamID == nil else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: timeout) {
            let server = loopBound.value
            server.idleTimer = nil
            guard let context = server.context, server.streams.isEmpty else { return }
            server.goAway(context, RPCError(.unavailable, "the connection was idle for \(timeout); reconnect when needed", errorID: "RPC_IDLE_TIMEOUT"))
        }
    }

    /// The connection is gone: every handler stops, every waiting writer fails.
    private func stopEverything() {
        idleTimer?.cancel()
        idleTimer = nil
        let open = streams
        streams = [:]
        let gone = RPCError(.unavailable, "the connection closed", errorID: "RPC_CONNECTION_CLOSED")
        for (_, stream) in open {
            stream.deadline?.cancel()
            stream.task?.cancel()
            stream.requests.finish(throwing: gone)
            stream.send.close(gone)
        }
    }
}
