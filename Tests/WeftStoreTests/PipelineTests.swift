import Testing
import WeftStore

/// `PostgresConnection.enqueue` sends statements without waiting for them (libpq's pipeline
/// mode); the next `execute` or `flush()` reads every result in one round trip, and
/// `PostgresDatabase.transaction` sends `BEGIN` and `COMMIT` the same way. These tests check
/// what a caller relies on: order, results, the first failure thrown with its SQLSTATE and
/// nothing after it applied, transactions all or nothing, prepared statements still right,
/// and a connection that works afterwards whatever happened.
@Suite(.sharedPostgresServer)
struct PipelineTests {
    static func database() throws -> PostgresDatabase {
        PostgresDatabase(url: try #require(SharedPostgresServer.url), maximumConnections: 1)
    }

    static func uniqueTable(_ name: String, _ connection: PostgresConnection) throws -> String {
        let table = "pipeline_\(name)_\(UInt32.random(in: 0...UInt32.max))"
        _ = try connection.execute("CREATE TABLE \(table) (id bigint PRIMARY KEY, note text)")
        return table
    }

    @Test func queuedStatementsRunInOrderAndTheNextExecuteSeesThem() throws {
        let connection = try SharedPostgresServer.connect()
        _ = try connection.execute("CREATE TEMPORARY TABLE ordered (id bigint PRIMARY KEY, note text)")
        for id in Int64(1)...5 {
            try connection.enqueue("INSERT INTO ordered (id, note) VALUES ($1, $2)", [.int64(id), .text("n\(id)")])
        }
        try connection.enqueue("UPDATE ordered SET note = 'changed' WHERE id = $1", [.int64(3)])
        #expect(connection.hasQueuedStatements)
        // Its own result, after the queued statements ran.
        let rows = try connection.execute("SELECT id, note FROM ordered ORDER BY id").rows
        #expect(!connection.hasQueuedStatements)
        #expect(try rows.map { try $0[0].int64 } == [1, 2, 3, 4, 5])
        #expect(try rows.map { try $0[1].string } == ["n1", "n2", "changed", "n4", "n5"])
        // flush() returns each queued statement's result, in order.
        try connection.enqueue("DELETE FROM ordered WHERE id > $1", [.int64(3)])
        try connection.enqueue("SELECT count(*) FROM ordered")
        let results = try connection.flush()
        #expect(results.count == 2)
        #expect(results[0].affectedRowCount == 2)
        #expect(try results[1].rows.first?.first?.int64 == 3)
        #expect(try connection.flush().isEmpty)
    }

    @Test func theFirstFailureIsThrownAndNothingAfterItRuns() throws {
        let connection = try SharedPostgresServer.connect()
        _ = try connection.execute("CREATE TEMPORARY TABLE failing (id bigint PRIMARY KEY)")
        try connection.enqueue("INSERT INTO failing (id) VALUES (1)")
        try connection.enqueue("INSERT INTO failing (id) VALUES (1)")  // unique violation
        try connection.enqueue("INSERT INTO failing (id) VALUES (2)")
        #expect {
            try connection.flush()
        } throws: { error in
            (error as? PostgresError)?.sqlState == "23505"
        }
        // Outside a transaction the pipeline up to the failure was one implicit transaction:
        // none of it stays. The connection takes the next command.
        #expect(try connection.execute("SELECT count(*) FROM failing").rows.first?.first?.int64 == 0)
        try connection.enqueue("INSERT INTO failing (id) VALUES (3)")
        #expect(try connection.execute("SELECT count(*) FROM failing").rows.first?.first?.int64 == 1)
    }

