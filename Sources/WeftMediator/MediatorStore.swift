import WeftContracts
public import WeftCrypto
public import WeftStore
public import WeftTopology
import WeftWire

/// A mediator's requests, counted responses and verdicts in PostgreSQL (component `mediator`).
///
/// The store decides nothing; it makes each state change of `Mediator` durable, in one
/// database transaction, before the mediator acts on it, and guards the one rule that must
/// hold even against a second process on the same tables: a request is decided at most once
/// (the decision is an `UPDATE … WHERE verdict IS NULL` under a row lock, and a request that
/// was decided already yields its stored verdict). Rows carry the mediator's member id, so
/// several mediators may share a database.
public struct MediatorStore: Sendable {
    /// The mediator schema, applied by `migrate()`.
    public static let migrator = Migrator(component: "mediator", migrations: migrations)

    static let migrations = [
        Migration(
            1, "create mediator_requests and mediator_responses",
            """
            CREATE TABLE mediator_requests (
                mediator         text    NOT NULL,
                request_ts       bigint  NOT NULL,
                root_hash        bytea   NOT NULL,
                uuid             bytea,
                informee_message bytea   NOT NULL,
                deadline_ts      bigint  NOT NULL,
                recipients       text    NOT NULL,
                verdict          bytea,
                approved         boolean,
                reason_id        text,
                decided_ts       bigint,
                delivered        boolean NOT NULL DEFAULT false,
                registered_at    timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (mediator, request_ts),
                CHECK ((verdict IS NULL) = (decided_ts IS NULL) AND (verdict IS NULL) = (approved IS NULL))
            );
            CREATE INDEX mediator_requests_pending ON mediator_requests (mediator, request_ts) WHERE verdict IS NULL;
            CREATE INDEX mediator_requests_undelivered ON mediator_requests (mediator, request_ts)
                WHERE verdict IS NOT NULL AND NOT delivered;
            CREATE INDEX mediator_requests_by_uuid ON mediator_requests (mediator, uuid);
            COMMENT ON TABLE mediator_requests IS
                'Confirmation requests a mediator registered (docs/mediator.md). Times are sequencing times in microseconds since the Unix epoch; informee_message is the weft.v1.InformeeMessage as received; recipients are the informee participant ids, one per line; verdict is the signed weft.v1.SignedProtocolMessage (a ConfirmationResult), NULL while the request is pending.';
            CREATE TABLE mediator_responses (
                mediator    text    NOT NULL,
                request_ts  bigint  NOT NULL,
                view_index  bigint  NOT NULL,
                party       text    NOT NULL,
                sender      text    NOT NULL,
                approve     boolean NOT NULL,
                received_ts bigint  NOT NULL,
                response    bytea   NOT NULL,
                PRIMARY KEY (mediator, request_ts, view_index, party),
                FOREIGN KEY (mediator, request_ts) REFERENCES mediator_requests ON DELETE CASCADE
            );
            COMMENT ON TABLE mediator_responses IS
                'Each confirming party counted for a view of a request (view_index in pre-order; -1 for a rejection of the whole request), with the participant that responded and its weft.v1.SignedProtocolMessage as received.';
            """),
        Migration(
            2, "create mediator_stream",
            """
            CREATE TABLE mediator_stream (
                mediator     text   PRIMARY KEY,
                next_counter bigint NOT NULL CHECK (next_counter >= 0),
                last_ts      bigint NOT NULL
            );
            COMMENT ON TABLE mediator_stream IS
                'Where a mediator node resumes its sequencer stream: every event before next_counter is processed and its effects stored (docs/mediator.md §7). last_ts is that event''s sequencing time.';
            """),
        Migration(
            3, "the uuid index cannot stand in for the primary key",
            // The index led with the mediator column, as the primary key does. Before autovacuum's
            // first ANALYZE (a new node under load) the planner cannot tell the two apart for a
            // look-up by (mediator, request_ts), and a cached plan that chose this one read every
            // request of the mediator per look-up (~950 buffers per call in weft-bench
            // transactions, for the lock before a verdict and for each response's foreign-key
            // check); the uuid query in turn scanned the primary key in order. Led by uuid, with
            // the mediator next, it serves only the uuid query, and serves it best.
            """
            DROP INDEX mediator_requests_by_uuid;
            CREATE INDEX mediator_requests_by_uuid ON mediator_requests (uuid, mediator, request_ts);
            """),
        Migration(
            4, "a deferred registration fails its transaction when its time or uuid is taken",
            // Registrations carried by the next write (`Progress.registrations`) are inserted at
            // the start of its transaction; one that cannot be inserted as it is aborts the
            // transaction with this SQLSTATE, and the mediator stores them one at a time instead.
            // VOLATILE (the default, said here): a STABLE or IMMUTABLE function could be called
            // while the statement is planned, and raise for every insert.
            """
            CREATE FUNCTION mediator_registration_taken(request_ts bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                RAISE EXCEPTION 'the request at % is registered already, or another request has its uuid', request_ts
                    USING ERRCODE = 'WM001';
            END
            $$;
            """),
        Migration(
            5, "responses are checked against their request by the mediator, not a foreign key",
            // Every response row is written by `MediatorStore.write` for a request the mediator
            // holds (registered before, or carried and inserted first in the same transaction),
            // and nothing deletes requests, so the key's check never refused anything. It cost a
            // row lock on the request per response (`FOR KEY SHARE`, through a trigger and SPI):
            // ~100 µs of server time each in weft-bench transactions, two per transfer.
            """
            ALTER TABLE mediator_responses DROP CONSTRAINT mediator_responses_mediator_request_ts_fkey;
            """),
        Migration(
            6, "a verdict that did not reach its participants in time says why",
            // `approved` is what the mediator decided. A verdict that did not reach the
            // participants by the request's decision time did not decide the request: they
            // rejected it themselves then. Without this column an audit of the mediator alone
            // read such a request as approved.
            """
            ALTER TABLE mediator_requests ADD COLUMN undelivered_reason text;
            COMMENT ON COLUMN mediator_requests.undelivered_reason IS
                'NULL for a verdict the sequencer took (or not sent yet). Else why it did not reach its informee participants in time, which then rejected the request themselves at its decision time (PARTICIPANT_VERDICT_TIMED_OUT) whatever approved says: MEDIATOR_DECISION_TIME_PASSED (never sent: the decision time came first), the sequencer''s error id when it took the verdict but delivered it to nobody (SEQUENCER_MAX_SEQUENCING_TIME_EXCEEDED, SEQUENCER_UNKNOWN_RECIPIENTS, …), MEDIATOR_NO_ACTIVE_RECIPIENTS (every informee participant was disabled since the request), or MEDIATOR_SEND_OUTCOME_UNKNOWN (a send before a crash or without an answer may have been sequenced in time; the decision time passed before it could be sent again: the participants'' records decide).';
            """),
    ]

