public import WeftContracts
import WeftCrypto
import WeftTopology
public import WeftWire

/// A confirmation request ready to send (DESIGN.md §8 step 2): one batch with the informee
/// tree for the mediator, each view encrypted for the participants that must see it, and a
/// root hash message for every informee participant, all signed over the root hash.
public struct PreparedSubmission: Sendable {
    /// The command and the parties it acts as: what deduplicates it and what its completion names.
    public let change: ChangeID
    public let submissionID: String
    /// The sequencer message id: unique per submission, so a resend is deduplicated.
    public let messageID: String
    public let views: TransactionViews
    /// What is sent. Public and mutable so that tests can play a malicious submitter.
    public var batch: Weft.V1.Batch
    /// The request is void if not sequenced by then (microseconds since the epoch).
    public let maxSequencingTime: Int64
    public let deduplicationPeriodMicros: Int64

    public var rootHash: Digest32 { views.rootHash }
    public var command: CommandKey { change.command }
}

/// Builds the batch of a confirmation request from views: pure, given the topology snapshot
/// the submitter chose recipients and keys from.
struct RequestBuilder {
    let identity: ParticipantIdentity
    let snapshot: TopologySnapshot
    let domain: UniqueIdentifier
    /// Where the seeds of the views go under session keys; nil wraps each view's seed for each
    /// recipient (docs/crypto.md §6.1).
    let sessions: OutgoingSessionKeys?

    /// The participants hosting any of `parties` (any permission): who must see a view of them.
    func hostingParticipants(_ parties: [Party]) -> Set<UniqueIdentifier> {
        var result = Set<UniqueIdentifier>()
        for party in parties {
            guard let id = try? UniqueIdentifier(parsing: party.id) else { continue }
            for hosting in snapshot.hostingParticipants(of: id) where hosting.permission != .disabled {
                result.insert(hosting.participant)
            }
        }
        return result
    }

    func batch(_ views: TransactionViews, mediator: MemberID) throws -> Weft.V1.Batch {
        let signature = try identity.signingKey.sign(PurposeHasher.hash(.rootHash, views.rootHash.bytes))
        // A view goes to the participants of its informees and of its ancestors' informees:
        // whoever sees a view sees its subviews (docs/contracts.md §13).
        var recipients: [Set<UniqueIdentifier>] = []
        for (index, view) in views.views.enumerated() {
            var set = hostingParticipants(view.commonData.informees)
            if let parent = views.parents[index] { set.formUnion(recipients[parent]) }
            recipients.append(set)
        }
        var envelopes: [Weft.V1.Envelope] = []
        let informee = Weft.V1.EnvelopeContent(
            message: .informeeMessage(
                .init(informeeTree: views.informeeTree(), submittingParticipantSignature: signature)))
        envelopes.append(.init(content: try informee.serializedBytes(), recipients: [mediator.description]))
        for (index, view) in views.views.enumerated() {
            let members = recipients[index].sorted { $0.description < $1.description }
            var keys: [EncryptionPublicKey] = []
            for participant in members {
                let participantKeys = snapshot.encryptionKeys(of: MemberID(role: .participant, identifier: participant))
                guard !participantKeys.isEmpty else {
                    throw ParticipantError.noEncryptionKey(participant: participant.description)
                }
                keys += participantKeys
            }
            let plaintext = try views.viewTree(index).serializedBytes()
            let viewHash = try PurposeHash(purpose: .transactionView, digest: view.hash.bytes)
            var (message, _) =
                if let sessions {
                    try ViewEncryption.seal(plaintext, viewHash: viewHash, recipients: keys, sessions: sessions)
                } else {
                    try ViewEncryption.seal(plaintext, viewHash: viewHash, recipients: keys)
                }
            message.domain = domain.description
            message.viewType = .transaction
            message.submittingParticipantSignature = signature
            envelopes.append(
                .init(
                    content: try Weft.V1.EnvelopeContent(message: .encryptedView(message)).serializedBytes(),
                    recipients: members.map { MemberID(role: .participant, identifier: $0).description }))
        }
        // One root hash envelope per informee participant, addressed to it and the mediator: a
        // recipient list tells its readers who else is involved, and one envelope to them all
        // would tell a participant of participants hosting only views it does not see (the
        // mediator, reading them all, checks that each got one).
        let informeeParticipants = recipients.reduce(into: Set<UniqueIdentifier>()) { $0.formUnion($1) }
        let rootHash = try Weft.V1.EnvelopeContent(
            message: .rootHash(
                .init(
                    rootHash: views.rootHash.bytes, domain: domain.description, viewType: .transaction,
                    submittingParticipantSignature: signature))
        ).serializedBytes()
        for participant in informeeParticipants.sorted(by: { $0.description < $1.description }) {
            envelopes.append(
                .init(
                    content: rootHash,
                    recipients: [MemberID(role: .participant, identifier: participant).description, mediator.description]))
        }
        return Weft.V1.Batch(envelopes: envelopes)
    }
}
