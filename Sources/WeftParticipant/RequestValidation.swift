import WeftContracts
import WeftCrypto
import WeftProtocol
import WeftTopology
import WeftWire

/// What a participant received of one confirmation request: the envelopes addressed to it.
struct ReceivedRequest: Sendable {
    let timestamp: SequencingTimestamp
    /// The member that sent it, as the sequencer authenticated it (`PAR::…`).
    let sender: String
    var rootHashMessages: [Weft.V1.RootHashMessage] = []
    var encryptedViews: [Weft.V1.EncryptedViewMessage] = []
}

/// A local verdict before it is signed: approve, or reject with a stable reason id.
struct LocalDecision: Sendable, Equatable {
    let reasonID: String?
    let message: String
    let resources: [String]

    static let approve = LocalDecision(reasonID: nil, message: "", resources: [])
    static func reject(_ reasonID: String, _ message: String, resources: [String] = []) -> LocalDecision {
        LocalDecision(reasonID: reasonID, message: message, resources: resources)
    }

    var isApproval: Bool { reasonID == nil }

    /// What the mediator gets, and through the verdict every informee participant of the
    /// request, also those of views this participant saw and they did not: the reason id, a
    /// fixed text for it, and only resources that name no view's contents (contract and
    /// package ids). The message of a rejection may quote what this participant decrypted (a
    /// contract's arguments in a conformance failure, the parties of a subview, other requests'
    /// times), so it stays in this participant's log and its own submitter's completion.
    var wire: Weft.V1.LocalVerdict {
        guard let reasonID else { return Weft.V1.LocalVerdict(outcome: .approve(Weft.V1.LocalApprove())) }
        let shared = Self.sharedResources.contains(reasonID) ? resources : []
        let text = (Self.publicTexts[reasonID] ?? "rejected; the rejecting participant's log says why")
            + (shared.isEmpty ? "" : ": " + shared.joined(separator: ", "))
        return Weft.V1.LocalVerdict(outcome: .reject(Weft.V1.LocalReject(reasonID: reasonID, message: text, resources: shared)))
    }

    /// The reasons whose resources are contract or package ids, which say nothing of a view.
    private static let sharedResources: Set<String> = {
        let reasons = RejectReason.Participant.self
        return [
            reasons.lockedContracts, reasons.inactiveContracts, reasons.createsExistingContracts, reasons.packageNotFound,
            reasons.failedModelConformanceCheck,
        ]
    }()

    /// The text a rejection carries beyond this participant, by reason id.
    private static let publicTexts: [String: String] = {
        let reasons = RejectReason.Participant.self
        return [
            reasons.lockedContracts: "input contract(s) locked by another pending request",
            reasons.inactiveContracts: "input contract(s) not active at this participant",
            reasons.createsExistingContracts: "the request creates contract(s) that exist already",
            reasons.packageNotFound: "this participant lacks package(s) the request uses; upload them to validate",
            reasons.failedModelConformanceCheck:
                "a view does not re-interpret to the actions it names (the rejecting participant's log says how)",
            reasons.malformedView: "a view does not decrypt or decode, or is not the view its envelope names",
            reasons.rootHashMismatch: "the views and root hash messages do not lead to one root hash",
            reasons.invalidSubmitterSignature: "the submitter's signature on the root hash is missing or does not verify",
            reasons.submitterNotEntitled: "the submitting participant may not submit for the acting parties",
            reasons.missingAuthorization: "an action lacks the authority of a party it needs",
            reasons.ledgerTimeOutOfBounds:
                "the ledger time is too far from the sequencing time, or the request was sequenced after its max sequencing time",
        ]
    }()
}

/// The state of the participant that validation reads: what is active, what exists, what is
/// locked. Passed in, so that validation is a pure function of it and the request.
struct ConflictState {
    let active: [ContractID: (contract: ContractInstance, seed: NodeSeed?)]
    let known: Set<ContractID>
    /// Contracts locked by pending requests, with the request holding each.
    let locks: [ContractID: SequencingTimestamp]
    /// Contracts pending requests will create.
    let pendingCreates: [ContractID: SequencingTimestamp]
}