    public let database: PostgresDatabase
    /// The mediator whose rows this store reads and writes.
    public let mediator: MemberID

    public init(database: PostgresDatabase, mediator: MemberID) {
        self.database = database
        self.mediator = mediator
    }

    /// Applies pending mediator migrations; returns the versions applied.
    @discardableResult
    public func migrate() async throws -> [Int] {
        try await database.withConnection { try Self.migrator.migrate($0) }
    }

    /// Throws `MigrationError.pending` unless the schema is current.
    func requireCurrent() async throws {
        try await database.withConnection { try Self.migrator.requireCurrent($0) }
    }

    // MARK: - Reading

    /// A pending request as stored, with the approvals counted for it.
    struct StoredPending: Sendable {
        let timestamp: SequencingTimestamp
        let rootHash: Digest32
        let informeeMessage: [UInt8]
        let deadline: SequencingTimestamp
        let recipients: [UniqueIdentifier]
        var approvals: [(view: Int, party: Party, sender: UniqueIdentifier)]
    }

    /// Every pending request, oldest first.
    func loadPending() async throws -> [StoredPending] {
        let mediatorText = mediator.description
        let (requestRows, responseRows) = try await database.transaction { connection in
            let requests = try connection.execute(
                """
                SELECT request_ts, root_hash, informee_message, deadline_ts, recipients
                FROM mediator_requests WHERE mediator = $1 AND verdict IS NULL ORDER BY request_ts
                """, [.text(mediatorText)]
            ).rows
            let responses = try connection.execute(
                """
                SELECT r.request_ts, r.view_index, r.party, r.sender, r.approve
                FROM mediator_responses r JOIN mediator_requests q USING (mediator, request_ts)
                WHERE r.mediator = $1 AND q.verdict IS NULL ORDER BY r.request_ts, r.view_index, r.party
                """, [.text(mediatorText)]
            ).rows
            return (requests, responses)
        }
        var pending: [StoredPending] = []
        var index: [Int64: Int] = [:]
        for row in requestRows {
            guard let ts = try row[0].int64, let root = try row[1].bytes, let rootHash = Digest32(root),
                let informee = try row[2].bytes, let deadline = try row[3].int64, let recipients = try row[4].string
            else { throw MediatorError.inconsistentStore("a pending request row has NULL or malformed columns") }
            index[ts] = pending.count
            pending.append(
                StoredPending(
                    timestamp: SequencingTimestamp(microsSinceEpoch: ts), rootHash: rootHash, informeeMessage: informee,
                    deadline: SequencingTimestamp(microsSinceEpoch: deadline),
                    recipients: try Self.participants(recipients), approvals: []))
        }
        for row in responseRows {
            guard let ts = try row[0].int64, let view = try row[1].int64, let partyText = try row[2].string,
                let senderText = try row[3].string, let approve = try row[4].bool, let at = index[ts]
            else { throw MediatorError.inconsistentStore("a response row has NULL columns") }
            guard approve, view >= 0 else {
                throw MediatorError.inconsistentStore(
                    "request \(SequencingTimestamp(microsSinceEpoch: ts)) has a stored rejection but no verdict")
            }
            guard let party = try? Party(partyText), let sender = try? UniqueIdentifier(parsing: senderText) else {
                throw MediatorError.inconsistentStore("a response row names '\(partyText)' or '\(senderText)'")
            }
            pending[at].approvals.append((Int(view), party, sender))
        }
        return pending
    }

