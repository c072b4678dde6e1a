import Foundation
import WeftContracts
import WeftCrypto
import WeftMediator
import WeftTopology
import WeftWire

/// A key derived from a name, so every run has the same keys and fingerprints.
func signingKey(_ name: String) throws -> SigningPrivateKey {
    try SigningPrivateKey(rawRepresentation: SHA256.hash(Array("weft-mediator-test/signing/\(name)".utf8)))
}

func encryptionKey(_ name: String) throws -> EncryptionPrivateKey {
    try EncryptionPrivateKey(rawRepresentation: SHA256.hash(Array("weft-mediator-test/encryption/\(name)".utf8)))
}

/// A member of the test domain with its keys.
struct Node: Sendable {
    let namespaceKey: SigningPrivateKey
    let id: UniqueIdentifier
    let member: MemberID
    let signing: SigningPrivateKey
    let encryption: EncryptionPrivateKey

    init(_ name: String, role: Weft.V1.MemberRole, namespaceKey: SigningPrivateKey? = nil) throws {
        self.namespaceKey = try namespaceKey ?? signingKey("\(name)/namespace")
        id = try UniqueIdentifier(name: name, namespace: self.namespaceKey.publicKey.fingerprint)
        member = MemberID(role: role, identifier: id)
        signing = try signingKey("\(name)/signing")
        encryption = try encryptionKey(name)
    }

    var keysMapping: Weft.V1.TopologyMapping.Mapping {
        .keys(of: member, signing: [signing.publicKey], encryption: [encryption.publicKey])
    }
}

/// The test domain: a domain manager, a mediator and five participants.
///
/// | participant | permission | trust | hosts |
/// |---|---|---|---|
/// | p1 | submission | ordinary | alice |
/// | p2 | submission | ordinary | bob |
/// | p3 | confirmation | ordinary | bank |
/// | p4 | submission | ordinary | csd; bank with observation only |
/// | p5 | confirmation | VIP | bank |
///
/// Topology takes effect in three groups one second apart from `start`; requests are
/// sequenced from `requestTime` on, when all of it is in force.
struct TestDomain: Sendable {
    static let start = SequencingTimestamp(microsSinceEpoch: 1_750_000_000_000_000)
    static let delayMicros: Int64 = 250_000
    static let responseTimeoutMicros: Int64 = 30_000_000
    static let requestTime = start.adding(micros: 10_000_000)

    let manager: Node
    let mediator: Node
    let p1: Node, p2: Node, p3: Node, p4: Node, p5: Node
    let alice: UniqueIdentifier, bob: UniqueIdentifier, bank: UniqueIdentifier, csd: UniqueIdentifier
    let topology: TopologyState

    var domain: UniqueIdentifier { manager.id }
    var participants: [Node] { [p1, p2, p3, p4, p5] }

    /// A domain whose mediator is called `mediatorName`: each test has its own, so that tests
    /// sharing a database share no rows.
    init(mediatorName: String) throws {
        manager = try Node("domain1", role: .domainManager)
        mediator = try Node(mediatorName, role: .mediator, namespaceKey: manager.namespaceKey)
        p1 = try Node("participant1", role: .participant)
        p2 = try Node("participant2", role: .participant)
        p3 = try Node("participant3", role: .participant)
        p4 = try Node("participant4", role: .participant)
        p5 = try Node("participant5", role: .participant)
        alice = try UniqueIdentifier(name: "alice", namespace: p1.namespaceKey.publicKey.fingerprint)
        bob = try UniqueIdentifier(name: "bob", namespace: p2.namespaceKey.publicKey.fingerprint)
        bank = try UniqueIdentifier(name: "bank", namespace: p3.namespaceKey.publicKey.fingerprint)
        csd = try UniqueIdentifier(name: "csd", namespace: p4.namespaceKey.publicKey.fingerprint)

        let domain = manager.id
        let domainKey = manager.namespaceKey
        func replace(_ mapping: Weft.V1.TopologyMapping.Mapping, by keys: [SigningPrivateKey]) throws
            -> SignedTopologyTransaction
        {
            try SignedTopologyTransaction(signing: .init(replace: mapping, serial: 1, domain: domain), with: keys)
        }
        let parameters = Weft.V1.DomainParameters(
            participantResponseTimeout: .init(micros: Self.responseTimeoutMicros),
            reconciliationInterval: .init(micros: 60_000_000), maxRequestSizeBytes: 4 << 20,
            ledgerTimeRecordTimeTolerance: .init(micros: 60_000_000),
            mediatorDeduplicationTimeout: .init(micros: 600_000_000),
            authenticationTokenLifetime: .init(micros: 3_600_000_000))
        var groups: [[SignedTopologyTransaction]] = [
            [
                try replace(.rootDelegation(domainKey.publicKey), by: [domainKey]),
                try replace(manager.keysMapping, by: [domainKey]),
                try replace(mediator.keysMapping, by: [domainKey]),
                try replace(.mediator(mediator.member), by: [domainKey]),
                try replace(.parameters(parameters, of: domain), by: [domainKey]),
            ]
        ]
        let admissions: [(Node, Weft.V1.ParticipantPermission, Weft.V1.TrustLevel)] = [
            (p1, .submission, .ordinary), (p2, .submission, .ordinary), (p3, .confirmation, .ordinary),
            (p4, .submission, .ordinary), (p5, .confirmation, .vip),
        ]
        var identities: [SignedTopologyTransaction] = []
        for (participant, permission, trust) in admissions {
            identities.append(
                try replace(.rootDelegation(participant.namespaceKey.publicKey), by: [participant.namespaceKey]))
            identities.append(try replace(participant.keysMapping, by: [participant.namespaceKey]))
            identities.append(
                try replace(
                    .participantState(participant.id, permission: permission, trustLevel: trust), by: [domainKey]))
        }
        groups.append(identities)
        groups.append([
            try replace(.hosting(party: alice, on: p1.id, permission: .submission), by: [p1.namespaceKey]),
            try replace(.hosting(party: bob, on: p2.id, permission: .submission), by: [p2.namespaceKey]),
            try replace(.hosting(party: bank, on: p3.id, permission: .submission), by: [p3.namespaceKey]),
            try replace(.hosting(party: csd, on: p4.id, permission: .submission), by: [p4.namespaceKey]),
            try replace(
                .hosting(party: bank, on: p4.id, permission: .observation), by: [p3.namespaceKey, p4.namespaceKey]),
            try replace(
                .hosting(party: bank, on: p5.id, permission: .confirmation), by: [p3.namespaceKey, p5.namespaceKey]),
        ])
        var state = TopologyState(domain: domain, changeDelayMicros: Self.delayMicros)
        for (index, group) in groups.enumerated() {
            let time = Self.start.adding(micros: Int64(index) * 1_000_000)
            for transaction in group { try state.add(transaction, sequencedAt: time) }
        }
        topology = state
    }

