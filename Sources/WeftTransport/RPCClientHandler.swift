public import NIOCore
public import WeftWire

/// The client end of calls on one connection (docs/wire-protocol.md §4):
/// assigns stream ids (odd, increasing), sends open / messages / half-close
/// under flow control, and ends each call on its close frame.
///
/// Runs on the connection's event loop; `RPCClient` reaches it from tasks.
public final class RPCClientHandler: ChannelInboundHandler {
    public typealias InboundIn = Weft.V1.Frame
    public typealias OutboundOut = Weft.V1.Frame

    /// A call in progress.
    private struct Call {
        /// Responses of a streaming call as they arrive; nil for single-response calls.
        var responses: AsyncThrowingStream<[UInt8], any Error>.Continuation?
        /// The one response of a unary or client-streaming call.
        var response: [UInt8]?
        /// Completes at the close: with the single response (nil for streams), or the call's error.
        var result: EventLoopPromise<[UInt8]?>
        var receive = ReceiveWindow()
        let send = SendWindow()
        /// Ends the call at its deadline if the server's answer has not (`deadlinePassed`).
        var deadline: Scheduled<Void>?
    }

    private let configuration: RPCConfiguration
    private var context: ChannelHandlerContext?
    private var calls: [UInt32: Call] = [:]
    private var nextStreamID: UInt32 = 1
    /// Set when the server sent GOAWAY: no new calls on this connection.
    private var goAway: RPCError?
    /// Why the connection failed, for calls that end (or start) after it did.
    private var failure: RPCError?

    public init(configuration: RPCConfiguration = .default) { self.configuration = configuration }

    public func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    public func handlerRemoved(context: ChannelHandlerContext) {
        failAll(failure ?? RPCError(.unavailable, "the connection closed before the call completed", errorID: "RPC_CONNECTION_CLOSED"))
        self.context = nil
    }

    /// Opens a call of `path`; with `request`, sends it and half-closes (unary
    /// and server-streaming calls). With `responses`, response messages go
    /// there as they arrive. Must run on the event loop.
    func start(
        path: String, metadata: [Weft.V1.MetadataEntry], timeout: Duration?, request: [UInt8]?,
        responses: AsyncThrowingStream<[UInt8], any Error>.Continuation?, on eventLoop: any EventLoop
    ) -> (stream: UInt32?, result: EventLoopFuture<[UInt8]?>, window: SendWindow?) {
        if let failure { return (nil, eventLoop.makeFailedFuture(failure), nil) }
        guard let context else {
            return (nil, eventLoop.makeFailedFuture(RPCError(.unavailable, "the connection is closed", errorID: "RPC_CONNECTION_CLOSED")), nil)
        }
        if let goAway { return (nil, eventLoop.makeFailedFuture(goAway), nil) }
        if let request, request.count > configuration.maximumMessageBytes {
            return (nil, eventLoop.makeFailedFuture(configuration.messageTooLarge(request.count)), nil)
        }
        // Refused here what would not even encode (a NUL in a key or a text, which the frame's
        // encoding refuses: the open frame would be lost). The size is the server's to judge:
        // its limit may differ from this side's.
        if let problem = Self.metadataProblem(metadata) {
            return (nil, eventLoop.makeFailedFuture(problem), nil)
        }
        guard nextStreamID < UInt32(Int32.max) else {
            return (nil, eventLoop.makeFailedFuture(RPCError(.unavailable, "this connection has used all its stream ids; open a new one", errorID: "RPC_STREAM_IDS_EXHAUSTED")), nil)
        }
        let id = nextStreamID
        nextStreamID += 2
        var call = Call(responses: responses, response: nil, result: context.eventLoop.makePromise())
        let micros = timeout.map { Int64($0.components.seconds) * 1_000_000 + $0.components.attoseconds / 1_000_000_000_000 }
        let open = Weft.V1.FrameOpen(method: path, metadata: metadata, timeout: micros.map { .init(micros: max($0, 0)) })
        context.write(wrapOutboundOut(.init(streamID: id, kind: .open(open))), promise: nil)
        if responses != nil, let grant = call.receive.open(to: configuration.streamWindowBytes) {
            context.write(wrapOutboundOut(.init(streamID: id, kind: .windowUpdate(.init(incrementBytes: grant)))), promise: nil)
        }
        if let request {
            call.send.take(request.count)
            context.write(wrapOutboundOut(.init(streamID: id, kind: .message(.init(payload: request)))), promise: nil)
            context.write(wrapOutboundOut(.init(streamID: id, kind: .halfClose(.init()))), promise: nil)
        }
        // Calls started in the same turn of the event loop leave in one TLS record.
        scheduleFlush(context)
        if let timeout {
            // The server ends the call at its deadline too, counted from when `open` reached it;
            // but a server that never reads it (its event loop stuck, the path black-holed, the
            // open queued behind a full socket) would leave this caller waiting for ever.
            let nanoseconds = timeout.components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
            let delay: TimeAmount =
                nanoseconds.overflow
                ? .hours(24 * 365 * 100) : .nanoseconds(max(nanoseconds.partialValue + timeout.components.attoseconds / 1_000_000_000, 0))
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            call.deadline = context.eventLoop.scheduleTask(in: delay) { bound.value.deadlinePassed(id) }
        }
        calls[id] = call
        return (id, call.result.futureResult, call.send)
    }

