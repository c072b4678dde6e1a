internal import CLibPQ
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// One open connection to PostgreSQL through libpq, owning its `PGconn *`.
///
/// Every libpq call made here blocks the calling thread until the server answers. That is
/// fine for tools and tests, but the async layer and connection pool (a later issue) must
/// run these calls on a dedicated thread pool, never on Swift's cooperative pool, or a slow
/// query will starve unrelated tasks.
///
/// The class is deliberately not `Sendable`: a libpq connection carries one conversation
/// at a time, so it belongs to one task at a time. Hand it over by moving ownership, not by
/// sharing it.
///
/// The connection is closed (`PQfinish`) when the object is released; nothing else frees
/// the handle, and it never leaves this class.
public final class PostgresConnection {
    /// The owned `PGconn *`; valid and in `CONNECTION_OK` state when `init` returns.
    private let connection: OpaquePointer

    /// The most parameters one statement may carry: the protocol counts them in 16 bits.
    public static let parameterCountMax = 65_535

    /// The most statements one connection keeps prepared on the server. Beyond it, new
    /// statements run unprepared: text built with a varying number of parameters must not grow
    /// a backend's memory without bound.
    public static let preparedStatementsMax = 256

    /// Statements prepared on this connection's server session, by text and parameter types,
    /// with the name each was prepared under.
    ///
    /// A statement the server parses and plans anew for every call costs it more than many
    /// simple statements take to execute (`base_yyparse` and the planner show in the server's
    /// profile); a prepared one is parsed once per connection. Prepared statements live in the
    /// server session, outside transactions (a rollback keeps them), and die with the
    /// connection, as this table does.
    private var prepared: [StatementKey: String] = [:]
    /// Statements run once, unprepared: a statement is prepared on its second call, so a
    /// statement that runs once costs one round trip, not two (prepare, then execute).
    private var seenOnce: Set<StatementKey> = []
    /// Statements with more parameters than this are never prepared (see `run`).
    static let preparedParameterCountMax = 64
    /// SQLSTATE 0A000, which the server also reports for "cached plan must not change result
    /// type": a table under a prepared statement changed its columns.
    private static let featureNotSupported = "0A000"
    /// The number in the next prepared statement's name; never reused, so a statement dropped
    /// from `prepared` can never be confused with a new one.
    private var nextStatementNumber = 0
    /// Statements sent in pipeline mode (`enqueue`) whose results are not read yet, in order.
    private var queued: [QueuedStatement] = []