    func snapshot(at time: SequencingTimestamp) -> TopologySnapshot { topology.snapshot(at: time) }

    /// The participant that confirms for `party` in these tests (its first hosting).
    func confirmer(of party: Party) -> Node {
        switch party.id {
        case alice.description: p1
        case bob.description: p2
        case bank.description: p3
        case csd.description: p4
        default: fatalError("no confirmer for \(party)")
        }
    }

    static func party(_ id: UniqueIdentifier) -> Party { try! Party(id.description) }

    // MARK: - Transactions

    /// Alice transfers an IOU the bank issued her to Bob: view 0 (Transfer; alice, bank
    /// confirm) and view 0.0 (the new IOU; bank confirms, bob is told).
    func iouTransfer(uuidByte: UInt8 = 1, policy: ConfirmationPolicy = .signatory) throws -> TransactionViews {
        let package = try examplePackage("iou.weft")
        let interpreter = Interpreter(packages: [package])
        let (bank, alice, bob) = (Self.party(bank), Self.party(alice), Self.party(bob))
        var store = ContractStore()
        let issue = try interpreter.submit(
            [
                .create(
                    try package.templateID("Iou"),
                    argument: try package.record(
                        "Iou",
                        [
                            "issuer": .party(bank), "owner": .party(alice), "currency": .text("USD"),
                            "amount": .decimal(FixedDecimal("100")!),
                        ]))
            ], actAs: [bank], seed: seed(1), contracts: store)
        store.commit(issue)
        guard case .create(let iou) = issue.nodes[0].action else { fatalError("not a create") }
        let transfer = try interpreter.submit(
            [
                .exercise(
                    try package.templateID("Iou"), contract: iou.contractID, choice: "Transfer",
                    argument: try package.arguments("Iou", "Transfer", ["newOwner": .party(bob)]))
            ], actAs: [alice], seed: seed(2), contracts: store)
        return try TransactionViews(
            transfer, seed: seed(2), metadata: metadata(actAs: [alice], submitter: p1, uuidByte: uuidByte),
            policy: policy, packages: [package])
    }

    /// Bob settles Alice's offer: the DvP of docs/contracts.md §5, with the custodian apart
    /// from the bank (seven views; alice, bob, bank and csd confirm).
    func dvp(uuidByte: UInt8 = 2) throws -> TransactionViews {
        let package = try examplePackage("dvp.weft")
        let interpreter = Interpreter(packages: [package])
        let (bank, alice, bob, csd) = (Self.party(bank), Self.party(alice), Self.party(bob), Self.party(csd))
        var store = ContractStore()
        var nextSeed: UInt8 = 10
        func create(_ template: String, _ fields: KeyValuePairs<String, Value>, actAs: [Party]) throws -> ContractID {
            let transaction = try interpreter.submit(
                [.create(try package.templateID(template), argument: try package.record(template, fields))],
                actAs: actAs, seed: seed(nextSeed), contracts: store)
            nextSeed += 1
            store.commit(transaction)
            guard case .create(let created) = transaction.nodes[0].action else { fatalError("not a create") }
            return created.contractID
        }
        let cash = try create(
            "Cash", ["bank": .party(bank), "owner": .party(alice), "amount": .decimal(FixedDecimal("1000")!)],
            actAs: [bank])
        let security = try create(
            "Security",
            ["custodian": .party(csd), "holder": .party(bob), "isin": .text("XS0000000001"), "quantity": .int(10)],
            actAs: [csd])
        let offer = try create(
            "Offer",
            [
                "buyer": .party(alice), "seller": .party(bob), "bank": .party(bank), "custodian": .party(csd),
                "isin": .text("XS0000000001"), "quantity": .int(10), "price": .decimal(FixedDecimal("1000")!),
                "payment": .contractID(cash),
            ], actAs: [alice])
        let settle = try interpreter.submit(
            [
                .exercise(
                    try package.templateID("Offer"), contract: offer, choice: "Settle",
                    argument: try package.arguments("Offer", "Settle", ["delivery": .contractID(security)]))
            ], actAs: [bob], seed: seed(20), contracts: store)
        return try TransactionViews(
            settle, seed: seed(20), metadata: metadata(actAs: [bob], submitter: p2, uuidByte: uuidByte),
            packages: [package])
    }