    /// Why `metadata` cannot be sent, if it cannot: a NUL in a key or a text value.
    static func metadataProblem(_ metadata: [Weft.V1.MetadataEntry]) -> RPCError? {
        for entry in metadata {
            var text = entry.key.utf8.contains(0)
            if case .textValue(let value)? = entry.value, value.utf8.contains(0) { text = true }
            if text {
                return RPCError(
                    .invalidArgument, "metadata \(entry.key.prefix(64).debugDescription) holds a NUL byte; send binary data as a binary value",
                    errorID: "RPC_INVALID_METADATA")
            }
        }
        return nil
    }

    /// Sends one request of a client-streaming call whose credit the caller has taken.
    func writeMessage(_ id: UInt32, _ payload: [UInt8]) {
        guard let context, calls[id] != nil else { return }  // the call ended meanwhile
        context.write(wrapOutboundOut(.init(streamID: id, kind: .message(.init(payload: payload)))), promise: nil)
        scheduleFlush(context)
    }

    /// The caller sends no more requests (queued after the ones it wrote).
    func halfClose(_ id: UInt32) {
        guard let context, calls[id] != nil else { return }
        context.writeAndFlush(wrapOutboundOut(.init(streamID: id, kind: .halfClose(.init()))), promise: nil)
    }

    /// Grants the server `increment` more bytes on stream `id` (the caller has read them).
    func grant(_ id: UInt32, _ increment: UInt32) {
        guard let context, calls[id] != nil else { return }
        calls[id]!.receive.granted(increment)
        context.write(wrapOutboundOut(.init(streamID: id, kind: .windowUpdate(.init(incrementBytes: increment)))), promise: nil)
        scheduleFlush(context)
    }

    private var flushScheduled = false

