import Testing
import WeftContracts
import WeftCrypto
import WeftStore
import WeftTestSupport
import WeftTopology
@testable import WeftParticipant

/// Migration 14 moves each decided request's outcome out of the request's row into a table of
/// its own: a store migrated before keeps every outcome, and its pending requests stay pending.
@Suite struct OutcomeMigrationTests {
    @Test func outcomesRecordedBeforeTheMigrationAreKeptAndPendingRequestsStayPending() async throws {
        try await PostgresFixture.withFixture { fixture in
            let participant = try UniqueIdentifier(
                name: "participant1", namespace: try SigningPrivateKey.generate().publicKey.fingerprint)
            let other = try UniqueIdentifier(
                name: "participant2", namespace: try SigningPrivateKey.generate().publicKey.fingerprint)
            let connection = try PostgresConnection(url: fixture.url)
            let before = Migrator(component: "participant", migrations: ParticipantStore.migrations.filter { $0.version < 14 })
            #expect(try before.migrate(connection).last == 13)
            // Three requests of this participant (decided, rejected, pending) and a pending one of
            // another participant sharing the database.
            for (owner, ts, outcome) in [
                (participant, 10, "'approved'"), (participant, 20, "'TIMEOUT'"), (participant, 30, "NULL"), (other, 15, "NULL"),
            ] {
                _ = try connection.execute(
                    """
                    INSERT INTO participant_requests (participant, request_ts, root_hash, views, locked, creates, responses, outcome)
                    VALUES ($1, $2, decode(md5($2::text) || md5($2::text), 'hex'), '\\x00', '{}', '{}', '\\x00', \(outcome))
                    """, [.text(owner.description), .int64(Int64(ts))])
            }

            let store = ParticipantStore(database: PostgresDatabase(url: fixture.url, maximumConnections: 1), participant: participant)
            try await store.migrate()
            let columns = try connection.execute(
                "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'participant_requests'"
            ).rows.map { try $0[0].string ?? "" }
            #expect(!columns.contains("outcome") && columns.contains("views"), "\(columns)")
            let outcomes = try connection.execute(
                "SELECT participant, request_ts, outcome FROM participant_request_outcomes ORDER BY request_ts"
            ).rows.map { "\(try $0[0].string ?? "") \(try $0[1].int64 ?? -1) \(try $0[2].string ?? "")" }
            #expect(outcomes == ["\(participant) 10 approved", "\(participant) 20 TIMEOUT"])

            for (id, expected) in [(participant, [30]), (other, [15])] {
                let pending = try connection.execute(
                    ParticipantStore.pendingRequestTimesSQL, [.text(id.description)]
                ).rows.map { try $0[0].int64 ?? -1 }
                #expect(pending == expected.map(Int64.init), "\(id)")
            }
            for (ts, expected): (Int64, String?) in [(10, "approved"), (20, "TIMEOUT"), (30, nil)] {
                let rootHash = try #require(
                    try connection.execute("SELECT decode(md5($1::text) || md5($1::text), 'hex')", [.int64(ts)]).rows.first?.first?.bytes)
                #expect(try await store.outcome(ofRequest: try #require(Digest32(rootHash))) == expected, "request at \(ts)")
            }
            await store.database.shutdown()
        }
    }
}
