import Dispatch
import Testing
import WeftStore
import WeftTestSupport

/// The pooled, off-the-event-loop database and the migrations every node runs at start-up.
@Suite(.timeLimit(.minutes(5))) struct DatabaseTests {
    @Test func manyConcurrentRequestsShareAFewConnections() async throws {
        try await PostgresFixture.withFixture { fixture in
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 3)
            try await database.withConnection { try $0.executeScript("CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL); INSERT INTO counter VALUES (1, 0)") }
            // 200 transactions from 200 tasks through 3 connections: none lost, none doubled.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<200 {
                    group.addTask {
                        try await database.transaction { connection in
                            _ = try connection.execute("UPDATE counter SET n = n + 1 WHERE id = 1")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let total = try await database.withConnection { try $0.execute("SELECT n FROM counter").rows[0][0].int64 }
            #expect(total == 200)
            // At most 3 sessions were ever open from this pool (plus none other).
            let sessions = try await database.withConnection {
                try $0.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'").rows[0][0].int64
            }
            #expect(sessions ?? 0 <= 3)
            await database.shutdown()
        }
    }

    @Test func theTablesAreAnalyzedAfterTheFirstHundredTransactions() async throws {
        try await PostgresFixture.withFixture { fixture in
            // reltuples is -1 until a table is first analyzed (or vacuumed); autovacuum is off
            // for these tables, so only the database's own ANALYZE can change it.
            func reltuples(_ database: PostgresDatabase) async throws -> [Double] {
                try await database.withConnection { connection in
                    try connection.execute("SELECT reltuples::float8::text FROM pg_class WHERE relname IN ('grows', 'stays') ORDER BY relname")
                        .rows.map { Double(try $0[0].string ?? "") ?? .nan }
                }
            }
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 2)
            try await database.withConnection {
                try $0.executeScript(
                    """
                    CREATE TABLE grows (id bigint PRIMARY KEY) WITH (autovacuum_enabled = false);
                    CREATE TABLE stays (id bigint PRIMARY KEY) WITH (autovacuum_enabled = false);
                    """)
            }
            let threshold = try #require(PostgresDatabase.analyzeAfterTransactions.min())
            for id in 1..<threshold {
                try await database.transaction { _ = try $0.execute("INSERT INTO grows VALUES ($1)", [.int64(Int64(id))]) }
            }
            #expect(try await reltuples(database) == [-1, -1])
            try await database.transaction { _ = try $0.execute("INSERT INTO grows VALUES ($1)", [.int64(Int64(threshold))]) }
            // `shutdown` waits for the ANALYZE that transaction started.
            await database.shutdown()
            let reader = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            #expect(try await reltuples(reader) == [Double(threshold), 0])
            await reader.shutdown()
        }
    }

    @Test func aFailedTransactionLeavesNothingBehind() async throws {
        try await PostgresFixture.withFixture { fixture in
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            try await database.withConnection { try $0.executeScript("CREATE TABLE item (id int PRIMARY KEY)") }
            await #expect(throws: PostgresError.self) {
                try await database.transaction { connection in
                    _ = try connection.execute("INSERT INTO item VALUES (1)")
                    _ = try connection.execute("INSERT INTO item VALUES (1)")  // unique violation
                }
            }
            let count = try await database.withConnection { try $0.execute("SELECT count(*) FROM item").rows[0][0].int64 }
            #expect(count == 0)
            await database.shutdown()
        }
    }

    @Test func aConnectionLeftInATransactionIsNotHandedToTheNextCaller() async throws {
        try await PostgresFixture.withFixture { fixture in
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            try await database.withConnection { try $0.executeScript("CREATE TABLE item (id int PRIMARY KEY)") }
            // A body that begins a transaction, writes and returns without ending it.
            let leaked = try await database.withConnection { connection in
                _ = try connection.execute("BEGIN")
                _ = try connection.execute("INSERT INTO item VALUES (1)")
                return try connection.execute("SELECT pg_backend_pid()").rows[0][0].int64
            }
            // The next caller (the pool's only connection) gets a fresh session, and the
            // uncommitted insert is gone with the old one (inside it, the insert was visible).
            let (pid, count) = try await database.withConnection { connection in
                (
                    try connection.execute("SELECT pg_backend_pid()").rows[0][0].int64,
                    try connection.execute("SELECT count(*) FROM item").rows[0][0].int64
                )
            }
            #expect(pid != leaked)
            #expect(count == 0)
            await database.shutdown()
        }
    }

    /// The pool's idle connections die with a restarted server; the next requests run on fresh
    /// ones instead of failing one per dead connection (before, each of them failed with
    /// `connectionLost`, which a caller cannot tell from a request that may have run).
    @Test func aRestartedServerCostsNoRequestThatWaitedForIt() async throws {
        let fixture = try await PostgresFixture.startThrowAwayServer()
        defer { Task { try? await fixture.stop() } }
        let database = PostgresDatabase(url: fixture.url, maximumConnections: 2)
        try await database.withConnection { try $0.executeScript("CREATE TABLE event (id int PRIMARY KEY)") }
        // Two connections open and idle in the pool: two transactions that wait for each other.
        let bothIn = DispatchGroup()
        bothIn.enter()
        bothIn.enter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in 1...2 {
                group.addTask {
                    try await database.transaction { connection in
                        _ = try connection.execute("INSERT INTO event VALUES ($1)", [.int64(Int64(id))])
                        bothIn.leave()
                        bothIn.wait()
                    }
                }
            }
            try await group.waitForAll()
        }
        try await fixture.restart()
        for id in 3...4 {
            try await database.transaction { _ = try $0.execute("INSERT INTO event VALUES ($1)", [.int64(Int64(id))]) }
        }
        let ids = try await database.withConnection { try $0.execute("SELECT id FROM event ORDER BY id").rows.map { try $0[0].int64 } }
        #expect(ids == [1, 2, 3, 4])
        await database.shutdown()
    }

    /// An error that ends the session at COMMIT (here the backend terminates itself in a
    /// deferred trigger, as a fast shutdown does to a commit waiting for a standby) leaves the
    /// transaction's outcome unknown: `connectionLost`, not `queryFailed` (a refusal the caller
    /// could take as "not written").
    @Test func anErrorThatEndsTheSessionAtCommitIsALostConnection() async throws {
        try await PostgresFixture.withFixture { fixture in
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            try await database.withConnection {
                try $0.executeScript(
                    """
                    CREATE TABLE item (id int PRIMARY KEY);
                    CREATE FUNCTION end_session() RETURNS trigger LANGUAGE plpgsql AS
                      $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
                    CREATE CONSTRAINT TRIGGER end_session AFTER INSERT ON item DEFERRABLE INITIALLY DEFERRED
                      FOR EACH ROW EXECUTE FUNCTION end_session();
                    """)
            }
            await #expect {
                try await database.transaction { _ = try $0.execute("INSERT INTO item VALUES (1)") }
            } throws: { error in
                (error as? PostgresError)?.code == .connectionLost
            }
            await database.shutdown()
        }
    }

    static let migrations = [
        Migration(1, "create events", "CREATE TABLE events (id bigint PRIMARY KEY, payload bytea NOT NULL)"),
        Migration(2, "index payload size", "ALTER TABLE events ADD COLUMN size int; CREATE INDEX events_size ON events (size)"),
    ]

    @Test func migrationsApplyOnceAndAreRecorded() async throws {
        try await PostgresFixture.withFixture { fixture in
            let connection = try PostgresConnection(url: fixture.url)
            let migrator = Migrator(component: "sequencer", migrations: Self.migrations)
            #expect(try migrator.status(connection).pending.map(\.version) == [1, 2])
            #expect(throws: MigrationError.pending(component: "sequencer", versions: [1, 2])) { try migrator.requireCurrent(connection) }
            #expect(try migrator.migrate(connection) == [1, 2])
            #expect(try migrator.migrate(connection) == [])
            try migrator.requireCurrent(connection)
            let rows = try connection.execute("SELECT component, version, name FROM schema_version ORDER BY version").rows
            #expect(try rows.map { [try $0[0].string, try $0[1].int64.map { String($0) }, try $0[2].string] } == [
                ["sequencer", "1", "create events"], ["sequencer", "2", "index payload size"],
            ])
            // Another component's migrations are counted separately in the same table.
            let other = Migrator(component: "mediator", migrations: [Migration(1, "create verdicts", "CREATE TABLE verdicts (id bigint)")])
            #expect(try other.migrate(connection) == [1])
            #expect(try migrator.status(connection).applied == [1, 2])
        }
    }

    @Test func twoNodesMigratingAtOnceApplyEachStepOnce() async throws {
        try await PostgresFixture.withFixture { fixture in
            // Two "sequencers" start against one fresh database at the same moment.
            let url = fixture.url
            let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        let database = PostgresDatabase(url: url, maximumConnections: 1)
                        defer { Task { await database.shutdown() } }
                        return try await database.withConnection { connection in
                            try Migrator(component: "sequencer", migrations: Self.migrations).migrate(connection)
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            // One applied both steps, the other found nothing to do (the lock serialized them).
            #expect(applied.sorted { $0.count < $1.count } == [[], [1, 2]])
        }
    }

    @Test func nodesOfDifferentKindsMigratingOneFreshDatabaseAtOnceAllSucceed() async throws {
        try await PostgresFixture.withFixture { fixture in
            // A sequencer, a mediator and a topology store of one `weft run` on fresh databases:
            // they share only `schema_version`, which each creates if it does not exist.
            for round in 0..<4 {
                let name = "fresh_\(round)"
                _ = try PostgresConnection(url: fixture.url).execute("CREATE DATABASE \(name)")
                let url = fixture.url.replacingOccurrences(of: "/weft", with: "/\(name)")
                let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                    for component in ["sequencer", "mediator", "topology"] {
                        group.addTask {
                            let database = PostgresDatabase(url: url, maximumConnections: 1)
                            defer { Task { await database.shutdown() } }
                            let migrations = Self.migrations.map { Migration($0.version, $0.name, $0.sql.replacingOccurrences(of: "events", with: "\(component)_events")) }
                            return try await database.withConnection { connection in
                                try Migrator(component: component, migrations: migrations).migrate(connection)
                            }
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(applied == [[1, 2], [1, 2], [1, 2]], "round \(round)")
            }
        }
    }

    @Test func aChangedOrUnknownOrFailingMigrationStopsTheNode() async throws {
        try await PostgresFixture.withFixture { fixture in
            let connection = try PostgresConnection(url: fixture.url)
            try Migrator(component: "sequencer", migrations: Self.migrations).migrate(connection)
            // The binary's migration 2 was edited after release.
            let edited = [Self.migrations[0], Migration(2, "index payload size", "ALTER TABLE events ADD COLUMN size bigint")]
            #expect(throws: MigrationError.changed(component: "sequencer", version: 2)) {
                try Migrator(component: "sequencer", migrations: edited).status(connection)
            }
            // An older binary that knows only migration 1.
            #expect(throws: MigrationError.unknownVersion(component: "sequencer", version: 2)) {
                try Migrator(component: "sequencer", migrations: [Self.migrations[0]]).status(connection)
            }
            // A migration that fails half-way leaves neither its changes nor its record.
            let failing = Self.migrations + [Migration(3, "broken", "CREATE TABLE half (id int); SELECT no_such_function()")]
            #expect(throws: PostgresError.self) { try Migrator(component: "sequencer", migrations: failing).migrate(connection) }
            #expect(try connection.execute("SELECT to_regclass('half') IS NULL").rows[0][0].bool == true)
            #expect(try Migrator(component: "sequencer", migrations: failing).status(connection).pending.map(\.version) == [3])
        }
    }
}
