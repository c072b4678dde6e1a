public import Logging
public import WeftCrypto
public import WeftStore
import WeftWire

/// A node's topology transactions in its PostgreSQL database, one history per domain.
///
/// The store persists what `TopologyState` accepted and rebuilds the state from it at
/// start-up; it does not decide anything itself. The pattern, so that memory and database
/// never disagree:
///
/// ```swift
/// var next = state
/// let outcome = next.add(broadcast, sequencedAt: t)   // pure: validates and applies
/// try await store.persist(outcome.changes)             // one database transaction
/// state = next                                         // only once it is durable
/// ```
///
/// Persisting is idempotent (a transaction's row is keyed by its position and hash), so
/// re-processing a sequencer event after a crash writes nothing twice.
///
/// Two kinds of history share the code: the domain's (`init(database:domain:)`, table
/// `topology_transactions`, component `topology`), which the sequencers and the domain manager
/// keep, and a member's own copy (`init(database:domain:member:)`, table
/// `member_topology_transactions`, component `member-topology`), which a participant or
/// mediator builds from its own sequencer stream. They are separate tables so that a member
/// may share a database with a sequencer without the two histories ever mixing.
public struct TopologyStore: Sendable {
    /// The topology schema, applied by `migrate()` under the `topology` component.
    public static let migrator = Migrator(component: "topology", migrations: migrations)

    static let migrations = [
        Migration(
            1, "create topology_transactions",
            """
            CREATE TABLE topology_transactions (
                domain             text   NOT NULL,
                position           bigint NOT NULL CHECK (position >= 0),
                transaction_hash   bytea  NOT NULL,
                sequenced_at       bigint NOT NULL,
                valid_from         bigint NOT NULL,
                valid_until        bigint,
                mapping_key        text   NOT NULL,
                serial             bigint NOT NULL CHECK (serial >= 1),
                operation          text   NOT NULL CHECK (operation IN ('replace', 'remove')),
                signed_transaction bytea  NOT NULL,
                PRIMARY KEY (domain, position),
                UNIQUE (domain, transaction_hash)
            );
            CREATE INDEX topology_transactions_by_key ON topology_transactions (domain, mapping_key, serial);
            COMMENT ON TABLE topology_transactions IS
                'Accepted topology transactions per domain, in the order applied (docs/topology.md). Times are microseconds since the Unix epoch; signed_transaction is a weft.v1.SignedTopologyTransaction.';
            """),
        Migration(
            2, "the domain manager's stream position",
            // The domain manager read its stream from counter 0 at every start: after the
            // sequencer pruned events it had acknowledged, no start could read it any more.
            """
            CREATE TABLE domain_manager_stream (
                domain       text   PRIMARY KEY,
                next_counter bigint NOT NULL CHECK (next_counter >= 0)
            );
            COMMENT ON TABLE domain_manager_stream IS
                'The next counter of the domain manager''s sequencer stream to read: moved after the topology changes of the events before it are stored, acknowledged to the sequencer no further.';
            """),
    ]

    /// A member's own copy of the domain's history, applied by `migrate()` of a member's store
    /// under the `member-topology` component.
    public static let memberMigrator = Migrator(component: "member-topology", migrations: memberMigrations)

    static let memberMigrations = [
        Migration(
            1, "create member_topology_transactions",
            """
            CREATE TABLE member_topology_transactions (
                member             text   NOT NULL,
                domain             text   NOT NULL,
                position           bigint NOT NULL CHECK (position >= 0),
                transaction_hash   bytea  NOT NULL,
                sequenced_at       bigint NOT NULL,
                valid_from         bigint NOT NULL,
                valid_until        bigint,
                mapping_key        text   NOT NULL,
                serial             bigint NOT NULL CHECK (serial >= 1),
                operation          text   NOT NULL CHECK (operation IN ('replace', 'remove')),
                signed_transaction bytea  NOT NULL,
                PRIMARY KEY (member, domain, position),
                UNIQUE (member, domain, transaction_hash)
            );
            COMMENT ON TABLE member_topology_transactions IS
                'A member''s copy of its domain''s topology history, built from its own sequencer stream (docs/topology.md §6). Same columns as topology_transactions, per member.';
            """)
    ]

