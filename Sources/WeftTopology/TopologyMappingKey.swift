public import WeftCrypto
public import WeftWire

/// The unique key of a topology mapping: at most one mapping per key is in force, and serials
/// count the changes of one key.
///
/// The text form (`description`) is what the store records and what every error message
/// names, e.g. `party-to-participant/alice::1220…/participant1::1220…`.
public enum TopologyMappingKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// A delegation of `namespace` to the key with fingerprint `target`; the root
    /// delegation has `target == namespace`.
    case namespaceDelegation(namespace: Fingerprint, target: Fingerprint)
    /// A member's keys.
    case ownerToKeyMapping(member: MemberID)
    /// A participant's admission.
    case participantDomainState(participant: UniqueIdentifier)
    /// A party's hosting on one participant.
    case partyToParticipant(party: UniqueIdentifier, participant: UniqueIdentifier)
    /// One mediator of the domain.
    case mediatorDomainState(mediator: MemberID)
    /// The domain's list of sequencers (one per domain).
    case sequencerDomainState
    /// The domain's parameters (one per domain).
    case domainParameters

    public var description: String {
        switch self {
        case .namespaceDelegation(let namespace, let target): return "namespace-delegation/\(namespace)/\(target)"
        case .ownerToKeyMapping(let member): return "owner-to-key-mapping/\(member)"
        case .participantDomainState(let participant): return "participant-domain-state/\(participant)"
        case .partyToParticipant(let party, let participant): return "party-to-participant/\(party)/\(participant)"
        case .mediatorDomainState(let mediator): return "mediator-domain-state/\(mediator)"
        case .sequencerDomainState: return "sequencer-domain-state"
        case .domainParameters: return "domain-parameters"
        }
    }

    /// Ordered by text form, so that every sorted output is the same on every node.
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.description < rhs.description }

    /// The unique key of `mapping` in `domain` (what `TopologyState.nextSerial(for:)` takes).
    public init(_ mapping: Weft.V1.TopologyMapping.Mapping, domain: UniqueIdentifier) throws(TopologyError) {
        self = try ValidMapping(mapping, domain: domain).key
    }
}

/// A mapping's content, parsed and checked: ids are typed, keys are usable keys.
enum ValidMapping: Hashable, Sendable {
    case namespaceDelegation(namespace: Fingerprint, target: SigningPublicKey, mayDelegate: Bool)
    case ownerToKeyMapping(member: MemberID, signing: [SigningPublicKey], encryption: [EncryptionPublicKey])
    case participantDomainState(ParticipantAttributes)
    case partyToParticipant(
        party: UniqueIdentifier, participant: UniqueIdentifier, permission: Weft.V1.ParticipantPermission)
    case mediatorDomainState(mediator: MemberID)
    case sequencerDomainState(sequencers: [MemberID])
    case domainParameters(Weft.V1.DomainParameters)

    var key: TopologyMappingKey {
        switch self {
        case .namespaceDelegation(let namespace, let target, _):
            return .namespaceDelegation(namespace: namespace, target: target.fingerprint)
        case .ownerToKeyMapping(let member, _, _): return .ownerToKeyMapping(member: member)
        case .participantDomainState(let attributes):
            return .participantDomainState(participant: attributes.participant)
        case .partyToParticipant(let party, let participant, _):
            return .partyToParticipant(party: party, participant: participant)
        case .mediatorDomainState(let mediator): return .mediatorDomainState(mediator: mediator)
        case .sequencerDomainState: return .sequencerDomainState
        case .domainParameters: return .domainParameters
        }
    }

    /// Who must sign (docs/topology.md §3).
    enum Authorizer: Hashable {
        /// The key itself: a namespace's root delegation is self-signed.
        case key(Fingerprint)
        /// A key authorized for the namespace; `delegating` if it must also be allowed to delegate.
        case namespace(Fingerprint, delegating: Bool)
    }

    func authorizers(domain: UniqueIdentifier) -> [Authorizer] {
        switch self {
        case .namespaceDelegation(let namespace, let target, _):
            return target.fingerprint == namespace ? [.key(namespace)] : [.namespace(namespace, delegating: true)]
        case .ownerToKeyMapping(let member, _, _):
            return [.namespace(member.identifier.namespace, delegating: false)]
        case .partyToParticipant(let party, let participant, _):
            // The party's owner asks for the hosting and the participant consents to it.
            if party.namespace == participant.namespace { return [.namespace(party.namespace, delegating: false)] }
            return [
                .namespace(party.namespace, delegating: false), .namespace(participant.namespace, delegating: false),
            ]
        case .participantDomainState, .mediatorDomainState, .sequencerDomainState, .domainParameters:
            return [.namespace(domain.namespace, delegating: false)]
        }
    }

