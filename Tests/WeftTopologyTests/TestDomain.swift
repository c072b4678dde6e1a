import WeftCrypto
import WeftTopology
import WeftWire

/// A key derived from a name, so that every run (and every failure) has the same keys and
/// fingerprints.
func signingKey(_ name: String) throws -> SigningPrivateKey {
    try SigningPrivateKey(rawRepresentation: SHA256.hash(Array("weft-topology-test/signing/\(name)".utf8)))
}

func encryptionKey(_ name: String) throws -> EncryptionPrivateKey {
    try EncryptionPrivateKey(rawRepresentation: SHA256.hash(Array("weft-topology-test/encryption/\(name)".utf8)))
}

/// A node of the test domain: its namespace key, its id and its member keys.
struct Node {
    let namespaceKey: SigningPrivateKey
    let id: UniqueIdentifier
    let member: MemberID
    let signing: SigningPrivateKey
    let encryption: EncryptionPrivateKey

    var namespace: Fingerprint { namespaceKey.publicKey.fingerprint }

    /// A node `name` with role `role`, in its own namespace or in `namespaceKey`'s.
    init(_ name: String, role: Weft.V1.MemberRole, namespaceKey: SigningPrivateKey? = nil) throws {
        self.namespaceKey = try namespaceKey ?? signingKey("\(name)/namespace")
        id = try UniqueIdentifier(name: name, namespace: self.namespaceKey.publicKey.fingerprint)
        member = MemberID(role: role, identifier: id)
        signing = try signingKey("\(name)/signing")
        encryption = try encryptionKey(name)
    }

    /// The mapping of this node's keys (encryption key only where the role has one).
    var keysMapping: Weft.V1.TopologyMapping.Mapping {
        let encryption = member.role == .participant || member.role == .mediator ? [self.encryption.publicKey] : []
        return .keys(of: member, signing: [signing.publicKey], encryption: encryption)
    }
}

/// The test domain: a domain manager, one sequencer, one mediator and two participants,
/// with helpers to sign transactions for it.
struct TestDomain {
    static let start = SequencingTimestamp(microsSinceEpoch: 1_750_000_000_000_000)
    static let delayMicros: Int64 = 250_000

    let manager: Node
    let sequencer: Node
    let mediator: Node
    let participant1: Node
    let participant2: Node
    var domain: UniqueIdentifier { manager.id }
    var domainKey: SigningPrivateKey { manager.namespaceKey }

    init() throws {
        manager = try Node("domain1", role: .domainManager)
        sequencer = try Node("sequencer1", role: .sequencer, namespaceKey: manager.namespaceKey)
        mediator = try Node("mediator1", role: .mediator, namespaceKey: manager.namespaceKey)
        participant1 = try Node("participant1", role: .participant)
        participant2 = try Node("participant2", role: .participant)
    }

    static let parameters = Weft.V1.DomainParameters(
        participantResponseTimeout: .init(micros: 30_000_000), reconciliationInterval: .init(micros: 60_000_000),
        maxRequestSizeBytes: 4 << 20, ledgerTimeRecordTimeTolerance: .init(micros: 60_000_000),
        mediatorDeduplicationTimeout: .init(micros: 600_000_000),
        authenticationTokenLifetime: .init(micros: 3_600_000_000))

    func newState() -> TopologyState { TopologyState(domain: domain, changeDelayMicros: Self.delayMicros) }

    /// A REPLACE of `mapping` with `serial`, signed by `keys`.
    func replace(_ mapping: Weft.V1.TopologyMapping.Mapping, serial: UInt64 = 1, by keys: [SigningPrivateKey]) throws
        -> SignedTopologyTransaction
    {
        try SignedTopologyTransaction(signing: .init(replace: mapping, serial: serial, domain: domain), with: keys)
    }

    func remove(_ mapping: Weft.V1.TopologyMapping.Mapping, serial: UInt64, by keys: [SigningPrivateKey]) throws
        -> SignedTopologyTransaction
    {
        try SignedTopologyTransaction(signing: .init(remove: mapping, serial: serial, domain: domain), with: keys)
    }

    /// The domain's own identity: root delegation, sequencer, mediator and domain manager
    /// keys, the sequencer and mediator states and the parameters, all signed by the domain key.
    func bootstrap() throws -> [SignedTopologyTransaction] {
        [
            try replace(.rootDelegation(domainKey.publicKey), by: [domainKey]),
            try replace(manager.keysMapping, by: [domainKey]),
            try replace(sequencer.keysMapping, by: [domainKey]),
            try replace(mediator.keysMapping, by: [domainKey]),
            try replace(.sequencers([sequencer.member]), by: [domainKey]),
            try replace(.mediator(mediator.member), by: [domainKey]),
            try replace(.parameters(Self.parameters, of: domain), by: [domainKey]),
        ]
    }

    /// A participant's own identity (self-signed), as it presents it when onboarding.
    func identity(of participant: Node) throws -> [SignedTopologyTransaction] {
        [
            try replace(.rootDelegation(participant.namespaceKey.publicKey), by: [participant.namespaceKey]),
            try replace(participant.keysMapping, by: [participant.namespaceKey]),
        ]
    }

    /// The domain manager's admission of `participant`.
    func admit(
        _ participant: Node, permission: Weft.V1.ParticipantPermission = .submission,
        trust: Weft.V1.TrustLevel = .ordinary,
        serial: UInt64 = 1
    ) throws -> SignedTopologyTransaction {
        try replace(
            .participantState(participant.id, permission: permission, trustLevel: trust), serial: serial,
            by: [domainKey])
    }

    /// Bootstrap, both participants onboarded and admitted, and alice hosted on participant1,
    /// each group in its own broadcast one second apart. Returns the state and the times used.
    func onboarded() throws -> (state: TopologyState, times: [SequencingTimestamp]) {
        var state = newState()
        let alice = try UniqueIdentifier(name: "alice", namespace: participant1.namespace)
        let groups: [[SignedTopologyTransaction]] = [
            try bootstrap(),
            try identity(of: participant1) + [try admit(participant1)],
            try identity(of: participant2) + [try admit(participant2, permission: .confirmation, trust: .vip)],
            [
                try replace(
                    .hosting(party: alice, on: participant1.id, permission: .submission),
                    by: [participant1.namespaceKey])
            ],
        ]
        var times: [SequencingTimestamp] = []
        for (index, group) in groups.enumerated() {
            let time = Self.start.adding(micros: Int64(index) * 1_000_000)
            times.append(time)
            for transaction in group { try state.add(transaction, sequencedAt: time) }
        }
        return (state, times)
    }

    /// The first time at which a transaction sequenced at `time` is visible.
    static func visible(_ time: SequencingTimestamp) -> SequencingTimestamp { time.adding(micros: delayMicros + 1) }
}
