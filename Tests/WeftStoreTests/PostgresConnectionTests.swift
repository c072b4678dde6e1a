#if canImport(Glibc)
    import Glibc
#endif
import Testing
import WeftStore

@Suite(.sharedPostgresServer)
struct PostgresConnectionTests {
    /// A value that would end the statement early if it were ever spliced into SQL text.
    static let hostileText = "O'Brien'; DROP TABLE x; --"
    /// Every byte value, zero first, then the same again reversed: ends in a zero byte too.
    static let everyByte: [UInt8] = Array(0...255) + Array((0...255).reversed())

    @Test func parametersRoundTripExactly() throws {
        let connection = try SharedPostgresServer.connect()
        _ = try connection.execute("CREATE TEMPORARY TABLE x (id int)")
        _ = try connection.execute(
            """
            CREATE TEMPORARY TABLE entries (
                id bigint PRIMARY KEY, payload bytea, note text, amount bigint)
            """
        )
        let insert = "INSERT INTO entries (id, payload, note, amount) VALUES ($1, $2, $3, $4)"
        let inserted = try connection.execute(
            insert,
            [.int64(1), .bytes(Self.everyByte), .text(Self.hostileText), .int64(Int64.min)]
        )
        #expect(inserted.affectedRowCount == 1)
        _ = try connection.execute(insert, [.int64(2), .bytes([]), .text(""), .int64(Int64.max)])
        _ = try connection.execute(insert, [.int64(3), .null, .null, .null])

        let result = try connection.execute(
            "SELECT id, payload, note, amount FROM entries ORDER BY id"
        )
        #expect(result.columns.map(\.name) == ["id", "payload", "note", "amount"])
        try #require(result.rows.count == 3)
        let (first, second, third) = (result.rows[0], result.rows[1], result.rows[2])
        #expect(try first[0].int64 == 1)
        #expect(try first[1].bytes == Self.everyByte)
        #expect(try first[2].string == Self.hostileText)
        #expect(try first[3].int64 == Int64.min)
        #expect(try second[1].bytes == [])
        #expect(try second[2].string == "")
        #expect(try second[3].int64 == Int64.max)
        #expect(third[1].isNull && third[2].isNull && third[3].isNull)
        #expect(try third[1].bytes == nil)

        // The table the hostile text names is untouched.
        let survivors = try connection.execute("SELECT count(*) FROM x")
        #expect(try survivors.rows.first?.first?.int64 == 0)
    }

    @Test func parametersAreComparedAsValuesNotSQL() throws {
        let connection = try SharedPostgresServer.connect()
        let result = try connection.execute(
            "SELECT $1::text = $2, length($1::text)",
            [.text(Self.hostileText), .text(Self.hostileText)]
        )
        let row = try #require(result.rows.first)
        #expect(row[0].rawValue == [1])  // bool true
        #expect(try row[1].int64 == Int64(Self.hostileText.count))
    }

    @Test(arguments: [
        ("SELECT (-2)::smallint", Int64(-2)),
        ("SELECT (-70000)::integer", Int64(-70000)),
        ("SELECT 9007199254740993::bigint", Int64(9_007_199_254_740_993)),
    ])
    func integersOfEveryWidthDecode(sql: String, expected: Int64) throws {
        let connection = try SharedPostgresServer.connect()
        let cell = try #require(try connection.execute(sql).rows.first?.first)
        #expect(try cell.int64 == expected)
        let error = #expect(throws: PostgresError.self) { try cell.string }
        #expect(error?.code == .decodingFailed)
    }

    @Test func syntaxErrorReportsSQLState42601AndConnectionSurvives() throws {
        let connection = try SharedPostgresServer.connect()
        let error = #expect(throws: PostgresError.self) {
            try connection.execute("SELEC 1")
        }
        #expect(error?.code == .queryFailed)
        #expect(error?.sqlState == "42601")
        #expect(error?.message.contains("syntax error") == true)

