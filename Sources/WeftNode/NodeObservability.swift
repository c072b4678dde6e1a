import Logging
import Synchronization
import WeftObservability

/// A node's `/metrics` and `/health` endpoint (`metrics.listen`), and the
/// health it reports: serving from start until the node begins to drain.
final class NodeObservability: Sendable {
    private let draining = Atomic<Bool>(false)
    private let server = Mutex<ObservabilityServer?>(nil)

    private init() {}

    /// Starts the endpoint when the node's settings ask for one.
    static func start(_ settings: NodeSettings, logger: Logger) async throws -> NodeObservability {
        let node = NodeObservability()
        if let listen = settings.metricsListen {
            let server = try await ObservabilityServer.start(host: listen.host, port: listen.port, logger: logger) { node.health }
            node.server.withLock { $0 = server }
        }
        return node
    }

    /// The bound port, when serving.
    var port: Int? { server.withLock { $0?.port } }

    /// Appended to the node's ready line: where its metrics are.
    var readyNote: String { port.map { ", metrics on port \($0)" } ?? "" }

    var health: ObservabilityServer.Health {
        draining.load(ordering: .relaxed) ? .notServing(reason: "the node is shutting down") : .serving
    }

    /// `/health` answers NOT_SERVING from now on, so load balancers move away
    /// while open calls drain.
    func drain() { draining.store(true, ordering: .relaxed) }

    func close() async {
        let server = self.server.withLock { $0 }
        try? await server?.close()
    }
}
