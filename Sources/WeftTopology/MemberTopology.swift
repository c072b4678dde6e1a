public import Logging
public import WeftCrypto
public import WeftWire

/// A member's (participant's or mediator's) own view of its domain's topology, built from
/// nothing but its own sequencer stream, so that it answers `snapshot(at:)` exactly as the
/// sequencers and the domain manager do.
///
/// A member registered late never sees the broadcasts sequenced before it joined; the
/// sequencers therefore send it the whole history as its first event (a `TopologySnapshot`,
/// docs/sequencer.md §4). After that, topology broadcasts (`ALL`) keep it current. Nothing is
/// taken on trust: every transaction is validated as `TopologyState` validates it —
/// signatures and namespace authorization — starting from the root delegation of the
/// domain's namespace, whose fingerprint is part of the domain id the member was configured
/// with. A snapshot or broadcast that was forged or altered in transit is refused.
///
/// The state changes only once the store has it (`TopologyStore`, the member's own table),
/// and applying the same event twice changes nothing, so a driver may replay its stream
/// after a crash.
public actor MemberTopology {
    public nonisolated let domain: UniqueIdentifier
    /// The sequencers' member id: the only sender of snapshots, and of onboarding broadcasts.
    public nonisolated let sequencerMember: MemberID
    /// The domain manager's member id: the sender of topology broadcasts.
    public nonisolated let managerMember: MemberID
    private let store: TopologyStore
    private let logger: Logger
    private let changeDelayMicros: Int64
    private var state: TopologyState
    /// Broadcasts that arrived before the snapshot, applied right after it. They can reach a
    /// member that was registered a moment before its snapshot was sequenced; the snapshot was
    /// built before them, so they are either in it (and then duplicates) or later than all of it.
    private var early: [(broadcast: Weft.V1.TopologyTransactionsBroadcast, sequencedAt: SequencingTimestamp)] = []
    /// Most broadcasts held in `early`; see `init`.
    private let earlyBroadcastsMax: Int
    /// Set once a broadcast arrived with `early` full. From then on this instance refuses every
    /// broadcast and the history itself: without the broadcasts it did not hold, applying the
    /// history would give this member a topology no other node has. A restart reads them again
    /// (the stream position is not stored before the history is applied).
    private var droppedEarly = false

    /// Most broadcasts a member holds while it waits for its history, unless told otherwise.
    ///
    /// The history is sent as soon as the node that registered the member has read its own
    /// stream past the registration (docs/sequencer.md §4), so only the broadcasts of that short
    /// window arrive first: a handful, far below this. It bounds the memory a history that never
    /// comes (a sequencer fault) can take; each broadcast is at most the domain manager's request.
    public static let earlyBroadcastsMaxDefault = 10_000

    /// - Parameters:
    ///   - store: the member's own history (`TopologyStore(database:domain:member:)`).
    ///   - changeDelayMicros: the domain's topology change delay; every node of a domain uses
    ///     the same (the sequencers and the domain manager use 0).
    ///   - earlyBroadcastsMax: most broadcasts held until the history arrives
    ///     (`earlyBroadcastsMaxDefault`); beyond it, this instance refuses them and the history
    ///     (`TOPOLOGY_HISTORY_TOO_LATE`) until the node restarts.
    public init(
        domain: UniqueIdentifier, store: TopologyStore, changeDelayMicros: Int64 = 0,
        earlyBroadcastsMax: Int = MemberTopology.earlyBroadcastsMaxDefault, logger: Logger
    ) {
        precondition(store.domain == domain, "the store must keep this domain's history")
        precondition(earlyBroadcastsMax >= 0, "a member holds no fewer than 0 early broadcasts")
        self.domain = domain
        sequencerMember = MemberID(role: .sequencer, identifier: domain)
        managerMember = MemberID(role: .domainManager, identifier: domain)
        self.store = store
        self.changeDelayMicros = changeDelayMicros
        self.earlyBroadcastsMax = earlyBroadcastsMax
        self.logger = logger
        state = TopologyState(domain: domain, changeDelayMicros: changeDelayMicros)
    }

    /// Loads what the store holds (re-validating it; see `TopologyStore.load`).
    public func start() async throws {
        state = try await store.load(changeDelayMicros: changeDelayMicros)
    }

    /// Whether the member has its domain's history: a snapshot was applied. Before that,
    /// `snapshot(at:)` knows nobody, and a driver must not record its stream position as
    /// processed (early broadcasts are only held in memory until the snapshot arrives).
    public var isInitialized: Bool { !state.transactions.isEmpty }

    /// Sequencing time of the latest transaction applied.
    public var latestSequencedAt: SequencingTimestamp? { state.latestSequencedAt }

    /// Every accepted transaction, in the order applied.
    public var transactions: [StoredTopologyTransaction] { state.transactions }

    /// The topology at `timestamp` (docs/topology.md §4–5).
    public func snapshot(at timestamp: SequencingTimestamp) -> TopologySnapshot {
        state.snapshot(at: timestamp)
    }

    /// Applies a topology envelope (snapshot or broadcast) delivered at `sequencedAt` by
    /// `sender`. Returns whether the topology changed: false for a replayed event, for a
    /// broadcast held until the snapshot arrives, and for content that is not topology.
    ///
    /// - A snapshot must come from the sequencers, name this domain, and validate as a whole,
    ///   starting from the domain's root delegation; otherwise nothing of it is applied.
    /// - A broadcast must come from the domain manager or the sequencers and name this domain.
    ///   Its transactions are accepted or refused one by one, exactly as on every other node;
    ///   the accepted ones are applied, and if some were refused `apply` then throws
    ///   `transactionsRefused` so that the caller logs them (they are logged here too).
    /// - Broadcasts held until the snapshot are applied with it, each on its own as if it had
    ///   just arrived; refusals among them are thrown once, after all of them are applied.
    @discardableResult
    public func apply(_ content: Weft.V1.EnvelopeContent, sequencedAt: SequencingTimestamp, sender: String) async throws -> Bool {
        switch content.message {
        case .topologySnapshot(let snapshot)?:
            return try await apply(snapshot: snapshot, sequencedAt: sequencedAt, sender: sender)
        case .topologyBroadcast(let broadcast)?:
            return try await apply(broadcast: broadcast, sequencedAt: sequencedAt, sender: sender) > 0
        default:
            return false
        }
    }

    private func apply(snapshot: Weft.V1.TopologySnapshot, sequencedAt: SequencingTimestamp, sender: String) async throws -> Bool {
        guard sender == sequencerMember.description else {
            throw refuse(.notFromDomain(content: "topology snapshot", sender: sender, expected: [sequencerMember.description]), at: sequencedAt)
        }
        guard snapshot.domain == domain.description else {
            throw refuse(.wrongDomain(content: "topology snapshot", expected: domain.description, actual: snapshot.domain), at: sequencedAt)
        }
        guard !droppedEarly else {
            throw refuse(.historyTooLate(earlyBroadcastsMax: earlyBroadcastsMax), at: sequencedAt)
        }
        var next = state
        var changes: [TopologyChange] = []
        for (index, stored) in snapshot.transactions.enumerated() {
            guard let validFrom = stored.validFrom.map(SequencingTimestamp.init) else {
                throw refuse(.invalidSnapshot(index: index, reason: "valid_from is missing"), at: sequencedAt)
            }
            let transactionSequencedAt = validFrom.adding(micros: -changeDelayMicros)
            guard transactionSequencedAt < sequencedAt else {
                throw refuse(
                    .invalidSnapshot(index: index, reason: "it claims a sequencing time \(transactionSequencedAt) not before the snapshot's own"),
                    at: sequencedAt)
            }
            let added: TopologyChange?
            do throws(TopologyError) {
                added = try next.add(SignedTopologyTransaction(stored.transaction ?? .init()), sequencedAt: transactionSequencedAt)
            } catch {
                throw refuse(.invalidSnapshot(index: index, reason: "\(error) [\(error.id)]"), at: sequencedAt)
            }
            guard let change = added else { continue }
            let root = TopologyMappingKey.namespaceDelegation(namespace: domain.namespace, target: domain.namespace)
            if change.added.position == 0, change.added.key != root || change.added.operation != .replace {
                throw refuse(
                    .invalidSnapshot(index: index, reason: "the history must start with the domain's root delegation \(root), not \(change.added.key)"),
                    at: sequencedAt)
            }
            changes.append(change)
        }
        guard next.transactions.first != nil else {
            throw refuse(.invalidSnapshot(index: 0, reason: "it holds no transaction"), at: sequencedAt)
        }
        if !changes.isEmpty {
            try await store.persist(changes)
            state = next
            logger.info(
                "applied the domain's topology history",
                metadata: [LogKey.domain: "\(domain)", LogKey.transactionCount: "\(changes.count)", LogKey.sequencedAt: "\(sequencedAt)"])
        }
        return try await applyHeld(changed: !changes.isEmpty, appliedCount: changes.count)
    }

    /// Applies the broadcasts held until the history arrived, in stream order, each on its own:
    /// a transaction refused in one (logged with its broadcast's time, as `apply` logs it) stops
    /// neither the rest of that broadcast nor the later ones, exactly as on the nodes that read
    /// them live. Stopping at the first refusal would drop the later broadcasts for good: the
    /// caller goes on past a refusal and stores its stream position after the history.
    ///
    /// Throws the refusals of all of them at the end (`transactionsRefused`, its `appliedCount`
    /// counting the history's transactions too); any other failure (the store) is thrown at
    /// once, and the stream position, not stored yet, makes a restart read the rest again.
    private func applyHeld(changed: Bool, appliedCount: Int) async throws -> Bool {
        var changed = changed
        var appliedCount = appliedCount
        var refused: [MemberTopologyError.RefusedTransaction] = []
        let held = early
        early = []
        for (broadcast, at) in held {
            do {
                let applied = try await apply(broadcast: broadcast, sequencedAt: at, sender: managerMember.description)
                changed = changed || applied > 0
                appliedCount += applied
            } catch MemberTopologyError.transactionsRefused(let some, let count) {
                refused += some
                changed = changed || count > 0
                appliedCount += count
            }
        }
        guard refused.isEmpty else { throw MemberTopologyError.transactionsRefused(refused, appliedCount: appliedCount) }
        return changed
    }

    /// Returns how many of its transactions changed the topology (0 also for one held).
    private func apply(broadcast: Weft.V1.TopologyTransactionsBroadcast, sequencedAt: SequencingTimestamp, sender: String) async throws -> Int {
        let senders = [managerMember.description, sequencerMember.description]
        guard senders.contains(sender) else {
            throw refuse(.notFromDomain(content: "topology broadcast", sender: sender, expected: senders), at: sequencedAt)
        }
        guard broadcast.domain == domain.description else {
            throw refuse(.wrongDomain(content: "topology broadcast", expected: domain.description, actual: broadcast.domain), at: sequencedAt)
        }
        guard isInitialized else {
            guard !droppedEarly, early.count < earlyBroadcastsMax else {
                // What was held is of no use any more (the history will be refused): freed.
                droppedEarly = true
                early = []
                throw refuse(.historyTooLate(earlyBroadcastsMax: earlyBroadcastsMax), at: sequencedAt)
            }
            early.append((broadcast, sequencedAt))
            logger.info(
                "holding a topology broadcast until the domain's history arrives",
                metadata: [LogKey.domain: "\(domain)", LogKey.sequencedAt: "\(sequencedAt)", "weft.topology.held": "\(early.count)"])
            return 0
        }
        var next = state
        let outcome = next.add(broadcast, sequencedAt: sequencedAt)
        if !outcome.changes.isEmpty {
            try await store.persist(outcome.changes)
            state = next
        }
        if !outcome.refused.isEmpty {
            for refused in outcome.refused {
                logger.warning(
                    "refused a topology transaction",
                    metadata: [
                        LogKey.domain: "\(domain)", LogKey.sequencedAt: "\(sequencedAt)", "weft.topology.index": "\(refused.index)",
                        "error": "\(refused.error)", "error_id": "\(refused.error.id)",
                    ])
            }
            throw MemberTopologyError.transactionsRefused(
                outcome.refused.map { .init(sequencedAt: sequencedAt, index: $0.index, error: $0.error) },
                appliedCount: outcome.changes.count)
        }
        return outcome.changes.count
    }

    private func refuse(_ error: MemberTopologyError, at sequencedAt: SequencingTimestamp) -> MemberTopologyError {
        logger.error(
            "refused topology content; nothing of it was applied",
            metadata: [LogKey.domain: "\(domain)", LogKey.sequencedAt: "\(sequencedAt)", "error": "\(error)", "error_id": "\(error.id)"])
        return error
    }
}

