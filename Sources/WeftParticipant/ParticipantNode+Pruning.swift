import Foundation
import Logging
import WeftTopology

/// What a participant prune did (docs/participant.md, "Pruning").
public struct PruneOutcome: Sendable, Equatable {
    /// The offset the ledger is now pruned up to (inclusive).
    public let prunedOffset: Int64
    /// The record time (µs) of that offset's transaction: its request's sequencing time.
    public let recordTimeMicros: Int64
    /// When that offset's transaction was committed (µs): its verdict's sequencing time, what
    /// the safe point was compared with (the active contract set changed then, not at the
    /// request).
    public let commitTimeMicros: Int64
    /// The commitment safe point (µs) when the prune ran; nil when no period was confirmed.
    public let safePointMicros: Int64?
    /// Whether the prune went past the safe point on the operator's explicit override.
    public let forced: Bool
    /// What a forced prune gave up: per counter-participant, the oldest unconfirmed period
    /// end (µs) within the pruned range. Empty for a prune within the safe point.
    public let unconfirmed: [UnconfirmedPeriod]
    /// Rows removed.
    public let counts: ParticipantStore.PruneCounts
    /// Whether the sequencer accepted the acknowledgement of this participant's events up to
    /// the record time (so that it may prune them); false when it could not be reached, which
    /// the next prune makes good.
    public var acknowledged = false

    public struct UnconfirmedPeriod: Sendable, Equatable {
        public let counterParticipant: String
        public let oldestPeriodEndMicros: Int64
    }
}

/// Where pruning may go: the commitment safe point and the ledger offset it corresponds to.
public struct PruningSafePoint: Sendable, Equatable {
    /// The latest period end (µs) every commitment sent up to was matched; nil if none.
    public let safePointMicros: Int64?
    /// The latest offset committed (its verdict sequenced) at or before the safe point; nil if none.
    public let safeOffset: Int64?
    /// The offset the ledger is pruned up to (0: never).
    public let prunedOffset: Int64
}

extension ParticipantNode {
    /// Refuses a read that starts below what pruning kept.
    func requireReadable(after offset: Int64) throws {
        guard offset >= prunedOffset else {
            throw ParticipantError.offsetPruned(requested: offset, earliestReadable: prunedOffset + 1)
        }
    }

    /// The commitment safe point and the offset it corresponds to.
    public func pruningSafePoint() async throws -> PruningSafePoint {
        let point = try await commitmentStore.safePoint().safePoint
        var safeOffset: Int64?
        if let point { safeOffset = try await store.latestOffset(atOrBefore: point) }
        return PruningSafePoint(safePointMicros: point, safeOffset: safeOffset, prunedOffset: prunedOffset)
    }

    /// Prunes the ledger history up to `offset` inclusive, if commitments confirmed it: the
    /// offset's commit time must be at or before the commitment safe point, since a later
    /// mismatch in an unconfirmed period is narrowed and repaired from exactly this history.
    /// Its commit time (its verdict's sequencing time), not its request's: a transaction
    /// changes the active contract set, which commitments hash, at its verdict, and a request
    /// sequenced before the safe point may be decided after it. Offsets follow verdict order,
    /// so no offset before this one was committed later. `ignoreCommitments` prunes anyway and
    /// logs, as a warning, what it gives up.
    public func prune(upTo offset: Int64, ignoreCommitments: Bool = false) async throws -> PruneOutcome {
        guard offset > 0, offset <= ledgerEndOffset else {
            throw ParticipantError.pruneOffsetOutOfRange(offset: offset, ledgerEnd: ledgerEndOffset)
        }
        let safe = try await pruningSafePoint()
        if offset <= prunedOffset {
            return PruneOutcome(
                prunedOffset: prunedOffset, recordTimeMicros: 0, commitTimeMicros: 0,
                safePointMicros: safe.safePointMicros, forced: false, unconfirmed: [],
                counts: .init(transactions: 0, archivedContracts: 0, requests: 0, commands: 0))
        }
        guard let recordTime = try await store.recordTime(ofOffset: offset) else {
            throw ParticipantError.inconsistentStore("offset \(offset) is within the ledger but has no transaction")
        }
        guard let commitTime = try await store.commitTime(ofOffset: offset) else {
            throw ParticipantError.inconsistentStore(
                "offset \(offset) has a transaction but neither a commit time nor a stream position")
        }
        let confirmed = safe.safePointMicros.map { commitTime <= $0 } ?? false
        var unconfirmed: [PruneOutcome.UnconfirmedPeriod] = []
        if !confirmed {
            guard ignoreCommitments else {
                throw ParticipantError.pruneBeyondSafePoint(
                    offset: offset, commitTimeMicros: commitTime, safePointMicros: safe.safePointMicros,
                    safeOffset: safe.safeOffset)
            }
            unconfirmed = try await commitmentStore.unconfirmed(atOrBefore: commitTime).map {
                .init(counterParticipant: $0.counterParticipant, oldestPeriodEndMicros: $0.oldestPeriodEnd)
            }
            logger.warning(
                "pruning past the commitment safe point on an explicit override: a later commitment mismatch in the unconfirmed range can no longer be narrowed down or repaired from this node",
                metadata: [
                    "pruning.offset": "\(offset)", "pruning.record_time": "\(SequencingTimestamp(microsSinceEpoch: recordTime))",
                    "pruning.commit_time": "\(SequencingTimestamp(microsSinceEpoch: commitTime))",
                    "pruning.safe_point": "\(safe.safePointMicros.map { "\(SequencingTimestamp(microsSinceEpoch: $0))" } ?? "none")",
                    "pruning.unconfirmed": "\(unconfirmed.map { "\($0.counterParticipant) from \(SequencingTimestamp(microsSinceEpoch: $0.oldestPeriodEndMicros))" }.joined(separator: "; "))",
                ])
        }
        let (counts, forgotten) = try await store.prune(upTo: offset, recordTime: recordTime, forced: !confirmed)
        // Forgotten as a restart forgets them: validation and commit then treat a reused id the
        // same way before and after one (docs/participant.md §5).
        known.subtract(forgotten)
        prunedOffset = max(prunedOffset, offset)
        logger.info(
            "pruned the ledger history",
            metadata: [
                "pruning.offset": "\(offset)", "pruning.transactions": "\(counts.transactions)",
                "pruning.archived_contracts": "\(counts.archivedContracts)", "pruning.requests": "\(counts.requests)",
                "pruning.commands": "\(counts.commands)",
            ])
        var outcome = PruneOutcome(
            prunedOffset: prunedOffset, recordTimeMicros: recordTime, commitTimeMicros: commitTime,
            safePointMicros: safe.safePointMicros, forced: !confirmed, unconfirmed: unconfirmed, counts: counts)
        // The sequencer prunes only what every member acknowledged: up to here this
        // participant no longer needs its events (a replay from counter 0 then stops at them,
        // and repair from peers takes over, docs/operator-guide.md §7).
        do {
            try await connection.acknowledge(upTo: .init(microsSinceEpoch: recordTime))
            outcome.acknowledged = true
        } catch {
            logger.warning(
                "the sequencer did not take the acknowledgement of the pruned events; prune again to retry",
                metadata: ["pruning.record_time": "\(recordTime)", "error": "\(error)"])
        }
        return outcome
    }
}