    /// Connects to the server named by `url`, blocking until the server accepts or refuses.
    ///
    /// `url` is a libpq connection URI (`postgresql://user@host:port/database`) or a
    /// key/value string (`host=... dbname=...`); a bare word is refused rather than taken as
    /// a database name; an empty `url` means libpq's `PG*` environment variables
    /// (`PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGPASSWORD`, …). The session's `client_encoding` is forced to UTF8 because Swift
    /// strings are UTF-8 and text travels unconverted in both directions.
    public init(url: String) throws(PostgresError) {
        guard url.isEmpty || url.hasPrefix("postgresql://") || url.hasPrefix("postgres://") || url.contains("=")
        else {
            throw PostgresError(
                code: .connectionFailed,
                message:
                    "not a PostgreSQL connection URL: expected postgresql://user@host:port/database "
                    + "or a key=value connection string"
            )
        }
        guard !url.utf8.contains(0) else {
            throw PostgresError(
                code: .connectionFailed,
                message: "the connection URL contains a zero byte"
            )
        }

        if let misplaced = Self.credentialsAfterPath(url) {
            throw PostgresError(
                code: .connectionFailed,
                message: "the connection URL has an '@' after the first '/' that follows its scheme (\(misplaced)): libpq would "
                    + "read part of the user or password as host, port and database, and print them",
                hint: "percent-encode '/' as %2F (and '@' as %40) in the user and password of the URL")
        }

        // `dbname` comes first so that the keywords after it override whatever the URL says.
        // NOTICEs (`relation … already exists, skipping`) would go to stderr unasked.
        var keywords = ["dbname", "client_encoding", "options"]
        // The operator's own options (the URL's `options=`, else `PGOPTIONS`: a search_path, a
        // statement_timeout) go first; setting the keyword here would drop them otherwise.
        let given = Self.options(in: url) ?? getenv("PGOPTIONS").map { String(cString: $0) }
        var values = [url, "UTF8", (given.map { $0 + " " } ?? "") + "-c client_min_messages=warning"]
        // A server that accepts TCP but never answers, or a peer gone without a reset (a
        // failover moving the address), would hold a connection attempt or a query for as
        // long as the kernel keeps the socket (minutes): bounds unless the URL or the
        // environment sets its own.
        for (keyword, environment, value) in Self.timeoutDefaults
        where !url.contains(keyword) && (environment.map { getenv($0) == nil } ?? true) {
            keywords.append(keyword)
            values.append(value)
        }
        let handle = withCStringArray(keywords) { keywords in
            withCStringArray(values) { values in
                PQconnectdbParams(keywords, values, 1)
            }
        }
        guard let handle else {
            throw PostgresError(
                code: .connectionFailed,
                message: "libpq could not allocate a connection (out of memory)"
            )
        }
        guard PQstatus(handle) == CONNECTION_OK else {
            let error = Self.connectionError(handle, url: url)
            PQfinish(handle)
            throw error
        }
        // The server's warnings (after client_min_messages) are log lines of their own, not
        // libpq's raw text on stderr between the node's JSON lines.
        PQsetNoticeReceiver(handle, { _, result in
            guard let result else { return }
            func field(_ code: Character) -> String? {
                PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0).flattenedLibpqMessage() }
            }
            Logger(label: "weft.store").warning(
                "PostgreSQL: \(field("M") ?? "")",
                metadata: ["sqlstate": "\(field("C") ?? "")", "severity": "\(field("V") ?? "")", "detail": "\(field("D") ?? "")"])
        }, nil)
        self.connection = handle
    }

    deinit {
        PQfinish(connection)
    }

    /// Runs one SQL statement with `parameters` bound to `$1`, `$2`, … and returns its rows.
    ///
    /// Parameters travel separately from the SQL text (`PQexecParams`), so no value can
    /// change what the statement means. Results come back in binary format; see
    /// `PostgresCell` for reading them. The statement must be a single command; `COPY`
    /// is refused.
    ///
    /// A statement run a second time on this connection is prepared on the server and runs
    /// prepared from then on (see `prepared`); callers see no difference but the server's
    /// saved parsing and planning. Connection poolers in transaction mode must therefore
    /// support protocol-level prepared statements (PgBouncer ≥ 1.21 with
    /// `max_prepared_statements`).
    public func execute(_ sql: String, _ parameters: [PostgresValue] = []) throws(PostgresError)
        -> PostgresResult
    {
        guard !sql.utf8.contains(0) else {
            throw PostgresError(
                code: .invalidParameter, message: "the SQL text contains a zero byte")
        }
        guard parameters.count <= Self.parameterCountMax else {
            throw PostgresError(
                code: .invalidParameter,
                message: "\(parameters.count) parameters exceed the protocol limit of "
                    + "\(Self.parameterCountMax)"
            )
        }
        let encoded = try EncodedParameters(parameters)
        let key = StatementKey(sql: sql, types: encoded.types)
        if !queued.isEmpty {
            // Behind statements sent before it: one round trip for all of them.
            try send(sql, encoded, key: key)
            return try flush().last!
        }
        guard prepared[key] != nil else { return try run(sql, encoded, key: key) }
        do {
            return try run(sql, encoded, key: key)
        } catch let error where error.sqlState == Self.featureNotSupported {
            // A table under a prepared `SELECT *` changed its columns since it was prepared.
            // The statement is forgotten so that the next call prepares it anew; outside a
            // transaction that call is made here and now, inside one the transaction is
            // already aborted and the caller must retry it whole.
            prepared[key] = nil
            guard PQtransactionStatus(connection) == PQTRANS_IDLE else { throw error }
            return try run(sql, encoded, key: key)
        }
    }

    /// Runs `sql` prepared if it was prepared before or runs for the second time, else with
    /// `PQexecParams`.
    private func run(_ sql: String, _ encoded: EncodedParameters, key: StatementKey) throws(PostgresError)
        -> PostgresResult
    {
        let (name, _) = try statementName(key) { newName throws(PostgresError) in
            try prepare(sql, named: newName, types: encoded.types)
        }
        let count = Int32(encoded.types.count)
        let handle = encoded.values.withPointers { values in
            if let name {
                PQexecPrepared(
                    connection, name, count, values, encoded.lengths, encoded.formats,
                    1  // binary results: exact bytea, no text parsing of integers
                )
            } else {
                PQexecParams(
                    connection, sql, count, encoded.types, values, encoded.lengths, encoded.formats,
                    1  // binary results, as above
                )
            }
        }
        guard let handle else {
            throw failure(sqlState: nil, message: lastConnectionError())
        }
        return try collect(OwnedResult(taking: handle))
    }

    /// The name `key` runs under: that of its prepared statement, or of one `prepare` makes now
    /// on its second call; nil to run it unprepared. `preparedNow` says `prepare` ran.
    private func statementName(
        _ key: StatementKey, prepare: (String) throws(PostgresError) -> Void
    ) throws(PostgresError) -> (name: String?, preparedNow: Bool) {
        if let name = prepared[key] { return (name, false) }
        // Statements with more parameters are built with a row of parameters per item
        // (multi-row VALUES) and vary with their input: each variant would take a slot and
        // server memory for a few uses.
        guard key.types.count <= Self.preparedParameterCountMax else { return (nil, false) }
        if seenOnce.contains(key), prepared.count < Self.preparedStatementsMax {
            let newName = "weft_\(nextStatementNumber)"
            nextStatementNumber += 1
            try prepare(newName)
            seenOnce.remove(key)
            prepared[key] = newName
            return (newName, true)
        }
        if prepared.count < Self.preparedStatementsMax {
            if seenOnce.count >= Self.preparedStatementsMax * 16 { seenOnce.removeAll() }
            seenOnce.insert(key)
        }
        return (nil, false)
    }

    /// Prepares `sql` on the server under `name`; throws what executing it would have thrown
    /// for a statement the server cannot parse or plan.
    private func prepare(_ sql: String, named name: String, types: [Oid]) throws(PostgresError) {
        guard let handle = PQprepare(connection, name, sql, Int32(types.count), types) else {
            throw failure(sqlState: nil, message: lastConnectionError())
        }
        _ = try collect(OwnedResult(taking: handle))
    }

    // MARK: - Pipelining

    /// Sends one SQL statement without waiting for its result (libpq's pipeline mode): it runs
    /// on the server after whatever was sent before it, and the next `execute` or `flush()`
    /// sends it along with that call's own statement and reads every result in one round trip.
    /// A failure surfaces there: the first statement that failed is thrown, and the statements
    /// after it did not run (in a transaction, the transaction is then aborted).
    ///
    /// For statements whose results the caller does not need before it goes on — a
    /// transaction's writes — so that a transaction of n statements costs one round trip to the
    /// server instead of n + 2 (`PostgresDatabase.transaction` sends `BEGIN` and `COMMIT` the
    /// same way). Only small results belong here: the server's answers wait in the socket
    /// until they are read.
    public func enqueue(_ sql: String, _ parameters: [PostgresValue] = []) throws(PostgresError) {
        guard !sql.utf8.contains(0) else {
            throw PostgresError(code: .invalidParameter, message: "the SQL text contains a zero byte")
        }
        guard parameters.count <= Self.parameterCountMax else {
            throw PostgresError(
                code: .invalidParameter,
                message: "\(parameters.count) parameters exceed the protocol limit of \(Self.parameterCountMax)")
        }
        let encoded = try EncodedParameters(parameters)
        try send(sql, encoded, key: StatementKey(sql: sql, types: encoded.types))
    }

    /// Whether statements were sent with `enqueue` and their results not read yet.
    public var hasQueuedStatements: Bool { !queued.isEmpty }

    /// Reads the results of every statement sent with `enqueue` (sending them first if they
    /// wait in libpq's buffer) and returns them in order; throws the first failure, after
    /// reading everything, so that the connection can take the next command either way.
    @discardableResult
    public func flush() throws(PostgresError) -> [PostgresResult] {
        guard !queued.isEmpty else { return [] }
        let statements = queued
        queued = []
        guard PQpipelineSync(connection) == 1 else {
            throw PostgresError(code: .connectionLost, message: lastConnectionError())
        }
        var results: [PostgresResult] = []
        var firstError: PostgresError?
        for statement in statements {
            var last: PostgresResult?
            for part in 0..<statement.resultCount {
                // Each command's results end with a NULL.
                while let handle = PQgetResult(connection) {
                    let result = OwnedResult(taking: handle)
                    let status = PQresultStatus(result.pointer)
                    if status == PGRES_PIPELINE_ABORTED {
                        if part == 0, let key = statement.preparedKey { prepared[key] = nil }
                        continue
                    }
                    do {
                        last = try collect(result)
                    } catch {
                        if part == 0, let key = statement.preparedKey { prepared[key] = nil }
                        if error.sqlState == Self.featureNotSupported, let key = statement.key { prepared[key] = nil }
                        firstError = firstError ?? error
                    }
                }
                guard PQstatus(connection) != CONNECTION_BAD else {
                    throw PostgresError(code: .connectionLost, message: lastConnectionError())
                }
            }
            results.append(last ?? PostgresResult(columns: [], rows: [], commandTag: "", affectedRowCount: nil))
        }
        // The synchronization point, then out of pipeline mode.
        if let handle = PQgetResult(connection) {
            let result = OwnedResult(taking: handle)
            if PQresultStatus(result.pointer) != PGRES_PIPELINE_SYNC {
                firstError = firstError ?? PostgresError(code: .unsupportedResult, message: "a pipeline ended without its synchronization point")
            }
        }
        guard PQexitPipelineMode(connection) == 1 else {
            throw PostgresError(code: .connectionLost, message: "the connection did not leave pipeline mode: \(lastConnectionError())")
        }
        if let firstError { throw firstError }
        return results
    }

    /// Sends a statement in pipeline mode, preparing it on the way as `run` would.
    private func send(_ sql: String, _ encoded: EncodedParameters, key: StatementKey) throws(PostgresError) {
        if queued.isEmpty, PQpipelineStatus(connection) == PQ_PIPELINE_OFF {
            guard PQenterPipelineMode(connection) == 1 else {
                throw failure(sqlState: nil, message: "cannot enter pipeline mode: \(lastConnectionError())")
            }
        }
        let (name, preparedNow) = try statementName(key) { newName throws(PostgresError) in
            guard PQsendPrepare(connection, newName, sql, Int32(encoded.types.count), encoded.types) == 1 else {
                throw failure(sqlState: nil, message: lastConnectionError())
            }
        }
        let preparedHere = preparedNow ? key : nil
        let count = Int32(encoded.types.count)
        let sent = encoded.values.withPointers { values in
            if let name {
                PQsendQueryPrepared(connection, name, count, values, encoded.lengths, encoded.formats, 1)
            } else {
                PQsendQueryParams(
                    connection, sql, count, encoded.types, values, encoded.lengths, encoded.formats, 1)
            }
        }
        // What was sent must be read back even if this statement could not be.
        if preparedHere != nil || sent == 1 {
            queued.append(
                QueuedStatement(
                    resultCount: (preparedHere == nil ? 0 : 1) + (sent == 1 ? 1 : 0), preparedKey: preparedHere,
                    key: name == nil ? nil : key))
        }
        guard sent == 1 else { throw failure(sqlState: nil, message: lastConnectionError()) }
    }

    /// The rows of a finished statement, or its error as a `PostgresError`.
    private func collect(_ result: borrowing OwnedResult) throws(PostgresError) -> PostgresResult {
        let status = PQresultStatus(result.pointer)
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return result.copy()
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            abandonCopy(status)
            throw PostgresError(
                code: .unsupportedResult,
                message: "COPY is not supported by PostgresConnection.execute"
            )
        default:
            let message =
                result.errorField(PostgresErrorField.messagePrimary)
                ?? String(cString: PQresultErrorMessage(result.pointer)).flattenedLibpqMessage()
            let sqlState = result.errorField(PostgresErrorField.sqlState)
            var error = failure(sqlState: sqlState, message: message.isEmpty ? lastConnectionError() : message)
            error.detail = result.errorField(PostgresErrorField.messageDetail)
            error.hint = result.errorField(PostgresErrorField.messageHint)
            if Self.endsTheSession(severity: result.errorField(PostgresErrorField.severity), sqlState: sqlState) {
                // libpq reads the error before it sees the connection close, so the status
                // still says OK here: the error itself says the session is over. At a COMMIT
                // the transaction's outcome is then unknown, not refused.
                error.code = .connectionLost
            }
            throw error
        }
    }

    /// Whether an error ends the server session: severity FATAL or PANIC, a connection
    /// exception (class 08) or an operator intervention that terminates it (57P01–57P03).
    static func endsTheSession(severity: String?, sqlState: String?) -> Bool {
        if severity == "FATAL" || severity == "PANIC" { return true }
        guard let sqlState else { return false }
        return sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(sqlState)
    }

    /// Runs `sql`, which may hold several statements separated by semicolons, with no
    /// parameters (libpq's simple query protocol): for migrations and other fixed scripts,
    /// never for text that contains values. Statements run in one implicit transaction
    /// unless the script says otherwise; the first failure stops the script and is thrown.
    public func executeScript(_ sql: String) throws(PostgresError) {
        try flush()  // the simple protocol cannot run in pipeline mode
        guard !sql.utf8.contains(0) else {
            throw PostgresError(code: .invalidParameter, message: "the SQL text contains a zero byte")
        }
        guard PQsendQuery(connection, sql) == 1 else {
            throw failure(sqlState: nil, message: lastConnectionError())
        }
        var firstError: PostgresError?
        // Every result must be collected before the connection can take the next command.
        while let handle = PQgetResult(connection) {
            let result = OwnedResult(taking: handle)
            let status = PQresultStatus(result.pointer)
            switch status {
            case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
                continue
            case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
                abandonCopy(status)
                firstError = firstError ?? PostgresError(code: .unsupportedResult, message: "COPY is not supported in scripts")
            default:
                guard firstError == nil else { continue }
                var error = failure(
                    sqlState: result.errorField(PostgresErrorField.sqlState),
                    message: result.errorField(PostgresErrorField.messagePrimary) ?? lastConnectionError())
                error.detail = result.errorField(PostgresErrorField.messageDetail)
                error.hint = result.errorField(PostgresErrorField.messageHint)
                if Self.endsTheSession(severity: result.errorField(PostgresErrorField.severity), sqlState: error.sqlState) {
                    error.code = .connectionLost
                }
                firstError = error
            }
        }
        if let firstError { throw firstError }
        if PQstatus(connection) == CONNECTION_BAD {
            throw PostgresError(code: .connectionLost, message: lastConnectionError())
        }
    }

    /// Whether the connection is still usable (libpq has not seen it break).
    public var isUsable: Bool { PQstatus(connection) == CONNECTION_OK }

    /// Whether a transaction is open on the connection (also a failed one, which only a
    /// ROLLBACK ends).
    public var isInTransaction: Bool {
        let status = PQtransactionStatus(connection)
        return status == PQTRANS_INTRANS || status == PQTRANS_INERROR
    }

    /// Whether the connection can go back to a pool for the next caller: usable, outside any
    /// transaction and out of pipeline mode. A body that left a transaction open (or a failed
    /// `ROLLBACK`) would otherwise hand its transaction to whoever takes the connection next.
    public var isReusable: Bool {
        isUsable && PQtransactionStatus(connection) == PQTRANS_IDLE && PQpipelineStatus(connection) == PQ_PIPELINE_OFF
    }

    /// Whether this idle connection may have been closed by the server while it waited in a
    /// pool (a restart, an administrator's `pg_terminate_backend`, an idle-session timeout):
    /// the server then sent a FATAL and ended the stream, which wait unread on the socket. An
    /// idle session is sent nothing else a pool needs (it listens to no channel), so anything
    /// waiting counts; checked without blocking. A pool that hands out such a connection fails
    /// a request that never reached the server, and a caller cannot tell that from one that
    /// may have run.
    var mayBeClosedByServer: Bool {
        let socket = PQsocket(connection)
        guard socket >= 0, PQstatus(connection) == CONNECTION_OK else { return true }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) != 0
    }

    /// The connection's socket, for waiting (`poll`) until the server sends something
    /// unasked, such as a notification; -1 if the connection is broken.
    var socketDescriptor: Int32 { PQsocket(connection) }

    /// Reads whatever the server has sent without blocking, and returns the notifications
    /// (`NOTIFY`) received so far, oldest first.
    ///
    /// Throws `connectionLost` when the connection broke (the server closed it or was
    /// terminated), since the caller must then open a new one.
    func takeNotifications() throws(PostgresError) -> [PostgresNotification] {
        guard PQconsumeInput(connection) == 1, PQstatus(connection) == CONNECTION_OK else {
            throw PostgresError(code: .connectionLost, message: lastConnectionError())
        }
        var notifications: [PostgresNotification] = []
        while let notification = PQnotifies(connection) {
            notifications.append(
                PostgresNotification(
                    channel: String(cString: notification.pointee.relname),
                    payload: notification.pointee.extra.map { String(cString: $0) } ?? "",
                    senderProcessID: notification.pointee.be_pid))
            PQfreemem(notification)
        }
        return notifications
    }

    /// A failed statement is `connectionLost` when it took the connection down with it,
    /// because the caller must then discard the connection rather than retry on it.
    private func failure(sqlState: String?, message: String) -> PostgresError {
        PostgresError(
            code: PQstatus(connection) == CONNECTION_BAD ? .connectionLost : .queryFailed,
            sqlState: sqlState,
            message: message
        )
    }

    private func lastConnectionError() -> String {
        let message = String(cString: PQerrorMessage(connection)).flattenedLibpqMessage()
        return message.isEmpty ? "libpq reported a failure without a message" : message
    }

    /// Ends a `COPY` the server started, so the connection is usable for the next statement.
    private func abandonCopy(_ status: ExecStatusType) {
        if status == PGRES_COPY_IN {
            // Makes the server fail the COPY; no rows are written.
            _ = PQputCopyEnd(connection, "COPY is not supported by PostgresConnection.execute")
        } else if status == PGRES_COPY_OUT {
            var buffer: UnsafeMutablePointer<CChar>?
            while PQgetCopyData(connection, &buffer, 0) >= 0 {
                PQfreemem(buffer)
                buffer = nil
            }
        }
        // COPY_BOTH exists only for replication connections, which this class never opens.
        while let pending = PQgetResult(connection) {
            PQclear(pending)
        }
    }

    /// libpq's settings that bound how long a silent server or a vanished peer holds a
    /// connection (keyword, the environment variable that sets it instead, value): 10 s to
    /// connect, and a connection whose peer acknowledges nothing for 120 s, or answers no
    /// TCP keepalive for 30 + 3 × 10 s while idle, is lost (`connectionLost`) instead of waited
    /// on. (The kernel also counts a peer whose receive window stays closed that long, as a
    /// server busy with a long statement while a pipeline waits: hence minutes, not seconds.)
    static let timeoutDefaults: [(String, String?, String)] = [
        ("connect_timeout", "PGCONNECT_TIMEOUT", "10"),
        ("keepalives_idle", nil, "30"),
        ("keepalives_interval", nil, "10"),
        ("keepalives_count", nil, "3"),
        ("tcp_user_timeout", nil, "120000"),
    ]

    /// The `options` a connection string sets (`?options=…` in a URL, `options=…` in a
    /// key/value string), or nil.
    static func options(in connectionString: String) -> String? {
        guard !connectionString.isEmpty else { return nil }
        var error: UnsafeMutablePointer<CChar>?
        guard let parsed = PQconninfoParse(connectionString, &error) else {
            if let error { PQfreemem(error) }
            return nil  // PQconnectdbParams reports the malformed string
        }
        defer { PQconninfoFree(parsed) }
        var option = parsed
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "options", let value = option.pointee.val, value.pointee != 0 {
                return String(cString: value)
            }
            option += 1
        }
        return nil
    }

    /// The URL's text from its first '/' after the scheme up to an '@' that follows it, with
    /// that part masked, if there is such an '@' before the query: a user or password with an
    /// unencoded '/', which libpq would split into host, port and database (and print).
    static func credentialsAfterPath(_ url: String) -> String? {
        for scheme in ["postgresql://", "postgres://"] where url.hasPrefix(scheme) {
            let rest = url.dropFirst(scheme.count).prefix { $0 != "?" }
            guard let slash = rest.firstIndex(of: "/"), rest[slash...].contains("@") else { return nil }
            return scheme + "…/…@…"
        }
        return nil
    }

    private static func connectionError(_ handle: OpaquePointer, url: String) -> PostgresError {
        let libpqMessage = String(cString: PQerrorMessage(handle)).flattenedLibpqMessage()
        var target: [String] = []
        for (name, value) in [
            ("host", PQhost(handle)), ("port", PQport(handle)), ("dbname", PQdb(handle)),
            ("user", PQuser(handle)),
        ] {
            if let value, value.pointee != 0 {
                target.append("\(name)=\(String(cString: value))")
            }
        }
        let message =
            "could not connect to PostgreSQL"
            + (target.isEmpty ? "" : " (\(target.joined(separator: " ")))")
            + ": \(libpqMessage.isEmpty ? "no reason given" : libpqMessage)"
        return PostgresError(
            code: .connectionFailed,
            message: ConnectionStringRedaction.redact(message, connectionString: url),
            hint: "check that the server is running and accepts TCP connections at that host and "
                + "port, that the database and user exist, and that the credentials are right"
        )
    }
}

