public import Logging
public import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How a connection is protected.
public enum RPCSecurity: Sendable {
    /// TLS 1.3 with the given context (client or server side).
    case tls(TLSContext)
    /// No encryption or authentication at all: for local experiments only.
    /// Both ends log a warning when they start this way.
    case plaintext
}

/// Builds the pipeline every Weft connection has (docs/wire-protocol.md §1):
/// TLS, frames, keepalive, then the RPC handler.
enum RPCPipeline {
    /// A server connection stops reading its peer while more than `high` bytes wait to be
    /// written to it, and reads again below `low` (`BackPressureHandler`). NIO's defaults
    /// (64 / 32 KiB) would pause a member's requests behind every burst of deliveries.
    static let serverWriteBufferWaterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 256 * 1024, high: 1024 * 1024)

    static func add(
        to channel: any Channel, role: FrameHandler.Role, security: RPCSecurity, configuration: RPCConfiguration,
        rpcHandler: () -> any ChannelHandler
    ) throws {
        let sync = channel.pipeline.syncOperations
        if case .server = role {
            // A peer that does not read what it is sent (slow, or hostile: small requests for
            // large answers) is read no further while more than `writeBufferHighWaterMark` waits
            // for it, so its answers cannot grow without bound in this process. Clients read
            // whatever comes, so two sides never wait on each other.
            try sync.addHandler(BackPressureHandler())
        }
        if case .tls(let context) = security {
            try sync.addHandler(TLSHandler(context: context, handshakeTimeout: configuration.handshakeTimeout))
        }
        try sync.addHandler(FrameHandler(role: role, maximumFrameBytes: configuration.maximumFrameBytes))
        try sync.addHandler(KeepaliveHandler(configuration: configuration))
        try sync.addHandler(rpcHandler())
    }
}

/// A listening Weft server: accepts connections and serves `router` on each.
///
/// `shutdown` drains it gracefully: the listener closes, every connection
/// gets GOAWAY, open calls finish, and connections still busy after the
/// grace period are closed.
public final class RPCServer: Sendable {
    private let listener: any Channel
    private let connections: ConnectionRegistry
    private let logger: Logger
    /// What `weft.v1.HealthService` reports; the node's components set it.
    public let health: HealthStatus

    /// The port the server listens on (useful with port 0).
    public var port: Int { listener.localAddress?.port ?? 0 }
    /// The address the server listens on.
    public var localAddress: SocketAddress? { listener.localAddress }

    private init(listener: any Channel, connections: ConnectionRegistry, logger: Logger, health: HealthStatus) {
        self.health = health
        self.listener = listener
        self.connections = connections
        self.logger = logger
    }