    public let database: PostgresDatabase
    /// The domain whose history this store reads and writes.
    public let domain: UniqueIdentifier
    /// The member whose own copy this is; nil for the domain's history.
    public let member: MemberID?
    private let logger: Logger

    /// The domain's history (sequencers, domain manager).
    public init(database: PostgresDatabase, domain: UniqueIdentifier, logger: Logger = Logger(label: "weft.topology")) {
        self.database = database
        self.domain = domain
        self.member = nil
        self.logger = logger
    }

    /// `member`'s own copy of the domain's history (participants, mediators).
    public init(
        database: PostgresDatabase, domain: UniqueIdentifier, member: MemberID, logger: Logger = Logger(label: "weft.topology")
    ) {
        self.database = database
        self.domain = domain
        self.member = member
        self.logger = logger
    }

    /// The migrations of this store's table.
    public var schema: Migrator { member == nil ? Self.migrator : Self.memberMigrator }

    /// The table and the columns (with their values) that select this store's history.
    private var table: String { member == nil ? "topology_transactions" : "member_topology_transactions" }
    private var scope: [(column: String, value: PostgresValue)] {
        var scope: [(column: String, value: PostgresValue)] = [("domain", .text(domain.description))]
        if let member { scope.append(("member", .text(member.description))) }
        return scope
    }
    /// `domain = $1 [AND member = $2]`, with the parameters numbered from `first`.
    private func scopeCondition(from first: Int) -> String {
        scope.enumerated().map { "\($0.element.column) = $\(first + $0.offset)" }.joined(separator: " AND ")
    }

    /// Applies pending topology migrations; returns the versions applied.
    @discardableResult
    public func migrate() async throws -> [Int] {
        let schema = self.schema
        return try await database.withConnection { try schema.migrate($0) }
    }

    /// Rebuilds the domain's topology from the database, re-validating every transaction in
    /// order, and checks that the result agrees with what was stored: a row that no longer
    /// validates, or a different change delay than the one the history was written with,
    /// throws `TopologyError.inconsistentStore` rather than start with a different topology.
    public func load(changeDelayMicros: Int64) async throws -> TopologyState {
        let schema = self.schema
        try await database.withConnection { try schema.requireCurrent($0) }
        let sql = """
            SELECT position, sequenced_at, valid_from, valid_until, signed_transaction, transaction_hash
            FROM \(table) WHERE \(scopeCondition(from: 1)) ORDER BY position
            """
        let parameters = scope.map(\.value)
        let rows = try await database.withConnection { connection in
            try connection.execute(sql, parameters).rows
        }
        var state = TopologyState(domain: domain, changeDelayMicros: changeDelayMicros)
        var storedUntil: [SequencingTimestamp?] = []
        for row in rows {
            guard let position = try row[0].int64, let sequencedAt = try row[1].int64, let validFrom = try row[2].int64,
                let bytes = try row[4].bytes
            else { throw TopologyError.inconsistentStore("a row of domain \(domain) has NULL columns") }
            let validUntil = try row[3].int64.map(SequencingTimestamp.init(microsSinceEpoch:))
            guard position == Int64(state.transactions.count) else {
                throw TopologyError.inconsistentStore(
                    "positions of domain \(domain) jump from \(state.transactions.count) to \(position)")
            }
            let change: TopologyChange?
            do {
                let signed = try SignedTopologyTransaction(Weft.V1.SignedTopologyTransaction(serializedBytes: bytes))
                change = try state.add(signed, sequencedAt: .init(microsSinceEpoch: sequencedAt))
            } catch {
                throw TopologyError.inconsistentStore(
                    "the transaction at position \(position) no longer validates: \(error)")
            }
            guard let change else {
                throw TopologyError.inconsistentStore("the transaction at position \(position) is stored twice")
            }
            guard change.added.validFrom.microsSinceEpoch == validFrom else {
                throw TopologyError.inconsistentStore(
                    "the transaction at position \(position) was stored with a topology change delay of "
                        + "\(validFrom &- sequencedAt)µs, but this node is configured with \(changeDelayMicros)µs; "
                        + "every node of a domain must use the domain's delay")
            }
            guard Self.bytes(try row[5].bytes) == change.added.transaction.hash.digest else {
                throw TopologyError.inconsistentStore(
                    "the transaction at position \(position) does not match its stored hash")
            }
            storedUntil.append(validUntil)
        }
        for (position, validUntil) in storedUntil.enumerated()
        where state.transactions[position].validUntil != validUntil {
            throw TopologyError.inconsistentStore(
                "the transaction at position \(position) is stored valid until \(validUntil.map(String.init(describing:)) ?? "further notice"), "
                    + "but the history says \(state.transactions[position].validUntil.map(String.init(describing:)) ?? "further notice")"
            )
        }
        logger.info(
            "loaded topology",
            metadata: [LogKey.domain: "\(domain)", LogKey.transactionCount: "\(state.transactions.count)"])
        return state
    }