@available(*, unavailable, message: "a connection serves one task at a time")
extension PostgresConnection: Sendable {}

/// Field codes for `PQresultErrorField`. libpq defines them as character macros
/// (`PG_DIAG_SQLSTATE` is `'C'` in postgres_ext.h), which Swift does not import.
private enum PostgresErrorField {
    static let sqlState = Int32(UInt8(ascii: "C"))
    static let messagePrimary = Int32(UInt8(ascii: "M"))
    static let messageDetail = Int32(UInt8(ascii: "D"))
    static let messageHint = Int32(UInt8(ascii: "H"))
    /// `PG_DIAG_SEVERITY_NONLOCALIZED`: ERROR, FATAL, PANIC, never translated.
    static let severity = Int32(UInt8(ascii: "V"))
}

/// The single owner of a `PGresult *`: whatever path leaves `execute`, `PQclear` runs.
private struct OwnedResult: ~Copyable {
    let pointer: OpaquePointer

    init(taking pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        PQclear(pointer)
    }

    func errorField(_ field: Int32) -> String? {
        guard let value = PQresultErrorField(pointer, field) else { return nil }
        return String(cString: value).flattenedLibpqMessage()
    }

    /// Copies everything out, so nothing refers to the `PGresult` once it is cleared.
    func copy() -> PostgresResult {
        let rowCount = PQntuples(pointer)
        let columnCount = PQnfields(pointer)
        let columns = (0..<columnCount).map { column in
            PostgresColumn(
                name: PQfname(pointer, column).map { String(cString: $0) } ?? "",
                typeOID: PQftype(pointer, column)
            )
        }
        let rows = (0..<rowCount).map { row in
            (0..<columnCount).map { column in
                let typeOID = columns[Int(column)].typeOID
                guard PQgetisnull(pointer, row, column) == 0,
                    let value = PQgetvalue(pointer, row, column)
                else {
                    return PostgresCell(typeOID: typeOID, rawValue: nil)
                }
                let byteCount = Int(PQgetlength(pointer, row, column))
                return PostgresCell(
                    typeOID: typeOID,
                    rawValue: Array(UnsafeRawBufferPointer(start: value, count: byteCount))
                )
            }
        }
        let affected = PQcmdTuples(pointer).map { String(cString: $0) } ?? ""
        return PostgresResult(
            columns: columns,
            rows: rows,
            commandTag: PQcmdStatus(pointer).map { String(cString: $0) } ?? "",
            affectedRowCount: Int(affected)
        )
    }
}