/// Why a member refused topology content from its sequencer stream.
public enum MemberTopologyError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A transaction of a broadcast that every node refuses (see `TopologyState.add`).
    public struct RefusedTransaction: Equatable, Sendable {
        /// The sequencing time of its broadcast: a history applied with the broadcasts held
        /// until it arrived reports the refusals of several.
        public let sequencedAt: SequencingTimestamp
        /// Its index in that broadcast.
        public let index: Int
        public let error: TopologyError
    }

    /// Topology content from a member that may not send it.
    case notFromDomain(content: String, sender: String, expected: [String])
    /// A snapshot or broadcast for another domain.
    case wrongDomain(content: String, expected: String, actual: String)
    /// A snapshot that does not validate as a whole (forged, altered, or not the domain's).
    case invalidSnapshot(index: Int, reason: String)
    /// Transactions of a broadcast (or of the broadcasts held until the history, applied with
    /// it) that did not validate; the others were applied, `appliedCount` of them in all.
    case transactionsRefused([RefusedTransaction], appliedCount: Int)
    /// More broadcasts than the member holds (`earlyBroadcastsMax`) came before the history:
    /// that broadcast, later ones and the history are refused until the node restarts.
    case historyTooLate(earlyBroadcastsMax: Int)

    /// A stable id, Canton style.
    public var id: String {
        switch self {
        case .notFromDomain: "TOPOLOGY_NOT_FROM_DOMAIN"
        case .wrongDomain: "TOPOLOGY_WRONG_DOMAIN"
        case .invalidSnapshot: "TOPOLOGY_INVALID_SNAPSHOT"
        case .transactionsRefused: "TOPOLOGY_TRANSACTIONS_REFUSED"
        case .historyTooLate: "TOPOLOGY_HISTORY_TOO_LATE"
        }
    }

    public var description: String {
        switch self {
        case .notFromDomain(let content, let sender, let expected):
            "a \(content) from \(sender.prefix(200)) was ignored: only \(expected.joined(separator: " or ")) may send it; "
                + "if this repeats, the sequencer is misbehaving or the member is configured with the wrong domain id"
        case .wrongDomain(let content, let expected, let actual):
            "a \(content) for domain '\(actual.prefix(200))' reached this member of \(expected); check the domain id in the node's configuration"
        case .invalidSnapshot(let index, let reason):
            "the topology snapshot was refused at transaction \(index): \(reason); it was not applied. The sequencer sent a history "
                + "that does not authenticate from the domain's root key: check that the node is configured with the right domain id"
        case .transactionsRefused(let refused, let applied):
            "\(refused.count) topology transaction(s) were refused (\(applied) applied), as on every node: "
                + refused.map { "#\($0.index) of the broadcast sequenced at \($0.sequencedAt): \($0.error)" }.joined(separator: "; ")
        case .historyTooLate(let max):
            "more than \(max) topology broadcasts reached this member before the domain's topology history; they are no longer "
                + "held, and the history is refused when it comes, since without them it would give this member a topology "
                + "no other node has. The member's stream position is not stored before its history: restart the node to read "
                + "them again (the limit, MemberTopology.earlyBroadcastsMaxDefault, is not configurable yet). If it never comes, the "
                + "sequencer did not send it (docs/sequencer.md §4, 'The topology history'): check the sequencer's log"
        }
    }
}

extension LogKey {
    static let sequencedAt = "weft.sequenced_at"
}
