public import WeftStore
public import WeftWire

/// Domain migration (docs/operator-guide.md §7.3): when a domain's sequencer backend is lost, a
/// participant moves to a new domain with everything it holds — its active contracts, its
/// ledger and its offsets — and starts the new domain's stream at counter 0. What was in
/// flight on the lost domain can never be decided there and is rejected; the parties it hosted
/// must be hosted on the new domain again (topology is per domain), which the node does after
/// the switch and records here, so a restart in between finishes it.
extension ParticipantStore {
    static let domainMigrationMigration = Migration(
        7, "record domain migrations",
        """
        CREATE TABLE participant_domain_migrations (
            participant        text    NOT NULL,
            migrated_at        timestamptz NOT NULL DEFAULT now(),
            from_domain        text    NOT NULL,
            to_domain          text    NOT NULL,
            from_next_counter  bigint  NOT NULL,
            from_last_ts       bigint  NOT NULL,
            ledger_end         bigint  NOT NULL,
            active_contracts   bigint  NOT NULL,
            requests_abandoned bigint  NOT NULL,
            commands_rejected  bigint  NOT NULL,
            parties            text[]  NOT NULL,
            permissions        text[]  NOT NULL,
            parties_hosted     boolean NOT NULL DEFAULT false,
            PRIMARY KEY (participant, to_domain)
        );
        COMMENT ON TABLE participant_domain_migrations IS
            'Domains this participant left for another (weft repair migrate-domain): where its stream stopped on the old one (from_next_counter, from_last_ts µs), what it moved (ledger_end, active_contracts), what it rejected because the old domain can no longer decide it, and the parties to host on the new domain with their permissions (the weft.v1.ParticipantPermission numbers; parties_hosted once done). Sent commitments of periods up to from_last_ts can no longer be matched; one stops holding back the pruning safe point once a commitment to the same counter-participant after the migration matched.';
        """)

    /// The reason id of requests and commands the lost domain can no longer decide.
    public static let domainMigratedReasonID = "PARTICIPANT_DOMAIN_MIGRATED"

    /// A party to host on the new domain, with the permission it had on the old one.
    public struct PartyToHost: Sendable, Equatable {
        public let party: String
        public let permission: Weft.V1.ParticipantPermission

        public init(party: String, permission: Weft.V1.ParticipantPermission) {
            self.party = party
            self.permission = permission
        }
    }

    /// One domain migration as recorded.
    public struct DomainMigration: Sendable, Equatable {
        public let fromDomain: String
        public let toDomain: String
        /// The next counter and last sequencing time (µs) on the old domain when it was left.
        public let fromNextCounter: UInt64
        public let fromLastTimestamp: Int64
        public let ledgerEnd: Int64
        public let activeContracts: Int
        public let requestsAbandoned: Int
        public let commandsRejected: Int
        /// The parties to host on the new domain.
        public let parties: [PartyToHost]
        public let partiesHosted: Bool
    }

    /// Switches this participant's state to `toDomain`, in the caller's database transaction
    /// `connection` (with the domain connection's own change, so that both happen or neither):
    /// requests without a verdict and commands in flight are rejected with
    /// `domainMigratedReasonID` (their locks go with them), the stream position goes back to
    /// counter 0 (the new domain's first event; the last time is kept, so time only moves
    /// forward), and the migration is recorded with the parties to host again. The node must
    /// not run while this happens. A second call for the same `toDomain` changes nothing and
    /// returns the record made by the first.
    public func switchDomain(
        from fromDomain: String, to toDomain: String, parties: [PartyToHost], on connection: PostgresConnection
    ) throws -> (DomainMigration, recordedBefore: Bool) {
        let me = self.me
        if let recorded = try Self.migrations(connection, me, toDomain: toDomain).first { return (recorded, true) }
        let cursor = try connection.execute(
            "SELECT next_counter, last_ts FROM participant_cursor WHERE participant = $1", [me]
        ).rows.first
        let reason = "the domain \(fromDomain) was left for \(toDomain) (its sequencer backend was lost) before this was decided"
        let abandoned = try connection.execute(
            "UPDATE participant_requests SET outcome = $2 WHERE participant = $1 AND outcome IS NULL RETURNING 1",
            [me, .text(Self.domainMigratedReasonID)]
        ).rows.count
        let rejected = try connection.execute(
            """
            UPDATE participant_commands SET state = 'rejected', reason_id = $2, reason = $3, batch = NULL
            WHERE participant = $1 AND state = 'in_flight' RETURNING 1
            """, [me, .text(Self.domainMigratedReasonID), .text(reason)]
        ).rows.count
        let counts = try connection.execute(
            """
            SELECT (SELECT count(*) FROM participant_contracts WHERE participant = $1 AND archived_offset IS NULL)::bigint,
                   greatest(
                       (SELECT coalesce(max(ledger_offset), 0) FROM participant_transactions WHERE participant = $1),
                       (SELECT coalesce(max(pruned_offset), 0) FROM participant_pruning WHERE participant = $1))::bigint
            """, [me]
        ).rows.first
        let migration = DomainMigration(
            fromDomain: fromDomain, toDomain: toDomain, fromNextCounter: UInt64(try cursor?[0].int64 ?? 0),
            fromLastTimestamp: try cursor?[1].int64 ?? 0, ledgerEnd: try counts?[1].int64 ?? 0,
            activeContracts: Int(try counts?[0].int64 ?? 0), requestsAbandoned: abandoned, commandsRejected: rejected,
            parties: parties, partiesHosted: false)
        _ = try connection.execute("UPDATE participant_cursor SET next_counter = 0 WHERE participant = $1", [me])
        _ = try connection.execute(
            """
            INSERT INTO participant_domain_migrations (participant, from_domain, to_domain, from_next_counter, from_last_ts,
                ledger_end, active_contracts, requests_abandoned, commands_rejected, parties, permissions)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            """,
            [
                me, .text(fromDomain), .text(toDomain), .int64(Int64(migration.fromNextCounter)),
                .int64(migration.fromLastTimestamp), .int64(migration.ledgerEnd), .int64(Int64(migration.activeContracts)),
                .int64(Int64(abandoned)), .int64(Int64(rejected)), Self.textArray(parties.map(\.party)),
                Self.textArray(parties.map { "\($0.permission.rawValue)" }),
            ])
        return (migration, false)
    }