    /// Parses and checks a wire mapping of a transaction for `domain`.
    init(_ mapping: Weft.V1.TopologyMapping.Mapping, domain: UniqueIdentifier) throws(TopologyError) {
        switch mapping {
        case .namespaceDelegation(let delegation):
            self = try Self.namespaceDelegation(delegation)
        case .ownerToKeyMapping(let keys):
            self = try Self.ownerToKeyMapping(keys)
        case .participantDomainState(let state):
            let what = "participant-domain-state/\(state.participant)"
            let participant = try Self.identifier(state.participant, what: what, field: "participant")
            let permission = try Self.permission(state.permission, what: what)
            guard state.trustLevel == .ordinary || state.trustLevel == .vip else {
                throw .invalidMapping(mapping: what, reason: "trust_level is \(state.trustLevel); use ORDINARY or VIP")
            }
            self = .participantDomainState(
                .init(participant: participant, permission: permission, trustLevel: state.trustLevel))
        case .partyToParticipant(let hosting):
            let what = "party-to-participant/\(hosting.party)/\(hosting.participant)"
            let party = try Self.identifier(hosting.party, what: what, field: "party")
            let participant = try Self.identifier(hosting.participant, what: what, field: "participant")
            let permission = try Self.permission(hosting.permission, what: what)
            guard permission != .disabled else {
                throw .invalidMapping(
                    mapping: what,
                    reason: "a party cannot be hosted with permission DISABLED; remove the hosting instead")
            }
            self = .partyToParticipant(party: party, participant: participant, permission: permission)
        case .mediatorDomainState(let state):
            let what = "mediator-domain-state/\(state.mediator)"
            self = .mediatorDomainState(
                mediator: try Self.member(state.mediator, role: .mediator, what: what, field: "mediator"))
        case .sequencerDomainState(let state):
            let what = TopologyMappingKey.sequencerDomainState.description
            guard !state.sequencers.isEmpty else {
                throw .invalidMapping(mapping: what, reason: "it lists no sequencer; a domain needs at least one")
            }
            guard state.sequencers.count <= TopologyLimits.sequencersMax else {
                throw .invalidMapping(
                    mapping: what,
                    reason:
                        "it lists \(state.sequencers.count) sequencers; at most \(TopologyLimits.sequencersMax) are allowed"
                )
            }
            var sequencers: [MemberID] = []
            for text in state.sequencers {
                let sequencer = try Self.member(text, role: .sequencer, what: what, field: "sequencers")
                guard !sequencers.contains(sequencer) else {
                    throw .invalidMapping(mapping: what, reason: "it lists \(sequencer) twice")
                }
                sequencers.append(sequencer)
            }
            self = .sequencerDomainState(sequencers: sequencers)
        case .domainParametersState(let state):
            let what = TopologyMappingKey.domainParameters.description
            guard state.domain == domain.description else {
                throw .invalidMapping(
                    mapping: what, reason: "it names domain '\(state.domain.prefix(200))', not this domain \(domain)")
            }
            guard let parameters = state.parameters else {
                throw .invalidMapping(
                    mapping: what, reason: "parameters are missing; the domain's parameters are always set complete")
            }
            try Self.check(parameters, what: what)
            self = .domainParameters(parameters)
        }
    }

    private static func namespaceDelegation(_ delegation: Weft.V1.NamespaceDelegation) throws(TopologyError) -> Self {
        var what = "namespace-delegation/\(delegation.namespace.prefix(80))"
        let namespace: Fingerprint
        do throws(CryptoError) {
            namespace = try Fingerprint(parsing: delegation.namespace)
        } catch {
            throw .invalidMapping(mapping: what, reason: "namespace: \(error)")
        }
        guard let wireKey = delegation.targetKey else {
            throw .invalidMapping(mapping: what, reason: "target_key is missing")
        }
        guard wireKey.purpose == .namespace else {
            throw .invalidMapping(
                mapping: what, reason: "target_key has purpose \(wireKey.purpose); a delegation names a NAMESPACE key")
        }
        let target: SigningPublicKey
        do throws(CryptoError) {
            target = try SigningPublicKey(wireKey)
        } catch {
            throw .invalidMapping(mapping: what, reason: "target_key: \(error)")
        }
        what = TopologyMappingKey.namespaceDelegation(namespace: namespace, target: target.fingerprint).description
        if target.fingerprint == namespace, !delegation.isRootDelegation {
            throw .invalidMapping(
                mapping: what, reason: "the namespace's own key is its root: its delegation must set is_root_delegation"
            )
        }
        return .namespaceDelegation(namespace: namespace, target: target, mayDelegate: delegation.isRootDelegation)
    }

