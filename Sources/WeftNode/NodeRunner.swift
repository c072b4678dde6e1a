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
    public static func run(_ nodes: [NodeSettings], logger: Logger, ready: @escaping @Sendable (String) -> Void) async throws {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        for settings in nodes {
            let service: any Service
            switch settings.kind {
            case .sequencer:
                service = try SequencerNode(settings, logger: logger, ready: ready)
            case .domainManager:
                service = try DomainManagerNode(settings, logger: logger, ready: ready)
            case .mediator:
                service = try MediatorNode(settings, logger: logger, ready: ready)
            case .participant:
                throw ConfigurationError.invalid(
                    key: settings.section.fullKey("kind"), value: settings.kind.rawValue, expected: "a node kind this release runs (sequencer, domain-manager, mediator)",
                    source: settings.section.source(of: "kind") ?? .defaultValue)
            }
            services.append(.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        var configuration = ServiceGroupConfiguration(services: services, logger: logger)
        configuration.gracefulShutdownSignals = [.sigterm, .sigint]
        try await ServiceGroup(configuration: configuration).run()
    }
}
