public import WeftCrypto
public import WeftWire

/// A topology transaction's exact bytes, its decoded form and the signatures over it.
///
/// Signatures cover the purpose hash `PurposeHash(HASH_PURPOSE_TOPOLOGY_TRANSACTION,
/// transactionBytes)` of the bytes as received, never a re-encoding, so that a signature stays
/// verifiable whatever schema version a reader has (docs/topology.md §2).
public struct SignedTopologyTransaction: Hashable, Sendable {
    /// The serialized `weft.v1.TopologyTransaction`, as signed.
    public let transactionBytes: [UInt8]
    /// `transactionBytes` decoded.
    public let transaction: Weft.V1.TopologyTransaction
    /// What each signature signs; also the transaction's identity (a duplicate has the same hash).
    public let hash: PurposeHash
    /// The signatures, in the order given.
    public let signatures: [Weft.V1.Signature]

    /// From the wire form; refuses bytes that do not decode or break the size limits. Does not
    /// verify signatures: that needs the topology (`TopologyState.add`).
    public init(_ signed: Weft.V1.SignedTopologyTransaction) throws(TopologyError) {
        guard signed.transaction.count <= TopologyLimits.transactionBytesMax else {
            throw .malformed(
                "the transaction has \(signed.transaction.count) bytes; at most \(TopologyLimits.transactionBytesMax) are allowed"
            )
        }
        guard signed.signatures.count <= TopologyLimits.signaturesPerTransactionMax else {
            throw .malformed(
                "the transaction has \(signed.signatures.count) signatures; at most \(TopologyLimits.signaturesPerTransactionMax) are allowed"
            )
        }
        do throws(WireError) {
            transaction = try Weft.V1.TopologyTransaction(serializedBytes: signed.transaction)
        } catch {
            throw .malformed("the transaction bytes do not decode as weft.v1.TopologyTransaction: \(error)")
        }
        transactionBytes = signed.transaction
        hash = Self.hash(signed.transaction)
        signatures = signed.signatures
    }

    /// Serializes `transaction` and signs it with each of `keys`, in order (a namespace key,
    /// and for a party's hosting also the participant's namespace key).
    public init(signing transaction: Weft.V1.TopologyTransaction, with keys: [SigningPrivateKey]) throws(TopologyError)
    {
        let bytes: [UInt8]
        do throws(WireError) {
            bytes = try transaction.serializedBytes()
        } catch {
            throw .malformed("the transaction cannot be encoded: \(error)")
        }
        try self.init(Weft.V1.SignedTopologyTransaction(transaction: bytes, signatures: []))
        for key in keys { self = try adding(signatureBy: key) }
    }

    /// This transaction with one more signature, for mappings that need the consent of
    /// several namespaces (each signer adds its own).
    public func adding(signatureBy key: SigningPrivateKey) throws(TopologyError) -> SignedTopologyTransaction {
        let signature: Weft.V1.Signature
        do throws(CryptoError) {
            signature = try key.sign(hash)
        } catch {
            throw .signingFailed("\(error)")
        }
        return try SignedTopologyTransaction(wire.with(signatures: signatures + [signature]))
    }

    /// The wire form.
    public var wire: Weft.V1.SignedTopologyTransaction {
        .init(transaction: transactionBytes, signatures: signatures)
    }

    /// The purpose hash that signatures of topology transaction `bytes` cover.
    public static func hash(_ bytes: [UInt8]) -> PurposeHash {
        PurposeHasher.hash(.topologyTransaction, bytes)
    }
}

extension Weft.V1.SignedTopologyTransaction {
    fileprivate func with(signatures: [Weft.V1.Signature]) -> Self {
        var copy = self
        copy.signatures = signatures
        return copy
    }
}

/// Protocol limits on topology transactions.
///
/// These are constants of the protocol, not node configuration: every node must accept and
/// refuse exactly the same transactions, or their topologies would diverge.
public enum TopologyLimits {
    /// Largest serialized `TopologyTransaction` accepted, in bytes.
    public static let transactionBytesMax = 64 * 1024
    /// Most signatures on one transaction.
    public static let signaturesPerTransactionMax = 8
    /// Most keys in one owner-to-key mapping.
    public static let keysPerMemberMax = 8
    /// Most sequencers in the sequencer domain state.
    public static let sequencersMax = 64
}
