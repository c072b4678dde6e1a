public import NIOCore
public import WeftWire

/// The unary methods a server serves, by path.
///
/// A first slice of the RPC layer (docs/wire-protocol.md §4): unary calls
/// only. Server streaming, client streaming, deadlines, cancellation and flow
/// control come with the rest of the transport work.
public struct RPCRouter: Sendable {
    typealias Unary = @Sendable ([UInt8]) async throws -> [UInt8]
    private(set) var unary: [String: Unary] = [:]

    public init() {}

    /// Serves `method` with `body`. A thrown `RPCError` becomes the call's
    /// status; any other error becomes INTERNAL.
    public mutating func register<Request, Response>(
        _ method: Method<Request, Response>, _ body: @escaping @Sendable (Request) async throws -> Response
    ) {
        precondition(method.kind == .unary, "\(method.path) is \(method.kind); only unary methods are served so far")
        unary[method.path] = { bytes in
            let request: Request
            do {
                request = try Request(serializedBytes: bytes)
            } catch {
                throw RPCError(.invalidArgument, "the request is not a valid \(Request.protoMessageName): \(error)", errorID: "RPC_MALFORMED_REQUEST")
            }
            return try await body(request).serializedBytes()
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
        var task: Task<[UInt8], any Error>
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
            guard router.unary[open.method] != nil else {
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
            guard let request = call.request, let handler = router.unary[call.path] else {
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
        _ context: ChannelHandlerContext, _ stream: UInt32, _ handler: @escaping RPCRouter.Unary, _ request: [UInt8],
        timeout: TimeAmount?
    ) {
        let task = Task { try await handler(request) }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
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
                context.write(server.wrapOutboundOut(.init(streamID: stream, kind: .message(.init(payload: response)))), promise: nil)
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