/// A statement sent in pipeline mode: how many results it produces (two when it was prepared
/// on the way: the prepare's, then its own), the key it was prepared under there (forgotten if
/// the prepare did not succeed), and its key if it runs prepared.
private struct QueuedStatement {
    let resultCount: Int
    let preparedKey: StatementKey?
    let key: StatementKey?
}

/// What makes two calls the same prepared statement: the text, and the types its parameters
/// were sent with (a parameter sent as `NULL` leaves its type to the server, so the same text
/// with a `NULL` in another place is another statement).
private struct StatementKey: Hashable {
    let sql: String
    let types: [Oid]
}

/// Parameters laid out as the four parallel arrays `PQexecParams` takes.
///
/// Every value is written straight into one buffer (`PackedCBuffers`): the sequencer's group
/// commit sends arrays of ~40 elements per column, and building each element and each array as
/// an array of its own, then copying them into the buffer and the buffer once more, was 4 % of
/// the sequencer benchmark's samples in perf.
private struct EncodedParameters {
    var types: [Oid] = []
    var lengths: [Int32] = []
    var formats: [Int32] = []
    var values = PackedCBuffers()

    private static let textFormat: Int32 = 0
    private static let binaryFormat: Int32 = 1
    /// Zero asks the server to infer the type from the statement.
    private static let inferredType: Oid = 0
    /// The most a statement's parameters may take together: the server refuses a message of
    /// 1 GiB or more by closing the connection ("invalid message length"), which a caller would
    /// see as a lost connection and retry for ever.
    static let maximumBytes = (1 << 30) - 1024

