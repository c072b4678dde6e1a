import WeftDomainManager
import WeftMediator
import WeftSequencer
import WeftStore
import WeftTopology

/// `weft db status|migrate` for one node.
public enum NodeMigrations {
    static func migrators(for kind: NodeSettings.Kind) -> [Migrator] {
        switch kind {
        case .sequencer: [Sequencer.migrator, SequencerTopology.migrator]
        case .domainManager: [DomainManager.migrator]
        case .mediator: [MediatorStore.migrator, TopologyStore.memberMigrator]
        case .participant: []
        }
    }

    public static func status(_ settings: NodeSettings) async throws -> [String] {
        let database = PostgresDatabase(url: settings.databaseURL, maximumConnections: 1)
        defer { Task { await database.shutdown() } }
        var lines: [String] = []
        for migrator in migrators(for: settings.kind) {
            let status = try await database.withConnection { try migrator.status($0) }
            lines.append("\(migrator.component): applied \(status.applied.map(String.init).joined(separator: ", ").ifEmpty("none")); "
                + "pending \(status.pending.map { "\($0.version) (\($0.name))" }.joined(separator: ", ").ifEmpty("none"))")
        }
        return lines
    }

    public static func migrate(_ settings: NodeSettings) async throws -> [String] {
        let database = PostgresDatabase(url: settings.databaseURL, maximumConnections: 1)
        defer { Task { await database.shutdown() } }
        var lines: [String] = []
        for migrator in migrators(for: settings.kind) {
            let applied = try await database.withConnection { try migrator.migrate($0) }
            lines.append("\(migrator.component): applied \(applied.map(String.init).joined(separator: ", ").ifEmpty("nothing (already current)"))")
        }
        return lines
    }
}

extension String {
    func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}
