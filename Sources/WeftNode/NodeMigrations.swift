import WeftDomainManager
import WeftLedgerAPI
import WeftMediator
import WeftParticipant
import WeftTopology
import WeftSequencer
import WeftStore
import WeftTopology

/// `weft db status|migrate` for one node.
public enum NodeMigrations {
    static func migrators(for kind: NodeSettings.Kind) -> [Migrator] {
        switch kind {
        case .sequencer: [Sequencer.migrator, SequencerTopology.migrator]
        case .domainManager: [DomainManager.migrator]
        case .participant: [ParticipantStore.migrator, TopologyStore.memberMigrator, DomainConnectionStore.migrator, LedgerAPI.migrator]
        case .mediator: [MediatorStore.migrator, TopologyStore.memberMigrator]
        }
    }

    /// One component's schema: the migrations applied and those pending.
    public struct ComponentStatus: Sendable {
        public let component: String
        public let applied: [Int]
        public let pending: [(version: Int, name: String)]

        /// `participant: applied 1, 2; pending none`.
        public var line: String {
            "\(component): applied \(applied.map(String.init).joined(separator: ", ").ifEmpty("none")); "
                + "pending \(pending.map { "\($0.version) (\($0.name))" }.joined(separator: ", ").ifEmpty("none"))"
        }
    }

    public static func status(_ settings: NodeSettings) async throws -> [ComponentStatus] {
        let database = PostgresDatabase(url: settings.databaseURL, maximumConnections: 1)
        defer { Task { await database.shutdown() } }
        var result: [ComponentStatus] = []
        for migrator in migrators(for: settings.kind) {
            let status = try await database.withConnection { try migrator.status($0) }
            result.append(
                ComponentStatus(
                    component: migrator.component, applied: status.applied.map { Int($0) },
                    pending: status.pending.map { (Int($0.version), $0.name) }))
        }
        return result
    }

    /// Applies pending migrations: the versions applied per component.
    public static func migrate(_ settings: NodeSettings) async throws -> [(component: String, applied: [Int])] {
        let database = PostgresDatabase(url: settings.databaseURL, maximumConnections: 1)
        defer { Task { await database.shutdown() } }
        var result: [(component: String, applied: [Int])] = []
        for migrator in migrators(for: settings.kind) {
            let applied = try await database.withConnection { try migrator.migrate($0) }
            result.append((migrator.component, applied.map { Int($0) }))
        }
        return result
    }
}

extension String {
    func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}
