import WeftCrypto
import WeftStore
import WeftTopology
import WeftTransport
import WeftWire

@testable import WeftSequencer

/// A domain for tests: the domain namespace key, the genesis topology (domain
/// manager, sequencers, mediator, parameters), and participants that can be
/// onboarded through a topology broadcast, as the domain manager will do.
struct TestDomain {
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

    mutating func genesis(tokenLifetime: Int64 = 3_600_000_000) throws -> [Weft.V1.SignedTopologyTransaction] {
        let parameters = Weft.V1.DomainParameters(
            participantResponseTimeout: .init(micros: 30_000_000), reconciliationInterval: .init(micros: 60_000_000),
            maxRequestSizeBytes: 1 << 20, ledgerTimeRecordTimeTolerance: .init(micros: 60_000_000),
            mediatorDeduplicationTimeout: .init(micros: 600_000_000), authenticationTokenLifetime: .init(micros: tokenLifetime))
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
    struct Participant {
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
            try SignedTopologyTransaction.participantIdentity(
                id, namespaceKey: namespaceKey, signingKey: signingKey.publicKey, encryptionKey: encryptionKey.publicKey, domain: domain
            ).map(\.wire)
        }
    }

    /// The batch the domain manager broadcasts to every member.
    static func broadcast(_ transactions: [Weft.V1.SignedTopologyTransaction], domain: UniqueIdentifier) throws -> Weft.V1.Batch {
        let content = Weft.V1.EnvelopeContent(message: .topologyBroadcast(.init(domain: domain.description, transactions: transactions)))
        return .init(envelopes: [.init(content: try content.serializedBytes(), recipients: [Sequencer.allMembers])])
    }
}