    /// Listens on `host:port` (port 0: any free port) and serves `router`
    /// plus the standard services every node has: `weft.v1.HealthService`,
    /// reporting `health`, and `weft.v1.ReflectionService` (unless `router`
    /// already serves those paths itself).
    public static func start(
        host: String, port: Int, security: RPCSecurity, router: RPCRouter, configuration: RPCConfiguration = .default,
        health: HealthStatus = HealthStatus(), logger: Logger = Logger(label: "weft.rpc.server"), group: (any EventLoopGroup)? = nil
    ) async throws -> RPCServer {
        var standard = router
        standard.registerStandardServices(health: health)
        var served = router
        served.addMissing(from: standard)
        let router = served
        if case .plaintext = security {
            logger.warning("serving WITHOUT TLS: traffic is neither encrypted nor authenticated; never do this outside a local experiment")
        }
        let connections = ConnectionRegistry()
        let bootstrap = ServerBootstrap(group: group ?? MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: RPCPipeline.serverWriteBufferWaterMark)
            .childChannelInitializer { channel in
                switch connections.add(
                    channel, maximum: configuration.maximumConnections, perAddress: configuration.maximumConnectionsPerAddress)
                {
                case .added: break
                case .draining:
                    // Accepted as the server began to shut down, after its connections were
                    // told to drain: never served.
                    return channel.close()
                case .full(let refusedSinceLastLine?):
                    // One line per 10 s at most: a flood of connections must not flood the log.
                    logger.warning(
                        "refused connections: the server holds the most it allows; raise rpc.max-connections if the load is legitimate",
                        metadata: [
                            "peer": "\(channel.remoteAddress.map { "\($0)" } ?? "?")", "maximum": "\(configuration.maximumConnections)",
                            "refused": "\(refusedSinceLastLine)",
                        ])
                    return channel.close()
                case .full(nil), .fullForAddress(nil):
                    return channel.close()
                case .fullForAddress(let refusedSinceLastLine?):
                    logger.warning(
                        "refused connections: their address holds the most connections one address may; raise rpc.max-connections-per-address if many clients share it (a proxy, NAT, an IPv6 /64 subnet)",
                        metadata: [
                            "peer": "\(channel.remoteAddress.map { "\($0)" } ?? "?")",
                            "counted_as": "\(ConnectionRegistry.addressKey(channel.remoteAddress))",
                            "maximum": "\(configuration.maximumConnectionsPerAddress)", "refused": "\(refusedSinceLastLine)",
                        ])
                    return channel.close()
                }
                return channel.eventLoop.makeCompletedFuture {
                    try RPCPipeline.add(to: channel, role: .server, security: security, configuration: configuration) {
                        RPCServerHandler(router: router, configuration: configuration, logger: logger)
                    }
                }
            }
        let listener: any Channel
        do {
            listener = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            let failure = RPCListenError(host: host, port: port, error)
            logger.error("cannot listen", metadata: ["address": "\(host):\(port)", "error": "\(failure.reason)"])
            throw failure
        }
        logger.info("listening", metadata: ["address": "\(listener.localAddress.map { "\($0)" } ?? "?")", "methods": "\(router.paths.count)"])
        return RPCServer(listener: listener, connections: connections, logger: logger, health: health)
    }

    /// Stops accepting, drains every connection (GOAWAY, open calls finish),
    /// and after `gracePeriod` closes the connections still open.
    public func shutdown(gracePeriod: TimeAmount = .seconds(10)) async {
        health.set(.notServing, detail: "shutting down")
        // Taken before the listener closes, and no connection is added after it: one accepted
        // in between is closed by its initializer rather than served without a GOAWAY.
        let open = connections.drain()
        try? await listener.close()
        logger.info("shutting down", metadata: ["connections": "\(open.count)", "grace_period": "\(gracePeriod)"])
        for channel in open { channel.pipeline.fireUserInboundEventTriggered(RPCServerHandler.Drain()) }
        await withTaskGroup(of: Void.self) { group in
            for channel in open {
                group.addTask {
                    let forced = channel.eventLoop.scheduleTask(in: gracePeriod) { channel.close(promise: nil) }
                    try? await channel.closeFuture.get()
                    forced.cancel()
                }
            }
        }
    }

    /// Closes the listener and every connection at once, without draining.
    public func close() async {
        try? await listener.close()
        // Together: each waits until what it wrote leaves (at most `closeWriteTimeout` for a
        // peer that reads nothing), and one after another that would add up.
        await withTaskGroup(of: Void.self) { group in
            for channel in connections.drain() { group.addTask { try? await channel.close() } }
        }
    }
}

