import WeftContracts
import WeftCrypto
import WeftTopology
import WeftWire

/// A registered request waiting for its verdict.
struct PendingRequest: Sendable {
    let id: RequestID
    let tree: InformeeTree
    /// Responses sequenced after this time are refused; once sequencing time passes it, the
    /// request is rejected with `MEDIATOR_SAYS_TX_TIMED_OUT`.
    let deadline: SequencingTimestamp
    /// The informee participants at the request's time: the verdict's recipients.
    let recipients: [UniqueIdentifier]
    var aggregation: ResponseAggregation
}

/// A confirmation response that passed every check, reduced to what aggregation needs.
struct CheckedResponse: Sendable, Equatable {
    let sender: UniqueIdentifier
    /// The index of the view responded to; nil for a rejection of the whole request.
    let view: Int?
    /// The parties responded for; sorted, distinct, each a confirming party of the view.
    let parties: [Party]
    /// nil for an approval.
    let reject: Weft.V1.LocalReject?
    /// The response as received, kept with each party it counted for.
    let message: Weft.V1.SignedProtocolMessage
    let at: SequencingTimestamp
}

/// The checks of a confirmation response against its request and the topology at the
/// request's time (DESIGN.md §8 step 5). Pure: the same response, request and topology give
/// the same answer on every mediator and after every restart.
struct ResponseCheck {
    /// Longest reject reason id accepted: ids are short constants (`LOCKED_CONTRACTS`), and
    /// one is stored and passed on to every informee participant.
    static let reasonIDBytesMax = 100
    /// The most of a rejection's explanation and resources that is kept and passed on: the
    /// verdict copies the rejection to every informee participant, and a participant that sent
    /// one near the request size limit would otherwise make the verdict too large to be
    /// sequenced, leaving every participant's inputs locked. Longer ones are cut (`bounded`).
    static let rejectMessageBytesMax = 1_024
    static let rejectResourcesMax = 32
    static let rejectResourceBytesMax = 256

    /// `reject` with its message and resources cut to the limits above, each cut marked.
    static func bounded(_ reject: Weft.V1.LocalReject) -> Weft.V1.LocalReject {
        let resourcesFit =
            reject.resources.count <= rejectResourcesMax && reject.resources.allSatisfy { $0.utf8.count <= rejectResourceBytesMax }
        guard reject.message.utf8.count > rejectMessageBytesMax || !resourcesFit else { return reject }
        var bounded = reject
        bounded.message = truncated(reject.message, toBytes: rejectMessageBytesMax)
        if !resourcesFit {
            var resources = reject.resources.prefix(rejectResourcesMax).map { truncated($0, toBytes: rejectResourceBytesMax) }
            if reject.resources.count > rejectResourcesMax {
                resources[rejectResourcesMax - 1] = "… \(reject.resources.count - rejectResourcesMax + 1) more"
            }
            bounded.resources = resources
        }
        return bounded
    }

    /// `text` if it has at most `limit` bytes of UTF-8; else its longest prefix of whole
    /// characters that fits with " …" after it.
    static func truncated(_ text: String, toBytes limit: Int) -> String {
        guard text.utf8.count > limit else { return text }
        let marker = " …"
        var kept = ""
        var bytes = marker.utf8.count
        for character in text {
            bytes += character.utf8.count
            if bytes > limit { break }
            kept.append(character)
        }
        return kept + marker
    }

    let domain: UniqueIdentifier

    func check(
        _ response: Weft.V1.ConfirmationResponse, content: Weft.V1.SignedContent,
        message: Weft.V1.SignedProtocolMessage, request: PendingRequest, at: SequencingTimestamp,
        snapshot: TopologySnapshot
    ) throws(MediatorError) -> CheckedResponse {
        guard response.rootHash == request.id.rootHash.bytes else {
            throw .wrongRootHash(request: request.id, received: response.rootHash)
        }
        guard response.domain == domain.description else {
            throw .wrongDomain(expected: domain.description, received: response.domain)
        }
        guard snapshot.timestamp == request.id.timestamp else {
            throw .snapshotAtWrongTime(request: request.id.timestamp, snapshot: snapshot.timestamp)
        }

        // Who signed it: the sender's keys at the request's time, not at the response's.
        guard let sender = try? UniqueIdentifier(parsing: response.sender) else {
            throw .unknownSender(response.sender)
        }
        let keys = snapshot.signingKeys(of: MemberID(role: .participant, identifier: sender))
        guard !keys.isEmpty else { throw .unknownSender(response.sender) }
        switch ProtocolSigning.verify(message, content: content, keys: keys) {
        case .valid: break
        case .unknownKey(let key): throw .unknownSigningKey(participant: sender.description, key: key)
        case .invalid: throw .invalidSignature(signer: "participant \(sender)")
        }

        guard at <= request.deadline else {
            throw .afterDeadline(request: request.id, deadline: request.deadline, at: at)
        }

        let reject: Weft.V1.LocalReject?
        switch response.localVerdict?.outcome {
        case nil: throw .malformedResponse("the response has no local verdict")
        case .approve?: reject = nil
        case .reject(let localReject)?:
            guard !localReject.reasonID.isEmpty, localReject.reasonID.utf8.count <= Self.reasonIDBytesMax else {
                throw .malformedResponse("a rejection needs a reason id of 1 to \(Self.reasonIDBytesMax) bytes")
            }
            reject = Self.bounded(localReject)
        }

        let tree = request.tree
        let view: Int?
        if response.viewHash.isEmpty {
            guard reject != nil else {
                throw .malformedResponse(
                    "an approval without a view hash; only a rejection may be for the whole request")
            }
            view = nil
        } else {
            guard let hash = Digest32(response.viewHash), let index = tree.viewIndex(hash: hash) else {
                throw .unknownView(request: request.id, viewHash: response.viewHash)
            }
            view = index
        }

        guard !response.confirmingParties.isEmpty else {
            throw .malformedResponse("a response for no confirming party")
        }
        var parties: [Party] = []
        for id in response.confirmingParties {
            let party: Party
            do throws(ContractError) {
                party = try Party(id)
            } catch {
                throw .malformedResponse("\(error)")
            }
            if let view {
                guard tree.views[view].weights[party] != nil else {
                    throw .notAConfirmingParty(party: party.id, view: tree.views[view].position)
                }
            } else {
                guard tree.views.contains(where: { $0.weights[party] != nil }) else {
                    throw .notAConfirmingParty(party: party.id, view: nil)
                }
            }
            try checkHosting(party, on: sender, policy: tree.policy, snapshot: snapshot)
            parties.append(party)
        }
        let sorted = parties.sorted()
        guard zip(sorted, sorted.dropFirst()).allSatisfy({ $0 != $1 }) else {
            throw .malformedResponse("a response names a confirming party twice")
        }
        return CheckedResponse(sender: sender, view: view, parties: sorted, reject: reject, message: message, at: at)
    }

