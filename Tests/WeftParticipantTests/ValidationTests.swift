import Foundation
import Testing
import WeftContracts
import WeftCrypto
import WeftProtocol
import WeftTestSupport
import WeftTopology
import WeftWire

@testable import WeftParticipant

/// Validation as a pure function: a request built by participant2's `RequestBuilder`, as
/// participant1 receives it, checked against a topology, packages and a conflict state.
@Suite struct ValidationTests {
    let domain: TestDomain
    let members: [TestDomain.Participant]
    let parties: [Party]
    let snapshot: TopologySnapshot
    let package: Package
    var alice: Party { parties[0] }
    var bank: Party { parties[2] }
    let time = SequencingTimestamp(microsSinceEpoch: wallClockMicros())

    init() throws {
        var domain = try TestDomain()
        let members = [try TestDomain.Participant("participant1"), try TestDomain.Participant("participant2")]
        let genesis = try domain.genesis()
        let (transactions, parties) = try DomainHarness.onboarding(&domain, members)
        self.domain = domain
        self.members = members
        self.parties = parties
        snapshot = try DomainHarness.initialState(domain, genesis: genesis, onboarding: transactions).snapshot(at: time)
        package = try Package(source: exampleSource("iou.weft"), file: "iou.weft")
    }

    func identity(_ index: Int) -> ParticipantIdentity {
        ParticipantIdentity(
            id: members[index].id, signingKey: members[index].signingKey, encryptionKey: members[index].encryptionKey)
    }

    /// The bank's (participant2's) issue of an IOU to alice, as participant1 (`receiver` 0) or
    /// participant2 itself (1) receives it.
    func bankIssuesToAlice(
        ledgerTime: Int64? = nil, receiver: Int = 0, sessions: OutgoingSessionKeys? = OutgoingSessionKeys(),
        namedMediator: String? = nil, namedDomain: String? = nil
    ) throws -> ReceivedRequest {
        let seed = TransactionSeed(try ParticipantNode.randomBytes(32))!
        let command = Command.create(
            try package.templateID("Iou"),
            argument: try package.record(
                "Iou",
                [
                    "issuer": .party(bank), "owner": .party(alice), "currency": .text("USD"),
                    "amount": .decimal(FixedDecimal("3")!),
                ]))
        let transaction = try Interpreter(packages: [package]).submit(
            [command], actAs: [bank], seed: seed, contracts: ContractStore())
        let views = try TransactionViews(
            transaction, seed: seed,
            metadata: TransactionMetadata(
                submitter: SubmitterMetadata(
                    actAs: [bank], submittingParticipant: members[1].id.description, commandID: "c", applicationID: "a",
                    submissionID: "s", maxSequencingTime: time.microsSinceEpoch + 60_000_000),
                common: CommonMetadata(
                    domain: namedDomain ?? domain.domain.description, mediator: namedMediator ?? domain.mediatorMember.description,
                    uuid: try ParticipantNode.randomBytes(16)),
                participant: ParticipantMetadata(
                    ledgerTime: ledgerTime ?? time.microsSinceEpoch, submissionTime: time.microsSinceEpoch)),
            packages: [package])
        let batch = try RequestBuilder(identity: identity(1), snapshot: snapshot, domain: domain.domain, sessions: sessions)
            .batch(views, mediator: domain.mediatorMember)
        var request = ReceivedRequest(timestamp: time, sender: members[1].member.description)
        for envelope in batch.envelopes where envelope.recipients.contains(members[receiver].member.description) {
            switch try Weft.V1.EnvelopeContent(serializedBytes: envelope.content).message {
            case .rootHash(let message)?: request.rootHashMessages.append(message)
            case .encryptedView(let message)?: request.encryptedViews.append(message)
            default: Issue.record("participant\(receiver + 1) received an envelope it should not")
            }
        }
        return request
    }

    func validator(_ index: Int, packages: [Package]) -> RequestValidator {
        RequestValidator(
            identity: identity(index), domain: domain.domain, snapshot: snapshot,
            interpreter: Interpreter(packages: packages),
            packages: Set(packages.map(\.id)),
            state: ConflictState(active: [:], known: [], locks: [:], pendingCreates: [:]), sessions: IncomingSessionKeys())
    }

