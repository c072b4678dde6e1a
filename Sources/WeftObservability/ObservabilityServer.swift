public import NIOCore
import NIOHTTP1
import NIOPosix
public import Logging

/// A node's plain-HTTP endpoint for the platform around it (DESIGN.md §9):
/// `GET /metrics` (Prometheus text format) and `GET /health` (200 when the
/// node serves, 503 when not, for load balancers and orchestrators).
///
/// It is deliberately not on the node's TLS port: scrapers and probes speak
/// HTTP/1.1, and what it serves is not secret (no payloads, no identities
/// beyond member names in labels). Bind it to loopback or a management network.
public final class ObservabilityServer: Sendable {
    /// What `/health` reports.
    public enum Health: Sendable, Equatable {
        case serving
        case notServing(reason: String)
    }

    private let channel: any Channel
    /// The bound port (useful when started on port 0).
    public let port: Int

    private init(channel: any Channel, port: Int) {
        self.channel = channel
        self.port = port
    }

    /// Listens on `host:port` (port 0 picks a free one). `health` is asked on
    /// every `/health` request.
    public static func start(
        host: String, port: Int, group: (any EventLoopGroup)? = nil,
        logger: Logger, health: @escaping @Sendable () async -> Health
    ) async throws -> ObservabilityServer {
        WeftMetrics.bootstrap()
        let channel = try await ServerBootstrap(group: group ?? MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPHandler(health: health))
                }
            }
            .bind(host: host, port: port)
            .get()
        let bound = channel.localAddress?.port ?? port
        logger.info("metrics and health served over HTTP", metadata: ["address": "http://\(host):\(bound)/metrics"])
        return ObservabilityServer(channel: channel, port: bound)
    }

    /// Stops listening; requests in progress finish.
    public func close() async throws {
        try await channel.close()
    }
}

/// Answers one request at a time per connection (HTTP/1.1 keep-alive).
private final class HTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let health: @Sendable () async -> ObservabilityServer.Health
    private var request: HTTPRequestHead?

    init(health: @escaping @Sendable () async -> ObservabilityServer.Health) {
        self.health = health
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break  // GET has none; anything sent is ignored
        case .end:
            guard let head = request else { return }
            request = nil
            respond(context, head)
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard head.method == .GET || head.method == .HEAD else {
            return write(context, head, .methodNotAllowed, "text/plain", "only GET and HEAD are served here\n")
        }
        switch path {
        case "/metrics":
            write(context, head, .ok, "text/plain; version=0.0.4; charset=utf-8", WeftMetrics.exposition())
        case "/health":
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let promise = context.eventLoop.makePromise(of: ObservabilityServer.Health.self)
            promise.completeWithTask { [health] in await health() }
            promise.futureResult.whenSuccess { state in
                let (handler, context) = loopBound.value
                switch state {
                case .serving: handler.write(context, head, .ok, "text/plain", "SERVING\n")
                case .notServing(let reason): handler.write(context, head, .serviceUnavailable, "text/plain", "NOT_SERVING: \(reason)\n")
                }
            }
        default:
            write(context, head, .notFound, "text/plain", "not found: this endpoint serves /metrics and /health\n")
        }
    }

    private func write(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ type: String, _ body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
