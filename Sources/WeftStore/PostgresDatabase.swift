public import Logging
import NIOPosix
import Synchronization

/// A node's PostgreSQL database: a pool of libpq connections whose blocking
/// calls run on a dedicated thread pool, never on an event loop or on Swift's
/// cooperative pool, so a slow query stalls nothing else.
///
/// `withConnection` lends one connection to a synchronous closure on a pool
/// thread; `transaction` does the same inside BEGIN … COMMIT. A connection
/// that broke (the server restarted, the network dropped) is discarded, and
/// the next request opens a fresh one, so a restarted database needs no
/// restart of the node: callers see one failed request (`connectionLost`),
/// which they may retry.
public final class PostgresDatabase: Sendable {
    /// The libpq URL (secrets redacted in every message), or "" for the `PG*` environment variables.
    public let url: String
    private let threads: NIOThreadPool
    private let pool: ConnectionPool
    private let logger: Logger
    /// Transactions committed through `transaction` since this value was made.
    private let committed = Atomic<Int>(0)
    /// The running `ANALYZE`, if any, for `shutdown` to wait for.
    private let analyzing = Mutex<Task<Void, Never>?>(nil)

    /// After this many committed transactions the database is analyzed (`ANALYZE`).
    ///
    /// A statement run often is prepared, and PostgreSQL keeps one generic plan for it, made
    /// with the statistics of that moment. A new node's tables are empty then, and have no
    /// statistics until autovacuum's first `ANALYZE`, a minute or more later (its naptime); a
    /// plan made for an empty table, such as a sequential scan or an index that only matches
    /// the node's own id, reads the whole table on every call as the table grows (~800 buffers
    /// per call in `weft-bench transactions`). `ANALYZE` gives the planner statistics and makes
    /// every session plan its statements again.
    public static let analyzeAfterTransactions: Set<Int> = [100, 1_000, 10_000]

    /// Opens nothing yet: connections are made on first use, up to `maximumConnections`.
    public init(url: String, maximumConnections: Int = 4, logger: Logger = Logger(label: "weft.store")) {
        precondition(maximumConnections > 0)
        self.url = url
        self.logger = logger
        threads = NIOThreadPool(numberOfThreads: maximumConnections)
        threads.start()
        pool = ConnectionPool(url: url, maximum: maximumConnections)
    }

    /// Runs `body` with a connection of its own, on a database thread.
    public func withConnection<Result: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) throws -> Result
    ) async throws -> Result {
        let lease = try await pool.acquire(on: threads)
        // The body and the health check of its connection run in one job, so a cancelled
        // caller never leaves a connection whose state nobody checked.
        let outcome: (result: Swift.Result<Result, any Error>, usable: Bool)
        do {
            outcome = try await threads.runIfActive {
                var result = Swift.Result { try body(lease.connection) }
                // Statements the body sent but never read back: their failure is its failure.
                if lease.connection.hasQueuedStatements {
                    do { try lease.connection.flush() } catch { if case .success = result { result = .failure(error) } }
                }
                return (result, lease.connection.isReusable)
            }
        } catch {
            // The job never ran (the pool is shutting down): the connection is untouched.
            await pool.release(lease, usable: true)
            throw error
        }
        if !outcome.usable {
            logger.warning(
                "discarding a database connection that is broken or still in a transaction; the next request opens a new one")
        }
        await pool.release(lease, usable: outcome.usable)
        return try outcome.result.get()
    }

    /// Runs `body` inside a transaction: committed if it returns, rolled back if it throws.
    public func transaction<Result: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection) throws -> Result
    ) async throws -> Result {
        try await withConnection { connection in
            // BEGIN and COMMIT travel with the body's statements (pipeline mode): a body that
            // only `enqueue`s its writes costs one round trip in all.
            try Self.inTransaction(connection, self) { connection in
                let result = try body(connection)
                try connection.enqueue("COMMIT")
                try connection.flush()
                return result
            }
        }
    }

    /// Runs the statements `body` enqueues as one transaction sent in one pipeline with BEGIN
    /// and COMMIT, and returns their results in order: one round trip for a transaction whose
    /// statements do not depend on each other's results (a statement can still make its
    /// writes conditional on what it reads). Committed unless a statement fails. `body` must
    /// only `enqueue`: an `execute` would send what is queued early and shift the results.
    /// `countsAsWrite: false` for a read that needs a transaction (a `SET LOCAL`): it does not
    /// count toward the transactions after which the database is analyzed.
    public func pipelinedTransaction(
        countsAsWrite: Bool = true, _ body: @escaping @Sendable (PostgresConnection) throws -> Void
    ) async throws -> [PostgresResult] {
        try await withConnection { connection in
            try Self.inTransaction(connection, self, countsAsWrite: countsAsWrite) { connection in
                try body(connection)
                try connection.enqueue("COMMIT")
                return Array(try connection.flush().dropFirst().dropLast())  // without BEGIN and COMMIT
            }
        }
    }

    /// BEGIN, then `body`, which commits; rolled back if it throws.
    private static func inTransaction<Result>(
        _ connection: PostgresConnection, _ database: PostgresDatabase, countsAsWrite: Bool = true,
        _ body: (PostgresConnection) throws -> Result
    ) throws -> Result {
        try connection.enqueue("BEGIN")
        do {
            let result = try body(connection)
            guard countsAsWrite else { return result }
            let count = database.committed.wrappingAdd(1, ordering: .relaxed).newValue
            if analyzeAfterTransactions.contains(count) { database.analyzeInBackground(after: count) }
            return result
        } catch {
            if connection.isUsable {
                _ = try? connection.flush()  // whatever was sent; the transaction is void
                // Not after a COMMIT that failed: that ended the transaction (the server would
                // answer "there is no transaction in progress").
                if connection.isInTransaction { _ = try? connection.execute("ROLLBACK") }
            }
            throw error
        }
    }

    /// Closes every idle connection and stops the database threads; requests after this fail.
    public func shutdown() async {
        await analyzing.withLock { $0 }?.value
        await pool.closeAll()
        try? await threads.shutdownGracefully()
    }

    /// Runs `ANALYZE` on a connection of the pool, without holding up the transaction that
    /// reached `count`. A failure only means autovacuum analyzes later.
    private func analyzeInBackground(after count: Int) {
        let logger = self.logger
        analyzing.withLock { running in
            guard running == nil else { return }  // the previous one still runs: skip this one
            running = Task { [self] in
                let start = ContinuousClock.now
                do {
                    try await withConnection { connection in
                        // This user's tables only: a bare ANALYZE warns about every catalog it may not analyze.
                        let tables = try connection.execute(
                            """
                            SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
                            WHERE tableowner = current_user AND schemaname NOT IN ('pg_catalog', 'information_schema')
                            """
                        ).rows.compactMap { try $0[0].string }
                        if !tables.isEmpty { try connection.executeScript("ANALYZE " + tables.joined(separator: ", ")) }
                    }
                    logger.debug(
                        "analyzed the database after \(count) transactions, so that statements are planned with statistics",
                        metadata: ["duration": "\(ContinuousClock.now - start)"])
                } catch {
                    logger.notice(
                        "ANALYZE after \(count) transactions failed; autovacuum will analyze the tables later",
                        metadata: ["error": "\(error)"])
                }
                analyzing.withLock { $0 = nil }
            }
        }
    }
}