    private func metadata(actAs: [Party], submitter: Node, uuidByte: UInt8) -> TransactionMetadata {
        TransactionMetadata(
            submitter: SubmitterMetadata(
                actAs: actAs, submittingParticipant: submitter.id.description, commandID: "command-\(uuidByte)",
                applicationID: "tests", submissionID: "submission-\(uuidByte)",
                maxSequencingTime: Self.requestTime.microsSinceEpoch + 60_000_000),
            common: CommonMetadata(
                domain: domain.description, mediator: mediator.member.description,
                uuid: [UInt8](repeating: uuidByte, count: 16)),
            participant: ParticipantMetadata(
                ledgerTime: Self.requestTime.microsSinceEpoch, submissionTime: Self.requestTime.microsSinceEpoch))
    }

    // MARK: - Messages

    /// The confirmation request of `views` as sequenced at `time`: the informee tree and one
    /// root hash message addressed to every participant and the mediator.
    func request(_ views: TransactionViews, at time: SequencingTimestamp = requestTime, submitter: Node? = nil)
        throws -> ConfirmationRequest
    {
        let signature = try (submitter ?? p1).signing.sign(PurposeHasher.hash(.rootHash, views.rootHash.bytes))
        let rootHash = Weft.V1.RootHashMessage(
            rootHash: views.rootHash.bytes, domain: domain.description, viewType: .transaction,
            submittingParticipantSignature: signature)
        return ConfirmationRequest(
            timestamp: time,
            informeeMessage: Weft.V1.InformeeMessage(
                informeeTree: views.informeeTree(), submittingParticipantSignature: signature),
            rootHashMessages: [
                RootHashEnvelope(message: rootHash, recipients: participants.map(\.member) + [mediator.member])
            ])
    }

    /// `from`'s response on view `view` (nil: the whole request) of the request of `views` at
    /// `time`, for `parties`, signed with `key` (by default `from`'s signing key).
    func response(
        _ views: TransactionViews, view: Int?, from: Node, parties: [UniqueIdentifier],
        reject: Weft.V1.LocalReject? = nil, at time: SequencingTimestamp = requestTime,
        signedWith key: SigningPrivateKey? = nil,
        rootHash: [UInt8]? = nil, domain domainText: String? = nil
    ) throws -> Weft.V1.SignedProtocolMessage {
        let verdict = Weft.V1.LocalVerdict(outcome: reject.map { .reject($0) } ?? .approve(Weft.V1.LocalApprove()))
        let response = Weft.V1.ConfirmationResponse(
            requestID: time.wire, sender: from.id.description, viewHash: view.map { views.views[$0].hash.bytes } ?? [],
            localVerdict: verdict, rootHash: rootHash ?? views.rootHash.bytes,
            confirmingParties: parties.map(\.description),
            domain: domainText ?? domain.description)
        return try ProtocolSigning.sign(response, with: key ?? from.signing)
    }

    /// One approval per view and confirming participant, in view order: each from the
    /// participant `confirmer(of:)` names, for the confirming parties it hosts.
    func approvals(_ views: TransactionViews, at time: SequencingTimestamp = requestTime) throws
        -> [Weft.V1.SignedProtocolMessage]
    {
        var result: [Weft.V1.SignedProtocolMessage] = []
        for (index, view) in views.views.enumerated() {
            var byParticipant: [String: (Node, [UniqueIdentifier])] = [:]
            for party in view.commonData.confirmingParties {
                let node = confirmer(of: party)
                byParticipant[node.id.description, default: (node, [])].1.append(
                    try UniqueIdentifier(parsing: party.id))
            }
            for key in byParticipant.keys.sorted() {
                let (node, parties) = byParticipant[key]!
                result.append(try response(views, view: index, from: node, parties: parties, at: time))
            }
        }
        return result
    }
}

/// The repository's root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

func examplePackage(_ file: String) throws -> Package {
    let url = repositoryRoot.appendingPathComponent("examples/packages/\(file)")
    return try Package(source: String(contentsOf: url, encoding: .utf8), file: file)
}

func seed(_ byte: UInt8) -> TransactionSeed { TransactionSeed([UInt8](repeating: byte, count: 32))! }