    /// Flushes once the event loop has run what is queued now (writes in a burst go out together).
    private func scheduleFlush(_ context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let client = loopBound.value
            client.flushScheduled = false
            client.context?.flush()
        }
    }

    /// Abandons a call: tells the server to stop (a cancel frame) and fails
    /// the call with CANCELLED.
    func cancel(_ id: UInt32) {
        guard calls[id] != nil, let context else { return }
        context.writeAndFlush(wrapOutboundOut(.init(streamID: id, kind: .cancel(.init(reason: "the caller cancelled")))), promise: nil)
        end(id, .failure(RPCError(.cancelled, "the call was cancelled by its caller", errorID: "RPC_CANCELLED")))
    }

    // MARK: Frames from the server

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let id = frame.streamID
        switch frame.kind {
        case .message(let message)?:
            guard var call = calls[id] else { return }
            guard call.receive.received(message.payload.count) else {
                return abandon(id, RPCError(.internal, "the server sent beyond stream \(id)'s flow-control window", errorID: "RPC_FLOW_CONTROL_VIOLATION"))
            }
            if let responses = call.responses {
                responses.yield(message.payload)
            } else if call.response == nil {
                call.response = message.payload
            } else {
                calls[id] = call
                return abandon(id, RPCError(.internal, "the server sent more than one response on stream \(id)", errorID: "RPC_TOO_MANY_RESPONSES"))
            }
            calls[id] = call
        case .close(let close)?:
            guard let call = calls[id] else { return }
            let status = close.status ?? .init()
            if status.code != StatusCode.ok.rawValue {
                end(id, .failure(RPCError(status)))
            } else if call.responses != nil {
                end(id, .success(nil))
            } else if let response = call.response {
                end(id, .success(response))
            } else {
                end(id, .failure(RPCError(.internal, "the server closed the call without a response", errorID: "RPC_NO_RESPONSE")))
            }
        case .windowUpdate(let update)?:
            guard id != 0, update.incrementBytes > 0, let call = calls[id] else { return }
            guard call.send.grant(update.incrementBytes) else {
                return abandon(id, RPCError(.internal, "the server's window update overflows stream \(id)'s window", errorID: "RPC_FLOW_CONTROL_VIOLATION"))
            }
        case .goAway(let goAway)?:
            receivedGoAway(context, goAway)
        case .ping?, .open?, .halfClose?, .cancel?, .pong?, nil:
            // Pings are KeepaliveHandler's (every RPCPipeline has one).
            break
        }
    }

    private func receivedGoAway(_ context: ChannelHandlerContext, _ frame: Weft.V1.FrameGoAway) {
        let reason = frame.status.map { RPCError($0) }
        // Anything but a drain (UNAVAILABLE) is the server refusing bytes this side sent (a
        // frame over its limit, a malformed one) and closing the connection. Which call sent
        // them the server cannot tell, so every call open fails as the lost connection it is
        // (UNAVAILABLE: callers reconnect, a subscription resumes), but with the server's
        // reason and error id instead of a bare EOF; the same bytes sent again are refused again.
        if let reason, reason.code != .unavailable, reason.code != .ok {
            let refused = RPCError(
                .unavailable,
                "the server refused what this connection sent and closed it (\(reason.code)): \(reason.message)",
                errorID: reason.errorID.isEmpty ? "RPC_CONNECTION_CLOSED" : reason.errorID)
            failure = failure ?? refused
            failAll(refused)
            context.close(promise: nil)
            return
        }
        goAway = RPCError(
            .unavailable, "the server is closing this connection (\(reason?.message ?? "no reason given")); open a new one",
            errorID: "RPC_CONNECTION_DRAINING")
        // Calls the server never accepted were not processed: safe to retry elsewhere.
        for id in calls.keys where id > frame.lastStreamID {
            end(id, .failure(RPCError(.unavailable, "the server did not process this call before closing the connection; retry it", errorID: "RPC_GOAWAY")))
        }
        if calls.isEmpty { context.close(promise: nil) }
    }

    /// Call `id` reached its deadline without the server's close: cancel it there, fail it here
    /// as the server would have.
    private func deadlinePassed(_ id: UInt32) {
        guard calls[id] != nil, let context else { return }
        context.writeAndFlush(wrapOutboundOut(.init(streamID: id, kind: .cancel(.init(reason: "the deadline passed")))), promise: nil)
        // The server's own words: whichever side notices first, the caller sees the same error.
        end(id, .failure(RPCError(.deadlineExceeded, "the call's deadline passed", errorID: "RPC_DEADLINE_EXCEEDED")))
    }

    /// The server broke the protocol on stream `id`: cancel it there, fail it here.
    private func abandon(_ id: UInt32, _ error: RPCError) {
        context?.writeAndFlush(wrapOutboundOut(.init(streamID: id, kind: .cancel(.init(reason: error.message)))), promise: nil)
        end(id, .failure(error))
    }

    /// Completes call `id` with `result` and forgets it.
    private func end(_ id: UInt32, _ result: Result<[UInt8]?, RPCError>) {
        guard let call = calls.removeValue(forKey: id) else { return }
        call.deadline?.cancel()
        switch result {
        case .success(let response):
            call.send.close(RPCError(.cancelled, "the call is over", errorID: "RPC_CALL_OVER"))
            call.responses?.finish()
            call.result.succeed(response)
        case .failure(let error):
            call.send.close(error)
            call.responses?.finish(throwing: error)
            call.result.fail(error)
        }
        if goAway != nil, calls.isEmpty { context?.close(promise: nil) }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let failure = RPCError(.unavailable, "the connection failed: \(error)", errorID: "RPC_CONNECTION_FAILED")
        self.failure = self.failure ?? failure
        failAll(failure)
        context.fireErrorCaught(error)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        failAll(failure ?? RPCError(.unavailable, "the connection closed before the call completed", errorID: "RPC_CONNECTION_CLOSED"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: RPCError) {
        for id in calls.keys { end(id, .failure(error)) }
    }
}
