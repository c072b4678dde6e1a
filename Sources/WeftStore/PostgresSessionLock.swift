import Logging
import NIOPosix
import Synchronization

/// A PostgreSQL session-level advisory lock (`pg_try_advisory_lock(namespace, key)`) held on a
/// connection of its own, for as long as that connection's server session lives.
///
/// Why a session lock and not a row: the server releases the lock when the holding session
/// ends, whether its process stopped cleanly, was killed with `kill -9` (the server sees the
/// socket close), or went silent. So "the lock is held" means "a live process holds it", and a
/// restarted process takes it at once, where a row left behind by a crashed process would make
/// its successor wait out a timeout to tell a crash from a second live process.
///
/// A holder that vanished without closing its socket (its host crashed, the network was cut)
/// leaves a server session that would hold the lock until TCP keepalive notices, hours later by
/// default: the session is therefore opened with `idle_session_timeout` (PostgreSQL 14 and
/// later), and the holder keeps it busy by checking the lock more often than that.
///
/// Why it is not enough on its own: a holder whose session ended (that timeout, a database
/// restart) has lost the lock without knowing it until `acquire` checks again, and another
/// process may take it in between. Whatever the lock protects must also be fenced where it is
/// written (the sequencer writer's incarnation, docs/sequencer.md §3, item 6).
///
/// Needs a session of its own on the server: not through a pooler in transaction mode.
/// Blocking libpq calls run on a thread of its own, never on Swift's cooperative pool nor on the
/// database's threads (a lock check stuck on an unreachable server stalls no query).
public final class PostgresSessionLock: Sendable {
    /// The two 32-bit halves of the lock's key (PostgreSQL's two-key form, which never collides
    /// with a lock taken on a single 64-bit key).
    public let namespace: Int32
    public let key: Int32
    private let url: String
    private let idleSessionTimeout: Duration
    private let thread = NIOThreadPool(numberOfThreads: 1)
    /// What callers on any thread read and set, each time briefly: never held across a call
    /// to the server, so that `stillHeldCheck` and `close` do not wait for a stuck one.
    private let state = Mutex<State>(State())
    /// The lock's connection, kept across attempts that did not get the lock. Used on the
    /// lock's one thread only, which orders the conversation; the mutex is never contended.
    private let conversation = Mutex<ConnectionLease?>(nil)

    private struct State {
        var started = false
        var closed = false
        /// The server process of the connection's session.
        var serverProcess: Int64 = 0
        var holds = false
    }

    /// Who holds a lock, as `pg_stat_activity` shows its session.
    public struct Holder: Sendable, CustomStringConvertible {
        public let serverProcess: Int64
        public let clientAddress: String
        public let sessionStart: String
        public var description: String {
            "server process \(serverProcess), client \(clientAddress.isEmpty ? "on a local socket" : clientAddress), session since \(sessionStart)"
        }
    }

    /// Holds nothing yet: `acquire` opens the connection to `url`. A holder's session that stays
    /// idle for `idleSessionTimeout` is ended by the server (and the lock with it).
    public init(url: String, namespace: Int32, key: Int32, idleSessionTimeout: Duration) {
        self.url = url
        self.namespace = namespace
        self.key = key
        self.idleSessionTimeout = idleSessionTimeout
    }

    /// A statement that another connection can run in its own transaction to check that this
    /// value's session still holds the lock (one row, one boolean), as `acquire` last found it;
    /// nil when this value does not hold it.
    public var stillHeldCheck: (sql: String, parameters: [PostgresValue])? {
        guard let process = state.withLock({ $0.holds ? $0.serverProcess : nil }) else { return nil }
        return (Self.heldBy(pid: "$3::int8::int4"), oidParameters + [.int64(process)])
    }

