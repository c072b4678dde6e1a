public import WeftCrypto
import WeftSequencer
import WeftTopology
public import WeftWire

/// A domain for tests and benchmarks: the domain namespace key, the genesis topology (domain
/// manager, sequencers, mediator, parameters), and participants that can be onboarded through
/// a topology broadcast, as the domain manager does.
public struct TestDomain: Sendable {
    public let namespaceKey: SigningPrivateKey
    public let domain: UniqueIdentifier
    public let sequencerKey: SigningPrivateKey
    public let managerKey: SigningPrivateKey
    public let mediatorKey: SigningPrivateKey
    public let mediatorEncryption: EncryptionPrivateKey
    public var serials: [String: UInt64] = [:]

    public init() throws {
        namespaceKey = try SigningPrivateKey.generate()
        domain = try UniqueIdentifier(name: "domain1", namespace: namespaceKey.publicKey.fingerprint)
        sequencerKey = try SigningPrivateKey.generate()
        managerKey = try SigningPrivateKey.generate()
        mediatorKey = try SigningPrivateKey.generate()
        mediatorEncryption = try EncryptionPrivateKey.generate()
    }

    public var sequencerMember: MemberID { MemberID(role: .sequencer, identifier: domain) }
    public var managerMember: MemberID { MemberID(role: .domainManager, identifier: domain) }
    public var mediatorMember: MemberID { MemberID(role: .mediator, identifier: domain) }

    /// A domain-signed transaction with the next serial for its key.
    public mutating func domainSigned(_ mapping: Weft.V1.TopologyMapping.Mapping, key: String) throws -> Weft.V1.SignedTopologyTransaction {
        let serial = (serials[key] ?? 0) + 1
        serials[key] = serial
        return try SignedTopologyTransaction(signing: .init(replace: mapping, serial: serial, domain: domain), with: [namespaceKey]).wire
    }

    /// The domain parameters of `genesis`: also what a test broadcasts to change one of them.
    /// `reactionTimeoutMicros`: the mediator reaction timeout, left unset (no decision time) when nil.
    public static func parameters(
        tokenLifetime: Int64 = 3_600_000_000, responseTimeoutMicros: Int64 = 30_000_000, reconciliationIntervalMicros: Int64 = 60_000_000,
        reactionTimeoutMicros: Int64? = nil, maxRequestSizeBytes: UInt32 = 1 << 20
    ) -> Weft.V1.DomainParameters {
        Weft.V1.DomainParameters(
            participantResponseTimeout: .init(micros: responseTimeoutMicros), reconciliationInterval: .init(micros: reconciliationIntervalMicros),
            maxRequestSizeBytes: maxRequestSizeBytes, ledgerTimeRecordTimeTolerance: .init(micros: 60_000_000),
            mediatorDeduplicationTimeout: .init(micros: 600_000_000), authenticationTokenLifetime: .init(micros: tokenLifetime),
            mediatorReactionTimeout: reactionTimeoutMicros.map { .init(micros: $0) })
    }

    public mutating func genesis(
        tokenLifetime: Int64 = 3_600_000_000, responseTimeoutMicros: Int64 = 30_000_000, reactionTimeoutMicros: Int64? = nil,
        maxRequestSizeBytes: UInt32 = 1 << 20
    ) throws -> [Weft.V1.SignedTopologyTransaction] {
        let parameters = Self.parameters(
            tokenLifetime: tokenLifetime, responseTimeoutMicros: responseTimeoutMicros, reactionTimeoutMicros: reactionTimeoutMicros,
            maxRequestSizeBytes: maxRequestSizeBytes)
        return [
            try domainSigned(.rootDelegation(namespaceKey.publicKey), key: "root"),
            try domainSigned(.keys(of: managerMember, signing: [managerKey.publicKey]), key: "keys-dom"),
            try domainSigned(.keys(of: sequencerMember, signing: [sequencerKey.publicKey]), key: "keys-seq"),
            try domainSigned(.sequencers([sequencerMember]), key: "sequencers"),
            try domainSigned(.keys(of: mediatorMember, signing: [mediatorKey.publicKey], encryption: [mediatorEncryption.publicKey]), key: "keys-med"),
            try domainSigned(.mediator(mediatorMember), key: "mediator"),
            try domainSigned(.parameters(parameters, of: domain), key: "parameters"),
        ]
    }

    /// A participant with its own namespace.
    public struct Participant: Sendable {
        public let namespaceKey: SigningPrivateKey
        public let signingKey: SigningPrivateKey
        public let encryptionKey: EncryptionPrivateKey
        public let id: UniqueIdentifier
        public var member: MemberID { MemberID(role: .participant, identifier: id) }

        public init(_ name: String) throws {
            namespaceKey = try SigningPrivateKey.generate()
            signingKey = try SigningPrivateKey.generate()
            encryptionKey = try EncryptionPrivateKey.generate()
            id = try UniqueIdentifier(name: name, namespace: namespaceKey.publicKey.fingerprint)
        }

        /// Its identity: root delegation and keys, signed by its own namespace key.
        public func identity(domain: UniqueIdentifier) throws -> [Weft.V1.SignedTopologyTransaction] {
            try SignedTopologyTransaction.participantIdentity(
                id, namespaceKey: namespaceKey, signingKey: signingKey.publicKey, encryptionKey: encryptionKey.publicKey, domain: domain
            ).map(\.wire)
        }
    }

    /// The batch the domain manager broadcasts to every member.
    public static func broadcast(_ transactions: [Weft.V1.SignedTopologyTransaction], domain: UniqueIdentifier) throws -> Weft.V1.Batch {
        let content = Weft.V1.EnvelopeContent(message: .topologyBroadcast(.init(domain: domain.description, transactions: transactions)))
        return .init(envelopes: [.init(content: try content.serializedBytes(), recipients: [Sequencer.allMembers])])
    }

    /// The identities and allow-listing of `participants`, as one broadcast batch to every member.
    public mutating func onboarding(_ participants: [Participant]) throws -> Weft.V1.Batch {
        var transactions: [Weft.V1.SignedTopologyTransaction] = []
        for participant in participants {
            transactions += try participant.identity(domain: domain)
            transactions.append(try domainSigned(.participantState(participant.id, permission: .submission), key: "state-\(participant.id)"))
        }
        return try Self.broadcast(transactions, domain: domain)
    }
}
