import Foundation
import Testing
@testable import WeftContracts
import WeftCrypto
@_spi(Testing) import WeftParticipant
import WeftProtocol
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftWire

/// A malicious or broken submitter on a real domain: every request is rejected with its reason,
/// and nothing changes on any participant.
extension OnAThirdRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct AttackTests {
        /// What the participants hold: it must not change when a request is rejected.
        struct Ledgers: Equatable {
            var ends: [Int64]
            var contracts: [[ContractID]]

            init(_ domain: DomainHarness) async throws {
                ends = [await domain.p1.ledgerEndOffset, await domain.p2.ledgerEndOffset]
                contracts = []
                for (node, parties) in [
                    (domain.p1, [domain.alice, domain.carol]), (domain.p2, [domain.bob, domain.bank, domain.carol]),
                ] {
                    for party in parties { contracts.append(try await node.activeContracts(of: party).map(\.id)) }
                }
            }
        }

        /// Submits `prepared` from participant1 and checks that it is rejected with `reason` on the
        /// submitter and on participant2, and that neither ledger changed.
        func expectRejected(
            _ prepared: PreparedSubmission, _ reason: String, _ domain: DomainHarness,
            sourceLocation: Testing.SourceLocation = #_sourceLocation
        ) async throws {
            let before = try await Ledgers(domain)
            let completion = try await domain.p1.submit(prepared)
            #expect(completion.reasonID == reason, "completion \(completion)", sourceLocation: sourceLocation)
            #expect(
                try await domain.p2.outcome(ofRequest: prepared.rootHash) == reason, sourceLocation: sourceLocation)
            #expect(try await Ledgers(domain) == before, sourceLocation: sourceLocation)
        }

        /// The bank's participant stores alice's IOU (the bank is its issuer), and hosts bob
        /// too: bob's commands must not see it. Before, bob learned from the error that it
        /// exists and whose it is (alice's authority missing), where an id naming nothing is
        /// only unknown.
        @Test func aCommandSeesOnlyItsOwnPartiesContractsOnAParticipantHostingOthers() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p2, bob) = (domain.p2, domain.bob)
                let iou = try await domain.issued("7", to: domain.alice, command: "alices-iou")
                #expect(try await p2.activeContracts(of: domain.bank).map(\.id).contains(iou), "stored on participant2")
                let nothing = try #require(ContractID(hex: String(repeating: "ab", count: 32)))
                for id in [iou, nothing] {
                    let error = await #expect(throws: ParticipantError.self) {
                        _ = try await p2.prepare(
                            [try domain.transfer(id, to: bob)], actAs: [bob],
                            command: CommandKey(applicationID: "bob-app", commandID: "take-\(id)"))
                    }
                    guard case .interpretation(.runtime(.unknownContract(id), _))? = error else {
                        Issue.record("\(id == iou ? "alice's IOU" : "an id naming nothing"): \(String(describing: error))")
                        continue
                    }
                }
                // Disclosed by a stakeholder's application, it is usable (and then refused only
                // for what the command lacks: alice's authority).
                let disclosed = try await domain.p1.activeContracts(of: domain.alice).filter { $0.id == iou }
                let refusal = await #expect(throws: ParticipantError.self) {
                    _ = try await p2.prepare(
                        [try domain.transfer(iou, to: bob)], actAs: [bob],
                        command: CommandKey(applicationID: "bob-app", commandID: "take-disclosed"), disclosedContracts: disclosed)
                }
                guard case .interpretation(.runtime(.missingAuthorization, _))? = refusal else {
                    Issue.record("with the contract disclosed: \(String(describing: refusal))")
                    return
                }
                await domain.stop()
            }
        }

        @Test func aSubmitterActingForAPartyItDoesNotHostIsNotEntitled() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                // participant1 issues as the bank, which participant2 hosts.
                let prepared = try await domain.p1.prepareUnchecked(
                    [try domain.issue("5", to: domain.alice)], actAs: [domain.bank],
                    command: CommandKey(applicationID: "mallory", commandID: "as-bank"))
                try await expectRejected(prepared, RejectReason.Participant.submitterNotEntitled, domain)
                // The honest check refuses it before anything is sent.
                await #expect(throws: ParticipantError.notHostedForSubmission(party: domain.bank.id)) {
                    _ = try await domain.p1.prepare(
                        [try domain.issue("5", to: domain.alice)], actAs: [domain.bank],
                        command: CommandKey(applicationID: "honest", commandID: "as-bank"))
                }
                await domain.stop()
            }
        }

        @Test func aSubmitterWithObservationPermissionIsNotEntitled() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                // participant1 hosts carol with observation permission only.
                let prepared = try await domain.p1.prepareUnchecked(
                    [try domain.issue("5", to: domain.alice, by: domain.carol)], actAs: [domain.carol],
                    command: CommandKey(applicationID: "mallory", commandID: "as-carol"))
                try await expectRejected(prepared, RejectReason.Participant.submitterNotEntitled, domain)
                await domain.stop()
            }
        }

        @Test func aCreateWithoutItsSignatoriesAuthorityIsRejected() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                // Interpreted as the bank, claimed as alice: the bank's IOU without its authority.
                let prepared = try await domain.p1.prepareUnchecked(
                    [try domain.issue("1000000", to: domain.alice)], actAs: [domain.bank], claimedActAs: [domain.alice],
                    command: CommandKey(applicationID: "mallory", commandID: "forged-iou"))
                try await expectRejected(prepared, RejectReason.Participant.missingAuthorization, domain)
                await domain.stop()
            }
        }

        /// participant1 forges the create inside alice's transfer of her own IOU: the bank's IOU
        /// of a billion to alice. The bank is no informee of the transfer, so the bank's
        /// participant receives the create's view without its parent; re-interpreted alone, with
        /// the authority the view names, it conforms. participant1 approves its forgery.
        @Test func aSubviewNeedingAHostedPartysAuthorityWithoutItsParentIsRejected() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice, bank) = (domain.p1, domain.alice, domain.bank)
                let issued = try await p1.submit(
                    [try domain.issue("5", to: alice, by: alice)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "own-iou"))
                guard case .succeeded = issued, let own = try await p1.activeContracts(of: alice).first?.id else {
                    Issue.record("alice's own IOU was not issued: \(issued)")
                    return
                }
                let forgedIOU = ContractInstance(
                    template: try domain.package.templateID("Iou"),
                    argument: try domain.package.record(
                        "Iou",
                        [
                            "issuer": .party(bank), "owner": .party(alice), "currency": .text("USD"),
                            "amount": .decimal(FixedDecimal("1000000000")!),
                        ]),
                    signatories: [bank], observers: [alice])
                let prepared = try await p1.prepareForged(
                    [try domain.transfer(own, to: alice)], actAs: [alice],
                    command: CommandKey(applicationID: "mallory", commandID: "forged-subview")
                ) { transaction in
                    var nodes = transaction.nodes
                    guard let child = nodes.firstIndex(where: { $0.parent != nil }), let seed = nodes[child].seed,
                        case .exercise(var parent) = nodes[nodes[child].parent!].action
                    else { throw ParticipantError.noMediator }
                    let id = Derivation.contractID(seed, forgedIOU)
                    nodes[child].action = .create(Create(contractID: id, instance: forgedIOU))
                    nodes[child].informees = forgedIOU.stakeholders
                    nodes[child].confirmingParties = forgedIOU.signatories
                    parent.result = .contractID(id)
                    nodes[nodes[child].parent!].action = .exercise(parent)
                    return Transaction(nodes: nodes, roots: transaction.roots, inputContracts: transaction.inputContracts)
                }
                // The bank's participant receives the create's view, not the transfer's.
                #expect(prepared.views.views.contains { $0.position.count > 1 && $0.commonData.informees.contains(bank) })
                await p1.approveEveryRequest()
                try await expectRejected(prepared, RejectReason.Participant.missingAuthorization, domain)
                await domain.stop()
            }
        }

        /// participant1 sends alice's transfer of one IOU twice in one request, as two root
        /// views under different seeds: each view alone conforms, the IOU is active and unlocked,
        /// and bob would get two IOUs for one.
        @Test func oneContractConsumedByTwoViewsIsRejected() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice, bob) = (domain.p1, domain.alice, domain.bob)
                let iou = try await domain.issued("7", to: alice, command: "one-iou")
                let prepared = try await p1.prepareForged(
                    [try domain.transfer(iou, to: bob)], actAs: [alice],
                    command: CommandKey(applicationID: "mallory", commandID: "twice")
                ) { transaction in
                    // The root's subtree again, as root 1: seeds derived from another root seed,
                    // so its create makes another contract id.
                    let offset = transaction.nodes.count
                    let rootSeed = Derivation.childSeed(transaction.nodes[0].seed!, 99)
                    var seeds: [Int: NodeSeed] = [0: rootSeed]
                    var ids: [ContractID: ContractID] = [:]
                    var copies: [Node] = []
                    for (index, node) in transaction.nodes.enumerated() {
                        let seed = seeds[index] ?? Derivation.childSeed(seeds[node.parent!]!, node.childIndex)
                        seeds[index] = seed
                        var action = node.action
                        if case .create(let create) = action {
                            let id = Derivation.contractID(seed, create.instance)
                            ids[create.contractID] = id
                            action = .create(Create(contractID: id, instance: create.instance))
                        }
                        copies.append(
                            Node(
                                action: action, seed: seed, parent: node.parent.map { $0 + offset },
                                childIndex: node.parent == nil ? 1 : node.childIndex, informees: node.informees,
                                confirmingParties: node.confirmingParties))
                    }
                    for index in copies.indices {
                        guard case .exercise(var exercise) = copies[index].action else { continue }
                        exercise.children = exercise.children.map { $0 + offset }
                        if case .contractID(let id) = exercise.result, let copy = ids[id] { exercise.result = .contractID(copy) }
                        copies[index].action = .exercise(exercise)
                    }
                    return Transaction(
                        nodes: transaction.nodes + copies, roots: transaction.roots + [offset],
                        inputContracts: transaction.inputContracts)
                }
                #expect(prepared.views.rootViews.count == 2)
                try await expectRejected(prepared, RejectReason.Participant.failedModelConformanceCheck, domain)
                #expect(try await domain.p2.activeContracts(of: bob).isEmpty)
                await domain.stop()
            }
        }

        @Test func mismatchedRootHashMessagesAreRejected() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                var prepared = try await domain.p1.prepare(
                    [try domain.issue("5", to: domain.bob, by: domain.alice)], actAs: [domain.alice],
                    command: CommandKey(applicationID: "mallory", commandID: "other-root"))
                // One root hash message (the last envelope; there is one per informee participant)
                // announces another root hash: the mediator, which reads them all, sees them disagree.
                let last = prepared.batch.envelopes.count - 1
                var content = try Weft.V1.EnvelopeContent(serializedBytes: prepared.batch.envelopes[last].content)
                guard case .rootHash(var message)? = content.message else {
                    Issue.record("the last envelope is not the root hash message")
                    return
                }
                message.rootHash = SHA256.hash(Array("another transaction".utf8))
                content.message = .rootHash(message)
                prepared.batch.envelopes[last].content = try content.serializedBytes()
                // The mediator refuses the request outright; the participants roll it back.
                try await expectRejected(prepared, RejectReason.invalidMessage, domain)
                await domain.stop()
            }
        }

        /// A confirmer that approves what it should reject (here the bank's participant, the only
        /// one that confirms the bank's IOU) gets a second create of a contract id approved: the
        /// same transaction seed and arguments again. Every informee commits the approval, keeping
        /// the contract it has, and goes on processing; before, storing the create again broke
        /// the contracts' key and stopped both participants on that event at every restart.
        @Test func anApprovedCreateOfAnExistingContractIDLeavesTheContractAndStopsNobody() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                await domain.p2.approveEveryRequest()
                let seed = (0..<32).map { UInt8($0) }
                func issue(_ commandID: String) async throws -> PreparedSubmission {
                    try await domain.p2.prepareUnchecked(
                        [try domain.issue("5", to: domain.alice)], actAs: [domain.bank],
                        command: CommandKey(applicationID: "mallory", commandID: commandID), seed: seed)
                }
                let first = try await issue("first")
                guard case .succeeded = try await domain.p2.submit(first) else {
                    Issue.record("the first issue did not commit")
                    return
                }
                #expect(try await domain.p1.outcome(ofRequest: first.rootHash) == "approved")
                let iou = try #require(try await domain.p1.activeContracts(of: domain.alice).first?.id)

                let second = try await issue("second")
                #expect(second.rootHash != first.rootHash)
                let completion = try await domain.p2.submit(second)
                guard case .succeeded(let transactionID, _) = completion else {
                    Issue.record("the second issue did not commit: \(completion)")
                    return
                }
                #expect(transactionID == second.rootHash.description)
                #expect(try await domain.p1.outcome(ofRequest: second.rootHash) == "approved")
                for (node, party) in [(domain.p1, domain.alice), (domain.p2, domain.bank)] {
                    #expect(try await node.activeContracts(of: party).map(\.id) == [iou])
                    let creates = try await node.transactions(of: party).flatMap(\.events).filter {
                        if case .created(iou, _) = $0 { true } else { false }
                    }
                    #expect(creates.count == 1, "\(node.identity.id) shows \(creates.count) creates of \(iou)")
                }
                // Both go on: alice's transfer of the IOU to bob commits on both.
                let transfer = try await domain.p1.submit(
                    [try domain.transfer(iou, to: domain.bob)], actAs: [domain.alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "after"))
                guard case .succeeded(let transferID, _) = transfer else {
                    Issue.record("the transfer did not commit: \(transfer)")
                    return
                }
                #expect(try await domain.p2.outcome(ofRequest: try #require(Digest32(hex: transferID))) == "approved")
                #expect(try await domain.p2.activeContracts(of: domain.bob).count == 1)

                // Pruned, the archived IOU is forgotten as a restart forgets it: the same create
                // once more is stored like any other (before, only by a node restarted since).
                for node in [domain.p1, domain.p2] {
                    _ = try await node.prune(upTo: await node.ledgerEndOffset, ignoreCommitments: true)
                }
                let third = try await issue("third")
                guard case .succeeded = try await domain.p2.submit(third) else {
                    Issue.record("the third issue did not commit")
                    return
                }
                #expect(try await domain.p1.outcome(ofRequest: third.rootHash) == "approved")
                #expect(try await domain.p1.activeContracts(of: domain.alice).map(\.id) == [iou])
                #expect(try await domain.p2.activeContracts(of: domain.bank).map(\.id).contains(iou))
                await domain.stop()
            }
        }

        /// Only the submitting participant sends its request: another member sending the same
        /// batch (views, signature and submission id unchanged) is rejected, and that rejection
        /// does not complete the submitter's command, whose own request commits.
        @Test func aReplayedRequestIsRejectedAndLeavesTheSubmittersCommandAlone() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let iou = try await domain.issued("80", to: domain.alice, command: "issue-replayed")
                // participant2, which confirms for bob, is down: the transfer waits for it, and
                // the replay is decided first (the mediator refuses its uuid at once).
                await domain.p2.stop()
                let prepared = try await domain.p1.prepare(
                    [try domain.transfer(iou, to: domain.bob)], actAs: [domain.alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "replayed"))
                let original = Task { try await domain.p1.submit(prepared) }
                await domain.p1.awaitPending(prepared.rootHash)
                let replay = Task { try await domain.p3.submit(prepared) }
                // Decided outcomes of the requests with the transaction's root hash at `node`, as
                // stored (`outcome(ofRequest:)` waits while the original is pending).
                @Sendable func decided(at node: ParticipantNode) async throws -> [String] {
                    let values: [PostgresValue] = [.text(node.identity.id.description), .bytes(prepared.rootHash.bytes)]
                    return try await StoredSequencerEvent.query(fixture.url) { connection in
                        try connection.execute(
                            """
                            SELECT outcome FROM participant_requests
                            WHERE participant = $1 AND root_hash = $2 AND outcome IS NOT NULL ORDER BY request_ts
                            """, values
                        ).rows.map { try $0[0].string ?? "" }
                    }
                }
                try await eventually("participant1 decided the replay") { try await decided(at: domain.p1).count == 1 }
                #expect(try await decided(at: domain.p1).first != "approved")
                #expect(try await domain.p1.command(prepared.change)?.state == .inFlight)
                // participant2 returns, with the mediator down: it decides the replay (its verdict
                // was sequenced), while the original request waits for the mediator. Asked for
                // the outcome then, it waits for the original's, not answer the replay's.
                await domain.mediator.stop()
                let p2 = try await domain.restart(1)
                try await eventually("participant2 decided the replay") { try await decided(at: p2).count == 1 }
                let p2Outcome = Task { try await p2.outcome(ofRequest: prepared.rootHash) }
                try await domain.mediator.start()
                // The original request commits, and its command with it.
                let completion = try await ParticipantNode.within(.seconds(30)) { try await original.value }
                guard case .succeeded(let transactionID, _) = completion else {
                    Issue.record("the submitter's command did not commit: \(completion)")
                    return
                }
                #expect(try await domain.p1.command(prepared.change)?.transactionID == transactionID)
                #expect(try await ParticipantNode.within(.seconds(20)) { try await p2Outcome.value } == "approved")
                #expect(try await p2.activeContracts(of: domain.bob).map(\.id).count == 1)
                // Restarted, participant1 decides another replay (participant2 sends the batch
                // now): the transaction's outcome is still its approval, kept in the store.
                await domain.p1.stop()
                let p1 = try await domain.restart(0)
                let again = Task { try await p2.submit(prepared) }
                try await eventually("participant1 decided the second replay") { try await decided(at: p1).count == 3 }
                #expect(try await decided(at: p1).last != "approved")
                #expect(try await p1.outcome(ofRequest: prepared.rootHash) == "approved")
                replay.cancel()
                again.cancel()
                await domain.stop()
            }
        }

        @Test func tamperedViewsAreRejected() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let iou = try await domain.issued("70", to: domain.alice, command: "issue-tamper")
                let transfer = try domain.transfer(iou, to: domain.bob)
                let keys = domain.members.map(\.encryptionKey.publicKey)

                // 1. A view whose content was changed and encrypted again: its tree no longer leads
                //    to the signed root hash.
                var changed = try await domain.p1.prepare(
                    [transfer], actAs: [domain.alice], command: CommandKey(applicationID: "mallory", commandID: "t1"))
                var tree = changed.views.viewTree(1)
                guard case .unblinded(var metadata)? = tree.tree?.participantMetadata?.node else {
                    Issue.record("the view tree hides its participant metadata")
                    return
                }
                metadata.workflowID = "tampered"
                tree.tree?.participantMetadata?.node = .unblinded(metadata)
                var sealed = try ViewEncryption.seal(
                    try tree.serializedBytes(),
                    viewHash: PurposeHash(purpose: .transactionView, digest: changed.views.views[1].hash.bytes),
                    recipients: keys
                ).message
                let original = try Weft.V1.EnvelopeContent(serializedBytes: changed.batch.envelopes[2].content)
                guard case .encryptedView(let originalView)? = original.message else {
                    Issue.record("envelope 2 is not view 0.0")
                    return
                }
                sealed.domain = originalView.domain
                sealed.viewType = originalView.viewType
                sealed.submittingParticipantSignature = originalView.submittingParticipantSignature
                changed.batch.envelopes[2].content = try Weft.V1.EnvelopeContent(message: .encryptedView(sealed))
                    .serializedBytes()
                try await expectRejected(changed, RejectReason.Participant.rootHashMismatch, domain)

                // 2. A ciphertext changed in transit: the view does not decrypt.
                var flipped = try await domain.p1.prepare(
                    [transfer], actAs: [domain.alice], command: CommandKey(applicationID: "mallory", commandID: "t2"))
                var content = try Weft.V1.EnvelopeContent(serializedBytes: flipped.batch.envelopes[2].content)
                guard case .encryptedView(var view)? = content.message else {
                    Issue.record("envelope 2 is not view 0.0")
                    return
                }
                view.ciphertext[view.ciphertext.count - 1] ^= 0x01
                content.message = .encryptedView(view)
                flipped.batch.envelopes[2].content = try content.serializedBytes()
                try await expectRejected(flipped, RejectReason.Participant.malformedView, domain)

                // The IOU is still alice's, active and unlocked: the honest transfer goes through.
                let honest = try await domain.p1.submit(
                    [transfer], actAs: [domain.alice], command: CommandKey(applicationID: "alice-app", commandID: "t3"))
                guard case .succeeded = honest else {
                    Issue.record("the honest transfer after the attacks failed: \(honest)")
                    return
                }
                await domain.stop()
            }
        }

        /// A forged view's contract data (with a marker) is rejected by the validators, and
        /// nothing of it reaches the domain's tables: not in the views (encrypted), nor in the
        /// rejections and the verdict, which carry the reason id and a fixed text only
        /// (`ValidationTests.aRejectionSaysNothingOfTheViewBeyondThisParticipant`).
        @Test func aRejectionCarriesNothingOfTheViewToTheDomain() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, alice, bob, bank) = (domain.p1, domain.alice, domain.bob, domain.bank)
                let iou = try await domain.issued("7", to: alice, command: "marked-iou")
                let marker = "MARKER-\(UInt64.random(in: 1...UInt64.max))"
                let forged = ContractInstance(
                    template: try domain.package.templateID("Iou"),
                    argument: try domain.package.record(
                        "Iou",
                        [
                            "issuer": .party(bank), "owner": .party(bob), "currency": .text(marker),
                            "amount": .decimal(FixedDecimal("7")!),
                        ]),
                    signatories: [bank], observers: [bob])
                let prepared = try await p1.prepareForged(
                    [try domain.transfer(iou, to: bob)], actAs: [alice],
                    command: CommandKey(applicationID: "mallory", commandID: "marked-transfer")
                ) { transaction in
                    var nodes = transaction.nodes
                    // The create keeps its contract id with other data: the validators' re-interpretation
                    // gives the same id with the true data, and their rejection quotes both.
                    guard let child = nodes.firstIndex(where: { $0.parent != nil }), case .create(let create) = nodes[child].action
                    else { throw ParticipantError.noMediator }
                    nodes[child].action = .create(Create(contractID: create.contractID, instance: forged))
                    return Transaction(nodes: nodes, roots: transaction.roots, inputContracts: transaction.inputContracts)
                }
                await p1.approveEveryRequest()
                try await expectRejected(prepared, RejectReason.Participant.failedModelConformanceCheck, domain)
                let hexMarker = marker.utf8.map { String(format: "%02x", $0) }.joined()
                for prefix in ["sequencer_", "mediator_"] {
                    let text = try Self.tablesText(url: fixture.url, prefix: prefix)
                    #expect(!text.contains(marker) && !text.lowercased().contains(hexMarker), "plaintext in \(prefix) tables")
                }
                await domain.stop()
            }
        }

        /// Every row of the tables named `prefix…` in the database at `url`, as text.
        static func tablesText(url: String, prefix: String) throws -> String {
            let connection = try PostgresConnection(url: url)
            let tables = try connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE $1",
                [.text(prefix + "%")]
            ).rows.compactMap { try $0[0].string }
            #expect(!tables.isEmpty, "no \(prefix) tables")
            var text = ""
            for table in tables {
                // Table names come from the catalogue, not from input.
                for row in try connection.execute("SELECT t::text FROM \"\(table)\" t").rows {
                    text += (try row[0].string ?? "") + "\n"
                }
            }
            return text
        }

        @Test func noPlaintextReachesTheDomainsTables() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let marker = "MARKER-\(UInt64.random(in: 1...UInt64.max))"
                let completion = try await domain.p2.submit(
                    [try domain.issue("42", to: domain.alice, currency: marker)], actAs: [domain.bank],
                    command: CommandKey(applicationID: "bank-app", commandID: "marked"))
                guard case .succeeded(let transactionID, _) = completion else {
                    Issue.record("the marked issue failed: \(completion)")
                    return
                }
                _ = try await domain.p1.outcome(ofRequest: Digest32(hex: transactionID)!)
                let hexMarker = marker.utf8.map { String(format: "%02x", $0) }.joined()
                func dump(_ prefix: String) throws -> String { try Self.tablesText(url: fixture.url, prefix: prefix) }
                for prefix in ["sequencer_", "mediator_"] {
                    let text = try dump(prefix)
                    #expect(
                        !text.contains(marker) && !text.lowercased().contains(hexMarker),
                        "plaintext in \(prefix) tables")
                }
                // The same search finds it where it belongs: in the participants' own tables.
                let participantTables = try dump("participant_")
                #expect(participantTables.lowercased().contains(hexMarker))
                await domain.stop()
            }
        }
    }
}

