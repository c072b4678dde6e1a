import WeftCrypto
public import WeftTopology
public import WeftWire

/// Where a participant reads the topology "as of T": fed with the topology envelopes of its own
/// sequencer stream, in order, and asked for snapshots at request times. `MemberTopology`
/// (WeftTopology, persisted) is the node's; `FollowedTopology` keeps it in memory.
public protocol ParticipantTopology: Sendable {
    /// Applies a topology envelope sequenced at `sequencedAt` from `sender`; returns whether
    /// it was one (other content is ignored).
    @discardableResult
    func apply(_ content: Weft.V1.EnvelopeContent, sequencedAt: SequencingTimestamp, sender: String) async throws
        -> Bool
    /// The topology at `timestamp`.
    func snapshot(at timestamp: SequencingTimestamp) async -> TopologySnapshot
}

/// A topology follower in memory, started from a known state (the domain's genesis and what
/// was broadcast before the participant joined) and fed with the broadcasts of the stream.
/// Broadcasts from anyone but the domain manager are ignored, as the sequencer's are.
public actor FollowedTopology: ParticipantTopology {
    private var state: TopologyState

    public init(_ initial: TopologyState) {
        state = initial
    }

    @discardableResult
    public func apply(_ content: Weft.V1.EnvelopeContent, sequencedAt: SequencingTimestamp, sender: String) -> Bool {
        guard case .topologyBroadcast(let broadcast)? = content.message else { return false }
        guard let member = try? MemberID(parsing: sender), member.role == .domainManager else { return false }
        _ = state.add(broadcast, sequencedAt: sequencedAt)
        return true
    }

    public func snapshot(at timestamp: SequencingTimestamp) -> TopologySnapshot {
        state.snapshot(at: timestamp)
    }
}
