/// Why a topology transaction was refused, or why a stored topology cannot be used.
///
/// Every refusal names the mapping (its unique key, e.g. `participant-domain-state/p1::1220…`)
/// and says what would make it acceptable, because the operator reading it is usually
/// looking at a domain manager that just refused an admin request. `id` is a stable error id
/// for wire statuses and log searches.
public enum TopologyError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The bytes are not a well-formed topology transaction, or break a protocol limit.
    case malformed(String)
    /// The mapping is well-formed protobuf but its content is invalid (a bad id, a key of
    /// the wrong kind, a missing field).
    case invalidMapping(mapping: String, reason: String)
    /// The transaction is for another domain than this topology's.
    case wrongDomain(mapping: String, expected: String, actual: String)
    /// The transaction carries no signature at all.
    case unsigned(mapping: String)
    /// A signature names a key that no namespace delegation in force knows.
    case unknownSigningKey(mapping: String, key: String)
    /// A signature does not verify with the key it names.
    case invalidSignature(mapping: String, key: String)
    /// The mapping belongs to a namespace that has no root delegation in force.
    case unknownNamespace(mapping: String, namespace: String)
    /// No signature comes from a key authorized for a namespace the mapping needs.
    /// `delegating` is true when the key must also be allowed to delegate further.
    case missingSignature(mapping: String, namespace: String, signers: [String], delegating: Bool)
    /// The serial is not the next one for the mapping's unique key.
    case unexpectedSerial(mapping: String, serial: UInt64, expected: UInt64)
    /// A REMOVE names a mapping that is not in force.
    case nothingToRemove(mapping: String)
    /// Transactions were added with a sequencing time earlier than one already added.
    case outOfOrder(sequencedAt: SequencingTimestamp, latest: SequencingTimestamp)
    /// The stored topology does not agree with itself or with this node's configuration.
    case inconsistentStore(String)
    /// Signing failed inside the crypto library.
    case signingFailed(String)

    /// A stable id, Canton style.
    public var id: String {
        switch self {
        case .malformed: return "TOPOLOGY_MALFORMED_TRANSACTION"
        case .invalidMapping: return "TOPOLOGY_INVALID_MAPPING"
        case .wrongDomain: return "TOPOLOGY_WRONG_DOMAIN"
        case .unsigned: return "TOPOLOGY_UNSIGNED"
        case .unknownSigningKey: return "TOPOLOGY_UNKNOWN_SIGNING_KEY"
        case .invalidSignature: return "TOPOLOGY_INVALID_SIGNATURE"
        case .unknownNamespace: return "TOPOLOGY_UNKNOWN_NAMESPACE"
        case .missingSignature: return "TOPOLOGY_MISSING_SIGNATURE"
        case .unexpectedSerial: return "TOPOLOGY_SERIAL_MISMATCH"
        case .nothingToRemove: return "TOPOLOGY_NOTHING_TO_REMOVE"
        case .outOfOrder: return "TOPOLOGY_OUT_OF_ORDER"
        case .inconsistentStore: return "TOPOLOGY_STORE_INCONSISTENT"
        case .signingFailed: return "TOPOLOGY_SIGNING_FAILED"
        }
    }

    public var description: String {
        switch self {
        case .malformed(let reason):
            return "malformed topology transaction: \(reason)"
        case .invalidMapping(let mapping, let reason):
            return "invalid mapping \(mapping): \(reason)"
        case .wrongDomain(let mapping, let expected, let actual):
            return "\(mapping) is for domain '\(actual)', but this is domain \(expected); "
                + "sign a transaction for this domain"
        case .unsigned(let mapping):
            return "\(mapping) is not signed; it needs a signature by a key of its namespace"
        case .unknownSigningKey(let mapping, let key):
            return "\(mapping) is signed by key \(key), which no namespace delegation in force names, "
                + "so it cannot authorize anything; delegate it first or sign with a namespace key"
        case .invalidSignature(let mapping, let key):
            return "\(mapping) has a bad signature by key \(key): it does not verify over the transaction's bytes "
                + "(altered in transit, or signed for different bytes)"
        case .unknownNamespace(let mapping, let namespace):
            return "\(mapping) belongs to namespace \(namespace), which is unknown: nobody has added its "
                + "root delegation (namespace-delegation/\(namespace)/\(namespace)) to this domain"
        case .missingSignature(let mapping, let namespace, let signers, let delegating):
            let keys =
                delegating
                ? "a key of namespace \(namespace) that may delegate (its root key or a "
                    + "key delegated with is_root_delegation)" : "a key authorized for namespace \(namespace)"
            let by = signers.isEmpty ? "nobody" : signers.joined(separator: ", ")
            return "\(mapping) is missing a signature from namespace \(namespace): it needs \(keys), "
                + "but is signed only by \(by)"
        case .unexpectedSerial(let mapping, let serial, let expected):
            let what = serial < expected ? "stale serial \(serial)" : "serial \(serial) skips ahead"
            return "\(mapping) has \(what) (expected \(expected)): every change of a mapping takes the next "
                + "serial; re-read the topology and sign a transaction with serial \(expected)"
        case .nothingToRemove(let mapping):
            return "\(mapping) is not in force, so there is nothing to remove"
        case .outOfOrder(let sequencedAt, let latest):
            return "a topology transaction sequenced at \(sequencedAt) arrived after one sequenced at \(latest); "
                + "transactions must be added in sequencing order"
        case .inconsistentStore(let reason):
            return "the topology store is inconsistent: \(reason)"
        case .signingFailed(let reason):
            return "signing the topology transaction failed: \(reason)"
        }
    }
}
