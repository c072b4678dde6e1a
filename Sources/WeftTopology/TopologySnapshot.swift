public import WeftCrypto
public import WeftWire

/// A participant's admission to the domain (`ParticipantDomainState`).
public struct ParticipantAttributes: Hashable, Sendable {
    public let participant: UniqueIdentifier
    public let permission: Weft.V1.ParticipantPermission
    public let trustLevel: Weft.V1.TrustLevel

    public init(
        participant: UniqueIdentifier, permission: Weft.V1.ParticipantPermission, trustLevel: Weft.V1.TrustLevel
    ) {
        self.participant = participant
        self.permission = permission
        self.trustLevel = trustLevel
    }
}

/// A party hosted on an active participant, with the permission it effectively has there:
/// the lower of the hosting's and the participant's own.
public struct PartyHosting: Hashable, Sendable {
    public let party: UniqueIdentifier
    public let participant: UniqueIdentifier
    public let permission: Weft.V1.ParticipantPermission

    public init(party: UniqueIdentifier, participant: UniqueIdentifier, permission: Weft.V1.ParticipantPermission) {
        self.party = party
        self.participant = participant
        self.permission = permission
    }
}

/// The topology of a domain as of one sequencing timestamp: who is admitted, with which keys,
/// and who hosts which party.
///
/// Everything is computed from the transactions in force, and every list is sorted by id text,
/// so two nodes holding the same transactions give identical answers (`canonicalDump`).
public struct TopologySnapshot: Hashable, Sendable {
    /// The time the snapshot describes: transactions with `validFrom < timestamp` applied.
    public let timestamp: SequencingTimestamp
    let content: Content

    /// The domain.
    public var domain: UniqueIdentifier { content.domain }
    /// How many transactions of the history this snapshot applied.
    public var appliedTransactionCount: Int { content.appliedCount }
    /// Every allow-listed participant, by id, disabled ones included.
    public var participants: [ParticipantAttributes] { content.participants }
    /// The mediators, by id.
    public var mediators: [MemberID] { content.mediators }
    /// The sequencers, by id.
    public var sequencers: [MemberID] { content.sequencers }
    /// The domain parameters in force, nil before the domain manager set them.
    public var domainParameters: Weft.V1.DomainParameters? { content.domainParameters }
    /// Every member the topology names (admitted, registered keys, mediator, sequencer), by id.
    public var members: [MemberID] { content.members }

    /// The admission of `participant`, nil if it was never allow-listed (or was removed).
    public func participantState(_ participant: UniqueIdentifier) -> ParticipantAttributes? {
        content.participantsByID[participant]
    }

    /// The registered signing keys of `member`, by fingerprint; empty if it registered none.
    public func signingKeys(of member: MemberID) -> [SigningPublicKey] {
        content.signingKeys[member] ?? []
    }

    /// The registered encryption keys of `member`, by fingerprint.
    public func encryptionKeys(of member: MemberID) -> [EncryptionPublicKey] {
        content.encryptionKeys[member] ?? []
    }

    /// The active participants hosting `party`, by participant id.
    public func hostingParticipants(of party: UniqueIdentifier) -> [PartyHosting] {
        content.hostingByParty[party] ?? []
    }

    /// The parties hosted on `participant` (if it is active), by party id.
    public func hostedParties(on participant: UniqueIdentifier) -> [PartyHosting] {
        content.hostingByParticipant[participant] ?? []
    }

    /// Whether `member` may take part in the domain at this time: a participant that is
    /// admitted with a permission other than DISABLED and has registered its keys; a
    /// mediator or sequencer that the domain lists and that has registered its keys; the
    /// domain manager of this domain once it has registered its keys.
    public func isActive(_ member: MemberID) -> Bool {
        content.isActive(member)
    }

    /// Everything the snapshot says, as sorted lines of text: identical on every node that
    /// holds the same transactions, for tests, debugging and comparing nodes.
    public var canonicalDump: String { content.canonicalDump(timestamp: timestamp) }
}