    /// The migration to `toDomain`, if this participant made one.
    public func domainMigration(to toDomain: String) async throws -> DomainMigration? {
        let me = self.me
        return try await database.withConnection { try Self.migrations($0, me, toDomain: toDomain).first }
    }

    /// Every domain migration this participant made, oldest first.
    public func domainMigrations() async throws -> [DomainMigration] {
        let me = self.me
        return try await database.withConnection { try Self.migrations($0, me, toDomain: nil) }
    }

    /// Records that the parties of the migration to `toDomain` are hosted there.
    public func markPartiesHosted(toDomain: String) async throws {
        let me = self.me
        _ = try await database.withConnection { connection in
            try connection.execute(
                "UPDATE participant_domain_migrations SET parties_hosted = true WHERE participant = $1 AND to_domain = $2",
                [me, .text(toDomain)])
        }
    }

    private static func migrations(_ connection: PostgresConnection, _ me: PostgresValue, toDomain: String?) throws
        -> [DomainMigration]
    {
        try connection.execute(
            """
            SELECT from_domain, to_domain, from_next_counter, from_last_ts, ledger_end, active_contracts, requests_abandoned,
                   commands_rejected, array_to_string(parties, E'\\n'), array_to_string(permissions, E'\\n'), parties_hosted
            FROM participant_domain_migrations WHERE participant = $1 AND ($2::text IS NULL OR to_domain = $2)
            ORDER BY migrated_at, ledger_end
            """, [me, toDomain.map { .text($0) } ?? .null]
        ).rows.map { row in
            DomainMigration(
                fromDomain: try require(row[0].string, "from_domain"), toDomain: try require(row[1].string, "to_domain"),
                fromNextCounter: UInt64(try require(row[2].int64, "from_next_counter")),
                fromLastTimestamp: try require(row[3].int64, "from_last_ts"),
                ledgerEnd: try require(row[4].int64, "ledger_end"),
                activeContracts: Int(try require(row[5].int64, "active_contracts")),
                requestsAbandoned: Int(try require(row[6].int64, "requests_abandoned")),
                commandsRejected: Int(try require(row[7].int64, "commands_rejected")),
                parties: zip(
                    (try row[8].string ?? "").split(separator: "\n"), (try row[9].string ?? "").split(separator: "\n")
                ).map { PartyToHost(party: String($0), permission: .init(rawValue: Int32($1) ?? 0)) },
                partiesHosted: try row[10].bool ?? false)
        }
    }
}

/// Which domain each part of a participant's ledger was committed on: after a domain migration
/// the transactions up to the migration's ledger end stay on the domain that was left (the
/// Ledger API reports each transaction's domain).
public struct DomainHistory: Sendable, Equatable {
    /// The domain the participant is on now.
    public let current: String
    /// The domains left, each with the last offset committed there, in ledger order.
    let left: [Left]

    struct Left: Sendable, Equatable {
        let upTo: Int64
        let domain: String
    }

    init(current: String, migrations: [ParticipantStore.DomainMigration]) {
        self.current = current
        left = migrations.map { Left(upTo: $0.ledgerEnd, domain: $0.fromDomain) }.sorted { $0.upTo < $1.upTo }
    }

    /// The domain the transaction at `offset` was committed on.
    public func domain(ofOffset offset: Int64) -> String {
        left.first { offset <= $0.upTo }?.domain ?? current
    }
}
