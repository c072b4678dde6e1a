import Foundation
import WeftContracts
public import WeftCrypto
public import WeftStore
import WeftTopology
import WeftWire

/// A participant's tables in PostgreSQL (component `participant`): packages, contracts (the
/// active contract set is the rows not archived), the ledger of transactions and their events
/// per hosted party, requests in flight with the contracts they lock, submitted commands for
/// deduplication and completions, and the sequencer counter processed last.
///
/// Every row carries the participant's id, so that participants may share a database. The
/// store decides nothing: `ParticipantNode` calls it once per sequenced event that has effects,
/// and each call is one database transaction that also moves the counter, so an event's effects
/// and the fact that it was processed are durable together or not at all. Events without
/// effects move the counter in the node's memory only; the next write (or `advance`) stores it,
/// so the stored counter may lag behind by such events, which a restart reads again.
public struct ParticipantStore: Sendable {
    /// The participant schema, applied by `migrate()`.
    public static let migrator = Migrator(component: "participant", migrations: migrations)

    static let migrations = [
        Migration(
            1, "create the participant's tables",
            """
            CREATE TABLE participant_packages (
                participant text NOT NULL,
                package_id  text NOT NULL,
                source      text NOT NULL,
                uploaded_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (participant, package_id)
            );
            COMMENT ON TABLE participant_packages IS
                'Contract packages uploaded to a participant (docs/contracts.md), as source text; package_id is the hex id of its canonical form.';
            CREATE TABLE participant_contracts (
                participant     text   NOT NULL,
                contract_id     text   NOT NULL,
                template        text   NOT NULL,
                stakeholders    text[] NOT NULL,
                contract        bytea  NOT NULL,
                created_offset  bigint NOT NULL,
                archived_offset bigint,
                PRIMARY KEY (participant, contract_id)
            );
            CREATE INDEX participant_contracts_active ON participant_contracts (participant)
                WHERE archived_offset IS NULL;
            COMMENT ON TABLE participant_contracts IS
                'Every contract a hosted party is a stakeholder of; active while archived_offset IS NULL. contract is the weft.v1.ContractInstance with its creation seed as salt.';
            CREATE TABLE participant_transactions (
                participant    text   NOT NULL,
                ledger_offset  bigint NOT NULL,
                transaction_id text   NOT NULL,
                request_ts     bigint NOT NULL,
                command_id     text   NOT NULL DEFAULT '',
                PRIMARY KEY (participant, ledger_offset),
                UNIQUE (participant, transaction_id)
            );
            COMMENT ON TABLE participant_transactions IS
                'The participant ledger: one row per committed transaction that concerns a hosted party, in sequencer order; transaction_id is the root hash in hex, request_ts the sequencing time in microseconds.';
            CREATE TABLE participant_events (
                participant   text    NOT NULL,
                ledger_offset bigint  NOT NULL,
                event_index   integer NOT NULL,
                party         text    NOT NULL,
                created       boolean NOT NULL,
                contract_id   text    NOT NULL,
                PRIMARY KEY (participant, ledger_offset, event_index, party),
                FOREIGN KEY (participant, ledger_offset) REFERENCES participant_transactions
            );
            CREATE INDEX participant_events_by_party ON participant_events (participant, party, ledger_offset);
            COMMENT ON TABLE participant_events IS
                'The projection of each transaction per hosted party: the contracts created and archived that the party is a stakeholder of.';
            CREATE TABLE participant_requests (
                participant    text    NOT NULL,
                request_ts     bigint  NOT NULL,
                root_hash      bytea   NOT NULL,
                views          bytea   NOT NULL,
                locked         text[]  NOT NULL,
                creates        text[]  NOT NULL,
                application_id text,
                command_id     text,
                responses      bytea   NOT NULL,
                responses_sent boolean NOT NULL DEFAULT false,
                outcome        text,
                PRIMARY KEY (participant, request_ts)
            );
            CREATE INDEX participant_requests_pending ON participant_requests (participant) WHERE outcome IS NULL;
            COMMENT ON TABLE participant_requests IS
                'Confirmation requests the participant validated: the decrypted weft.v1.ViewTrees (length-prefixed), the contracts they lock and create, the signed responses sent; outcome is NULL while pending, then approved or the reject reason id.';
            CREATE TABLE participant_commands (
                participant      text   NOT NULL,
                application_id   text   NOT NULL,
                command_id       text   NOT NULL,
                submission_id    text   NOT NULL,
                message_id       text   NOT NULL,
                root_hash        bytea  NOT NULL,
                submitted_at     bigint NOT NULL,
                dedup_until      bigint NOT NULL,
                state            text   NOT NULL CHECK (state IN ('in_flight', 'succeeded', 'rejected')),
                transaction_id   text,
                ledger_offset    bigint,
                reason_id        text,
                reason           text,
                PRIMARY KEY (participant, application_id, command_id)
            );
            CREATE INDEX participant_commands_by_message ON participant_commands (participant, message_id);
            COMMENT ON TABLE participant_commands IS
                'Commands submitted through this participant: deduplication (dedup_until, microseconds) and the completion of each (state, transaction_id or reason).';
            CREATE TABLE participant_cursor (
                participant  text   PRIMARY KEY,
                next_counter bigint NOT NULL,
                last_ts      bigint NOT NULL
            );
            COMMENT ON TABLE participant_cursor IS
                'The next sequencer counter to process and the sequencing time of the last processed event, moved in the transaction of each event''s effects.';
            """),
        Migration(
            2, "store each committed transaction's tree",
            """
            CREATE TABLE participant_trees (
                participant   text   NOT NULL,
                ledger_offset bigint NOT NULL,
                tree          bytea  NOT NULL,
                PRIMARY KEY (participant, ledger_offset)
            );
            COMMENT ON TABLE participant_trees IS
                'The transaction tree of each committed transaction: a weft.v1.TransactionTreeView whose events are every create and exercise a hosted party witnesses (witness_parties: those hosted parties); the Ledger API projects it to the parties a reader asks for.';
            """),
        Migration(
            3, "flat events carry the event id of their node",
            """
            ALTER TABLE participant_events ADD COLUMN event_id text NOT NULL DEFAULT '';
            COMMENT ON COLUMN participant_events.event_id IS
                'The Ledger API event id of the create or consuming exercise the event comes from (as in the transaction tree, the same on every participant); empty when the views could not be re-interpreted here.';
            """),
        Migration(
            4, "commands remember their request's max sequencing time",
            """
            ALTER TABLE participant_commands ADD COLUMN max_sequencing_time bigint NOT NULL DEFAULT 0;
            COMMENT ON COLUMN participant_commands.max_sequencing_time IS
                'The request''s max sequencing time (µs): a command still in flight whose request is not among participant_requests once the stream''s time has passed it was never sequenced (0: not recorded, before this column).';
            """),
        CommitmentStore.migration,
        ParticipantStore.pruningMigration,
        ParticipantStore.domainMigrationMigration,
        Migration(
            8, "commands in flight keep their request until it is decided",
            """
            ALTER TABLE participant_commands ADD COLUMN batch bytea;
            -- Encrypted views do not compress: stored out of line without trying.
            ALTER TABLE participant_commands ALTER COLUMN batch SET STORAGE EXTERNAL;
            COMMENT ON COLUMN participant_commands.batch IS
                'The request as sent (a weft.v1.Batch) while the command is in flight: a restart sends it again under its message id, so a request recorded but not sent before a crash is sequenced after all. NULL once the command is decided (or when it was recorded by replay, or before this column).';
            """),
        Migration(
            9, "the message id index cannot stand in for the primary key",
            // Led by the participant column like the primary key, the index looked as good as
            // the key to the planner before autovacuum's first ANALYZE (a new node under load),
            // and a cached plan that chose it for a look-up by command id read every command of
            // the participant (~450 buffers per call in weft-bench transactions). Led by the
            // message id, it serves only the look-up by message id.
            """
            DROP INDEX participant_commands_by_message;
            CREATE INDEX participant_commands_by_message ON participant_commands (message_id, participant);
            """),
        Migration(
            10, "requests and commands of a few KiB stay in the row",
            // A request's views (2-3 KiB) and a command's batch in flight were over PostgreSQL's
            // default 2 KiB threshold: each insert compressed the views (pglz) or moved the
            // batch to the TOAST table (a second heap and index insert), and each read undid it.
            // Rows up to a page now stay whole and uncompressed; larger values still go out of line.
            """
            ALTER TABLE participant_requests SET (toast_tuple_target = 8160);
            ALTER TABLE participant_commands SET (toast_tuple_target = 8160);
            """),
        Migration(
            11, "requests are found by root hash",
            // `outcome(ofRequest:)` and `views(ofRequest:)` look a request up by root hash; with
            // only the primary key, each read every request of the participant (10 ms apiece
            // with ~5,000 requests of a few KiB). Led by the root hash, as migration 9 explains.
            """
            CREATE INDEX participant_requests_by_root_hash ON participant_requests (root_hash, participant, request_ts);
            """),
        Migration(
            12, "no mark of responses sent",
            // The mark cost an UPDATE of the request's whole row (its views and responses, a
            // few KiB, kept in the row by migration 10) for ~every request: 104 µs of server
            // time per call in weft-bench transactions, plus its WAL. A restart now re-sends the
            // responses of every pending request, as it did for those not yet marked.
            """
            ALTER TABLE participant_requests DROP COLUMN responses_sent;
            """),
        Migration(
            13, "events are checked against their transaction by the writer, not a foreign key",
            // A transaction's events are written only by `decide`, in the same transaction as the
            // transaction's row and right after it, and pruning deletes events before their
            // transactions, so the key's check never refused anything. It cost a lock on the
            // transaction's row per event (`FOR KEY SHARE`, through a trigger and SPI, and a WAL
            // record for the lock): 106 → 44 µs of server time per insert of a transfer's events
            // in weft-bench transactions.
            """
            ALTER TABLE participant_events DROP CONSTRAINT participant_events_participant_ledger_offset_fkey;
            """),
        CommitmentStore.sentMigration,
        Migration(
            15, "transactions know the parties their command acted as",
            // The command id of a transaction is the submitting application's, for the parties
            // it acted as: the Ledger API shows it to a reader of those parties only, not to
            // another party of this participant that the transaction merely concerns. NULL for
            // transactions not submitted here, and for those committed before this column (the
            // command id is then shown to nobody).
            """
            ALTER TABLE participant_transactions ADD COLUMN act_as text[];
            COMMENT ON COLUMN participant_transactions.act_as IS
                'The parties the submitting command acted as, on the submitting participant (NULL elsewhere): who may see command_id.';
            """),
        Migration(
            16, "commands are deduplicated per application, command id and act-as parties",
            // ledger.proto's key (Canton's change id): two users of one application id, or one
            // application acting for different parties, no longer take each other's command ids.
            // Rows recorded before keep an empty act_as, which stands for their command id
            // whatever the parties (the key they were recorded under) until they are pruned or
            // replaced (`begin`). A command acts as at least one party, so no new row of this
            // version is empty; the default is for rows an older version still running on a
            // shared database writes while another participant upgrades (they mean the same).
            """
            ALTER TABLE participant_commands ADD COLUMN act_as text[] NOT NULL DEFAULT '{}';
            ALTER TABLE participant_commands DROP CONSTRAINT participant_commands_pkey;
            ALTER TABLE participant_commands ADD PRIMARY KEY (participant, application_id, command_id, act_as);
            COMMENT ON COLUMN participant_commands.act_as IS
                'The parties the command acts as, sorted: part of the deduplication key. Empty for a command recorded before migration 16: it deduplicates its command id for any parties.';
            """),
        Migration(
            17, "commands approved without a commit here are completed",
            // Before this version an approved request that committed nothing here (no hosted
            // party saw an event of it) left its command `in_flight`: the application was told
            // it succeeded, but the record held the command id, and once its request row was
            // pruned a restart rejected it as never sequenced, inviting a second execution.
            // Their offset is the ledger end at their request, as the node now stores it.
            """
            UPDATE participant_commands c
            SET state = 'succeeded', transaction_id = encode(c.root_hash, 'hex'), batch = NULL,
                ledger_offset = coalesce((
                    SELECT max(t.ledger_offset) FROM participant_transactions t
                    WHERE t.participant = c.participant AND t.request_ts < r.request_ts), 0)
            FROM participant_requests r
            WHERE c.state = 'in_flight' AND r.participant = c.participant AND r.root_hash = c.root_hash
                AND r.outcome = 'approved';
            """),
        Migration(
            18, "transactions record when they were committed",
            // A transaction changes the active contract set at its verdict, and offsets follow
            // verdict order, but only the request's sequencing time was stored: pruning compared
            // that with the commitment safe point, so an offset whose request came before the
            // safe point and its verdict after it was pruned without the override (and named as
            // the safe offset). The verdict's time of rows from before this column is unknown:
            // they get the stream position they were migrated at, which every stored verdict is
            // at or before (it moved in the same transaction), so they become prunable once the
            // safe point passes it. A row an older version still running on a shared database
            // writes has NULL, read as the stream position when read (`commitTime(ofOffset:)`).
            """
            ALTER TABLE participant_transactions ADD COLUMN commit_ts bigint;
            UPDATE participant_transactions t SET commit_ts = greatest(t.request_ts, c.last_ts)
            FROM participant_cursor c WHERE c.participant = t.participant;
            COMMENT ON COLUMN participant_transactions.commit_ts IS
                'The sequencing time (µs) of the verdict that committed the transaction, when it changed the active contract set: what pruning compares with the ACS commitment safe point (request_ts, the record time, may be earlier, and is not in offset order). For rows from before migration 18, the stream position (participant_cursor.last_ts) at the migration; NULL only for a row an older version wrote, read as the current stream position.';
            """),
        Migration(
            19, "contracts in creation order, for the active contracts read a page at a time",
            // GetActiveContracts reads the set as of one offset in pages that each continue
            // after the last (created_offset, contract_id) sent, so that a participant with
            // millions of contracts streams them without holding them all. Not with contract_id
            // as its last column: the planner, without statistics, then took it for look-ups by
            // (participant, contract_id) — a scan of the participant's every contract — over the
            // primary key (StoreQueryPlanTests).
            """
            CREATE INDEX participant_contracts_by_creation ON participant_contracts (participant, created_offset);
            """),
        Migration(
            20, "contracts a repair imported, in id order, for the active contracts read a page at a time",
            // A repair imports contracts at creation offset 0, all of them: a page cut by creation
            // offset took the whole import. Pages of that group continue by contract id instead,
            // through an index of the group alone, in id order: partial, so that a look-up by
            // (participant, contract_id), with no creation offset in it, cannot take it over the
            // primary key (as it took a full index of these columns without statistics).
            """
            CREATE INDEX participant_contracts_repaired ON participant_contracts (participant, created_offset, contract_id) WHERE created_offset = 0;
            """),
    ]