extension TopologySnapshot {
    /// The part of a snapshot that depends only on which transactions are applied.
    struct Content: Hashable, Sendable {
        let domain: UniqueIdentifier
        let appliedCount: Int
        let inForce: [(key: TopologyMappingKey, serial: UInt64)]
        let participants: [ParticipantAttributes]
        let participantsByID: [UniqueIdentifier: ParticipantAttributes]
        let mediators: [MemberID]
        let sequencers: [MemberID]
        let domainParameters: Weft.V1.DomainParameters?
        let signingKeys: [MemberID: [SigningPublicKey]]
        let encryptionKeys: [MemberID: [EncryptionPublicKey]]
        let hostingByParty: [UniqueIdentifier: [PartyHosting]]
        let hostingByParticipant: [UniqueIdentifier: [PartyHosting]]
        let members: [MemberID]

        init(domain: UniqueIdentifier, transactions: [StoredTopologyTransaction], applying count: Int) {
            self.domain = domain
            appliedCount = count
            var inForce: [(key: TopologyMappingKey, serial: UInt64)] = []
            var participantsByID: [UniqueIdentifier: ParticipantAttributes] = [:]
            var mediators: [MemberID] = []
            var sequencers: [MemberID] = []
            var domainParameters: Weft.V1.DomainParameters?
            var signingKeys: [MemberID: [SigningPublicKey]] = [:]
            var encryptionKeys: [MemberID: [EncryptionPublicKey]] = [:]
            var hostings:
                [(party: UniqueIdentifier, participant: UniqueIdentifier, permission: Weft.V1.ParticipantPermission)] =
                    []
            for stored in transactions.prefix(count) where stored.isInForce(applying: count) {
                inForce.append((stored.key, stored.serial))
                switch stored.mapping {
                case .namespaceDelegation: break
                case .ownerToKeyMapping(let member, let signing, let encryption):
                    signingKeys[member] = signing
                    encryptionKeys[member] = encryption
                case .participantDomainState(let attributes):
                    participantsByID[attributes.participant] = attributes
                case .partyToParticipant(let party, let participant, let permission):
                    hostings.append((party, participant, permission))
                case .mediatorDomainState(let mediator):
                    mediators.append(mediator)
                case .sequencerDomainState(let list):
                    sequencers = list
                case .domainParameters(let parameters):
                    domainParameters = parameters
                }
            }
            self.inForce = inForce.sorted { $0.key < $1.key }
            self.participantsByID = participantsByID
            participants = participantsByID.values.sorted { $0.participant.description < $1.participant.description }
            self.mediators = mediators.sorted { $0.description < $1.description }
            self.sequencers = sequencers.sorted { $0.description < $1.description }
            self.domainParameters = domainParameters
            self.signingKeys = signingKeys
            self.encryptionKeys = encryptionKeys

            var byParty: [UniqueIdentifier: [PartyHosting]] = [:]
            var byParticipant: [UniqueIdentifier: [PartyHosting]] = [:]
            for hosting in hostings {
                guard let attributes = participantsByID[hosting.participant],
                    Self.isActiveParticipant(
                        attributes,
                        hasKeys: signingKeys[.init(role: .participant, identifier: hosting.participant)] != nil)
                else { continue }
                let effective = PartyHosting(
                    party: hosting.party, participant: hosting.participant,
                    permission: Self.lower(hosting.permission, attributes.permission))
                byParty[hosting.party, default: []].append(effective)
                byParticipant[hosting.participant, default: []].append(effective)
            }
            hostingByParty = byParty.mapValues { $0.sorted { $0.participant.description < $1.participant.description } }
            hostingByParticipant = byParticipant.mapValues { $0.sorted { $0.party.description < $1.party.description } }

            var members = Set(signingKeys.keys)
            members.formUnion(participantsByID.keys.map { MemberID(role: .participant, identifier: $0) })
            members.formUnion(mediators)
            members.formUnion(sequencers)
            self.members = members.sorted { $0.description < $1.description }
        }

