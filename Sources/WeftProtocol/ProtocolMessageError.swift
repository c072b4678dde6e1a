/// Why a signed protocol message (a confirmation response, a verdict) cannot be used: the
/// error of `ProtocolSigning`, which participants and the mediator translate into their own.
public enum ProtocolMessageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The content does not decode, or is not the kind of message expected.
    case malformed(String)
    /// The signature is missing, names no key of the signer, or does not verify.
    case invalidSignature(signer: String)

    /// A stable id for logs and statuses.
    public var id: String {
        switch self {
        case .malformed: "PROTOCOL_MALFORMED_MESSAGE"
        case .invalidSignature: "PROTOCOL_INVALID_SIGNATURE"
        }
    }

    public var description: String {
        switch self {
        case .malformed(let reason): "\(id): \(reason)"
        case .invalidSignature(let signer):
            "\(id): the message's signature does not verify with a signing key of \(signer) in the topology"
        }
    }
}
