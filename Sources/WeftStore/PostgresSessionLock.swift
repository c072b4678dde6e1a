import Synchronization

/// A PostgreSQL session-level advisory lock (`pg_try_advisory_lock(namespace, key)`) held on a
/// connection of its own, for as long as that connection lives.
///
/// Why a session lock and not a row: the server releases the lock the moment the holding
/// session ends, whether its process stopped cleanly, was killed with `kill -9`, or lost its
/// connection. So "the lock is held" means "a live process holds it", and a restarted process
/// takes it at once, where a row left behind by a crashed process would make its successor wait
/// out a timeout to tell a crash from a second live process.
///
/// Why it is not enough on its own: a holder whose connection is lost (the server restarted, the
/// network dropped) has lost the lock without knowing it until `acquire` checks again, and
/// another process may take it in between. Whatever the lock protects must also be fenced where
/// it is written (the sequencer writer's incarnation, docs/sequencer.md §3.6).
///
/// Its blocking libpq calls run on the database's threads, never on Swift's cooperative pool;
/// its connection is not one of the database's pool.
public final class PostgresSessionLock: Sendable {
    /// The two 32-bit halves of the lock's key (PostgreSQL's two-key form, which never collides
    /// with a lock taken on a single 64-bit key).
    public let namespace: Int32
    public let key: Int32
    private let database: PostgresDatabase
    /// The connection that holds the lock, while this value believes it does.
    private let holder = Mutex<ConnectionLease?>(nil)

    /// Holds nothing yet: `acquire` opens the connection, to `database`'s server.
    public init(database: PostgresDatabase, namespace: Int32, key: Int32) {
        self.database = database
        self.namespace = namespace
        self.key = key
    }

    /// Takes the lock unless another session holds it, and tells whether this value holds it
    /// now. Called while the lock is held, it checks that the holding connection is still
    /// there (one round trip); if it was lost, so was the lock, and it tries to take it again on
    /// a new connection. Throws if the server cannot be reached.
    public func acquire() async throws -> Bool {
        let (url, namespace, key) = (database.url, self.namespace, self.key)
        return try await database.onDatabaseThread { [self] in
            // The whole check under the mutex: one conversation at a time on the connection, and
            // two callers never both open a session that tries for the lock.
            try holder.withLock { held in
                if let lease = held {
                    do {
                        _ = try lease.connection.execute("SELECT 1")
                        return true
                    } catch {
                        held = nil  // the session, and the lock with it, is gone
                    }
                }
                let connection = try PostgresConnection(url: url)
                let taken = try connection.execute(
                    "SELECT pg_try_advisory_lock($1::int8::int4, $2::int8::int4)", [.int64(Int64(namespace)), .int64(Int64(key))]
                ).rows.first?[0].bool ?? false
                if taken { held = ConnectionLease(connection) }
                return taken  // not taken: the connection closes here
            }
        }
    }

    /// Releases the lock, by ending its session, if this value holds it. Dropping the value
    /// does the same.
    public func release() {
        // PQfinish, in the connection's deinit: one small write (the Terminate message) and a close.
        holder.withLock { $0 = nil }
    }
}
