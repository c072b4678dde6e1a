import Foundation
import Testing
import WeftContracts
import WeftCrypto
@_spi(Testing) import WeftParticipant
import WeftProtocol
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTransport
import WeftWire

/// The stream cursor moved past events without effects in memory only (ParticipantNode,
/// `cursorStoreEventsMax`): stored with the next write, and after a crash such events are read
/// again and change nothing.
extension OnAThirdRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct CursorTests {
        /// Returns once `node` has processed every event before `counter`.
        static func processed(_ node: ParticipantNode, before counter: UInt64) async {
            let progress = await node.progressEvents()
            if await node.nextCounter >= counter { return }
            for await next in progress where next >= counter { return }
        }

        /// The stored next counter of `participant` (-1: none stored).
        static func storedCounter(_ url: String, _ participant: String) throws -> Int64 {
            let connection = try PostgresConnection(url: url)
            return try connection.execute(
                "SELECT next_counter FROM participant_cursor WHERE participant = $1", [.text(participant)]
            ).rows.first?.first?.int64 ?? -1
        }

        @Test func eventsWithoutEffectsAreReadAgainAfterACrashToNoEffectAndPendingResponsesResent() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (alice, bob) = (domain.alice, domain.bob)
                // No reconciliation boundary during the test: a period's end stores the cursor.
                try await domain.setDomainParameters(
                    TestDomain.parameters(reconciliationIntervalMicros: 1000 * 86_400_000_000), serial: 2)
                let iou = try await domain.issued("40", to: alice, command: "issue-cursor")
                // participant1 again, storing its cursor only with effects (no lag bound is
                // reached in this test).
                await domain.p1.stop()
                let lazy = ParticipantConfiguration(cursorStoreEventsMax: 10_000, cursorStoreInterval: .seconds(3600))
                let p1 = try await domain.restart(0, configuration: lazy)
                let ledgerEnd = await p1.ledgerEndOffset
                let transactionsBefore = try await p1.transactions(of: alice).count

                // The mediator is down: alice's transfer stays pending; participant1 validates it
                // and sends its responses.
                await domain.mediator.stop()
                let key = CommandKey(applicationID: "alice-app", commandID: "transfer-cursor")
                let prepared = try await p1.prepare([try domain.transfer(iou, to: bob)], actAs: [alice], command: key)
                let submission = Task { try await p1.submit(prepared) }
                await p1.awaitPending(prepared.rootHash)
                let requestTime = try #require(await p1.lockedContracts[iou]).microsSinceEpoch
                let participant = domain.members[0].id.description
                // The registration's transaction stored the cursor after the request.
                let registered = UInt64(try Self.storedCounter(fixture.url, participant))

                // Participant1's responses were sequenced: they are on the (stopped) mediator's
                // stream. They put no receipt on participant1's (`omit_receipt`).
                let p1Member = domain.members[0].member.description
                let mediatorSession = try await SequencerClient.authenticate(
                    try await RPCClient.connect(
                        host: domain.endpoint.host, port: domain.endpoint.port, security: domain.endpoint.security),
                    member: domain.domain.mediatorMember.description, key: domain.domain.mediatorKey,
                    domain: domain.domain.domain.description, sequencerKeys: [domain.domain.sequencerKey.publicKey])
                var sequenced = false
                for try await event in try mediatorSession.subscribe(from: 0) {
                    if case .deliver(let deliver)? = event.event, deliver.sender == p1Member,
                        deliver.messageID == "response-\(requestTime)"
                    {
                        sequenced = true
                        break
                    }
                }
                #expect(sequenced)
                await mediatorSession.rpc.close()

                // Three events without effects for participant1: envelopes it has no use for,
                // from participant3.
                let session = try await SequencerClient.authenticate(
                    try await RPCClient.connect(
                        host: domain.endpoint.host, port: domain.endpoint.port, security: domain.endpoint.security),
                    member: domain.members[2].member.description, key: domain.members[2].signingKey,
                    domain: domain.domain.domain.description, sequencerKeys: [domain.domain.sequencerKey.publicKey])
                for number in 0..<3 {
                    let content = try Weft.V1.EnvelopeContent(message: .informeeMessage(.init())).serializedBytes()
                    try await session.send(
                        Weft.V1.Batch(envelopes: [.init(content: content, recipients: [p1Member])]),
                        messageID: "nothing-\(number)")
                }
                await Self.processed(p1, before: registered + 3)
                let processed = await p1.nextCounter
                // Stored: the cursor after the request (its registration's transaction), not the
                // three events since.
                let beforeCrash = try Self.storedCounter(fixture.url, participant)
                #expect(beforeCrash == Int64(registered), "stored \(beforeCrash), processed \(processed)")

