import Testing
import WeftStore

/// `PostgresConnection.execute` prepares a statement on its second call and runs it prepared
/// from then on. These tests read the server's own list of the session's prepared statements
/// (`pg_prepared_statements`) to see that it happened, and check that nothing a caller sees
/// changes: results, errors, transactions, tables changed under a statement.
@Suite(.sharedPostgresServer)
struct PreparedStatementTests {
    /// The statements the connection's server session holds prepared.
    static func preparedTexts(_ connection: PostgresConnection) throws -> [String] {
        // This query becomes prepared itself on its second call; the tests look for other texts.
        try connection.execute("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time")
            .rows.map { try $0[0].string ?? "" }
    }

    @Test func aStatementIsPreparedOnItsSecondCallAndAnswersAlike() throws {
        let connection = try SharedPostgresServer.connect()
        let sum = "SELECT $1::bigint + $2::bigint"
        #expect(try connection.execute(sum, [.int64(1), .int64(2)]).rows.first?.first?.int64 == 3)
        #expect(try !Self.preparedTexts(connection).contains(sum))
        #expect(try connection.execute(sum, [.int64(40), .int64(2)]).rows.first?.first?.int64 == 42)
        #expect(try Self.preparedTexts(connection).contains(sum))
        for value in Int64(0)..<20 {
            #expect(try connection.execute(sum, [.int64(value), .int64(value)]).rows.first?.first?.int64 == 2 * value)
        }
        #expect(try Self.preparedTexts(connection).filter { $0 == sum }.count == 1)
    }

    @Test func nullsTextAndBytesInTheSameStatementKeepTheirMeaning() throws {
        let connection = try SharedPostgresServer.connect()
        _ = try connection.execute("CREATE TEMPORARY TABLE notes (id bigint, note text, payload bytea)")
        let insert = "INSERT INTO notes (id, note, payload) VALUES ($1, $2, $3)"
        let values: [[PostgresValue]] = [
            [.int64(1), .text("one"), .bytes([1])], [.int64(2), .null, .null], [.int64(3), .text("three"), .null],
            [.null, .text("four"), .bytes([])], [.int64(5), .text("five"), .bytes([0, 5])],
        ]
        for row in values { _ = try connection.execute(insert, row) }
        let rows = try connection.execute("SELECT id, note, payload FROM notes ORDER BY id NULLS LAST").rows
        try #require(rows.count == 5)
        #expect(try rows.map { try $0[0].int64 } == [1, 2, 3, 5, nil])
        #expect(try rows.map { try $0[1].string } == ["one", nil, "three", "five", "four"])
        #expect(try rows.map { try $0[2].bytes } == [[1], nil, nil, [0, 5], []])
    }

    @Test func aStatementThatCannotBePreparedFailsAlikeEveryTime() throws {
        let connection = try SharedPostgresServer.connect()
        for _ in 0..<3 {
            #expect {
                _ = try connection.execute("SELEC 1")
            } throws: { error in
                (error as? PostgresError)?.sqlState == "42601"
            }
        }
        #expect(try connection.execute("SELECT 1").rows.count == 1)
    }

    @Test func aRolledBackTransactionKeepsTheStatementUsable() throws {
        let connection = try SharedPostgresServer.connect()
        _ = try connection.execute("CREATE TEMPORARY TABLE counted (id bigint PRIMARY KEY)")
        let insert = "INSERT INTO counted (id) VALUES ($1)"
        _ = try connection.execute("BEGIN")
        _ = try connection.execute(insert, [.int64(1)])
        #expect(throws: PostgresError.self) { _ = try connection.execute(insert, [.int64(1)]) }
        _ = try connection.execute("ROLLBACK")
        _ = try connection.execute(insert, [.int64(1)])
        _ = try connection.execute(insert, [.int64(2)])
        #expect(try connection.execute("SELECT count(*) FROM counted").rows.first?.first?.int64 == 2)
        #expect(try Self.preparedTexts(connection).contains(insert))
    }

    @Test func aTableWhoseColumnsChangeUnderAPreparedSelectIsReadAnew() throws {
        let connection = try SharedPostgresServer.connect()
        _ = try connection.execute("CREATE TEMPORARY TABLE shape (a bigint)")
        _ = try connection.execute("INSERT INTO shape (a) VALUES (1)")
        let select = "SELECT * FROM shape"
        _ = try connection.execute(select)
        #expect(try connection.execute(select).columns.map(\.name) == ["a"])
        #expect(try Self.preparedTexts(connection).contains(select))
        _ = try connection.execute("ALTER TABLE shape ADD COLUMN b text")
        let changed = try connection.execute(select)
        #expect(changed.columns.map(\.name) == ["a", "b"])
        #expect(try changed.rows.first?[0].int64 == 1)
        #expect(try connection.execute(select).columns.map(\.name) == ["a", "b"])
    }

    @Test func statementsBeyondTheLimitRunUnprepared() throws {
        let connection = try SharedPostgresServer.connect()
        let limit = PostgresConnection.preparedStatementsMax
        for number in 0..<(limit + 10) {
            let sql = "SELECT \(number)::bigint + $1::bigint"
            for _ in 0..<2 {
                #expect(try connection.execute(sql, [.int64(1)]).rows.first?.first?.int64 == Int64(number) + 1)
            }
        }
        let held = try connection.execute("SELECT count(*) FROM pg_prepared_statements").rows.first?.first?.int64
        #expect(held == Int64(limit))
    }
}

/// Array parameters, as `unnest` takes them to insert many rows with one statement text.
@Suite(.sharedPostgresServer)
struct ArrayParameterTests {
    @Test func arraysOfEveryKindRoundTripThroughUnnestWithNullsAndEdgeValues() throws {
        let connection = try SharedPostgresServer.connect()
        _ = try connection.execute("CREATE TEMPORARY TABLE many (id bigint, small smallint, note text, payload bytea)")
        let insert = """
            INSERT INTO many (id, small, note, payload)
            SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::bytea[])
            """
        let notes: [String?] = ["O'Brien\"{},\\ ", nil, "", "日本語"]
        let payloads: [[UInt8]?] = [PostgresConnectionTests.everyByte, [], nil, [0]]
        _ = try connection.execute(
            insert,
            [.int64Array([Int64.min, Int64.max, nil, 0]), .int64Array([1, nil, -1, 32_767]), .textArray(notes), .bytesArray(payloads)])
        // An empty group inserts nothing, with the same statement.
        #expect(try connection.execute(insert, [.int64Array([]), .int64Array([]), .textArray([]), .bytesArray([])]).affectedRowCount == 0)
        let rows = try connection.execute("SELECT id, small, note, payload FROM many ORDER BY small NULLS LAST").rows
        try #require(rows.count == 4)
        #expect(try rows.map { try $0[0].int64 } == [nil, Int64.min, 0, Int64.max])
        #expect(try rows.map { try $0[1].int64 } == [-1, 1, 32_767, nil])
        #expect(try rows.map { try $0[2].string } == [notes[3 - 1], notes[0], notes[3], notes[1]])
        #expect(try rows.map { try $0[3].bytes } == [payloads[2], payloads[0], payloads[3], payloads[1]])
    }

    @Test func aTextElementWithAZeroByteIsRefusedBeforeSending() throws {
        let connection = try SharedPostgresServer.connect()
        #expect {
            _ = try connection.execute("SELECT cardinality($1::text[])", [.textArray(["fine", "not\u{0}fine"])])
        } throws: { error in
            (error as? PostgresError)?.code == .invalidParameter
        }
    }
}
