import Testing
import WeftContracts
import WeftCrypto
import WeftStore
import WeftTestSupport
import WeftTopology
@testable import WeftParticipant

/// The participant's command records: deduplication per change id (application, command id
/// and act-as parties), and the records kept from before the parties were part of the key.
@Suite struct CommandStoreTests {
    static let application = "app"
    static let minute: Int64 = 60_000_000

    static func submitted(_ commandID: String, _ actAs: [Party], submission: String) -> SubmittedCommand {
        SubmittedCommand(
            key: ChangeID(CommandKey(applicationID: application, commandID: commandID), actAs: actAs),
            submissionID: submission, messageID: "request-\(submission)", rootHash: Digest32([UInt8](repeating: UInt8(submission.utf8.count), count: 32))!,
            deduplicationPeriodMicros: 10 * minute, maxSequencingTime: 0)
    }

    /// A participant's id, and a connection to the database at `url` with the participant's
    /// schema as it was before migration `version`.
    static func schema(before version: Int, _ url: String) throws -> (UniqueIdentifier, PostgresConnection) {
        let participant = try UniqueIdentifier(
            name: "participant1", namespace: try SigningPrivateKey.generate().publicKey.fingerprint)
        let connection = try PostgresConnection(url: url)
        _ = try Migrator(
            component: ParticipantStore.migrator.component,
            migrations: ParticipantStore.migrator.migrations.filter { $0.version < version }
        ).migrate(connection)
        return (participant, connection)
    }

