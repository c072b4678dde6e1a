public import NIOCore
public import WeftWire

/// Sends one response message of a server-streaming call; suspends until the
/// frame is handed to the connection.
public struct ServerStreamWriter<Response: WireMessage>: Sendable {
    let sendBytes: @Sendable ([UInt8]) async throws -> Void

    /// Sends `response` to the caller.
    public func send(_ response: Response) async throws {
        try await sendBytes(try response.serializedBytes())
    }
}

/// The methods a server serves, by path: unary and server-streaming.
///
/// Part of the RPC layer (docs/wire-protocol.md §4). Client streaming and
/// flow-control windows come with the rest of the transport work.
public struct RPCRouter: Sendable {
    /// Runs a call: request bytes in; response messages through the sender,
    /// or (unary) returned.
    typealias Handler = @Sendable ([UInt8], @escaping @Sendable ([UInt8]) async throws -> Void) async throws -> [UInt8]?
    private(set) var handlers: [String: Handler] = [:]

    public init() {}

    /// Serves a unary `method` with `body`. A thrown `RPCError` becomes the
    /// call's status; any other error becomes INTERNAL.
    public mutating func register<Request, Response>(
        _ method: Method<Request, Response>, _ body: @escaping @Sendable (Request) async throws -> Response
    ) {
        precondition(method.kind == .unary, "\(method.path) is \(method.kind); use registerStream")
        handlers[method.path] = { bytes, _ in try await body(Self.decode(bytes)).serializedBytes() }
    }

    /// Serves a server-streaming `method`: `body` sends responses through the
    /// writer; returning ends the call with OK, throwing with the error's status.
    public mutating func registerStream<Request, Response>(
        _ method: Method<Request, Response>,
        _ body: @escaping @Sendable (Request, ServerStreamWriter<Response>) async throws -> Void
    ) {
        precondition(method.kind == .serverStreaming, "\(method.path) is \(method.kind); use register")
        handlers[method.path] = { bytes, send in
            try await body(Self.decode(bytes), ServerStreamWriter(sendBytes: send))
            return nil
        }
    }

    private static func decode<Request: WireMessage>(_ bytes: [UInt8]) throws -> Request {
        do {
            return try Request(serializedBytes: bytes)
        } catch {
            throw RPCError(.invalidArgument, "the request is not a valid \(Request.protoMessageName): \(error)", errorID: "RPC_MALFORMED_REQUEST")
        }
    }
}

/// Serves calls on one connection: reads frames, runs each call's handler,
/// answers with a message and a close (docs/wire-protocol.md §4).
public final class RPCServerHandler: ChannelInboundHandler {
    public typealias InboundIn = Weft.V1.Frame
    public typealias OutboundOut = Weft.V1.Frame

    private struct Call {
        var path: String
        var request: [UInt8]?
        var timeout: TimeAmount?
    }

    /// A handler at work: its task (cancelled on deadline or client cancel)
    /// and its deadline timer.
    private struct Running {
        var task: Task<[UInt8]?, any Error>
        var deadline: Scheduled<Void>?
    }

    private let router: RPCRouter
    private var calls: [UInt32: Call] = [:]
    /// Streams that have been answered, so late frames for them are ignored
    /// rather than treated as unknown.
    private var finished: Set<UInt32> = []
    private var running: [UInt32: Running] = [:]

