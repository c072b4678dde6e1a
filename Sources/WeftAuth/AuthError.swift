public import WeftTransport

/// Why a call is not authenticated or not authorized. Each case has a stable
/// id and a message that tells the caller what to change; `rpcError` gives the
/// status on the wire (UNAUTHENTICATED for the token, PERMISSION_DENIED for
/// what it allows).
public enum AuthError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The verifier's own settings are wrong (at start, never per call).
    case configuration(String)
    case missingToken
    case malformed(String)
    case algorithmNotAllowed(String, allowed: [String])
    case unknownKey(String)
    case badSignature
    case expired(at: Int64)
    case notYetValid(from: Int64)
    case wrongIssuer(expected: String, actual: String?)
    case wrongAudience(expected: String, actual: [String])
    case wrongParticipant(expected: String, actual: String)
    /// A token for one participant (`participantId`) came to a node that is no participant:
    /// it is meant for that participant's APIs only.
    case participantTokenOnOtherNode(participant: String, node: String)
    /// The token is good but lacks a claim the call needs.
    case missingClaim(claim: String, value: String?, call: String)
    /// An admin call came from another host while the node takes admin calls from loopback only.
    case adminNotLoopback(peer: String, call: String)

    public var id: String {
        switch self {
        case .configuration: "AUTH_CONFIGURATION"
        case .missingToken: "AUTH_TOKEN_MISSING"
        case .malformed: "AUTH_TOKEN_MALFORMED"
        case .algorithmNotAllowed: "AUTH_ALGORITHM_NOT_ALLOWED"
        case .unknownKey: "AUTH_UNKNOWN_KEY"
        case .badSignature: "AUTH_BAD_SIGNATURE"
        case .expired: "AUTH_TOKEN_EXPIRED"
        case .notYetValid: "AUTH_TOKEN_NOT_YET_VALID"
        case .wrongIssuer: "AUTH_WRONG_ISSUER"
        case .wrongAudience: "AUTH_WRONG_AUDIENCE"
        case .wrongParticipant: "AUTH_WRONG_PARTICIPANT"
        case .participantTokenOnOtherNode: "AUTH_PARTICIPANT_TOKEN"
        case .missingClaim: "AUTH_MISSING_CLAIM"
        case .adminNotLoopback: "AUTH_ADMIN_LOOPBACK_ONLY"
        }
    }

    public var description: String {
        switch self {
        case .configuration(let reason): "the token verifier is misconfigured: \(reason)"
        case .missingToken: "the call has no bearer token: send metadata `authorization: Bearer <JWT>` from your identity provider"
        case .malformed(let reason): "the bearer token is malformed: \(reason)"
        case .algorithmNotAllowed(let algorithm, let allowed):
            "the token is signed with \(algorithm); this participant accepts \(allowed.joined(separator: ", ")) with its configured keys"
        case .unknownKey(let id): "the token names key id \(id), which this participant does not have; check the identity provider's key rotation"
        case .badSignature: "the token's signature does not verify: it was altered or signed with another key"
        case .expired(let at): "the token expired at \(at) (seconds since the epoch); get a new one"
        case .notYetValid(let from): "the token is valid only from \(from) (seconds since the epoch); check the clocks"
        case .wrongIssuer(let expected, let actual): "the token is issued by \(actual ?? "nobody"); this participant accepts \(expected)"
        case .wrongAudience(let expected, let actual):
            "the token is for audience \(actual.isEmpty ? "none" : actual.joined(separator: ", ")); this participant is \(expected)"
        case .wrongParticipant(let expected, let actual): "the token is for participant \(actual), not \(expected)"
        case .participantTokenOnOtherNode(let participant, let node):
            "a token for participant \(participant) is not valid on this \(node) node; use a token without participantId, and set auth.audience on each node that shares a key"
        case .missingClaim(let claim, let value, let call):
            if let value { "\(call) needs claim \(claim) to include \(value); the token does not grant it" } else { "\(call) needs claim \(claim); the token does not grant it" }
        case .adminNotLoopback(let peer, let call):
            "\(call) is an admin call, which this node takes from loopback only (auth.admin-loopback-only); it came from \(peer): call it on the node's host"
        }
    }

    /// The status to answer with.
    public var rpcError: RPCError {
        switch self {
        case .missingClaim, .adminNotLoopback: RPCError(.permissionDenied, description, errorID: id)
        case .configuration: RPCError(.internal, description, errorID: id)
        default: RPCError(.unauthenticated, description, errorID: id)
        }
    }
}
