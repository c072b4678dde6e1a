import WeftCrypto
import WeftSequencer
import WeftTopology
import WeftWire

/// A domain for `weft-bench sequencer` (a copy of Tests/WeftSequencerTests/TestDomain.swift,
/// which an executable cannot import): the domain namespace key, the genesis topology (domain
/// manager, sequencers, mediator, parameters), and participants onboarded through a topology
/// broadcast, as the domain manager does.
struct BenchDomain {
    let namespaceKey: SigningPrivateKey
    let domain: UniqueIdentifier
    let sequencerKey: SigningPrivateKey
    let managerKey: SigningPrivateKey
    let mediatorKey: SigningPrivateKey
    let mediatorEncryption: EncryptionPrivateKey
    var serials: [String: UInt64] = [:]

    init() throws {
        namespaceKey = try SigningPrivateKey.generate()
        domain = try UniqueIdentifier(name: "domain1", namespace: namespaceKey.publicKey.fingerprint)
        sequencerKey = try SigningPrivateKey.generate()
        managerKey = try SigningPrivateKey.generate()
        mediatorKey = try SigningPrivateKey.generate()
        mediatorEncryption = try EncryptionPrivateKey.generate()
    }

    var sequencerMember: MemberID { MemberID(role: .sequencer, identifier: domain) }
    var managerMember: MemberID { MemberID(role: .domainManager, identifier: domain) }
    var mediatorMember: MemberID { MemberID(role: .mediator, identifier: domain) }

    /// A domain-signed transaction with the next serial for its key.
    mutating func domainSigned(_ mapping: Weft.V1.TopologyMapping.Mapping, key: String) throws -> Weft.V1.SignedTopologyTransaction {
        let serial = (serials[key] ?? 0) + 1
        serials[key] = serial
        return try SignedTopologyTransaction(signing: .init(replace: mapping, serial: serial, domain: domain), with: [namespaceKey]).wire
    }

    mutating func genesis() throws -> [Weft.V1.SignedTopologyTransaction] {
        let parameters = Weft.V1.DomainParameters(
            participantResponseTimeout: .init(micros: 30_000_000), reconciliationInterval: .init(micros: 60_000_000),
            maxRequestSizeBytes: 1 << 20, ledgerTimeRecordTimeTolerance: .init(micros: 60_000_000),
            mediatorDeduplicationTimeout: .init(micros: 600_000_000), authenticationTokenLifetime: .init(micros: 3_600_000_000))
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
    struct Participant: Sendable {
        let namespaceKey: SigningPrivateKey
        let signingKey: SigningPrivateKey
        let encryptionKey: EncryptionPrivateKey
        let id: UniqueIdentifier
        var member: MemberID { MemberID(role: .participant, identifier: id) }

        init(_ name: String) throws {
            namespaceKey = try SigningPrivateKey.generate()
            signingKey = try SigningPrivateKey.generate()
            encryptionKey = try EncryptionPrivateKey.generate()
            id = try UniqueIdentifier(name: name, namespace: namespaceKey.publicKey.fingerprint)
        }

        /// Its identity: root delegation and keys, signed by its own namespace key.
        func identity(domain: UniqueIdentifier) throws -> [Weft.V1.SignedTopologyTransaction] {
            [
                try SignedTopologyTransaction(signing: .init(replace: .rootDelegation(namespaceKey.publicKey), serial: 1, domain: domain), with: [namespaceKey]).wire,
                try SignedTopologyTransaction(
                    signing: .init(replace: .keys(of: member, signing: [signingKey.publicKey], encryption: [encryptionKey.publicKey]), serial: 1, domain: domain),
                    with: [namespaceKey]).wire,
            ]
        }
    }

    /// The identities and allow-listing of `participants`, as one broadcast batch to every member.
    mutating func onboarding(_ participants: [Participant]) throws -> Weft.V1.Batch {
        var transactions: [Weft.V1.SignedTopologyTransaction] = []
        for participant in participants {
            transactions += try participant.identity(domain: domain)
            transactions.append(try domainSigned(.participantState(participant.id, permission: .submission), key: "state-\(participant.id)"))
        }
        let content = Weft.V1.EnvelopeContent(message: .topologyBroadcast(.init(domain: domain.description, transactions: transactions)))
        return .init(envelopes: [.init(content: try content.serializedBytes(), recipients: [Sequencer.allMembers])])
    }
}
