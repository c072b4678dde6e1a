import Foundation
import Testing
import WeftContracts
import WeftCrypto
@_spi(Testing) @testable import WeftParticipant
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTopology

/// Issue 10's participant pruning (docs/participant.md, "Pruning"), on one domain for all its
/// assertions: pruning at the commitment safe point removes the history and keeps the ACS;
/// past the safe point it is refused, naming the point, unless explicitly overridden.
extension OnAThirdRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct PruningTests {
        @Test func pruningStopsAtTheCommitmentSafePointUnlessOverridden() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url, extraParties: [("depository", 2)])
                let p1 = domain.p1
                let (p2, p3) = (domain.p2, domain.p3)
                let depository = try #require(domain.extraParties["depository"])
                let alice = domain.alice
                let p1ID = domain.members[0].id.description
                try await domain.setDomainParameters(
                    TestDomain.parameters(reconciliationIntervalMicros: OnASecondRealDomain.CommitmentTests.intervalMicros), serial: 2)

                // History: two IOUs to alice, one transferred to bob (its contract is archived at participant1).
                _ = try await domain.issued("100.00", to: alice, command: "iou-1")
                let moved = try await domain.issued("250.00", to: alice, command: "iou-2")
                let transfer = try await p1.submit(
                    [try domain.transfer(moved, to: domain.bob)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "transfer-1"))
                guard case .succeeded = transfer else {
                    Issue.record("the transfer failed: \(transfer)")
                    return
                }
                let runEnd = try await StoredSequencerEvent.lastTimestamp(url: fixture.url)
                try await eventually("participant1's safe point passes the run") {
                    (try await p1.pruningSafePoint().safePointMicros ?? 0) > runEnd
                }
                let safe = try await p1.pruningSafePoint()
                let end = await p1.ledgerEndOffset
                #expect(safe.safeOffset == end && safe.prunedOffset == 0)
                let acsBefore = try await p1.activeContracts(of: alice).map(\.id)
                #expect(try await p1.transactions(of: alice).count == Int(end))

                // Bad input: offsets outside the ledger are refused typed, nothing is pruned.
                for offset in [0, end + 5] {
                    await #expect(throws: ParticipantError.pruneOffsetOutOfRange(offset: offset, ledgerEnd: end)) {
                        _ = try await p1.prune(upTo: offset)
                    }
                }
                #expect(try await p1.transactions(of: alice).count == Int(end))

                // Pruning at the safe point: history gone, reads below it typed, the ACS intact.
                let pruned = try await p1.prune(upTo: end)
                #expect(!pruned.forced && pruned.unconfirmed.isEmpty && pruned.prunedOffset == end)
                #expect(pruned.counts.transactions == Int(end) && pruned.counts.archivedContracts == 1)
                // With no transaction left, the active contracts are still valid at the ledger end
                // (from which a stream may begin), not at 0 (from which none may).
                #expect(try await p1.activeContracts(of: [alice]).offset == end)
                // The requests decided up to then went (all of them: none was pending).
                #expect(pruned.counts.requests == Int(end), "\(pruned.counts.requests) requests pruned")
                let left = try await StoredSequencerEvent.query(fixture.url) { connection in
                    try connection.execute(
                        "SELECT count(*) FROM participant_requests WHERE participant = $1 AND request_ts <= $2",
                        [.text(p1ID), .int64(pruned.recordTimeMicros)]
                    ).rows[0][0].int64
                }
                #expect(left == 0)
                // participant1 acknowledged its sequencer events up to the pruned offset's time.
                #expect(pruned.acknowledged)
                let acknowledged = try await StoredSequencerEvent.query(fixture.url) { connection in
                    try connection.execute(
                        "SELECT acknowledged_ts FROM sequencer_members WHERE member = $1",
                        [.text(domain.members[0].member.description)]
                    ).rows.first?[0].int64
                }
                #expect(acknowledged == pruned.recordTimeMicros)
                await #expect(throws: ParticipantError.offsetPruned(requested: 0, earliestReadable: end + 1)) {
                    _ = try await p1.transactions(of: alice)
                }
                await #expect(throws: ParticipantError.offsetPruned(requested: 0, earliestReadable: end + 1)) {
                    _ = try await p1.transactionTrees(after: 0, upTo: end)
                }
                #expect(try await p1.transactions(of: alice, after: end).isEmpty)
                #expect(try await p1.activeContracts(of: alice).map(\.id) == acsBefore)
                #expect(try await rows("participant_contracts", of: p1ID, fixture.url) == Int64(acsBefore.count))
                #expect(try await rows("participant_transactions", of: p1ID, fixture.url) == 0)

                // New transactions commit after it, at the next offset, and commitments still match.
                _ = try await domain.issued("30.00", to: alice, command: "iou-3")
                let after = try await p1.transactions(of: alice, after: end)
                #expect(after.map(\.offset) == [end + 1])
                let secondEnd = try await StoredSequencerEvent.lastTimestamp(url: fixture.url)
                let commitments = CommitmentStore(database: p1.store.database, participant: p1ID)
                try await eventually("participant1's safe point passes the new transaction") {
                    (try await commitments.safePoint().safePoint ?? 0) > secondEnd
                }
                #expect(try await commitments.mismatches().isEmpty)

                // participant2 (the bank's) stops: participant1's commitments to it stay unmatched.
                let p2ID = domain.members[1].id.description
                await p2.stop()
                try await eventually("participant1 has an unmatched commitment to participant2") {
                    try await StoredSequencerEvent.query(fixture.url) { connection in
                        try connection.execute(
                            """
                            SELECT count(*)::bigint FROM participant_sent_commitments
                            WHERE participant = $1 AND counter_participant = $2 AND NOT matched
                            """, [.text(p1ID), .text(p2ID)]
                        ).rows.first?[0].int64 ?? 0
                    } > 0
                }
                // A transaction between participant3 and participant1 after that: its offset is
                // past the safe point.
                let source = try exampleSource("dvp.weft")
                for node in [p1, p3] { try await node.upload(packageSource: source, file: "dvp.weft") }
                _ = try await domain.created(
                    in: try Package(source: source, file: "dvp.weft"), "Cash",
                    ["bank": .party(depository), "owner": .party(alice), "amount": .decimal(FixedDecimal("5")!)],
                    by: depository, on: p3, seenBy: [p1])
                let last = await p1.ledgerEndOffset
                #expect(last == end + 2)
                let stuck = try await p1.pruningSafePoint()
                do {
                    _ = try await p1.prune(upTo: last)
                    Issue.record("a prune past the safe point was not refused")
                } catch ParticipantError.pruneBeyondSafePoint(let offset, let recordTime, let safePoint, let safeOffset) {
                    #expect(offset == last && safePoint == stuck.safePointMicros && safeOffset == stuck.safeOffset)
                    #expect(recordTime > (safePoint ?? 0))
                }
                #expect(try await p1.transactions(of: alice, after: end).count == 2, "a refused prune removes nothing")

                // A prune that commits between a read's check of the node's pruned offset and its
                // page read (here the store's prune alone: the node's pruned offset has not moved
                // yet) fails the read typed rather than leaving a hole in the page.
                let middle = end + 1
                let middleTime = try #require(try await p1.store.recordTime(ofOffset: middle))
                _ = try await p1.store.prune(upTo: middle, recordTime: middleTime, forced: true)
                await #expect(throws: ParticipantError.offsetPruned(requested: end, earliestReadable: middle + 1)) {
                    _ = try await p1.transactions(of: alice, after: end)
                }
                await #expect(throws: ParticipantError.offsetPruned(requested: end, earliestReadable: middle + 1)) {
                    _ = try await p1.transactionTrees(after: end, upTo: last)
                }
                #expect(try await p1.transactions(of: alice, after: middle).map(\.offset) == [last])
                #expect(try await p1.transactionTrees(after: middle, upTo: last).map(\.offset) == [last])

                // The override prunes, says what it gives up, and is recorded.
                let forced = try await p1.prune(upTo: last, ignoreCommitments: true)
                #expect(forced.forced && forced.prunedOffset == last)
                #expect(forced.unconfirmed.map(\.counterParticipant).contains(p2ID))
                let recorded = try await StoredSequencerEvent.query(fixture.url) { connection in
                    try connection.execute(
                        "SELECT pruned_offset, forced FROM participant_pruning WHERE participant = $1", [.text(p1ID)]
                    ).rows.first
                }
                #expect(try recorded?[0].int64 == last && recorded?[1].bool == true)

                // The pruned offset survives a restart: the ledger end stays, reads below it stay refused.
                let restarted = try await domain.restart(0)
                #expect(await restarted.ledgerEndOffset == last)
                await #expect(throws: ParticipantError.offsetPruned(requested: end, earliestReadable: last + 1)) {
                    _ = try await restarted.transactions(of: alice, after: end)
                }
                #expect(try await restarted.activeContracts(of: alice).count == acsBefore.count + 2)
                for node in [restarted, p3] { await node.stop() }
                await domain.stop()
            }
        }

        /// How many rows of participant `participant` `table` holds.
        private func rows(_ table: String, of participant: String, _ url: String) async throws -> Int64 {
            try await StoredSequencerEvent.query(url) { connection in
                try connection.execute("SELECT count(*)::bigint FROM \(table) WHERE participant = $1", [.text(participant)])
                    .rows.first?[0].int64 ?? -1
            }
        }
    }
}
