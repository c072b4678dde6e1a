import Foundation
import Testing
import WeftContracts
@_spi(Testing) import WeftParticipant
import WeftStore
import WeftTestSupport

/// The participant's write-behind (ParticipantNode+WriteBehind.swift): events are processed
/// while an earlier event's write is still on its way, the writes queued meanwhile commit
/// together, and nothing that depends on a write leaves the participant before it commits.
extension OnASecondRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct WriteBehindTests {
        @Test func eventsBehindABlockedWriteAreProcessedCommittedTogetherAndAnsweredOnlyOnceStored() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2, alice, bob, bank) = (domain.p1, domain.p2, domain.alice, domain.bob, domain.bank)
                // No commitment period ends during the test: its write would wait for the
                // blocked one, and processing with it.
                try await domain.setDomainParameters(
                    TestDomain.parameters(reconciliationIntervalMicros: 10 * 365 * 86_400_000_000), serial: 2)
                var issued: [ContractID] = []
                for number in 0..<3 {
                    issued.append(try await domain.issued("\(number + 1)", to: alice, command: "issue-\(number)"))
                }
                let ious = issued
                let participant2 = PostgresValue.text(domain.members[1].id.description)
                let probe = try PostgresConnection(url: fixture.url)
                let lastRequest = try #require(
                    try probe.execute(
                        "SELECT max(request_ts) FROM participant_requests WHERE participant = $1", [participant2]
                    ).rows.first?.first?.int64)
                let responses = "SELECT count(*) FROM mediator_responses WHERE party = $1"
                let before = (
                    alice: try #require(try probe.execute(responses, [.text(alice.id)]).rows.first?.first?.int64),
                    bank: try #require(try probe.execute(responses, [.text(bank.id)]).rows.first?.first?.int64)
                )

                // Which transaction inserted each request (its rows' xmin changes with the
                // updates that decide it).
                try probe.executeScript(
                    """
                    CREATE TABLE test_request_inserts (participant text, request_ts bigint, xact text);
                    CREATE FUNCTION test_note_request_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
                        INSERT INTO test_request_inserts VALUES (NEW.participant, NEW.request_ts, pg_current_xact_id()::text);
                        RETURN NULL;
                    END $$;
                    CREATE TRIGGER test_note_request_insert AFTER INSERT ON participant_requests
                        FOR EACH ROW EXECUTE FUNCTION test_note_request_insert();
                    """)

                // participant2's next write waits for this lock on its cursor row.
                let blocker = try PostgresConnection(url: fixture.url)
                _ = try blocker.execute("BEGIN")
                _ = try blocker.execute(
                    "SELECT 1 FROM participant_cursor WHERE participant = $1 FOR UPDATE", [participant2])
                let progress = await p2.progressEvents()
                let transfers = Task {
                    try await withThrowingTaskGroup(of: Completion.self) { group in
                        for (number, iou) in ious.enumerated() {
                            group.addTask {
                                try await p1.submit(
                                    [try domain.transfer(iou, to: bob)], actAs: [alice],
                                    command: CommandKey(applicationID: "alice-app", commandID: "transfer-\(number)"))
                            }
                        }
                        return try await group.reduce(into: []) { $0.append($1) }
                    }
                }
                // All three requests validated (their inputs locked) with the first one's write
                // blocked: processing did not wait for it.
                let allLocked = try await ParticipantNode.within(.seconds(30)) {
                    if await p2.lockedContracts.count == 3 { return true }
                    for await _ in progress {
                        if await p2.lockedContracts.count == 3 { return true }
                    }
                    return false
                }
                #expect(allLocked == true, "participant2 did not validate the requests behind its blocked write")
                #expect(Set(await p2.lockedContracts.keys) == Set(ious))
                // Its responses wait for the write: once the mediator has counted alice's three
                // (participant1's, not blocked), it still has none of the bank's. (Polled: nothing
                // tells the test when the mediator has stored a response.)
                let url = fixture.url
                try await eventually("the mediator counted alice's responses") {
                    try PostgresConnection(url: url).execute(responses, [.text(alice.id)]).rows.first?.first?.int64
                        == before.alice + 3
                }
                #expect(try probe.execute(responses, [.text(bank.id)]).rows.first?.first?.int64 == before.bank)

                _ = try blocker.execute("COMMIT")
                let completions = try await transfers.value
                #expect(completions.count == 3)
                for completion in completions {
                    guard case .succeeded = completion else {
                        Issue.record("a transfer did not commit: \(completion)")
                        continue
                    }
                }
                let committed: Void? = try await ParticipantNode.within(.seconds(30)) { try await p2.waitForLedgerEnd(6) }
                #expect(committed != nil, "participant2 did not commit the three transfers")
                #expect(Set(try await p2.activeContracts(of: bob).map(\.id)).count == 3)
                // The writes queued behind the blocked one committed in one transaction: the
                // first request's write went alone, or, if a write of the cursor alone was the
                // one blocked, none did.
                let rows = try probe.execute(
                    """
                    SELECT count(*), count(DISTINCT xact) FROM test_request_inserts
                    WHERE participant = $1 AND request_ts > $2
                    """, [participant2, .int64(lastRequest)]
                ).rows
                #expect(try rows.first?[0].int64 == 3)
                let transactions = try #require(try rows.first?[1].int64)
                #expect(transactions == 1 || transactions == 2, "\(transactions) transactions for 3 requests")
            }
        }
    }
}
