import Foundation
import WeftContracts
public import WeftStore

/// The participant's ACS commitment tables (migration 5): the periods it computed, the
/// commitments it sent, and those it received with the outcome of comparing them.
///
/// A commitment holds for a range of times `(from_exclusive, to_inclusive]` in which the
/// participant processed no event, so its shared state was the same at every time of it; two
/// participants' commitments are compared when their ranges overlap. The pruning safe point is
/// one query on the partial index of unmatched sent commitments plus one on the periods'
/// primary key.
public struct CommitmentStore: Sendable {
    static let migration = Migration(
        5, "ACS commitments: periods, sent and received commitments",
        """
        CREATE TABLE participant_commitment_periods (
            participant    text   NOT NULL,
            from_exclusive bigint NOT NULL,
            to_inclusive   bigint NOT NULL,
            PRIMARY KEY (participant, to_inclusive)
        );
        COMMENT ON TABLE participant_commitment_periods IS
            'ACS commitment periods this participant computed (µs since the epoch): its shared state was the same at every time in (from_exclusive, to_inclusive]; to_inclusive is a reconciliation interval boundary.';
        CREATE TABLE participant_sent_commitments (
            participant         text    NOT NULL,
            counter_participant text    NOT NULL,
            from_exclusive      bigint  NOT NULL,
            to_inclusive        bigint  NOT NULL,
            commitment          bytea   NOT NULL,
            matched             boolean NOT NULL DEFAULT false,
            PRIMARY KEY (participant, counter_participant, to_inclusive)
        );
        CREATE INDEX participant_sent_commitments_unmatched ON participant_sent_commitments (participant, to_inclusive)
            WHERE NOT matched;
        COMMENT ON TABLE participant_sent_commitments IS
            'ACS commitments this participant computed and sent, one per counter-participant sharing contracts with it per period; matched once an equal commitment of the counter-participant for an overlapping period arrived (the pruning safe point is before the oldest unmatched one).';
        CREATE TABLE participant_received_commitments (
            participant         text   NOT NULL,
            counter_participant text   NOT NULL,
            from_exclusive      bigint NOT NULL,
            to_inclusive        bigint NOT NULL,
            commitment          bytea  NOT NULL,
            state               text   NOT NULL CHECK (state IN ('outstanding', 'matched', 'mismatched')),
            own_commitment      bytea,
            PRIMARY KEY (participant, counter_participant, to_inclusive)
        );
        CREATE INDEX participant_received_commitments_mismatched ON participant_received_commitments (participant)
            WHERE state = 'mismatched';
        COMMENT ON TABLE participant_received_commitments IS
            'Signed ACS commitments received from counter-participants (signature checked), compared with this participant''s own for an overlapping period: outstanding until it has one, then matched or mismatched (own_commitment: what this participant had; empty when it shares nothing with the sender).';
        """)

    /// The column comment says `acs-commitments-<to_inclusive>`, the message id of a period's
    /// single batch when it was written; since then each commitment travels in a batch of its
    /// own, `acs-commitments-<to_inclusive>-<counter_participant>`
    /// (`ParticipantNode.commitmentMessageID`), and `sent` is set row by row. The SQL stays as
    /// applied: its checksum is compared at every start.
    static let sentMigration = Migration(
        14, "sent commitments say whether the sequencer took them",
        // A period's commitments were recorded, then sent in the background: a crash or a stop
        // in between, or a sequencer away for longer than the send's max sequencing time, lost
        // them for good (nothing sent them again), and the counter-participants' pruning safe
        // point stayed before that period for ever. Rows from before this column count as sent.
        """
        ALTER TABLE participant_sent_commitments ADD COLUMN sent boolean NOT NULL DEFAULT true;
        ALTER TABLE participant_sent_commitments ALTER COLUMN sent SET DEFAULT false;
        CREATE INDEX participant_sent_commitments_unsent ON participant_sent_commitments (participant, to_inclusive)
            WHERE NOT sent;
        COMMENT ON COLUMN participant_sent_commitments.sent IS
            'Whether the sequencer took the batch of this period''s commitments (message id acs-commitments-<to_inclusive>); a start and each new period send the unsent ones again, oldest first.';
        """)

    public let database: PostgresDatabase
    public let participant: String

    public init(database: PostgresDatabase, participant: String) {
        self.database = database
        self.participant = participant
    }

