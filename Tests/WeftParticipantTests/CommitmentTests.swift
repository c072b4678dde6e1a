import Foundation
import Testing
import WeftContracts
import WeftCrypto
@_spi(Testing) import WeftParticipant
import WeftProtocol
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

/// Issue 10's ACS commitment acceptance test, on one domain for all its assertions: three
/// participants, a reconciliation interval of one second.
extension OnASecondRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct CommitmentTests {
        static let intervalMicros: Int64 = 1_000_000

        /// A period's commitments recorded but never sent (the process died in between, each
        /// time) are sent when the participant starts again: the counter-participant receives
        /// them, so its pruning safe point can pass that period. Until then no ACS snapshot is
        /// exported for that period.
        @Test func commitmentsLostBeforeTheyReachedTheSequencerAreSentAfterARestart() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                try await domain.setDomainParameters(
                    TestDomain.parameters(reconciliationIntervalMicros: Self.intervalMicros), serial: 2)
                // alice (participant1) and the bank (participant2) share an IOU.
                _ = try await domain.issued("10.00", to: domain.alice, command: "iou-lost-commitments")
                await domain.p1.dropCommitmentSendsFromNowOn()
                let (p1ID, p2ID) = (domain.members[0].id.description, domain.members[1].id.description)
                let url = fixture.url
                // Periods recorded up to now may have been sent before the drop: the lost one comes later.
                let recordedBefore = try #require(
                    try PostgresConnection(url: url).execute(
                        "SELECT coalesce(max(to_inclusive), 0)::bigint FROM participant_sent_commitments WHERE participant = $1",
                        [.text(p1ID)]
                    ).rows.first?.first?.int64)
                let lostPeriod = """
                    SELECT coalesce(max(to_inclusive), 0)::bigint FROM participant_sent_commitments
                    WHERE participant = $1 AND counter_participant = $2 AND NOT sent
                    """
                try await eventually("participant1 records a period's commitment to participant2 and sends nothing") {
                    try PostgresConnection(url: url).execute(lostPeriod, [.text(p1ID), .text(p2ID)]).rows.first?.first?.int64 ?? 0
                        > recordedBefore
                }
                // No ACS snapshot names a period whose commitment never reached the sequencer: the
                // importer could not find it there to check the snapshot against.
                let unsent = try #require(
                    try PostgresConnection(url: url).execute(lostPeriod, [.text(p1ID), .text(p2ID)]).rows.first?.first?
                        .int64)
                await #expect(throws: RepairError.self) {
                    _ = try await domain.p1.exportACS(for: domain.members[1].id, at: unsent)
                }
                await domain.p1.crash()
                let lost = try #require(
                    try PostgresConnection(url: url).execute(lostPeriod, [.text(p1ID), .text(p2ID)]).rows.first?.first?.int64)
                let received = """
                    SELECT count(*)::bigint FROM participant_received_commitments
                    WHERE participant = $1 AND counter_participant = $2 AND to_inclusive = $3
                    """
                #expect(try PostgresConnection(url: url).execute(received, [.text(p2ID), .text(p1ID), .int64(lost)]).rows.first?.first?.int64 == 0)
                let restarted = try await domain.restart(0)
                try await eventually("participant2 receives participant1's commitment for the period lost before") {
                    try PostgresConnection(url: url).execute(received, [.text(p2ID), .text(p1ID), .int64(lost)]).rows.first?.first?.int64 == 1
                }
                try await eventually("participant1 marks the period sent") {
                    try PostgresConnection(url: url).execute(lostPeriod, [.text(p1ID), .text(p2ID)]).rows.first?.first?.int64 ?? 0 < lost
                }
                await restarted.stop()
                await domain.stop()
            }
        }

        /// Each commitment reaches its counter-participant in a batch of its own. participant1
        /// shares an IOU with participant2 and one with participant3, and computes a period with
        /// commitments to both; participant3 is disabled before they are sequenced. The sequencer
        /// refuses the one to participant3 (no member any more), and participant2 still receives
        /// participant1's, which matches its own: the period does not stay unmatched at
        /// participant2. (Sent as one batch, the period's commitments were refused whole.)
        /// Deterministic: participant1 sends no commitment before participant3 is disabled — its
        /// sends are dropped from before it shares anything, and the periods recorded meanwhile
        /// are sent when it restarts, after the sequencer has applied the change.
        @Test func aCommitmentReachesItsCounterParticipantWhenAnotherOfThePeriodIsDisabledBeforeItIsSequenced() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url, extraParties: [("depository", 2)])
                let depository = try #require(domain.extraParties["depository"])
                try await domain.setDomainParameters(
                    TestDomain.parameters(reconciliationIntervalMicros: Self.intervalMicros), serial: 2)
                let ids = domain.members.map(\.id.description)
                // participant1 has no contract yet, so it has nothing waiting to be sent: from
                // now on, none of its commitments reaches the sequencer until it restarts.
                await domain.p1.dropCommitmentSendsFromNowOn()
                _ = try await domain.issued("10.00", to: domain.alice, command: "iou-with-participant2")
                try await domain.p3.upload(packageSource: domain.iouSource, file: "iou.weft")
                _ = try await domain.created(
                    in: try domain.package, "Iou",
                    [
                        "issuer": .party(depository), "owner": .party(domain.alice), "currency": .text("USD"),
                        "amount": .decimal(FixedDecimal("5.00")!),
                    ], by: depository, on: domain.p3, seenBy: [domain.p1])

                let url = fixture.url
                @Sendable func scalar(_ sql: String, _ parameters: [PostgresValue]) async throws -> Int64 {
                    try await StoredSequencerEvent.query(url) { connection in
                        try connection.execute(sql, parameters).rows.first?.first?.int64 ?? 0
                    }
                }
                // The latest period participant1 recorded commitments to both for, unsent.
                let unsentToBoth = """
                    SELECT coalesce(max(c.to_inclusive), 0)::bigint FROM participant_sent_commitments c
                    WHERE c.participant = $1 AND c.counter_participant = $3 AND NOT c.sent AND EXISTS (
                        SELECT 1 FROM participant_sent_commitments o
                        WHERE o.participant = $1 AND o.counter_participant = $2 AND o.to_inclusive = c.to_inclusive
                          AND NOT o.sent)
                    """
                let participants: [PostgresValue] = ids.map { .text($0) }
                try await eventually("participant1 records a period with commitments to participants 2 and 3") {
                    try await scalar(unsentToBoth, participants) > 0
                }
                await domain.p1.crash()
                let period = try await scalar(unsentToBoth, participants)
                try #require(period > 0)

                // The domain manager disables participant3 (stopped first: it is cut off anyway).
                await domain.p3.stop()
                var topology = domain.domain
                let disable = try topology.domainSigned(
                    .participantState(domain.members[2].id, permission: .disabled), key: "state-\(domain.members[2].id)")
                try await domain.broadcast([disable], messageID: "disable-participant3")
                await domain.sequencerTopology.waitUntil(domain.members[2].member, isActive: false)
                // The sequencer's topology changes before it writes the member disabled, and a
                // waiter that comes in between returns at once: wait for the write too.
                let enabled = """
                    SELECT count(*)::bigint FROM sequencer_members WHERE member = $1 AND enabled
                    """
                try await eventually("the sequencer has disabled participant3") {
                    try await scalar(enabled, [.text(domain.members[2].member.description)]) == 0
                }

                // participant1 sends the periods it recorded: participant2 receives the period's
                // commitment and it matches; participant1 receives participant2's.
                let restarted = try await domain.restart(0)
                let received = """
                    SELECT count(*)::bigint FROM participant_received_commitments
                    WHERE participant = $1 AND counter_participant = $2 AND to_inclusive = $3 AND state = ANY($4::text[])
                    """
                @Sendable func receivedAtP2(_ states: [String?]) async throws -> Int64 {
                    try await scalar(received, [.text(ids[1]), .text(ids[0]), .int64(period), .textArray(states)])
                }
                try await eventually("participant2 compares participant1's commitment for the period") {
                    try await receivedAtP2(["matched", "mismatched"]) == 1
                }
                #expect(try await receivedAtP2(["matched"]) == 1, "participant1's commitment for the period matches participant2's")
                let stores = [restarted, domain.p2].map {
                    CommitmentStore(database: $0.store.database, participant: $0.identity.id.description)
                }
                #expect(try await stores[1].mismatches(counterParticipant: ids[0]).isEmpty)
                let matchedAtP1 = """
                    SELECT count(*)::bigint FROM participant_sent_commitments
                    WHERE participant = $1 AND counter_participant = $2 AND to_inclusive = $3 AND matched
                    """
                try await eventually("participant1's commitment to participant2 for the period is matched") {
                    try await scalar(matchedAtP1, [.text(ids[0]), .text(ids[1]), .int64(period)]) == 1
                }
                #expect(try await stores[0].mismatches(counterParticipant: ids[1]).isEmpty)

                // Both of the period's commitments count as sent, the refused one too: sending it
                // again would be refused alike.
                let unsent = """
                    SELECT count(*)::bigint FROM participant_sent_commitments
                    WHERE participant = $1 AND to_inclusive = $2 AND NOT sent
                    """
                try await eventually("participant1 marks both of the period's commitments sent") {
                    try await scalar(unsent, [.text(ids[0]), .int64(period)]) == 0
                }
                // The sequencer took each in a batch of its own, and refused participant3's only.
                let member = domain.members[0].member.description
                let events = try await StoredSequencerEvent.query(url) { connection in
                    try connection.execute(
                        """
                        SELECT e.message_id, e.kind::int8, coalesce(e.error_id, '') FROM sequencer_events e
                        JOIN sequencer_members m ON m.id = e.sender
                        WHERE m.member = $1 AND e.message_id LIKE $2 ORDER BY e.message_id
                        """, [.text(member), .text("acs-commitments-\(period)-%")]
                    ).rows.map { row in
                        let (messageID, kind) = (try row[0].string ?? "", try row[1].int64 ?? 0)
                        let errorID = try row[2].string ?? ""
                        return "\(messageID) \(kind) \(errorID)"
                    }
                }
                #expect(
                    events == [
                        "acs-commitments-\(period)-\(ids[1]) 1 ",
                        "acs-commitments-\(period)-\(ids[2]) 2 SEQUENCER_UNKNOWN_RECIPIENTS",
                    ])
                // The period no longer holds participant2's safe point back.
                try await eventually("participant2's safe point reaches the period") {
                    (try await stores[1].safePoint().safePoint ?? 0) >= period
                }
                await restarted.stop()
                await domain.stop()
            }
        }

        /// Mixed IOU and DvP transactions: every pair of participants sharing contracts
        /// exchanges commitments and they match (each participant's safe point passes the end
        /// of the run, with no mismatch). Then an IOU's amount is changed by hand in
        /// participant2's database and participant2 restarts: within the next periods both
        /// participant1 and participant2 report the mismatch, participant3 (which shares
        /// nothing of that IOU) does not, and narrowing names exactly that contract. A forged
        /// commitment is dropped, a genuine one from the same sender stored.
        @Test(.timeLimit(.minutes(5)))
        func commitmentsMatchThenACorruptedContractIsReportedByBothSidesAndNamed() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url, extraParties: [("depository", 2)])
                let (p1, p3) = (domain.p1, domain.p3)
                var p2 = domain.p2
                let depository = try #require(domain.extraParties["depository"])
                let (alice, bob) = (domain.alice, domain.bob)
                try await domain.setDomainParameters(
                    TestDomain.parameters(reconciliationIntervalMicros: Self.intervalMicros), serial: 2)

                // IOUs between participant1 and participant2.
                let kept = try await domain.issued("100.00", to: alice, command: "iou-1")
                let moved = try await domain.issued("250.00", to: alice, command: "iou-2")
                let transfer = try await p1.submit(
                    [try domain.transfer(moved, to: bob)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "transfer-1"))
                guard case .succeeded = transfer else {
                    Issue.record("the transfer failed: \(transfer)")
                    return
                }

                // A delivery versus payment across all three.
                let source = try exampleSource("dvp.weft")
                for node in [p1, p2, p3] { try await node.upload(packageSource: source, file: "dvp.weft") }
                let dvp = try Package(source: source, file: "dvp.weft")
                let isin = Value.text("XS0000000002")
                let price = Value.decimal(FixedDecimal("500")!)
                let cash = try await domain.created(
                    in: dvp, "Cash", ["bank": .party(depository), "owner": .party(alice), "amount": price],
                    by: depository, on: p3, seenBy: [p1])
                let security = try await domain.created(
                    in: dvp, "Security",
                    ["custodian": .party(depository), "holder": .party(bob), "isin": isin, "quantity": .int(5)],
                    by: depository, on: p3, seenBy: [p2])
                let offer = try await domain.created(
                    in: dvp, "Offer",
                    [
                        "buyer": .party(alice), "seller": .party(bob), "bank": .party(depository),
                        "custodian": .party(depository), "isin": isin, "quantity": .int(5), "price": price,
                        "payment": .contractID(cash),
                    ], by: alice, on: p1, seenBy: [p2])
                let settlement = try await p2.submit(
                    [
                        .exercise(
                            try dvp.templateID("Offer"), contract: offer, choice: "Settle",
                            argument: try dvp.arguments("Offer", "Settle", ["delivery": .contractID(security)]))
                    ], actAs: [bob], command: CommandKey(applicationID: "bob-app", commandID: "settle"),
                    disclosedContracts: try await p1.activeContracts(of: alice).filter { $0.id == cash })
                guard case .succeeded(let settled, _) = settlement else {
                    Issue.record("the settlement failed: \(settlement)")
                    return
                }
                for node in [p1, p3] { #expect(try await node.outcome(ofRequest: Digest32(hex: settled)!) == "approved") }

                // Every pair matches: each safe point passes the last transaction's time.
                let runEnd = try await StoredSequencerEvent.lastTimestamp(url: fixture.url)
                let stores = [p1, p2, p3].map { CommitmentStore(database: $0.store.database, participant: $0.identity.id.description) }
                for (index, store) in stores.enumerated() {
                    try await eventually("participant\(index + 1)'s safe point passes the run") {
                        (try await store.safePoint().safePoint ?? 0) > runEnd
                    }
                    #expect(try await store.mismatches().isEmpty, "participant\(index + 1)")
                }
                // Each pair compared at least once (participant1–participant3 share the cash,
                // participant2–participant3 the security and the moved cash).
                let ids = [p1, p2, p3].map(\.identity.id.description)
                for (me, counter) in [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)] {
                    let counts = try await stores[me].comparisonCounts(counterParticipant: ids[counter])
                    #expect(counts.matched > 0 && counts.mismatched == 0, "participant\(me + 1) with participant\(counter + 1)")
                }

                // Corrupt the IOU alice kept in participant2's database: 100.00 becomes 900.00.
                await p2.stop()
                let corrupted = try await StoredSequencerEvent.query(fixture.url) { connection in
                    let me = PostgresValue.text(domain.members[1].id.description)
                    let stored = try #require(
                        try connection.execute(
                            "SELECT contract FROM participant_contracts WHERE participant = $1 AND contract_id = $2",
                            [me, .text(kept.description)]
                        ).rows.first?[0].bytes)
                    let digits = Array("100".utf8)
                    let at = try #require(
                        stored.indices.first { stored[$0...].starts(with: digits) }, "the amount in the stored bytes")
                    var changed = stored
                    changed[at] = UInt8(ascii: "9")
                    return try connection.execute(
                        "UPDATE participant_contracts SET contract = $3 WHERE participant = $1 AND contract_id = $2",
                        [me, .text(kept.description), .bytes(changed)]
                    ).affectedRowCount
                }
                #expect(corrupted == 1)
                let restartedAt = try await StoredSequencerEvent.lastTimestamp(url: fixture.url)
                p2 = try await domain.restart(1)

                // Both sides report it, for a period that ends within two intervals of the
                // restart (the first boundary after it, plus the one the exchange may straddle).
                for (me, counter) in [(0, 1), (1, 0)] {
                    try await eventually("participant\(me + 1) reports the mismatch") {
                        !(try await stores[me].mismatches(counterParticipant: ids[counter]).isEmpty)
                    }
                    let first = try #require(try await stores[me].mismatches(counterParticipant: ids[counter]).first)
                    #expect(first.toInclusive <= restartedAt + 2 * Self.intervalMicros)
                    #expect(first.own != first.received && first.received.count == 32)
                }
                #expect(try await stores[2].mismatches().isEmpty, "participant3 shares nothing of the IOU")
                let blocked = try await stores[1].safePoint()
                #expect((blocked.safePoint ?? 0) < (blocked.firstUnmatched?.toInclusive ?? 0), "the mismatch holds the safe point back")

                // Narrowing names the contract, from either side.
                let fromP1 = try await p1.inspectCommitment(with: domain.members[1].id)
                let group = StakeholderGroup([alice.id, domain.bank.id])
                #expect(fromP1.differingGroups == [group])
                #expect(fromP1.contracts == [.init(contractID: kept.description, group: group, kind: .differentData)])
                #expect(!fromP1.contractsOmitted && fromP1.groupsCompared >= 2)
                let fromP2 = try await p2.inspectCommitment(with: domain.members[0].id, groups: [group])
                #expect(fromP2.contracts.map(\.contractID) == [kept.description])
                #expect(fromP2.groupsCompared == 1)

                // A commitment signed with a key that is not participant3's is dropped; one
                // signed with its key, sent after it on the same session, is stored.
                let session = try await SequencerClient.authenticate(
                    try await RPCClient.connect(
                        host: domain.endpoint.host, port: domain.endpoint.port, security: domain.endpoint.security),
                    member: domain.members[2].member.description, key: domain.members[2].signingKey,
                    domain: domain.domain.domain.description, sequencerKeys: [domain.domain.sequencerKey.publicKey])
                func commitment(to: Int64, signedWith key: SigningPrivateKey) throws -> Weft.V1.Batch {
                    let content = Weft.V1.AcsCommitment(
                        domain: domain.domain.domain.description, sender: ids[2], counterParticipant: ids[0],
                        fromExclusive: .init(microsSinceEpoch: to - 1), toInclusive: .init(microsSinceEpoch: to),
                        commitment: [UInt8](repeating: 7, count: 32))
                    let signed = try ProtocolSigning.sign(Weft.V1.SignedContent(content: .acsCommitment(content)), with: key)
                    return Weft.V1.Batch(envelopes: [
                        Weft.V1.Envelope(
                            content: try Weft.V1.EnvelopeContent(message: .signedMessage(signed)).serializedBytes(),
                            recipients: [domain.members[0].member.description])
                    ])
                }
                try await session.send(try commitment(to: 4, signedWith: try SigningPrivateKey.generate()), messageID: "forged")
                try await session.send(try commitment(to: 6, signedWith: domain.members[2].signingKey), messageID: "genuine")
                @Sendable func received(_ to: Int64) async throws -> Int64 {
                    try await StoredSequencerEvent.query(fixture.url) { connection in
                        try connection.execute(
                            """
                            SELECT count(*)::bigint FROM participant_received_commitments
                            WHERE participant = $1 AND counter_participant = $2 AND to_inclusive = $3
                            """, [.text(ids[0]), .text(ids[2]), .int64(to)]
                        ).rows.first?[0].int64 ?? -1
                    }
                }
                try await eventually("participant1 stores the genuine commitment") { try await received(6) == 1 }
                #expect(try await received(4) == 0)
                await session.rpc.close()

                // Narrowing with no one, or with a participant that does not answer, fails typed.
                let stranger = try TestDomain.Participant("participant9").id
                for nobody in [stranger, domain.members[0].id] {
                    await #expect(throws: ParticipantError.unknownCounterParticipant(nobody.description)) {
                        _ = try await p1.inspectCommitment(with: nobody)
                    }
                }
                await p3.stop()
                await #expect(throws: ParticipantError.narrowingTimedOut(counterParticipant: ids[2])) {
                    _ = try await p1.inspectCommitment(with: domain.members[2].id, timeout: .seconds(1))
                }
                await p2.stop()
                await domain.stop()
            }
        }
    }
}