/// The outcome of validating one request.
struct ValidationResult: Sendable {
    /// The decrypted view trees, serialized, in the order received: what a commit reads.
    let viewTrees: [[UInt8]]
    /// The same views decoded, for a commit by this process (`StoredRequest.decodedViews`).
    let views: [View]
    let rootHash: Digest32?
    let decision: LocalDecision
    /// One response per view with confirming parties hosted here (may be empty).
    let responses: [Weft.V1.SignedProtocolMessage]
    /// The mediator to send them to.
    let mediator: String?
    /// Contracts to lock while the request is pending (consumed inputs), on approval only.
    let locks: [ContractID]
    /// Contracts it creates, reserved while it is pending, on approval only.
    let creates: [ContractID]
    /// The command, when this participant submitted the request.
    let command: CommandKey?
    /// The command's submitter metadata, from the views (`StoredRequest.ownSubmitter`).
    let ownSubmitter: SubmitterMetadata?
}

/// Validates a confirmation request as one participant sees it (DESIGN.md §8 step 4,
/// docs/participant.md §3): pure, given the topology at the request's time, the packages and
/// the conflict state.
struct RequestValidator {
    let identity: ParticipantIdentity
    let domain: UniqueIdentifier
    let snapshot: TopologySnapshot
    let interpreter: Interpreter
    let packages: Set<PackageID>
    let state: ConflictState
    /// Session keys unwrapped for earlier views (docs/crypto.md §6.1).
    let sessions: IncomingSessionKeys
    /// For tests that play a confirmer approving what it should reject: its responses approve
    /// whatever the checks decided (`ParticipantNode.approveEveryRequest`).
    var respondsApproveAnyway = false

    private struct Decoded {
        let received: ReceivedView
        let tree: [UInt8]
    }

    func validate(_ request: ReceivedRequest) -> ValidationResult {
        var decoded: [Decoded] = []
        var decodeFailure: LocalDecision?
        for message in request.encryptedViews {
            do {
                let plaintext = try ViewEncryption.open(message, with: identity.encryptionKey, sessions: sessions)
                let tree = try Weft.V1.ViewTree(serializedBytes: plaintext)
                let received = try ReceivedView(tree)
                guard received.view.hash.bytes == message.viewHash else {
                    decodeFailure =
                        decodeFailure
                        ?? .reject(
                            RejectReason.Participant.malformedView,
                            "view \(positionText(received.view.position)) hashes to \(received.view.hash), not to the view hash its envelope names"
                        )
                    continue
                }
                decoded.append(Decoded(received: received, tree: plaintext))
            } catch {
                decodeFailure =
                    decodeFailure
                    ?? .reject(RejectReason.Participant.malformedView, "a view does not decrypt or decode: \(error)")
            }
        }
        let rootHashes = Set(request.rootHashMessages.map(\.rootHash))
        let announced = rootHashes.count == 1 ? Digest32(rootHashes.first!) : nil
        // Responses go to the mediator the views name only if it is one of the domain's: a view
        // naming another member would have this participant send it what it decided (`check`
        // rejects such a request; its responses go nowhere).
        let mediator = decoded.lazy.compactMap { $0.received.commonMetadata?.mediator }.first.flatMap { named in
            (try? MemberID(parsing: named)).flatMap { snapshot.mediators.contains($0) ? named : nil }
        }
        // This participant's own command only if it sent the request: another member replaying
        // the batch (same views, signature and submission id) is rejected below, and its
        // rejection must not complete the command, whose own request may yet commit.
        let sentHere = request.sender == MemberID(role: .participant, identifier: identity.id).description
        let command = decoded.lazy.compactMap { view -> CommandKey? in
            guard sentHere, let submitter = view.received.submitterMetadata,
                submitter.submittingParticipant == identity.id.description
            else { return nil }
            return CommandKey(applicationID: submitter.applicationID, commandID: submitter.commandID)
        }.first
        // The metadata `ParticipantNode.restoreCommand` would pick: the command's, with a submission id.
        let ownSubmitter = command.flatMap { command in
            decoded.lazy.compactMap(\.received.submitterMetadata).first { submitter in
                !submitter.submissionID.isEmpty && submitter.commandID == command.commandID
                    && submitter.applicationID == command.applicationID
            }
        }

        var decision = decodeFailure ?? check(request, decoded.map(\.received), rootHash: announced)
        // The request is known by the root hash its views lead to (the mediator's), else by
        // the one announced.
        let rootHash = decoded.first?.received.rootHash ?? announced
        var locks: [ContractID] = []
        var creates: [ContractID] = []
        if decision.isApproval {
            let conflicts = conflictCheck(decoded.map(\.received.view))
            decision = conflicts.decision
            locks = conflicts.locks
            creates = conflicts.creates
        }
        if !decision.isApproval { (locks, creates) = ([], []) }

        var responses: [Weft.V1.SignedProtocolMessage] = []
        if let rootHash, mediator != nil {
            for view in decoded.map(\.received.view) {
                let parties = view.commonData.confirmingParties.filter { confirmsHere($0) }
                guard !parties.isEmpty else { continue }
                let response = Weft.V1.ConfirmationResponse(
                    requestID: request.timestamp.wire, sender: identity.id.description, viewHash: view.hash.bytes,
                    localVerdict: respondsApproveAnyway ? LocalDecision.approve.wire : decision.wire, rootHash: rootHash.bytes, confirmingParties: parties.map(\.id),
                    domain: domain.description)
                if let signed = try? ProtocolSigning.sign(response, with: identity.signingKey) {
                    responses.append(signed)
                }
            }
        }
        return ValidationResult(
            viewTrees: decoded.map(\.tree), views: decoded.map(\.received.view), rootHash: rootHash,
            decision: decision, responses: responses,
            mediator: mediator, locks: locks, creates: creates, command: command, ownSubmitter: ownSubmitter)
    }