/// One pooled connection, lent to one request at a time (which is what makes
/// handing it across threads safe).
final class ConnectionLease: @unchecked Sendable {
    let connection: PostgresConnection
    init(_ connection: PostgresConnection) { self.connection = connection }
}

/// The idle connections and the requests waiting for one.
actor ConnectionPool {
    private let url: String
    private let maximum: Int
    private var idle: [ConnectionLease] = []
    private var open = 0
    private var waiting: [CheckedContinuation<ConnectionLease?, Never>] = []
    private var closed = false

    init(url: String, maximum: Int) {
        self.url = url
        self.maximum = maximum
    }

    /// An idle connection, a new one if fewer than `maximum` are open, or the
    /// next one released.
    func acquire(on threads: NIOThreadPool) async throws -> ConnectionLease {
        while true {
            if closed { throw PostgresError(code: .connectionFailed, message: "the database pool has been shut down") }
            if let lease = idle.popLast() {
                // One the server may have closed while it waited is dropped (closed as it is freed),
                // not handed out to fail.
                guard !lease.connection.mayBeClosedByServer else {
                    open -= 1
                    continue
                }
                return lease
            }
            if open < maximum {
                open += 1
                let url = self.url
                do {
                    return try await threads.runIfActive { ConnectionLease(try PostgresConnection(url: url)) }
                } catch {
                    open -= 1
                    wakeOne(nil)  // let a waiter try to connect in turn
                    throw error
                }
            }
            if let lease = await withCheckedContinuation({ waiting.append($0) }) { return lease }
        }
    }

    /// Returns a connection; a broken one is dropped and its slot freed.
    func release(_ lease: ConnectionLease, usable: Bool) {
        guard usable, !closed else {
            open -= 1
            wakeOne(nil)
            return
        }
        if waiting.isEmpty {
            idle.append(lease)
        } else {
            wakeOne(lease)
        }
    }

    /// Hands `lease` to the first waiter (nil: a slot became free, try again).
    private func wakeOne(_ lease: ConnectionLease?) {
        guard !waiting.isEmpty else {
            if let lease { idle.append(lease) }
            return
        }
        waiting.removeFirst().resume(returning: lease)
    }

    func closeAll() {
        closed = true
        open -= idle.count
        idle = []  // PQfinish runs as each lease is released
        let waiters = waiting
        waiting = []
        for waiter in waiters { waiter.resume(returning: nil) }
    }
}