                // A crash: nothing more is stored.
                await p1.crash()
                _ = await submission.result
                #expect(try Self.storedCounter(fixture.url, participant) == Int64(registered))

                // The restarted node re-sends the pending request's responses (whether they were
                // sent is not stored) and reads the three events again; then the mediator decides, once.
                let restarted = try await domain.restart(0)
                await Self.processed(restarted, before: processed)
                #expect(await restarted.lockedContracts.keys.sorted() == [iou])
                try await domain.mediator.start()
                #expect(try await restarted.outcome(ofRequest: prepared.rootHash) == "approved")
                #expect(try await restarted.command(key, actAs: [domain.alice])?.state == .succeeded)
                #expect(await restarted.ledgerEndOffset == ledgerEnd + 1)
                let transactions = try await restarted.transactions(of: alice)
                #expect(transactions.count == transactionsBefore + 1)
                #expect(Set(transactions.map(\.transactionID)).count == transactions.count)
                #expect(try await restarted.activeContracts(of: alice).isEmpty)
                #expect(try await restarted.activeContracts(of: bob).isEmpty)  // bob is hosted on participant2
                #expect(try await domain.p2.outcome(ofRequest: prepared.rootHash) == "approved")
                // The responses were sequenced once: a re-send is refused as a duplicate message id.
                let responses = try await StoredSequencerEvent.all(url: fixture.url).filter {
                    $0.messageID == "response-\(requestTime)" && $0.sender == p1Member
                }
                #expect(responses.count == 1)
                #expect(try await domain.p2.activeContracts(of: bob).count == 1)
                #expect(await restarted.lockedContracts.isEmpty)