    init(_ parameters: [PostgresValue]) throws(PostgresError) {
        types.reserveCapacity(parameters.count)
        lengths.reserveCapacity(parameters.count)
        formats.reserveCapacity(parameters.count)
        for (index, parameter) in parameters.enumerated() {
            switch parameter {
            case .text(let text):
                guard !text.utf8.contains(0) else {
                    throw PostgresError(
                        code: .invalidParameter,
                        message: "parameter $\(index + 1) contains a zero byte, which PostgreSQL "
                            + "text cannot hold; send it as .bytes"
                    )
                }
                // Text format is NUL-terminated; libpq ignores the length.
                append(type: Self.inferredType, format: Self.textFormat, length: 0)
                values.appendValue { buffer in
                    buffer.append(contentsOf: text.utf8)
                    buffer.append(0)
                }
            case .bytes(let bytes):
                guard bytes.count <= Self.maximumBytes else {
                    throw PostgresError(
                        code: .invalidParameter,
                        message: "parameter $\(index + 1) has \(bytes.count) bytes, more than PostgreSQL takes in one "
                            + "statement (1 GiB)"
                    )
                }
                append(
                    type: PostgresTypeOID.bytea, format: Self.binaryFormat,
                    length: Int32(bytes.count))
                values.appendValue { $0.append(contentsOf: bytes) }
            case .int64(let integer):
                append(type: PostgresTypeOID.int8, format: Self.binaryFormat, length: 8)
                values.appendValue { $0.appendBigEndian(integer) }
            case .null:
                append(type: Self.inferredType, format: Self.textFormat, length: 0)
                values.appendNull()
            case .int64Array(let integers):
                try appendArray(type: PostgresTypeOID.int8Array, element: PostgresTypeOID.int8, parameter: index, integers) {
                    integer, buffer in
                    buffer.appendBigEndian(Int32(8))
                    buffer.appendBigEndian(integer)
                }
            case .textArray(let texts):
                if texts.contains(where: { $0?.utf8.contains(0) == true }) {
                    throw PostgresError(
                        code: .invalidParameter,
                        message: "an element of parameter $\(index + 1) contains a zero byte, which "
                            + "PostgreSQL text cannot hold; send it as .bytesArray"
                    )
                }
                try appendArray(type: PostgresTypeOID.textArray, element: PostgresTypeOID.text, parameter: index, texts) {
                    text, buffer in
                    // An element longer than 2 GiB makes the whole array too long, which
                    // `appendArray` then refuses; the length written here is never sent.
                    buffer.appendBigEndian(Int32(truncatingIfNeeded: text.utf8.count))
                    buffer.append(contentsOf: text.utf8)
                }
            case .bytesArray(let elements):
                try appendArray(type: PostgresTypeOID.byteaArray, element: PostgresTypeOID.bytea, parameter: index, elements) {
                    element, buffer in
                    buffer.appendBigEndian(Int32(truncatingIfNeeded: element.count))
                    buffer.append(contentsOf: element)
                }
            }
        }
        guard values.byteCount <= Self.maximumBytes else {
            throw PostgresError(
                code: .invalidParameter,
                message: "the statement's parameters take \(values.byteCount) bytes together, more than PostgreSQL takes in one "
                    + "statement (1 GiB); write them in several statements"
            )
        }
    }