        func isActive(_ member: MemberID) -> Bool {
            let hasKeys = signingKeys[member] != nil
            switch member.role {
            case .participant:
                guard let attributes = participantsByID[member.identifier] else { return false }
                return Self.isActiveParticipant(attributes, hasKeys: hasKeys)
            case .mediator: return hasKeys && mediators.contains(member)
            case .sequencer: return hasKeys && sequencers.contains(member)
            case .domainManager: return hasKeys && member.identifier == domain
            case .unspecified, .unrecognized: return false
            }
        }

        private static func isActiveParticipant(_ attributes: ParticipantAttributes, hasKeys: Bool) -> Bool {
            hasKeys && attributes.permission != .disabled
        }

        /// The lower of two permissions: submission > confirmation > observation > disabled.
        private static func lower(_ a: Weft.V1.ParticipantPermission, _ b: Weft.V1.ParticipantPermission)
            -> Weft.V1.ParticipantPermission
        {
            rank(a) <= rank(b) ? a : b
        }

        private static func rank(_ permission: Weft.V1.ParticipantPermission) -> Int {
            switch permission {
            case .submission: return 3
            case .confirmation: return 2
            case .observation: return 1
            case .disabled, .unspecified, .unrecognized: return 0
            }
        }

        func canonicalDump(timestamp: SequencingTimestamp) -> String {
            var lines = [
                "topology of \(domain) at \(timestamp) (\(timestamp.microsSinceEpoch)µs), \(appliedCount) transactions applied"
            ]
            for (key, serial) in inForce { lines.append("in-force \(key) serial \(serial)") }
            for attributes in participants {
                let member = MemberID(role: .participant, identifier: attributes.participant)
                lines.append(
                    "participant \(attributes.participant) permission \(attributes.permission) trust \(attributes.trustLevel) active \(isActive(member))"
                )
            }
            for mediator in mediators { lines.append("mediator \(mediator) active \(isActive(mediator))") }
            for sequencer in sequencers { lines.append("sequencer \(sequencer) active \(isActive(sequencer))") }
            if let parameters = domainParameters {
                lines.append(
                    "parameters participant_response_timeout \(parameters.participantResponseTimeout?.micros ?? 0)µs"
                        + " reconciliation_interval \(parameters.reconciliationInterval?.micros ?? 0)µs"
                        + " max_request_size \(parameters.maxRequestSizeBytes)B"
                        + " ledger_time_record_time_tolerance \(parameters.ledgerTimeRecordTimeTolerance?.micros ?? 0)µs"
                        + " mediator_deduplication_timeout \(parameters.mediatorDeduplicationTimeout?.micros ?? 0)µs"
                        + " authentication_token_lifetime \(parameters.authenticationTokenLifetime?.micros ?? 0)µs"
                        + (parameters.mediatorReactionTimeout.map { " mediator_reaction_timeout \($0.micros)µs" } ?? ""))
            }
            for member in members {
                let signing = (signingKeys[member] ?? []).map(\.fingerprint.description)
                let encryption = (encryptionKeys[member] ?? []).map(\.fingerprint.description)
                lines.append(
                    "keys \(member) signing [\(signing.joined(separator: " "))] encryption [\(encryption.joined(separator: " "))]"
                )
            }
            for party in hostingByParty.keys.sorted(by: { $0.description < $1.description }) {
                for hosting in hostingByParty[party] ?? [] {
                    lines.append("hosting \(hosting.party) on \(hosting.participant) permission \(hosting.permission)")
                }
            }
            return lines.joined(separator: "\n") + "\n"
        }

        static func == (lhs: Self, rhs: Self) -> Bool {
            lhs.domain == rhs.domain && lhs.appliedCount == rhs.appliedCount
                && lhs.inForce.elementsEqual(rhs.inForce) { $0.key == $1.key && $0.serial == $1.serial }
                && lhs.participantsByID == rhs.participantsByID && lhs.mediators == rhs.mediators
                && lhs.sequencers == rhs.sequencers
                && lhs.domainParameters == rhs.domainParameters && lhs.signingKeys == rhs.signingKeys
                && lhs.encryptionKeys == rhs.encryptionKeys && lhs.hostingByParty == rhs.hostingByParty
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(domain)
            hasher.combine(appliedCount)
            for (key, serial) in inForce {
                hasher.combine(key)
                hasher.combine(serial)
            }
        }
    }
}
