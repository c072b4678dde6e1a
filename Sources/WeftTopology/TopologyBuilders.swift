public import WeftCrypto
public import WeftWire

/// Helpers that build mappings in the form `TopologyState` accepts, so that a domain manager
/// or a participant never assembles the protobuf fields by hand.
extension Weft.V1.TopologyMapping.Mapping {
    /// The root delegation that creates the namespace of `key` (signed by `key` itself).
    public static func rootDelegation(_ key: SigningPublicKey) -> Self {
        .namespaceDelegation(
            .init(
                namespace: key.fingerprint.description, targetKey: key.wire(purpose: .namespace), isRootDelegation: true
            ))
    }

    /// Gives `key` authority over `namespace`; with `mayDelegate` it may also delegate further.
    public static func delegation(of namespace: Fingerprint, to key: SigningPublicKey, mayDelegate: Bool) -> Self {
        .namespaceDelegation(
            .init(
                namespace: namespace.description, targetKey: key.wire(purpose: .namespace),
                isRootDelegation: mayDelegate))
    }

    /// Registers a member's keys.
    public static func keys(of member: MemberID, signing: [SigningPublicKey], encryption: [EncryptionPublicKey] = [])
        -> Self
    {
        .ownerToKeyMapping(
            .init(member: member.description, keys: signing.map { $0.wire(purpose: .signing) } + encryption.map(\.wire))
        )
    }

    /// Admits a participant to the domain with a permission and trust level.
    public static func participantState(
        _ participant: UniqueIdentifier, permission: Weft.V1.ParticipantPermission,
        trustLevel: Weft.V1.TrustLevel = .ordinary
    ) -> Self {
        .participantDomainState(
            .init(participant: participant.description, permission: permission, trustLevel: trustLevel))
    }

    /// Hosts `party` on `participant`.
    public static func hosting(
        party: UniqueIdentifier, on participant: UniqueIdentifier, permission: Weft.V1.ParticipantPermission
    ) -> Self {
        .partyToParticipant(
            .init(party: party.description, participant: participant.description, permission: permission))
    }

    /// Makes `mediator` a mediator of the domain.
    public static func mediator(_ mediator: MemberID) -> Self {
        .mediatorDomainState(.init(mediator: mediator.description))
    }

    /// Sets the domain's sequencers.
    public static func sequencers(_ sequencers: [MemberID]) -> Self {
        .sequencerDomainState(.init(sequencers: sequencers.map(\.description)))
    }

    /// Sets the parameters of `domain`.
    public static func parameters(_ parameters: Weft.V1.DomainParameters, of domain: UniqueIdentifier) -> Self {
        .domainParametersState(.init(domain: domain.description, parameters: parameters))
    }
}

extension Weft.V1.TopologyTransaction {
    /// A transaction that adds `mapping`, or replaces the one in force with the same unique key.
    public init(replace mapping: Weft.V1.TopologyMapping.Mapping, serial: UInt64, domain: UniqueIdentifier) {
        self.init(operation: .replace, serial: serial, mapping: .init(mapping: mapping), domain: domain.description)
    }

    /// A transaction that removes the mapping in force with `mapping`'s unique key.
    public init(remove mapping: Weft.V1.TopologyMapping.Mapping, serial: UInt64, domain: UniqueIdentifier) {
        self.init(operation: .remove, serial: serial, mapping: .init(mapping: mapping), domain: domain.description)
    }
}

extension SignedTopologyTransaction {
    /// A participant's identity, as it sends it to onboard (`SequencerService.Onboard`): the
    /// root delegation of its namespace and its signing and encryption keys, both signed by its
    /// namespace key.
    public static func participantIdentity(
        _ participant: UniqueIdentifier, namespaceKey: SigningPrivateKey, signingKey: SigningPublicKey, encryptionKey: EncryptionPublicKey,
        domain: UniqueIdentifier
    ) throws(TopologyError) -> [SignedTopologyTransaction] {
        let member = MemberID(role: .participant, identifier: participant)
        return [
            try SignedTopologyTransaction(signing: .init(replace: .rootDelegation(namespaceKey.publicKey), serial: 1, domain: domain), with: [namespaceKey]),
            try SignedTopologyTransaction(
                signing: .init(replace: .keys(of: member, signing: [signingKey], encryption: [encryptionKey]), serial: 1, domain: domain),
                with: [namespaceKey]),
        ]
    }
}