    /// A one-dimensional array in PostgreSQL's binary array format (what `array_recv` reads):
    /// the number of dimensions, whether any element is NULL, the element type, the length
    /// and lower bound (1) of the dimension, then each element as its length (-1 for NULL)
    /// and its binary value, which `writeElement` appends. An empty array has no dimension.
    private mutating func appendArray<Element>(
        type: Oid, element: Oid, parameter index: Int, _ elements: [Element?],
        _ writeElement: (Element, inout [UInt8]) -> Void
    ) throws(PostgresError) {
        let length = values.appendValue { buffer in
            buffer.appendBigEndian(Int32(elements.isEmpty ? 0 : 1))
            buffer.appendBigEndian(Int32(elements.contains { $0 == nil } ? 1 : 0))
            buffer.appendBigEndian(Int32(bitPattern: element))
            if !elements.isEmpty {
                buffer.appendBigEndian(Int32(truncatingIfNeeded: elements.count))
                buffer.appendBigEndian(Int32(1))
            }
            for element in elements {
                if let element { writeElement(element, &buffer) } else { buffer.appendBigEndian(Int32(-1)) }
            }
        }
        guard length <= Self.maximumBytes else {
            throw PostgresError(
                code: .invalidParameter,
                message: "parameter $\(index + 1) has \(length) bytes, more than PostgreSQL takes in one statement (1 GiB)"
            )
        }
        append(type: type, format: Self.binaryFormat, length: Int32(length))
    }

