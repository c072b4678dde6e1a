public import NIOCore
public import WeftWire

/// The client end of calls on one connection: assigns stream ids (odd,
/// increasing), sends open / message / half-close, and completes each call on
/// its close frame.
public final class RPCClientHandler: ChannelInboundHandler {
    public typealias InboundIn = Weft.V1.Frame
    public typealias OutboundOut = Weft.V1.Frame

    private struct Pending {
        var promise: EventLoopPromise<[UInt8]>
        var response: [UInt8]?
        /// For server-streaming calls: receives each response as it arrives.
        var onMessage: (([UInt8]) -> Void)?
    }

    private var context: ChannelHandlerContext?
    private var pending: [UInt32: Pending] = [:]
    private var nextStreamID: UInt32 = 1

    public init() {}

    public func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    public func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Starts a unary call; must run on the channel's event loop. Returns the
    /// call's stream id (for `cancel`) and its result.
    func start(
        path: String, request: [UInt8], metadata: [Weft.V1.MetadataEntry], timeout: Duration?, on eventLoop: any EventLoop,
        onMessage: (([UInt8]) -> Void)? = nil
    ) -> (stream: UInt32?, result: EventLoopFuture<[UInt8]>) {
        guard let context else {
            return (nil, eventLoop.makeFailedFuture(RPCError(.unavailable, "the connection is closed", errorID: "RPC_CONNECTION_CLOSED")))
        }
        let stream = nextStreamID
        nextStreamID += 2
        let promise = context.eventLoop.makePromise(of: [UInt8].self)
        pending[stream] = Pending(promise: promise, response: nil, onMessage: onMessage)
        let micros = timeout.map { Int64($0.components.seconds) * 1_000_000 + $0.components.attoseconds / 1_000_000_000_000 }
        let open = Weft.V1.FrameOpen(method: path, metadata: metadata, timeout: micros.map { .init(micros: max($0, 0)) })
        context.write(wrapOutboundOut(.init(streamID: stream, kind: .open(open))), promise: nil)
        context.write(wrapOutboundOut(.init(streamID: stream, kind: .message(.init(payload: request)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.init(streamID: stream, kind: .halfClose(.init()))), promise: nil)
        return (stream, promise.futureResult)
    }

    /// Abandons a call: tells the server to stop (a cancel frame) and fails
    /// the call with CANCELLED. Must run on the channel's event loop.
    func cancel(_ stream: UInt32) {
        guard let call = pending.removeValue(forKey: stream), let context else { return }
        context.writeAndFlush(wrapOutboundOut(.init(streamID: stream, kind: .cancel(.init(reason: "the caller cancelled")))), promise: nil)
        call.promise.fail(RPCError(.cancelled, "the call was cancelled by its caller", errorID: "RPC_CANCELLED"))
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.kind {
        case .message(let message)?:
            if let onMessage = pending[frame.streamID]?.onMessage {
                onMessage(message.payload)
            } else {
                pending[frame.streamID]?.response = message.payload
            }
        case .close(let close)?:
            guard let call = pending.removeValue(forKey: frame.streamID) else { return }
            let status = close.status ?? .init()
            if status.code != StatusCode.ok.rawValue {
                call.promise.fail(RPCError(status))
            } else if call.onMessage != nil {
                call.promise.succeed([])  // a stream ends with its close
            } else if let response = call.response {
                call.promise.succeed(response)
            } else {
                call.promise.fail(RPCError(.internal, "the server closed the call without a response", errorID: "RPC_NO_RESPONSE"))
            }
        default:
            break
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RPCError(.unavailable, "the connection failed: \(error)", errorID: "RPC_CONNECTION_FAILED"))
        context.fireErrorCaught(error)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        failAll(RPCError(.unavailable, "the connection closed before the call completed", errorID: "RPC_CONNECTION_CLOSED"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: RPCError) {
        let calls = pending
        pending = [:]
        for call in calls.values { call.promise.fail(error) }
    }
}

/// Typed calls over a connection whose pipeline ends in an `RPCClientHandler`.
public struct RPCClient: Sendable {
    public let channel: any Channel

    public init(channel: any Channel) { self.channel = channel }

    /// Calls a unary method. With `timeout`, the server stops the call's work
    /// and answers DEADLINE_EXCEEDED when it passes; cancelling the calling
    /// task cancels the call on the server.
    public func unary<Request, Response>(
        _ method: Method<Request, Response>, _ request: Request, metadata: [Weft.V1.MetadataEntry] = [],
        timeout: Duration? = nil
    ) async throws -> Response {
        precondition(method.kind == .unary, "\(method.path) is \(method.kind)")
        let bytes = try request.serializedBytes()
        let channel = self.channel
        // The call's stream id and whether the caller cancelled, touched on the event loop only.
        let state = NIOLoopBoundBox.makeEmptyBox(valueType: (stream: UInt32?, cancelled: Bool).self, eventLoop: channel.eventLoop)
        let response = try await withTaskCancellationHandler {
            try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<[UInt8]> in
                if state.value?.cancelled == true {
                    return channel.eventLoop.makeFailedFuture(RPCError(.cancelled, "the call was cancelled by its caller", errorID: "RPC_CANCELLED"))
                }
                do {
                    let handler = try channel.pipeline.syncOperations.handler(type: RPCClientHandler.self)
                    let started = handler.start(path: method.path, request: bytes, metadata: metadata, timeout: timeout, on: channel.eventLoop)
                    state.value = (started.stream, false)
                    return started.result
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }.get()
        } onCancel: {
            channel.eventLoop.execute {
                guard let stream = state.value?.stream else {
                    state.value = (nil, true)
                    return
                }
                try? channel.pipeline.syncOperations.handler(type: RPCClientHandler.self).cancel(stream)
            }
        }
        do {
            return try Response(serializedBytes: response)
        } catch {
            throw RPCError(.internal, "the response is not a valid \(Response.protoMessageName): \(error)", errorID: "RPC_MALFORMED_RESPONSE")
        }
    }

    /// Calls a server-streaming method: the responses as they arrive, ending
    /// with the call (or throwing its error status). Stopping the iteration
    /// early cancels the call on the server.
    public func serverStream<Request, Response>(
        _ method: Method<Request, Response>, _ request: Request, metadata: [Weft.V1.MetadataEntry] = [],
        timeout: Duration? = nil
    ) throws -> AsyncThrowingStream<Response, any Error> {
        precondition(method.kind == .serverStreaming, "\(method.path) is \(method.kind)")
        let bytes = try request.serializedBytes()
        let channel = self.channel
        let (stream, continuation) = AsyncThrowingStream<Response, any Error>.makeStream()
        let state = NIOLoopBoundBox.makeEmptyBox(valueType: (stream: UInt32?, cancelled: Bool).self, eventLoop: channel.eventLoop)
        channel.eventLoop.execute {
            guard state.value?.cancelled != true,
                let handler = try? channel.pipeline.syncOperations.handler(type: RPCClientHandler.self)
            else {
                continuation.finish(throwing: RPCError(.unavailable, "the connection is closed", errorID: "RPC_CONNECTION_CLOSED"))
                return
            }
            let started = handler.start(
                path: method.path, request: bytes, metadata: metadata, timeout: timeout, on: channel.eventLoop
            ) { payload in
                do {
                    continuation.yield(try Response(serializedBytes: payload))
                } catch {
                    continuation.finish(
                        throwing: RPCError(.internal, "a response is not a valid \(Response.protoMessageName): \(error)", errorID: "RPC_MALFORMED_RESPONSE"))
                }
            }
            state.value = (started.stream, false)
            started.result.whenComplete { result in
                switch result {
                case .success: continuation.finish()
                case .failure(let error): continuation.finish(throwing: error)
                }
            }
        }
        continuation.onTermination = { termination in
            guard case .cancelled = termination else { return }
            channel.eventLoop.execute {
                guard let stream = state.value?.stream else {
                    state.value = (nil, true)
                    return
                }
                try? channel.pipeline.syncOperations.handler(type: RPCClientHandler.self).cancel(stream)
            }
        }
        return stream
    }
}
