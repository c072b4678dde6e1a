/// One numbered step of a component's schema, embedded in the binary.
///
/// Versions start at 1 and have no gaps. Once released, a migration's SQL never
/// changes: the checksum recorded when it was applied is compared at every
/// start, and a changed migration stops the node.
public struct Migration: Sendable, Hashable {
    public let version: Int
    /// A short name for logs and `weft db status`, e.g. `create events`.
    public let name: String
    /// One or more statements, run in one transaction together with the
    /// `schema_version` row that records them.
    public let sql: String

    public init(_ version: Int, _ name: String, _ sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Where a component's schema stands.
public struct MigrationStatus: Sendable, Hashable {
    /// Versions recorded in `schema_version`, ascending.
    public var applied: [Int]
    /// Migrations not yet applied, in order.
    public var pending: [Migration]
    public var isCurrent: Bool { pending.isEmpty }
}

/// Why a schema cannot be used as it is.
public enum MigrationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Migrations are pending and the node was not told to apply them.
    case pending(component: String, versions: [Int])
    /// The database has a version this binary does not know: it was migrated by a newer release.
    case unknownVersion(component: String, version: Int)
    /// An applied migration's SQL differs from the binary's.
    case changed(component: String, version: Int)
    /// The component's migrations are not numbered 1, 2, 3, …
    case badNumbering(component: String)

    public var description: String {
        switch self {
        case .pending(let component, let versions):
            return "the \(component) schema needs migrations \(versions.map(String.init).joined(separator: ", ")); "
                + "run `weft db migrate` (or start the node with --migrate) after taking a backup"
        case .unknownVersion(let component, let version):
            return "the \(component) schema is at version \(version), which this release does not know: "
                + "it was migrated by a newer release; run that release or restore a backup"
        case .changed(let component, let version):
            return "the \(component) migration \(version) in this binary differs from the one applied to the database; "
                + "released migrations must never change: restore the original migration and add a new one"
        case .badNumbering(let component):
            return "the \(component) migrations are not numbered 1, 2, 3, … without gaps (a bug in this release)"
        }
    }
}

/// Applies a component's numbered migrations, recording each in
/// `schema_version` (component, version, name, checksum, applied_at).
///
/// Every step runs under a PostgreSQL advisory lock named after the component,
/// so several nodes sharing a database (two sequencers) never migrate it twice
/// or read a half-migrated schema.
public struct Migrator: Sendable {
    /// The component the migrations belong to, e.g. `sequencer`: its own rows in `schema_version`.
    public let component: String
    public let migrations: [Migration]

    public init(component: String, migrations: [Migration]) {
        self.component = component
        self.migrations = migrations
    }

    private static let createTable = """
        CREATE TABLE IF NOT EXISTS schema_version (
            component  text        NOT NULL,
            version    integer     NOT NULL,
            name       text        NOT NULL,
            checksum   bytea       NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (component, version)
        )
        """

    /// Where the schema stands; throws if it is ahead of or differs from this binary.
    public func status(_ connection: PostgresConnection) throws -> MigrationStatus {
        try locked(connection) { try currentStatus(connection) }
    }

    /// Applies every pending migration, each in its own transaction; returns the versions applied.
    @discardableResult
    public func migrate(_ connection: PostgresConnection) throws -> [Int] {
        try locked(connection) {
            let status = try currentStatus(connection)
            for migration in status.pending {
                do {
                    try connection.executeScript("BEGIN;\n" + migration.sql + "\n;")
                    _ = try connection.execute(
                        "INSERT INTO schema_version (component, version, name, checksum) VALUES ($1, $2::int8::int4, $3, sha256(convert_to($4, 'UTF8')))",
                        [.text(component), .int64(Int64(migration.version)), .text(migration.name), .text(migration.sql)])
                    _ = try connection.execute("COMMIT")
                } catch {
                    // Neither the migration's changes nor its record survive a failure.
                    if connection.isUsable { _ = try? connection.execute("ROLLBACK") }
                    throw error
                }
            }
            return status.pending.map(\.version)
        }
    }

    /// Throws `MigrationError.pending` unless the schema is current: a node calls this at start-up.
    public func requireCurrent(_ connection: PostgresConnection) throws {
        let status = try status(connection)
        guard status.isCurrent else { throw MigrationError.pending(component: component, versions: status.pending.map(\.version)) }
    }

    private func currentStatus(_ connection: PostgresConnection) throws -> MigrationStatus {
        guard migrations.enumerated().allSatisfy({ $0.offset + 1 == $0.element.version }) else {
            throw MigrationError.badNumbering(component: component)
        }
        // The table is shared by every component: nodes of different kinds migrating one fresh
        // database at once (a sequencer and a mediator in one `weft run`) would race to create
        // it, and PostgreSQL's IF NOT EXISTS does not serialize that (duplicate pg_type key).
        let shared = [PostgresValue.text("weft.schema_version")]
        _ = try connection.execute("SELECT pg_advisory_lock(hashtext($1))", shared)
        defer { _ = try? connection.execute("SELECT pg_advisory_unlock(hashtext($1))", shared) }
        try connection.executeScript(Self.createTable)
        let rows = try connection.execute(
            "SELECT version::int8 FROM schema_version WHERE component = $1 ORDER BY version", [.text(component)]
        ).rows
        var applied: [Int] = []
        for row in rows {
            guard let version = try row[0].int64.map(Int.init) else { continue }
            guard version >= 1, version <= migrations.count else {
                throw MigrationError.unknownVersion(component: component, version: version)
            }
            applied.append(version)
        }
        // Compare checksums one by one: each against its own migration's SQL.
        for version in applied {
            let same = try connection.execute(
                "SELECT checksum = sha256(convert_to($3, 'UTF8')) FROM schema_version WHERE component = $1 AND version = $2::int8::int4",
                [.text(component), .int64(Int64(version)), .text(migrations[version - 1].sql)]
            ).rows.first?.first?.bool
            guard same == true else { throw MigrationError.changed(component: component, version: version) }
        }
        let done = Set(applied)
        return MigrationStatus(applied: applied, pending: migrations.filter { !done.contains($0.version) })
    }

    /// Runs `body` holding the component's advisory lock on `connection`.
    private func locked<Result>(_ connection: PostgresConnection, _ body: () throws -> Result) throws -> Result {
        let key = [PostgresValue.text("weft.schema." + component)]
        _ = try connection.execute("SELECT pg_advisory_lock(hashtext($1))", key)
        defer { _ = try? connection.execute("SELECT pg_advisory_unlock(hashtext($1))", key) }
        return try body()
    }
}
