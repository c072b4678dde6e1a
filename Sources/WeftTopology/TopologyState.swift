import Synchronization
public import WeftCrypto
public import WeftWire

/// The topology of one domain: every accepted topology transaction, in the order the
/// sequencer delivered them, and the answer to "what was the topology at time T".
///
/// A pure value: transactions in (`add`), snapshots out. It validates each transaction
/// against everything accepted before it — signatures, namespace authorization and serials
/// (docs/topology.md §3) — so that nodes fed the same broadcasts in the same order accept
/// the same transactions and answer every `snapshot(at:)` alike. Persistence is the
/// caller's: `add` returns the `TopologyChange` that `TopologyStore.persist` writes.
public struct TopologyState: Sendable {
    /// The domain this topology belongs to; transactions for other domains are refused.
    public let domain: UniqueIdentifier
    /// The domain's topology change delay: a transaction sequenced at `t` is in force from
    /// `t + changeDelayMicros` on. Must be the same on every node of the domain.
    public let changeDelayMicros: Int64
    /// Every accepted transaction, by `position`.
    public private(set) var transactions: [StoredTopologyTransaction] = []

    /// Position of the transaction in force per key, counting every accepted transaction
    /// (also those not yet effective): the state new transactions are validated against.
    private var head: [TopologyMappingKey: Int] = [:]
    /// The last serial per key, also after a REMOVE, so a re-added mapping continues it.
    private var lastSerial: [TopologyMappingKey: UInt64] = [:]
    /// Position per transaction hash, which makes adding a transaction twice a no-op.
    private var positionByHash: [PurposeHash: Int] = [:]
    /// Delegations in `head`: namespace → target key fingerprint → position.
    private var delegations: [Fingerprint: [Fingerprint: Int]] = [:]
    private var cache = SnapshotCache()

    public init(domain: UniqueIdentifier, changeDelayMicros: Int64) {
        precondition(changeDelayMicros >= 0, "the topology change delay is never negative")
        self.domain = domain
        self.changeDelayMicros = changeDelayMicros
    }

    /// Sequencing time of the latest accepted transaction.
    public var latestSequencedAt: SequencingTimestamp? { transactions.last?.sequencedAt }

    /// When a transaction sequenced at `sequencedAt` takes effect.
    public func effectiveTime(sequencedAt: SequencingTimestamp) -> SequencingTimestamp {
        sequencedAt.adding(micros: changeDelayMicros)
    }

    /// The serial the next change of `key` must carry: one more than the last accepted
    /// (REMOVEs included), 1 for a key never used. For a domain manager building a transaction.
    public func nextSerial(for key: TopologyMappingKey) -> UInt64 {
        (lastSerial[key] ?? 0) + 1
    }

    /// Throws the error `add` would throw for `transaction` now, without changing anything:
    /// for a domain manager checking an admin request before broadcasting it.
    public func validate(_ transaction: SignedTopologyTransaction) throws(TopologyError) {
        _ = try check(transaction)
    }

    /// Validates `transaction` against every transaction accepted so far and, if it is
    /// valid, accepts it, in force from `sequencedAt` plus the change delay. Returns nil for a
    /// transaction accepted before (same bytes), so replaying a sequencer stream is safe.
    @discardableResult
    public mutating func add(_ transaction: SignedTopologyTransaction, sequencedAt: SequencingTimestamp)
        throws(TopologyError)
        -> TopologyChange?
    {
        if positionByHash[transaction.hash] != nil { return nil }
        if let latest = latestSequencedAt, sequencedAt < latest {
            throw .outOfOrder(sequencedAt: sequencedAt, latest: latest)
        }
        let checked = try check(transaction)
        return apply(transaction, checked, sequencedAt: sequencedAt)
    }

    /// Adds the transactions of a broadcast in order. A refused transaction does not stop
    /// the others: every node refuses the same ones, so topologies stay identical.
    public mutating func add(_ broadcast: Weft.V1.TopologyTransactionsBroadcast, sequencedAt: SequencingTimestamp)
        -> TopologyBroadcastOutcome
    {
        var outcome = TopologyBroadcastOutcome()
        for (index, wire) in broadcast.transactions.enumerated() {
            do throws(TopologyError) {
                if let change = try add(SignedTopologyTransaction(wire), sequencedAt: sequencedAt) {
                    outcome.changes.append(change)
                }
            } catch {
                outcome.refused.append((index, error))
            }
        }
        return outcome
    }

