import Foundation
import Logging
import WeftContracts
import WeftParticipant
import WeftStore
import WeftTransport
import WeftWire

/// The completion stream's log: every completion the participant decides, in the order it
/// decides them, numbered 1, 2, 3, … (the completion offset) and stored in PostgreSQL, so an
/// application resumes its completion stream after a restart of either side.
///
/// A command submitted through the Ledger API is recorded here (with its act-as parties)
/// before it is sent; its completion fills the row and gives it its offset. Completions of
/// commands submitted otherwise (the Swift API) get a row of their own, without act-as
/// parties. Completion offsets are their own sequence, not ledger offsets: a rejection has
/// no transaction and so no ledger offset (docs/ledger-api.md).
actor CompletionLog {
    static let migrator = Migrator(
        component: "ledger-api",
        migrations: [
            Migration(
                1, "create the Ledger API's tables",
                """
                CREATE TABLE ledger_api_completions (
                    participant       text   NOT NULL,
                    application_id    text   NOT NULL,
                    command_id        text   NOT NULL,
                    submission_id     text   NOT NULL,
                    act_as            text   NOT NULL,
                    completion_offset bigint,
                    status_code       integer,
                    error_id          text,
                    message           text,
                    transaction_id    text,
                    PRIMARY KEY (participant, application_id, command_id, submission_id)
                );
                CREATE UNIQUE INDEX ledger_api_completions_by_offset
                    ON ledger_api_completions (participant, completion_offset);
                COMMENT ON TABLE ledger_api_completions IS
                    'Commands submitted through the Ledger API (act_as: the parties, one per line) and their completions; completion_offset is NULL while in flight, then the position in the completion stream (1, 2, …).';
                CREATE TABLE ledger_api_parties (
                    participant  text NOT NULL,
                    party        text NOT NULL,
                    display_name text NOT NULL,
                    PRIMARY KEY (participant, party)
                );
                COMMENT ON TABLE ledger_api_parties IS
                    'Display names given to parties allocated through the Ledger API (the topology has none).';
                """)
        ])

    /// The reason id of a submission lost in a participant crash before it was sent.
    static let submissionLost = "LEDGER_API_SUBMISSION_LOST"

    private let database: PostgresDatabase
    private let participantID: String
    private let logger: Logger
    private var lastOffset: Int64
    private var subscribers: [UInt64: AsyncStream<Weft.V1.Completion>.Continuation] = [:]
    private var nextSubscriber: UInt64 = 0
    private var following: Task<Void, Never>?
    /// Completions filled in from the participant's store at start (`recover`), with their
    /// submission ids: the same completion of the same submission arriving live afterwards
    /// (decided between the subscription and the recovery's read) is not stored a second time.
    /// A retry of the command rejected alike is another submission, and is stored.
    private var recovered: [ChangeID: (completion: Completion, submissionID: String)] = [:]
    /// The last store started (`store`): the next one waits for it.
    private var storing: Task<Void, Never>?
    /// The participant's completions have ended (its processing did): so have the streams.
    private var ended = false

    private init(database: PostgresDatabase, participantID: String, lastOffset: Int64, logger: Logger) {
        self.database = database
        self.participantID = participantID
        self.lastOffset = lastOffset
        self.logger = logger
    }

    /// Migrates the log's tables, reads where it stopped and follows `participant`'s completions.
    static func start(database: PostgresDatabase, participant: ParticipantNode, logger: Logger) async throws -> CompletionLog {
        _ = try await database.withConnection { try migrator.migrate($0) }
        let me = PostgresValue.text(participant.identity.id.description)
        let last = try await database.withConnection { connection in
            try connection.execute(
                "SELECT coalesce(max(completion_offset), 0) FROM ledger_api_completions WHERE participant = $1", [me]
            ).rows.first?.first?.int64 ?? 0
        }
        let log = CompletionLog(
            database: database, participantID: participant.identity.id.description, lastOffset: last, logger: logger)
        // Subscribe before recovering, so a completion decided in between is not missed.
        let events = await participant.completionEvents()
        try await log.recover(participant)
        await log.follow(events)
        return log
    }

    /// Fills in the completions the participant decided while nobody recorded them: after a
    /// crash between the participant's commit and this log's write, or decided by the
    /// restarted participant before this log subscribed. Without it such a command would
    /// never complete on the stream, though the participant's store has its outcome.
    ///
    /// A row whose submission the participant never recorded (killed between the two) was
    /// never sent: it completes with `LEDGER_API_SUBMISSION_LOST`, so the application, which
    /// had its submission id, learns to submit again instead of waiting for ever.
    private func recover(_ participant: ParticipantNode) async throws {
        let me = PostgresValue.text(participantID)
        let rows = try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT application_id, command_id, submission_id, act_as FROM ledger_api_completions
                WHERE participant = $1 AND completion_offset IS NULL ORDER BY application_id, command_id, submission_id
                """, [me]
            ).rows
        }
        for row in rows {
            let key = ChangeID(
                CommandKey(applicationID: try row[0].string ?? "", commandID: try row[1].string ?? ""),
                actAs: try Self.parties(row[3].string))
            let submissionID = try row[2].string ?? ""
            let record = try await participant.command(key)
            guard let record, record.submissionID == submissionID else {
                // Nothing was sent: the participant stopped before it recorded the submission.
                // The application got its submission id, so it waits for a completion: this one
                // tells it to submit again (the command id is free, nothing was deduplicated).
                logger.warning(
                    "a submission the participant never recorded completes as lost; the application may submit it again",
                    metadata: [LedgerAPILogKey.command: "\(key)", LedgerAPILogKey.submission: "\(submissionID)"])
                await store(
                    CommandCompletion(
                        change: key,
                        completion: .rejected(
                            reasonID: Self.submissionLost,
                            message: "the participant stopped before it sent this submission, so nothing was sequenced; "
                                + "submit the command again (the same command id is accepted)"),
                        submissionID: submissionID))
                continue
            }
            let completion: Completion
            switch record.state {
            case .inFlight: continue
            case .succeeded: completion = .succeeded(transactionID: record.transactionID ?? "", offset: record.ledgerOffset ?? 0)
            case .rejected: completion = .rejected(reasonID: record.reasonID ?? "", message: record.reason ?? "")
            }
            logger.info(
                "a completion decided while the Ledger API was not recording is added to the completion stream",
                metadata: [LedgerAPILogKey.command: "\(key)", LedgerAPILogKey.submission: "\(submissionID)"])
            await store(CommandCompletion(change: key, completion: completion, submissionID: submissionID))
            recovered[key] = (completion, submissionID)
        }
    }

    private func follow(_ events: AsyncStream<CommandCompletion>) {
        following = Task { [weak self] in
            for await event in events {
                guard let self else { return }
                await self.record(event)
            }
            // The participant's processing ended: no completion follows; neither do the streams.
            await self?.endSubscribers()
        }
    }

    private func endSubscribers() async {
        await storing?.value
        ended = true
        for subscriber in subscribers.values { subscriber.finish() }
        subscribers = [:]
    }

    func stop() {
        following?.cancel()
        following = nil
        ended = true
        for subscriber in subscribers.values { subscriber.finish() }
        subscribers = [:]
    }

    /// Whether the caller submitting `change` acts for a party of the submission `first` that
    /// deduplicates it: always when `first` was recorded for the same parties (the key holds
    /// them); for a record from before the parties were part of the key (participant
    /// migration 16), when this log recorded that submission with one of the caller's parties;
    /// else (a Swift API submission of then) false: its parties are unknown here.
    func actsForFirst(_ first: CommandRecord, of change: ChangeID) async throws -> Bool {
        if !first.actAs.isEmpty { return first.actAs == change.actAs }
        guard let stored = try await row(of: change.command, submissionID: first.submissionID) else { return false }
        let parties = Set(try Self.parties(stored.actAs))
        return change.actAs.contains { parties.contains($0) }
    }

    /// The parties of an `act_as` column (one per line).
    private static func parties(_ lines: String?) throws -> [Party] {
        guard let lines, !lines.isEmpty else { return [] }
        return try lines.split(separator: "\n").map { try Party(String($0)) }
    }

    /// The row of submission `submissionID` of command `key`: its act-as parties (one per line)
    /// and whether it has its completion; nil when there is none.
    private func row(of key: CommandKey, submissionID: String) async throws -> (actAs: String, completed: Bool)? {
        let values: [PostgresValue] = [
            .text(participantID), .text(key.applicationID), .text(key.commandID), .text(submissionID),
        ]
        return try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT act_as, completion_offset IS NOT NULL FROM ledger_api_completions
                WHERE participant = $1 AND application_id = $2 AND command_id = $3 AND submission_id = $4
                """, values
            ).rows.first.map { (try $0[0].string ?? "", try $0[1].bool ?? false) }
        }
    }

    /// Records a command about to be sent through the Ledger API.
    func submitted(_ change: ChangeID, submissionID: String) async throws {
        let values: [PostgresValue] = [
            .text(participantID), .text(change.applicationID), .text(change.commandID), .text(submissionID),
            .text(change.actAs.map(\.id).joined(separator: "\n")),
        ]
        _ = try await database.withConnection { connection in
            try connection.execute(
                """
                INSERT INTO ledger_api_completions (participant, application_id, command_id, submission_id, act_as)
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING
                """, values)
        }
    }

    /// Stores a completion with the next offset and hands it to the streams that follow.
    func record(_ event: CommandCompletion) async {
        if let recovery = recovered[event.change], recovery.completion == event.completion,
            event.submissionID == recovery.submissionID
        {
            recovered[event.change] = nil
            return
        }
        await store(event)
    }

    /// Stores `event` after every completion handed to `store` before it: each takes the next
    /// offset only once the one before is stored, so that two completions arriving together (the
    /// participant's, and a duplicate answered by the Ledger API) never compute the same offset
    /// across the actor's suspension in the database write, and streams see offsets in order.
    private func store(_ event: CommandCompletion) async {
        let previous = storing
        let task = Task {
            await previous?.value
            await self.storeNow(event)
        }
        storing = task
        await task.value
    }

    /// Stores `event` (`write`). A failure the database may recover from (a lost connection, a
    /// restart, a serialization failure) is retried until the write succeeds or the log stops:
    /// dropping the completion would make live streams skip it, and one without a Ledger API
    /// row (the Swift API's) would never be recovered. Later completions wait, so offsets stay
    /// in the order the participant decided. Any other failure is retried twice (an offset
    /// taken by another log of this participant), then logged and dropped, as a completion
    /// whose submission is stored complete already is: it cannot hold up the ones after it.
    private func storeNow(_ event: CommandCompletion) async {
        // Completions stored before this one end at or before this offset.
        let before = lastOffset
        var failures = 0
        while true {
            do {
                let stored = try await write(event, storedBefore: before, retry: failures > 0)
                lastOffset = max(lastOffset, stored.offset)
                let (code, errorID, message, transactionID) = Self.status(event.completion)
                let completion = Self.wire(
                    event.command, offset: stored.offset, code: code, errorID: errorID, message: message,
                    transactionID: transactionID, submissionID: stored.submissionID, actAs: stored.actAs)
                for subscriber in subscribers.values { subscriber.yield(completion) }
                if failures > 0 {
                    logger.notice(
                        "a completion is stored for the completion stream after failed writes",
                        metadata: [LedgerAPILogKey.command: "\(event.command)", "attempts": "\(failures + 1)"])
                }
                return
            } catch {
                failures += 1
                let transient = Self.isTransient(error)
                if !transient, (try? await completedAlready(event)) == true {
                    logger.warning(
                        "a second completion of a submission the completion stream has completed already is not stored",
                        metadata: [
                            LedgerAPILogKey.command: "\(event.command)", LedgerAPILogKey.submission: "\(event.submissionID)",
                            LedgerAPILogKey.error: "\(error)",
                        ])
                    return
                }
                guard !ended, transient || failures < 3 else {
                    logger.error(
                        "a completion could not be stored for the completion stream; its outcome is in the participant's store, and the next start recovers a Ledger API submission's",
                        metadata: [LedgerAPILogKey.command: "\(event.command)", LedgerAPILogKey.error: "\(error)"])
                    return
                }
                if failures == 1 {
                    logger.warning(
                        "a completion could not be stored for the completion stream; retrying (later completions wait)",
                        metadata: [LedgerAPILogKey.command: "\(event.command)", LedgerAPILogKey.error: "\(error)"])
                }
                try? await Task.sleep(for: min(.milliseconds(50 << min(failures - 1, 6)), .seconds(2)))
            }
        }
    }

    /// Whether `error` is one the database may recover from: the connection (lost, refused),
    /// or SQLSTATE classes 08 (connection), 40 (transaction rollback, e.g. a serialization
    /// failure), 53 (insufficient resources), 57 (operator intervention, e.g. a shutdown) and
    /// 58 (system error).
    static func isTransient(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError else { return false }
        if error.code == .connectionFailed || error.code == .connectionLost { return true }
        guard let state = error.sqlState else { return false }
        return ["08", "40", "53", "57", "58"].contains(String(state.prefix(2)))
    }

    /// Whether `event`'s submission (it has an id) has a completion stored already.
    private func completedAlready(_ event: CommandCompletion) async throws -> Bool {
        guard !event.submissionID.isEmpty else { return false }
        return try await row(of: event.command, submissionID: event.submissionID)?.completed ?? false
    }

    /// Writes `event` at the offset after the highest one stored, read in the same statement
    /// rather than taken from memory: a write whose commit's answer was lost, or another log
    /// of this participant (one stopped while a write was under way), may have taken the
    /// offset after `lastOffset`. A `retry` first looks for the completion a failed attempt
    /// stored after all: the same command's row with the same outcome, completed after
    /// `storedBefore` (writes are serialized, so no other completion of this log is there).
    private func write(_ event: CommandCompletion, storedBefore: Int64, retry: Bool) async throws
        -> (offset: Int64, submissionID: String, actAs: String)
    {
        let (code, errorID, message, transactionID) = Self.status(event.completion)
        let values: [PostgresValue] = [
            .text(participantID), .text(event.command.applicationID), .text(event.command.commandID),
            .text(event.submissionID), .int64(Int64(code.rawValue)), .text(errorID), .text(message), .text(transactionID),
        ]
        return try await database.transaction { connection in
            if retry,
                let row = try connection.execute(
                    """
                    SELECT completion_offset, submission_id, act_as FROM ledger_api_completions
                    WHERE participant = $1 AND application_id = $2 AND command_id = $3 AND completion_offset > $5
                        AND ($4 = '' OR submission_id = $4) AND status_code = $6 AND error_id = $7 AND transaction_id = $8
                    ORDER BY completion_offset LIMIT 1
                    """,
                    [values[0], values[1], values[2], values[3], .int64(storedBefore), values[4], values[5], values[7]]
                ).rows.first
            {
                return try Self.stored(row)
            }
            // The row of the submission completing now, in flight: by its submission id when the
            // completion has one (two submissions of one command id racing past the
            // deduplication check both have rows, and the one that lost completes as a
            // duplicate); else any row of the command in flight (there is one in practice).
            if let row = try connection.execute(
                """
                UPDATE ledger_api_completions SET status_code = $5, error_id = $6, message = $7, transaction_id = $8,
                    completion_offset = (
                        SELECT coalesce(max(completion_offset), 0) + 1 FROM ledger_api_completions WHERE participant = $1)
                WHERE (participant, application_id, command_id, submission_id) = (
                    SELECT participant, application_id, command_id, submission_id FROM ledger_api_completions
                    WHERE participant = $1 AND application_id = $2 AND command_id = $3 AND completion_offset IS NULL
                        AND ($4 = '' OR submission_id = $4)
                    ORDER BY submission_id LIMIT 1)
                RETURNING completion_offset, submission_id, act_as
                """, values
            ).rows.first {
                return try Self.stored(row)
            }
            // No Ledger API submission: a Swift API command, or one whose record went with a
            // lost database and that replay completes (with its submitter's act-as parties
            // and submission id from the views, so the application's stream shows it).
            let row = try connection.execute(
                """
                WITH next AS (
                    SELECT coalesce(max(completion_offset), 0) + 1 AS completion_offset
                    FROM ledger_api_completions WHERE participant = $1)
                INSERT INTO ledger_api_completions (participant, application_id, command_id, submission_id, act_as,
                    completion_offset, status_code, error_id, message, transaction_id)
                SELECT $1, $2, $3, CASE WHEN $4 = '' THEN 'offset-' || next.completion_offset ELSE $4 END, $9,
                    next.completion_offset, $5, $6, $7, $8
                FROM next
                RETURNING completion_offset, submission_id, act_as
                """, values + [.text(event.actAs.map(\.id).joined(separator: "\n"))])
            guard let first = row.rows.first else { throw LedgerAPIError.internalError(id: "LEDGER_API_INTERNAL", "no completion row inserted") }
            return try Self.stored(first)
        }
    }

    /// A stored row's offset, submission id and act-as parties (the first three columns).
    private static func stored(_ row: [PostgresCell]) throws -> (offset: Int64, submissionID: String, actAs: String) {
        (try row[0].int64 ?? 0, try row[1].string ?? "", try row[2].string ?? "")
    }

    /// Completions from now on, as they are stored: the newest `buffered` of those the reader
    /// has not taken yet. A reader slower than the participant (a client that stops reading,
    /// a long catch-up) loses the oldest beyond that; the completion stream reads the offsets
    /// it missed from the store, so memory per stream stays bounded and nothing is lost.
    func subscribe(buffered: Int) -> AsyncStream<Weft.V1.Completion> {
        let (stream, continuation) = AsyncStream<Weft.V1.Completion>.makeStream(bufferingPolicy: .bufferingNewest(buffered))
        if ended {
            continuation.finish()
            return stream
        }
        let id = nextSubscriber
        nextSubscriber += 1
        subscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in Task { await self?.unsubscribe(id) } }
        return stream
    }

    private func unsubscribe(_ id: UInt64) { subscribers[id] = nil }

    /// The last completion offset stored for this participant (0: none), by any completion log
    /// of it: the store is read, since another log may have stored completions this one has not.
    func storedEnd() async throws -> Int64 {
        let me = PostgresValue.text(participantID)
        return try await database.withConnection { connection in
            try connection.execute(
                "SELECT coalesce(max(completion_offset), 0) FROM ledger_api_completions WHERE participant = $1", [me]
            ).rows.first?.first?.int64 ?? 0
        }
    }

    /// Stored completions after `offset`, oldest first, at most `limit`.
    func completions(after offset: Int64, limit: Int) async throws -> [Weft.V1.Completion] {
        let values: [PostgresValue] = [.text(participantID), .int64(offset), .int64(Int64(limit))]
        return try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT application_id, command_id, submission_id, act_as, completion_offset, status_code, error_id,
                    message, transaction_id
                FROM ledger_api_completions
                WHERE participant = $1 AND completion_offset > $2 ORDER BY completion_offset LIMIT $3
                """, values
            ).rows.map { row in
                let code = StatusCode(rawValue: UInt32(clamping: try row[5].int64 ?? 2)) ?? .unknown
                return Self.wire(
                    CommandKey(applicationID: try row[0].string ?? "", commandID: try row[1].string ?? ""),
                    offset: try row[4].int64 ?? 0, code: code, errorID: try row[6].string ?? "",
                    message: try row[7].string ?? "", transactionID: try row[8].string ?? "",
                    submissionID: try row[2].string ?? "", actAs: try row[3].string ?? "")
            }
        }
    }

    /// The display name given to `party` when it was allocated here, if any.
    func displayNames() async throws -> [String: String] {
        let me = PostgresValue.text(participantID)
        let rows = try await database.withConnection { connection in
            try connection.execute("SELECT party, display_name FROM ledger_api_parties WHERE participant = $1", [me]).rows
        }
        var names: [String: String] = [:]
        for row in rows {
            let party = try row[0].string ?? ""
            names[party] = try row[1].string ?? ""
        }
        return names
    }

    func setDisplayName(_ name: String, of party: String) async throws {
        let values: [PostgresValue] = [.text(participantID), .text(party), .text(name)]
        _ = try await database.withConnection { connection in
            try connection.execute(
                """
                INSERT INTO ledger_api_parties (participant, party, display_name) VALUES ($1, $2, $3)
                ON CONFLICT (participant, party) DO UPDATE SET display_name = excluded.display_name
                """, values)
        }
    }

    private static func status(_ completion: Completion) -> (StatusCode, String, String, String) {
        switch completion {
        case .succeeded(let transactionID, _): (.ok, "", "", transactionID)
        case .rejected(let reasonID, let message): (.aborted, reasonID, message, "")
        case .duplicate(let previous):
            (
                .alreadyExists, "LEDGER_API_DUPLICATE_COMMAND",
                "the command id was submitted before (submission \(previous.submissionID)) and is still deduplicated", ""
            )
        }
    }

    private static func wire(
        _ key: CommandKey, offset: Int64, code: StatusCode, errorID: String, message: String, transactionID: String,
        submissionID: String, actAs: String
    ) -> Weft.V1.Completion {
        Weft.V1.Completion(
            commandID: key.commandID, status: Weft.V1.Status(code: code.rawValue, message: message, errorID: errorID),
            transactionID: transactionID, applicationID: key.applicationID,
            actAs: actAs.isEmpty ? [] : actAs.split(separator: "\n").map(String.init), submissionID: submissionID,
            offset: UInt64(offset))
    }
}