    // MARK: - The checks, in order

    private func check(_ request: ReceivedRequest, _ views: [ReceivedView], rootHash: Digest32?) -> LocalDecision {
        let reasons = RejectReason.Participant.self
        // 1. One transaction: every root hash message and every view lead to one root hash.
        guard let rootHash else {
            return .reject(
                reasons.rootHashMismatch,
                request.rootHashMessages.isEmpty
                    ? "the request has views but no root hash message for this participant"
                    : "the request's root hash messages disagree")
        }
        for message in request.rootHashMessages
        where message.domain != domain.description || message.viewType != .transaction {
            return .reject(reasons.rootHashMismatch, "a root hash message is for another domain or view type")
        }
        for received in views where received.rootHash != rootHash {
            return .reject(
                reasons.rootHashMismatch,
                "view \(positionText(received.view.position)) leads to root hash \(received.rootHash), "
                    + "the root hash message says \(rootHash)")
        }
        // 1b. For this domain and its mediator. The root hash binds the common metadata, which
        //     every view reveals (as the participant metadata): a view naming another domain is
        //     a replay from there; one naming a member that is not a mediator of this domain
        //     would have this participant send that member its responses.
        for received in views {
            let position = positionText(received.view.position)
            guard let common = received.commonMetadata, received.participantMetadata != nil else {
                return .reject(reasons.malformedView, "view \(position) hides its common or participant metadata, which every view reveals")
            }
            guard common.domain == domain.description else {
                return .reject(reasons.malformedView, "view \(position) is for domain \(common.domain.prefix(200)), not \(domain)")
            }
            guard let named = try? MemberID(parsing: common.mediator), snapshot.mediators.contains(named) else {
                return .reject(
                    reasons.malformedView, "view \(position) names \(common.mediator.prefix(200)) as its mediator, not a mediator of this domain")
            }
        }
        // 2. The submitter's signature on the root hash, with its key at the request's time.
        //    Every message of the request carries the submitter's signature over the same root
        //    hash, and Ed25519 signs deterministically: one signature, the same bytes in each
        //    message, is verified once (a verification costs as much as the rest of this check).
        let submitter = views.lazy.compactMap(\.submitterMetadata).first
        var verified = Set<Weft.V1.Signature>()
        let signatures =
            request.rootHashMessages.map(\.submittingParticipantSignature)
            + request.encryptedViews.map(\.submittingParticipantSignature)
        for signature in signatures {
            if let signature, verified.contains(signature) { continue }
            if let failure = checkSignature(signature, rootHash, submitter) { return failure }
            if let signature { verified.insert(signature) }
        }
        // 3. Entitlement and authorization of the root views.
        if let submitter {
            guard let participant = try? UniqueIdentifier(parsing: submitter.submittingParticipant),
                snapshot.participantState(participant)?.permission == .submission
            else {
                return .reject(
                    reasons.submitterNotEntitled,
                    "submitting participant \(submitter.submittingParticipant) is not active with submission permission"
                )
            }
            // Only the submitting participant sends its request: a batch another member sends
            // again under its own name is a replay, even with the submitter's valid signature.
            guard request.sender == MemberID(role: .participant, identifier: participant).description else {
                return .reject(
                    reasons.submitterNotEntitled,
                    "the request was sent by \(request.sender), not by its submitting participant \(participant): "
                        + "a replay of that participant's request")
            }
            for party in submitter.actAs {
                let hosting =
                    (try? UniqueIdentifier(parsing: party.id)).map { snapshot.hostingParticipants(of: $0) } ?? []
                guard hosting.contains(where: { $0.participant == participant && $0.permission == .submission }) else {
                    return .reject(
                        reasons.submitterNotEntitled,
                        "submitting participant \(participant) does not host \(party) with submission permission",
                        resources: [party.id])
                }
            }
        }
        for received in views where received.view.position.count == 1 {
            guard let submitter else {
                return .reject(reasons.malformedView, "a root view without its submitter metadata")
            }
            let missing = received.view.participantData.requiredAuthorizers.filter { !submitter.actAs.contains($0) }
            if !missing.isEmpty {
                return .reject(
                    reasons.missingAuthorization,
                    "root view \(positionText(received.view.position)) needs the authority of "
                        + "\(missing.map(\.id).joined(separator: ", ")), but the submitter acts as "
                        + "\(submitter.actAs.map(\.id).joined(separator: ", "))",
                    resources: missing.map(\.id))
            }
        }
        // A view received without its parent: the authority its action needs came from the
        // parent's action (its signatories and actors), and only the parent's recipients check
        // that, re-interpreting it; this participant re-interprets the view with the authority
        // the view itself names. Every party whose authority an honest view needs is an
        // informee of the parent (a signatory or actor of it), so its participants receive the
        // parent: a view needing the authority of a party hosted here, without its parent, is
        // a forgery (a create signed for a party that never agreed, an exercise as its actor).
        let received = Set(views.map(\.view.position))
        for view in views.map(\.view) {
            guard let parent = view.parentPosition, !received.contains(parent) else { continue }
            let hosted = view.participantData.requiredAuthorizers.filter(hostsHere)
            if !hosted.isEmpty {
                return .reject(
                    reasons.missingAuthorization,
                    "view \(positionText(view.position)) needs the authority of "
                        + "\(hosted.map(\.id).joined(separator: ", ")), hosted here, but this participant did not "
                        + "receive its parent view \(positionText(parent)), the action that authority would come from",
                    resources: hosted.map(\.id))
            }
        }
        // 4. Time bounds.
        let toleranceMicros = snapshot.domainParameters?.ledgerTimeRecordTimeTolerance?.micros ?? 60_000_000
        for received in views {
            // The ledger time comes from the submitter: a difference that does not fit an Int64
            // is out of bounds too, never a trap (one that every recipient would hit again
            // after each restart, reading the same event).
            if let metadata = received.participantMetadata,
                case let (difference, overflow) = metadata.ledgerTime.subtractingReportingOverflow(
                    request.timestamp.microsSinceEpoch),
                overflow || difference.magnitude > toleranceMicros.magnitude
            {
                return .reject(
                    reasons.ledgerTimeOutOfBounds,
                    "ledger time \(SequencingTimestamp(microsSinceEpoch: metadata.ledgerTime)) is more than "
                        + "\(toleranceMicros) µs from the sequencing time \(request.timestamp)")
            }
            if let submitter = received.submitterMetadata,
                request.timestamp.microsSinceEpoch > submitter.maxSequencingTime
            {
                return .reject(
                    reasons.ledgerTimeOutOfBounds,
                    "the request was sequenced at \(request.timestamp), after its max sequencing time")
            }
        }
        // One transaction across its views: each view is re-interpreted on its own, so what
        // only the whole transaction shows is checked here. A contract is consumed at most once
        // and created at most once (a consuming action belongs to exactly one view's core, so
        // an honest transaction counts each once): else two views could each spend one IOU.
        // Every participant hosting a stakeholder receives every view consuming its contract.
        var consumptions: [ContractID: Int] = [:]
        var creations: [ContractID: Int] = [:]
        for data in views.map(\.view.participantData) {
            for input in data.coreInputs where input.consumed { consumptions[input.id, default: 0] += 1 }
            for created in data.createdCore {
                creations[created.id, default: 0] += 1
                if created.consumedInCore { consumptions[created.id, default: 0] += 1 }
            }
            for id in data.createdInSubviewArchivedInCore { consumptions[id, default: 0] += 1 }
        }
        let twice = Set(consumptions.filter { $0.value > 1 }.keys).union(creations.filter { $0.value > 1 }.keys)
            .map(\.description).sorted()
        if !twice.isEmpty {
            return .reject(
                reasons.failedModelConformanceCheck,
                "contract(s) consumed or created by more than one view of this request: \(twice.joined(separator: ", "))",
                resources: twice)
        }
        // 5. Packages: a participant without a package cannot validate, and says so.
        let missingPackages = Set(views.flatMap { Self.packagesUsed(by: $0.view) }).subtracting(packages)
        if !missingPackages.isEmpty {
            let ids = missingPackages.map(\.description).sorted()
            return .reject(
                reasons.packageNotFound,
                "this participant lacks package(s) \(ids.joined(separator: ", ")); upload them to validate",
                resources: ids)
        }
        // 6. Model conformance: each top view we received with all its descendants we received.
        let byPosition = Dictionary(views.map { ($0.view.position, $0.view) }, uniquingKeysWith: { first, _ in first })
        let policy = confirmationPolicy(views)
        let declared = ModelConformance.declaredInputs(of: views.map(\.view))
        let lookup = LayeredLookup(first: declared, then: state)
        for received in views {
            let view = received.view
            if let parent = view.parentPosition, byPosition[parent] != nil { continue }
            let descendants = views.map(\.view).filter {
                $0.position.count > view.position.count && $0.position.starts(with: view.position)
            }
            do throws(ConformanceError) {
                try ModelConformance.check(
                    view: view, subviews: descendants, interpreter: interpreter, contracts: lookup, policy: policy)
            } catch {
                return .reject(ConformanceError.reasonID, error.description)
            }
        }
        return .approve
    }