    public let database: PostgresDatabase
    /// The participant whose rows this store reads and writes.
    public let participant: UniqueIdentifier

    public init(database: PostgresDatabase, participant: UniqueIdentifier) {
        self.database = database
        self.participant = participant
    }

    /// Applies pending participant migrations; returns the versions applied.
    @discardableResult
    public func migrate() async throws -> [Int] {
        try await database.withConnection { try Self.migrator.migrate($0) }
    }

    var me: PostgresValue { .text(participant.description) }

    // MARK: - Loading at start

    /// Where the participant stopped: the next counter and the last event's time.
    struct Cursor: Sendable, Equatable {
        var nextCounter: UInt64
        var lastTimestamp: SequencingTimestamp?
    }

    struct StoredRequest: Sendable {
        let timestamp: SequencingTimestamp
        let rootHash: Digest32
        let locked: [ContractID]
        let creates: [ContractID]
        let responses: [Weft.V1.SignedProtocolMessage]
        let views: [[UInt8]]
        let command: CommandKey?
        /// `views` decoded, when this process validated the request; nil for one loaded from
        /// the store (a restart), whose commit decodes `views` again. Never stored.
        var decodedViews: [View]? = nil
        /// The submitter metadata of this participant's own command, read from the views
        /// when this process validated the request; nil otherwise. Never stored.
        var ownSubmitter: SubmitterMetadata? = nil
    }

