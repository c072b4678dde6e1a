import WeftContracts
public import WeftCrypto
public import WeftTopology
public import WeftWire

/// The mediator's decision on one request, signed and addressed: what it sends through the
/// sequencer to every informee participant (DESIGN.md §8 step 5).
///
/// A request has at most one verdict, ever: it is persisted before it is returned, and a
/// mediator asked again (a replayed request or response, a restart) returns the stored one.
public struct MediatorVerdict: Sendable, Equatable {
    public let request: RequestID
    /// The verdict as signed (`weft.v1.ConfirmationResult`).
    public let result: Weft.V1.ConfirmationResult
    /// What to send: the result signed with the mediator's key, purpose `CONFIRMATION_RESULT`.
    public let message: Weft.V1.SignedProtocolMessage
    /// The participants hosting the request's informees at its time, by id: the recipients.
    public let recipients: [UniqueIdentifier]
    /// The sequencing time the decision was made at: of the response that completed or
    /// rejected the request, of the request itself when it was refused, or the time at which
    /// the timeout was noticed.
    public let decidedAt: SequencingTimestamp

    public init(
        request: RequestID, result: Weft.V1.ConfirmationResult, message: Weft.V1.SignedProtocolMessage,
        recipients: [UniqueIdentifier], decidedAt: SequencingTimestamp
    ) {
        self.request = request
        self.result = result
        self.message = message
        self.recipients = recipients
        self.decidedAt = decidedAt
    }

    /// Builds and signs the verdict `verdict` on `request`.
    static func signing(
        _ verdict: Weft.V1.Verdict, request: RequestID, domain: UniqueIdentifier, recipients: [UniqueIdentifier],
        decidedAt: SequencingTimestamp, key: SigningPrivateKey
    ) throws -> MediatorVerdict {
        let result = Weft.V1.ConfirmationResult(
            requestID: request.timestamp.wire, rootHash: request.rootHash.bytes, domain: domain.description,
            verdict: verdict, viewType: .transaction)
        return MediatorVerdict(
            request: request, result: result, message: try ProtocolSigning.sign(result, with: key),
            recipients: recipients, decidedAt: decidedAt)
    }

    /// Whether every view was approved.
    public var isApproved: Bool {
        if case .approve? = result.verdict?.outcome { true } else { false }
    }

    /// The reason of a rejection: the mediator's own, or the first rejecting participant's;
    /// nil for an approval.
    public var reasonID: String? {
        switch result.verdict?.outcome {
        case .approve?, nil: nil
        case .mediatorReject(let reject)?: reject.reasonID
        case .participantReject(let rejects)?: rejects.rejects.first?.reject?.reasonID
        }
    }
}