    /// What the store knows of the request at `timestamp`.
    enum RequestState: Sendable {
        case pending(rootHash: Digest32)
        case decided(MediatorVerdict)
    }

    /// The state of the request registered at `timestamp`; nil if there is none.
    func state(at timestamp: SequencingTimestamp) async throws -> RequestState? {
        let mediatorText = mediator.description
        return try await database.withConnection { connection in
            try Self.state(connection, mediator: mediatorText, timestamp: timestamp.microsSinceEpoch, lock: false)
        }
    }

    /// The time of the latest request stored; nil if there is none. A request sequenced later
    /// cannot be in the store (sequencing times only grow), so registering it needs no check
    /// for one stored before at its time.
    func latestRequestTime() async throws -> SequencingTimestamp? {
        let mediatorText = mediator.description
        return try await database.withConnection { connection in
            try connection.execute(
                "SELECT max(request_ts) FROM mediator_requests WHERE mediator = $1", [.text(mediatorText)]
            ).rows.first.flatMap { try $0[0].int64 }.map(SequencingTimestamp.init(microsSinceEpoch:))
        }
    }

    /// Verdicts not yet marked delivered, oldest request first: what to (re)send after a restart.
    public func undeliveredVerdicts() async throws -> [MediatorVerdict] {
        let mediatorText = mediator.description
        let rows = try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT request_ts, root_hash, verdict, recipients, decided_ts FROM mediator_requests
                WHERE mediator = $1 AND verdict IS NOT NULL AND NOT delivered ORDER BY request_ts
                """, [.text(mediatorText)]
            ).rows
        }
        var verdicts: [MediatorVerdict] = []
        for row in rows { verdicts.append(try Self.verdict(row)) }
        return verdicts
    }

    /// Records that the verdict on `request` reached the sequencer, so it is not sent again
    /// (a transaction of its own; the driver folds the mark into its next write instead,
    /// `Progress`).
    public func markDelivered(_ request: SequencingTimestamp) async throws {
        try await store(Progress(delivered: [request]))
    }

    /// Where the node resumes its sequencer stream: the next counter to process and the
    /// sequencing time of the last one processed; (0, nil) for a mediator that never processed one.
    public func streamPosition() async throws -> (nextCounter: UInt64, lastTimestamp: SequencingTimestamp?) {
        let mediatorText = mediator.description
        let row = try await database.withConnection { connection in
            try connection.execute(
                "SELECT next_counter, last_ts FROM mediator_stream WHERE mediator = $1", [.text(mediatorText)]
            ).rows.first
        }
        guard let row else { return (0, nil) }
        guard let next = try row[0].int64, let last = try row[1].int64, next >= 0 else {
            throw MediatorError.inconsistentStore("the stream position row has NULL columns")
        }
        return (UInt64(next), SequencingTimestamp(microsSinceEpoch: last))
    }

    /// Records that every event before `nextCounter` is processed (never moves back), in a
    /// transaction of its own. Not for a store a running `Mediator` uses: a position stored
    /// past a request it carries (`Progress.registrations`) would lose the request in a crash.
    func saveStreamPosition(nextCounter: UInt64, lastTimestamp: SequencingTimestamp) async throws {
        try await store(Progress(position: StreamPosition(nextCounter: nextCounter, lastTimestamp: lastTimestamp)))
    }

    /// Where a node is in its sequencer stream: every event before `nextCounter` processed.
    public struct StreamPosition: Sendable, Equatable {
        public let nextCounter: UInt64
        public let lastTimestamp: SequencingTimestamp

        public init(nextCounter: UInt64, lastTimestamp: SequencingTimestamp) {
            self.nextCounter = nextCounter
            self.lastTimestamp = lastTimestamp
        }
    }

    /// The node's progress not stored yet — its stream position, the verdicts that reached the
    /// sequencer and the requests registered pending — written in the transaction of the next
    /// change of state (`insert`, `record`, `decide`) instead of transactions of their own: per
    /// event, the event's effect and the position before it are one transaction, and an event
    /// without effects none.
    struct Progress: Sendable {
        var position: StreamPosition?
        var delivered: [SequencingTimestamp] = []
        /// Verdicts that did not reach their participants in time, with the id of why
        /// (`mediator_requests.undelivered_reason`).
        var undelivered: [(request: SequencingTimestamp, reasonID: String)] = []
        /// Requests registered pending since the last write, oldest first: inserted at the start
        /// of the next write's transaction (the one of the event that follows, in practice that
        /// of the request's first responses) rather than in one of their own. Each insert checks
        /// the request's time and uuid as `insert` does, and aborts the whole transaction when
        /// either is taken (`isRegistrationTaken`); the mediator then stores them one at a time.
        var registrations: [NewRequest] = []

        var isEmpty: Bool { position == nil && delivered.isEmpty && undelivered.isEmpty && registrations.isEmpty }
    }

    /// The SQLSTATE of a carried registration whose time or uuid is taken (migration 4).
    static let registrationTakenState = "WM001"

    /// Whether `error` is a write's abort by a carried registration whose time or uuid is taken.
    static func isRegistrationTaken(_ error: any Error) -> Bool {
        (error as? PostgresError)?.sqlState == registrationTakenState
    }

    /// Stores `progress` alone: what the driver does when no change of state has carried it for
    /// a while, and when it stops.
    func store(_ progress: Progress) async throws {
        guard !progress.isEmpty else { return }
        let mediatorText = mediator.description
        try await database.transaction { connection in try Self.write(progress, connection, mediator: mediatorText) }
    }

    /// Writes `progress` in the caller's transaction, the registrations first, so that the
    /// caller's statements find their requests. The position never moves back.
    private static func write(_ progress: Progress, _ connection: PostgresConnection, mediator: String) throws {
        for request in progress.registrations {
            precondition(request.verdict == nil, "only pending requests are carried")
            try connection.enqueue(
                """
                WITH other AS (
                    SELECT request_ts FROM mediator_requests
                    WHERE uuid = $4::bytea AND mediator = $1 AND request_ts <> $2
                    LIMIT 1
                ), inserted AS (
                    INSERT INTO mediator_requests (mediator, request_ts, root_hash, uuid, informee_message, deadline_ts, recipients)
                    SELECT $1, $2, $3, $4::bytea, $5, $6, $7
                    WHERE NOT EXISTS (SELECT 1 FROM other)
                    ON CONFLICT (mediator, request_ts) DO NOTHING
                    RETURNING 1
                )
                SELECT mediator_registration_taken($2) WHERE NOT EXISTS (SELECT 1 FROM inserted)
                """, requestValues(request, mediator: mediator))
        }
        if let position = progress.position {
            try connection.enqueue(
                """
                INSERT INTO mediator_stream (mediator, next_counter, last_ts) VALUES ($1, $2, $3)
                ON CONFLICT (mediator) DO UPDATE SET next_counter = excluded.next_counter, last_ts = excluded.last_ts
                WHERE mediator_stream.next_counter < excluded.next_counter
                """,
                [.text(mediator), .int64(Int64(position.nextCounter)), .int64(position.lastTimestamp.microsSinceEpoch)])
        }
        if !progress.delivered.isEmpty {
            try connection.enqueue(
                """
                UPDATE mediator_requests SET delivered = true
                WHERE mediator = $1 AND request_ts = ANY ($2::bigint[]) AND verdict IS NOT NULL
                """,
                [
                    .text(mediator),
                    .text("{" + progress.delivered.map { "\($0.microsSinceEpoch)" }.joined(separator: ",") + "}"),
                ])
        }
        for (request, reasonID) in progress.undelivered {
            try connection.enqueue(
                """
                UPDATE mediator_requests SET delivered = true, undelivered_reason = $3
                WHERE mediator = $1 AND request_ts = $2 AND verdict IS NOT NULL
                """, [.text(mediator), .int64(request.microsSinceEpoch), .text(reasonID)])
        }
    }

    // MARK: - Writing

    /// A request to insert: pending, or already decided (refused at registration).
    struct NewRequest: Sendable {
        let id: RequestID
        let uuid: [UInt8]?
        let informeeMessage: [UInt8]
        let deadline: SequencingTimestamp
        let recipients: [UniqueIdentifier]
        let verdict: MediatorVerdict?
    }

    /// What `insert` did: inserted the request (with `verdict`, the one it carries), or found a
    /// request at its time already (registered before: the caller reads it if it needs it).
    enum Insertion: Sendable {
        case inserted(verdict: MediatorVerdict?)
        case existing
    }

    /// Inserts `request` unless a request is registered at its time already. A pending request
    /// (no verdict) whose uuid another request has is inserted refused instead, with the verdict
    /// `refusal` makes from that request's time. The check and the insert are one statement, sent
    /// with BEGIN and COMMIT in one pipeline: one round trip to the database rather than three
    /// (a read, the insert, the commit). Stores `progress` too.
    func insert(
        _ request: NewRequest, progress: Progress = Progress(),
        refusal: @escaping @Sendable (_ first: SequencingTimestamp) throws -> MediatorVerdict
    ) async throws -> Insertion {
        let mediatorText = mediator.description
        let values = Self.requestValues(request, mediator: mediatorText)
        let decided = try Self.decisionValues(request.verdict)
        let checkUUID = request.verdict == nil && request.uuid != nil
        // One round trip: the check, the insert and the progress in one pipelined transaction.
        let results = try await database.pipelinedTransaction { connection in
            try Self.write(progress, connection, mediator: mediatorText)
            try connection.enqueue(
                """
                WITH other AS (
                    SELECT request_ts FROM mediator_requests
                    WHERE $12::boolean AND uuid = $4::bytea AND mediator = $1 AND request_ts <> $2
                    ORDER BY request_ts LIMIT 1
                ), inserted AS (
                    INSERT INTO mediator_requests (mediator, request_ts, root_hash, uuid, informee_message, deadline_ts,
                        recipients, verdict, approved, reason_id, decided_ts)
                    SELECT $1, $2, $3, $4::bytea, $5, $6, $7, $8::bytea, $9::boolean, $10::text, $11::bigint
                    WHERE NOT EXISTS (SELECT 1 FROM other)
                    ON CONFLICT (mediator, request_ts) DO NOTHING
                    RETURNING 1
                )
                SELECT (SELECT request_ts FROM other), (SELECT count(*) FROM inserted)::int8
                """, values + decided + [.text(checkUUID ? "true" : "false")])
        }
        let row = results.last?.rows.first
        if try row?[1].int64 == 1 { return .inserted(verdict: request.verdict) }
        if let first = try row?[0].int64 {
            // The uuid is taken (an attack, or a replay): the request is inserted refused, unless
            // one stands at its time.
            let verdict = try refusal(SequencingTimestamp(microsSinceEpoch: first))
            let refused = values + (try Self.decisionValues(verdict))
            let inserted = try await database.pipelinedTransaction { connection in
                try connection.enqueue(
                    """
                    INSERT INTO mediator_requests (mediator, request_ts, root_hash, uuid, informee_message, deadline_ts,
                        recipients, verdict, approved, reason_id, decided_ts)
                    VALUES ($1, $2, $3, $4::bytea, $5, $6, $7, $8::bytea, $9::boolean, $10::text, $11::bigint)
                    ON CONFLICT (mediator, request_ts) DO NOTHING
                    """, refused)
            }
            if inserted.last?.affectedRowCount == 1 { return .inserted(verdict: verdict) }
        }
        return .existing
    }

    /// `mediator, request_ts, root_hash, uuid, informee_message, deadline_ts, recipients` of a new request.
    private static func requestValues(_ request: NewRequest, mediator: String) -> [PostgresValue] {
        [
            .text(mediator), .int64(request.id.timestamp.microsSinceEpoch), .bytes(request.id.rootHash.bytes),
            request.uuid.map { .bytes($0) } ?? .null,
            .bytes(request.informeeMessage), .int64(request.deadline.microsSinceEpoch),
            .text(Self.text(request.recipients)),
        ]
    }

    /// A response as counted: the parties it counted for, and the verdict if it decided its request.
    struct CountedResponse: Sendable {
        let response: CheckedResponse
        let parties: [Party]
        let request: RequestID
        let decision: MediatorVerdict?
    }

    /// Records the responses of one event — the parties each counted for and the verdicts they
    /// reached — in one transaction, with `progress`. Returns the requests found decided in the
    /// store already, with their stored verdicts: nothing of theirs is written (`progress` is,
    /// either way).
    func record(_ counted: [CountedResponse], progress: Progress = Progress()) async throws
        -> [SequencingTimestamp: MediatorVerdict]
    {
        let mediatorText = mediator.description
        var requests: [RequestID] = []
        for item in counted where !requests.contains(item.request) { requests.append(item.request) }
        var rows = ResponseColumns()
        for item in counted {
            let bytes = try item.response.message.serializedBytes()
            for party in item.parties { rows.append(item, party: party, bytes: bytes) }
        }
        let decisions = try counted.compactMap { item in
            try item.decision.map { (item.request.timestamp, item.request.rootHash.bytes, try Self.decisionValues($0)) }
        }
        let allRows = rows
        let requestTimes = requests.map { Optional($0.timestamp.microsSinceEpoch) }
        let requestRoots = requests.map { Optional($0.rootHash.bytes) }
        // One round trip: each write is for requests stored pending with the root hash they were
        // counted against, so that it writes nothing for any other; the locked read at the start
        // tells which those were — decided already (by another process: their stored verdicts
        // are returned), or missing or different, when the store is inconsistent and this throws
        // after the commit. The event's other requests are written then, which a restart, reading
        // the event again, finds counted (a check in each statement cost ~0.3 ms of the
        // server's CPU per transfer in weft-bench transactions).
        let results = try await database.pipelinedTransaction { connection in
            try Self.write(progress, connection, mediator: mediatorText)
            try connection.enqueue(
                """
                SELECT request_ts, root_hash, verdict, recipients, decided_ts FROM mediator_requests
                WHERE mediator = $1 AND request_ts = ANY ($2::int8[]) ORDER BY request_ts FOR UPDATE
                """, [.text(mediatorText), .int64Array(requestTimes)])
            try connection.enqueue(
                """
                INSERT INTO mediator_responses (mediator, request_ts, view_index, party, sender, approve,
                    received_ts, response)
                SELECT $1, response.* FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[]::boolean[],
                    $7::int8[], $8::bytea[]) AS response (request_ts, view_index, party, sender, approve, received_ts, response)
                WHERE EXISTS (
                    SELECT 1 FROM mediator_requests AS request
                    JOIN unnest($9::int8[], $10::bytea[]) AS counted (request_ts, root_hash)
                        ON counted.request_ts = request.request_ts AND counted.root_hash = request.root_hash
                    WHERE request.mediator = $1 AND request.request_ts = response.request_ts AND request.verdict IS NULL)
                ON CONFLICT DO NOTHING
                """,
                [
                    .text(mediatorText), .int64Array(allRows.ts), .int64Array(allRows.view), .textArray(allRows.party),
                    .textArray(allRows.sender), .textArray(allRows.approve), .int64Array(allRows.receivedAt),
                    .bytesArray(allRows.response), .int64Array(requestTimes), .bytesArray(requestRoots),
                ])
            for (timestamp, root, values) in decisions {
                try connection.enqueue(
                    """
                    UPDATE mediator_requests SET verdict = $3, approved = $4::boolean, reason_id = $5::text, decided_ts = $6
                    WHERE mediator = $1 AND request_ts = $2 AND verdict IS NULL AND root_hash = $7
                    """, [.text(mediatorText), .int64(timestamp.microsSinceEpoch)] + values + [.bytes(root)])
            }
        }
        // [progress…, the read, the insert, the decisions…]
        let read = results[results.count - decisions.count - 2]
        let updated = results.suffix(decisions.count).map { $0.affectedRowCount ?? 0 }
        var stored: [Int64: [PostgresCell]] = [:]
        for row in read.rows { if let ts = try row[0].int64 { stored[ts] = row } }
        var decidedBefore: [SequencingTimestamp: MediatorVerdict] = [:]
        for request in requests {
            guard let row = stored[request.timestamp.microsSinceEpoch] else {
                throw MediatorError.inconsistentStore("request \(request) is not in the store")
            }
            if row[2].isNull {
                guard let root = try row[1].bytes, root == request.rootHash.bytes else {
                    throw MediatorError.inconsistentStore("request \(request) is stored with another root hash")
                }
            } else {
                decidedBefore[request.timestamp] = try Self.verdict(row)
            }
        }
        for ((timestamp, _, _), count) in zip(decisions, updated) where decidedBefore[timestamp] == nil && count != 1 {
            throw MediatorError.inconsistentStore("request at \(timestamp) was decided while it was locked")
        }
        return decidedBefore
    }

    /// The `mediator_responses` rows of one `record`, column by column (one `unnest` insert).
    private struct ResponseColumns: Sendable {
        var ts: [Int64?] = []
        var view: [Int64?] = []
        var party: [String?] = []
        var sender: [String?] = []
        var approve: [String?] = []
        var receivedAt: [Int64?] = []
        var response: [[UInt8]?] = []

        mutating func append(_ item: CountedResponse, party: Party, bytes: [UInt8]) {
            ts.append(item.request.timestamp.microsSinceEpoch)
            view.append(Int64(item.response.view ?? -1))
            self.party.append(party.id)
            sender.append(item.response.sender.description)
            approve.append(item.response.reject == nil ? "true" : "false")
            receivedAt.append(item.response.at.microsSinceEpoch)
            response.append(bytes)
        }
    }

    /// Records each verdict on a pending request (timeouts) in one transaction; returns, per
    /// verdict, the one that stands: itself, or the one stored before. Stores `progress` too.
    func decide(_ verdicts: [MediatorVerdict], progress: Progress = Progress()) async throws -> [MediatorVerdict] {
        guard !verdicts.isEmpty else { return [] }
        let mediatorText = mediator.description
        var decisions: [(Int64, [PostgresValue])] = []
        for verdict in verdicts {
            decisions.append((verdict.request.timestamp.microsSinceEpoch, try Self.decisionValues(verdict)))
        }
        let prepared = decisions
        return try await database.transaction { connection in
            try Self.write(progress, connection, mediator: mediatorText)
            var standing: [MediatorVerdict] = []
            for (index, (ts, values)) in prepared.enumerated() {
                switch try Self.state(connection, mediator: mediatorText, timestamp: ts, lock: true) {
                case .decided(let stored)?: standing.append(stored)
                case nil: throw MediatorError.inconsistentStore("request at \(ts)µs is not in the store")
                case .pending?:
                    try Self.decide(connection, mediator: mediatorText, timestamp: ts, values)
                    standing.append(verdicts[index])
                }
            }
            return standing
        }
    }

    // MARK: - Rows

    /// `verdict, approved, reason_id, decided_ts` of a decision (all NULL for none).
    private static func decisionValues(_ verdict: MediatorVerdict?) throws -> [PostgresValue] {
        guard let verdict else { return [.null, .null, .null, .null] }
        return [
            .bytes(try verdict.message.serializedBytes()), .text(verdict.isApproved ? "true" : "false"),
            verdict.reasonID.map { .text($0) } ?? .null, .int64(verdict.decidedAt.microsSinceEpoch),
        ]
    }

    private static func decide(
        _ connection: PostgresConnection, mediator: String, timestamp: Int64, _ values: [PostgresValue]
    ) throws {
        let updated = try connection.execute(
            """
            UPDATE mediator_requests SET verdict = $3, approved = $4::boolean, reason_id = $5::text, decided_ts = $6
            WHERE mediator = $1 AND request_ts = $2 AND verdict IS NULL
            """, [.text(mediator), .int64(timestamp)] + values)
        guard updated.affectedRowCount == 1 else {
            throw MediatorError.inconsistentStore("request at \(timestamp)µs was decided while it was locked")
        }
    }

    /// The request at `timestamp`, optionally locking its row until the transaction ends.
    private static func state(_ connection: PostgresConnection, mediator: String, timestamp: Int64, lock: Bool)
        throws -> RequestState?
    {
        guard
            let row = try connection.execute(
                """
                SELECT request_ts, root_hash, verdict, recipients, decided_ts FROM mediator_requests
                WHERE mediator = $1 AND request_ts = $2
                """ + (lock ? " FOR UPDATE" : ""), [.text(mediator), .int64(timestamp)]
            ).rows.first
        else { return nil }
        if row[2].isNull {
            guard let root = try row[1].bytes, let rootHash = Digest32(root) else {
                throw MediatorError.inconsistentStore("request at \(timestamp)µs has a malformed root hash")
            }
            return .pending(rootHash: rootHash)
        }
        return .decided(try verdict(row))
    }

    /// A verdict from `request_ts, root_hash, verdict, recipients, decided_ts`.
    private static func verdict(_ row: [PostgresCell]) throws -> MediatorVerdict {
        guard let ts = try row[0].int64, let root = try row[1].bytes, let rootHash = Digest32(root),
            let bytes = try row[2].bytes, let recipients = try row[3].string, let decided = try row[4].int64
        else { throw MediatorError.inconsistentStore("a decided request row has NULL or malformed columns") }
        let request = RequestID(timestamp: SequencingTimestamp(microsSinceEpoch: ts), rootHash: rootHash)
        let message: Weft.V1.SignedProtocolMessage
        let content: Weft.V1.SignedContent
        do {
            message = try Weft.V1.SignedProtocolMessage(serializedBytes: bytes)
            content = try Weft.V1.SignedContent(serializedBytes: message.content)
        } catch {
            throw MediatorError.inconsistentStore("the stored verdict on \(request) does not decode: \(error)")
        }
        guard case .confirmationResult(let result)? = content.content,
            result.requestID?.microsSinceEpoch == ts, result.rootHash == root
        else { throw MediatorError.inconsistentStore("the stored verdict on \(request) is for another request") }
        return MediatorVerdict(
            request: request, result: result, message: message, recipients: try participants(recipients),
            decidedAt: SequencingTimestamp(microsSinceEpoch: decided))
    }

    private static func text(_ participants: [UniqueIdentifier]) -> String {
        participants.map(\.description).joined(separator: "\n")
    }

    private static func participants(_ text: String) throws -> [UniqueIdentifier] {
        var result: [UniqueIdentifier] = []
        for line in text.split(separator: "\n") {
            guard let participant = try? UniqueIdentifier(parsing: String(line)) else {
                throw MediatorError.inconsistentStore("a stored recipient '\(line.prefix(200))' is no participant id")
            }
            result.append(participant)
        }
        return result
    }
}