    private func checkSignature(_ signature: Weft.V1.Signature?, _ rootHash: Digest32, _ submitter: SubmitterMetadata?)
        -> LocalDecision?
    {
        let reason = RejectReason.Participant.invalidSubmitterSignature
        guard let signature else { return .reject(reason, "a message of the request carries no submitter signature") }
        let keys: [SigningPublicKey]
        if let submitter, let participant = try? UniqueIdentifier(parsing: submitter.submittingParticipant) {
            keys = snapshot.signingKeys(of: MemberID(role: .participant, identifier: participant))
        } else {
            // Without a root view the submitter is unknown here: any participant's key will do.
            keys = snapshot.participants.flatMap {
                snapshot.signingKeys(of: MemberID(role: .participant, identifier: $0.participant))
            }
        }
        guard let key = keys.first(where: { $0.fingerprint.description == signature.signedBy }) else {
            return .reject(
                reason, "the root hash is signed by key \(signature.signedBy), not the submitting participant's")
        }
        do throws(CryptoError) {
            let hash = PurposeHasher.hash(.rootHash, rootHash.bytes)
            // This participant's own request: Ed25519 signs deterministically, so signing the root
            // hash again gives these very bytes if they are right, at a third of a
            // verification's cost. Any other bytes are verified as usual.
            if key == identity.signingKey.publicKey, try identity.signingKey.sign(hash) == signature { return nil }
            try key.verify(signature, over: hash)
            return nil
        } catch {
            return .reject(reason, "the submitter's signature on the root hash does not verify")
        }
    }

