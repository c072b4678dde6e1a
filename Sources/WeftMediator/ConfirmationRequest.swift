import WeftContracts
public import WeftCrypto
public import WeftTopology
public import WeftWire

/// A root hash message as the mediator sees it in the request's batch: the message and the
/// members its envelope is addressed to.
public struct RootHashEnvelope: Sendable, Hashable {
    public var message: Weft.V1.RootHashMessage
    /// The envelope's recipients (the informee participants it tells, and the mediator).
    public var recipients: [MemberID]

    public init(message: Weft.V1.RootHashMessage, recipients: [MemberID]) {
        self.message = message
        self.recipients = recipients
    }
}

/// What the mediator receives of one confirmation request (DESIGN.md §8 step 2): the informee
/// tree, and the root hash messages of the same batch with their recipients.
public struct ConfirmationRequest: Sendable, Hashable {
    /// When the sequencer sequenced the request: its id, and the time its topology is read at.
    public var timestamp: SequencingTimestamp
    public var informeeMessage: Weft.V1.InformeeMessage
    public var rootHashMessages: [RootHashEnvelope]

    public init(
        timestamp: SequencingTimestamp, informeeMessage: Weft.V1.InformeeMessage, rootHashMessages: [RootHashEnvelope]
    ) {
        self.timestamp = timestamp
        self.informeeMessage = informeeMessage
        self.rootHashMessages = rootHashMessages
    }
}

/// Limits and defaults of a mediator.
public struct MediatorConfiguration: Sendable, Hashable {
    /// The response timeout when the topology has no domain parameters (a domain always sets
    /// them at bootstrap, so this is a fallback, not a setting). Default 30 s.
    public var defaultParticipantResponseTimeoutMicros: Int64
    /// Most views a request may have: hashing the informee tree costs views × depth.
    /// Default 10 000.
    public var viewCountMax: Int

    public init(defaultParticipantResponseTimeoutMicros: Int64 = 30_000_000, viewCountMax: Int = 10_000) {
        precondition(defaultParticipantResponseTimeoutMicros >= 0 && viewCountMax > 0)
        self.defaultParticipantResponseTimeoutMicros = defaultParticipantResponseTimeoutMicros
        self.viewCountMax = viewCountMax
    }
}

/// The checks of a request against the topology at its sequencing time (pure): what makes the
/// mediator register it, or reject it at once.
struct RequestCheck {
    let domain: UniqueIdentifier
    let mediator: MemberID

    /// Why `tree` cannot be approved, as a mediator reject; nil when it can be.
    func rejection(of tree: InformeeTree, rootHashMessages: [RootHashEnvelope], snapshot: TopologySnapshot)
        -> Weft.V1.MediatorReject?
    {
        func invalid(_ message: String) -> Weft.V1.MediatorReject {
            Weft.V1.MediatorReject(reasonID: RejectReason.invalidMessage, message: message)
        }
        guard tree.domain == domain.description else {
            return invalid("the request is for domain '\(tree.domain.prefix(200))', not \(domain)")
        }
        guard tree.mediator == mediator.description else {
            return invalid("the request is for mediator '\(tree.mediator.prefix(200))', not \(mediator)")
        }
        guard !rootHashMessages.isEmpty else { return invalid("the request has no root hash message") }
        for envelope in rootHashMessages {
            let message = envelope.message
            guard message.rootHash == tree.rootHash.bytes else {
                return invalid(
                    "a root hash message carries root hash \(hexText(message.rootHash)), "
                        + "but the informee tree's is \(tree.rootHash)")
            }
            guard message.domain == domain.description else {
                return invalid("a root hash message is for domain '\(message.domain.prefix(200))'")
            }
            guard message.viewType == .transaction else {
                return invalid("a root hash message is for view type \(message.viewType)")
            }
        }
        for view in tree.views {
            let position = positionText(view.position)
            guard view.threshold >= 1, view.threshold <= view.totalWeight else {
                return invalid(
                    "view \(position) has threshold \(view.threshold) and confirming weight \(view.totalWeight)")
            }
            if tree.policy == .signatory, view.threshold != view.totalWeight {
                return invalid(
                    "view \(position) follows the signatory policy, so its threshold must be its confirming "
                        + "weight \(view.totalWeight), not \(view.threshold)")
            }
        }
        if let message = unhosted(tree, snapshot: snapshot) {
            return Weft.V1.MediatorReject(reasonID: RejectReason.informeesNotHosted, message: message)
        }
        let told = Set(
            rootHashMessages.flatMap(\.recipients).filter { $0.role == .participant }.map(\.identifier))
        if let missing = informeeParticipants(tree, snapshot: snapshot).first(where: { !told.contains($0) }) {
            return invalid("informee participant \(missing) received no root hash message")
        }
        return nil
    }

    /// Why some informee is hosted nowhere, or some confirming party nowhere it can confirm.
    private func unhosted(_ tree: InformeeTree, snapshot: TopologySnapshot) -> String? {
        for party in tree.informees where hostings(of: party, snapshot).isEmpty {
            return "informee \(party) is hosted on no active participant"
        }
        for party in tree.confirmingParties {
            let confirming = hostings(of: party, snapshot).filter { hosting in
                Self.confirms(hosting.permission)
                    && (tree.policy != .vip || snapshot.participantState(hosting.participant)?.trustLevel == .vip)
            }
            if confirming.isEmpty {
                return tree.policy == .vip
                    ? "confirming party \(party) is hosted on no VIP participant with confirmation permission"
                    : "confirming party \(party) is hosted on no participant with confirmation permission"
            }
        }
        return nil
    }

    /// The participants hosting any informee of the request: who must receive its verdict.
    func informeeParticipants(_ tree: InformeeTree, snapshot: TopologySnapshot) -> [UniqueIdentifier] {
        var participants = Set<UniqueIdentifier>()
        for party in tree.informees {
            for hosting in hostings(of: party, snapshot) { participants.insert(hosting.participant) }
        }
        return participants.sorted { $0.description < $1.description }
    }

    private func hostings(of party: Party, _ snapshot: TopologySnapshot) -> [PartyHosting] {
        guard let identifier = try? UniqueIdentifier(parsing: party.id) else { return [] }
        return snapshot.hostingParticipants(of: identifier)
    }

    /// Whether a hosting with `permission` may confirm: submission includes confirmation.
    static func confirms(_ permission: Weft.V1.ParticipantPermission) -> Bool {
        permission == .submission || permission == .confirmation
    }
}