    /// What a (re)starting participant needs in memory.
    struct Loaded: Sendable {
        var cursor: Cursor
        var packages: [String]
        var active: [(ContractID, ContractInstance, NodeSeed?)]
        var known: Set<ContractID>
        var pending: [StoredRequest]
        var ledgerEnd: Int64
        /// The offset up to which the ledger was pruned (0: never).
        var prunedOffset: Int64
    }

    func load() async throws -> Loaded {
        let me = self.me
        return try await database.transaction { connection in
            let cursorRow = try connection.execute(
                "SELECT next_counter, last_ts FROM participant_cursor WHERE participant = $1", [me]
            ).rows.first
            var cursor = Cursor(nextCounter: 0, lastTimestamp: nil)
            if let row = cursorRow, let next = try row[0].int64, let last = try row[1].int64 {
                cursor = Cursor(nextCounter: UInt64(next), lastTimestamp: SequencingTimestamp(microsSinceEpoch: last))
            }
            let packages = try connection.execute(
                "SELECT source FROM participant_packages WHERE participant = $1 ORDER BY uploaded_at, package_id", [me]
            ).rows.map { try Self.require($0[0].string, "package source") }
            var active: [(ContractID, ContractInstance, NodeSeed?)] = []
            var known = Set<ContractID>()
            for row in try connection.execute(
                "SELECT contract, archived_offset IS NULL FROM participant_contracts WHERE participant = $1", [me]
            ).rows {
                let wire = try Weft.V1.ContractInstance(serializedBytes: Self.require(row[0].bytes, "contract"))
                let (id, contract, seed) = try ContractInstance.fromWire(wire)
                known.insert(id)
                if try row[1].bool == true { active.append((id, contract, seed)) }
            }
            var pending: [StoredRequest] = []
            for row in try connection.execute(
                """
                \(Self.pendingRequestsSQL)
                """, [me]
            ).rows {
                let ts = try Self.require(row[0].int64, "request_ts")
                guard let rootHash = Digest32(try Self.require(row[1].bytes, "root_hash")) else {
                    throw ParticipantError.inconsistentStore("a request's root hash is not 32 bytes")
                }
                var command: CommandKey?
                if let application = try row[6].string, let commandID = try row[7].string {
                    command = CommandKey(applicationID: application, commandID: commandID)
                }
                pending.append(
                    StoredRequest(
                        timestamp: SequencingTimestamp(microsSinceEpoch: ts), rootHash: rootHash,
                        locked: try Self.contractIDs(row[2].string), creates: try Self.contractIDs(row[3].string),
                        responses: try LengthPrefixed.decode(Self.require(row[4].bytes, "responses")).map {
                            try Weft.V1.SignedProtocolMessage(serializedBytes: $0)
                        },
                        views: try LengthPrefixed.decode(Self.require(row[5].bytes, "views")), command: command))
            }
            let end =
                try connection.execute(
                    "SELECT coalesce(max(ledger_offset), 0) FROM participant_transactions WHERE participant = $1", [me]
                ).rows.first?.first?.int64 ?? 0
            let pruned = try Self.prunedOffset(connection, me)
            return Loaded(
                cursor: cursor, packages: packages, active: active, known: known, pending: pending,
                ledgerEnd: max(end, pruned), prunedOffset: pruned)
        }
    }

