import Foundation
import Logging
import Testing
import WeftContracts
import WeftCrypto
import WeftMediator
@_spi(Testing) import WeftParticipant
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

/// The repository's root, found from this file's path.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

func exampleSource(_ file: String) throws -> String {
    try String(contentsOf: repositoryRoot.appendingPathComponent("examples/packages/\(file)"), encoding: .utf8)
}

/// Polls `condition` every 100 ms until it holds, failing the test after 60 s: how the
/// commitment and repair tests await what arrives on its own (a period's end, a commitment).
func eventually(_ what: String, _ condition: @Sendable () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(60)
    while !(try await condition()) {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting until \(what)")
            throw CancellationError()
        }
        try await Task.sleep(for: .milliseconds(100))
    }
}

func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["WEFT_TEST_LOG"] == nil ? .critical : .debug
    return logger
}

/// Every test that stands up a domain (a PostgreSQL server, a sequencer, a mediator and three
/// participants) runs in one of these three suites, one at a time in each: all side by side they
/// load a two-core machine enough to push other suites' tests past their time limits. One chain
/// of them alone was the test run's last ~120 s (88–115 s on an idle machine, waiting more than
/// computing: ~0.5 of a core), so they are split in three of about the same length.
@Suite(.serialized) struct OnARealDomain {}
@Suite(.serialized) struct OnASecondRealDomain {}
@Suite(.serialized) struct OnAThirdRealDomain {}

/// The domain's mediator node: the mediator core driven from its own sequencer stream by
/// WeftMediator's `MediatorDriver`, as `weft run` runs it; stopped and started again on the
/// same database like a process.
actor MediatorProcess {
    let url: String
    let domain: TestDomain
    let endpoint: SequencerConnection.Endpoint
    private var running: (driver: MediatorDriver, connection: SequencerConnection, task: Task<Void, any Error>)?

    init(url: String, domain: TestDomain, endpoint: SequencerConnection.Endpoint) {
        self.url = url
        self.domain = domain
        self.endpoint = endpoint
    }

    func start(settings: MediatorDriver.Settings = MediatorDriver.Settings()) async throws {
        let logger = quietLogger("weft.test.mediator")
        let member = domain.mediatorMember
        let database = PostgresDatabase(url: url, maximumConnections: 2)
        let topologyStore = TopologyStore(database: database, domain: domain.domain, member: member)
        try await topologyStore.migrate()
        let topology = MemberTopology(domain: domain.domain, store: topologyStore, logger: logger)
        try await topology.start()
        let store = MediatorStore(database: database, mediator: member)
        try await store.migrate()
        let mediator = try await Mediator.start(
            store: store, domain: domain.domain, signingKey: domain.mediatorKey, logger: logger)
        let connection = SequencerConnection(
            member: member.description, domain: domain.domain.description, key: domain.mediatorKey,
            sequencerKeys: [domain.sequencerKey.publicKey], endpoints: [endpoint], logger: logger)
        let driver = MediatorDriver(
            mediator: mediator, topology: topology, connection: connection, settings: settings, logger: logger)
        running = (driver, connection, Task { try await driver.run() })
    }

    /// Stops the node as a process stop would: nothing more is read or sent.
    func stop() async {
        guard let running else { return }
        running.task.cancel()
        _ = await running.task.result
        await running.connection.close()
        self.running = nil
    }
}

/// A real domain for the participant tests, on one PostgreSQL server: a sequencer node over
/// TLS on loopback, the mediator driven from its stream, and three participants —
/// participant1 hosting alice, participant2 hosting bob and the bank (all with submission
/// permission), carol hosted on participant2 (submission) and participant1 (observation), and
/// participant3 hosting nobody, without packages. Options: more participants (participant4, …,
/// hosting nobody, without packages) and more parties (`extraParties`, with submission
/// permission); `setParticipantResponseTimeout` changes the domain parameter while it runs.
final class DomainHarness: Sendable {
    let url: String
    let domain: TestDomain
    let sequencer: Sequencer
    let sequencerTopology: SequencerTopology
    let server: RPCServer
    let endpoint: SequencerConnection.Endpoint
    let mediator: MediatorProcess
    let members: [TestDomain.Participant]
    /// The domain manager's session, for topology changes.
    let manager: SequencerClient
    /// The topology every node starts from: genesis and onboarding, in force from the start.
    let nodes: [ParticipantNode]
    let iouSource: String