    /// The topology at `timestamp`: every transaction with `validFrom < timestamp` applied.
    ///
    /// Final once this state has every topology broadcast sequenced before
    /// `timestamp − changeDelayMicros`; a node that processes its sequencer stream in order
    /// may therefore ask about any time up to its latest event plus the delay.
    public func snapshot(at timestamp: SequencingTimestamp) -> TopologySnapshot {
        let count = appliedCount(at: timestamp)
        let content = cache.content(applying: count) {
            TopologySnapshot.Content(domain: domain, transactions: transactions, applying: count)
        }
        return TopologySnapshot(timestamp: timestamp, content: content)
    }

    /// The transactions in force at `timestamp`, by position (for `ListTopologyTransactions`).
    public func transactions(inForceAt timestamp: SequencingTimestamp) -> [StoredTopologyTransaction] {
        let count = appliedCount(at: timestamp)
        return transactions.prefix(count).filter { $0.isInForce(applying: count) }
    }

    /// How many transactions have `validFrom < timestamp`: a prefix, since `validFrom` never decreases.
    private func appliedCount(at timestamp: SequencingTimestamp) -> Int {
        var low = 0
        var high = transactions.count
        while low < high {
            let middle = (low + high) / 2
            if transactions[middle].validFrom < timestamp { low = middle + 1 } else { high = middle }
        }
        return low
    }

    // MARK: - Validation

    private struct Checked {
        let mapping: ValidMapping
        let signers: Set<Fingerprint>
    }

    private func check(_ signed: SignedTopologyTransaction) throws(TopologyError) -> Checked {
        let transaction = signed.transaction
        guard let wireMapping = transaction.mapping?.mapping else {
            throw .malformed("the transaction has no mapping")
        }
        guard transaction.operation == .replace || transaction.operation == .remove else {
            throw .malformed("operation is \(transaction.operation); use REPLACE or REMOVE")
        }
        let mapping = try ValidMapping(wireMapping, domain: domain)
        let key = mapping.key
        guard transaction.domain == domain.description else {
            throw .wrongDomain(
                mapping: key.description, expected: domain.description, actual: String(transaction.domain.prefix(200)))
        }
        guard transaction.serial <= UInt64(Int64.max) else {
            throw .malformed("serial \(transaction.serial) is out of range")
        }
        guard !signed.signatures.isEmpty else { throw .unsigned(mapping: key.description) }

        let authorizers = mapping.authorizers(domain: domain)
        for case .namespace(let namespace, _) in authorizers
        where head[.namespaceDelegation(namespace: namespace, target: namespace)] == nil {
            throw .unknownNamespace(mapping: key.description, namespace: namespace.description)
        }

        let signers = try verifiedSigners(signed, mapping: mapping)
        for authorizer in authorizers {
            switch authorizer {
            case .key(let fingerprint):
                guard signers.contains(fingerprint) else {
                    throw .missingSignature(
                        mapping: key.description, namespace: fingerprint.description, signers: Self.sorted(signers),
                        delegating: true)
                }
            case .namespace(let namespace, let delegating):
                let authorized = authorizedKeys(of: namespace, delegating: delegating)
                guard !signers.isDisjoint(with: authorized) else {
                    throw .missingSignature(
                        mapping: key.description, namespace: namespace.description, signers: Self.sorted(signers),
                        delegating: delegating)
                }
            }
        }

        let expected = nextSerial(for: key)
        if transaction.operation == .remove, head[key] == nil { throw .nothingToRemove(mapping: key.description) }
        guard transaction.serial == expected else {
            throw .unexpectedSerial(mapping: key.description, serial: transaction.serial, expected: expected)
        }
        return Checked(mapping: mapping, signers: signers)
    }