    /// The confirmation policy the request names, with the VIP-hosted parties from topology.
    private func confirmationPolicy(_ views: [ReceivedView]) -> ConfirmationPolicy {
        guard views.lazy.compactMap(\.commonMetadata).first?.policy == .vip else { return .signatory }
        let vip = Set(views.flatMap(\.view.commonData.informees)).filter { party in
            guard let id = try? UniqueIdentifier(parsing: party.id) else { return false }
            return snapshot.hostingParticipants(of: id).contains {
                snapshot.participantState($0.participant)?.trustLevel == .vip
            }
        }
        return .vip(vipHosted: vip.sorted())
    }

    /// The packages `view` uses: its action's template and its inputs' and outputs'.
    static func packagesUsed(by view: View) -> [PackageID] {
        var result: [PackageID] = []
        if case .exercise(_, let template, _, _, _, _, _) = view.participantData.action {
            result.append(template.package)
        }
        result += view.participantData.coreInputs.map(\.contract.template.package)
        result += view.participantData.createdCore.map(\.contract.template.package)
        return result
    }

    /// Whether this participant hosts `party` with a permission that confirms.
    func confirmsHere(_ party: Party) -> Bool {
        guard let id = try? UniqueIdentifier(parsing: party.id) else { return false }
        return snapshot.hostingParticipants(of: id).contains {
            $0.participant == identity.id && ($0.permission == .submission || $0.permission == .confirmation)
        }
    }