    /// That `participant` hosts `party` with a permission that confirms, and is VIP under the
    /// VIP policy.
    private func checkHosting(
        _ party: Party, on participant: UniqueIdentifier, policy: ConfirmationPolicy.Kind, snapshot: TopologySnapshot
    ) throws(MediatorError) {
        guard let identifier = try? UniqueIdentifier(parsing: party.id),
            let hosting = snapshot.hostingParticipants(of: identifier).first(where: { $0.participant == participant })
        else { throw .partyNotHosted(party: party.id, participant: participant.description) }
        guard RequestCheck.confirms(hosting.permission) else {
            throw .noConfirmationPermission(
                party: party.id, participant: participant.description, permission: hosting.permission)
        }
        if policy == .vip, snapshot.participantState(participant)?.trustLevel != .vip {
            throw .notVIP(participant: participant.description)
        }
    }
}

/// The responses counted for one request, per view (pure): each confirming party counts once
/// per view, with the first response that names it; a view is approved once the weights of
/// its approving parties reach its threshold; the request is approved when every view is,
/// and rejected by the first rejection that counts.
struct ResponseAggregation: Sendable, Equatable {
    /// Per view, the confirming parties' weights and the threshold.
    private let weights: [[Party: Int]]
    private let thresholds: [Int]
    /// Per view, the sum of the approving parties' weights.
    private(set) var approvedWeight: [Int]
    /// Per view, the parties counted and the participant that responded for each.
    private(set) var responded: [[Party: UniqueIdentifier]]

    init(_ tree: InformeeTree) {
        weights = tree.views.map(\.weights)
        thresholds = tree.views.map(\.threshold)
        approvedWeight = Array(repeating: 0, count: tree.views.count)
        responded = Array(repeating: [:], count: tree.views.count)
    }

    /// What one response did.
    enum Step: Equatable {
        /// Every party it names was counted before for that view (for a rejection of the whole
        /// request: for every view the party confirms): nothing changed.
        case duplicate
        /// It counted for `parties`; some view still lacks approvals.
        case counted(parties: [Party])
        /// It counted for `parties`, and now every view is approved.
        case approved(parties: [Party])
        /// It rejected for `parties`: the request is rejected.
        case rejected(parties: [Party])
    }

    /// Counts `response` for the parties it names that were not counted yet for its view. A
    /// rejection of the whole request (no view) counts for every view its parties confirm and
    /// have not answered: a party that approved every view it confirms cannot take that back
    /// (the first response that names a party for a view is the one that counts).
    mutating func apply(_ response: CheckedResponse) -> Step {
        guard let view = response.view else {
            var counted = Set<Party>()
            for index in weights.indices {
                for party in response.parties where weights[index][party] != nil && responded[index][party] == nil {
                    responded[index][party] = response.sender
                    counted.insert(party)
                }
            }
            return counted.isEmpty ? .duplicate : .rejected(parties: counted.sorted())
        }
        let new = response.parties.filter { responded[view][$0] == nil }
        guard !new.isEmpty else { return .duplicate }
        for party in new { responded[view][party] = response.sender }
        if response.reject != nil { return .rejected(parties: new) }
        for party in new { approvedWeight[view] += weights[view][party] ?? 0 }
        return isApproved ? .approved(parties: new) : .counted(parties: new)
    }

    /// Counts an approval read back from the store.
    mutating func restoreApproval(view: Int, party: Party, sender: UniqueIdentifier) throws(MediatorError) {
        guard weights.indices.contains(view), let weight = weights[view][party] else {
            throw .inconsistentStore("a stored approval for \(party) of view index \(view), which it does not confirm")
        }
        guard responded[view][party] == nil else {
            throw .inconsistentStore("two stored approvals for \(party) of view index \(view)")
        }
        responded[view][party] = sender
        approvedWeight[view] += weight
    }

    /// Whether every view has reached its threshold.
    var isApproved: Bool { zip(approvedWeight, thresholds).allSatisfy { $0 >= $1 } }
}