/// Topology that changes while the participants run, followed from their streams.
extension OnAThirdRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct TopologyChangeTests {
        /// A participant that only observes for a party confirms nothing, so an approved
        /// transaction can reach it in a package it lacks (any submitter can name its party as an
        /// observer, and confirm alone). Before, it waited for the package's upload, its whole
        /// stream stopped, at every restart again.
        @Test func anObservingParticipantWithoutThePackageCommitsWithoutTheTreeAndGoesOn() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p3, alice) = (domain.p3, domain.alice)
                let (m1, m3) = (domain.members[0], domain.members[2])
                // Alice, hosted on participant1, is observed on participant3 too, which has no packages.
                try await domain.broadcast(
                    [
                        try DomainHarness.hosting(
                            try UniqueIdentifier(parsing: alice.id), on: m3, .observation, serial: 1,
                            signers: [m1.namespaceKey, m3.namespaceKey], domain: domain.domain.domain)
                    ], messageID: "alice-observed-on-participant3")
                #expect(await p3.packages.isEmpty)
                // A request of the bank's participant sequenced after the change and completed
                // shows it applied the change: its next request names participant3 too.
                _ = try await domain.issued("1", to: domain.bob, command: "after-the-change")

                let first = try await domain.issued("11", to: alice, command: "observed-without-package")
                let second = try await domain.issued("12", to: alice, command: "observed-after")
                try await eventually("participant3 committed both issues") { await p3.ledgerEndOffset >= 2 }
                #expect(await p3.missingPackages.isEmpty, "nothing waits")
                #expect(Set(try await p3.activeContracts(of: alice).map(\.id)) == [first, second])
                #expect(try await p3.transactions(of: alice).count == 2)
                // Without the package, no tree: its events are not known here.
                #expect(try await p3.transactionTrees(after: 0, upTo: 2).allSatisfy(\.events.isEmpty))

                // With it, the next one has its tree again.
                try await p3.upload(packageSource: domain.iouSource, file: "iou.weft")
                let third = try await domain.issued("13", to: alice, command: "observed-with-package")
                try await eventually("participant3 committed the third issue") { await p3.ledgerEndOffset >= 3 }
                let trees = try await p3.transactionTrees(after: 2, upTo: 3)
                #expect(trees.count == 1 && trees[0].events.count == 1, "\(trees)")
                #expect(Set(try await p3.activeContracts(of: alice).map(\.id)) == [first, second, third])
                await domain.stop()
            }
        }

        @Test func aConfirmingParticipantWithoutThePackageRejectsAndTheVerdictSaysWhy() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2, p3, alice, bob) = (domain.p1, domain.p2, domain.p3, domain.alice, domain.bob)
                let iou = try await domain.issued("20", to: alice, command: "issue-package")
                let bankID = try UniqueIdentifier(parsing: domain.bank.id)
                let (m2, m3) = (domain.members[1], domain.members[2])
                // The bank moves its confirmations to participant3, which has no packages, and only
                // observes on participant2.
                try await domain.broadcast(
                    [
                        try DomainHarness.hosting(
                            bankID, on: m2, .observation, serial: 2, signers: [m2.namespaceKey],
                            domain: domain.domain.domain),
                        try DomainHarness.hosting(
                            bankID, on: m3, .confirmation, serial: 1, signers: [m2.namespaceKey, m3.namespaceKey],
                            domain: domain.domain.domain),
                    ], messageID: "bank-moves")
                // A request sequenced after the change and completed shows participant1 applied it.
                let sync = try await p1.submit(
                    [try domain.issue("1", to: alice, by: alice)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "after-move"))
                guard case .succeeded = sync else {
                    Issue.record("alice's own IOU failed: \(sync)")
                    return
                }
                #expect(await p3.hostedParties().map(\.party) == [bankID])

                let prepared = try await p1.prepare(
                    [try domain.transfer(iou, to: bob)], actAs: [alice],
                    command: CommandKey(applicationID: "alice-app", commandID: "transfer-without-package"))
                let before = (try await p1.activeContracts(of: alice).map(\.id), try await p2.activeContracts(of: bob))
                let completion = try await p1.submit(prepared)
                guard case .rejected(let reasonID, let message) = completion else {
                    Issue.record("the transfer was not rejected: \(completion)")
                    return
                }
                #expect(reasonID == RejectReason.Participant.packageNotFound)
                let packageID = try domain.package.id.description
                #expect(message.contains(packageID) && message.contains(m3.id.description))
                #expect(try await p3.outcome(ofRequest: prepared.rootHash) == RejectReason.Participant.packageNotFound)
                #expect(try await p2.outcome(ofRequest: prepared.rootHash) == RejectReason.Participant.packageNotFound)
                #expect(try await p1.activeContracts(of: alice).map(\.id) == before.0)
                #expect(try await p2.activeContracts(of: bob) == before.1)
                #expect(try await p3.transactions(of: domain.bank).isEmpty)
                await domain.stop()
            }
        }
    }
}