    /// One comparison of a received commitment with this participant's own.
    public struct Comparison: Sendable, Equatable {
        public let counterParticipant: String
        public let fromExclusive: Int64
        public let toInclusive: Int64
        /// Empty when this participant shares nothing with the counter-participant then.
        public let own: [UInt8]
        public let received: [UInt8]
        public var matches: Bool { own == received }
    }

    /// The end of the latest period computed (0 when none): periods are computed once.
    func lastPeriodEnd() async throws -> Int64 {
        let me = PostgresValue.text(participant)
        return try await database.withConnection { connection in
            try connection.execute(
                "SELECT coalesce(max(to_inclusive), 0)::bigint FROM participant_commitment_periods WHERE participant = $1",
                [me]
            ).rows.first?.first?.int64 ?? 0
        }
    }

    /// Every active contract as stored: id, stakeholders and the stored instance bytes, what
    /// the running state is built from at start.
    func activeContracts() async throws -> [(id: ContractID, stakeholders: [String], stored: [UInt8])] {
        let me = PostgresValue.text(participant)
        return try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT contract_id, array_to_string(stakeholders, ','), contract FROM participant_contracts
                WHERE participant = $1 AND archived_offset IS NULL
                """, [me]
            ).rows.map { row in
                let text = try ParticipantStore.require(row[0].string, "contract_id")
                guard let id = ContractID(hex: text) else {
                    throw ParticipantError.inconsistentStore("a stored contract id does not parse: \(text)")
                }
                let stakeholders = try ParticipantStore.require(row[1].string, "stakeholders").split(separator: ",")
                return (id, stakeholders.map(String.init), try ParticipantStore.require(row[2].bytes, "contract"))
            }
        }
    }

    /// Records a computed period and the commitments sent for it, and compares the received
    /// commitments waiting for it; returns those comparisons. One transaction: a period is
    /// recorded with its commitments or not at all (a restart computes it again then).
    @_spi(Benchmarks) public func recordPeriod(from: Int64, to: Int64, own: [String: [UInt8]]) async throws -> [Comparison] {
        let me = PostgresValue.text(participant)
        return try await database.transaction { connection in
            let inserted = try connection.execute(
                """
                INSERT INTO participant_commitment_periods (participant, from_exclusive, to_inclusive) VALUES ($1, $2, $3)
                ON CONFLICT DO NOTHING RETURNING 1
                """, [me, .int64(from), .int64(to)])
            guard !inserted.rows.isEmpty else { return [] }
            for (counter, commitment) in own {
                _ = try connection.execute(
                    """
                    INSERT INTO participant_sent_commitments (participant, counter_participant, from_exclusive, to_inclusive, commitment)
                    VALUES ($1, $2, $3, $4, $5)
                    """, [me, .text(counter), .int64(from), .int64(to), .bytes(commitment)])
            }
            let waiting = try connection.execute(
                """
                SELECT counter_participant, from_exclusive, to_inclusive, commitment FROM participant_received_commitments
                WHERE participant = $1 AND state = 'outstanding' AND from_exclusive < $3 AND to_inclusive > $2
                """, [me, .int64(from), .int64(to)])
            var comparisons: [Comparison] = []
            for row in waiting.rows {
                let counter = try ParticipantStore.require(row[0].string, "counter_participant")
                let comparison = Comparison(
                    counterParticipant: counter, fromExclusive: try ParticipantStore.require(row[1].int64, "from"),
                    toInclusive: try ParticipantStore.require(row[2].int64, "to"), own: own[counter] ?? [],
                    received: try ParticipantStore.require(row[3].bytes, "commitment"))
                try Self.record(comparison, connection, me)
                comparisons.append(comparison)
            }
            return comparisons
        }
    }

    /// A period's commitments recorded but not yet taken by the sequencer.
    struct UnsentPeriod: Sendable {
        let fromExclusive: Int64
        let toInclusive: Int64
        /// Counter-participant and commitment, in counter-participant order: only those not
        /// taken yet (the others of the period may have been).
        let commitments: [(counterParticipant: String, commitment: [UInt8])]
    }

    /// The periods whose commitments the sequencer has not taken, oldest first.
    func unsentPeriods() async throws -> [UnsentPeriod] {
        let me = PostgresValue.text(participant)
        let rows = try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT from_exclusive, to_inclusive, counter_participant, commitment FROM participant_sent_commitments
                WHERE participant = $1 AND NOT sent ORDER BY to_inclusive, counter_participant
                """, [me]
            ).rows
        }
        var periods: [UnsentPeriod] = []
        for row in rows {
            let (from, to) = (try ParticipantStore.require(row[0].int64, "from"), try ParticipantStore.require(row[1].int64, "to"))
            let commitment = (
                try ParticipantStore.require(row[2].string, "counter_participant"), try ParticipantStore.require(row[3].bytes, "commitment")
            )
            if let last = periods.last, last.toInclusive == to {
                periods[periods.count - 1] = UnsentPeriod(
                    fromExclusive: last.fromExclusive, toInclusive: to, commitments: last.commitments + [commitment])
            } else {
                periods.append(UnsentPeriod(fromExclusive: from, toInclusive: to, commitments: [commitment]))
            }
        }
        return periods
    }

    /// Records that the sequencer took the commitment to `counterParticipant` of the period
    /// ending at `to` (each commitment is sent in a batch of its own, so each row is marked on
    /// its own: one refused or lost leaves the others' marks alone).
    func markSent(periodEndingAt to: Int64, counterParticipant: String) async throws {
        let me = PostgresValue.text(participant)
        _ = try await database.withConnection { connection in
            try connection.execute(
                """
                UPDATE participant_sent_commitments SET sent = true
                WHERE participant = $1 AND counter_participant = $2 AND to_inclusive = $3 AND NOT sent
                """, [me, .text(counterParticipant), .int64(to)])
        }
    }

    /// Stores a received (verified) commitment and compares it with this participant's own
    /// for an overlapping period, if it computed one; nil when it has not yet (the comparison
    /// happens when it does) or when the same commitment arrived before.
    func recordReceived(counterParticipant: String, from: Int64, to: Int64, commitment: [UInt8]) async throws
        -> Comparison?
    {
        let me = PostgresValue.text(participant)
        return try await database.transaction { connection in
            let inserted = try connection.execute(
                """
                INSERT INTO participant_received_commitments (participant, counter_participant, from_exclusive, to_inclusive, commitment, state)
                VALUES ($1, $2, $3, $4, $5, 'outstanding') ON CONFLICT DO NOTHING RETURNING 1
                """, [me, .text(counterParticipant), .int64(from), .int64(to), .bytes(commitment)])
            guard !inserted.rows.isEmpty else { return nil }
            let period = try connection.execute(
                """
                SELECT from_exclusive, to_inclusive FROM participant_commitment_periods
                WHERE participant = $1 AND from_exclusive < $3 AND to_inclusive > $2 ORDER BY to_inclusive LIMIT 1
                """, [me, .int64(from), .int64(to)]
            ).rows.first
            guard let period else { return nil }
            let periodEnd = try ParticipantStore.require(period[1].int64, "to_inclusive")
            let own =
                try connection.execute(
                    """
                    SELECT commitment FROM participant_sent_commitments
                    WHERE participant = $1 AND counter_participant = $2 AND to_inclusive = $3
                    """, [me, .text(counterParticipant), .int64(periodEnd)]
                ).rows.first?[0].bytes ?? []
            let comparison = Comparison(
                counterParticipant: counterParticipant, fromExclusive: from, toInclusive: to, own: own,
                received: commitment)
            try Self.record(comparison, connection, me)
            return comparison
        }
    }

    /// Writes a comparison's outcome on the received row and, when it matches, marks this
    /// participant's sent commitments of the overlapping periods matched.
    private static func record(_ comparison: Comparison, _ connection: PostgresConnection, _ me: PostgresValue) throws {
        let (counter, from, to) = (
            PostgresValue.text(comparison.counterParticipant), PostgresValue.int64(comparison.fromExclusive),
            PostgresValue.int64(comparison.toInclusive)
        )
        _ = try connection.execute(
            """
            UPDATE participant_received_commitments SET state = $4, own_commitment = $5
            WHERE participant = $1 AND counter_participant = $2 AND to_inclusive = $3
            """,
            [me, counter, to, .text(comparison.matches ? "matched" : "mismatched"), .bytes(comparison.own)])
        if comparison.matches {
            _ = try connection.execute(
                """
                UPDATE participant_sent_commitments SET matched = true
                WHERE participant = $1 AND counter_participant = $2 AND from_exclusive < $4 AND to_inclusive > $3
                  AND NOT matched AND commitment = $5
                """, [me, counter, from, to, .bytes(comparison.own)])
        }
    }

    /// Received commitments that differ from this participant's own, oldest first.
    public func mismatches(counterParticipant: String? = nil) async throws -> [Comparison] {
        let me = PostgresValue.text(participant)
        return try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT counter_participant, from_exclusive, to_inclusive, own_commitment, commitment
                FROM participant_received_commitments
                WHERE participant = $1 AND state = 'mismatched' AND ($2 = '' OR counter_participant = $2)
                ORDER BY to_inclusive, counter_participant
                """, [me, .text(counterParticipant ?? "")]
            ).rows.map { row in
                Comparison(
                    counterParticipant: try ParticipantStore.require(row[0].string, "counter_participant"),
                    fromExclusive: try ParticipantStore.require(row[1].int64, "from"),
                    toInclusive: try ParticipantStore.require(row[2].int64, "to"), own: try row[3].bytes ?? [],
                    received: try ParticipantStore.require(row[4].bytes, "commitment"))
            }
        }
    }

    /// Comparisons so far with `counterParticipant`: how many matched and mismatched.
    public func comparisonCounts(counterParticipant: String) async throws -> (matched: Int, mismatched: Int) {
        let me = PostgresValue.text(participant)
        return try await database.withConnection { connection in
            let row = try connection.execute(
                """
                SELECT count(*) FILTER (WHERE state = 'matched')::bigint, count(*) FILTER (WHERE state = 'mismatched')::bigint
                FROM participant_received_commitments WHERE participant = $1 AND counter_participant = $2
                """, [me, .text(counterParticipant)]
            ).rows.first
            return (Int(try row?[0].int64 ?? 0), Int(try row?[1].int64 ?? 0))
        }
    }

    /// How far commitments confirm this participant's state (what pruning may not pass).
    public struct SafePoint: Sendable, Equatable {
        /// The latest period end up to which every commitment sent was matched; nil if none.
        public let safePoint: Int64?
        /// The oldest period end whose sent commitment is not matched, and to whom; nil if none.
        public let firstUnmatched: (toInclusive: Int64, counterParticipant: String)?

        public static func == (lhs: Self, rhs: Self) -> Bool {
            lhs.safePoint == rhs.safePoint && lhs.firstUnmatched?.toInclusive == rhs.firstUnmatched?.toInclusive
                && lhs.firstUnmatched?.counterParticipant == rhs.firstUnmatched?.counterParticipant
        }
    }

    /// The safe point: the latest computed period end before the oldest unmatched sent
    /// commitment (or the latest period, when every sent commitment is matched). Commitments
    /// sent on a domain this participant migrated away from can never be matched any more
    /// (its sequencer backend was lost): one to a counter-participant stops counting once a
    /// commitment to it on the new domain matched, which confirms the same contracts.
    public func safePoint() async throws -> SafePoint {
        let me = PostgresValue.text(participant)
        return try await database.withConnection { connection in
            let unmatched = try connection.execute(
                """
                SELECT c.to_inclusive, c.counter_participant FROM participant_sent_commitments c
                WHERE c.participant = $1 AND NOT c.matched
                  AND NOT EXISTS (
                    SELECT 1 FROM participant_domain_migrations m
                    WHERE m.participant = $1 AND c.to_inclusive <= m.from_last_ts AND EXISTS (
                        SELECT 1 FROM participant_sent_commitments n
                        WHERE n.participant = $1 AND n.counter_participant = c.counter_participant AND n.matched
                          AND n.to_inclusive > m.from_last_ts))
                ORDER BY c.to_inclusive, c.counter_participant LIMIT 1
                """, [me]
            ).rows.first
            let first = try unmatched.map {
                (try ParticipantStore.require($0[0].int64, "to"), try ParticipantStore.require($0[1].string, "counter"))
            }
            let safe = try connection.execute(
                """
                SELECT max(to_inclusive)::bigint FROM participant_commitment_periods
                WHERE participant = $1 AND to_inclusive < $2
                """, [me, .int64(first?.0 ?? Int64.max)]
            ).rows.first?.first?.int64
            return SafePoint(safePoint: safe, firstUnmatched: first.map { (toInclusive: $0.0, counterParticipant: $0.1) })
        }
    }
}
