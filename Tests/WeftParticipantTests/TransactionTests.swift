import Foundation
import Testing
import WeftContracts
import WeftCrypto
import WeftMediator
@_spi(Testing) import WeftParticipant
import WeftProtocol
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftWire

/// Transactions end to end on a real domain (DomainHarness): PostgreSQL, a sequencer over TLS,
/// the mediator, two participant nodes.
extension OnARealDomain {
    @Suite(.timeLimit(.minutes(5))) struct TransactionTests {
        /// Every request decided here is remembered for its waiters, also other participants'
        /// (any submitter can make a participant an informee): in memory only the last ones,
        /// the rest read from the store. Before, the map grew by one entry per request for ever.
        @Test func outcomesAreRememberedBoundedAndTheRestReadFromTheStore() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2) = (domain.p1, domain.p2)
                await p1.rememberOutcomes(atMost: 4)
                var transactionIDs: [String] = []
                for number in 1...10 {
                    let issue = try await p2.submit(
                        [try domain.issue("\(number)", to: domain.alice)], actAs: [domain.bank],
                        command: CommandKey(applicationID: "bank-app", commandID: "remembered-\(number)"))
                    guard case .succeeded(let transactionID, _) = issue else {
                        Issue.record("issue \(number) did not succeed: \(issue)")
                        return
                    }
                    transactionIDs.append(transactionID)
                }
                try await p1.waitForLedgerEnd(10)
                let remembered = await p1.rememberedOutcomeCount
                #expect(remembered <= 4 && remembered >= 2, "\(remembered)")
                for transactionID in transactionIDs {
                    #expect(try await p1.outcome(ofRequest: Digest32(hex: transactionID)!) == "approved")
                }
                #expect(await p2.rememberedOutcomeCount == 10, "the default keeps many more")
                await domain.stop()
            }
        }

        @Test func iouIssueAndTransferEachParticipantSeesItsProjection() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2) = (domain.p1, domain.p2)
                let (alice, bob, bank) = (domain.alice, domain.bob, domain.bank)

                // The bank (participant2) issues an IOU to alice (participant1).
                let issue = try await p2.submit(
                    [try domain.issue("100", to: alice)], actAs: [bank],
                    command: CommandKey(applicationID: "bank-app", commandID: "issue-1"))
                guard case .succeeded(let issueID, let issueOffset) = issue else {
                    Issue.record("the issue did not succeed: \(issue)")
                    return
                }
                #expect(issueOffset == 1)
                #expect(try await p1.outcome(ofRequest: Digest32(hex: issueID)!) == "approved")
                let aliceContracts = try await p1.activeContracts(of: alice)
                #expect(aliceContracts.count == 1)
                let iou = try #require(aliceContracts.first).id

                // Alice transfers it to bob: both participants confirm (alice; the bank).
                let transfer = try await p1.submit(
                    [try domain.transfer(iou, to: bob)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "transfer-1"))
                guard case .succeeded(let transferID, _) = transfer else {
                    Issue.record("the transfer did not succeed: \(transfer)")
                    return
                }
                #expect(try await p2.outcome(ofRequest: Digest32(hex: transferID)!) == "approved")

                // Alice: the IOU created, then archived; nothing of bob's new IOU.
                let aliceTransactions = try await p1.transactions(of: alice)
                #expect(aliceTransactions.map(\.transactionID) == [issueID, transferID])
                #expect(aliceTransactions.map { $0.events.map(\.contractID) } == [[iou], [iou]])
                guard case .archived? = aliceTransactions.last?.events.first else {
                    Issue.record("alice's second transaction is not the archive: \(aliceTransactions)")
                    return
                }
                #expect(try await p1.activeContracts(of: alice).isEmpty)
                #expect(aliceTransactions.last?.commandID == "transfer-1")

                // Bob: only the new IOU, owned by him, issued by the bank.
                let bobTransactions = try await p2.transactions(of: bob)
                #expect(bobTransactions.map(\.transactionID) == [transferID])
                let bobContracts = try await p2.activeContracts(of: bob)
                #expect(bobContracts.count == 1)
                let newIOU = try #require(bobContracts.first)
                #expect(newIOU.id != iou)
                #expect(newIOU.contract.signatories == [bank] && newIOU.contract.observers == [bob])

                // The bank: issue, then the archive and the create.
                let bankTransactions = try await p2.transactions(of: bank)
                #expect(bankTransactions.map(\.transactionID) == [issueID, transferID])
                #expect(bankTransactions.last?.events.map(\.contractID) == [iou, newIOU.id])
                #expect(try await p2.activeContracts(of: bank).map(\.id) == [newIOU.id])

                // Where they share contracts, the participants agree: the transaction ids and the
                // data of the IOU both saw created.
                let p1Created = aliceTransactions.first?.events.first
                let p2Created = bankTransactions.first?.events.first
                #expect(p1Created == p2Created)
                // Participant1 hosts neither bob nor the bank: it stores nothing of them.
                #expect(try await p1.activeContracts(of: bob).isEmpty)
                #expect(try await p1.transactions(of: bank).isEmpty)
                await domain.stop()
            }
        }

        /// Issue 7's acceptance: 100 races, each on a fresh IOU, two applications transferring it
        /// at once — in every race exactly one commits and the other is rejected (locked or
        /// inactive contract), and no submission throws.
        @Test(.timeLimit(.minutes(6))) func doubleSpendOneCommitsTheOtherIsRejected() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2, alice, bob, bank) = (domain.p1, domain.p2, domain.alice, domain.bob, domain.bank)
                let races = 100
                // The bank issues alice the 100 IOUs in one transaction (one root view each).
                let issue = try await p2.submit(
                    try (0..<races).map { try domain.issue("\($0 + 1)", to: alice) }, actAs: [bank],
                    command: CommandKey(applicationID: "bank-app", commandID: "issue-races"))
                guard case .succeeded(let issueID, let issueOffset) = issue else {
                    Issue.record("issuing the IOUs failed: \(issue)")
                    return
                }
                _ = try await p1.outcome(ofRequest: Digest32(hex: issueID)!)
                let ious = try #require(try await p2.transactions(of: bank, after: issueOffset - 1).first).events.map(
                    \.contractID)
                try #require(ious.count == races)
                #expect(Set(try await p1.activeContracts(of: alice).map(\.id)) == Set(ious))

                let reasons = [RejectReason.Participant.lockedContracts, RejectReason.Participant.inactiveContracts]
                var winners: [Digest32] = []
                for (race, iou) in ious.enumerated() {
                    // Two applications transfer the same IOU at once: both interpret (it is
                    // active), both requests are sequenced, one after the other.
                    let first = try await p1.prepare(
                        [try domain.transfer(iou, to: bob)], actAs: [alice],
                        command: CommandKey(applicationID: "app-1", commandID: "spend-\(race)"))
                    let second = try await p1.prepare(
                        [try domain.transfer(iou, to: alice)], actAs: [alice],
                        command: CommandKey(applicationID: "app-2", commandID: "spend-\(race)"))
                    async let a = p1.submit(first)
                    async let b = p1.submit(second)
                    let completions = try await [a, b]
                    let succeeded = completions.filter { if case .succeeded = $0 { true } else { false } }
                    let rejected = completions.compactMap(\.reasonID)
                    #expect(
                        succeeded.count == 1 && rejected.count == 1 && rejected.allSatisfy(reasons.contains),
                        "race \(race): \(completions)")
                    guard succeeded.count == 1 else { continue }
                    winners.append(completions[0].reasonID == nil ? first.rootHash : second.rootHash)
                }
                #expect(winners.count == races)
                // Every winner is committed on participant2 too; no raced IOU is active anywhere,
                // and each became exactly one new IOU, alice's or bob's.
                for winner in winners { #expect(try await p2.outcome(ofRequest: winner) == "approved") }
                let raced = Set(ious)
                let bankActive = try await p2.activeContracts(of: bank).map(\.id)
                let aliceActive = try await p1.activeContracts(of: alice).map(\.id)
                let bobActive = try await p2.activeContracts(of: bob).map(\.id)
                #expect(raced.isDisjoint(with: bankActive) && raced.isDisjoint(with: aliceActive))
                #expect(aliceActive.count + bobActive.count == races)
                #expect(bankActive.count == races)
                #expect(await p1.lockedContracts.isEmpty)
                #expect(await p2.lockedContracts.isEmpty)
                await domain.stop()
            }
        }

        @Test func theSameCommandIDTwiceYieldsOneTransactionAndADuplicateAnswer() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p2, alice, bank) = (domain.p2, domain.alice, domain.bank)
                let key = CommandKey(applicationID: "bank-app", commandID: "issue-once")
                let first = try await p2.submit([try domain.issue("10", to: alice)], actAs: [bank], command: key)
                guard case .succeeded(let transactionID, _) = first else {
                    Issue.record("the first submission did not succeed: \(first)")
                    return
                }
                let second = try await p2.submit([try domain.issue("10", to: alice)], actAs: [bank], command: key)
                guard case .duplicate(let previous) = second else {
                    Issue.record("the second submission is not a duplicate: \(second)")
                    return
                }
                #expect(previous.state == .succeeded && previous.transactionID == transactionID)
                #expect(try await p2.transactions(of: bank).count == 1)
                #expect(try await p2.activeContracts(of: bank).count == 1)
                // Another application may use the same command id.
                let other = try await p2.submit(
                    [try domain.issue("10", to: alice)], actAs: [bank],
                    command: CommandKey(applicationID: "other-app", commandID: "issue-once"))
                guard case .succeeded = other else {
                    Issue.record("another application's command was refused: \(other)")
                    return
                }
                #expect(try await p2.transactions(of: bank).count == 2)

                // Two submissions of one command at once: one is sent, the other is its duplicate.
                let raced = CommandKey(applicationID: "bank-app", commandID: "raced")
                async let a = p2.submit([try domain.issue("11", to: alice)], actAs: [bank], command: raced)
                async let b = p2.submit([try domain.issue("11", to: alice)], actAs: [bank], command: raced)
                let both = try await [a, b]
                #expect(both.filter { if case .succeeded = $0 { true } else { false } }.count == 1)
                #expect(both.filter { if case .duplicate = $0 { true } else { false } }.count == 1)
                #expect(try await p2.transactions(of: bank).count == 3)

                // The act-as parties are part of the key (ledger.proto; Canton's change id): bob,
                // hosted here too, may use the bank application's command id ...
                let bob = domain.bob
                let byBob = try await p2.submit([try domain.issue("13", to: alice, by: bob)], actAs: [bob], command: key)
                guard case .succeeded = byBob else {
                    Issue.record("bob's command was refused for the bank's command id: \(byBob)")
                    return
                }
                #expect(try await p2.command(key, actAs: [bob])?.state == .succeeded)
                #expect(try await p2.command(key, actAs: [bank])?.transactionID == transactionID)
                // ... and the same parties named in another order are the same change.
                let jointly = CommandKey(applicationID: "bank-app", commandID: "jointly")
                let joint = try await p2.submit([try domain.issue("14", to: alice)], actAs: [bank, bob], command: jointly)
                guard case .succeeded(let jointID, _) = joint else {
                    Issue.record("a command acting as two parties did not commit: \(joint)")
                    return
                }
                let reordered = try await p2.submit([try domain.issue("14", to: alice)], actAs: [bob, bank], command: jointly)
                guard case .duplicate(let jointFirst) = reordered else {
                    Issue.record("the same parties in another order are not the same change: \(reordered)")
                    return
                }
                #expect(jointFirst.transactionID == jointID && jointFirst.actAs == [bank, bob].sorted())
                #expect(try await p2.transactions(of: bank).count == 4)
                await domain.stop()
            }
        }

        @Test func aCommandInFlightStaysTakenAfterItsDeduplicationPeriod() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p2, alice, bank) = (domain.p2, domain.alice, domain.bank)
                // The mediator node is down: the first request stays in flight.
                await domain.mediator.stop()
                let key = CommandKey(applicationID: "bank-app", commandID: "in-flight")
                let first = try await p2.prepare(
                    [try domain.issue("12", to: alice)], actAs: [bank], command: key, deduplicationPeriodMicros: 0)
                async let firstCompletion = p2.submit(first)
                await p2.awaitPending(first.rootHash)
                // Its period (none) is over, but it is in flight: the same command id again is its
                // duplicate, both in the check before interpreting and in the one that records it.
                let again = try await p2.submit(
                    [try domain.issue("12", to: alice)], actAs: [bank], command: key, deduplicationPeriodMicros: 0)
                guard case .duplicate(let previous) = again else {
                    Issue.record("a second submission of a command in flight was accepted: \(again)")
                    try await domain.mediator.start()  // so that the first submission's wait ends
                    return
                }
                #expect(previous.state == .inFlight && previous.submissionID == first.submissionID)
                let prepared = try await p2.prepare(
                    [try domain.issue("12", to: alice)], actAs: [bank], command: key, deduplicationPeriodMicros: 0)
                guard case .duplicate = try await p2.submit(prepared) else {
                    Issue.record("recording a command in flight a second time was not refused")
                    try await domain.mediator.start()
                    return
                }
                // The first one commits, once, and its completion is its own.
                try await domain.mediator.start()
                guard case .succeeded(let transactionID, _) = try await firstCompletion else {
                    Issue.record("the first submission did not succeed")
                    return
                }
                #expect(transactionID == first.rootHash.description)
                #expect(try await p2.command(key, actAs: [bank])?.submissionID == first.submissionID)
                #expect(try await p2.transactions(of: bank).count == 1)
                #expect(try await p2.activeContracts(of: bank).count == 1)
                await domain.stop()
            }
        }

        @Test func aSubmissionCancelledWhileItsCommandIsRecordedIsSentAllTheSame() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice) = (domain.p1, domain.alice)
                let (key, prepared) = try await Self.aliceIssue(domain, "4", command: "cancelled-wait")
                // The command's insert waits for this lock: the caller is cancelled while its
                // command is being recorded.
                let blocker = try PostgresConnection(url: fixture.url)
                _ = try blocker.execute("BEGIN")
                _ = try blocker.execute("LOCK TABLE participant_commands IN SHARE MODE")
                let submission = Task { try await p1.submit(prepared) }
                let url = fixture.url
                try await eventually("the command's insert waits for the lock") {
                    try PostgresConnection(url: url).execute(
                        """
                        SELECT count(*) FROM pg_stat_activity
                        WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO participant_commands%'
                        """
                    ).rows.first?.first?.int64 == 1
                }
                submission.cancel()
                _ = try blocker.execute("COMMIT")
                await #expect(throws: CancellationError.self) { try await submission.value }
                // The request went out all the same: the command commits, long before its max
                // sequencing time (60 s) would have rejected it as never sequenced.
                let record = try await Self.decided(key, on: p1, within: .seconds(30))
                #expect(record?.state == .succeeded, "\(String(describing: record))")
                #expect(try await p1.activeContracts(of: alice).count == 1)
                await domain.stop()
            }
        }

        @Test func aStoppedParticipantRefusesSubmissionsAndLedgerWaits() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let p1 = domain.p1
                let (key, prepared) = try await Self.aliceIssue(domain, "5", command: "after-stop")
                let ledgerWait = Task { try await p1.waitForLedgerEnd(1) }
                await p1.stop()
                // Told at once, instead of waiting for a completion or a ledger end that this
                // node will never bring.
                await #expect(throws: ParticipantError.stopped) {
                    _ = try await ParticipantNode.within(.seconds(20)) { try await p1.submit(prepared) }
                }
                #expect(try await p1.command(key) == nil, "a command was recorded on a stopped node")
                await #expect(throws: ParticipantError.stopped) { try await ledgerWait.value }
                await #expect(throws: ParticipantError.stopped) {
                    _ = try await ParticipantNode.within(.seconds(20)) { try await p1.waitForLedgerEnd(1) }
                }
                await domain.stop()
            }
        }

        @Test func aRequestNotSequencedInTimeCompletesWithTheSequencersReasonAndMayBeRetried() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (alice, bob) = (domain.alice, domain.bob)
                await domain.p1.stop()
                // A participant that gives its requests 1 µs to be sequenced.
                let hurried = try await domain.restart(
                    0, configuration: ParticipantConfiguration(maxSequencingDelayMicros: 1))
                let key = CommandKey(applicationID: "alice-app", commandID: "late")
                let late = try await hurried.submit(
                    [try domain.issue("9", to: bob, by: alice)], actAs: [alice], command: key)
                #expect(late.reasonID == "SEQUENCER_MAX_SEQUENCING_TIME_EXCEEDED")
                #expect(try await hurried.command(key, actAs: [alice])?.state == .rejected)
                #expect(await hurried.ledgerEndOffset == 0)
                await hurried.stop()

                // A rejected command id may be submitted again, and then it commits.
                let patient = try await domain.restart(0)
                let retried = try await patient.submit(
                    [try domain.issue("9", to: bob, by: alice)], actAs: [alice], command: key)
                guard case .succeeded(let transactionID, _) = retried else {
                    Issue.record("the retry did not succeed: \(retried)")
                    return
                }
                #expect(try await domain.p2.outcome(ofRequest: Digest32(hex: transactionID)!) == "approved")
                #expect(try await domain.p2.activeContracts(of: bob).count == 1)
                await patient.stop()
                await domain.stop()
            }
        }

        @Test func aCommandRecordedButNeverSentIsRejectedOnceTheStreamPassesItsMaxSequencingTime() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let alice = domain.alice
                await domain.p1.stop()
                let hurried = try await domain.restart(0, configuration: ParticipantConfiguration(maxSequencingDelayMicros: 1_000_000))
                let key = CommandKey(applicationID: "alice-app", commandID: "never-sent")
                let prepared = try await hurried.prepare([try domain.issue("3", to: alice, by: alice)], actAs: [alice], command: key)
                // The node is killed between recording the command and sending its request.
                try await hurried.recordWithoutSending(prepared)
                // Whoever waits on the stopped node for an outcome it will never process is told so,
                // whether the wait began before the stop or after it.
                let waiter = Task { try await hurried.outcome(ofRequest: prepared.rootHash) }
                await hurried.stop()
                await #expect(throws: ParticipantError.stopped) { try await waiter.value }
                await #expect(throws: ParticipantError.stopped) { try await hurried.outcome(ofRequest: prepared.rootHash) }
                // It stays down past the request's max sequencing time, so the restarted node does
                // not send the request again (the sequencer could no longer sequence it).
                let untilExpiry = prepared.maxSequencingTime - Int64(Date().timeIntervalSince1970 * 1_000_000) + 100_000
                if untilExpiry > 0 { try await Task.sleep(for: .microseconds(untilExpiry)) }  // the time under test
                let restarted = try await domain.restart(0)
                // Nothing else happens on the domain: the participant asks the sequencer for the
                // time itself, and once an event sequenced after the request's max sequencing time
                // reaches it, the command is rejected.
                let record = try await Self.decided(ChangeID(key, actAs: [alice]), on: restarted, within: .seconds(30))
                #expect(record?.state == .rejected && record?.reasonID == "PARTICIPANT_REQUEST_NOT_SEQUENCED", "\(String(describing: record))")
                // Nothing was committed for it, and its command id is free: a retry commits.
                #expect(await restarted.ledgerEndOffset == 0)
                let retried = try await restarted.submit([try domain.issue("3", to: alice, by: alice)], actAs: [alice], command: key)
                guard case .succeeded = retried else {
                    Issue.record("the retry did not commit: \(retried)")
                    return
                }
                await restarted.stop()
                await domain.stop()
            }
        }

        @Test func aCommandRecordedButNotSentBeforeACrashIsSentByTheRestartedNode() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let alice = domain.alice
                let key = CommandKey(applicationID: "alice-app", commandID: "recorded-before-crash")
                let prepared = try await domain.p1.prepare(
                    [try domain.issue("3", to: alice, by: alice)], actAs: [alice], command: key)
                // The node is killed between recording the command and sending its request, well
                // within the request's max sequencing time (60 s).
                try await domain.p1.recordWithoutSending(prepared)
                await domain.p1.crash()
                let restarted = try await domain.restart(0)
                #expect(try await restarted.command(key, actAs: [alice])?.state != .rejected)
                // The restarted node sends the request it recorded: it commits, with nothing else
                // happening on the domain (no event would pass its max sequencing time).
                let record = try await Self.decided(ChangeID(key, actAs: [alice]), on: restarted, within: .seconds(30))
                guard let record, record.state == .succeeded else {
                    Issue.record("the command recorded before the crash did not commit: \(String(describing: record))")
                    return
                }
                #expect(record.transactionID == prepared.rootHash.description)
                #expect(try await restarted.outcome(ofRequest: prepared.rootHash) == "approved")
                #expect(await restarted.ledgerEndOffset == 1)
                #expect(try await restarted.activeContracts(of: alice).count == 1)
                await restarted.stop()
                await domain.stop()
            }
        }

        /// A choice that creates a contract and exercises a choice on it: the create and the
        /// exercise are sibling views (their informees differ from the choice's), so the
        /// exercise's input was created by another view of the same request. It is no input
        /// from the ledger: neither inactive nor to lock, and it ends archived, never active.
        @Test func aContractCreatedAndConsumedInOneTransactionAcrossViewsCommits() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2, alice, bank) = (domain.p1, domain.p2, domain.alice, domain.bank)
                let source = """
                    package mint;
                    template Token {
                        issuer: Party;
                        owner: Party;
                        signatory issuer;
                        observer owner;
                        choice Reassign(newOwner: Party): ContractId<Token>
                            controller issuer
                        {
                            return create this with { owner = newOwner };
                        }
                    }
                    template Minter {
                        bank: Party;
                        signatory bank;
                        choice MintAndGive(first: Party, next: Party): ContractId<Token>
                            controller bank
                        {
                            let token = create Token { issuer = bank, owner = first };
                            return exercise token Reassign { newOwner = next };
                        }
                    }
                    """
                let package = try Package(source: source, file: "mint.weft")
                _ = try await p1.upload(packageSource: source, file: "mint.weft")
                _ = try await p2.upload(packageSource: source, file: "mint.weft")
                let minted = try await p2.submit(
                    [.create(try package.templateID("Minter"), argument: try package.record("Minter", ["bank": .party(bank)]))],
                    actAs: [bank], command: CommandKey(applicationID: "bank-app", commandID: "minter"))
                guard case .succeeded = minted, let minter = try await p2.activeContracts(of: bank).first?.id else {
                    Issue.record("the minter was not created: \(minted)")
                    return
                }
                let prepared = try await p2.prepare(
                    [
                        .exercise(
                            try package.templateID("Minter"), contract: minter, choice: "MintAndGive",
                            argument: try package.arguments("Minter", "MintAndGive", ["first": .party(alice), "next": .party(alice)]))
                    ], actAs: [bank], command: CommandKey(applicationID: "bank-app", commandID: "mint-and-give"))
                // The case under test: an input of one view created by a sibling view.
                let created = Set(prepared.views.views.flatMap { $0.participantData.createdCore.map(\.id) })
                #expect(prepared.views.views.contains { view in view.participantData.coreInputs.contains { created.contains($0.id) } })
                let completion = try await p2.submit(prepared)
                guard case .succeeded = completion else {
                    Issue.record("the transaction was rejected: \(completion)")
                    return
                }
                try await p1.waitForLedgerEnd(1)
                // One token stays: the reassigned one; the first was created and archived.
                for (node, party) in [(p1, alice), (p2, bank)] {
                    let tokens = try await node.activeContracts(of: party).filter { $0.contract.template.name == "Token" }
                    #expect(tokens.count == 1, "\(party): \(tokens.map(\.id))")
                    // Its flat transaction: the minter archived (the bank's only) and the token
                    // created; the transient token neither created nor archived.
                    let last = try await node.transactions(of: party).last
                    let tokenEvents = last?.events.filter {
                        switch $0 {
                        case .created(_, let contract): contract.template.name == "Token"
                        case .archived(_, let template): template.name == "Token"
                        }
                    }
                    #expect(tokenEvents?.map(\.contractID) == tokens.map(\.id), "\(party): \(String(describing: last?.events))")
                }
                // Nor stored as an event of a contract that was never stored.
                let orphans = try PostgresConnection(url: fixture.url).execute(
                    """
                    SELECT count(*) FROM participant_events e WHERE NOT EXISTS (
                        SELECT 1 FROM participant_contracts c WHERE c.participant = e.participant AND c.contract_id = e.contract_id)
                    """
                ).rows.first?.first?.int64
                #expect(orphans == 0)
                await domain.stop()
            }
        }

        @Test func aCommandWhoseRecordingAnswerWasLostIsSentAllTheSame() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice) = (domain.p1, domain.alice)
                let key = CommandKey(applicationID: "alice-app", commandID: "recording-answer-lost")
                let prepared = try await p1.prepare([try domain.issue("3", to: alice, by: alice)], actAs: [alice], command: key)
                // The command is stored, and the connection lost before its answer: the caller
                // is told the submission failed.
                await p1.loseNextRecordingAnswer()
                await #expect(throws: PostgresError.self) { try await p1.submit(prepared) }
                // The application's retry is the stored command's duplicate, and the stored
                // command's request is sent all the same: it commits, with no restart.
                let retry = try await p1.submit([try domain.issue("3", to: alice, by: alice)], actAs: [alice], command: key)
                guard case .duplicate = retry else {
                    Issue.record("the retry was not the stored command's duplicate: \(retry)")
                    return
                }
                let record = try await Self.decided(ChangeID(key, actAs: [alice]), on: p1, within: .seconds(30))
                #expect(record?.state == .succeeded, "\(String(describing: record))")
                #expect(record?.submissionID == prepared.submissionID)
                #expect(await p1.ledgerEndOffset == 1)
                #expect(try await p1.activeContracts(of: alice).count == 1)
                await domain.stop()
            }
        }

        @Test func aMediatorCatchingUpLongAfterItsDecisionsStillSendsTheirVerdicts() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice, bob) = (domain.p1, domain.alice, domain.bob)
                let iou = try await domain.issued("31", to: alice, command: "issue-late-verdict")
                // The mediator node is down while the transfer and both responses are sequenced.
                await domain.mediator.stop()
                let url = fixture.url
                let responses = "SELECT count(*) FROM sequencer_events WHERE message_id LIKE 'response-%'"
                let before = try #require(try PostgresConnection(url: url).execute(responses).rows.first?.first?.int64)
                let prepared = try await p1.prepare(
                    [try domain.transfer(iou, to: bob)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "late-verdict"))
                let submission = Task { try await p1.submit(prepared) }
                await domain.p2.awaitPending(prepared.rootHash)
                try await eventually("both participants' responses are sequenced") {
                    try PostgresConnection(url: url).execute(responses).rows.first?.first?.int64 == before + 2
                }
                // It comes back more than a verdict window (1 s here) after the responses: the
                // decision it makes from them is dated by their sequencing time.
                try await Task.sleep(for: .seconds(2))  // the time under test
                var settings = MediatorDriver.Settings()
                settings.verdictSendWindowMicros = 1_000_000
                try await domain.mediator.start(settings: settings)
                let completed = try await ParticipantNode.within(.seconds(30)) {
                    try await withTaskCancellationHandler { try await submission.value } onCancel: { submission.cancel() }
                }
                guard case .succeeded(let transactionID, _)? = completed else {
                    Issue.record("the transfer did not complete after the mediator caught up: \(String(describing: completed))")
                    return
                }
                #expect(try await domain.p2.outcome(ofRequest: Digest32(hex: transactionID)!) == "approved")
                #expect(await domain.p2.lockedContracts.isEmpty)
                #expect(try await domain.p2.activeContracts(of: bob).count == 1)
                await domain.stop()
            }
        }

        @Test func aRequestWithoutAVerdictByItsDecisionTimeIsRejectedByItsParticipants() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2, alice, bob) = (domain.p1, domain.p2, domain.alice, domain.bob)
                let iou = try await domain.issued("41", to: alice, command: "issue-no-verdict")
                // Short timeouts around the transfer only: its decision time is 2 s after its
                // sequencing time. The mediator is down for longer, so no verdict can come by then.
                try await domain.setDomainParameters(
                    TestDomain.parameters(responseTimeoutMicros: 1_000_000, reactionTimeoutMicros: 1_000_000), serial: 2)
                await domain.mediator.stop()
                let key = CommandKey(applicationID: "alice-app", commandID: "no-verdict")
                let prepared = try await p1.prepare([try domain.transfer(iou, to: bob)], actAs: [alice], command: key)
                // Nothing else happens on the domain: each participant asks the sequencer for the
                // time once its clock passes the decision time, and rejects the request.
                let completed = try await ParticipantNode.within(.seconds(30)) { try await p1.submit(prepared) }
                guard case .rejected(let reasonID, let message)? = completed else {
                    Issue.record("the transfer without a verdict did not complete as rejected: \(String(describing: completed))")
                    return
                }
                #expect(reasonID == "PARTICIPANT_VERDICT_TIMED_OUT")
                #expect(message.contains("decision time"), "\(message)")
                let bobsOutcome = try await ParticipantNode.within(.seconds(20)) { try await p2.outcome(ofRequest: prepared.rootHash) }
                #expect(bobsOutcome == "PARTICIPANT_VERDICT_TIMED_OUT")
                #expect(await p1.lockedContracts.isEmpty)
                #expect(await p2.lockedContracts.isEmpty)
                #expect(try await p1.activeContracts(of: alice).map(\.id) == [iou])
                #expect(try await p2.activeContracts(of: bob).isEmpty)
                // The mediator comes back and decides from the responses it finds, but a verdict
                // could only be sequenced after the decision time: it sends none. With the
                // timeouts back to normal, the transfer submitted again commits, once.
                try await domain.mediator.start()
                try await domain.setDomainParameters(TestDomain.parameters(), serial: 3)
                let retried = try await ParticipantNode.within(.seconds(30)) {
                    try await p1.submit(
                        [try domain.transfer(iou, to: bob)], actAs: [alice],
                        command: CommandKey(applicationID: "alice-app", commandID: "no-verdict-retried"))
                }
                guard case .succeeded(let transactionID, _)? = retried else {
                    Issue.record("the retry did not commit: \(String(describing: retried))")
                    return
                }
                #expect(try await p2.outcome(ofRequest: Digest32(hex: transactionID)!) == "approved")
                #expect(try await p2.activeContracts(of: bob).count == 1)
                #expect(try await p1.activeContracts(of: alice).isEmpty)
                #expect(try await p1.outcome(ofRequest: prepared.rootHash) == "PARTICIPANT_VERDICT_TIMED_OUT")
                // The mediator sends its verdicts in request order, so the first request's had its
                // turn before the retry's: no verdict of it reached the sequencer.
                let verdictsOfTheFirst =
                    "SELECT count(*) FROM sequencer_events WHERE message_id LIKE 'verdict-%-\(prepared.rootHash.description.prefix(16))%'"
                #expect(try PostgresConnection(url: fixture.url).execute(verdictsOfTheFirst).rows.first?.first?.int64 == 0)
                // The mediator's own record says why its verdict did not decide the request (it
                // counted both approvals, so it decided "approved").
                let recordOfTheFirst = "SELECT approved, delivered, undelivered_reason FROM mediator_requests WHERE encode(root_hash, 'hex') = $1"
                let rootHash = PostgresValue.text(prepared.rootHash.description.lowercased())
                try await eventually("the mediator stores why the first request's verdict was not sent") {
                    try PostgresConnection(url: fixture.url).execute(recordOfTheFirst, [rootHash]).rows.first?[2].string != nil
                }
                let mediatorRecord = try #require(try PostgresConnection(url: fixture.url).execute(recordOfTheFirst, [rootHash]).rows.first)
                #expect(try mediatorRecord[0].bool == true && mediatorRecord[1].bool == true)
                #expect(try mediatorRecord[2].string == "MEDIATOR_DECISION_TIME_PASSED")
                await domain.stop()
            }
        }

        /// A command that commits after its deduplication period (the mediator was away) is
        /// still deduplicated for a period after its completion: an application that gave up
        /// waiting and submits it again gets the first one's outcome, not a second transaction.
        @Test func aRetryAfterALateCommitIsTheFirstOnesDuplicate() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice) = (domain.p1, domain.alice)
                let key = CommandKey(applicationID: "alice-app", commandID: "late-commit")
                let period: Int64 = 2_000_000
                await domain.mediator.stop()
                let prepared = try await p1.prepare(
                    [try domain.issue("7", to: alice, by: alice)], actAs: [alice], command: key, deduplicationPeriodMicros: period)
                let submitting = Task { try await p1.submit(prepared) }
                // The period passes while the request waits for its verdict (time under test).
                try await Task.sleep(for: .microseconds(period + 500_000))
                try await domain.mediator.start()
                guard case .succeeded(let transactionID, _)? = try await ParticipantNode.within(.seconds(30), { try await submitting.value })
                else {
                    Issue.record("the late command did not commit")
                    return
                }
                let again = try await p1.submit(
                    [try domain.issue("7", to: alice, by: alice)], actAs: [alice], command: key, deduplicationPeriodMicros: period)
                guard case .duplicate(let first) = again else {
                    Issue.record("the retry after the late commit was not refused as a duplicate: \(again)")
                    return
                }
                #expect(first.transactionID == transactionID)
                #expect(try await p1.transactions(of: alice).filter { $0.commandID == "late-commit" }.count == 1)
                await domain.stop()
            }
        }

        /// Participant1's command `commandID` issuing an IOU of `amount` from alice to herself,
        /// prepared and not yet submitted.
        static func aliceIssue(_ domain: DomainHarness, _ amount: String, command commandID: String) async throws
            -> (ChangeID, PreparedSubmission)
        {
            let key = CommandKey(applicationID: "alice-app", commandID: commandID)
            let prepared = try await domain.p1.prepare(
                [try domain.issue(amount, to: domain.alice, by: domain.alice)], actAs: [domain.alice], command: key)
            return (prepared.change, prepared)
        }

        /// The record of command `key` once `node` has decided it (at once if it has), or nil if
        /// that takes longer than `limit`.
        static func decided(_ key: ChangeID, on node: ParticipantNode, within limit: Duration) async throws
            -> CommandRecord?
        {
            let completions = await node.completionEvents()
            return try await ParticipantNode.within(limit) { () async throws -> CommandRecord? in
                if let record = try await node.command(key), record.state != .inFlight { return record }
                for await completion in completions where completion.change == key {
                    return try await node.command(key)
                }
                return nil
            } ?? nil
        }

        @Test func aRestartedParticipantResumesFromItsPersistedCounter() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2, alice, bank) = (domain.p1, domain.p2, domain.alice, domain.bank)
                _ = try await domain.issued("1", to: alice, command: "before")
                let counterBefore = await p1.nextCounter
                #expect(counterBefore > 0)
                await p1.stop()
                // While participant1 is down, the bank issues alice two more IOUs (the bank alone
                // confirms, so the requests are decided without participant1).
                var ids: [String] = []
                for number in 0..<2 {
                    let completion = try await p2.submit(
                        [try domain.issue("\(number + 2)", to: alice)], actAs: [bank],
                        command: CommandKey(applicationID: "bank-app", commandID: "while-down-\(number)"))
                    guard case .succeeded(let id, _) = completion else {
                        Issue.record("an issue failed while participant1 was down: \(completion)")
                        return
                    }
                    ids.append(id)
                }
                #expect(try await domain.p1.transactions(of: alice).count == 1)

                let restarted = try await domain.restart(0)
                #expect(await restarted.nextCounter == counterBefore)
                for id in ids { #expect(try await restarted.outcome(ofRequest: Digest32(hex: id)!) == "approved") }
                let transactions = try await restarted.transactions(of: alice)
                #expect(transactions.count == 3)
                #expect(Set(transactions.map(\.transactionID)).count == 3)
                #expect(try await restarted.activeContracts(of: alice).count == 3)
                let counterAfter = await restarted.nextCounter
                #expect(counterAfter > counterBefore)
                await restarted.stop()

                // Once more: nothing is processed twice.
                let again = try await domain.restart(0)
                #expect(await again.nextCounter == counterAfter)
                #expect(try await again.transactions(of: alice).count == 3)
                #expect(await again.ledgerEndOffset == 3)
                await again.stop()
                await domain.stop()
            }
        }
    }
}

