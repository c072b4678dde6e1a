public import WeftWire

/// Representative protocol messages, shared by the benchmark, the demo and
/// tests: a two-party transfer's confirmation request as a participant sends
/// it, its informee tree, and a small envelope.
public enum ExampleMessages {
    static func bytes(_ count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }

    static let fingerprint = "1220" + String(repeating: "ab", count: 32)
    static let domain = "domain1::" + fingerprint
    public static let mediator = "MED::mediator1::" + fingerprint
    public static let participants = ["PAR::participant1::" + fingerprint, "PAR::participant2::" + fingerprint]
    static func signature(_ seed: UInt8) -> Weft.V1.Signature { .init(scheme: .ed25519, signedBy: fingerprint, signature: bytes(64, seed: seed)) }

    /// The informee tree of a two-party transfer: common parts revealed, the
    /// participants' parts blinded.
    public static func informeeMessage() -> Weft.V1.InformeeMessage {
        func view(_ seed: UInt8, subviews: [Weft.V1.BlindableTransactionView]) -> Weft.V1.TransactionView {
            .init(
                commonData: .init(
                    node: .unblinded(
                        .init(
                            salt: bytes(32, seed: seed),
                            informees: [.init(party: "alice::" + fingerprint, weight: 1), .init(party: "bob::" + fingerprint, weight: 1)],
                            threshold: 2))),
                participantData: .init(node: .blindedHash(bytes(32, seed: seed &+ 1))),
                subviews: subviews)
        }
        let tree = Weft.V1.TransactionTree(
            submitterMetadata: .init(node: .blindedHash(bytes(32, seed: 1))),
            commonMetadata: .init(
                node: .unblinded(
                    .init(salt: bytes(32, seed: 2), domain: domain, mediator: mediator, uuid: bytes(16, seed: 3), confirmationPolicy: .signatory))),
            participantMetadata: .init(node: .blindedHash(bytes(32, seed: 4))),
            rootViews: [.init(node: .unblinded(view(5, subviews: [.init(node: .unblinded(view(7, subviews: [])))])))])
        return .init(informeeTree: tree, submittingParticipantSignature: signature(9))
    }

    /// A confirmation request as a participant sends it: the informee tree to the
    /// mediator, two encrypted views and two root hash messages.
    public static func confirmationRequest() throws -> Weft.V1.SubmissionRequest {
        func content(_ message: Weft.V1.EnvelopeContent.Message) throws -> [UInt8] {
            try Weft.V1.EnvelopeContent(message: message).serializedBytes()
        }
        var envelopes = [Weft.V1.Envelope(content: try content(.informeeMessage(informeeMessage())), recipients: [mediator])]
        for (index, participant) in participants.enumerated() {
            let view = Weft.V1.EncryptedViewMessage(
                viewHash: bytes(32, seed: UInt8(index)), ciphertext: bytes(330, seed: UInt8(index) &+ 10),
                wrappedSeeds: participants.map {
                    .init(scheme: .eciesX25519HkdfSha256Aes256Gcm, recipientKey: fingerprint + $0.suffix(1),
                          ephemeralPublicKey: bytes(32, seed: 20), ciphertext: bytes(48, seed: 21))
                },
                domain: domain, viewType: .transaction, submittingParticipantSignature: signature(22))
            envelopes.append(.init(content: try content(.encryptedView(view)), recipients: [participant]))
            let rootHash = Weft.V1.RootHashMessage(
                rootHash: bytes(32, seed: 30), domain: domain, viewType: .transaction, submittingParticipantSignature: signature(31))
            envelopes.append(.init(content: try content(.rootHash(rootHash)), recipients: [participant, mediator]))
        }
        return .init(
            sender: participants[0], messageID: "4f1d2c3b-9a8e-4b7c-8d6e-5f4a3b2c1d0e", batch: .init(envelopes: envelopes),
            maxSequencingTime: .init(microsSinceEpoch: 1_795_000_000_000_000),
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    }

    /// A small envelope: a signed confirmation response to the mediator.
    public static func envelope() -> Weft.V1.Envelope {
        .init(content: bytes(110, seed: 40), recipients: [mediator])
    }
}
