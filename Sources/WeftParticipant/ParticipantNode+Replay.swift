import Foundation
import CoreMetrics
public import WeftContracts
import WeftSequencer
import WeftStore
import WeftTopology
import WeftTransport
import WeftWire

/// Why recovery by replay cannot go on (docs/operator-guide.md, "Recovery"): each with a
/// stable id and a message that names what the operator does next.
public enum ParticipantRecoveryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The sequencer pruned events of this participant's stream that the participant has not
    /// processed: its ledger cannot be rebuilt from the stream. `detail` is the sequencer's word.
    case eventsPruned(fromCounter: UInt64, detail: String)
    /// An approved transaction uses packages this participant does not have: it cannot store
    /// the transaction's tree as its peers do, so a replay waits for them (live processing
    /// commits without the tree instead: `ParticipantNode.noteMissingPackages`).
    case packagesMissing([PackageID])
    /// The first event of a new domain's stream (after a domain migration) is sequenced at or
    /// before the last event this participant processed on the domain it left (µs).
    case domainTimeBehind(firstEventAt: Int64, lastProcessedAt: Int64)

    public var id: String {
        switch self {
        case .eventsPruned: "PARTICIPANT_EVENTS_PRUNED"
        case .packagesMissing: "PARTICIPANT_PACKAGE_MISSING"
        case .domainTimeBehind: "PARTICIPANT_DOMAIN_TIME_BEHIND"
        }
    }

    public var description: String {
        let text: String
        switch self {
        case .eventsPruned(let counter, let detail):
            text =
                "the sequencer no longer has this participant's events from counter \(counter) (\(detail)); "
                + "its ledger cannot be replayed from the sequencer: recover it from a peer's snapshot "
                + "(docs/operator-guide.md, \"Recovery: repair from peers\")"
        case .packagesMissing(let ids):
            text =
                "an approved transaction uses package(s) \(ids.map(\.description).joined(separator: ", ")) that this "
                + "participant does not have; processing waits until they are uploaded (`weft package upload FILE`)"
        case .domainTimeBehind(let first, let last):
            text =
                "the domain's first event is sequenced at \(first) µs, not after the last event this participant processed "
                + "(\(last) µs, on the domain it migrated from): the new domain's sequencer clock is behind; nothing was "
                + "processed — correct the sequencer hosts' clocks and restart this participant"
        }
        return "\(id): \(text)"
    }
}

/// What a replay did: how many events of the stream it processed and what they committed.
public struct ReplaySummary: Sendable, Equatable {
    /// Events processed, from counter 0 to the replay mark.
    public let events: UInt64
    /// Transactions committed to the ledger (its offset at the end).
    public let transactions: Int64
    public let activeContracts: Int
    public let seconds: Double
}

/// The participant's recovery bookkeeping, one stored property of the actor: the replay in
/// progress and the waiters for its end or for packages.
struct RecoveryState {
    /// A replay from counter 0 in progress: the message id of the empty batch that marks the
    /// end of the stream as it was when the replay began, and when it began.
    var replay: (markMessageID: String, started: ContinuousClock.Instant)?
    var summary: ReplaySummary?
    /// Why the replay cannot finish: the processor stopped (a pruned stream, `stop()`).
    var halted: (any Error)?
    var replayWaiters: [CheckedContinuation<ReplaySummary, any Error>] = []
    /// Submissions held until the replay ends (see `awaitReplayEnd`).
    var submissionWaiters: [CheckedContinuation<Void, Never>] = []
    /// Packages the processor waits for, and its continuation.
    var missingPackages: Set<PackageID> = []
    var packageWaiter: CheckedContinuation<Void, any Error>?
    var packageWaitObservers: [CheckedContinuation<Set<PackageID>, Never>] = []
}

/// Recovery by replay (DESIGN.md §9): a participant whose store is empty — new, or rebuilt
/// after losing its database but keeping its keys — processes its sequencer stream from
/// counter 0 like any other, and so rebuilds the same ledger: offsets are assigned in stream
/// order, ids come from the views, and nothing depends on the wall clock or on local state
/// the stream does not carry, except the packages (the operator uploads them again; the
/// processor waits for them rather than commit a transaction it cannot store like its peers).
///
/// To know when it has caught up, the participant sends itself an empty batch when it starts
/// from counter 0 and logs `participant replay finished` once that batch comes back in its
/// stream: everything sequenced before it has been processed.
extension ParticipantNode {
    /// Starts the replay bookkeeping if the store is empty: logs the start and sends the
    /// empty batch that marks the stream's end. (A participant that migrated to a new domain
    /// starts that domain's stream at counter 0 too, but with its ledger: nothing to replay.)
    func beginReplayIfFresh() {
        guard nextCounter == 0, ledgerEndOffset == 0, active.isEmpty, recovery.replay == nil else { return }
        beginReplay()
    }