/// Restarts between a request's validation and its verdict.
extension OnARealDomain {
    @Suite(.timeLimit(.minutes(5))) struct PendingRestartTests {
        @Test func aParticipantRestartedWithARequestPendingKeepsItsLocksAndCommitsOnTheVerdict() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice, bob) = (domain.p1, domain.alice, domain.bob)
                let iou = try await domain.issued("30", to: alice, command: "issue-pending")
                // The mediator node is down: the transfer stays pending everywhere.
                await domain.mediator.stop()
                let prepared = try await p1.prepare(
                    [try domain.transfer(iou, to: bob)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "pending-transfer"))
                async let completion = p1.submit(prepared)
                await domain.p2.awaitPending(prepared.rootHash)
                #expect(await domain.p2.lockedContracts.keys.sorted() == [iou])
                await domain.p2.stop()

                // participant2 restarts: the lock is back, from the store. Then the mediator
                // node starts again and decides.
                let p2 = try await domain.restart(1)
                #expect(await p2.lockedContracts.keys.sorted() == [iou])
                try await domain.mediator.start()
                guard case .succeeded(let transactionID, _) = try await completion else {
                    Issue.record("the transfer did not succeed after the restart")
                    return
                }
                #expect(try await p2.outcome(ofRequest: Digest32(hex: transactionID)!) == "approved")
                #expect(await p2.lockedContracts.isEmpty)
                #expect(try await p2.activeContracts(of: bob).count == 1)
                #expect(try await p2.activeContracts(of: domain.bank).map(\.id) != [iou])
                #expect(try await p2.transactions(of: domain.bank).count == 2)
                await p2.stop()
                await domain.stop()
            }
        }
    }
}