    let alice: Party, bob: Party, bank: Party, carol: Party
    /// The `extraParties` asked for at start, by name.
    let extraParties: [String: Party]

    private init(
        url: String, domain: TestDomain, sequencer: Sequencer, sequencerTopology: SequencerTopology, server: RPCServer,
        endpoint: SequencerConnection.Endpoint, mediator: MediatorProcess, members: [TestDomain.Participant],
        manager: SequencerClient,
        nodes: [ParticipantNode], iouSource: String, parties: [Party], extraParties: [String: Party]
    ) {
        self.url = url
        self.domain = domain
        self.sequencer = sequencer
        self.sequencerTopology = sequencerTopology
        self.server = server
        self.endpoint = endpoint
        self.mediator = mediator
        self.members = members
        self.manager = manager
        self.nodes = nodes
        self.iouSource = iouSource
        (alice, bob, bank, carol) = (parties[0], parties[1], parties[2], parties[3])
        self.extraParties = extraParties
    }

    var p1: ParticipantNode { nodes[0] }
    var p2: ParticipantNode { nodes[1] }
    var p3: ParticipantNode { nodes[2] }

    /// - Parameters:
    ///   - participantCount: 3 or more; the fourth and later host nobody and have no packages.
    ///   - extraParties: parties to allocate besides alice, bob, the bank and carol — name and
    ///     the index of the participant hosting it with submission permission.
    static func start(
        url: String, participantCount: Int = 3, extraParties: [(name: String, participant: Int)] = []
    ) async throws -> DomainHarness {
        precondition(participantCount >= 3)
        var domain = try TestDomain()
        let logger = quietLogger("weft.test.domain")
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let certificate = try CertificateAuthority.issue(
            commonName: "sequencer", hostnames: ["localhost", "127.0.0.1"], signedBy: ca)
        let serverTLS = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: certificate))
        let clientTLS = try TLSContext(
            .init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))

        let setup = try PostgresConnection(url: url)
        try Sequencer.migrator.migrate(setup)
        try SequencerTopology.migrator.migrate(setup)
        let sequencer = Sequencer(node: 0, database: PostgresDatabase(url: url), logger: logger)
        try await sequencer.start()
        let sequencerTopology = try SequencerTopology(domain: domain.domain, sequencer: sequencer, logger: logger)
        let provider = SequencerServiceProvider(
            sequencer: sequencer, topology: sequencerTopology, signingKey: domain.sequencerKey, logger: logger)
        try await sequencerTopology.start { member in await provider.cutOff(member) }
        let genesis = try domain.genesis()
        _ = try await sequencerTopology.initialize(genesis)
        var router = RPCRouter()
        provider.register(on: &router)
        let server = try await RPCServer.start(
            host: "127.0.0.1", port: 0, security: .tls(serverTLS), router: router, logger: logger)
        let endpoint = SequencerConnection.Endpoint(host: "127.0.0.1", port: server.port, security: .tls(clientTLS))

        // Onboarding: identities, allow-listing and party hostings, broadcast by the manager.
        let members = try (1...participantCount).map { try TestDomain.Participant("participant\($0)") }
        let onboarded = try onboarding(&domain, members)
        var transactions = onboarded.0
        let parties = onboarded.1
        var extra: [String: Party] = [:]
        for (name, index) in extraParties {
            let participant = members[index]
            let party = try UniqueIdentifier(name: name, namespace: participant.namespaceKey.publicKey.fingerprint)
            transactions.append(
                try hosting(
                    party, on: participant, .submission, serial: 1, signers: [participant.namespaceKey],
                    domain: domain.domain))
            extra[name] = try Party(party.description)
        }
        let manager = try await SequencerClient.authenticate(
            try await RPCClient.connect(host: "127.0.0.1", port: server.port, security: .tls(clientTLS)),
            member: domain.managerMember.description, key: domain.managerKey, domain: domain.domain.description,
            sequencerKeys: [domain.sequencerKey.publicKey])
        try await manager.send(try TestDomain.broadcast(transactions, domain: domain.domain), messageID: "onboarding")
        for participant in members { await sequencerTopology.waitUntil(participant.member) }

        // Every node accepts the onboarding (each node learns it from its own stream: the
        // sequencers send each member the topology history as its first event).
        _ = try initialState(domain, genesis: genesis, onboarding: transactions)

        // Every member registered so far, the mediator included, has its topology history in
        // its stream: whatever it is sent later, it reads after the history.
        await sequencerTopology.topologySnapshotsSent()
        let mediator = MediatorProcess(url: url, domain: domain, endpoint: endpoint)
        try await mediator.start()

        let iouSource = try exampleSource("iou.weft")
        var nodes: [ParticipantNode] = []
        for (index, participant) in members.enumerated() {
            let store = ParticipantStore(database: PostgresDatabase(url: url), participant: participant.id)
            try await store.migrate()
            let node = try await startNode(participant, store: store, url: url, endpoint: endpoint, domain: domain)
            if index < 2 { try await node.upload(packageSource: iouSource, file: "iou.weft") }
            nodes.append(node)
        }
        return DomainHarness(
            url: url, domain: domain, sequencer: sequencer, sequencerTopology: sequencerTopology, server: server,
            endpoint: endpoint, mediator: mediator, members: members, manager: manager, nodes: nodes,
            iouSource: iouSource,
            parties: parties, extraParties: extra)
    }

    /// The identities, allow-listing and party hostings of `members` (participant1,
    /// participant2, any others hosting nobody), and the parties alice, bob, bank and carol.
    static func onboarding(_ domain: inout TestDomain, _ members: [TestDomain.Participant]) throws
        -> ([Weft.V1.SignedTopologyTransaction], [Party])
    {
        let (p1, p2) = (members[0], members[1])
        func party(_ name: String, of participant: TestDomain.Participant) throws -> UniqueIdentifier {
            try UniqueIdentifier(name: name, namespace: participant.namespaceKey.publicKey.fingerprint)
        }
        let alice = try party("alice", of: p1)
        let bob = try party("bob", of: p2)
        let bank = try party("bank", of: p2)
        let carol = try party("carol", of: p2)
        let domainID = domain.domain
        func hosting(
            _ party: UniqueIdentifier, on participant: TestDomain.Participant,
            _ permission: Weft.V1.ParticipantPermission, signers: [SigningPrivateKey]
        ) throws -> Weft.V1.SignedTopologyTransaction {
            try Self.hosting(party, on: participant, permission, serial: 1, signers: signers, domain: domainID)
        }
        var transactions: [Weft.V1.SignedTopologyTransaction] = []
        for participant in members {
            transactions += try participant.identity(domain: domain.domain)
            transactions.append(
                try domain.domainSigned(
                    .participantState(participant.id, permission: .submission), key: "state-\(participant.id)"))
        }
        transactions += [
            try hosting(alice, on: p1, .submission, signers: [p1.namespaceKey]),
            try hosting(bob, on: p2, .submission, signers: [p2.namespaceKey]),
            try hosting(bank, on: p2, .submission, signers: [p2.namespaceKey]),
            try hosting(carol, on: p2, .submission, signers: [p2.namespaceKey]),
            try hosting(carol, on: p1, .observation, signers: [p2.namespaceKey, p1.namespaceKey]),
        ]
        return (transactions, try [alice, bob, bank, carol].map { try Party($0.description) })
    }

    /// `party` hosted on `participant` with `permission`, signed by `signers`.
    static func hosting(
        _ party: UniqueIdentifier, on participant: TestDomain.Participant, _ permission: Weft.V1.ParticipantPermission,
        serial: UInt64, signers: [SigningPrivateKey], domain: UniqueIdentifier
    ) throws -> Weft.V1.SignedTopologyTransaction {
        try SignedTopologyTransaction(
            signing: .init(
                replace: .hosting(party: party, on: participant.id, permission: permission), serial: serial,
                domain: domain), with: signers
        ).wire
    }

    /// Broadcasts `transactions` as the domain manager; returns once they are sequenced, so
    /// that every request sequenced later is validated with them.
    func broadcast(_ transactions: [Weft.V1.SignedTopologyTransaction], messageID: String) async throws {
        try await manager.send(try TestDomain.broadcast(transactions, domain: domain.domain), messageID: messageID)
    }

    /// Changes the domain's `participant_response_timeout` (30 s at genesis) for the requests
    /// sequenced from now on, as the domain manager would: a test keeps it short only around the
    /// request it wants timed out, so that no other request depends on how fast the machine is.
    /// `serial` is the parameters' next serial (genesis used 1).
    func setParticipantResponseTimeout(micros: Int64, serial: UInt64) async throws {
        try await setDomainParameters(TestDomain.parameters(responseTimeoutMicros: micros), serial: serial)
    }

    /// Replaces the domain parameters with `parameters` from the next broadcast on, as the
    /// domain manager would; `serial` is the parameters' next serial (genesis used 1).
    func setDomainParameters(_ parameters: Weft.V1.DomainParameters, serial: UInt64) async throws {
        let change = try SignedTopologyTransaction(
            signing: .init(
                replace: .parameters(parameters, of: domain.domain),
                serial: serial, domain: domain.domain), with: [domain.namespaceKey]
        ).wire
        try await broadcast([change], messageID: "domain-parameters-\(serial)")
    }

    /// What every node knows when it starts: genesis and onboarding, in force from the start.
    static func initialState(
        _ domain: TestDomain, genesis: [Weft.V1.SignedTopologyTransaction],
        onboarding: [Weft.V1.SignedTopologyTransaction]
    ) throws -> TopologyState {
        var state = TopologyState(domain: domain.domain, changeDelayMicros: 0)
        let start = SequencingTimestamp(microsSinceEpoch: 1)
        for wire in genesis { try state.add(try SignedTopologyTransaction(wire), sequencedAt: start) }
        let outcome = state.add(
            Weft.V1.TopologyTransactionsBroadcast(domain: domain.domain.description, transactions: onboarding),
            sequencedAt: start)
        try #require(outcome.refused.isEmpty, "onboarding refused: \(outcome.refused.map { "\($0.1)" })")
        return state
    }

    /// `member`'s own topology, kept in its table of the database at `url`.
    static func memberTopology(_ member: MemberID, url: String, domain: TestDomain) async throws -> MemberTopology {
        let store = TopologyStore(database: PostgresDatabase(url: url), domain: domain.domain, member: member)
        try await store.migrate()
        let topology = MemberTopology(domain: domain.domain, store: store, logger: quietLogger("weft.test.topology"))
        try await topology.start()
        return topology
    }

    /// A participant node on `store`, ready (unless `ready` is false): its topology has the
    /// domain's history.
    static func startNode(
        _ participant: TestDomain.Participant, store: ParticipantStore, url: String,
        endpoint: SequencerConnection.Endpoint, domain: TestDomain,
        configuration: ParticipantConfiguration = ParticipantConfiguration(), ready: Bool = true,
        processing: Bool = true
    ) async throws -> ParticipantNode {
        let logger = quietLogger("weft.test.\(participant.id.name)")
        let connection = SequencerConnection(
            member: participant.member.description, domain: domain.domain.description, key: participant.signingKey,
            sequencerKeys: [domain.sequencerKey.publicKey], endpoints: [endpoint], logger: logger)
        let node = try await ParticipantNode.start(
            identity: ParticipantIdentity(
                id: participant.id, signingKey: participant.signingKey, encryptionKey: participant.encryptionKey),
            domain: domain.domain, store: store,
            topology: try await memberTopology(participant.member, url: url, domain: domain), connection: connection,
            configuration: configuration, logger: logger, processing: processing)
        if ready { await node.waitUntilReady() }
        return node
    }

    /// A participant node again on `index`'s store, as after a restart.
    func restart(_ index: Int, configuration: ParticipantConfiguration = ParticipantConfiguration()) async throws
        -> ParticipantNode
    {
        let store = ParticipantStore(database: PostgresDatabase(url: url), participant: members[index].id)
        return try await Self.startNode(
            members[index], store: store, url: url, endpoint: endpoint, domain: domain, configuration: configuration)
    }

    func stop() async {
        for node in nodes { await node.stop() }
        await mediator.stop()
        await manager.rpc.close()
        await server.close()
        await sequencerTopology.stop()
        await sequencer.stop()
    }

    // MARK: - Commands

    var package: Package { get throws { try Package(source: iouSource, file: "iou.weft") } }

    func issue(_ amount: String, to owner: Party, by issuer: Party? = nil, currency: String = "USD") throws -> Command {
        let package = try self.package
        return .create(
            try package.templateID("Iou"),
            argument: try package.record(
                "Iou",
                [
                    "issuer": .party(issuer ?? bank), "owner": .party(owner), "currency": .text(currency),
                    "amount": .decimal(FixedDecimal(amount)!),
                ]))
    }

    func transfer(_ iou: ContractID, to newOwner: Party) throws -> Command {
        let package = try self.package
        return .exercise(
            try package.templateID("Iou"), contract: iou, choice: "Transfer",
            argument: try package.arguments("Iou", "Transfer", ["newOwner": .party(newOwner)]))
    }

    /// Issues an IOU from the bank (on participant2) to `owner` and returns its id once both
    /// participants have committed it: participant2 and, for alice, `ownerNode` — participant1
    /// unless the test restarted it (then the running node: the stopped one never sees the
    /// commit, and participant2 may complete before the restarted node has committed).
    func issued(_ amount: String, to owner: Party, command: String, ownerNode: ParticipantNode? = nil) async throws
        -> ContractID
    {
        let completion = try await p2.submit(
            [try issue(amount, to: owner)], actAs: [bank],
            command: CommandKey(applicationID: "bank-app", commandID: command))
        guard case .succeeded(let transactionID, let offset) = completion else {
            Issue.record("issuing failed: \(completion)")
            throw CancellationError()
        }
        let created = try await p2.transactions(of: bank, after: offset - 1).first?.events.first
        guard case .created(let id, _)? = created else { throw CancellationError() }
        if let node = ownerNode ?? (owner == alice ? p1 : nil) {
            _ = try await node.outcome(ofRequest: Digest32(hex: transactionID)!)
        }
        return id
    }

    /// Creates `template` of `package` from `node` as `party` and returns the contract's id
    /// once `others` have committed it too.
    func created(
        in package: Package, _ template: String, _ fields: KeyValuePairs<String, Value>, by party: Party,
        on node: ParticipantNode, seenBy others: [ParticipantNode]
    ) async throws -> ContractID {
        let completion = try await node.submit(
            [.create(try package.templateID(template), argument: try package.record(template, fields))],
            actAs: [party], command: CommandKey(applicationID: "\(package.name)-app", commandID: "create-\(template)"))
        guard case .succeeded(let transactionID, let offset) = completion else {
            Issue.record("creating the \(template) failed: \(completion)")
            throw CancellationError()
        }
        for other in others {
            #expect(try await other.outcome(ofRequest: Digest32(hex: transactionID)!) == "approved")
        }
        guard
            case .created(let id, _)? = try await node.transactions(of: party, after: offset - 1).first?
                .events.first
        else { throw CancellationError() }
        return id
    }
}