    /// Sends a new replay mark: submissions wait until the stream has been processed up to
    /// it. A repair (ParticipantNode+Repair.swift) calls it once its snapshots are imported:
    /// the mark sent at start may have been sequenced within the snapshot's period, whose
    /// events are skipped, and would then never end the replay.
    func beginReplay() {
        let markID = "replay-mark-" + hexText((try? Self.randomBytes(16)) ?? [])
        recovery.replay = (markID, .now)
        logger.info(
            "participant replay started",
            metadata: [LogKey.counter: "\(nextCounter)", "weft.participant.replay_mark": "\(markID)"])
        let (connection, logger) = (self.connection, self.logger)
        background {
            // `send` retries while no sequencer answers, until the batch's max sequencing time.
            // If it is refused, the replay still completes; only its end is not logged.
            do {
                try await connection.send(Weft.V1.Batch(), messageID: markID)
            } catch {
                logger.warning(
                    "the replay mark was not sequenced; the replay's end will not be logged",
                    metadata: ["error": "\(error)"])
                await self.endReplay()
            }
        }
    }

    /// Called after each processed delivery: the replay mark ends the replay.
    func noteDelivered(_ deliver: Weft.V1.Deliver, sender me: String) {
        guard deliver.sender == me, let replay = recovery.replay, deliver.messageID == replay.markMessageID else {
            return
        }
        let seconds = Double((ContinuousClock.now - replay.started) / .milliseconds(1)) / 1000
        let summary = ReplaySummary(
            events: nextCounter, transactions: ledgerEndOffset, activeContracts: active.count, seconds: seconds)
        recovery.replay = nil
        recovery.summary = summary
        logger.info(
            "participant replay finished",
            metadata: [
                "weft.participant.replay_events": "\(summary.events)",
                "weft.participant.replay_transactions": "\(summary.transactions)",
                LogKey.activeContracts: "\(summary.activeContracts)",
                "weft.participant.replay_seconds": "\(String(format: "%.3f", seconds))",
                "weft.participant.replay_transactions_per_second":
                    "\(String(format: "%.1f", seconds > 0 ? Double(summary.transactions) / seconds : 0))",
            ])
        for waiter in recovery.replayWaiters { waiter.resume(returning: summary) }
        recovery.replayWaiters = []
        releaseSubmissions()
    }

    /// Ends replay mode without a summary (the mark could not be sent).
    private func endReplay() {
        recovery.replay = nil
        releaseSubmissions()
    }

    private func releaseSubmissions() {
        for waiter in recovery.submissionWaiters { waiter.resume() }
        recovery.submissionWaiters = []
    }

    /// Holds a submission until the replay has caught up: before, the active contracts are
    /// those of the past, and the deduplication records of commands submitted before the loss
    /// are not all restored yet (an application retrying such a command would submit it twice).
    /// A fresh participant's replay ends moments after its topology arrives.
    /// Throws why the replay cannot finish, if it cannot (a submission then fails with it).
    public func awaitReplayEnd() async throws {
        if recovery.replay != nil, recovery.halted == nil {
            await withCheckedContinuation { recovery.submissionWaiters.append($0) }
        }
        if let halted = recovery.halted { throw halted }
    }

    /// Returns once the replay from counter 0 that this node started has caught up with the
    /// stream as it was at start; throws when it cannot (`ParticipantRecoveryError`) or the
    /// node stops. Returns nil at once when this node did not start from an empty store.
    public func waitForReplay() async throws -> ReplaySummary? {
        if let summary = recovery.summary { return summary }
        if let halted = recovery.halted { throw halted }
        guard recovery.replay != nil else { return nil }
        return try await withCheckedThrowingContinuation { recovery.replayWaiters.append($0) }
    }

    /// The processor stopped on `error`: a pruned stream is reported as what it means for
    /// recovery. Returns the error to log.
    func recoveryFailed(_ error: any Error) -> any Error {
        var reported = error
        if let rpc = error as? RPCError, rpc.errorID == "SEQUENCER_EVENTS_PRUNED" {
            reported = ParticipantRecoveryError.eventsPruned(fromCounter: nextCounter, detail: rpc.message)
        }
        if recovery.replay != nil { recovery.halted = reported }
        for waiter in recovery.replayWaiters { waiter.resume(throwing: reported) }
        recovery.replayWaiters = []
        releaseSubmissions()
        return reported
    }

    // MARK: - Commands

    /// Restores the deduplication record of this participant's own command from the views of
    /// its request (their submitter metadata), when the store has none: after a loss, the
    /// replayed verdict then completes it as before, and the command id stays taken for its
    /// deduplication period. A no-op when the record exists (the usual case).
    /// Returns the submitter metadata it found.
    func restoreCommand(_ command: CommandKey, of request: ParticipantStore.StoredRequest) async throws
        -> SubmitterMetadata?
    {
        for bytes in request.views {
            guard let received = try? ReceivedView(Weft.V1.ViewTree(serializedBytes: bytes)),
                let submitter = received.submitterMetadata, submitter.submissionID.isEmpty == false,
                submitter.commandID == command.commandID, submitter.applicationID == command.applicationID
            else { continue }
            let submittedAt = received.participantMetadata?.submissionTime ?? request.timestamp.microsSinceEpoch
            try await store.restore(
                SubmittedCommand(
                    key: ChangeID(command, actAs: submitter.actAs), submissionID: submitter.submissionID, messageID: "request-\(submitter.submissionID)",
                    rootHash: request.rootHash, deduplicationPeriodMicros: submitter.deduplicationPeriod,
                    maxSequencingTime: submitter.maxSequencingTime),
                submittedAt: submittedAt)
            return submitter
        }
        return nil
    }

