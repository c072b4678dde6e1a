public import Logging
import ServiceLifecycle

/// Runs every node a configuration defines (`nodes.<name>`) until SIGTERM or
/// SIGINT, then stops them gracefully: each sends GOAWAY, lets open calls
/// finish (`drain-timeout`) and leaves; the process exits 0. A node that
/// fails to start stops the others and the error is thrown (exit non-zero).
public enum NodeRunner {
    /// The nodes defined in `configuration`, checked.
    public static func nodes(in configuration: Configuration, migrate: Bool = false) throws(ConfigurationError) -> [NodeSettings] {
        let names = configuration.children(of: "nodes")
        guard !names.isEmpty else { throw .missing(key: "nodes") }
        var nodes: [NodeSettings] = []
        for name in names { nodes.append(try NodeSettings(name: name, section: configuration.section("nodes.\(name)"), migrateOverride: migrate)) }
        let topLevel = configuration.children(of: "").filter { $0 != "nodes" }
        guard topLevel.isEmpty else { throw .unknownKeys(topLevel) }
        return nodes
    }

    /// Runs `nodes`; `ready` is called with a line per node once it serves.
    ///
    /// The service group stops its services in the reverse of their order, so the nodes are
    /// ordered by kind: sequencers first (stopped last), then the domain manager, the mediator and
    /// participants. A sequencer that drained while the process's own mediator and domain manager
    /// still followed their streams waited its whole drain timeout for them (10 s per sequencer
    /// by default: the demo's domain took 20 s to stop).
    public static func run(_ nodes: [NodeSettings], logger: Logger, ready: @escaping @Sendable (String) -> Void) async throws {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        for settings in Self.startOrder(nodes) {
            let service: any Service
            switch settings.kind {
            case .sequencer:
                service = try SequencerNode(settings, logger: logger, ready: ready)
            case .domainManager:
                service = try DomainManagerNode(settings, logger: logger, ready: ready)
            case .participant:
                service = try ParticipantDaemon(settings, logger: logger, ready: ready)
            case .mediator:
                service = try MediatorNode(settings, logger: logger, ready: ready)
            }
            services.append(.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        var configuration = ServiceGroupConfiguration(services: services, logger: logger)
        configuration.gracefulShutdownSignals = [.sigterm, .sigint]
        try await ServiceGroup(configuration: configuration).run()
    }

    /// `nodes` with the servers before their clients, each kind in configuration order: the
    /// group stops them the other way round, clients first.
    static func startOrder(_ nodes: [NodeSettings]) -> [NodeSettings] {
        let rank: [NodeSettings.Kind: Int] = [.sequencer: 0, .domainManager: 1, .mediator: 2, .participant: 3]
        return nodes.enumerated().sorted { ((rank[$0.element.kind] ?? 4), $0.offset) < ((rank[$1.element.kind] ?? 4), $1.offset) }
            .map(\.element)
    }
}
