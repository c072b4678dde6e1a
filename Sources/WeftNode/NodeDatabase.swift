import Logging
import WeftStore

/// Start-up checks of a node's database: the schema is current, or is made
/// current when the operator asked for it (`--migrate`, `database.migrate`).
enum NodeDatabase {
    static func prepare(_ database: PostgresDatabase, migrators: [Migrator], migrate: Bool, logger: Logger) async throws {
        for migrator in migrators {
            if migrate {
                let applied = try await database.withConnection { try migrator.migrate($0) }
                if !applied.isEmpty { logger.info("applied migrations", metadata: ["component": "\(migrator.component)", "versions": "\(applied)"]) }
            } else {
                try await database.withConnection { try migrator.requireCurrent($0) }
            }
        }
    }
}