    /// Takes the lock unless another session holds it, and tells whether this value holds it
    /// now. Called while the lock is held, it asks the server whether its session still holds
    /// it (one round trip); if the session was lost, so was the lock, and it tries to take it
    /// again. False once `close` was called. Throws if the server cannot be reached.
    public func acquire() async throws -> Bool {
        let open = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            if !state.started { thread.start() }
            state.started = true
            return true
        }
        guard open else { return false }
        let (url, idle, parameters, oids) = (url, idleSessionTimeout, lockParameters, oidParameters)
        return try await thread.runIfActive { [self] in
            try conversation.withLock { connection -> Bool in
                guard !state.withLock({ $0.closed }) else { return false }
                if let lease = connection {
                    do {
                        if state.withLock({ $0.holds }) {
                            let still = try lease.connection.execute(Self.heldBySession, oids).rows.first?[0].bool ?? false
                            state.withLock { $0.holds = still }
                            if still { return true }
                        }
                        let taken = try lease.connection.execute(Self.tryLock, parameters).rows.first?[0].bool ?? false
                        return state.withLock { state in
                            state.holds = taken  // close() unlocks it if it came too late
                            return taken && !state.closed
                        }
                    } catch where !lease.connection.isUsable || (error as? PostgresError)?.code == .connectionLost {
                        connection = nil  // the session, and the lock with it, is gone
                        state.withLock { $0.holds = false }
                    }
                }
                let opened = try PostgresConnection(url: url)
                let row = try opened.execute("SELECT pg_backend_pid()::int8, current_setting('server_version_num')::int8").rows[0]
                if try row[1].int64 ?? 0 >= 140000 {
                    let milliseconds = idle.components.seconds * 1000 + idle.components.attoseconds / 1_000_000_000_000_000
                    _ = try opened.execute("SELECT set_config('idle_session_timeout', $1, false)", [.text("\(milliseconds)ms")])
                }
                connection = ConnectionLease(opened)
                let process = try row[0].int64 ?? 0
                let taken = try opened.execute(Self.tryLock, parameters).rows.first?[0].bool ?? false
                return state.withLock { state in
                    state.serverProcess = process
                    state.holds = taken  // close() unlocks it if it came too late
                    return taken && !state.closed
                }
            }
        }
    }

    /// The session that holds the lock, if any (for messages: it may have changed by the time
    /// the caller reads it).
    public func holder() async throws -> Holder? {
        guard state.withLock({ $0.started && !$0.closed }) else { return nil }
        let oids = oidParameters
        return try await thread.runIfActive { [self] in
            try conversation.withLock { connection in
                guard let lease = connection else { return nil }
                guard
                    let row = try lease.connection.execute(
                        """
                        SELECT a.pid::int8, coalesce(host(a.client_addr) || ':' || a.client_port, ''), a.backend_start::text
                        FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                        WHERE l.locktype = 'advisory' AND l.classid = $1::int8::oid AND l.objid = $2::int8::oid AND l.objsubid = 2 AND l.granted
                        """, oids
                    ).rows.first
                else { return nil }
                return Holder(serverProcess: try row[0].int64 ?? 0, clientAddress: try row[1].string ?? "", sessionStart: try row[2].string ?? "")
            }
        }
    }

    /// Releases the lock and ends its session; `acquire` returns false from now on.
    public func close() async {
        let started = state.withLock { state -> Bool in
            defer { state.closed = true }
            return state.started
        }
        guard started else { return }
        let parameters = lockParameters
        _ = try? await thread.runIfActive { [self] in
            conversation.withLock { connection in
                // Unlocked before the session ends: a successor that tries right after finds
                // the lock free, rather than racing the server's cleanup of this session. (An
                // attempt under way when `close` was called returned false: `closed` is set.)
                let held = state.withLock { state in
                    defer { state.holds = false }
                    return state.holds
                }
                if held, let lease = connection {
                    _ = try? lease.connection.execute("SELECT pg_advisory_unlock($1::int8::int4, $2::int8::int4)", parameters)
                }
                connection = nil  // PQfinish, here on the lock's thread
            }
        }
        try? await thread.shutdownGracefully()
    }

    /// The key as the lock functions take it (two `int4`s).
    private var lockParameters: [PostgresValue] { [.int64(Int64(namespace)), .int64(Int64(key))] }
    /// The key as `pg_locks` shows it (`classid`, `objid`: `oid`s, unsigned).
    private var oidParameters: [PostgresValue] {
        [.int64(Int64(UInt32(bitPattern: namespace))), .int64(Int64(UInt32(bitPattern: key)))]
    }

    private static let tryLock = "SELECT pg_try_advisory_lock($1::int8::int4, $2::int8::int4)"
    /// Whether this session holds the lock: asked of the server, so that a connection that is
    /// not the session it seems (a pooler in transaction mode) does not pass for the holder.
    private static let heldBySession = heldBy(pid: "pg_backend_pid()")

    /// Whether the server process `pid` (an SQL expression) holds the lock keyed by `$1`, `$2`
    /// (`oidParameters`).
    private static func heldBy(pid: String) -> String {
        """
        SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int8::oid AND objid = $2::int8::oid
            AND objsubid = 2 AND granted AND pid = \(pid))
        """
    }
}
