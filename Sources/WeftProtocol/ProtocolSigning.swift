public import WeftCrypto
public import WeftWire

/// Signing and verifying `weft.v1.SignedProtocolMessage`s: the signature is Ed25519 over
/// `PurposeHash(purpose, content)` (docs/crypto.md §4), where `content` is the serialized
/// `SignedContent` exactly as sent and the purpose follows its kind — a confirmation response
/// `CONFIRMATION_RESPONSE`, a verdict `CONFIRMATION_RESULT`, an ACS commitment
/// `ACS_COMMITMENT` — so that a signature made for one kind never verifies as another.
///
/// Participants sign responses and verify verdicts with it; the mediator does the converse.
public enum ProtocolSigning {
    /// The hash purpose of `content`'s kind; nil for content of no known kind.
    public static func purpose(of content: Weft.V1.SignedContent) -> Weft.V1.HashPurpose? {
        switch content.content {
        case .confirmationResponse?: .confirmationResponse
        case .confirmationResult?: .confirmationResult
        case .acsCommitment?: .acsCommitment
        case nil: nil
        }
    }

    /// `content` serialized and signed with `key`.
    public static func sign(_ content: Weft.V1.SignedContent, with key: SigningPrivateKey) throws
        -> Weft.V1.SignedProtocolMessage
    {
        guard let purpose = purpose(of: content) else {
            throw ProtocolMessageError.malformed("signed content of no known kind")
        }
        let bytes = try content.serializedBytes()
        return Weft.V1.SignedProtocolMessage(
            content: bytes, signature: try key.sign(PurposeHasher.hash(purpose, bytes)))
    }

    /// A participant's confirmation response, signed with its signing key.
    public static func sign(_ response: Weft.V1.ConfirmationResponse, with key: SigningPrivateKey) throws
        -> Weft.V1.SignedProtocolMessage
    {
        try sign(Weft.V1.SignedContent(content: .confirmationResponse(response)), with: key)
    }

    /// The mediator's verdict, signed with its signing key.
    public static func sign(_ result: Weft.V1.ConfirmationResult, with key: SigningPrivateKey) throws
        -> Weft.V1.SignedProtocolMessage
    {
        try sign(Weft.V1.SignedContent(content: .confirmationResult(result)), with: key)
    }

    /// The decoded content of `message`, without checking its signature: to find out who
    /// claims to have signed it and about what, before fetching their keys.
    public static func content(of message: Weft.V1.SignedProtocolMessage) throws(ProtocolMessageError)
        -> Weft.V1.SignedContent
    {
        do throws(WireError) {
            return try Weft.V1.SignedContent(serializedBytes: message.content)
        } catch {
            throw .malformed("the signed content does not decode: \(error)")
        }
    }

    /// Whether `message`'s signature verifies with one of `keys` (the signer's keys in the
    /// topology at the time that matters), for the purpose of its content's kind.
    public static func verify(
        _ message: Weft.V1.SignedProtocolMessage, content: Weft.V1.SignedContent, keys: [SigningPublicKey]
    ) -> SignatureCheck {
        guard let signature = message.signature, let purpose = purpose(of: content) else { return .invalid }
        guard let key = keys.first(where: { $0.fingerprint.description == signature.signedBy }) else {
            return .unknownKey(signature.signedBy)
        }
        do throws(CryptoError) {
            try key.verify(signature, over: PurposeHasher.hash(purpose, message.content))
            return .valid
        } catch {
            return .invalid
        }
    }

    /// The outcome of `verify`.
    public enum SignatureCheck: Sendable, Equatable {
        case valid
        /// The signature names a key that is not among those given.
        case unknownKey(String)
        /// Missing, malformed or not verifying.
        case invalid
    }

    /// The verdict in `message`, once its signature verifies with one of `mediatorKeys`: what a
    /// participant does with a verdict before acting on it.
    public static func verifiedResult(_ message: Weft.V1.SignedProtocolMessage, mediatorKeys: [SigningPublicKey])
        throws(ProtocolMessageError) -> Weft.V1.ConfirmationResult
    {
        let content = try content(of: message)
        guard case .confirmationResult(let result)? = content.content else {
            throw .malformed("the signed content is not a confirmation result")
        }
        guard verify(message, content: content, keys: mediatorKeys) == .valid else {
            throw .invalidSignature(signer: "the mediator")
        }
        return result
    }
}