                // A graceful stop stores the cursor as processed.
                let end = await restarted.nextCounter
                await restarted.stop()
                #expect(try Self.storedCounter(fixture.url, participant) == Int64(end))
                await domain.stop()
            }
        }

        /// The case the restart's re-send exists for: the request was stored, but its responses
        /// never reached the sequencer before the crash (nothing records whether they did). The
        /// restarted node sends them; the mediator approves instead of timing the request out.
        @Test func responsesThatNeverLeftBeforeACrashAreSentByTheRestartedNode() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (alice, bob) = (domain.alice, domain.bob)
                let iou = try await domain.issued("41", to: alice, command: "issue-lost-responses")
                let p1 = domain.p1
                await p1.dropResponsesFromNowOn()
                let key = CommandKey(applicationID: "alice-app", commandID: "transfer-lost-responses")
                let prepared = try await p1.prepare([try domain.transfer(iou, to: bob)], actAs: [alice], command: key)
                let submission = Task { try await p1.submit(prepared) }
                await p1.awaitPending(prepared.rootHash)
                let requestTime = try #require(await p1.lockedContracts[iou]).microsSinceEpoch
                let p1Member = domain.members[0].member.description
                func responsesOfParticipant1() async throws -> Int {
                    try await StoredSequencerEvent.all(url: fixture.url).filter {
                        $0.messageID == "response-\(requestTime)" && $0.sender == p1Member
                    }.count
                }
                #expect(try await responsesOfParticipant1() == 0, "participant1's responses reached the sequencer")

                await p1.crash()
                _ = await submission.result
                let restarted = try await domain.restart(0)
                #expect(try await restarted.outcome(ofRequest: prepared.rootHash) == "approved")
                #expect(try await restarted.command(key, actAs: [domain.alice])?.state == .succeeded)
                #expect(try await domain.p2.outcome(ofRequest: prepared.rootHash) == "approved")
                #expect(try await responsesOfParticipant1() == 1)
                #expect(try await domain.p2.activeContracts(of: bob).count == 1)
                #expect(await restarted.lockedContracts.isEmpty)
                await domain.stop()
            }
        }

        @Test func theCursorIsStoredAfterAtMostTheConfiguredNumberOfEventsWithoutEffects() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                try await domain.setDomainParameters(
                    TestDomain.parameters(reconciliationIntervalMicros: 1000 * 86_400_000_000), serial: 2)
                await domain.p1.stop()
                let lazy = ParticipantConfiguration(cursorStoreEventsMax: 3, cursorStoreInterval: .seconds(3600))
                let p1 = try await domain.restart(0, configuration: lazy)
                let session = try await SequencerClient.authenticate(
                    try await RPCClient.connect(
                        host: domain.endpoint.host, port: domain.endpoint.port, security: domain.endpoint.security),
                    member: domain.members[2].member.description, key: domain.members[2].signingKey,
                    domain: domain.domain.domain.description, sequencerKeys: [domain.domain.sequencerKey.publicKey])
                let content = try Weft.V1.EnvelopeContent(message: .informeeMessage(.init())).serializedBytes()
                let p1Member = domain.members[0].member.description
                func nothing(_ number: Int) async throws {
                    try await session.send(
                        Weft.V1.Batch(envelopes: [.init(content: content, recipients: [p1Member])]),
                        messageID: "nothing-\(number)")
                }
                // One event first: from then on, its counter is where the count starts.
                try await nothing(0)
                await Self.processed(p1, before: 1)
                let participant = domain.members[0].id.description
                func storedCounter() throws -> Int64 {
                    try Self.storedCounter(fixture.url, participant)
                }
                let start = try storedCounter()
                let first = await p1.nextCounter
                // participant1 may store at the first of these if the count began before it:
                // what counts is that the stored cursor never lags by three or more.
                for number in 1...7 { try await nothing(number) }
                await Self.processed(p1, before: first + 7)
                let processed = await p1.nextCounter
                let stored = try storedCounter()
                #expect(stored > start, "stored \(stored), first \(first), processed \(processed)")
                #expect(Int64(processed) - stored < 3, "stored \(stored), processed \(processed)")
                await p1.crash()
                // After the crash, the restarted node resumes within the bound and catches up.
                let restarted = try await domain.restart(0)
                await Self.processed(restarted, before: processed)
                #expect(await restarted.nextCounter >= processed)
                await restarted.stop()
                await domain.stop()
            }
        }

        /// A participant without the domain's topology history takes no part in requests: it
        /// could check nothing, and storing a request would store the cursor with it, past the
        /// topology broadcasts held in memory until the history arrives. The history is lost by
        /// hand here, before a restart (the real case is a member that a request reaches before
        /// the sequencers sent it the history). It stores neither the request nor a cursor past
        /// it; the mediator times the request out.
        @Test func aParticipantWithoutTheTopologyHistoryStoresNoRequestAndNoCursorPastIt() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (alice, bob) = (domain.alice, domain.bob)
                let iou = try await domain.issued("40", to: alice, command: "issue-no-history")
                // A 3 s response timeout: participant2, which confirms for the bank, will not answer.
                try await domain.setParticipantResponseTimeout(micros: 3_000_000, serial: 2)
                await domain.p2.stop()
                let member = domain.members[1]
                let participant = member.id.description
                let database = try PostgresConnection(url: fixture.url)
                _ = try database.execute(
                    "DELETE FROM member_topology_transactions WHERE member = $1", [.text(member.member.description)])
                func requestRows() throws -> Int64 {
                    try database.execute(
                        "SELECT count(*) FROM participant_requests WHERE participant = $1", [.text(participant)]
                    ).rows.first?.first?.int64 ?? -1
                }
                let rowsBefore = try requestRows()
                let p2 = try await DomainHarness.startNode(
                    member, store: ParticipantStore(database: PostgresDatabase(url: fixture.url), participant: member.id),
                    url: fixture.url, endpoint: domain.endpoint, domain: domain.domain, ready: false)
                let storedBefore = try Self.storedCounter(fixture.url, participant)

                let prepared = try await domain.p1.prepare(
                    [try domain.transfer(iou, to: bob)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "transfer-no-history"))
                let completion = try await domain.p1.submit(prepared)
                #expect(completion.reasonID == RejectReason.timedOut, "completion \(completion)")

                // The verdict on participant2's stream (the first event from the mediator since
                // its stored cursor): once it processed that, it has seen the request too.
                let session = try await SequencerClient.authenticate(
                    try await RPCClient.connect(
                        host: domain.endpoint.host, port: domain.endpoint.port, security: domain.endpoint.security),
                    member: member.member.description, key: member.signingKey,
                    domain: domain.domain.domain.description, sequencerKeys: [domain.domain.sequencerKey.publicKey])
                var verdictCounter: UInt64?
                for try await event in try session.subscribe(from: UInt64(max(storedBefore, 0))) {
                    if case .deliver(let deliver)? = event.event,
                        deliver.sender == domain.domain.mediatorMember.description
                    {
                        verdictCounter = event.counter
                        break
                    }
                }
                await session.rpc.close()
                await Self.processed(p2, before: try #require(verdictCounter) + 1)
                #expect(try requestRows() == rowsBefore)
                #expect(try Self.storedCounter(fixture.url, participant) == storedBefore)
                #expect(await p2.lockedContracts.isEmpty)
                await p2.stop()
                await domain.stop()
            }
        }
    }
}