/// The open connections of a server, added as they are accepted and removed
/// as they close.
final class ConnectionRegistry: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        /// Connections open per remote IP address (no port), for the per-address limit.
        var perAddress: [String: Int] = [:]
        var draining = false
        /// Refusals for a full server, and for a full address, each with its own warnings.
        var full = Refusals()
        var fullAddress = Refusals()
    }

    /// Connections refused since the last warning of their kind, and when that was.
    private struct Refusals {
        var count = 0
        var warnedAt: ContinuousClock.Instant?

        /// Counts a refusal; the refusals since the last warning when one is due now (one per
        /// 10 s: a flood must not flood the log), nil otherwise.
        mutating func refusal() -> Int? {
            count += 1
            let now = ContinuousClock.now
            guard warnedAt.map({ now - $0 >= .seconds(10) }) ?? true else { return nil }
            warnedAt = now
            defer { count = 0 }
            return count
        }
    }
    private let state = Mutex(State())

    /// `full` and `fullForAddress` carry the connections refused since the last warning when
    /// one is due now, nil otherwise.
    enum Admission { case added, draining, full(Int?), fullForAddress(Int?) }

    /// Registers `channel`, unless the server is draining, holds `maximum` connections, or
    /// `perAddress` from the channel's remote IP address.
    func add(_ channel: any Channel, maximum: Int, perAddress: Int) -> Admission {
        let key = ObjectIdentifier(channel)
        let address = Self.addressKey(channel.remoteAddress)
        let admission = state.withLock { state -> Admission in
            if state.draining { return .draining }
            guard state.channels.count < maximum else { return .full(state.full.refusal()) }
            guard state.perAddress[address, default: 0] < perAddress else {
                return .fullForAddress(state.fullAddress.refusal())
            }
            state.channels[key] = channel
            state.perAddress[address, default: 0] += 1
            return .added
        }
        if case .added = admission {
            channel.closeFuture.whenComplete { _ in
                self.state.withLock { state in
                    state.channels.removeValue(forKey: key)
                    let left = state.perAddress[address, default: 1] - 1
                    state.perAddress[address] = left > 0 ? left : nil
                }
            }
        }
        return admission
    }

    /// What a connection from `address` counts under for the per-address limit: an IPv4
    /// address; an IPv6 address's /64, since one host may hold a whole /64 (privacy addresses,
    /// a delegated prefix) and connect from any address in it — also the clients of a subnet
    /// count together, so raise the limit for a subnet of many; an IPv4-mapped IPv6 address (a
    /// dual-stack listener) as its IPv4 address; a link-local one (fe80::/10, the same /64 on
    /// every link) by its /64 and its interface. A channel without one (not IP) counts under "".
    static func addressKey(_ address: SocketAddress?) -> String {
        switch address {
        case .v4?:
            return address?.ipAddress ?? ""
        case .v6(let v6)?:
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
                return bytes[12..<16].map { String($0) }.joined(separator: ".")
            }
            let hex = bytes[0..<8].map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
            let prefix = stride(from: 0, to: 8, by: 2).map { hex[$0] + hex[$0 + 1] }.joined(separator: ":") + "::/64"
            let linkLocal = bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80
            return linkLocal ? prefix + "%\(v6.address.sin6_scope_id)" : prefix
        default:
            return ""
        }
    }

    /// The connections open now; none is added after.
    func drain() -> [any Channel] {
        state.withLock { state in
            state.draining = true
            return Array(state.channels.values)
        }
    }

}

/// A server could not listen on its address. The message names the address and
/// says what to do, since NIO's own error names only the system call.
public struct RPCListenError: Error, CustomStringConvertible, Sendable {
    public let host: String
    public let port: Int
    /// What the system said, e.g. "Address already in use (errno: 98)".
    public let reason: String
    /// Whether another socket already listens on the port.
    public let addressInUse: Bool

    /// `error` as a failure to listen on `host:port` (also for other listeners of a node, such
    /// as its metrics endpoint, which name their own key around it).
    public init(host: String, port: Int, _ error: any Error) {
        self.host = host
        self.port = port
        if let io = error as? IOError {
            reason = io.description
            addressInUse = io.errnoCode == EADDRINUSE
        } else {
            reason = "\(error)"
            addressInUse = false
        }
    }

    public var description: String {
        if addressInUse {
            return "cannot listen on \(host):\(port): the port is in use by another process "
                + "(`ss -ltnp 'sport = :\(port)'` shows which); stop it, or give this node another port"
        }
        return "cannot listen on \(host):\(port): \(reason); check that \(host) is an address of this machine "
            + "and that the port is free and allowed"
    }
}