    public init(router: RPCRouter) { self.router = router }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let stream = frame.streamID
        switch frame.kind {
        case .open(let open)?:
            guard stream % 2 == 1, calls[stream] == nil, !finished.contains(stream) else {
                close(context, stream, RPCError(.invalidArgument, "stream \(stream) cannot be opened (client streams are odd and used once)", errorID: "RPC_BAD_STREAM_ID"))
                return
            }
            guard router.handlers[open.method] != nil else {
                close(context, stream, RPCError(.unimplemented, "no method \(open.method) on this server", errorID: "RPC_UNKNOWN_METHOD"))
                return
            }
            let timeout = open.timeout.map { TimeAmount.microseconds(max($0.micros, 0)) }
            calls[stream] = Call(path: open.method, request: nil, timeout: timeout)
        case .message(let message)?:
            guard var call = calls[stream] else { return unknownStream(context, stream) }
            guard call.request == nil else {
                calls[stream] = nil
                close(context, stream, RPCError(.invalidArgument, "\(call.path) takes one request message", errorID: "RPC_TOO_MANY_MESSAGES"))
                return
            }
            call.request = message.payload
            calls[stream] = call
        case .halfClose?:
            guard let call = calls.removeValue(forKey: stream) else { return unknownStream(context, stream) }
            guard let request = call.request, let handler = router.handlers[call.path] else {
                close(context, stream, RPCError(.invalidArgument, "\(call.path) needs a request message", errorID: "RPC_MISSING_REQUEST"))
                return
            }
            run(context, stream, handler, request, timeout: call.timeout)
        case .cancel?:
            // The client gave up: stop the handler's work; nothing more is sent.
            calls[stream] = nil
            finished.insert(stream)
            if let work = running.removeValue(forKey: stream) {
                work.deadline?.cancel()
                work.task.cancel()
            }
        case .ping(let ping)?:
            context.writeAndFlush(wrapOutboundOut(.init(streamID: 0, kind: .pong(.init(data: ping.data)))), promise: nil)
        case .pong?, .windowUpdate?, .goAway?, .close?, nil:
            break
        }
    }

    private func unknownStream(_ context: ChannelHandlerContext, _ stream: UInt32) {
        guard !finished.contains(stream) else { return }
        close(context, stream, RPCError(.notFound, "no open stream \(stream) on this connection", errorID: "RPC_UNKNOWN_STREAM"))
    }

    private func run(
        _ context: ChannelHandlerContext, _ stream: UInt32, _ handler: @escaping RPCRouter.Handler, _ request: [UInt8],
        timeout: TimeAmount?
    ) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        // A streamed response goes out on the connection's event loop, while the call is
        // still running there (not after a deadline, cancel or close).
        let send: @Sendable ([UInt8]) async throws -> Void = { bytes in
            try await eventLoop.submit {
                let (server, context) = loopBound.value
                guard server.running[stream] != nil else {
                    throw RPCError(.cancelled, "the call is over", errorID: "RPC_CALL_OVER")
                }
                context.writeAndFlush(server.wrapOutboundOut(.init(streamID: stream, kind: .message(.init(payload: bytes)))), promise: nil)
            }.get()
        }
        let task = Task { try await handler(request, send) }
        var deadline: Scheduled<Void>?
        if let timeout {
            deadline = context.eventLoop.scheduleTask(in: timeout) {
                let (server, context) = loopBound.value
                guard let work = server.running.removeValue(forKey: stream) else { return }
                work.task.cancel()  // the handler's work stops; its result is dropped
                server.close(context, stream, RPCError(.deadlineExceeded, "the call's deadline passed", errorID: "RPC_DEADLINE_EXCEEDED"))
            }
        }
        running[stream] = Running(task: task, deadline: deadline)
        context.eventLoop.makeFutureWithTask { try await task.value }.whenComplete { result in
            let (server, context) = loopBound.value
            // Already answered (deadline) or abandoned (cancel): nothing to send.
            guard let work = server.running.removeValue(forKey: stream) else { return }
            work.deadline?.cancel()
            switch result {
            case .success(let response):
                if let response {
                    context.write(server.wrapOutboundOut(.init(streamID: stream, kind: .message(.init(payload: response)))), promise: nil)
                }
                server.close(context, stream, nil)
            case .failure(let error as RPCError):
                server.close(context, stream, error)
            case .failure(let error):
                server.close(context, stream, RPCError(.internal, "the handler failed: \(error)", errorID: "RPC_HANDLER_FAILED"))
            }
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        // The connection is gone: stop every handler still at work.
        for work in running.values {
            work.deadline?.cancel()
            work.task.cancel()
        }
        running = [:]
        context.fireChannelInactive()
    }

    /// Ends `stream` with OK (`error` nil) or the error's status.
    private func close(_ context: ChannelHandlerContext, _ stream: UInt32, _ error: RPCError?) {
        finished.insert(stream)
        let status = error?.status ?? .init(code: StatusCode.ok.rawValue)
        context.writeAndFlush(wrapOutboundOut(.init(streamID: stream, kind: .close(.init(status: status)))), promise: nil)
    }
}