    private mutating func append(type: Oid, format: Int32, length: Int32) {
        types.append(type)
        formats.append(format)
        lengths.append(length)
    }
}

/// Byte strings packed into one buffer, so C can be handed pointers to all of them at once
/// without a closure per string.
private struct PackedCBuffers {
    /// The values one after another, then one zero byte that belongs to none of them: even a
    /// zero-length last value has an address inside the buffer (a null pointer would mean SQL
    /// `NULL`).
    private var storage: [UInt8] = [0]
    private var offsets: [Int?] = []
    /// The bytes of every value together (and one of padding).
    var byteCount: Int { storage.count }

    /// Appends the value `write` adds to the end of the buffer; returns its length.
    @discardableResult
    mutating func appendValue(_ write: (inout [UInt8]) -> Void) -> Int {
        storage.removeLast()
        let start = storage.count
        offsets.append(start)
        write(&storage)
        let length = storage.count - start
        storage.append(0)
        return length
    }

    /// A null pointer, which libpq reads as SQL `NULL` or the end of a keyword list.
    mutating func appendNull() {
        offsets.append(nil)
    }

    /// Calls `body` with one pointer per appended buffer, valid only during the call.
    func withPointers<Result>(_ body: ([UnsafePointer<CChar>?]) -> Result) -> Result {
        storage.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { characters in
                let base = characters.baseAddress!
                return body(offsets.map { offset in offset.map { base + $0 } })
            }
        }
    }
}

extension [UInt8] {
    /// Appends `value` in network byte order, as PostgreSQL's binary formats take integers.
    fileprivate mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

/// Calls `body` with a NULL-terminated array of C strings, as libpq's `*Params` calls take.
private func withCStringArray<Result>(
    _ strings: [String],
    _ body: ([UnsafePointer<CChar>?]) -> Result
) -> Result {
    var buffers = PackedCBuffers()
    for string in strings {
        buffers.appendValue { buffer in
            buffer.append(contentsOf: string.utf8)
            buffer.append(0)
        }
    }
    buffers.appendNull()
    return buffers.withPointers(body)
}

extension String {
    /// libpq ends most messages with a newline and continues long ones on tab-indented
    /// lines; `PostgresError.message` promises one line, which logs need.
    fileprivate func flattenedLibpqMessage() -> String {
        split(whereSeparator: \.isNewline)
            .map { $0.trimmingPrefix(while: { $0 == "\t" || $0 == " " }) }
            .filter { !$0.isEmpty }
            .joined(separator: " ")
    }
}
