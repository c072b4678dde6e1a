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
/// past the safe point it is refused, naming the point, unless explicitly overridden. The
/// safe point is compared with when each offset was committed (its verdict), not requested.
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
                } catch ParticipantError.pruneBeyondSafePoint(let offset, let commitTime, let safePoint, let safeOffset) {
                    #expect(offset == last && safePoint == stuck.safePointMicros && safeOffset == stuck.safeOffset)
                    #expect(commitTime > (safePoint ?? 0))
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

        /// A transaction changes the active contract set, which commitments hash, when its verdict
        /// is sequenced, and offsets follow verdicts: a request sequenced before the safe point
        /// but decided after it is not confirmed yet, so its offset is neither the safe offset nor
        /// prunable without the override, although its record time (the request's) is before
        /// the safe point.
        @Test func aTransactionRequestedBeforeTheSafePointButDecidedAfterItIsNotPrunedWithoutTheOverride() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2, alice, bob) = (domain.p1, domain.p2, domain.alice, domain.bob)
                let url = fixture.url
                try await domain.setDomainParameters(
                    TestDomain.parameters(reconciliationIntervalMicros: OnASecondRealDomain.CommitmentTests.intervalMicros), serial: 2)
                // Two IOUs from the bank (participant2) to alice (participant1). One stays with
                // alice, so participant1 sends participant2 a commitment every period throughout.
                _ = try await domain.issued("10.00", to: alice, command: "iou-kept")
                let moved = try await domain.issued("20.00", to: alice, command: "iou-moved")
                let issuedOffset = await p1.ledgerEndOffset

                // The mediator is down: alice's transfer of the other IOU to bob is sequenced and
                // both participants confirm it, but nothing decides it yet.
                await domain.mediator.stop()
                let prepared = try await p1.prepare(
                    [try domain.transfer(moved, to: bob)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "transfer-late-verdict"))
                let submission = Task { try await p1.submit(prepared) }
                await p1.awaitPending(prepared.rootHash)
                let requestTime = try #require(await p1.lockedContracts[moved]).microsSinceEpoch
                try await eventually("both participants' responses are sequenced") {
                    let responses = try await StoredSequencerEvent.query(url) { connection in
                        try connection.execute(
                            "SELECT count(*)::bigint FROM sequencer_events WHERE message_id = $1",
                            [.text("response-\(requestTime)")]
                        ).rows.first?[0].int64 ?? 0
                    }
                    return responses == 2
                }
                // Neither participant has applied the transfer: their commitments match for
                // periods after the request.
                try await eventually("participant1's safe point passes the request") {
                    (try await p1.pruningSafePoint().safePointMicros ?? 0) > requestTime
                }
                // participant2 stops before the verdict is sequenced: none of participant1's
                // commitments for a period from then on is matched, so its safe point stays before
                // the verdict.
                await p2.stop()
                try await domain.mediator.start()
                let completed = try await ParticipantNode.within(.seconds(30)) {
                    try await withTaskCancellationHandler { try await submission.value } onCancel: { submission.cancel() }
                }
                guard case .succeeded(_, let offset)? = completed else {
                    Issue.record("the transfer did not commit after the mediator came back: \(String(describing: completed))")
                    await domain.stop()
                    return
                }
                #expect(offset == issuedOffset + 1)
                let verdictID = "verdict-\(requestTime)-\(prepared.rootHash.description.prefix(16))"
                let verdict = try await StoredSequencerEvent.query(url) { connection in
                    try connection.execute(
                        "SELECT min(ts)::bigint FROM sequencer_events WHERE message_id = $1", [.text(verdictID)]
                    ).rows.first?[0].int64
                }
                let verdictTime = try #require(verdict, "no verdict \(verdictID) was sequenced")

                // The ledger dates the transaction by its request (its record time); the safe point
                // lies between that and the verdict.
                let transaction = try #require(try await p1.transactions(of: alice, after: issuedOffset).first)
                #expect(transaction.offset == offset && transaction.recordTime.microsSinceEpoch == requestTime)
                let safe = try await p1.pruningSafePoint()
                let safePoint = try #require(safe.safePointMicros)
                #expect(
                    requestTime < safePoint && safePoint < verdictTime,
                    "request \(requestTime), safe point \(safePoint), verdict \(verdictTime)")
                #expect(safe.safeOffset == issuedOffset, "the safe offset is the last one committed by the safe point")

                // Its offset is refused, naming its commit time; the one before it is pruned.
                do {
                    _ = try await p1.prune(upTo: offset)
                    Issue.record("an offset committed after the safe point was pruned without the override")
                } catch ParticipantError.pruneBeyondSafePoint(let refused, let commitTime, let point, let safeOffset) {
                    #expect(refused == offset && commitTime == verdictTime && safeOffset == issuedOffset)
                    #expect((point ?? .max) < verdictTime)
                }
                #expect(
                    try await p1.transactions(of: alice, after: issuedOffset).map(\.offset) == [offset],
                    "a refused prune removes nothing")
                let pruned = try await p1.prune(upTo: issuedOffset)
                #expect(!pruned.forced && pruned.prunedOffset == issuedOffset)
                #expect(pruned.commitTimeMicros < requestTime && pruned.recordTimeMicros <= pruned.commitTimeMicros)
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

