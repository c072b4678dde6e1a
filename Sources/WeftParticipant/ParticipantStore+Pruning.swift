import Foundation
import WeftContracts
import WeftStore

/// Participant pruning (docs/participant.md, "Pruning"): the history a participant no longer
/// needs is deleted, the active contracts stay, and the offset pruned up to is recorded so that
/// reads below it fail typed instead of returning a silently shorter ledger.
extension ParticipantStore {
    static let pruningMigration = Migration(
        6, "record how far the ledger was pruned",
        """
        CREATE TABLE participant_pruning (
            participant    text    PRIMARY KEY,
            pruned_offset  bigint  NOT NULL,
            record_time    bigint  NOT NULL,
            forced         boolean NOT NULL,
            pruned_at      timestamptz NOT NULL DEFAULT now()
        );
        COMMENT ON TABLE participant_pruning IS
            'The offset up to which (inclusive) the participant''s ledger history was pruned, the sequencing time of that offset''s transaction (µs), and whether the last prune overrode the commitment safe point. Ledger API reads below pruned_offset fail with PARTICIPANT_OFFSET_PRUNED.';
        """)

    /// What one prune removed, in rows per table.
    public struct PruneCounts: Sendable, Equatable {
        public let transactions: Int
        public let archivedContracts: Int
        public let requests: Int
        public let commands: Int
    }

    static func prunedOffset(_ connection: PostgresConnection, _ me: PostgresValue) throws -> Int64 {
        try connection.execute("SELECT pruned_offset FROM participant_pruning WHERE participant = $1", [me])
            .rows.first?.first?.int64 ?? 0
    }

    /// The record time (µs) of the transaction at `offset`, its request's sequencing time;
    /// nil when there is none.
    func recordTime(ofOffset offset: Int64) async throws -> Int64? {
        try await int64(
            "SELECT request_ts FROM participant_transactions WHERE participant = $1 AND ledger_offset = $2", offset)
    }

    /// When the transaction at `offset` was committed (µs): its verdict's sequencing time, the
    /// time its changes to the active contract set take effect for ACS commitments. Offsets
    /// are in commit order, so every offset before it was committed by then too. Where it is
    /// not recorded (migration 18), the stream position, which every stored commit is at or
    /// before. Nil when there is no transaction at `offset`.
    func commitTime(ofOffset offset: Int64) async throws -> Int64? {
        try await int64(
            """
            SELECT coalesce(t.commit_ts, \(Self.streamPosition)) FROM participant_transactions t
            WHERE t.participant = $1 AND t.ledger_offset = $2
            """, offset)
    }

    /// The latest offset committed at or before `micros` (`commitTime(ofOffset:)`); nil when
    /// none is. Offsets are in commit order: every offset before it was committed by then too.
    func latestOffset(atOrBefore micros: Int64) async throws -> Int64? {
        try await int64(
            """
            SELECT max(ledger_offset)::bigint FROM participant_transactions
            WHERE participant = $1 AND coalesce(commit_ts, \(Self.streamPosition)) <= $2
            """, micros)
    }

    /// The sequencing time (µs) of the last event participant `$1` stored as processed: the
    /// commit time of a transaction that has none recorded (migration 18) is at or before it.
    private static let streamPosition = "(SELECT last_ts FROM participant_cursor WHERE participant = $1)"

    /// The one number `sql` returns for this participant (`$1`) and `argument` (`$2`).
    private func int64(_ sql: String, _ argument: Int64) async throws -> Int64? {
        let me = PostgresValue.text(participant.description)
        return try await database.withConnection { connection in
            try connection.execute(sql, [me, .int64(argument)]).rows.first?.first?.int64
        }
    }

    /// Deletes, in one database transaction, the history at or before `offset` (whose request
    /// was sequenced at `recordTime` µs): flat events, trees and transactions; contracts
    /// archived at or before it (a contract still active, or archived later, stays: the later
    /// archive event reads it); decided requests sequenced by `recordTime`; and completed
    /// commands whose deduplication period ended before it. Commands in flight and pending
    /// requests stay whatever their age: the node still needs them. Records the pruned offset.
    /// Returns what it deleted, with the ids of the archived contracts deleted: the node
    /// forgets them as a restart would (`ParticipantNode.known`).
    func prune(upTo offset: Int64, recordTime: Int64, forced: Bool) async throws
        -> (counts: PruneCounts, contracts: [ContractID])
    {
        let me = PostgresValue.text(participant.description)
        let at = PostgresValue.int64(offset)
        return try await database.transaction { connection in
            _ = try connection.execute(
                "DELETE FROM participant_events WHERE participant = $1 AND ledger_offset <= $2", [me, at])
            _ = try connection.execute(
                "DELETE FROM participant_trees WHERE participant = $1 AND ledger_offset <= $2", [me, at])
            let transactions = try connection.execute(
                "DELETE FROM participant_transactions WHERE participant = $1 AND ledger_offset <= $2", [me, at])
            let contracts = try connection.execute(
                "DELETE FROM participant_contracts WHERE participant = $1 AND archived_offset <= $2 RETURNING contract_id",
                [me, at])
            let requests = try connection.execute(
                "DELETE FROM participant_requests WHERE participant = $1 AND request_ts <= $2 AND outcome IS NOT NULL",
                [me, .int64(recordTime)])
            let commands = try connection.execute(
                "DELETE FROM participant_commands WHERE participant = $1 AND state <> 'in_flight' AND dedup_until < $2",
                [me, .int64(recordTime)])
            _ = try connection.execute(
                """
                INSERT INTO participant_pruning (participant, pruned_offset, record_time, forced) VALUES ($1, $2, $3, $4)
                ON CONFLICT (participant) DO UPDATE SET pruned_offset = greatest(participant_pruning.pruned_offset, excluded.pruned_offset),
                    record_time = greatest(participant_pruning.record_time, excluded.record_time), forced = excluded.forced, pruned_at = now()
                """, [me, at, .int64(recordTime), .text(forced ? "true" : "false")])
            let ids = try contracts.rows.map { row in
                let text = try Self.require(row[0].string, "contract id")
                guard let id = ContractID(hex: text) else {
                    throw ParticipantError.inconsistentStore("a stored contract id is not one: \(text)")
                }
                return id
            }
            let counts = PruneCounts(
                transactions: transactions.affectedRowCount ?? 0, archivedContracts: ids.count,
                requests: requests.affectedRowCount ?? 0, commands: commands.affectedRowCount ?? 0)
            return (counts, ids)
        }
    }
}

extension CommitmentStore {
    /// Per counter-participant, the oldest period end (µs) at or before `micros` whose
    /// commitment sent to it is not matched (outstanding or mismatched): what a forced prune up
    /// to `micros` gives up being able to narrow or repair from this node.
    func unconfirmed(atOrBefore micros: Int64) async throws -> [(counterParticipant: String, oldestPeriodEnd: Int64)] {
        let me = PostgresValue.text(participant)
        return try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT counter_participant, min(to_inclusive)::bigint FROM participant_sent_commitments
                WHERE participant = $1 AND NOT matched AND to_inclusive <= $2
                GROUP BY counter_participant ORDER BY counter_participant
                """, [me, .int64(micros)]
            ).rows.map {
                (
                    try ParticipantStore.require($0[0].string, "counter_participant"),
                    try ParticipantStore.require($0[1].int64, "to_inclusive")
                )
            }
        }
    }
}