    // MARK: - Packages

    /// Waits until this participant has every package the views use, while it replays its
    /// stream: a transaction committed without them would lack its tree and differ from its own
    /// ledger before the loss. Logs the typed error once per wait; `upload` ends the wait.
    func awaitPackages(usedBy views: [View], request: SequencingTimestamp) async throws {
        var used = Set<PackageID>()
        for view in views { used.formUnion(RequestValidator.packagesUsed(by: view)) }
        var missing = used.subtracting(packageSources.keys)
        guard !missing.isEmpty else { return }
        let error = ParticipantRecoveryError.packagesMissing(missing.sorted())
        logger.error(
            "an approved transaction needs packages this participant lacks; processing waits for their upload",
            metadata: [LogKey.request: "\(request)", "error_id": "\(error.id)", "error": "\(error)"])
        while !missing.isEmpty {
            recovery.missingPackages = missing
            for observer in recovery.packageWaitObservers { observer.resume(returning: missing) }
            recovery.packageWaitObservers = []
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                    recovery.packageWaiter = continuation
                }
            } onCancel: {
                Task { await self.cancelPackageWait() }
            }
            missing = used.subtracting(packageSources.keys)
        }
        recovery.missingPackages = []
        logger.info("the packages arrived; processing goes on", metadata: [LogKey.request: "\(request)"])
    }

    /// Logs an approved transaction that uses packages this participant lacks, which is
    /// committed without its tree (live processing does not wait: `apply`).
    func noteMissingPackages(usedBy views: [View], request: SequencingTimestamp) {
        var used = Set<PackageID>()
        for view in views { used.formUnion(RequestValidator.packagesUsed(by: view)) }
        let missing = used.subtracting(packageSources.keys)
        guard !missing.isEmpty else { return }
        Counter(label: "weft_participant_commits_without_packages_total").increment()
        logger.error(
            "an approved transaction uses packages this participant lacks: its contracts and flat events are committed, its transaction tree is not; upload the packages (`weft package upload FILE`) for the transactions that follow",
            metadata: [
                LogKey.request: "\(request)", "error_id": "PARTICIPANT_PACKAGE_MISSING",
                "packages": "\(missing.map(\.description).sorted())",
            ])
    }

    private func cancelPackageWait() {
        recovery.packageWaiter?.resume(throwing: CancellationError())
        recovery.packageWaiter = nil
    }

    /// A package was uploaded: the processor checks again what it waits for.
    func packagesChanged() {
        recovery.packageWaiter?.resume()
        recovery.packageWaiter = nil
    }

    /// The packages processing waits for now (empty when it does not wait).
    public var missingPackages: Set<PackageID> { recovery.missingPackages }

    /// Whether the node is rebuilding its ledger by replay: the ledger end then climbs back
    /// to offsets applications already know.
    public var isReplaying: Bool { recovery.replay != nil }

    /// Returns the packages processing waits for, once it waits for some: for tests.
    @_spi(Testing)
    public func awaitPackageWait() async -> Set<PackageID> {
        if !recovery.missingPackages.isEmpty { return recovery.missingPackages }
        return await withCheckedContinuation { recovery.packageWaitObservers.append($0) }
    }
}

extension ParticipantStore {
    /// Records `command` as in flight, submitted at `submittedAt`, unless a record of it exists.
    func restore(_ command: SubmittedCommand, submittedAt: Int64) async throws {
        let me = PostgresValue.text(participant.description)
        _ = try await database.withConnection { connection in
            try connection.execute(
                """
                INSERT INTO participant_commands (participant, application_id, command_id, act_as, submission_id,
                    message_id, root_hash, submitted_at, dedup_until, state, max_sequencing_time)
                SELECT $1::text, $2::text, $3::text, $4::text[], $5::text, $6::text, $7::bytea, $8::int8, $9::int8,
                    'in_flight', $10::int8
                \(ParticipantStore.noRecordFromBeforeParties)
                ON CONFLICT DO NOTHING
                """,
                [
                    me, .text(command.key.applicationID), .text(command.key.commandID),
                    ParticipantStore.parties(command.key.actAs), .text(command.submissionID),
                    .text(command.messageID), .bytes(command.rootHash.bytes), .int64(submittedAt),
                    .int64(submittedAt + command.deduplicationPeriodMicros), .int64(command.maxSequencingTime),
                ])
        }
    }
}