    // MARK: - Packages

    /// Stores `package`'s source; uploading the same package again changes nothing.
    func store(package: Package, source: String) async throws {
        let me = self.me
        _ = try await database.withConnection { connection in
            try connection.execute(
                """
                INSERT INTO participant_packages (participant, package_id, source) VALUES ($1, $2, $3)
                ON CONFLICT DO NOTHING
                """, [me, .text(package.id.description), .text(source)])
        }
    }

    // MARK: - Commands

    /// Records a command about to be sent, unless the same change (application, command id and
    /// act-as parties) is in flight, or succeeded and still within its deduplication period at
    /// `now` (`CommandRecord.deduplicates`): then returns what is stored for it (a duplicate),
    /// and records nothing. A record from before the parties were part of the key (an empty
    /// act_as, migration 16) counts as the same change whatever the parties.
    func begin(_ command: SubmittedCommand, now: Int64) async throws -> CommandRecord? {
        let me = self.me
        let insert = """
            INSERT INTO participant_commands (participant, application_id, command_id, act_as, submission_id,
                message_id, root_hash, submitted_at, dedup_until, state, max_sequencing_time, batch)
            SELECT $1::text, $2::text, $3::text, $4::text[], $5::text, $6::text, $7::bytea, $8::int8, $9::int8,
                'in_flight', $10::int8, $11::bytea
            \(Self.noRecordFromBeforeParties)
            ON CONFLICT DO NOTHING RETURNING 1
            """
        let key: [PostgresValue] = [
            me, .text(command.key.applicationID), .text(command.key.commandID), Self.parties(command.key.actAs),
        ]
        let row: [PostgresValue] =
            key + [
                .text(command.submissionID), .text(command.messageID), .bytes(command.rootHash.bytes), .int64(now),
                .int64(now + command.deduplicationPeriodMicros), .int64(command.maxSequencingTime),
                command.batch.map { .bytes($0) } ?? .null,
            ]
        // The usual case, a command id this application has not used for these parties: one
        // statement, no transaction around it (a round trip instead of three).
        let fresh = try await database.withConnection { connection in !(try connection.execute(insert, row).rows.isEmpty) }
        if fresh { return nil }
        // A record exists: a duplicate, or one to replace (rejected, or out of its period).
        return try await database.transaction { connection in
            for existing in try connection.execute(
                """
                SELECT \(Self.recordColumns) FROM participant_commands
                WHERE participant = $1 AND application_id = $2 AND command_id = $3 AND act_as IN ($4, '{}')
                FOR UPDATE
                """, key
            ).rows {
                let record = try Self.record(existing)
                if record.deduplicates(at: now) { return record }
                _ = try connection.execute(
                    """
                    DELETE FROM participant_commands
                    WHERE participant = $1 AND application_id = $2 AND command_id = $3 AND act_as = $4
                    """,
                    [
                        me, .text(command.key.applicationID), .text(command.key.commandID),
                        Self.parties(record.actAs),
                    ])
            }
            // A concurrent submission of the same change inserts first: then this one is its duplicate.
            if !(try connection.execute(insert, row).rows.isEmpty) { return nil }
            return try Self.command(command.key, connection, me)
        }
    }

