import Foundation
import Testing
import WeftContracts
import WeftCrypto
@_spi(Testing) import WeftParticipant
import WeftProtocol
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftWire

/// One event as the sequencer stored it: who sent it, under which message id, its batch and
/// the members it is delivered to.
struct StoredSequencerEvent: Sendable {
    let timestamp: Int64
    let messageID: String
    let sender: String
    let batch: Weft.V1.Batch?
    let recipients: Set<String>

    /// Runs `body` on a connection to the database at `url`, on a database thread (not the
    /// concurrency pool), then closes it.
    static func query<Result: Sendable>(
        _ url: String, _ body: @escaping @Sendable (PostgresConnection) throws -> Result
    ) async throws -> Result {
        let database = PostgresDatabase(url: url, maximumConnections: 1)
        do {
            let result = try await database.withConnection(body)
            await database.shutdown()
            return result
        } catch {
            await database.shutdown()
            throw error
        }
    }

    /// The sequencer's events from `timestamp` on, oldest first, read from its tables in the
    /// database at `url` (on the database's threads, not the concurrency pool).
    static func all(from timestamp: Int64 = 0, url: String) async throws -> [StoredSequencerEvent] {
        try await query(url) { connection in
            try events(from: timestamp, connection)
        }
    }

    private static func events(from timestamp: Int64, _ connection: PostgresConnection) throws
        -> [StoredSequencerEvent]
    {
        try connection.execute(
            """
            SELECT e.ts, e.message_id, s.member, e.batch,
                (SELECT coalesce(string_agg(m.member, ' '), '') FROM sequencer_members m WHERE m.id = ANY (e.recipients))
            FROM sequencer_events e JOIN sequencer_members s ON s.id = e.sender
            WHERE e.ts >= $1 ORDER BY e.ts
            """, [.int64(timestamp)]
        ).rows.map { row in
            StoredSequencerEvent(
                timestamp: try #require(try row[0].int64), messageID: try #require(try row[1].string),
                sender: try #require(try row[2].string),
                batch: try row[3].bytes.map { try Weft.V1.Batch(serializedBytes: $0) },
                recipients: Set(try #require(try row[4].string).split(separator: " ").map(String.init)))
        }
    }

    /// The sequencing time of the last event stored so far (0 when none).
    static func lastTimestamp(url: String) async throws -> Int64 {
        try await query(url) { connection in
            try connection.execute("SELECT coalesce(max(ts), 0)::bigint FROM sequencer_events").rows.first?.first?
                .int64 ?? 0
        }
    }

    /// How many rows of `table` (a name from the test, not from input) belong to `participant`.
    static func rows(of participant: UniqueIdentifier, in table: String, url: String) async throws -> Int64? {
        try await query(url) { connection in
            try connection.execute(
                "SELECT count(*)::bigint FROM \(table) WHERE participant = $1", [.text(participant.description)]
            ).rows.first?.first?.int64
        }
    }
}

/// Issue 7's acceptance tests that need more than the default domain: a DvP across four
/// participants, and a confirming participant that is down when a request is made.
extension OnASecondRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct AcceptanceTests {
        /// DvP among three parties on three participants: the buyer (alice) on participant1,
        /// the seller (bob) on participant2, the depository — bank and custodian in one — on
        /// participant3. Each participant receives, and can decrypt, exactly the views whose
        /// informees (or whose ancestors' informees) it hosts; participant4 hosts none of them
        /// and receives nothing.
        /// (Four participants: it took two minutes in a full run on a loaded two-core machine.)
        @Test(.timeLimit(.minutes(5)))
        func dvpReachesEachParticipantWithItsViewsOnlyAndAnUninvolvedOneWithNothing() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(
                    url: fixture.url, participantCount: 4, extraParties: [("depository", 2)])
                let (p1, p2, p3, p4) = (domain.p1, domain.p2, domain.p3, domain.nodes[3])
                let (buyer, seller) = (domain.alice, domain.bob)
                let depository = try #require(domain.extraParties["depository"])
                let source = try exampleSource("dvp.weft")
                for node in [p1, p2, p3] { try await node.upload(packageSource: source, file: "dvp.weft") }
                let dvp = try Package(source: source, file: "dvp.weft")
                let dvpStart = try await StoredSequencerEvent.lastTimestamp(url: fixture.url) + 1

                func created(
                    _ template: String, _ fields: KeyValuePairs<String, Value>, by party: Party,
                    on node: ParticipantNode, seenBy others: [ParticipantNode]
                ) async throws -> ContractID {
                    try await domain.created(in: dvp, template, fields, by: party, on: node, seenBy: others)
                }
                let isin = Value.text("XS0000000001")
                let cash = try await created(
                    "Cash",
                    ["bank": .party(depository), "owner": .party(buyer), "amount": .decimal(FixedDecimal("1000")!)],
                    by: depository, on: p3, seenBy: [p1])
                let security = try await created(
                    "Security",
                    ["custodian": .party(depository), "holder": .party(seller), "isin": isin, "quantity": .int(10)],
                    by: depository, on: p3, seenBy: [p2])
                let offer = try await created(
                    "Offer",
                    [
                        "buyer": .party(buyer), "seller": .party(seller), "bank": .party(depository),
                        "custodian": .party(depository), "isin": isin, "quantity": .int(10),
                        "price": .decimal(FixedDecimal("1000")!), "payment": .contractID(cash),
                    ], by: buyer, on: p1, seenBy: [p2])

                // The seller settles. Its participant stores no cash of the buyer's: the buyer's
                // application discloses it, as participant1 serves it (with its creation seed).
                let disclosed = try await p1.activeContracts(of: buyer).filter { $0.id == cash }
                try #require(disclosed.count == 1)
                let settle = Command.exercise(
                    try dvp.templateID("Offer"), contract: offer, choice: "Settle",
                    argument: try dvp.arguments("Offer", "Settle", ["delivery": .contractID(security)]))
                // Without the cash, or with cash whose data is not what its id was derived
                // from, the seller's participant refuses the command: nothing is sent.
                let command = CommandKey(applicationID: "seller-app", commandID: "settle")
                let undisclosed = await #expect(throws: ParticipantError.self) {
                    _ = try await p2.prepare([settle], actAs: [seller], command: command)
                }
                guard case .interpretation? = undisclosed else {
                    Issue.record("without the cash: \(String(describing: undisclosed))")
                    return
                }
                let real = disclosed[0]
                let forged = ActiveContract(
                    id: real.id,
                    contract: ContractInstance(
                        template: real.contract.template,
                        argument: try dvp.record(
                            "Cash",
                            [
                                "bank": .party(depository), "owner": .party(buyer),
                                "amount": .decimal(FixedDecimal("1")!),
                            ]), signatories: real.contract.signatories, observers: real.contract.observers),
                    createdAt: real.createdAt, creationSeed: real.creationSeed)
                let unseeded = ActiveContract(id: real.id, contract: real.contract, createdAt: real.createdAt)
                for bad in [forged, unseeded] {
                    await #expect(throws: ParticipantError.unauthenticatedDisclosure(contract: cash.description)) {
                        _ = try await p2.prepare([settle], actAs: [seller], command: command, disclosedContracts: [bad])
                    }
                }
                let prepared = try await p2.prepare(
                    [settle], actAs: [seller], command: command, disclosedContracts: disclosed)
                guard case .succeeded(let transactionID, _) = try await p2.submit(prepared) else {
                    Issue.record("the settlement did not commit")
                    return
                }
                for node in [p1, p3] {
                    #expect(try await node.outcome(ofRequest: prepared.rootHash) == "approved")
                }