    /// Whether this participant hosts `party` at all.
    func hostsHere(_ party: Party) -> Bool {
        guard let id = try? UniqueIdentifier(parsing: party.id) else { return false }
        return snapshot.hostingParticipants(of: id).contains {
            $0.participant == identity.id && $0.permission != .disabled
        }
    }

    // MARK: - Conflict detection

    private func conflictCheck(_ views: [View]) -> (decision: LocalDecision, locks: [ContractID], creates: [ContractID])
    {
        let reasons = RejectReason.Participant.self
        var inactive: [ContractID] = []
        var locked: [ContractID] = []
        var toLock: [ContractID] = []
        var creates: [ContractID] = []
        var existing: [ContractID] = []
        // An input of one view that another view of this request creates (a choice creating a
        // contract, then exercising a choice on it) is no contract of the ledger: neither
        // inactive nor to lock. Its creating view reaches every participant hosting one of its
        // stakeholders, so one that did not is still judged by the ledger, and rejects.
        let createdInRequest = Set(views.flatMap { $0.participantData.createdCore.map(\.id) })
        for view in views {
            for input in view.participantData.coreInputs
            where input.contract.stakeholders.contains(where: hostsHere) && !createdInRequest.contains(input.id) {
                if state.active[input.id] == nil {
                    inactive.append(input.id)
                } else if state.locks[input.id] != nil {
                    locked.append(input.id)
                } else if input.consumed, !toLock.contains(input.id) {
                    toLock.append(input.id)
                }
            }
            for created in view.participantData.createdCore {
                if state.known.contains(created.id) || state.pendingCreates[created.id] != nil {
                    existing.append(created.id)
                } else if !creates.contains(created.id) {
                    creates.append(created.id)
                }
            }
        }
        if !inactive.isEmpty {
            return (
                .reject(
                    reasons.inactiveContracts,
                    "input contract(s) not active here: \(inactive.map(\.description).joined(separator: ", "))",
                    resources: inactive.map(\.description)), [], []
            )
        }
        if !locked.isEmpty {
            let holders = locked.compactMap { state.locks[$0] }.map(\.description)
            return (
                .reject(
                    reasons.lockedContracts,
                    "input contract(s) locked by pending request(s) \(holders.joined(separator: ", "))",
                    resources: locked.map(\.description)), [], []
            )
        }
        if !existing.isEmpty {
            return (
                .reject(
                    reasons.createsExistingContracts, "the request creates contract(s) that exist already",
                    resources: existing.map(\.description)), [], []
            )
        }
        return (.approve, toLock, creates)
    }
}

/// Contracts the views declare (authenticated by their creation seeds) first, then the
/// participant's active contracts.
struct LayeredLookup: ContractLookup {
    let first: ContractStore
    let then: ConflictState

    func contract(_ id: ContractID) -> ContractInstance? {
        first.contract(id) ?? then.active[id]?.contract
    }

    func creationSeed(of id: ContractID) -> NodeSeed? {
        first.creationSeed(of: id) ?? then.active[id]?.seed
    }
}

func positionText(_ position: [Int]) -> String {
    position.map(String.init).joined(separator: ".")
}
