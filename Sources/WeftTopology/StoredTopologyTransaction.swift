import WeftCrypto
public import WeftWire

/// An accepted topology transaction with its place in the domain's topology history.
///
/// It is in force at `T` when it is a REPLACE and `validFrom < T <= validUntil` (no upper
/// bound while `validUntil` is nil): a snapshot at `T` describes the topology just before `T`,
/// so the event that carried a change is never judged by that change (docs/topology.md §4).
public struct StoredTopologyTransaction: Hashable, Sendable {
    /// The transaction as signed.
    public let transaction: SignedTopologyTransaction
    /// The unique key of its mapping.
    public let key: TopologyMappingKey
    /// REPLACE or REMOVE.
    public let operation: Weft.V1.TopologyChangeOp
    /// Its serial: the number of the change of `key`, from 1.
    public let serial: UInt64
    /// Sequencing time of the broadcast that carried it.
    public let sequencedAt: SequencingTimestamp
    /// `sequencedAt` plus the domain's topology change delay.
    public let validFrom: SequencingTimestamp
    /// When a later change of the same key took effect; for a REMOVE, its own `validFrom`.
    public internal(set) var validUntil: SequencingTimestamp?
    /// Its place in the domain's topology history, from 0: the order in which every node applies it.
    public let position: Int

    /// The parsed mapping.
    let mapping: ValidMapping
    /// The keys whose signatures on it verified, for delegation chains.
    let signers: Set<Fingerprint>
    /// Position of the transaction that replaced or removed it.
    var supersededBy: Int?

    /// Whether it is in force at `timestamp`.
    public func isInForce(at timestamp: SequencingTimestamp) -> Bool {
        guard operation == .replace, validFrom < timestamp else { return false }
        guard let validUntil else { return true }
        return timestamp <= validUntil
    }

    /// Whether it is in force in the snapshot that applies the first `count` transactions.
    func isInForce(applying count: Int) -> Bool {
        guard operation == .replace, position < count else { return false }
        guard let supersededBy else { return true }
        return supersededBy >= count
    }

    /// The wire form, as `ListTopologyTransactions` returns it.
    public var wire: Weft.V1.StoredTopologyTransaction {
        .init(transaction: transaction.wire, validFrom: validFrom.wire, validUntil: validUntil?.wire)
    }
}

/// What one accepted transaction changed: the transaction, and the one it replaced or
/// removed (now with its `validUntil`). This is exactly what a store must persist.
public struct TopologyChange: Hashable, Sendable {
    /// The new transaction.
    public let added: StoredTopologyTransaction
    /// The previous transaction of the same key, if one was in force.
    public let superseded: StoredTopologyTransaction?
}

/// The outcome of a topology broadcast: each transaction is accepted or refused on its own,
/// in order, the same way on every node.
public struct TopologyBroadcastOutcome: Sendable {
    /// The changes of the accepted transactions, in order (duplicates are neither).
    public var changes: [TopologyChange] = []
    /// The refused transactions: their index in the broadcast and why.
    public var refused: [(index: Int, error: TopologyError)] = []
}