    /// Writes `changes` (from `TopologyState.add`) in one database transaction: each new
    /// transaction and the `valid_until` of the one it superseded. Writing the same changes
    /// again is a no-op; a different transaction already at the same position means two
    /// nodes sharing this database diverged, and throws.
    ///
    /// Two nodes on one database (the sequencers) write the same changes at about the same
    /// time. `ON CONFLICT` names no index: with `ON CONFLICT (position)`, the insert that waits
    /// for the other node's commit failed on the other unique index (the transaction's hash)
    /// with SQLSTATE 23505 instead of finding the row already there.
    public func persist(_ changes: [TopologyChange]) async throws {
        guard !changes.isEmpty else { return }
        let domainText = domain.description
        let scope = self.scope
        var rows: [[PostgresValue]] = []
        var supersessions: [[PostgresValue]] = []
        for change in changes {
            let added = change.added
            let signed = try added.transaction.wire.serializedBytes()
            rows.append(scope.map(\.value) + [
                .int64(Int64(added.position)), .bytes(added.transaction.hash.digest),
                .int64(added.sequencedAt.microsSinceEpoch), .int64(added.validFrom.microsSinceEpoch),
                added.validUntil.map { .int64($0.microsSinceEpoch) } ?? .null, .text(added.key.description),
                .int64(Int64(added.serial)), .text(added.operation == .remove ? "remove" : "replace"), .bytes(signed),
            ])
            if let superseded = change.superseded, let until = superseded.validUntil {
                supersessions.append(scope.map(\.value) + [.int64(Int64(superseded.position)), .int64(until.microsSinceEpoch)])
            }
        }
        let inserts = rows
        let updates = supersessions
        let n = scope.count
        let scopeColumns = scope.map(\.column).joined(separator: ", ")
        let insert = """
            INSERT INTO \(table) (\(scopeColumns), position, transaction_hash, sequenced_at, valid_from,
                valid_until, mapping_key, serial, operation, signed_transaction)
            VALUES (\((1...n + 9).map { $0 == n + 5 ? "$\($0)::bigint" : "$\($0)" }.joined(separator: ", ")))
            ON CONFLICT DO NOTHING
            """
        let select = "SELECT transaction_hash FROM \(table) WHERE \(scopeCondition(from: 1)) AND position = $\(n + 1)"
        let update = "UPDATE \(table) SET valid_until = $\(n + 2) WHERE \(scopeCondition(from: 1)) AND position = $\(n + 1)"
        let owner = member.map { "\($0)'s copy of " } ?? ""
        try await database.transaction { connection in
            for row in inserts {
                _ = try connection.execute(insert, row)
                let stored = try connection.execute(select, Array(row[0...n])).rows.first?.first?.bytes
                guard let stored, PostgresValue.bytes(stored) == row[n + 1] else {
                    throw TopologyError.inconsistentStore(
                        "another transaction is stored at position \(row[n]) of \(owner)domain \(domainText): nodes sharing this database diverged"
                    )
                }
            }
            for supersession in updates {
                _ = try connection.execute(update, supersession)
            }
        }
    }

    /// Persists one change (see `persist(_:)` for many).
    public func persist(_ change: TopologyChange) async throws {
        try await persist([change])
    }

    private static func bytes(_ value: [UInt8]?) -> [UInt8] { value ?? [] }
}

/// Metadata keys of the topology's log lines.
enum LogKey {
    static let domain = "weft.domain"
    static let transactionCount = "weft.topology.transaction_count"
}