    /// Verifies every signature; each must name a key a delegation in force knows (or, for a
    /// delegation, the key it delegates to) and verify over the transaction's hash.
    private func verifiedSigners(_ signed: SignedTopologyTransaction, mapping: ValidMapping) throws(TopologyError)
        -> Set<Fingerprint>
    {
        let name = mapping.key.description
        var signers: Set<Fingerprint> = []
        for signature in signed.signatures {
            let fingerprint: Fingerprint
            do throws(CryptoError) {
                fingerprint = try Fingerprint(parsing: signature.signedBy)
            } catch {
                throw .unknownSigningKey(mapping: name, key: String(signature.signedBy.prefix(80)))
            }
            guard !signers.contains(fingerprint) else {
                throw .malformed("\(name) is signed twice by key \(fingerprint)")
            }
            var key = knownKey(fingerprint)
            if case .namespaceDelegation(_, let target, _) = mapping, target.fingerprint == fingerprint { key = target }
            guard let key else { throw .unknownSigningKey(mapping: name, key: fingerprint.description) }
            do throws(CryptoError) {
                try key.verify(signature, over: signed.hash)
            } catch {
                throw .invalidSignature(mapping: name, key: fingerprint.description)
            }
            signers.insert(fingerprint)
        }
        return signers
    }

    /// The namespace key with `fingerprint`, from any delegation in force.
    private func knownKey(_ fingerprint: Fingerprint) -> SigningPublicKey? {
        for targets in delegations.values {
            if let position = targets[fingerprint],
                case .namespaceDelegation(_, let key, _) = transactions[position].mapping
            {
                return key
            }
        }
        return nil
    }

    /// The keys that may sign for `namespace` (with `delegating`: that may also delegate):
    /// its root key, and every key reached from it through delegations signed by keys that
    /// may delegate. Computed as a least fixed point, so removing a delegation also cuts off
    /// every delegation it made possible.
    private func authorizedKeys(of namespace: Fingerprint, delegating: Bool) -> Set<Fingerprint> {
        guard let targets = delegations[namespace], targets[namespace] != nil else { return [] }
        var authorized: Set<Fingerprint> = [namespace]
        var mayDelegate: Set<Fingerprint> = [namespace]
        var changed = true
        while changed {
            changed = false
            for (target, position) in targets where !authorized.contains(target) {
                let delegation = transactions[position]
                guard !delegation.signers.isDisjoint(with: mayDelegate) else { continue }
                authorized.insert(target)
                if case .namespaceDelegation(_, _, true) = delegation.mapping { mayDelegate.insert(target) }
                changed = true
            }
        }
        return delegating ? mayDelegate : authorized
    }

    private static func sorted(_ fingerprints: Set<Fingerprint>) -> [String] {
        fingerprints.map(\.description).sorted()
    }

    // MARK: - Applying

    private mutating func apply(
        _ signed: SignedTopologyTransaction, _ checked: Checked, sequencedAt: SequencingTimestamp
    ) -> TopologyChange {
        if !isKnownUniquelyReferenced(&cache) { cache = SnapshotCache() }
        let position = transactions.count
        let validFrom = effectiveTime(sequencedAt: sequencedAt)
        let key = checked.mapping.key
        let operation = signed.transaction.operation
        var superseded: StoredTopologyTransaction?
        if let previous = head[key] {
            transactions[previous].validUntil = validFrom
            transactions[previous].supersededBy = position
            superseded = transactions[previous]
        }
        let added = StoredTopologyTransaction(
            transaction: signed, key: key, operation: operation, serial: signed.transaction.serial,
            sequencedAt: sequencedAt,
            validFrom: validFrom, validUntil: operation == .remove ? validFrom : nil, position: position,
            mapping: checked.mapping, signers: checked.signers, supersededBy: nil)
        transactions.append(added)
        head[key] = operation == .replace ? position : nil
        lastSerial[key] = signed.transaction.serial
        positionByHash[signed.hash] = position
        if case .namespaceDelegation(let namespace, let target) = key {
            delegations[namespace, default: [:]][target] = operation == .replace ? position : nil
            if delegations[namespace]?.isEmpty == true { delegations[namespace] = nil }
        }
        return TopologyChange(added: added, superseded: superseded)
    }
}

/// The snapshots built so far, by number of transactions applied. Shared by copies of a
/// state until one of them changes (then it gets its own), so a copy never sees another's.
final class SnapshotCache: Sendable {
    private static let entriesMax = 4
    private let entries = Mutex<[(count: Int, content: TopologySnapshot.Content)]>([])

    func content(applying count: Int, build: () -> TopologySnapshot.Content) -> TopologySnapshot.Content {
        if let hit = entries.withLock({ entries in entries.first { $0.count == count }?.content }) { return hit }
        let content = build()
        entries.withLock { entries in
            entries.removeAll { $0.count == count }
            entries.append((count, content))
            if entries.count > Self.entriesMax { entries.removeFirst() }
        }
        return content
    }
}