                // Which participant must see each view: those hosting an informee of it or of an
                // ancestor (docs/contracts.md §13), by the hostings the harness set up.
                let views = prepared.views
                #expect(views.views.count == 7)
                let hostOf: [Party: Int] = [buyer: 0, seller: 1, depository: 2]
                var mustSee: [Set<Int>] = []
                for (index, view) in views.views.enumerated() {
                    var participants = Set(view.commonData.informees.compactMap { hostOf[$0] })
                    #expect(participants.count == view.commonData.informees.count, "an informee hosted elsewhere")
                    if let parent = views.parents[index] { participants.formUnion(mustSee[parent]) }
                    mustSee.append(participants)
                }
                // The depository sees the cash and the security legs, not the offer's root view.
                #expect(mustSee[0] == [0, 1])
                #expect(mustSee.dropFirst().allSatisfy { $0 == [0, 1, 2] })

                // What each participant decrypted and stored: exactly its views.
                for (index, node) in [p1, p2, p3].enumerated() {
                    let decrypted = try #require(try await node.decryptedViews(ofRequest: prepared.rootHash))
                    let expected = views.views.indices.filter { mustSee[$0].contains(index) }.map {
                        views.views[$0].hash
                    }
                    #expect(Set(decrypted.map(\.hash)) == Set(expected), "participant\(index + 1)")
                    #expect(decrypted.count == expected.count, "participant\(index + 1) stored a view twice")
                }
                #expect(try await p4.decryptedViews(ofRequest: prepared.rootHash) == nil)