    /// Commands in flight whose request this participant has not seen sequenced (no row in
    /// participant_requests for its root hash): their message ids, keys, max sequencing times
    /// and requests as sent (nil when not stored). After a crash between recording a command and
    /// sending it, or a send whose outcome is unknown, the restarted node sends the request again
    /// under its message id (the sequencer refuses it as a duplicate if it was sequenced); either
    /// way the command completes with the request's verdict, or once the stream's time passes
    /// its max sequencing time without it.
    func unsequencedCommands() async throws -> [UnsequencedCommand] {
        let me = self.me
        let rows = try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT c.message_id, c.application_id, c.command_id, array_to_string(c.act_as, ','),
                    c.max_sequencing_time, c.batch
                FROM participant_commands c
                WHERE c.participant = $1 AND c.state = 'in_flight' AND c.max_sequencing_time > 0
                    AND NOT EXISTS (
                        SELECT 1 FROM participant_requests r WHERE r.participant = c.participant AND r.root_hash = c.root_hash)
                """, [me]
            ).rows
        }
        return try rows.map { row in
            UnsequencedCommand(
                messageID: try Self.require(row[0].string, "message_id"),
                key: try Self.change(row[1], row[2], row[3]),
                maxSequencingTime: try Self.require(row[4].int64, "max_sequencing_time"),
                batch: try row[5].bytes)
        }
    }

    /// A command in flight whose request was not seen sequenced (`unsequencedCommands`).
    struct UnsequencedCommand: Sendable {
        let messageID: String
        let key: ChangeID
        let maxSequencingTime: Int64
        /// The serialized `weft.v1.Batch` as sent, if stored.
        let batch: [UInt8]?
    }

    /// What is stored for a change, if anything (a record from before migration 16 stands for
    /// its command id whatever the parties).
    func command(_ key: ChangeID) async throws -> CommandRecord? {
        let me = self.me
        return try await database.withConnection { connection in try Self.command(key, connection, me) }
    }

    private static func command(_ key: ChangeID, _ connection: PostgresConnection, _ me: PostgresValue) throws
        -> CommandRecord?
    {
        try connection.execute(
            """
            SELECT \(recordColumns) FROM participant_commands
            WHERE participant = $1 AND application_id = $2 AND command_id = $3 AND act_as IN ($4, '{}')
            ORDER BY cardinality(act_as) DESC LIMIT 1
            """, [me, .text(key.applicationID), .text(key.commandID), parties(key.actAs)]
        ).rows.first.map(record)
    }

    /// A command whose submission the sequencer refused or could not sequence in time; moves
    /// the cursor too when a deliver error event said so (nil: the send itself failed, outside
    /// the event stream, and the cursor is the event processor's alone).
    func failSubmission(messageID: String, reasonID: String, reason: String, cursor: Cursor?) async throws -> ChangeID? {
        let me = self.me
        return try await database.transaction { connection in
            let row = try connection.execute(
                """
                UPDATE participant_commands SET state = 'rejected', reason_id = $3, reason = $4, batch = NULL
                WHERE participant = $1 AND message_id = $2 AND state = 'in_flight'
                RETURNING application_id, command_id, array_to_string(act_as, ',')
                """, [me, .text(messageID), .text(reasonID), .text(reason)]
            ).rows.first
            if let cursor { try Self.move(cursor, connection, me) }
            guard let row else { return nil }
            return try Self.change(row[0], row[1], row[2])
        }
    }

    /// The condition an insert into participant_commands of participant `$1`'s command `$2`/`$3`
    /// adds: no record from before migration 16 (empty act_as) holds that command id, for any
    /// parties.
    static let noRecordFromBeforeParties = """
        WHERE NOT EXISTS (
            SELECT 1 FROM participant_commands
            WHERE participant = $1 AND application_id = $2 AND command_id = $3 AND act_as = '{}')
        """

    /// The columns `record` reads, in its order.
    static let recordColumns = """
        state, dedup_until, transaction_id, ledger_offset, reason_id, reason, submission_id, array_to_string(act_as, ',')
        """

    private static func record(_ row: [PostgresCell]) throws -> CommandRecord {
        let stateText = try require(row[0].string, "state")
        guard let state = CommandRecord.State(rawValue: stateText) else {
            throw ParticipantError.inconsistentStore("a command in state '\(stateText)'")
        }
        return CommandRecord(
            state: state, transactionID: try row[2].string, ledgerOffset: try row[3].int64, reasonID: try row[4].string,
            reason: try row[5].string, submissionID: try require(row[6].string, "submission_id"),
            deduplicateUntil: try require(row[1].int64, "dedup_until"),
            actAs: try parties(row[7].string))
    }

    /// A change id from its application id, command id and act-as parties (comma-separated,
    /// as `array_to_string` gives them; party ids have no comma).
    private static func change(_ application: PostgresCell, _ command: PostgresCell, _ actAs: PostgresCell) throws
        -> ChangeID
    {
        ChangeID(
            CommandKey(
                applicationID: try require(application.string, "application_id"),
                commandID: try require(command.string, "command_id")),
            actAs: try parties(actAs.string))
    }

    /// Parties as a `text[]` parameter.
    static func parties(_ parties: [Party]) -> PostgresValue { .textArray(parties.map(\.id)) }

    // MARK: - Events

    /// What one processed event writes: a validated request, or a verdict applied. The node
    /// queues these and commits consecutive events' writes in one transaction (`write`).
    enum EventWrite: Sendable {
        case register(StoredRequest)
        case decide(Decision)
    }

    /// A verdict applied: the request's outcome, on approval what it commits here, and either
    /// way its command's completion.
    struct Decision: Sendable {
        enum Verdict: Sendable {
            /// Approved, committing the contracts, the transaction and its events here; the
            /// command completes at the commit's offset.
            case committed(Commit)
            /// Approved as transaction `transactionID`, which changes nothing here (no hosted
            /// party sees an event of it): no offset of its own, so the command completes at
            /// `ledgerEnd`, the ledger end before and after it.
            case approvedWithoutCommit(transactionID: String, ledgerEnd: Int64)
            case rejected(reasonID: String, reason: String)
        }
        let timestamp: SequencingTimestamp
        let verdict: Verdict
        /// The request's command, when this participant submitted it: its change id (the
        /// parties it acted as may see its command id) and the submission the verdict completes.
        let command: (change: ChangeID, submissionID: String)?

        /// What `participant_requests.outcome` stores: "approved" or the reason id.
        var outcome: String {
            switch verdict {
            case .committed, .approvedWithoutCommit: "approved"
            case .rejected(let reasonID, _): reasonID
            }
        }

        var commit: Commit? {
            if case .committed(let commit) = verdict { commit } else { nil }
        }
    }

    /// Commits `writes`, the effects of consecutive events in stream order, with `cursor` (past
    /// the last of them, and of any events without effects after it): one transaction, one
    /// round trip. With no writes it only stores the cursor, past events that changed nothing
    /// else, which the node moved past in memory only.
    func write(_ writes: [EventWrite], cursor: Cursor) async throws {
        let me = self.me
        try await database.transaction { connection in
            for write in writes {
                switch write {
                case .register(let request): try Self.register(request, connection, me)
                case .decide(let decision): try Self.decide(decision, connection, me)
                }
            }
            try Self.move(cursor, connection, me)
        }
    }

    /// Records a validated request, its locks and its responses.
    private static func register(_ request: StoredRequest, _ connection: PostgresConnection, _ me: PostgresValue) throws {
        try connection.enqueue(
            """
            INSERT INTO participant_requests (participant, request_ts, root_hash, views, locked, creates,
                application_id, command_id, responses)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            """,
            [
                me, .int64(request.timestamp.microsSinceEpoch), .bytes(request.rootHash.bytes),
                .bytes(LengthPrefixed.encode(request.views)), Self.textArray(request.locked.map(\.description)),
                Self.textArray(request.creates.map(\.description)),
                request.command.map { .text($0.applicationID) } ?? .null,
                request.command.map { .text($0.commandID) } ?? .null,
                .bytes(LengthPrefixed.encode(try request.responses.map { try $0.serializedBytes() })),
            ])
    }

    /// Applies a verdict (see `Decision`).
    private static func decide(_ decision: Decision, _ connection: PostgresConnection, _ me: PostgresValue) throws {
        let (timestamp, outcome, commit, command) = (
            decision.timestamp, decision.outcome, decision.commit, decision.command
        )
        try connection.enqueue(
            "UPDATE participant_requests SET outcome = $3 WHERE participant = $1 AND request_ts = $2",
            [me, .int64(timestamp.microsSinceEpoch), .text(outcome)])
        if let commit {
            try connection.enqueue(
                """
                INSERT INTO participant_transactions (participant, ledger_offset, transaction_id, request_ts, command_id, act_as,
                    commit_ts)
                VALUES ($1, $2, $3, $4, $5, $6::text[], $7)
                """,
                [
                    me, .int64(commit.offset), .text(commit.transactionID), .int64(timestamp.microsSinceEpoch),
                    .text(command?.change.commandID ?? ""), command.map { Self.parties($0.change.actAs) } ?? .null,
                    .int64(commit.commitTime.microsSinceEpoch),
                ])
            // One statement for all the contracts created, whatever their number (arrays and
            // `unnest`), so that it runs prepared; the same for the events below.
            if !commit.created.isEmpty {
                try connection.enqueue(
                    """
                    INSERT INTO participant_contracts (participant, contract_id, template, stakeholders, contract, created_offset)
                    SELECT $1::text, contract_id, template, stakeholders::text[], contract, $2
                    FROM unnest($3::text[], $4::text[], $5::text[], $6::bytea[])
                        AS created (contract_id, template, stakeholders, contract)
                    """,
                    [
                        me, .int64(commit.offset), .textArray(commit.created.map(\.id.description)),
                        .textArray(commit.created.map(\.contract.template.name)),
                        .textArray(commit.created.map { "{" + $0.contract.stakeholders.map(\.id).joined(separator: ",") + "}" }),
                        .bytesArray(commit.created.map(\.wire)),
                    ])
            }
            for archived in commit.archived {
                try connection.enqueue(Self.archiveSQL, [me, .text(archived.description), .int64(commit.offset)])
            }
            try connection.enqueue(
                "INSERT INTO participant_trees (participant, ledger_offset, tree) VALUES ($1, $2, $3)",
                [me, .int64(commit.offset), .bytes(commit.tree)])
            var rows: (index: [Int64?], party: [String?], created: [String?], contract: [String?], event: [String?]) =
                ([], [], [], [], [])
            for (index, event) in commit.events.enumerated() {
                for party in event.parties {
                    rows.index.append(Int64(index))
                    rows.party.append(party.id)
                    rows.created.append(event.created ? "true" : "false")
                    rows.contract.append(event.contractID.description)
                    rows.event.append(event.eventID)
                }
            }
            if !rows.party.isEmpty {
                try connection.enqueue(
                    """
                    INSERT INTO participant_events (participant, ledger_offset, event_index, party, created, contract_id, event_id)
                    SELECT $1::text, $2, event_index, party, created::boolean, contract_id, event_id
                    FROM unnest($3::int8[], $4::text[], $5::text[], $6::text[], $7::text[])
                        AS event (event_index, party, created, contract_id, event_id)
                    """,
                    [
                        me, .int64(commit.offset), .int64Array(rows.index), .textArray(rows.party), .textArray(rows.created),
                        .textArray(rows.contract), .textArray(rows.event),
                    ])
            }
        }
        // An approval completes its command whether or not it commits anything here: a record
        // left `in_flight` would hold its command id for good.
        guard let command else { return }
        let success: (transactionID: String, offset: Int64)
        switch decision.verdict {
        case .committed(let commit): success = (commit.transactionID, commit.offset)
        case .approvedWithoutCommit(let transactionID, let ledgerEnd): success = (transactionID, ledgerEnd)
        case .rejected(let reasonID, let reason):
            try connection.enqueue(
                """
                UPDATE participant_commands SET state = 'rejected', reason_id = $5, reason = $6, batch = NULL
                WHERE participant = $1 AND application_id = $2 AND command_id = $3 AND submission_id = $4
                    AND state = 'in_flight'
                """,
                [
                    me, .text(command.change.applicationID), .text(command.change.commandID),
                    .text(command.submissionID), .text(reasonID), .text(reason),
                ])
            return
        }
        // The deduplication period counts from the completion too (its length is the stored
        // window's): a retry of a command whose verdict came after its period, by an
        // application that gave up waiting, is still its duplicate.
        try connection.enqueue(
            """
            UPDATE participant_commands SET state = 'succeeded', transaction_id = $5, ledger_offset = $6,
                batch = NULL, dedup_until = greatest(dedup_until, $7 + (dedup_until - submitted_at))
            WHERE participant = $1 AND application_id = $2 AND command_id = $3 AND submission_id = $4
                AND state = 'in_flight'
            """,
            [
                me, .text(command.change.applicationID), .text(command.change.commandID),
                .text(command.submissionID), .text(success.transactionID), .int64(success.offset),
                .int64(Int64(Date().timeIntervalSince1970 * 1_000_000)),
            ])
    }

    /// Archives contract `$2` of participant `$1` at offset `$3` (once: an archived contract
    /// keeps its first offset). The row is named by its primary key alone: with
    /// `AND archived_offset IS NULL` in the WHERE clause the planner may take the partial index
    /// of active contracts instead — it does whenever the table's statistics are stale, as
    /// after a burst of creates — and then reads every active contract of the participant per
    /// archive (7 ms each with ~4,500 active contracts in weft-bench's DvP run).
    static let archiveSQL = """
        UPDATE participant_contracts SET archived_offset = coalesce(archived_offset, $3)
        WHERE participant = $1 AND contract_id = $2
        """

    /// What a verdict's approval writes.
    struct Commit: Sendable {
        struct Created: Sendable {
            let id: ContractID
            let contract: ContractInstance
            let wire: [UInt8]
        }
        struct Event: Sendable {
            let created: Bool
            let contractID: ContractID
            let parties: [Party]
            /// The event id of the create or the consuming exercise (`LedgerTree.eventID`).
            var eventID = ""
        }
        let offset: Int64
        let transactionID: String
        /// The sequencing time of the verdict that commits it: when the active contract set
        /// changes, and so what ACS commitments and pruning go by. The transaction's record
        /// time is its request's (`Decision.timestamp`), which may be earlier, and is not in
        /// offset order when verdicts come in another order than their requests.
        let commitTime: SequencingTimestamp
        let created: [Created]
        let archived: [ContractID]
        let events: [Event]
        /// The serialized `weft.v1.TransactionTreeView` holding the tree events hosted parties
        /// witness; empty when the views could not be re-interpreted.
        let tree: [UInt8]
    }

    /// Stores the cursor, only ever forward: a cursor behind the stored one (a write that lost a
    /// race it should not have had) must not make a restart process events twice. A domain
    /// migration, the one move back, resets the row itself.
    static func move(_ cursor: Cursor, _ connection: PostgresConnection, _ me: PostgresValue) throws {
        try connection.enqueue(
            """
            INSERT INTO participant_cursor (participant, next_counter, last_ts) VALUES ($1, $2, $3)
            ON CONFLICT (participant) DO UPDATE SET next_counter = excluded.next_counter, last_ts = excluded.last_ts
            WHERE participant_cursor.next_counter < excluded.next_counter
            """,
            [
                me, .int64(Int64(cursor.nextCounter)), .int64(cursor.lastTimestamp?.microsSinceEpoch ?? 0),
            ])
    }

    // MARK: - Ledger API reads

    /// The outcome of a decided request ("approved" or the reason id); nil while pending or unknown.
    func outcome(ofRequest rootHash: Digest32) async throws -> String? {
        let me = self.me
        return try await database.withConnection { connection in
            try connection.execute(Self.outcomeSQL, [me, .bytes(rootHash.bytes)]).rows.first?.first?.string
        }
    }

    /// Participant `$1`'s pending requests (no outcome yet), read at every start: through the
    /// partial index of pending requests, so that a start reads those few rows and not the
    /// views of every request kept since the last prune.
    static let pendingRequestsSQL = """
        SELECT request_ts, root_hash, locked::text, creates::text, responses, views, application_id, command_id
        FROM participant_requests WHERE participant = $1 AND outcome IS NULL ORDER BY request_ts
        """

    /// The outcome of participant `$1`'s requests with root hash `$2`: "approved" if one was (a
    /// transaction commits once, and a replay of its request, rejected before or after it, does
    /// not undo that), else the latest one's reason.
    static let outcomeSQL = """
        SELECT outcome FROM participant_requests WHERE participant = $1 AND root_hash = $2 AND outcome IS NOT NULL
        ORDER BY outcome = 'approved' DESC, request_ts DESC LIMIT 1
        """

    /// The decrypted view trees of the latest request validated here with root hash
    /// `rootHash`; nil when there is none.
    func views(ofRequest rootHash: Digest32) async throws -> [[UInt8]]? {
        let me = self.me
        let bytes = try await database.withConnection { connection in
            try connection.execute(
                "SELECT views FROM participant_requests WHERE participant = $1 AND root_hash = $2 ORDER BY request_ts DESC LIMIT 1",
                [me, .bytes(rootHash.bytes)]
            ).rows.first?.first?.bytes
        }
        return try bytes.map { try LengthPrefixed.decode($0) }
    }

    /// The active contracts `party` is a stakeholder of, oldest first.
    func activeContracts(of party: Party) async throws -> [ActiveContract] {
        let me = self.me
        return try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT contract, created_offset FROM participant_contracts
                WHERE participant = $1 AND archived_offset IS NULL AND $2 = ANY (stakeholders)
                ORDER BY created_offset, contract_id
                """, [me, .text(party.id)]
            ).rows.map { row in
                let wire = try Weft.V1.ContractInstance(serializedBytes: Self.require(row[0].bytes, "contract"))
                let (id, contract, seed) = try ContractInstance.fromWire(wire)
                return ActiveContract(
                    id: id, contract: contract, createdAt: try Self.require(row[1].int64, "offset"), creationSeed: seed)
            }
        }
    }

    /// `party`'s transactions after `offset` up to `upTo`, at most `limit` of them (each whole),
    /// in order. Fails `offsetPruned` if a prune removed history after `offset`: the page and
    /// the pruned offset are read in one statement, so a prune that commits while the node's
    /// check of its pruned offset (`requireReadable`) and this read are apart cannot make the
    /// page silently shorter.
    func transactions(of party: Party, after offset: Int64, upTo: Int64 = .max, limit: Int = .max) async throws
        -> [LedgerTransaction]
    {
        let me = self.me
        let rows = try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT pruned.pruned_offset, page.* FROM (\(Self.prunedOffsetQuery)) pruned
                LEFT JOIN LATERAL (
                    SELECT t.ledger_offset, t.transaction_id, t.request_ts, t.command_id, e.created, e.contract_id, c.contract,
                        e.event_id, e.event_index, array_to_string(t.act_as, ',')
                    FROM participant_transactions t
                    JOIN participant_events e USING (participant, ledger_offset)
                    JOIN participant_contracts c ON c.participant = e.participant AND c.contract_id = e.contract_id
                    WHERE t.participant = $1 AND e.party = $2 AND t.ledger_offset > $3 AND t.ledger_offset <= $4
                        AND t.ledger_offset <= coalesce((
                            SELECT max(ledger_offset) FROM (
                                SELECT DISTINCT ledger_offset FROM participant_events
                                WHERE participant = $1 AND party = $2 AND ledger_offset > $3 AND ledger_offset <= $4
                                ORDER BY ledger_offset LIMIT $5) last_of_page), $3)
                ) page ON true
                ORDER BY page.ledger_offset, page.event_index
                """, [me, .text(party.id), .int64(offset), .int64(upTo), .int64(Int64(limit))]
            ).rows
        }
        try Self.requireUnpruned(after: offset, firstColumnOf: rows)
        var result: [LedgerTransaction] = []
        for row in rows where !row[1].isNull {
            let offset = try Self.require(row[1].int64, "offset")
            let wire = try Weft.V1.ContractInstance(serializedBytes: Self.require(row[7].bytes, "contract"))
            let (id, contract, _) = try ContractInstance.fromWire(wire)
            let event: LedgerEvent =
                try row[5].bool == true ? .created(id, contract) : .archived(id, template: contract.template)
            if result.last?.offset != offset {
                result.append(
                    LedgerTransaction(
                        offset: offset, transactionID: try Self.require(row[2].string, "transaction_id"),
                        recordTime: SequencingTimestamp(microsSinceEpoch: try Self.require(row[3].int64, "request_ts")),
                        commandID: try row[4].string ?? "", events: [], actAs: try Self.parties(row[10].string)))
            }
            result[result.count - 1].events.append(event)
            result[result.count - 1].eventIDs.append(try row[8].string ?? "")
        }
        return result
    }

    /// A one-row subquery of this participant's (`$1`) pruned offset, 0 if it never pruned.
    static let prunedOffsetQuery =
        "SELECT coalesce((SELECT pruned_offset FROM participant_pruning WHERE participant = $1), 0) AS pruned_offset"

    /// Refuses a page read after `offset` whose statement saw the ledger pruned past it (the
    /// pruned offset is the first column of every row; the statement returns at least one,
    /// with the page's columns NULL when the page is empty).
    static func requireUnpruned(after offset: Int64, firstColumnOf rows: [[PostgresCell]]) throws {
        let pruned = try require(rows.first?[0].int64, "pruned_offset")
        guard offset >= pruned else { throw ParticipantError.offsetPruned(requested: offset, earliestReadable: pruned + 1) }
    }

    /// The transaction trees after offset `after` up to `upTo`, at most `limit`, in order;
    /// `offsetPruned` as `transactions(of:after:upTo:limit:)`.
    func trees(after offset: Int64, upTo: Int64, limit: Int) async throws -> [LedgerTransactionTree] {
        let me = self.me
        let rows = try await database.withConnection { connection in
            try connection.execute(
                """
                SELECT pruned.pruned_offset, page.* FROM (\(Self.prunedOffsetQuery)) pruned
                LEFT JOIN LATERAL (
                    SELECT t.ledger_offset, t.transaction_id, t.request_ts, t.command_id, r.tree, array_to_string(t.act_as, ',')
                    FROM participant_transactions t
                    JOIN participant_trees r USING (participant, ledger_offset)
                    WHERE t.participant = $1 AND t.ledger_offset > $2 AND t.ledger_offset <= $3
                    ORDER BY t.ledger_offset
                    LIMIT $4
                ) page ON true
                ORDER BY page.ledger_offset
                """, [me, .int64(offset), .int64(upTo), .int64(Int64(limit))]
            ).rows
        }
        try Self.requireUnpruned(after: offset, firstColumnOf: rows)
        return try rows.filter { !$0[1].isNull }.map { row in
            let bytes = try Self.require(row[5].bytes, "tree")
            let tree = bytes.isEmpty ? Weft.V1.TransactionTreeView() : try Weft.V1.TransactionTreeView(serializedBytes: bytes)
            return LedgerTransactionTree(
                offset: try Self.require(row[1].int64, "offset"),
                transactionID: try Self.require(row[2].string, "transaction_id"),
                recordTime: SequencingTimestamp(microsSinceEpoch: try Self.require(row[3].int64, "request_ts")),
                commandID: try row[4].string ?? "", events: tree.events, actAs: try Self.parties(row[6].string))
        }
    }

    // MARK: - Helpers

    /// Party ids stored comma-separated (`array_to_string`; party ids have no commas); none for NULL.
    static func parties(_ text: String?) throws -> [Party] {
        guard let text, !text.isEmpty else { return [] }
        return try text.split(separator: ",").map { try Party(String($0)) }
    }

    static func require<T>(_ value: T?, _ what: String) throws -> T {
        guard let value else { throw ParticipantError.inconsistentStore("\(what) is NULL") }
        return value
    }

    /// A PostgreSQL array literal of ids (contract ids are hex, party ids letters, digits and
    /// `: _ - .`, so no element needs quoting).
    static func textArray(_ items: [String]) -> PostgresValue {
        .text("{" + items.joined(separator: ",") + "}")
    }

    static func contractIDs(_ literal: String?) throws -> [ContractID] {
        guard let literal, literal.hasPrefix("{"), literal.hasSuffix("}") else {
            throw ParticipantError.inconsistentStore("a contract id array is NULL or malformed")
        }
        let body = literal.dropFirst().dropLast()
        if body.isEmpty { return [] }
        return try body.split(separator: ",").map { text in
            guard let id = ContractID(hex: String(text)) else {
                throw ParticipantError.inconsistentStore("'\(text)' is not a contract id")
            }
            return id
        }
    }
}

/// `u32be(count)` then `u32be(length) bytes` per item: a list of byte strings in one column.
enum LengthPrefixed {
    static func encode(_ items: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ value: Int) {
            let v = UInt32(value)
            out += [
                UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8),
                UInt8(truncatingIfNeeded: v),
            ]
        }
        u32(items.count)
        for item in items {
            u32(item.count)
            out += item
        }
        return out
    }

    static func decode(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var at = 0
        func u32() throws -> Int {
            guard at + 4 <= bytes.count else { throw ParticipantError.inconsistentStore("a truncated byte list") }
            defer { at += 4 }
            return Int(bytes[at]) << 24 | Int(bytes[at + 1]) << 16 | Int(bytes[at + 2]) << 8 | Int(bytes[at + 3])
        }
        let count = try u32()
        var items: [[UInt8]] = []
        for _ in 0..<count {
            let length = try u32()
            guard at + length <= bytes.count else { throw ParticipantError.inconsistentStore("a truncated byte list") }
            items.append(Array(bytes[at..<at + length]))
            at += length
        }
        guard at == bytes.count else { throw ParticipantError.inconsistentStore("trailing bytes in a byte list") }
        return items
    }
}