    /// A statement is prepared on its second call in a pipeline too; one whose preparation
    /// fails is not taken for prepared afterwards (the next call reports the same error, not
    /// a missing prepared statement).
    @Test func statementsArePreparedOnTheWayAndAFailedPreparationIsForgotten() throws {
        let connection = try SharedPostgresServer.connect()
        let insert = "INSERT INTO prepared_on_the_way (id) VALUES ($1)"
        _ = try connection.execute("CREATE TEMPORARY TABLE prepared_on_the_way (id bigint PRIMARY KEY)")
        for id in Int64(1)...4 { try connection.enqueue(insert, [.int64(id)]) }
        try connection.flush()
        #expect(try PreparedStatementTests.preparedTexts(connection).filter { $0 == insert }.count == 1)
        #expect(try connection.execute("SELECT count(*) FROM prepared_on_the_way").rows.first?.first?.int64 == 4)

        let broken = "SELECT id FROM no_such_table_here WHERE id = $1"
        for _ in 0..<3 {
            try connection.enqueue(broken, [.int64(1)])
            #expect {
                try connection.flush()
            } throws: { error in
                (error as? PostgresError)?.sqlState == "42P01"
            }
        }
        #expect(try connection.execute("SELECT 1").rows.count == 1)
    }

    @Test func aTransactionOfQueuedWritesCommitsAllOfThem() async throws {
        let database = try Self.database()
        let table = try Self.uniqueTable("commit", try SharedPostgresServer.connect())
        let inserted = try await database.transaction { connection in
            for id in Int64(1)...10 {
                try connection.enqueue("INSERT INTO \(table) (id, note) VALUES ($1, $2)", [.int64(id), .text("row")])
            }
            return 10
        }
        #expect(inserted == 10)
        let count = try await database.withConnection { connection in
            try connection.execute("SELECT count(*) FROM \(table)").rows.first?.first?.int64
        }
        #expect(count == 10)
        await database.shutdown()
    }

    @Test func aQueuedFailureRollsTheWholeTransactionBack() async throws {
        let database = try Self.database()
        let table = try Self.uniqueTable("rollback", try SharedPostgresServer.connect())
        await #expect {
            try await database.transaction { connection in
                try connection.enqueue("INSERT INTO \(table) (id) VALUES (1)")
                try connection.enqueue("INSERT INTO \(table) (id) VALUES (1)")  // unique violation
                try connection.enqueue("INSERT INTO \(table) (id) VALUES (2)")
            }
        } throws: { error in
            (error as? PostgresError)?.sqlState == "23505"
        }
        // Thrown by the body itself, with writes queued: rolled back too.
        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await database.transaction { connection in
                try connection.enqueue("INSERT INTO \(table) (id) VALUES (3)")
                throw Refused()
            }
        }
        // The same (only) connection serves the next transaction, which commits.
        try await database.transaction { connection in
            try connection.enqueue("INSERT INTO \(table) (id) VALUES (4)")
        }
        let ids = try await database.withConnection { connection in
            try connection.execute("SELECT id FROM \(table) ORDER BY id").rows.map { try $0[0].int64 }
        }
        #expect(ids == [4])
        await database.shutdown()
    }

    @Test func aPipelinedTransactionReturnsEachStatementsResultAndIsAllOrNothing() async throws {
        let database = try Self.database()
        let table = try Self.uniqueTable("returning", try SharedPostgresServer.connect())
        let results = try await database.pipelinedTransaction { connection in
            try connection.enqueue("INSERT INTO \(table) (id, note) VALUES (1, 'one'), (2, 'two')")
            try connection.enqueue("SELECT note FROM \(table) WHERE id = $1", [.int64(2)])
            try connection.enqueue("UPDATE \(table) SET note = 'uno' WHERE id = 1")
        }
        // The body's three results, in order, without BEGIN's and COMMIT's.
        #expect(results.count == 3)
        #expect(results.first?.affectedRowCount == 2)
        #expect(try results.dropFirst().first?.rows.first?.first?.string == "two")
        #expect(results.last?.affectedRowCount == 1)
        await #expect {
            try await database.pipelinedTransaction { connection in
                try connection.enqueue("INSERT INTO \(table) (id, note) VALUES (3, 'three')")
                try connection.enqueue("INSERT INTO \(table) (id) VALUES (1)")  // unique violation
            }
        } throws: { error in
            (error as? PostgresError)?.sqlState == "23505"
        }
        let notes = try await database.withConnection { connection in
            try connection.execute("SELECT note FROM \(table) ORDER BY id").rows.map { try $0[0].string }
        }
        #expect(notes == ["uno", "two"])
        await database.shutdown()
    }
}
