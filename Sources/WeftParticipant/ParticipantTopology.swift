public import WeftTopology
public import WeftWire

/// Where a participant reads the topology "as of T": fed with the topology envelopes of its own
/// sequencer stream (the sequencers' history snapshot first, then broadcasts), in order, and
/// asked for snapshots at request times. `MemberTopology` (WeftTopology, persisted in the
/// member's own table) is the one a node uses; tests may give another.
public protocol ParticipantTopology: Sendable {
    /// Applies a topology envelope sequenced at `sequencedAt` from `sender`; returns whether
    /// the topology changed. Other content is ignored. Throws for content it refuses (some of
    /// a broadcast may still have been applied: the error says so).
    @discardableResult
    func apply(_ content: Weft.V1.EnvelopeContent, sequencedAt: SequencingTimestamp, sender: String) async throws
        -> Bool
    /// The topology at `timestamp`.
    func snapshot(at timestamp: SequencingTimestamp) async -> TopologySnapshot
    /// Whether the domain's history has arrived: before, the participant knows nobody, and
    /// what it has read of its stream is not yet durable.
    var isInitialized: Bool { get async }
    /// Every transaction applied, as a history snapshot carries them: what a repair snapshot
    /// hands a participant whose own history the sequencer pruned.
    var history: [Weft.V1.StoredTopologyTransaction] { get async }
}

extension MemberTopology: ParticipantTopology {
    public var history: [Weft.V1.StoredTopologyTransaction] { transactions.map(\.wire) }
}