    private static func ownerToKeyMapping(_ mapping: Weft.V1.OwnerToKeyMapping) throws(TopologyError) -> Self {
        let what = "owner-to-key-mapping/\(mapping.member.prefix(200))"
        let member: MemberID
        do throws(CryptoError) {
            member = try MemberID(parsing: mapping.member)
        } catch {
            throw .invalidMapping(mapping: what, reason: "member: \(error)")
        }
        guard mapping.keys.count <= TopologyLimits.keysPerMemberMax else {
            throw .invalidMapping(
                mapping: what,
                reason: "it has \(mapping.keys.count) keys; at most \(TopologyLimits.keysPerMemberMax) are allowed")
        }
        var signing: [SigningPublicKey] = []
        var encryption: [EncryptionPublicKey] = []
        for (index, key) in mapping.keys.enumerated() {
            do throws(CryptoError) {
                switch (key.scheme, key.purpose) {
                case (.ed25519, .signing): signing.append(try SigningPublicKey(key))
                case (.x25519, .encryption): encryption.append(try EncryptionPublicKey(key))
                default:
                    throw .wrongKeyScheme(
                        expected: "Ed25519 SIGNING or X25519 ENCRYPTION", actual: "\(key.scheme) \(key.purpose)")
                }
            } catch {
                throw .invalidMapping(mapping: what, reason: "key \(index + 1): \(error)")
            }
        }
        guard Set(signing).count == signing.count, Set(encryption).count == encryption.count else {
            throw .invalidMapping(mapping: what, reason: "it lists a key twice")
        }
        guard !signing.isEmpty else {
            throw .invalidMapping(
                mapping: what, reason: "it has no SIGNING key; every member needs one to authenticate and sign")
        }
        if member.role == .participant || member.role == .mediator, encryption.isEmpty {
            throw .invalidMapping(
                mapping: what, reason: "it has no ENCRYPTION key; participants and mediators receive encrypted data")
        }
        return .ownerToKeyMapping(
            member: member, signing: signing.sorted(by: Self.byFingerprint),
            encryption: encryption.sorted(by: Self.byFingerprint))
    }

    private static func check(_ parameters: Weft.V1.DomainParameters, what: String) throws(TopologyError) {
        let durations: [(String, Weft.V1.Duration?)] = [
            ("participant_response_timeout", parameters.participantResponseTimeout),
            ("reconciliation_interval", parameters.reconciliationInterval),
            ("ledger_time_record_time_tolerance", parameters.ledgerTimeRecordTimeTolerance),
            ("mediator_deduplication_timeout", parameters.mediatorDeduplicationTimeout),
            ("authentication_token_lifetime", parameters.authenticationTokenLifetime),
        ]
        for (name, duration) in durations {
            guard let duration else { throw .invalidMapping(mapping: what, reason: "\(name) is missing") }
            guard duration.micros > 0 else {
                throw .invalidMapping(mapping: what, reason: "\(name) is \(duration.micros)µs; it must be positive")
            }
        }
        // Added after the others: parameters stored before it have none (the default applies).
        if let reaction = parameters.mediatorReactionTimeout, reaction.micros <= 0 {
            throw .invalidMapping(
                mapping: what, reason: "mediator_reaction_timeout is \(reaction.micros)µs; it must be positive (or unset: no decision time)")
        }
        guard parameters.maxRequestSizeBytes > 0 else {
            throw .invalidMapping(mapping: what, reason: "max_request_size_bytes is 0; it must be positive")
        }
    }

    private static func identifier(_ text: String, what: String, field: String) throws(TopologyError)
        -> UniqueIdentifier
    {
        do throws(CryptoError) {
            return try UniqueIdentifier(parsing: text)
        } catch {
            throw .invalidMapping(mapping: what, reason: "\(field): \(error)")
        }
    }

    private static func member(_ text: String, role: Weft.V1.MemberRole, what: String, field: String)
        throws(TopologyError) -> MemberID
    {
        let member: MemberID
        do throws(CryptoError) {
            member = try MemberID(parsing: text)
        } catch {
            throw .invalidMapping(mapping: what, reason: "\(field): \(error)")
        }
        guard member.role == role else {
            throw .invalidMapping(mapping: what, reason: "\(field): \(member) is not a \(role) id")
        }
        return member
    }

    private static func permission(_ permission: Weft.V1.ParticipantPermission, what: String) throws(TopologyError)
        -> Weft.V1.ParticipantPermission
    {
        switch permission {
        case .submission, .confirmation, .observation, .disabled: return permission
        case .unspecified, .unrecognized:
            throw .invalidMapping(
                mapping: what,
                reason: "permission is \(permission); use SUBMISSION, CONFIRMATION, OBSERVATION or DISABLED")
        }
    }

    private static func byFingerprint(_ lhs: SigningPublicKey, _ rhs: SigningPublicKey) -> Bool {
        lhs.fingerprint.description < rhs.fingerprint.description
    }

    private static func byFingerprint(_ lhs: EncryptionPublicKey, _ rhs: EncryptionPublicKey) -> Bool {
        lhs.fingerprint.description < rhs.fingerprint.description
    }
}
