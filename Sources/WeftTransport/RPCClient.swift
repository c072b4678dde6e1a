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
    }

    private var context: ChannelHandlerContext?
    private var pending: [UInt32: Pending] = [:]
    private var nextStreamID: UInt32 = 1

    public init() {}

    public func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    public func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Starts a unary call; must run on the channel's event loop.
    func start(path: String, request: [UInt8], metadata: [Weft.V1.MetadataEntry], on eventLoop: any EventLoop)
        -> EventLoopFuture<[UInt8]>
    {
        guard let context else {
            return eventLoop.makeFailedFuture(RPCError(.unavailable, "the connection is closed", errorID: "RPC_CONNECTION_CLOSED"))
        }
        let stream = nextStreamID
        nextStreamID += 2
        let promise = context.eventLoop.makePromise(of: [UInt8].self)
        pending[stream] = Pending(promise: promise, response: nil)
        context.write(wrapOutboundOut(.init(streamID: stream, kind: .open(.init(method: path, metadata: metadata)))), promise: nil)
        context.write(wrapOutboundOut(.init(streamID: stream, kind: .message(.init(payload: request)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.init(streamID: stream, kind: .halfClose(.init()))), promise: nil)
        return promise.futureResult
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.kind {
        case .message(let message)?:
            pending[frame.streamID]?.response = message.payload
        case .close(let close)?:
            guard let call = pending.removeValue(forKey: frame.streamID) else { return }
            let status = close.status ?? .init()
            if status.code != StatusCode.ok.rawValue {
                call.promise.fail(RPCError(status))
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

    /// Calls a unary method.
    public func unary<Request, Response>(
        _ method: Method<Request, Response>, _ request: Request, metadata: [Weft.V1.MetadataEntry] = []
    ) async throws -> Response {
        precondition(method.kind == .unary, "\(method.path) is \(method.kind)")
        let bytes = try request.serializedBytes()
        let channel = self.channel
        let response = try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<[UInt8]> in
            do {
                let handler = try channel.pipeline.syncOperations.handler(type: RPCClientHandler.self)
                return handler.start(path: method.path, request: bytes, metadata: metadata, on: channel.eventLoop)
            } catch {
                return channel.eventLoop.makeFailedFuture(error)
            }
        }.get()
        do {
            return try Response(serializedBytes: response)
        } catch {
            throw RPCError(.internal, "the response is not a valid \(Response.protoMessageName): \(error)", errorID: "RPC_MALFORMED_RESPONSE")
        }
    }
}