/// Participant migration 18 records each transaction's commit time; the rows from before it
/// cannot know theirs, and get a time no commit of theirs is after.
@Suite struct PruningMigrationTests {
    @Test("participant migration 18 dates the transactions before it at the stream position, which none of their commits is after")
    func transactionsFromBeforeTheMigrationAreDatedAtTheStreamPosition() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (participant, connection) = try CommandStoreTests.schema(before: 18, fixture.url)
            let me = PostgresValue.text(participant.description)
            let streamPosition: Int64 = 1_800_000_000_900_000
            _ = try connection.execute(
                "INSERT INTO participant_cursor (participant, next_counter, last_ts) VALUES ($1, 9, $2)",
                [me, .int64(streamPosition)])
            // Offsets in verdict order: the second transaction's request came first.
            let requests: [(offset: Int64, time: Int64)] = [(1, 1_800_000_000_200_000), (2, 1_800_000_000_100_000)]
            for request in requests {
                _ = try connection.execute(
                    "INSERT INTO participant_transactions (participant, ledger_offset, transaction_id, request_ts) VALUES ($1, $2, $3, $4)",
                    [me, .int64(request.offset), .text("tx-\(request.offset)"), .int64(request.time)])
            }
            #expect(try ParticipantStore.migrator.migrate(connection).first == 18)

            let database = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            let store = ParticipantStore(database: database, participant: participant)
            #expect(try await store.commitTime(ofOffset: 1) == streamPosition)
            #expect(try await store.commitTime(ofOffset: 2) == streamPosition)
            #expect(try await store.recordTime(ofOffset: 2) == requests[1].time)
            // No offset from before counts as committed before the stream position; from it, all.
            #expect(try await store.latestOffset(atOrBefore: streamPosition - 1) == nil)
            #expect(try await store.latestOffset(atOrBefore: streamPosition) == 2)
            // A row without a commit time (an older version still running on a shared database
            // writes it) is read at the stream position when it is read.
            _ = try connection.execute(
                "INSERT INTO participant_transactions (participant, ledger_offset, transaction_id, request_ts) VALUES ($1, 3, 'tx-3', $2)",
                [me, .int64(streamPosition + 100)])
            _ = try connection.execute(
                "UPDATE participant_cursor SET next_counter = 10, last_ts = $2 WHERE participant = $1",
                [me, .int64(streamPosition + 200)])
            #expect(try await store.commitTime(ofOffset: 3) == streamPosition + 200)
            #expect(try await store.latestOffset(atOrBefore: streamPosition + 199) == 2)
            #expect(try await store.latestOffset(atOrBefore: streamPosition + 200) == 3)
            await database.shutdown()
        }
    }
}
