public import WeftContracts
public import WeftTopology
public import WeftWire

/// Why the mediator refused a message. A refused message changes nothing: a refused response
/// is not counted, a refused registration registers nothing.
///
/// Every case has a stable `id` for logs and metrics; the description says what happened.
public enum MediatorError: Error, Equatable, Sendable, CustomStringConvertible {
    // MARK: Requests

    /// The request names no root hash at all (neither its informee tree nor its root hash
    /// messages give one), so there is nothing to send a rejection about.
    case malformedRequest(String)
    /// A different request (another root hash) is registered at the same sequencing time.
    /// The sequencer gives every event its own time, so this is a replay of something else.
    case conflictingRequest(timestamp: SequencingTimestamp, registered: Digest32, received: Digest32)
    /// The caller passed a topology snapshot of another time than the request's: every check
    /// must use the topology at the request's sequencing time, on every mediator alike.
    case snapshotAtWrongTime(request: SequencingTimestamp, snapshot: SequencingTimestamp)

    // MARK: Responses

    /// Not a well-formed signed confirmation response.
    case malformedResponse(String)
    /// No request was registered at the response's request id.
    case unknownRequest(SequencingTimestamp)
    /// The response names the request's time but another root hash.
    case wrongRootHash(request: RequestID, received: [UInt8])
    /// The response is for another domain.
    case wrongDomain(expected: String, received: String)
    /// The sender is no participant with signing keys in the topology at the request's time.
    case unknownSender(String)
    /// The signature names a key the sender had not registered at the request's time.
    case unknownSigningKey(participant: String, key: String)
    /// The signature does not verify with the signer's key.
    case invalidSignature(signer: String)
    /// The response was sequenced after the request's deadline.
    case afterDeadline(request: RequestID, deadline: SequencingTimestamp, at: SequencingTimestamp)
    /// The response's view hash is none of the request's views.
    case unknownView(request: RequestID, viewHash: [UInt8])
    /// A party the response confirms for is not a confirming party of the view (of any view,
    /// for a rejection of the whole request).
    case notAConfirmingParty(party: String, view: [Int]?)
    /// The sender does not host a party it responds for.
    case partyNotHosted(party: String, participant: String)
    /// The sender hosts the party with a permission that does not let it confirm.
    case noConfirmationPermission(party: String, participant: String, permission: Weft.V1.ParticipantPermission)
    /// Under the VIP policy only VIP participants confirm, and the sender is not one.
    case notVIP(participant: String)

    /// The response names a sender other than the member the sequencer delivered it from.
    case senderMismatch(claimed: String, sequencedFrom: String)

    // MARK: Store

    /// The mediator's tables say something this mediator could not have written.
    case inconsistentStore(String)

    /// A stable id for logs and metrics.
    public var id: String {
        switch self {
        case .malformedRequest: "MEDIATOR_MALFORMED_REQUEST"
        case .conflictingRequest: "MEDIATOR_CONFLICTING_REQUEST"
        case .snapshotAtWrongTime: "MEDIATOR_SNAPSHOT_AT_WRONG_TIME"
        case .malformedResponse: "MEDIATOR_MALFORMED_RESPONSE"
        case .unknownRequest: "MEDIATOR_UNKNOWN_REQUEST"
        case .wrongRootHash: "MEDIATOR_WRONG_ROOT_HASH"
        case .wrongDomain: "MEDIATOR_WRONG_DOMAIN"
        case .unknownSender: "MEDIATOR_UNKNOWN_SENDER"
        case .unknownSigningKey: "MEDIATOR_UNKNOWN_SIGNING_KEY"
        case .invalidSignature: "MEDIATOR_INVALID_SIGNATURE"
        case .afterDeadline: "MEDIATOR_RESPONSE_AFTER_DEADLINE"
        case .unknownView: "MEDIATOR_UNKNOWN_VIEW"
        case .notAConfirmingParty: "MEDIATOR_NOT_A_CONFIRMING_PARTY"
        case .partyNotHosted: "MEDIATOR_PARTY_NOT_HOSTED"
        case .noConfirmationPermission: "MEDIATOR_NO_CONFIRMATION_PERMISSION"
        case .notVIP: "MEDIATOR_NOT_VIP"
        case .senderMismatch: "MEDIATOR_SENDER_MISMATCH"
        case .inconsistentStore: "MEDIATOR_INCONSISTENT_STORE"
        }
    }

    public var description: String {
        switch self {
        case .malformedRequest(let reason):
            "a confirmation request without a root hash to reject it by: \(reason)"
        case .conflictingRequest(let timestamp, let registered, let received):
            "request \(timestamp) is registered with root hash \(registered), not \(received)"
        case .snapshotAtWrongTime(let request, let snapshot):
            "the topology snapshot is at \(snapshot), but request \(request) is checked against the topology "
                + "at its own time"
        case .malformedResponse(let reason):
            "malformed confirmation response: \(reason)"
        case .unknownRequest(let timestamp):
            "no request is registered at \(timestamp)"
        case .wrongRootHash(let request, let received):
            "a response for request \(request.timestamp) names root hash \(hexText(received)), not \(request.rootHash)"
        case .wrongDomain(let expected, let received):
            "a response for domain '\(received.prefix(200))', not \(expected)"
        case .unknownSender(let sender):
            "'\(sender.prefix(200))' is no participant with signing keys at the request's time"
        case .unknownSigningKey(let participant, let key):
            "participant \(participant) had no signing key \(key.prefix(80)) at the request's time"
        case .invalidSignature(let signer):
            "the signature of \(signer) does not verify"
        case .afterDeadline(let request, let deadline, let at):
            "a response for request \(request.timestamp) sequenced at \(at), after its deadline \(deadline)"
        case .unknownView(let request, let viewHash):
            "request \(request.timestamp) has no view \(hexText(viewHash))"
        case .notAConfirmingParty(let party, let view):
            if let view {
                "\(party.prefix(300)) is not a confirming party of view \(positionText(view))"
            } else {
                "\(party.prefix(300)) is a confirming party of no view of the request"
            }
        case .partyNotHosted(let party, let participant):
            "participant \(participant) does not host \(party) at the request's time"
        case .noConfirmationPermission(let party, let participant, let permission):
            "participant \(participant) hosts \(party) with permission \(permission), which does not confirm"
        case .notVIP(let participant):
            "the request's views follow the VIP policy, and participant \(participant) is not VIP"
        case .senderMismatch(let claimed, let sequencedFrom):
            "a response names sender '\(claimed.prefix(200))' but was sent by \(sequencedFrom.prefix(200)); "
                + "a participant may only respond in its own name"
        case .inconsistentStore(let reason):
            "the mediator store is inconsistent: \(reason)"
        }
    }
}

/// `0.2.1`: a view's position as docs/contracts.md writes it.
func positionText(_ position: [Int]) -> String {
    position.map(String.init).joined(separator: ".")
}

/// Lower-case hex of at most the first 64 bytes (an id from the network may be anything).
func hexText(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    var text = ""
    for byte in bytes.prefix(64) {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return bytes.count > 64 ? text + "…" : text
}
