import Logging
import Synchronization
import WeftObservability
import WeftStore
import WeftTransport

/// A node's `/metrics` and `/health` endpoint (`metrics.listen`), and the
/// health it reports: not serving while the node starts, serving once it
/// does, and not serving again from the moment it begins to drain.
///
/// A node starts it before anything else (its database, its core, its RPC
/// server): a port in use then stops the node with nothing half-started to
/// unwind, and `/health` already tells an orchestrator that the process is
/// up but not serving yet.
final class NodeObservability: Sendable {
    private enum Phase { case starting, serving, draining }
    private let phase = Mutex(Phase.starting)
    private let server = Mutex<ObservabilityServer?>(nil)

    private init() {}

    /// Runs a node's `serve` with its metrics endpoint and its database: the endpoint first, so
    /// that a port in use stops the node with nothing started yet, and both closed, awaited, on
    /// every way out, so that the connections are closed before the process exits.
    static func running(
        _ settings: NodeSettings, logger: Logger, _ serve: (PostgresDatabase, NodeObservability) async throws -> Void
    ) async throws {
        let observability = try await start(settings, logger: logger)
        let database = PostgresDatabase(url: settings.databaseURL, maximumConnections: settings.databaseConnections, logger: logger)
        do {
            try await serve(database, observability)
        } catch {
            await observability.close()
            await database.shutdown()
            throw error
        }
        await observability.close()
        await database.shutdown()
    }

    /// Starts the endpoint when the node's settings ask for one; `/health` answers NOT_SERVING
    /// until `serving()`.
    ///
    /// Throws `MetricsListenError` when it cannot listen: NIO's own error names the system
    /// call, not the key an operator has to change.
    static func start(_ settings: NodeSettings, logger: Logger) async throws -> NodeObservability {
        let node = NodeObservability()
        guard let listen = settings.metricsListen else { return node }
        let server: ObservabilityServer
        do {
            server = try await ObservabilityServer.start(host: listen.host, port: listen.port, logger: logger) { node.health }
        } catch {
            throw MetricsListenError(key: settings.section.fullKey("metrics.listen"), host: listen.host, port: listen.port, error)
        }
        node.server.withLock { $0 = server }
        return node
    }

    /// The bound port, when serving.
    var port: Int? { server.withLock { $0?.port } }

    /// Appended to the node's ready line: where its metrics are.
    var readyNote: String { port.map { ", metrics on port \($0)" } ?? "" }

    var health: ObservabilityServer.Health {
        switch phase.withLock({ $0 }) {
        case .starting: .notServing(reason: "the node is starting")
        case .serving: .serving
        case .draining: .notServing(reason: "the node is shutting down")
        }
    }

    /// `/health` answers SERVING from now on: the node has started and listens for calls.
    /// (Not after `drain()`: a node told to stop does not serve again.)
    func serving() {
        phase.withLock { current in
            if current == .starting { current = .serving }
        }
    }

    /// `/health` answers NOT_SERVING from now on, so load balancers move away
    /// while open calls drain.
    func drain() { phase.withLock { $0 = .draining } }

    /// Stops listening. Closing twice is harmless: a node closes the endpoint on every way out.
    func close() async {
        let server = self.server.withLock { current -> ObservabilityServer? in
            let server = current
            current = nil
            return server
        }
        try? await server?.close()
    }
}

/// A node's metrics endpoint could not listen on its `metrics.listen` address. The message
/// names the key and the address and says what to do, as `RPCListenError` does for `listen`,
/// since NIO's own error ("bind(descriptor:ptr:bytes:): Address already in use") names
/// neither.
struct MetricsListenError: Error, CustomStringConvertible, Sendable {
    /// The full configuration key, e.g. `nodes.sequencer1.metrics.listen`.
    let key: String
    /// The failure, classified as the RPC server's own (`addressInUse`, `reason`).
    let listen: RPCListenError

    init(key: String, host: String, port: Int, _ error: any Error) {
        self.key = key
        listen = RPCListenError(host: host, port: port, error)
    }

    var description: String {
        let (host, port) = (listen.host, listen.port)
        if listen.addressInUse {
            return "\(key): cannot listen on \(host):\(port) for /metrics and /health: the port is in use by another process "
                + "(`ss -ltnp 'sport = :\(port)'` shows which); stop it, or give \(key) another port"
        }
        return "\(key): cannot listen on \(host):\(port) for /metrics and /health: \(listen.reason); check that \(host) is an address "
            + "of this machine and that the port is free and allowed"
    }
}
