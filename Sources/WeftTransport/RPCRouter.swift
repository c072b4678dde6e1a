import Synchronization
public import WeftWire

/// The methods a server serves, by path, each with the work that answers it.
///
/// Generated service protocols register themselves here
/// (`HealthServiceProvider.register(on:)`); tests and small tools may register
/// closures directly. A thrown `RPCError` becomes the call's status; any other
/// error becomes INTERNAL with a correlation id that the server's log repeats.
public struct RPCRouter: Sendable {
    /// The request payloads of a call as they arrive, and how reading them returns credit.
    struct Inbound: Sendable {
        let payloads: AsyncThrowingStream<[UInt8], any Error>
        let consumed: @Sendable (Int) -> Void

        func messages<Request: WireMessage>(of: Request.Type) -> RPCMessageStream<Request> {
            RPCMessageStream(payloads: payloads, consumed: consumed) { error in
                RPCError(.invalidArgument, "a request is not a valid \(Request.protoMessageName): \(error)", errorID: "RPC_MALFORMED_REQUEST")
            }
        }

        /// The one request of a unary or server-streaming call.
        func single<Request: WireMessage>(_ path: String, of type: Request.Type) async throws -> Request {
            var iterator = messages(of: type).makeAsyncIterator()
            guard let request = try await iterator.next() else {
                throw RPCError(.invalidArgument, "\(path) needs a request message", errorID: "RPC_MISSING_REQUEST")
            }
            guard try await iterator.next() == nil else {
                throw RPCError(.invalidArgument, "\(path) takes one request message", errorID: "RPC_TOO_MANY_MESSAGES")
            }
            return request
        }
    }

    /// Runs a call: requests in; streamed responses through `send`; the response
    /// of a unary or client-streaming call returned.
    typealias Handler = @Sendable (Inbound, @escaping @Sendable ([UInt8]) async throws -> Void, RPCCallContext) async throws -> [UInt8]?

    struct Route: Sendable {
        let kind: MethodKind
        let handler: Handler
    }

    private(set) var routes: [String: Route] = [:]

    public init() {}

    /// Adds the routes of `other` whose paths this router does not serve yet.
    mutating func addMissing(from other: RPCRouter) {
        routes.merge(other.routes) { mine, _ in mine }
    }

    /// Serves `methods` with the routes of a router that exists only later: each call asks
    /// `current()` for it and runs that router's route for the same path, or fails with
    /// `unavailable` while there is none. A participant's Ledger API is served this way before
    /// the participant is connected to a domain: the paths exist (reflection lists them, a
    /// client gets UNAVAILABLE saying why rather than UNIMPLEMENTED).
    public mutating func registerDeferred(
        _ methods: [MethodDescriptor], unavailable: RPCError, current: @escaping @Sendable () async -> RPCRouter?
    ) {
        for method in methods {
            let path = method.path
            routes[path] = Route(kind: method.kind) { inbound, send, context in
                guard let route = await current()?.routes[path] else { throw unavailable }
                return try await route.handler(inbound, send, context)
            }
        }
    }

    /// Wraps the routes of `paths` (every route when nil) in `interceptor`, which runs around
    /// each call: it sees the call's context and kind, calls `proceed` to run the handler (or
    /// throws instead), and sees how the call ended. Authentication and the audit log sit
    /// here, so no handler can be served without them. Routes registered later are not wrapped.
    /// `proceed` may run in a child task (to race the handler against a token's expiry); it
    /// must be called at most once.
    public mutating func intercept(
        _ paths: Set<String>? = nil,
        _ interceptor: @escaping @Sendable (RPCCallContext, MethodKind, _ proceed: @escaping @Sendable () async throws -> Void) async throws
            -> Void
    ) {
        for (path, route) in routes where paths?.contains(path) ?? true {
            let handler = route.handler
            routes[path] = Route(kind: route.kind) { inbound, send, context in
                let response = ResponseBox()
                try await interceptor(context, route.kind) { response.set(try await handler(inbound, send, context)) }
                return response.get()
            }
        }
    }

    /// The paths served, sorted.
    public var paths: [String] { routes.keys.sorted() }

    /// Serves a unary `method` with `body`.
    public mutating func register<Request, Response>(
        _ method: Method<Request, Response>, _ body: @escaping @Sendable (Request, RPCCallContext) async throws -> Response
    ) {
        precondition(method.kind == .unary, "\(method.path) is \(method.kind); use registerServerStream or registerClientStream")
        routes[method.path] = Route(kind: .unary) { inbound, _, context in
            try await body(inbound.single(method.path, of: Request.self), context).serializedBytes()
        }
    }

    /// Serves a server-streaming `method`: `body` sends responses through the
    /// writer; returning ends the call with OK, throwing with the error's status.
    public mutating func registerServerStream<Request, Response>(
        _ method: Method<Request, Response>,
        _ body: @escaping @Sendable (Request, RPCMessageWriter<Response>, RPCCallContext) async throws -> Void
    ) {
        precondition(method.kind == .serverStreaming, "\(method.path) is \(method.kind), not server-streaming")
        routes[method.path] = Route(kind: .serverStreaming) { inbound, send, context in
            try await body(inbound.single(method.path, of: Request.self), RPCMessageWriter(sendBytes: send), context)
            return nil
        }
    }

    /// Serves a client-streaming `method`: `body` reads the requests until the
    /// client half-closes and returns the one response.
    public mutating func registerClientStream<Request, Response>(
        _ method: Method<Request, Response>,
        _ body: @escaping @Sendable (RPCMessageStream<Request>, RPCCallContext) async throws -> Response
    ) {
        precondition(method.kind == .clientStreaming, "\(method.path) is \(method.kind), not client-streaming")
        routes[method.path] = Route(kind: .clientStreaming) { inbound, _, context in
            try await body(inbound.messages(of: Request.self), context).serializedBytes()
        }
    }

    /// Serves a bidirectional-streaming `method`: `body` reads requests and
    /// sends responses as it likes; returning ends the call with OK.
    public mutating func registerBidirectionalStream<Request, Response>(
        _ method: Method<Request, Response>,
        _ body: @escaping @Sendable (RPCMessageStream<Request>, RPCMessageWriter<Response>, RPCCallContext) async throws -> Void
    ) {
        precondition(method.kind == .bidirectionalStreaming, "\(method.path) is \(method.kind), not bidirectional")
        routes[method.path] = Route(kind: .bidirectionalStreaming) { inbound, send, context in
            try await body(inbound.messages(of: Request.self), RPCMessageWriter(sendBytes: send), context)
            return nil
        }
    }
}

/// The response of an intercepted call, handed from wherever `proceed` ran.
private final class ResponseBox: Sendable {
    private let value = Mutex<[UInt8]?>(nil)

    func set(_ bytes: [UInt8]?) { value.withLock { $0 = bytes } }
    func get() -> [UInt8]? { value.withLock { $0 } }
}