        let result = try connection.execute("SELECT 1")
        #expect(try result.rows.first?.first?.int64 == 1)
    }

    @Test func uniqueViolationReportsSQLState23505WithoutQuotingTheRow() throws {
        let connection = try SharedPostgresServer.connect()
        _ = try connection.execute("CREATE TEMPORARY TABLE keys (id bigint PRIMARY KEY)")
        _ = try connection.execute("INSERT INTO keys VALUES ($1)", [.int64(424_242)])
        let error = #expect(throws: PostgresError.self) {
            try connection.execute("INSERT INTO keys VALUES ($1)", [.int64(424_242)])
        }
        #expect(error?.code == .queryFailed)
        #expect(error?.sqlState == "23505")
        #expect(error?.detail?.contains("424242") == true)
        #expect(error.map { String(describing: $0).contains("424242") } == false)
    }

    @Test func copyIsRefusedAndTheConnectionStaysUsable() throws {
        let connection = try SharedPostgresServer.connect()
        _ = try connection.execute("CREATE TEMPORARY TABLE sink (n int)")
        for sql in ["COPY (SELECT 1) TO STDOUT", "COPY sink FROM STDIN"] {
            let error = #expect(throws: PostgresError.self) { try connection.execute(sql) }
            #expect(error?.code == .unsupportedResult)
        }
        let result = try connection.execute("SELECT count(*) FROM sink")
        #expect(try result.rows.first?.first?.int64 == 0)
    }

    /// The server closes the connection on a message of 1 GiB or more: refused before
    /// sending, as a parameter, not a lost connection that a caller would retry.
    @Test func aValueOverAGibibyteIsRefusedBeforeSending() throws {
        let connection = try SharedPostgresServer.connect()
        let error = #expect(throws: PostgresError.self) {
            try connection.execute("SELECT length($1::bytea)", [.bytes([UInt8](repeating: 7, count: 1 << 30))])
        }
        #expect(error?.code == .invalidParameter, "\(String(describing: error))")
        #expect(try connection.execute("SELECT 1").rows.count == 1)
    }

    /// The URL's own `options` (a search_path here) are kept beside the ones the connection
    /// sets itself; before, setting `options` dropped them.
    @Test func theURLsOptionsAreKept() throws {
        let url = try #require(SharedPostgresServer.url)
        let separator = url.contains("?") ? "&" : "?"
        let connection = try PostgresConnection(url: url + separator + "options=-c%20search_path%3Dweft_elsewhere")
        #expect(try connection.execute("SHOW search_path").rows.first?.first?.string == "weft_elsewhere")
        #expect(try connection.execute("SHOW client_min_messages").rows.first?.first?.string == "warning")
    }

    @Test func textWithAZeroByteIsRefusedBeforeSending() throws {
        let connection = try SharedPostgresServer.connect()
        let error = #expect(throws: PostgresError.self) {
            try connection.execute("SELECT $1::text", [.text("a\u{0}b")])
        }
        #expect(error?.code == .invalidParameter)
    }
}

/// Connection failures need no server, so they live outside the suite that starts one.
struct PostgresConnectionFailureTests {
    @Test func closedPortFailsWithAnActionableMessageAndNoPassword() throws {
        // Port 1 (tcpmux) is privileged and unused on CI and developer machines.
        let error = #expect(throws: PostgresError.self) {
            try PostgresConnection(url: "postgresql://weft:hunter2-secret@127.0.0.1:1/weft")
        }
        let unwrapped = try #require(error)
        #expect(unwrapped.code == .connectionFailed)
        #expect(unwrapped.message.contains("host=127.0.0.1 port=1 dbname=weft user=weft"))
        #expect(unwrapped.hint?.contains("server is running") == true)
        #expect(!unwrapped.message.contains("\n"), "libpq's continuation lines are joined")
        #expect(!String(describing: unwrapped).contains("hunter2"))
    }

    @Test func malformedURLIsReportedWithThePasswordMasked() throws {
        // libpq quotes the whole URI when an IPv6 host lacks its closing bracket.
        let error = #expect(throws: PostgresError.self) {
            try PostgresConnection(url: "postgresql://weft:hunter2-secret@[::1/weft")
        }
        let description = try #require(error.map(String.init(describing:)))
        #expect(error?.code == .connectionFailed)
        #expect(description.contains("postgresql://weft:***@[::1/weft"))
        #expect(!description.contains("hunter2"))
    }

    /// libpq reads a URI's user and password up to the first '/': a password with an
    /// unencoded '/' became host, port and database, which its error printed unmasked.
    @Test func aPasswordWithASlashIsRefusedWithoutQuotingIt() throws {
        let error = #expect(throws: PostgresError.self) {
            try PostgresConnection(url: "postgresql://weft:s3cr/et99@127.0.0.1:1/weft")
        }
        let description = try #require(error.map(String.init(describing:)))
        #expect(error?.code == .connectionFailed)
        #expect(description.contains("%2F"), "the hint says what to do: \(description)")
        #expect(!description.contains("s3cr") && !description.contains("et99"), "\(description)")
    }

    /// A server that accepts TCP and never answers (a listener whose backlog takes the
    /// connection; nothing reads it) fails the connection after libpq's connect_timeout,
    /// 10 s by default here, instead of holding the caller for as long as the kernel keeps
    /// the socket.
    @Test(.timeLimit(.minutes(1))) func aServerThatNeverAnswersFailsTheConnectionAtItsTimeout() throws {
        let listener = try SilentListener()
        defer { listener.close() }
        let port = listener.port
        let started = ContinuousClock.now
        let error = #expect(throws: PostgresError.self) {
            try PostgresConnection(url: "postgresql://weft@127.0.0.1:\(port)/weft")
        }
        let waited = ContinuousClock.now - started
        #expect(error?.code == .connectionFailed)
        #expect(String(describing: error).contains("timeout"), "\(String(describing: error))")
        #expect(waited >= .seconds(9) && waited < .seconds(30), "waited \(waited)")
    }

    @Test func bareWordIsNotMistakenForADatabaseName() {
        let error = #expect(throws: PostgresError.self) { try PostgresConnection(url: "weft") }
        #expect(error?.code == .connectionFailed)
    }
}