    @Test("participant migration 16 keeps the commands recorded before it; each deduplicates its command id for any parties until its period ends")
    func commandsRecordedBeforeTheMigration() async throws {
        try await PostgresFixture.withFixture { fixture in
            // The schema as it was before migration 16, with a command that succeeded in it.
            let (participant, connection) = try Self.schema(before: 16, fixture.url)
            let now: Int64 = 1_800_000_000_000_000
            _ = try connection.execute(
                """
                INSERT INTO participant_commands (participant, application_id, command_id, submission_id, message_id,
                    root_hash, submitted_at, dedup_until, state, transaction_id, ledger_offset)
                VALUES ($1, $2, 'old', 'old-submission', 'request-old-submission', '\\x00', $3, $4, 'succeeded', 'old-tx', 7)
                """, [.text(participant.description), .text(Self.application), .int64(now), .int64(now + 10 * Self.minute)])
            #expect(try ParticipantStore.migrator.migrate(connection).starts(with: [16, 17, 18]))

            let database = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            let store = ParticipantStore(database: database, participant: participant)
            let (alice, bob) = (try Party("alice::1220aa"), try Party("bob::1220bb"))
            // Found for any parties, with none of its own.
            let old = try #require(
                try await store.command(ChangeID(CommandKey(applicationID: Self.application, commandID: "old"), actAs: [alice])))
            #expect(old.transactionID == "old-tx" && old.actAs.isEmpty)
            // Within its period it refuses the command id whatever the parties, and records nothing.
            let refused = try await store.begin(Self.submitted("old", [bob], submission: "s1"), now: now + Self.minute)
            #expect(refused?.transactionID == "old-tx")
            // Once its period ended a new submission replaces it; then the id is per parties.
            #expect(try await store.begin(Self.submitted("old", [alice], submission: "s2"), now: now + 11 * Self.minute) == nil)
            #expect(try await store.begin(Self.submitted("old", [bob], submission: "s3"), now: now + 11 * Self.minute) == nil)
            let again = try await store.begin(Self.submitted("old", [alice], submission: "s4"), now: now + 12 * Self.minute)
            #expect(again?.submissionID == "s2" && again?.actAs == [alice])
            let rows = try connection.execute(
                """
                SELECT array_to_string(act_as, ','), submission_id FROM participant_commands
                WHERE application_id = $1 AND command_id = 'old' ORDER BY submission_id
                """, [.text(Self.application)]
            ).rows.map { [try $0[0].string ?? "", try $0[1].string ?? ""] }
            #expect(rows == [[alice.id, "s2"], [bob.id, "s3"]])
            await database.shutdown()
        }
    }

    /// An approval that commits nothing here (no hosted party sees an event of it) still
    /// completes its command: left `in_flight`, the record would refuse its command id for good
    /// after a restart, while the submitter's application was told it succeeded.
    @Test func anApprovalWithNothingToCommitCompletesItsCommand() async throws {
        try await PostgresFixture.withFixture { fixture in
            let participant = try UniqueIdentifier(
                name: "participant1", namespace: try SigningPrivateKey.generate().publicKey.fingerprint)
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            let store = ParticipantStore(database: database, participant: participant)
            _ = try await store.migrate()
            let alice = try Party("alice::1220aa")
            let now: Int64 = 1_800_000_000_000_000
            for (commandID, submission) in [("approved", "s1"), ("rejected", "s2")] {
                #expect(try await store.begin(Self.submitted(commandID, [alice], submission: submission), now: now) == nil)
            }
            func change(_ commandID: String) -> ChangeID {
                ChangeID(CommandKey(applicationID: Self.application, commandID: commandID), actAs: [alice])
            }
            try await store.write(
                [
                    .decide(
                        .init(
                            timestamp: SequencingTimestamp(microsSinceEpoch: now + 1),
                            verdict: .approvedWithoutCommit(transactionID: "tx-without-events", ledgerEnd: 3),
                            command: (change("approved"), "s1"))),
                    .decide(
                        .init(
                            timestamp: SequencingTimestamp(microsSinceEpoch: now + 2),
                            verdict: .rejected(reasonID: "SOME_REASON", reason: "because"),
                            command: (change("rejected"), "s2"))),
                ],
                cursor: .init(nextCounter: 5, lastTimestamp: SequencingTimestamp(microsSinceEpoch: now + 2)))
            let approved = try #require(try await store.command(change("approved")))
            #expect(approved.state == .succeeded)
            #expect(approved.transactionID == "tx-without-events" && approved.ledgerOffset == 3)
            let rejected = try #require(try await store.command(change("rejected")))
            #expect(rejected.state == .rejected && rejected.reasonID == "SOME_REASON" && rejected.reason == "because")
            await database.shutdown()
        }
    }

    /// Participant migration 17 completes the commands an approval left `in_flight` because it
    /// committed nothing here (the versions before stored no completion then), at the ledger end
    /// of their request; a command whose request is pending or rejected stays as it is.
    @Test func migration17CompletesCommandsApprovedWithoutACommit() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (participant, connection) = try Self.schema(before: 17, fixture.url)
            let me = PostgresValue.text(participant.description)
            let alice = try Party("alice::1220aa")
            let now: Int64 = 1_800_000_000_000_000
            // Three commands in flight: one whose request was approved without a commit (after
            // the transaction at offset 2, before the one at 3), one whose request is pending,
            // and one whose request was rejected (not completed here: left to the node).
            for (index, (commandID, outcome)) in [("approved", "approved"), ("pending", nil), ("rejected", "SOME_REASON")]
                .enumerated()
            {
                let rootHash = PostgresValue.bytes([UInt8](repeating: UInt8(index + 1), count: 32))
                _ = try connection.execute(
                    """
                    INSERT INTO participant_commands (participant, application_id, command_id, submission_id, message_id,
                        root_hash, submitted_at, dedup_until, state, act_as)
                    VALUES ($1, $2, $3, $3, 'request-' || $3, $4, $5, $6, 'in_flight', $7::text[])
                    """,
                    [me, .text(Self.application), .text(commandID), rootHash, .int64(now), .int64(now + Self.minute),
                     .textArray([alice.id])])
                _ = try connection.execute(
                    """
                    INSERT INTO participant_requests (participant, request_ts, root_hash, views, locked, creates, responses, outcome)
                    VALUES ($1, $2, $3, '\\x', '{}', '{}', '\\x', $4)
                    """, [me, .int64(now + 10 + Int64(index)), rootHash, outcome.map { .text($0) } ?? .null])
            }
            _ = try connection.execute(
                "INSERT INTO participant_transactions (participant, ledger_offset, transaction_id, request_ts) VALUES ($1, 2, 'earlier', $2)",
                [me, .int64(now + 1)])
            _ = try connection.execute(
                "INSERT INTO participant_transactions (participant, ledger_offset, transaction_id, request_ts) VALUES ($1, 3, 'later', $2)",
                [me, .int64(now + 20)])
            #expect(try ParticipantStore.migrator.migrate(connection).starts(with: [17, 18]))

            let database = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            let store = ParticipantStore(database: database, participant: participant)
            func record(_ commandID: String) async throws -> CommandRecord {
                try #require(
                    try await store.command(
                        ChangeID(CommandKey(applicationID: Self.application, commandID: commandID), actAs: [alice])))
            }
            let approved = try await record("approved")
            #expect(approved.state == .succeeded && approved.ledgerOffset == 2)
            #expect(approved.transactionID == String(repeating: "01", count: 32))
            #expect(try await record("pending").state == .inFlight)
            #expect(try await record("rejected").state == .inFlight)
            await database.shutdown()
        }
    }
}
