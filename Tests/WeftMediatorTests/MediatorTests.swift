import Testing
import WeftContracts
import WeftCrypto
@_spi(Testing) import WeftMediator
import WeftStore
import WeftTopology
import WeftWire

/// The mediator on real PostgreSQL: requests from real transactions' informee trees, responses
/// signed by the participants' keys, checked against a real topology.
@Suite(.sharedPostgres, .timeLimit(.minutes(5))) struct MediatorTests {
    let t = TestDomain.requestTime

    @Test func everyViewApprovedGivesOneSignedApprovalToEveryInformeeParticipant() async throws {
        let harness = try await MediatorHarness("approve")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.iouTransfer()
        let snapshot = test.snapshot(at: t)

        let registered = try await mediator.register(request: try test.request(views), snapshot: snapshot)
        let id = RequestID(timestamp: t, rootHash: views.rootHash)
        #expect(registered == .registered(id, deadline: t.adding(micros: TestDomain.responseTimeoutMicros)))
        #expect(await mediator.pendingRequests == [id])

        let (alice, bank) = (test.alice, test.bank)
        let last = t.adding(micros: 2_000)
        #expect(
            try await mediator.receive(
                response: try test.response(views, view: 0, from: test.p1, parties: [alice]),
                at: t.adding(micros: 1000),
                snapshot: snapshot) == .counted(id))
        #expect(
            try await mediator.receive(
                response: try test.response(views, view: 0, from: test.p3, parties: [bank]), at: t.adding(micros: 1500),
                snapshot: snapshot) == .counted(id))
        let outcome = try await mediator.receive(
            response: try test.response(views, view: 1, from: test.p3, parties: [bank]), at: last, snapshot: snapshot)
        let verdict = try #require(outcome.verdict)
        #expect(outcome == .decided(verdict))
        #expect(verdict.isApproved && verdict.reasonID == nil)
        #expect(verdict.request == id && verdict.decidedAt == last)
        #expect(verdict.recipients == test.participants.map(\.id).sorted { $0.description < $1.description })

        // The verdict is the mediator's, signed for CONFIRMATION_RESULT and about this request.
        let result = try ProtocolSigning.verifiedResult(
            verdict.message, mediatorKeys: [test.mediator.signing.publicKey])
        #expect(result == verdict.result)
        #expect(result.requestID == t.wire && result.rootHash == views.rootHash.bytes)
        #expect(result.domain == test.domain.description && result.viewType == .transaction)
        #expect(throws: ProtocolMessageError.invalidSignature(signer: "the mediator")) {
            try ProtocolSigning.verifiedResult(verdict.message, mediatorKeys: [test.p1.signing.publicKey])
        }
        #expect(await mediator.pendingRequests.isEmpty)

        // A later response changes nothing: the stored verdict comes back.
        let late = try await mediator.receive(
            response: try test.response(views, view: 0, from: test.p1, parties: [alice]), at: last.adding(micros: 1),
            snapshot: snapshot)
        #expect(late == .alreadyDecided(verdict))
        #expect(try await mediator.verdict(at: t) == verdict)
        #expect(try await harness.responseRowCount() == 3)
        await harness.store.database.shutdown()
    }

    @Test func aThreePartyDvPIsApprovedByTheLastOfItsConfirmations() async throws {
        let harness = try await MediatorHarness("dvp")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.dvp()
        #expect(views.views.count == 7)
        let snapshot = test.snapshot(at: t)
        let id = RequestID(timestamp: t, rootHash: views.rootHash)
        _ = try await mediator.register(request: try test.request(views, submitter: test.p2), snapshot: snapshot)

        let approvals = try test.approvals(views)
        #expect(approvals.count == 12)  // 2 + 2 + 2 + 2 + 1 + 2 + 1: per view, one per confirming participant
        var outcomes: [ResponseOutcome] = []
        for (index, approval) in approvals.enumerated() {
            outcomes.append(
                try await mediator.receive(
                    response: approval, at: t.adding(micros: Int64(index + 1)), snapshot: snapshot))
        }
        #expect(outcomes.dropLast().allSatisfy { $0 == .counted(id) })
        let verdict = try #require(outcomes.last?.verdict)
        #expect(verdict.isApproved)
        #expect(verdict.recipients.count == 5)
        await harness.store.database.shutdown()
    }

    @Test func oneRejectionRejectsWithItsReason() async throws {
        let harness = try await MediatorHarness("reject")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.iouTransfer()
        let snapshot = test.snapshot(at: t)
        _ = try await mediator.register(request: try test.request(views), snapshot: snapshot)

        _ = try await mediator.receive(
            response: try test.response(views, view: 0, from: test.p1, parties: [test.alice]), at: t.adding(micros: 1),
            snapshot: snapshot)
        let locked = Weft.V1.LocalReject(
            reasonID: RejectReason.Participant.lockedContracts, message: "locked by request 2025-06-15T15:06:50Z",
            resources: ["00aa"])
        let outcome = try await mediator.receive(
            response: try test.response(views, view: 1, from: test.p3, parties: [test.bank], reject: locked),
            at: t.adding(micros: 2), snapshot: snapshot)
        let verdict = try #require(outcome.verdict)
        #expect(outcome == .decided(verdict))
        #expect(!verdict.isApproved && verdict.reasonID == "LOCKED_CONTRACTS")
        #expect(
            verdict.result.verdict?.outcome
                == .participantReject(
                    .init(rejects: [
                        .init(participant: test.p3.id.description, parties: [test.bank.description], reject: locked)
                    ])
                ))

        // The approval that would have completed view 0 comes too late to matter.
        let after = try await mediator.receive(
            response: try test.response(views, view: 0, from: test.p3, parties: [test.bank]), at: t.adding(micros: 3),
            snapshot: snapshot)
        #expect(after == .alreadyDecided(verdict))
        await harness.store.database.shutdown()
    }

    @Test func aRejectionOfTheWholeRequestRejectsIt() async throws {
        let harness = try await MediatorHarness("reject-all")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.dvp()
        let snapshot = test.snapshot(at: t)
        _ = try await mediator.register(request: try test.request(views, submitter: test.p2), snapshot: snapshot)
        // An approval must name its view.
        await #expect(
            throws: MediatorError.malformedResponse(
                "an approval without a view hash; only a rejection may be for the whole request")
        ) {
            try await mediator.receive(
                response: try test.response(views, view: nil, from: test.p1, parties: [test.alice]),
                at: t.adding(micros: 4),
                snapshot: snapshot)
        }
        let malformed = Weft.V1.LocalReject(
            reasonID: RejectReason.Participant.failedModelConformanceCheck, message: "view 0.3 differs")
        let outcome = try await mediator.receive(
            response: try test.response(views, view: nil, from: test.p4, parties: [test.csd], reject: malformed),
            at: t.adding(micros: 5), snapshot: snapshot)
        #expect(outcome.verdict?.reasonID == "FAILED_MODEL_CONFORMANCE_CHECK")
        #expect(try await harness.responseRowCount() == 1)
        await harness.store.database.shutdown()
    }

    /// The first response that names a party for a view counts: a party that approved every
    /// view it confirms cannot take that back with a rejection of the whole request.
    @Test func aRejectionOfTheWholeRequestDoesNotUndoApprovalsGivenBefore() async throws {
        let harness = try await MediatorHarness("reject-all-late")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.dvp()
        let snapshot = test.snapshot(at: t)
        let id = RequestID(timestamp: t, rootHash: views.rootHash)
        _ = try await mediator.register(request: try test.request(views, submitter: test.p2), snapshot: snapshot)
        // The custodian approves every view it confirms.
        var time: Int64 = 1
        for (index, view) in views.views.enumerated() where view.commonData.confirmingParties.contains(where: { $0.id == test.csd.description }) {
            let outcome = try await mediator.receive(
                response: try test.response(views, view: index, from: test.p4, parties: [test.csd]), at: t.adding(micros: time),
                snapshot: snapshot)
            #expect(outcome == .counted(id))
            time += 1
        }
        #expect(time > 1)
        // Then rejects the whole request: nothing left to count for it.
        let malformed = Weft.V1.LocalReject(reasonID: RejectReason.Participant.malformedView, message: "second thoughts")
        let late = try await mediator.receive(
            response: try test.response(views, view: nil, from: test.p4, parties: [test.csd], reject: malformed),
            at: t.adding(micros: time), snapshot: snapshot)
        #expect(late == .duplicate(id))
        // The others' approvals still decide it.
        var verdicts: [MediatorVerdict] = []
        for (index, approval) in try test.approvals(views).enumerated() {
            let outcome = try await mediator.receive(
                response: approval, at: t.adding(micros: time + 1 + Int64(index)), snapshot: snapshot)
            if case .decided(let verdict) = outcome { verdicts.append(verdict) }
        }
        #expect(verdicts.count == 1 && verdicts.first?.isApproved == true)
        await harness.store.database.shutdown()
    }

    @Test func aRejectionTooLongToPassOnIsCutSoThatItsVerdictCanBeSequenced() async throws {
        let harness = try await MediatorHarness("reject-long")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.iouTransfer()
        let snapshot = test.snapshot(at: t)
        _ = try await mediator.register(request: try test.request(views), snapshot: snapshot)
        // A participant's rejection with 200 KiB of explanation and 10,000 resources: the verdict
        // copies it to every informee participant.
        let huge = Weft.V1.LocalReject(
            reasonID: RejectReason.Participant.lockedContracts, message: String(repeating: "é", count: 100_000),
            resources: (0..<10_000).map { "contract-\($0)-" + String(repeating: "x", count: 300) })
        let outcome = try await mediator.receive(
            response: try test.response(views, view: 1, from: test.p3, parties: [test.bank], reject: huge),
            at: t.adding(micros: 2), snapshot: snapshot)
        let verdict = try #require(outcome.verdict)
        #expect(verdict.reasonID == "LOCKED_CONTRACTS")
        guard case .participantReject(let rejects)? = verdict.result.verdict?.outcome, let reject = rejects.rejects.first?.reject else {
            Issue.record("the verdict does not carry the participant's rejection: \(verdict.result)")
            return
        }
        #expect(reject.reasonID == huge.reasonID)
        #expect(reject.message.utf8.count <= 1_024 && reject.message.hasSuffix(" …") && reject.message.hasPrefix("éé"))
        #expect(reject.resources.count == 32 && reject.resources.last == "… 9969 more")
        #expect(reject.resources.dropLast().allSatisfy { $0.utf8.count <= 256 && $0.hasSuffix(" …") })
        #expect(reject.resources.first?.hasPrefix("contract-0-") == true)
        #expect(try verdict.message.serializedBytes().count < 16_384)
        await harness.store.database.shutdown()
    }

    @Test func invalidResponsesAreRefusedAndNotCounted() async throws {
        let harness = try await MediatorHarness("refusals")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.iouTransfer()
        let snapshot = test.snapshot(at: t)
        let id = RequestID(timestamp: t, rootHash: views.rootHash)
        let deadline = t.adding(micros: TestDomain.responseTimeoutMicros)
        _ = try await mediator.register(request: try test.request(views), snapshot: snapshot)
        let at = t.adding(micros: 10)
        func refuse(
            _ error: MediatorError, _ response: Weft.V1.SignedProtocolMessage, at time: SequencingTimestamp? = nil,
            snapshot other: TopologySnapshot? = nil, sourceLocation: Testing.SourceLocation = #_sourceLocation
        ) async {
            await #expect(throws: error, sourceLocation: sourceLocation) {
                try await mediator.receive(response: response, at: time ?? at, snapshot: other ?? snapshot)
            }
        }

        // Signed by another participant's key, or with a broken signature.
        await refuse(
            .unknownSigningKey(
                participant: test.p1.id.description, key: test.p2.signing.publicKey.fingerprint.description),
            try test.response(views, view: 0, from: test.p1, parties: [test.alice], signedWith: test.p2.signing))
        var tampered = try test.response(views, view: 0, from: test.p1, parties: [test.alice])
        tampered.signature?.signature[0] ^= 1
        await refuse(.invalidSignature(signer: "participant \(test.p1.id)"), tampered)
        // From a participant not hosting the party; hosting it for observation only.
        await refuse(
            .partyNotHosted(party: test.bank.description, participant: test.p2.id.description),
            try test.response(views, view: 0, from: test.p2, parties: [test.bank]))
        await refuse(
            .noConfirmationPermission(
                party: test.bank.description, participant: test.p4.id.description, permission: .observation),
            try test.response(views, view: 0, from: test.p4, parties: [test.bank]))
        // For a party that does not confirm the view, a view or a request that does not exist.
        await refuse(
            .notAConfirmingParty(party: test.bob.description, view: [0, 0]),
            try test.response(views, view: 1, from: test.p2, parties: [test.bob]))
        var unknownView = Weft.V1.ConfirmationResponse(
            requestID: t.wire, sender: test.p1.id.description, viewHash: [UInt8](repeating: 7, count: 32),
            localVerdict: .init(outcome: .approve(.init())), rootHash: views.rootHash.bytes,
            confirmingParties: [test.alice.description], domain: test.domain.description)
        await refuse(
            .unknownView(request: id, viewHash: unknownView.viewHash),
            try ProtocolSigning.sign(unknownView, with: test.p1.signing))
        unknownView.requestID = t.adding(micros: 1).wire
        await refuse(.unknownRequest(t.adding(micros: 1)), try ProtocolSigning.sign(unknownView, with: test.p1.signing))
        await refuse(
            .wrongRootHash(request: id, received: [1, 2, 3]),
            try test.response(views, view: 0, from: test.p1, parties: [test.alice], rootHash: [1, 2, 3]))
        await refuse(
            .wrongDomain(expected: test.domain.description, received: "domain2::1220"),
            try test.response(views, view: 0, from: test.p1, parties: [test.alice], domain: "domain2::1220"))
        // Checked against the topology at the request's time only; sequenced after the deadline.
        let valid = try test.response(views, view: 0, from: test.p1, parties: [test.alice])
        await refuse(
            .snapshotAtWrongTime(request: t, snapshot: at), valid, snapshot: test.snapshot(at: at))
        await refuse(
            .afterDeadline(request: id, deadline: deadline, at: deadline.adding(micros: 1)), valid,
            at: deadline.adding(micros: 1))
        await refuse(
            .malformedResponse("a rejection needs a reason id of 1 to 100 bytes"),
            try test.response(views, view: 0, from: test.p1, parties: [test.alice], reject: .init(reasonID: "")))
        #expect(try await harness.responseRowCount() == 0)

        // None of the refused approvals for bank counted: view 0 still needs p3's, and a
        // response sequenced exactly at the deadline still counts.
        #expect(try await mediator.receive(response: valid, at: at, snapshot: snapshot) == .counted(id))
        let bankOnView1 = try test.response(views, view: 1, from: test.p3, parties: [test.bank])
        #expect(try await mediator.receive(response: bankOnView1, at: at, snapshot: snapshot) == .counted(id))
        #expect(await mediator.pendingRequests == [id])
        let outcome = try await mediator.receive(
            response: try test.response(views, view: 0, from: test.p3, parties: [test.bank]), at: deadline,
            snapshot: snapshot)
        #expect(outcome.verdict?.isApproved == true)
        #expect(try await harness.responseRowCount() == 3)
        await harness.store.database.shutdown()
    }

    /// A participant's responses arrive in one event: each is checked on its own (a refused one
    /// counts for nothing, the others do), later ones see what earlier ones counted, and what
    /// they count and decide is stored together.
    @Test func theResponsesOfOneEventAreCheckedOneByOneAndStoredTogether() async throws {
        let harness = try await MediatorHarness("one-event")
        let test = harness.test
        let (mediator, views, snapshot, id) = try await harness.startWithTransfer()
        let aliceOnView0 = try test.response(views, view: 0, from: test.p1, parties: [test.alice])
        let wrongRoot = try test.response(views, view: 0, from: test.p3, parties: [test.bank], rootHash: [1, 2, 3])
        let bankOnView1 = try test.response(views, view: 1, from: test.p3, parties: [test.bank])
        let bankOnView0 = try test.response(views, view: 0, from: test.p3, parties: [test.bank])
        let outcomes = try await mediator.receive(
            responses: [aliceOnView0, wrongRoot, bankOnView1, bankOnView0, aliceOnView0].map { ($0, snapshot) },
            at: t.adding(micros: 1))
        #expect(outcomes.count == 5)
        #expect(try outcomes[0].get() == .counted(id))
        #expect(throws: MediatorError.wrongRootHash(request: id, received: [1, 2, 3])) { try outcomes[1].get() }
        #expect(try outcomes[2].get() == .counted(id))
        let verdict = try #require(try outcomes[3].get().verdict)
        #expect(verdict.isApproved)
        // Decided by the response before it in the same event: the stored verdict, nothing new.
        #expect(try outcomes[4].get() == .alreadyDecided(verdict))
        #expect(await mediator.pendingRequests.isEmpty)
        #expect(try await harness.responseRowCount() == 3)

        // All of it is in the store: a mediator started on it again has nothing pending and
        // answers with the same verdict.
        let restarted = try await harness.start()
        #expect(await restarted.pendingRequests.isEmpty)
        #expect(try await restarted.verdict(at: t) == verdict)
        #expect(
            try await restarted.receive(response: bankOnView1, at: t.adding(micros: 2), snapshot: snapshot)
                == .alreadyDecided(verdict))
        await harness.store.database.shutdown()
    }

    @Test func aDuplicateResponseIsCountedOnce() async throws {
        let harness = try await MediatorHarness("duplicate")
        let test = harness.test
        let (mediator, views, snapshot, id) = try await harness.startWithTransfer()
        let response = try test.response(views, view: 0, from: test.p1, parties: [test.alice])
        #expect(
            try await mediator.receive(response: response, at: t.adding(micros: 1), snapshot: snapshot) == .counted(id))
        #expect(
            try await mediator.receive(response: response, at: t.adding(micros: 2), snapshot: snapshot)
                == .duplicate(id))
        // Once a party counted for a view, its later responses there do not: the first one stands.
        let changedMind = try test.response(
            views, view: 0, from: test.p1, parties: [test.alice], reject: .init(reasonID: "LOCKED_CONTRACTS"))
        #expect(
            try await mediator.receive(response: changedMind, at: t.adding(micros: 3), snapshot: snapshot)
                == .duplicate(id))
        #expect(try await harness.responseRowCount() == 1)
        #expect(await mediator.pendingRequests == [id])
        await harness.store.database.shutdown()
    }

    @Test func theParticipantResponseTimeoutRejects() async throws {
        let harness = try await MediatorHarness("timeout")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.iouTransfer()
        let snapshot = test.snapshot(at: t)
        let deadline = t.adding(micros: TestDomain.responseTimeoutMicros)
        _ = try await mediator.register(request: try test.request(views), snapshot: snapshot)
        _ = try await mediator.receive(
            response: try test.response(views, view: 0, from: test.p1, parties: [test.alice]), at: t.adding(micros: 1),
            snapshot: snapshot)

        #expect(try await mediator.timeouts(now: deadline).isEmpty)
        let now = deadline.adding(micros: 1)
        let verdicts = try await mediator.timeouts(now: now)
        #expect(verdicts.count == 1)
        let verdict = try #require(verdicts.first)
        #expect(verdict.reasonID == "MEDIATOR_SAYS_TX_TIMED_OUT" && verdict.decidedAt == now)
        guard case .mediatorReject(let reject)? = verdict.result.verdict?.outcome else {
            Issue.record("not a mediator reject: \(verdict.result)")
            return
        }
        #expect(reject.reasonID == RejectReason.timedOut)
        #expect(verdict.recipients.count == 5)
        #expect(try await mediator.timeouts(now: now.adding(micros: 1_000_000)).isEmpty)
        #expect(await mediator.pendingRequests.isEmpty)
        #expect(try await mediator.verdict(at: t) == verdict)
        await harness.store.database.shutdown()
    }

    @Test func aVIPParticipantConfirmsAloneUnderTheVIPPolicy() async throws {
        let harness = try await MediatorHarness("vip")
        let test = harness.test
        let mediator = try await harness.start()
        let bank = TestDomain.party(test.bank)
        let views = try test.iouTransfer(policy: .vip(vipHosted: [bank]))
        #expect(views.views.map(\.commonData.confirmingParties) == [[bank], [bank]])
        #expect(views.views.map(\.commonData.threshold) == [1, 1])
        let snapshot = test.snapshot(at: t)
        let id = RequestID(timestamp: t, rootHash: views.rootHash)
        _ = try await mediator.register(request: try test.request(views), snapshot: snapshot)

        // p3 hosts bank with confirmation permission, but is not VIP: it does not count.
        await #expect(throws: MediatorError.notVIP(participant: test.p3.id.description)) {
            try await mediator.receive(
                response: try test.response(views, view: 0, from: test.p3, parties: [test.bank]),
                at: t.adding(micros: 1),
                snapshot: snapshot)
        }
        // Alice is no confirming party under this policy, whoever hosts her.
        await #expect(throws: MediatorError.notAConfirmingParty(party: test.alice.description, view: [0])) {
            try await mediator.receive(
                response: try test.response(views, view: 0, from: test.p1, parties: [test.alice]),
                at: t.adding(micros: 1),
                snapshot: snapshot)
        }
        #expect(
            try await mediator.receive(
                response: try test.response(views, view: 0, from: test.p5, parties: [test.bank]),
                at: t.adding(micros: 2),
                snapshot: snapshot) == .counted(id))
        let outcome = try await mediator.receive(
            response: try test.response(views, view: 1, from: test.p5, parties: [test.bank]), at: t.adding(micros: 3),
            snapshot: snapshot)
        #expect(outcome.verdict?.isApproved == true)

        // A VIP view whose confirming party no VIP participant hosts can never be approved.
        let alice = TestDomain.party(test.alice)
        let unconfirmable = try test.iouTransfer(uuidByte: 9, policy: .vip(vipHosted: [alice, bank]))
        let second = t.adding(micros: 100)
        let refused = try await mediator.register(
            request: try test.request(unconfirmable, at: second), snapshot: test.snapshot(at: second))
        #expect(refused.verdict?.reasonID == RejectReason.informeesNotHosted)
        await harness.store.database.shutdown()
    }

    @Test func requestsWhoseRootHashMessagesDisagreeAreRefused() async throws {
        let harness = try await MediatorHarness("root-hash")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.iouTransfer()
        let snapshot = test.snapshot(at: t)

        // One root hash message carries another root hash.
        var request = try test.request(views)
        var other = request.rootHashMessages[0]
        other.message.rootHash = try test.dvp().rootHash.bytes
        other.recipients = [test.p2.member, test.mediator.member]
        request.rootHashMessages.append(other)
        let outcome = try await mediator.register(request: request, snapshot: snapshot)
        guard case .refused(let verdict) = outcome else {
            Issue.record("not refused: \(outcome)")
            return
        }
        #expect(verdict.reasonID == RejectReason.invalidMessage)
        #expect(verdict.request == RequestID(timestamp: t, rootHash: views.rootHash))
        #expect(verdict.recipients.count == 5 && verdict.decidedAt == t)
        #expect(await mediator.pendingRequests.isEmpty)
        // Registering it again, or responding to it, returns the same verdict.
        #expect(try await mediator.register(request: request, snapshot: snapshot) == .alreadyDecided(verdict))
        let response = try test.response(views, view: 0, from: test.p1, parties: [test.alice])
        #expect(
            try await mediator.receive(response: response, at: t.adding(micros: 1), snapshot: snapshot)
                == .alreadyDecided(verdict))

        // An informee participant that no root hash message tells.
        let t2 = t.adding(micros: 10)
        var untold = try test.request(try test.iouTransfer(uuidByte: 2), at: t2)
        untold.rootHashMessages[0].recipients.removeAll { $0 == test.p5.member }
        let missing = try await mediator.register(request: untold, snapshot: test.snapshot(at: t2))
        #expect(missing.verdict?.reasonID == RejectReason.invalidMessage)

        // A request for another mediator.
        let t3 = t.adding(micros: 20)
        let elsewhere = try TestDomain(mediatorName: "another-mediator")
        let misdirected = try await mediator.register(
            request: try elsewhere.request(try elsewhere.iouTransfer(uuidByte: 3), at: t3),
            snapshot: test.snapshot(at: t3))
        #expect(misdirected.verdict?.reasonID == RejectReason.invalidMessage)

        // An informee tree with a view blinded: rejected by the root hash its messages agree on.
        let t4 = t.adding(micros: 30)
        let blindedViews = try test.iouTransfer(uuidByte: 4)
        var blinded = try test.request(blindedViews, at: t4)
        blinded.informeeMessage.informeeTree = try MerkleTree.blinding(blindedViews.informeeTree()) { $0 == .view([0]) }
        let refusedBlinded = try await mediator.register(request: blinded, snapshot: test.snapshot(at: t4))
        #expect(refusedBlinded.verdict?.reasonID == RejectReason.invalidMessage)
        #expect(refusedBlinded.verdict?.request.rootHash == blindedViews.rootHash)

        // No tree and no root hash: nothing to reject by.
        let t5 = t.adding(micros: 40)
        var nothing = try test.request(views, at: t5)
        nothing.informeeMessage.informeeTree = nil
        nothing.rootHashMessages = []
        await #expect(throws: MediatorError.self) {
            try await mediator.register(request: nothing, snapshot: test.snapshot(at: t5))
        }
        #expect(try await mediator.verdict(at: t5) == nil)
        await harness.store.database.shutdown()
    }

    @Test func aReplayedRequestIsANoOpAtItsTimeAndRejectedAtAnother() async throws {
        let harness = try await MediatorHarness("replay")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.iouTransfer()
        let id = RequestID(timestamp: t, rootHash: views.rootHash)
        let request = try test.request(views)
        #expect(
            try await mediator.register(request: request, snapshot: test.snapshot(at: t))
                == .registered(id, deadline: t.adding(micros: TestDomain.responseTimeoutMicros)))
        #expect(try await mediator.register(request: request, snapshot: test.snapshot(at: t)) == .alreadyRegistered(id))

        // Another request at the same sequencing time cannot be.
        let dvp = try test.dvp()
        await #expect(
            throws: MediatorError.conflictingRequest(timestamp: t, registered: views.rootHash, received: dvp.rootHash)
        ) {
            try await mediator.register(request: try test.request(dvp), snapshot: test.snapshot(at: t))
        }
        await #expect(throws: MediatorError.snapshotAtWrongTime(request: t, snapshot: t.adding(micros: 1))) {
            try await mediator.register(request: request, snapshot: test.snapshot(at: t.adding(micros: 1)))
        }

        // The same request sequenced again later is rejected: its uuid was used.
        let later = t.adding(micros: 1_000)
        let replay = try await mediator.register(
            request: try test.request(views, at: later), snapshot: test.snapshot(at: later))
        #expect(replay.verdict?.reasonID == RejectReason.nonUniqueRequestUUID)
        #expect(await mediator.pendingRequests == [id])
        // Stored refused (the uuid check and the insert are one statement), and so found again.
        #expect(try await mediator.verdict(at: later)?.reasonID == RejectReason.nonUniqueRequestUUID)
        let again = try await mediator.register(
            request: try test.request(views, at: later), snapshot: test.snapshot(at: later))
        #expect(again.verdict?.reasonID == RejectReason.nonUniqueRequestUUID)
        await harness.store.database.shutdown()
    }

    /// A registration needs no transaction of its own: the request is stored by the next write,
    /// the one of its first responses, in that write's transaction. A mediator that stops
    /// before that write lost only what its restart reads again.
    @Test func aRegistrationIsStoredWithTheNextWrite() async throws {
        let harness = try await MediatorHarness("carried")
        let test = harness.test
        let member = PostgresValue.text(test.mediator.member.description)
        func rows(_ table: String) async throws -> [String] {
            try await harness.store.database.withConnection { connection in
                try connection.execute("SELECT xmin::text FROM \(table) WHERE mediator = $1 ORDER BY 1", [member])
                    .rows.map { try $0[0].string ?? "" }
            }
        }
        let views = try test.iouTransfer()
        let id = RequestID(timestamp: t, rootHash: views.rootHash)
        let crashed = try await harness.start()
        #expect(try await crashed.register(request: try test.request(views), snapshot: test.snapshot(at: t)) == .registered(id, deadline: t.adding(micros: TestDomain.responseTimeoutMicros)))
        #expect(try await rows("mediator_requests").isEmpty, "nothing written for a registration alone")
        #expect(await crashed.pendingRequests == [id])

        // Started again on the store (as after a crash): the request is not there, and the stream,
        // read again from the stored position, registers it again.
        let mediator = try await harness.start()
        #expect(await mediator.pendingRequests == [])
        _ = try await mediator.register(request: try test.request(views), snapshot: test.snapshot(at: t))
        let approvals = try test.approvals(views)
        let first = try await mediator.receive(responses: [(approvals[0], test.snapshot(at: t))], at: t.adding(micros: 10))
        #expect(first.map { try? $0.get() } == [.counted(id)])
        let requestRows = try await rows("mediator_requests")
        #expect(requestRows.count == 1)
        #expect(Set(try await rows("mediator_responses")) == Set(requestRows), "the request and its first response in one transaction")
        let rest = try await mediator.receive(
            responses: approvals.dropFirst().map { ($0, test.snapshot(at: t)) }, at: t.adding(micros: 20))
        #expect(rest.last.flatMap { try? $0.get().verdict?.isApproved } == true)
        #expect(try await mediator.verdict(at: t)?.isApproved == true)
        await harness.store.database.shutdown()
    }

    /// Responses naming request times of the sender's choice: a snapshot (built from the whole
    /// topology history when not cached) only for a request pending here, once per request of
    /// the event, however many responses name it; the others are refused as unknown.
    @Test func responsesToUnknownRequestsCostNoTopologySnapshot() async throws {
        let harness = try await MediatorHarness("snapshots")
        let test = harness.test
        let views = try test.iouTransfer()
        let id = RequestID(timestamp: t, rootHash: views.rootHash)
        let mediator = try await harness.start()
        _ = try await mediator.register(request: try test.request(views), snapshot: test.snapshot(at: t))
        let unknown = (1...3).map { t.adding(micros: Int64($0) * 1_000) }
        let spam = try unknown.flatMap { try test.approvals(views, at: $0) + test.approvals(views, at: $0) }
        let approvals = try test.approvals(views)
        #expect(approvals.count >= 2)
        actor Taken {
            var times: [SequencingTimestamp] = []
            func note(_ time: SequencingTimestamp) { times.append(time) }
        }
        let taken = Taken()
        let snapshot = test.snapshot(at: t)
        let outcomes = try await mediator.receive(responses: spam + approvals, at: t.adding(micros: 10)) { time in
            await taken.note(time)
            return snapshot
        }
        #expect(await taken.times == [t], "one snapshot, of the pending request's time")
        for (outcome, time) in zip(outcomes, unknown.flatMap { time in Array(repeating: time, count: spam.count / unknown.count) }) {
            guard case .failure(.unknownRequest(time)) = outcome else {
                Issue.record("a response to an unknown request at \(time): \(outcome)")
                continue
            }
        }
        #expect(outcomes.suffix(approvals.count).last.flatMap { try? $0.get().verdict?.isApproved } == true)
        #expect(try await mediator.verdict(at: t)?.request == id)
        await harness.store.database.shutdown()
    }


    /// request sequenced again, after the mediator restarted): that write fails as a whole, the
    /// request is stored refused on its own, the write runs again — counting nothing for the
    /// refused request — and the refusal's verdict is handed out to be sent.
    @Test func aCarriedRegistrationWhoseUuidIsTakenIsRefusedWhenTheWriteFindsIt() async throws {
        let harness = try await MediatorHarness("carried-uuid")
        let test = harness.test
        let later = t.adding(micros: 1_000)
        let (mediator, views, outcome) = try await harness.restartedWithCarriedReplay(at: later)
        let id = RequestID(timestamp: t, rootHash: views.rootHash)
        let replayID = RequestID(timestamp: later, rootHash: views.rootHash)
        #expect(outcome == .registered(replayID, deadline: later.adding(micros: TestDomain.responseTimeoutMicros)), "no read to find the uuid taken yet")
        #expect(await mediator.pendingRequests == [id, replayID])
        let outcomes = try await mediator.receive(
            responses: try test.approvals(views, at: later).map { ($0, test.snapshot(at: later)) }, at: later.adding(micros: 10))
        let refusal = try #require(try await mediator.verdict(at: later))
        #expect(refusal.reasonID == RejectReason.nonUniqueRequestUUID)
        #expect(outcomes.map { try? $0.get() } == outcomes.map { _ in .alreadyDecided(refusal) })
        #expect(await mediator.takeLateRefusals() == [refusal])
        #expect(await mediator.takeLateRefusals() == [])
        #expect(await mediator.pendingRequests == [id])
        #expect(try await harness.responseRowCount() == 0, "nothing counted for the refused request")
        await harness.store.database.shutdown()
    }

    /// The same when the write that carries the replay is the timeouts' decision: the replay is
    /// refused for its uuid, not timed out, and the request stored before times out as due.
    @Test func aCarriedReplayFoundByTheTimeoutsWriteIsRefusedNotTimedOut() async throws {
        let harness = try await MediatorHarness("carried-timeout")
        let later = t.adding(micros: 1_000)
        let (mediator, views, _) = try await harness.restartedWithCarriedReplay(at: later)
        let now = later.adding(micros: TestDomain.responseTimeoutMicros + 1)
        let timedOut = try await mediator.timeouts(now: now)
        #expect(timedOut.map(\.request) == [RequestID(timestamp: t, rootHash: views.rootHash)])
        #expect(timedOut.map(\.reasonID) == [RejectReason.timedOut])
        let refusal = try #require(try await mediator.verdict(at: later))
        #expect(refusal.reasonID == RejectReason.nonUniqueRequestUUID)
        #expect(await mediator.takeLateRefusals() == [refusal])
        #expect(await mediator.pendingRequests.isEmpty)
        await harness.store.database.shutdown()
    }

    /// A write that fails after its commit (here: the store found inconsistent for another
    /// request) puts back the registrations it carried; the next write finds such a request
    /// stored, keeps it pending, and goes on — rather than failing on it for ever.
    @Test func aCarriedRequestPutBackAfterACommittedWriteIsFoundStored() async throws {
        let harness = try await MediatorHarness("carried-again")
        let (mediator, views, snapshot, id) = try await harness.startWithTransfer()
        try await mediator.storeProgress()
        let later = id.timestamp.adding(micros: 1_000)
        let dvp = try harness.test.dvp()
        let dvpID = RequestID(timestamp: later, rootHash: dvp.rootHash)
        let laterSnapshot = harness.test.snapshot(at: later)
        _ = try await mediator.register(
            request: try harness.test.request(dvp, at: later, submitter: harness.test.p2), snapshot: laterSnapshot)
        let dvpApprovals = try harness.test.approvals(dvp, at: later).map { ($0, laterSnapshot) }
        try #require(dvpApprovals.count > 1)
        let member = PostgresValue.text(harness.test.mediator.member.description)
        try await harness.replaceRootHash(at: id.timestamp)
        // Committed (the dvp stored with its first response), then thrown for the transfer.
        await #expect {
            _ = try await mediator.receive(
                responses: try harness.test.approvals(views).map { ($0, snapshot) } + [dvpApprovals[0]],
                at: later.adding(micros: 10))
        } throws: { error in
            if case .inconsistentStore? = error as? MediatorError { return true }
            return false
        }
        let stored = try await harness.store.database.withConnection { connection in
            try connection.execute(
                "SELECT verdict IS NULL FROM mediator_requests WHERE mediator = $1 AND request_ts = $2",
                [member, .int64(later.microsSinceEpoch)]
            ).rows.first?.first?.bool
        }
        #expect(stored == true, "the dvp is stored, pending")
        // The next writes carry the dvp again: found stored and pending, it stays so.
        try await mediator.storeProgress()
        try await mediator.storeProgress()
        #expect(await mediator.pendingRequests.contains(dvpID))
        let outcomes = try await mediator.receive(responses: dvpApprovals, at: later.adding(micros: 20))
        #expect(outcomes.last.flatMap { try? $0.get().verdict?.isApproved } == true)
        #expect(try await mediator.verdict(at: later)?.isApproved == true)
        await harness.store.database.shutdown()
    }

    @Test func aRequestStoredOtherwiseThanInMemoryIsReportedAndGetsNothingWritten() async throws {
        let harness = try await MediatorHarness("inconsistent")
        let (mediator, views, snapshot, id) = try await harness.startWithTransfer()
        // A second request, consistent, whose responses arrive in the same event.
        let later = id.timestamp.adding(micros: 1_000)
        let dvp = try harness.test.dvp()
        let laterSnapshot = harness.test.snapshot(at: later)
        _ = try await mediator.register(
            request: try harness.test.request(dvp, at: later, submitter: harness.test.p2), snapshot: laterSnapshot)
        let responses = try harness.test.approvals(views).map { ($0, snapshot) }
            + (try harness.test.approvals(dvp, at: later).map { ($0, laterSnapshot) })
        // Both requests in the store (a registration waits for the mediator's next write).
        try await mediator.storeProgress()
        // Another process (or a hand) replaced the first request under the mediator: another root hash.
        let member = PostgresValue.text(harness.test.mediator.member.description)
        try await harness.replaceRootHash(at: id.timestamp)
        // The store is inconsistent: thrown, and nothing written for that request (the event's
        // other request has its responses written; a restart reads the event again).
        await #expect {
            _ = try await mediator.receive(responses: responses, at: later.adding(micros: 10))
        } throws: { error in
            if case .inconsistentStore? = error as? MediatorError { return true }
            return false
        }
        let stored = try await harness.store.database.withConnection { connection in
            try connection.execute(
                "SELECT request_ts, count(*) FROM mediator_responses WHERE mediator = $1 GROUP BY request_ts", [member]
            ).rows.map { (try $0[0].int64 ?? 0, try $0[1].int64 ?? 0) }
        }
        #expect(stored.map(\.0) == [later.microsSinceEpoch])
        let verdict = try await harness.store.database.withConnection { connection in
            try connection.execute(
                "SELECT verdict IS NULL FROM mediator_requests WHERE mediator = $1 AND request_ts = $2",
                [member, .int64(id.timestamp.microsSinceEpoch)]
            ).rows.first?.first?.bool
        }
        #expect(verdict == true, "the inconsistent request is not decided")
        await harness.store.database.shutdown()
    }

    @Test func concurrentResponsesDecideOnce() async throws {
        let harness = try await MediatorHarness("concurrent")
        let test = harness.test
        let mediator = try await harness.start()
        let views = try test.dvp()
        let snapshot = test.snapshot(at: t)
        _ = try await mediator.register(request: try test.request(views, submitter: test.p2), snapshot: snapshot)
        let approvals = try test.approvals(views)
        // Every approval twice, all at once.
        let outcomes = try await withThrowingTaskGroup(of: ResponseOutcome.self) { group in
            for (index, approval) in (approvals + approvals).enumerated() {
                group.addTask {
                    try await mediator.receive(
                        response: approval, at: t.adding(micros: Int64(index + 1)), snapshot: snapshot)
                }
            }
            var all: [ResponseOutcome] = []
            for try await outcome in group { all.append(outcome) }
            return all
        }
        let decided = outcomes.filter { if case .decided = $0 { true } else { false } }
        #expect(decided.count == 1)
        #expect(outcomes.filter { if case .counted = $0 { true } else { false } }.count == approvals.count - 1)
        #expect(
            try await harness.responseRowCount()
                == Int64(views.views.map(\.commonData.confirmingParties.count).reduce(0, +)))
        await harness.store.database.shutdown()
    }
}