    /// The views name the domain and the mediator (the root hash binds them): a view naming a
    /// participant as mediator would have had participant1 approve and send that participant
    /// its responses; one naming another domain is a replay from there. Both are refused, and
    /// no response goes to a member that is not a mediator of the domain.
    @Test func aViewNamingAnotherMediatorOrDomainIsRejected() throws {
        let elsewhere = try bankIssuesToAlice(namedMediator: members[0].member.description)
        let toParticipant = validator(0, packages: [package]).validate(elsewhere)
        #expect(toParticipant.decision.reasonID == RejectReason.Participant.malformedView, "\(toParticipant.decision)")
        #expect(toParticipant.mediator == nil && toParticipant.responses.isEmpty)
        let otherDomain = "other::1220" + String(repeating: "ab", count: 32)
        let replayed = validator(0, packages: [package]).validate(try bankIssuesToAlice(namedDomain: otherDomain))
        #expect(replayed.decision.reasonID == RejectReason.Participant.malformedView, "\(replayed.decision)")
        #expect(validator(0, packages: [package]).validate(try bankIssuesToAlice()).decision == .approve)
    }

    /// What a rejection sends the mediator, and through the verdict every informee participant:
    /// the reason id, a fixed text, and resources only when they are contract or package ids.
    /// The message may quote what this participant decrypted (a contract's data in a conformance
    /// failure, the parties of a subview), which stays here; before, it was all sent.
    @Test func aRejectionSaysNothingOfTheViewBeyondThisParticipant() throws {
        let reasons = RejectReason.Participant.self
        func sent(_ decision: LocalDecision) -> Weft.V1.LocalReject? {
            guard case .reject(let reject)? = decision.wire.outcome else { return nil }
            return reject
        }
        let conformance = try #require(
            sent(.reject(reasons.failedModelConformanceCheck, "input contract 00ab differs: received Iou(owner: MARKER)", resources: ["00ab"])))
        #expect(conformance.reasonID == reasons.failedModelConformanceCheck)
        #expect(!conformance.message.contains("MARKER") && conformance.message.contains("00ab"), "\(conformance.message)")
        #expect(conformance.resources == ["00ab"])
        let authority = try #require(
            sent(.reject(reasons.missingAuthorization, "view 0.1 needs the authority of carol::1220ab", resources: ["carol::1220ab"])))
        #expect(!authority.message.contains("carol") && authority.resources.isEmpty, "\(authority)")
        // The whole message stays with this participant (its log, its own submitter's completion).
        let request = try bankIssuesToAlice()
        let replay = validator(0, packages: [package]).validate(
            ReceivedRequest(
                timestamp: time, sender: members[0].member.description, rootHashMessages: request.rootHashMessages,
                encryptedViews: request.encryptedViews))
        #expect(replay.decision.message.contains(members[0].member.description))
        #expect(!(sent(replay.decision)?.message.contains(members[0].member.description) ?? true))
    }

    @Test func aRequestSentByAnotherMemberThanItsSubmitterIsAReplayAndRejected() throws {
        let request = try bankIssuesToAlice()
        let replayed = ReceivedRequest(
            timestamp: request.timestamp, sender: members[0].member.description,
            rootHashMessages: request.rootHashMessages, encryptedViews: request.encryptedViews)
        let result = validator(0, packages: [package]).validate(replayed)
        #expect(result.decision.reasonID == RejectReason.Participant.submitterNotEntitled)
        #expect(result.decision.message.contains("a replay"), "\(result.decision.message)")
        #expect(validator(0, packages: [package]).validate(request).decision == .approve)
    }

    @Test func aParticipantWithThePackageApprovesAndOneWithoutRejectsSayingWhich() throws {
        let request = try bankIssuesToAlice()
        #expect(request.encryptedViews.count == 1 && request.rootHashMessages.count == 1)
        let approved = validator(0, packages: [package]).validate(request)
        #expect(approved.decision == .approve)
        #expect(approved.viewTrees.count == 1)

        let missing = validator(0, packages: []).validate(request)
        #expect(missing.decision.reasonID == RejectReason.Participant.packageNotFound)
        #expect(missing.decision.resources == [package.id.description])
        #expect(missing.locks.isEmpty && missing.creates.isEmpty)
    }

    @Test func responsesGoOnlyForConfirmingPartiesHostedWithConfirmationPermission() throws {
        let request = try bankIssuesToAlice()
        // participant1 hosts alice, an observer of the IOU: it validates but does not confirm.
        #expect(validator(0, packages: [package]).validate(request).responses.isEmpty)
    }

    @Test func aLedgerTimeOutsideTheToleranceIsRejected() throws {
        let request = try bankIssuesToAlice(ledgerTime: time.microsSinceEpoch - 120_000_000)
        #expect(
            validator(0, packages: [package]).validate(request).decision.reasonID
                == RejectReason.Participant.ledgerTimeOutOfBounds)
    }

    /// The submitter chooses the ledger time: the extremes are rejected like any time out of
    /// bounds, not a trap in the arithmetic.
    @Test(arguments: [Int64.min, Int64.min + 1, Int64.max])
    func anExtremeLedgerTimeIsRejectedNotATrap(_ ledgerTime: Int64) throws {
        let request = try bankIssuesToAlice(ledgerTime: ledgerTime)
        let decision = validator(0, packages: [package]).validate(request).decision
        #expect(decision.reasonID == RejectReason.Participant.ledgerTimeOutOfBounds, "\(decision)")
    }

    @Test func aRootHashSignedByAnotherKeyIsRejected() throws {
        var request = try bankIssuesToAlice()
        let forged = try members[0].signingKey.sign(PurposeHasher.hash(.rootHash, request.rootHashMessages[0].rootHash))
        request.rootHashMessages[0].submittingParticipantSignature = forged
        #expect(
            validator(0, packages: [package]).validate(request).decision.reasonID
                == RejectReason.Participant.invalidSubmitterSignature)
    }

    /// The submitter's signature is verified once however many messages carry it; one message
    /// whose signature differs in a single bit is still checked, and rejects the request,
    /// whichever message carries it.
    @Test(arguments: [true, false])
    func aSignatureAlteredInOneMessageIsRejectedWhenTheOthersVerify(alterView: Bool) throws {
        var request = try bankIssuesToAlice()
        let intact = try #require(request.rootHashMessages[0].submittingParticipantSignature)
        #expect(request.encryptedViews[0].submittingParticipantSignature == intact)
        var altered = intact
        altered.signature[0] ^= 0x01
        if alterView {
            request.encryptedViews[0].submittingParticipantSignature = altered
        } else {
            request.rootHashMessages[0].submittingParticipantSignature = altered
        }
        #expect(
            validator(0, packages: [package]).validate(request).decision.reasonID
                == RejectReason.Participant.invalidSubmitterSignature)
    }

    /// The submitter checks its own signature by signing again (Ed25519 is deterministic); bytes
    /// that differ, also a signature of its own key over another root hash, are still verified
    /// and refused.
    @Test func theSubmitterAcceptsItsOwnSignatureAndRefusesAnyOther() throws {
        let request = try bankIssuesToAlice(receiver: 1)
        #expect(!request.rootHashMessages.isEmpty && !request.encryptedViews.isEmpty)
        #expect(validator(1, packages: [package]).validate(request).decision == .approve)
        let own = identity(1).signingKey
        let otherRoot = try own.sign(PurposeHasher.hash(.rootHash, Array(repeating: 7, count: 32)))
        var altered = try #require(request.rootHashMessages[0].submittingParticipantSignature)
        altered.signature[63] ^= 0x40
        for forged in [otherRoot, altered] {
            var tampered = request
            tampered.rootHashMessages[0].submittingParticipantSignature = forged
            #expect(
                validator(1, packages: [package]).validate(tampered).decision.reasonID
                    == RejectReason.Participant.invalidSubmitterSignature)
        }
    }

    @Test func viewsWithEachSeedWrappedAreReadLikeViewsUnderASessionKey() throws {
        // A participant with `viewSessionKeyLifetime: .zero` (or of a version before session keys).
        let wrapped = try bankIssuesToAlice(sessions: nil)
        let message = try #require(wrapped.encryptedViews.first)
        #expect(message.sessionSealedSeed == nil && message.wrappedSeeds.count == 2)  // participant1 and participant2
        let approved = validator(0, packages: [package]).validate(wrapped)
        #expect(approved.decision == .approve)
        #expect(approved.viewTrees.count == 1)
        let inSession = try bankIssuesToAlice()
        #expect(inSession.encryptedViews.first?.sessionSealedSeed != nil && inSession.encryptedViews.first?.wrappedSeeds.isEmpty == true)
    }

    @Test func aCreatedContractThatExistsAlreadyIsRejected() throws {
        let request = try bankIssuesToAlice()
        let approved = validator(0, packages: [package]).validate(request)
        let created = try #require(approved.creates.first)
        let again = RequestValidator(
            identity: identity(0), domain: domain.domain, snapshot: snapshot,
            interpreter: Interpreter(packages: [package]),
            packages: [package.id], state: ConflictState(active: [:], known: [created], locks: [:], pendingCreates: [:]),
            sessions: IncomingSessionKeys())
        let rejected = again.validate(request)
        #expect(rejected.decision.reasonID == RejectReason.Participant.createsExistingContracts)
        #expect(rejected.decision.resources == [created.description])
    }
}