                // What the sequencer stored: every encrypted view is addressed to exactly the
                // participants that must see it, and only their keys open it.
                let members = domain.members.map { MemberID(role: .participant, identifier: $0.id).description }
                let events = try await StoredSequencerEvent.all(from: dvpStart, url: fixture.url)
                let request = try #require(events.first { $0.messageID == prepared.messageID })
                var encryptedViews = 0
                for envelope in request.batch?.envelopes ?? [] {
                    guard
                        case .encryptedView(let message)? = try Weft.V1.EnvelopeContent(
                            serializedBytes: envelope.content
                        ).message
                    else { continue }
                    encryptedViews += 1
                    let index = try #require(views.views.firstIndex { $0.hash.bytes == message.viewHash })
                    let position = views.views[index].position
                    #expect(Set(envelope.recipients) == Set(mustSee[index].map { members[$0] }), "view \(position)")
                    // The seed travels under the submitter's session key (docs/crypto.md §6.1).
                    #expect(message.wrappedSeeds.isEmpty && message.sessionSealedSeed != nil, "view \(position)")
                    for (participant, member) in domain.members.enumerated() {
                        let opened = (try? ViewEncryption.open(message, with: member.encryptionKey)) != nil
                        #expect(
                            opened == mustSee[index].contains(participant), "view \(position), \(members[participant])")
                    }
                }
                #expect(encryptedViews == views.views.count)
                // One root hash message per informee participant, addressed to it and the mediator
                // only: a recipient list names no participant to another that shares no view with it.
                let rootHashes = try (request.batch?.envelopes ?? []).filter { envelope in
                    if case .rootHash? = try Weft.V1.EnvelopeContent(serializedBytes: envelope.content).message { return true }
                    return false
                }
                let informeeParticipants = mustSee.reduce(into: Set<Int>()) { $0.formUnion($1) }
                #expect(rootHashes.count == informeeParticipants.count)
                for envelope in rootHashes {
                    #expect(
                        envelope.recipients.count == 2 && envelope.recipients.filter(members.contains).count == 1
                            && envelope.recipients.contains { $0.hasPrefix("MED::") }, "\(envelope.recipients)")
                }
                #expect(
                    Set(rootHashes.flatMap { $0.recipients.filter(members.contains) })
                        == Set(informeeParticipants.map { members[$0] }))
                // The verdict likewise: one envelope per informee participant, to it alone.
                let verdictEvent = try #require(
                    events.first { $0.messageID.hasPrefix("verdict-\(request.timestamp)-") }, "no verdict on the settlement")
                let verdictEnvelopes = verdictEvent.batch?.envelopes ?? []
                #expect(verdictEnvelopes.allSatisfy { $0.recipients.count == 1 }, "\(verdictEnvelopes.map(\.recipients))")
                #expect(Set(verdictEnvelopes.flatMap(\.recipients)) == Set(informeeParticipants.map { members[$0] }))

                // participant4: nothing of the DvP in its stream (no event since the first create
                // is delivered to it) and nothing in its store.
                #expect(events.count >= 4 * 3)  // four requests, each with responses and a verdict
                for event in events { #expect(!event.recipients.contains(members[3]), "event \(event.messageID)") }
                #expect(events.contains { $0.recipients.contains(members[2]) })
                for table in ["participant_requests", "participant_contracts", "participant_transactions"] {
                    let rows = try await StoredSequencerEvent.rows(
                        of: domain.members[3].id, in: table, url: fixture.url)
                    #expect(rows == 0, "\(table)")
                }

                // The settlement moved both legs at once, as each party sees it.
                let buyerHolds = try await p1.activeContracts(of: buyer)
                #expect(buyerHolds.map(\.contract.template.name).sorted() == ["Security", "Settlement"])
                let sellerHolds = try await p2.activeContracts(of: seller)
                #expect(sellerHolds.map(\.contract.template.name).sorted() == ["Cash", "Settlement"])
                let depositoryHolds = try await p3.activeContracts(of: depository)
                #expect(depositoryHolds.map(\.contract.template.name).sorted() == ["Cash", "Security"])
                #expect(Set(depositoryHolds.map(\.id)).isDisjoint(with: [cash, security]))
                for (node, party) in [(p1, buyer), (p2, seller), (p3, depository)] {
                    #expect(try await node.transactions(of: party).last?.transactionID == transactionID)
                }
                await domain.stop()
            }
        }

        /// Timeout: with the confirming participant stopped, the mediator rejects the request
        /// after the response timeout, the submitter's locks are released and its completion
        /// says why; the participant, back, catches up without confirming late or committing,
        /// and a retry commits on both sides.
        @Test func aRequestWithAConfirmerDownTimesOutAndARetryCommitsOnceItIsBack() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice, bob, bank) = (domain.p1, domain.alice, domain.bob, domain.bank)
                let iou = try await domain.issued("40", to: alice, command: "issue-timeout")
                // A 3 s response timeout for the request that must time out only, and
                // participant2, which confirms for the bank, stopped as a process would be.
                try await domain.setParticipantResponseTimeout(micros: 3_000_000, serial: 2)
                await domain.p2.stop()

                let key = CommandKey(applicationID: "alice-app", commandID: "transfer-timeout")
                let prepared = try await p1.prepare([try domain.transfer(iou, to: bob)], actAs: [alice], command: key)
                let completion = try await p1.submit(prepared)
                guard case .rejected(let reasonID, let message) = completion else {
                    Issue.record("the transfer was not rejected: \(completion)")
                    return
                }
                #expect(reasonID == RejectReason.timedOut)
                #expect(message.contains("timeout"))
                #expect(try await p1.command(key, actAs: [alice])?.state == .rejected)
                #expect(try await p1.outcome(ofRequest: prepared.rootHash) == RejectReason.timedOut)
                #expect(await p1.lockedContracts.isEmpty)
                #expect(try await p1.activeContracts(of: alice).map(\.id) == [iou])
                #expect(await p1.ledgerEndOffset == 1)
                // 30 s again: the retry does not depend on how fast this machine answers.
                try await domain.setParticipantResponseTimeout(micros: 30_000_000, serial: 3)

                // participant2 comes back on its database: it processes the request and the
                // verdict it missed, and ends where it was.
                let p2 = try await domain.restart(1)
                #expect(try await p2.outcome(ofRequest: prepared.rootHash) == RejectReason.timedOut)
                #expect(await p2.lockedContracts.isEmpty)
                #expect(try await p2.activeContracts(of: bank).map(\.id) == [iou])
                #expect(try await p2.activeContracts(of: bob).isEmpty)
                #expect(await p2.ledgerEndOffset == 1)

                // The same command again: it commits on both sides.
                let retried = try await p1.submit([try domain.transfer(iou, to: bob)], actAs: [alice], command: key)
                guard case .succeeded(let transactionID, _) = retried else {
                    Issue.record("the retry did not commit: \(retried)")
                    return
                }
                #expect(try await p2.outcome(ofRequest: Digest32(hex: transactionID)!) == "approved")
                #expect(try await p1.activeContracts(of: alice).isEmpty)
                #expect(try await p2.activeContracts(of: bob).count == 1)
                #expect(try await p2.activeContracts(of: bank).map(\.id).contains(iou) == false)
                #expect(await p2.ledgerEndOffset == 2)

                // No late confirmation: participant2 sent responses for the retry only. (A late
                // response would have been sent when it processed the timed-out request, before
                // the retry, whose response had to reach the mediator for the retry to commit.)
                let events = try await StoredSequencerEvent.all(url: fixture.url)
                let timedOut = try #require(events.first { $0.messageID == prepared.messageID })
                let fromP2 = events.filter {
                    $0.sender == MemberID(role: .participant, identifier: domain.members[1].id).description
                        && $0.timestamp > timedOut.timestamp
                }
                #expect(!fromP2.contains { $0.messageID == "response-\(timedOut.timestamp)" })
                #expect(fromP2.filter { $0.messageID.hasPrefix("response-") }.count == 1)
                await p2.stop()
                await domain.stop()
            }
        }
    }
}
