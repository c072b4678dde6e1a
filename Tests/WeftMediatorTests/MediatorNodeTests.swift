import Foundation
import Logging
import Testing
import WeftContracts
import WeftCrypto
@_spi(Testing) import WeftMediator
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

/// The mediator as a node on a real domain: a sequencer on PostgreSQL over TLS, participants
/// that are test members sending what a participant sends, and the mediator driver reading its
/// own stream (docs/mediator.md §8).
@Suite(.serialized, .timeLimit(.minutes(5))) struct MediatorNodeTests {
    typealias Domain = WeftTestSupport.TestDomain

    /// A sequencer node over TLS with the domain's genesis, two participants onboarded, alice
    /// hosted on participant1 and bank on participant2.
    struct RealDomain {
        var domain: Domain
        let url: String
        let sequencer: Sequencer
        let topology: SequencerTopology
        let server: RPCServer
        /// The sequencer's service, to serve it again on another server.
        let router: RPCRouter
        let serverTLS: TLSContext
        let clientTLS: TLSContext
        /// The domain's root CA, for a node process's own certificate.
        let ca: TLSCredentials
        let p1: Domain.Participant
        let p2: Domain.Participant
        let alice: UniqueIdentifier
        let bank: UniqueIdentifier
        let p1Client: SequencerClient
        let p2Client: SequencerClient
        /// The domain manager's session, for topology changes.
        let manager: SequencerClient

        static func start(
            _ url: String, responseTimeoutMicros: Int64 = 30_000_000, reactionTimeoutMicros: Int64? = nil,
            maxRequestSizeBytes: UInt32 = 1 << 20
        ) async throws -> RealDomain {
            var domain = try Domain()
            let setup = try PostgresConnection(url: url)
            try Sequencer.migrator.migrate(setup)
            try SequencerTopology.migrator.migrate(setup)
            try MediatorStore.migrator.migrate(setup)
            try TopologyStore.memberMigrator.migrate(setup)
            var quiet = Logger(label: "test")
            quiet.logLevel = .warning
            let sequencer = Sequencer(node: 0, database: PostgresDatabase(url: url), logger: quiet)
            try await sequencer.start()
            let topology = try SequencerTopology(domain: domain.domain, sequencer: sequencer, logger: quiet)
            let provider = SequencerServiceProvider(sequencer: sequencer, topology: topology, signingKey: domain.sequencerKey, logger: quiet)
            try await topology.start { member in await provider.cutOff(member) }
            _ = try await topology.initialize(
                try domain.genesis(
                    responseTimeoutMicros: responseTimeoutMicros, reactionTimeoutMicros: reactionTimeoutMicros,
                    maxRequestSizeBytes: maxRequestSizeBytes))
            var router = RPCRouter()
            provider.register(on: &router)
            let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
            let credentials = try CertificateAuthority.issue(commonName: "sequencer", hostnames: ["localhost", "127.0.0.1"], signedBy: ca)
            let serverTLS = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: credentials))
            let clientTLS = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))
            let server = try await RPCServer.start(host: "127.0.0.1", port: 0, security: .tls(serverTLS), router: router, logger: quiet)

            let manager = try await SequencerClient.authenticate(
                try await RPCClient.connect(host: "127.0.0.1", port: server.port, security: .tls(clientTLS)),
                member: domain.managerMember.description, key: domain.managerKey, domain: domain.domain.description,
                sequencerKeys: [domain.sequencerKey.publicKey])
            let p1 = try Domain.Participant("participant1")
            let p2 = try Domain.Participant("participant2")
            let alice = try UniqueIdentifier(name: "alice", namespace: p1.id.namespace)
            let bank = try UniqueIdentifier(name: "bank", namespace: p2.id.namespace)
            var onboarding = try domain.onboarding([p1, p2])
            var broadcast = try Weft.V1.EnvelopeContent(serializedBytes: onboarding.envelopes[0].content)
            guard case .topologyBroadcast(var transactions)? = broadcast.message else { throw TestFailure("no broadcast") }
            for (party, participant) in [(alice, p1), (bank, p2)] {
                transactions.transactions.append(
                    try SignedTopologyTransaction(
                        signing: .init(replace: .hosting(party: party, on: participant.id, permission: .submission), serial: 1, domain: domain.domain),
                        with: [participant.namespaceKey]
                    ).wire)
            }
            broadcast.message = .topologyBroadcast(transactions)
            onboarding.envelopes[0].content = try broadcast.serializedBytes()
            try await manager.send(onboarding, messageID: "onboarding")
            await topology.catchUp()
            func client(_ participant: Domain.Participant) async throws -> SequencerClient {
                try await SequencerClient.authenticate(
                    try await RPCClient.connect(host: "127.0.0.1", port: server.port, security: .tls(clientTLS)),
                    member: participant.member.description, key: participant.signingKey, domain: domain.domain.description,
                    sequencerKeys: [domain.sequencerKey.publicKey])
            }
            return RealDomain(
                domain: domain, url: url, sequencer: sequencer, topology: topology, server: server, router: router, serverTLS: serverTLS,
                clientTLS: clientTLS, ca: ca, p1: p1, p2: p2,
                alice: alice, bank: bank, p1Client: try await client(p1), p2Client: try await client(p2), manager: manager)
        }

        /// A mediator node's parts on the domain's database, connected over TLS; not yet running.
        func mediatorDriver(settings: MediatorDriver.Settings = .init()) async throws
            -> (driver: MediatorDriver, connection: SequencerConnection)
        {
            var logger = Logger(label: "weft.mediator.test")
            logger.logLevel = .warning
            let member = domain.mediatorMember
            let database = PostgresDatabase(url: url, maximumConnections: 2)
            let topology = MemberTopology(
                domain: domain.domain, store: TopologyStore(database: database, domain: domain.domain, member: member), logger: logger)
            try await topology.start()
            let mediator = try await Mediator.start(
                store: MediatorStore(database: database, mediator: member), domain: domain.domain, signingKey: domain.mediatorKey, logger: logger)
            let connection = SequencerConnection(
                member: member.description, domain: domain.domain.description, key: domain.mediatorKey,
                sequencerKeys: [domain.sequencerKey.publicKey], endpoints: [.init(host: "127.0.0.1", port: server.port, security: .tls(clientTLS))],
                logger: logger)
            return (
                MediatorDriver(mediator: mediator, topology: topology, connection: connection, settings: settings, logger: logger),
                connection
            )
        }

        /// Bank issues alice an IOU: one view; bank confirms, alice is told.
        func iouIssue(uuidByte: UInt8) throws -> TransactionViews {
            let source = try String(contentsOf: repositoryRoot.appendingPathComponent("examples/packages/iou.weft"), encoding: .utf8)
            let package = try Package(source: source, file: "iou.weft")
            let (bankParty, aliceParty) = (try Party(bank.description), try Party(alice.description))
            let transaction = try Interpreter(packages: [package]).submit(
                [
                    .create(
                        try package.templateID("Iou"),
                        argument: try package.record(
                            "Iou",
                            [
                                "issuer": .party(bankParty), "owner": .party(aliceParty), "currency": .text("USD"),
                                "amount": .decimal(FixedDecimal("100")!),
                            ]))
                ], actAs: [bankParty], seed: seed(uuidByte), contracts: ContractStore())
            let now = SequencingTimestamp(microsSinceEpoch: Int64(Date().timeIntervalSince1970 * 1_000_000))
            let metadata = TransactionMetadata(
                submitter: SubmitterMetadata(
                    actAs: [bankParty], submittingParticipant: p2.id.description, commandID: "command-\(uuidByte)", applicationID: "tests",
                    submissionID: "submission-\(uuidByte)", maxSequencingTime: now.microsSinceEpoch + 60_000_000),
                common: CommonMetadata(
                    domain: domain.domain.description, mediator: domain.mediatorMember.description, uuid: [UInt8](repeating: uuidByte, count: 16)),
                participant: ParticipantMetadata(ledgerTime: now.microsSinceEpoch, submissionTime: now.microsSinceEpoch))
            return try TransactionViews(transaction, seed: seed(uuidByte), metadata: metadata, packages: [package])
        }

        /// The confirmation request as participant2 (the submitter) sends it: the informee tree to
        /// the mediator, the root hash to both informee participants and the mediator.
        func request(_ views: TransactionViews) throws -> Weft.V1.Batch {
            let signature = try p2.signingKey.sign(PurposeHasher.hash(.rootHash, views.rootHash.bytes))
            let informee = Weft.V1.EnvelopeContent(
                message: .informeeMessage(.init(informeeTree: views.informeeTree(), submittingParticipantSignature: signature)))
            let rootHash = Weft.V1.EnvelopeContent(
                message: .rootHash(
                    .init(rootHash: views.rootHash.bytes, domain: domain.domain.description, viewType: .transaction, submittingParticipantSignature: signature)))
            let mediator = domain.mediatorMember.description
            return .init(envelopes: [
                .init(content: try informee.serializedBytes(), recipients: [mediator]),
                .init(content: try rootHash.serializedBytes(), recipients: [p1.member.description, p2.member.description, mediator]),
            ])
        }

        /// participant2's approval for bank of the request at `time`, or its rejection when
        /// `reject` is given.
        func approval(_ views: TransactionViews, requestAt time: Weft.V1.Timestamp, reject: Weft.V1.LocalReject? = nil) throws
            -> Weft.V1.Batch
        {
            let response = Weft.V1.ConfirmationResponse(
                requestID: time, sender: p2.id.description, viewHash: views.views[0].hash.bytes,
                localVerdict: .init(outcome: reject.map { .reject($0) } ?? .approve(.init())), rootHash: views.rootHash.bytes,
                confirmingParties: [bank.description], domain: domain.domain.description)
            let content = Weft.V1.EnvelopeContent(message: .signedMessage(try ProtocolSigning.sign(response, with: p2.signingKey)))
            return .init(envelopes: [.init(content: try content.serializedBytes(), recipients: [domain.mediatorMember.description])])
        }

        func stop() async {
            await p1Client.rpc.close()
            await p2Client.rpc.close()
            await manager.rpc.close()
            await server.close()
            await topology.stop()
            await sequencer.stop()
        }
    }

    /// What a participant sees of one request on its stream.
    struct Seen {
        var requestTime: Weft.V1.Timestamp?
        var verdicts: [Weft.V1.ConfirmationResult] = []
    }

    /// Reads `client`'s stream from 0 until `marker` arrives (or, with no marker, until the first
    /// verdict): the root hash message's time and every verdict of the mediator, checked.
    static func read(_ client: SequencerClient, domain: Domain, until marker: String?) async throws -> Seen {
        var seen = Seen()
        for try await event in try client.subscribe(from: 0) {
            guard case .deliver(let deliver)? = event.event else { continue }
            for envelope in deliver.batch?.envelopes ?? [] {
                if let marker, envelope.content == Array(marker.utf8) { return seen }
                guard let content = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content) else { continue }
                switch content.message {
                case .rootHash?: seen.requestTime = event.timestamp
                case .signedMessage(let message)? where deliver.sender == domain.mediatorMember.description:
                    seen.verdicts.append(try ProtocolSigning.verifiedResult(message, mediatorKeys: [domain.mediatorKey.publicKey]))
                    if marker == nil { return seen }
                default: break
                }
            }
        }
        return seen
    }

    /// The sequencing time of the first root hash message on `client`'s stream: the request's id.
    static func requestTime(_ client: SequencerClient) async throws -> Weft.V1.Timestamp {
        for try await event in try client.subscribe(from: 0) {
            guard case .deliver(let deliver)? = event.event, let timestamp = event.timestamp else { continue }
            for envelope in deliver.batch?.envelopes ?? [] {
                if case .rootHash? = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content).message { return timestamp }
            }
        }
        throw TestFailure("\(client.member)'s stream ended before a request arrived")
    }

    /// Runs `driver` until the task is cancelled (a crash, for the store: it stops between two
    /// awaits, wherever it is).
    static func run(_ driver: MediatorDriver) -> Task<Void, any Error> {
        Task { try await driver.run() }
    }

    /// participant1 sends `marker` to both participants, after everything the test waited for.
    static func mark(_ real: RealDomain, _ marker: String) async throws {
        try await real.p1Client.send(
            .init(envelopes: [.init(content: Array(marker.utf8), recipients: [real.p1.member.description, real.p2.member.description])]),
            messageID: marker)
    }

    @Test func aConfirmedRequestGetsOneSignedVerdictAtEveryInformeeParticipant() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url)
            let (driver, connection) = try await real.mediatorDriver()
            let running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 1)
            try await real.p2Client.send(try real.request(views), messageID: "request-1")
            let requestTime = try await Self.requestTime(real.p1Client)
            try await real.p2Client.send(try real.approval(views, requestAt: requestTime), messageID: "approval-1")

            let first = try await Self.read(real.p1Client, domain: real.domain, until: nil)
            let result = try #require(first.verdicts.first)
            guard case .approve? = result.verdict?.outcome else {
                Issue.record("not approved: \(result)")
                return
            }
            #expect(result.requestID == requestTime)
            #expect(result.rootHash == views.rootHash.bytes)
            // The mediator's own topology came from its stream: the history, then the onboarding.
            #expect(await driver.topology.isInitialized)
            // Both informee participants get it, once.
            await driver.processed(after: SequencingTimestamp(requestTime))
            try await Self.mark(real, "end")
            for client in [real.p1Client, real.p2Client] {
                let seen = try await Self.read(client, domain: real.domain, until: "end")
                #expect(seen.verdicts == [result], "\(client.member)")
            }
            running.cancel()
            _ = await running.result
            await connection.close()
            await real.stop()
        }
    }

    /// A rejection's verdict carries the rejecting participant's reasons (~10 KB at the bounds
    /// the mediator passes on): one copy for each informee participant could pass the domain's
    /// request size, which the sequencer refuses, and the inputs would stay locked until the
    /// decision time. Here one copy fits the domain's 14,000 bytes and two do not: the verdict
    /// goes as one envelope to both, and reaches participant1. Before, it was refused
    /// (`SEQUENCER_REQUEST_TOO_LARGE`) and reached nobody.
    @Test func aVerdictWhoseCopiesWouldPassTheRequestSizeGoesAsOneEnvelope() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url, maxRequestSizeBytes: 14_000)
            let (driver, connection) = try await real.mediatorDriver()
            let running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 1)
            try await real.p2Client.send(try real.request(views), messageID: "request-1")
            let requestTime = try await Self.requestTime(real.p1Client)
            let reject = Weft.V1.LocalReject(
                reasonID: "TEST_LONG_REASONS", message: String(repeating: "m", count: 1_024),
                resources: (0..<32).map { String(repeating: "r", count: 250) + "\($0)" })
            try await real.p2Client.send(try real.approval(views, requestAt: requestTime, reject: reject), messageID: "rejection-1")
            // Bounded: without the fallback the verdict never comes.
            let seen = try await withThrowingTaskGroup(of: Seen?.self) { group in
                group.addTask { try await Self.read(real.p1Client, domain: real.domain, until: nil) }
                group.addTask {
                    try await Task.sleep(for: .seconds(30))  // a bound, not synchronization
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
            let result = try #require(seen?.verdicts.first, "no verdict reached participant1 within 30 s")
            guard case .participantReject(let rejects)? = result.verdict?.outcome else {
                Issue.record("not rejected by the participant: \(result)")
                return
            }
            #expect("\(rejects)".contains("TEST_LONG_REASONS"))
            running.cancel()
            _ = await running.result
            await connection.close()
            await real.stop()
        }
    }

    /// The sequencing time of `client`'s own submission `messageID` (its receipt).
    static func receiptTime(_ client: SequencerClient, messageID: String) async throws -> Weft.V1.Timestamp {
        for try await event in try client.subscribe(from: 0) {
            if case .deliver(let deliver)? = event.event, deliver.messageID == messageID, let timestamp = event.timestamp { return timestamp }
        }
        throw TestFailure("\(client.member)'s stream ended before the receipt of \(messageID)")
    }

    @Test func aResponseRelayedByAnotherParticipantIsNotCounted() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url)
            let (driver, connection) = try await real.mediatorDriver()
            let running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 5)
            try await real.p2Client.send(try real.request(views), messageID: "request-5")
            let requestTime = try await Self.requestTime(real.p1Client)
            // participant1 sends participant2's genuine, signed approval as its own envelope.
            let approval = try real.approval(views, requestAt: requestTime)
            try await real.p1Client.send(approval, messageID: "relayed")
            await driver.processed(after: SequencingTimestamp(try await Self.receiptTime(real.p1Client, messageID: "relayed")).adding(micros: -1))
            #expect(await driver.mediator.pendingRequests.map(\.timestamp) == [SequencingTimestamp(requestTime)])
            // From participant2 itself it counts.
            try await real.p2Client.send(approval, messageID: "approval-5")
            let result = try #require(try await Self.read(real.p1Client, domain: real.domain, until: nil).verdicts.first)
            guard case .approve? = result.verdict?.outcome else {
                Issue.record("not approved: \(result)")
                return
            }
            running.cancel()
            _ = await running.result
            await connection.close()
            await real.stop()
        }
    }

    @Test func aVerdictSkipsAnInformeeParticipantDisabledSinceTheRequest() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url)
            let (driver, connection) = try await real.mediatorDriver()
            let running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 6)
            try await real.p2Client.send(try real.request(views), messageID: "request-6")
            let requestTime = try await Self.requestTime(real.p1Client)
            // participant1 (alice's, an observer) is disabled before bank's approval.
            var domain = real.domain
            let disable = try domain.domainSigned(.participantState(real.p1.id, permission: .disabled), key: "state-\(real.p1.id)")
            try await real.manager.send(try Domain.broadcast([disable], domain: domain.domain), messageID: "disable-p1")
            await real.topology.waitUntil(real.p1.member, isActive: false)
            try await real.p2Client.send(try real.approval(views, requestAt: requestTime), messageID: "approval-6")
            // participant2 still gets the verdict: one refused recipient would have stopped it for all.
            let result = try #require(try await Self.read(real.p2Client, domain: real.domain, until: nil).verdicts.first)
            guard case .approve? = result.verdict?.outcome else {
                Issue.record("not approved: \(result)")
                return
            }
            #expect(result.requestID == requestTime)
            running.cancel()
            _ = await running.result
            await connection.close()
            await real.stop()
        }
    }

    @Test func theNodeWaitsOutASequencerThatIsGoneAndResumes() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url)
            let (driver, connection) = try await real.mediatorDriver()
            let running = Self.run(driver)
            let first = try real.iouIssue(uuidByte: 8)
            try await real.p2Client.send(try real.request(first), messageID: "request-8")
            let firstTime = try await Self.requestTime(real.p1Client)
            await driver.processed(after: SequencingTimestamp(firstTime).adding(micros: -1))
            // The sequencer's server goes away (the participants' sessions with it) …
            let port = real.server.port
            await real.stop()
            await driver.streamLost()
            let sequencer = Sequencer(node: 0, database: PostgresDatabase(url: fixture.url))
            try await sequencer.start()
            let topology = try SequencerTopology(domain: real.domain.domain, sequencer: sequencer, logger: .init(label: "test"))
            let provider = SequencerServiceProvider(sequencer: sequencer, topology: topology, signingKey: real.domain.sequencerKey, logger: .init(label: "test"))
            try await topology.start { member in await provider.cutOff(member) }
            var router = RPCRouter()
            provider.register(on: &router)
            // … and, once the mediator found no sequencer, comes back on the same address.
            let server = try await RPCServer.start(host: "127.0.0.1", port: port, security: .tls(real.serverTLS), router: router)
            func client(_ participant: Domain.Participant) async throws -> SequencerClient {
                try await SequencerClient.authenticate(
                    try await RPCClient.connect(host: "127.0.0.1", port: port, security: .tls(real.clientTLS)),
                    member: participant.member.description, key: participant.signingKey, domain: real.domain.domain.description,
                    sequencerKeys: [real.domain.sequencerKey.publicKey])
            }
            let p1 = try await client(real.p1)
            let p2 = try await client(real.p2)
            try await p2.send(try real.approval(first, requestAt: firstTime), messageID: "approval-8")
            let result = try #require(try await Self.read(p1, domain: real.domain, until: nil).verdicts.first)
            guard case .approve? = result.verdict?.outcome else {
                Issue.record("not approved: \(result)")
                return
            }
            #expect(result.requestID == firstTime)
            running.cancel()
            _ = await running.result
            await connection.close()
            await p1.rpc.close()
            await p2.rpc.close()
            await server.close()
            await topology.stop()
            await sequencer.stop()
        }
    }

    @Test func aRequestWithoutResponsesTimesOutThroughATimeProof() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url, responseTimeoutMicros: 1_000_000)
            let (driver, connection) = try await real.mediatorDriver()
            let running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 2)
            try await real.p2Client.send(try real.request(views), messageID: "request-2")
            // Nobody responds and nothing else is sequenced: only a time proof can tell the
            // mediator that the deadline passed.
            let seen = try await Self.read(real.p2Client, domain: real.domain, until: nil)
            let result = try #require(seen.verdicts.first)
            guard case .mediatorReject(let reject)? = result.verdict?.outcome else {
                Issue.record("not a mediator reject: \(result)")
                return
            }
            #expect(reject.reasonID == "MEDIATOR_SAYS_TX_TIMED_OUT")
            #expect(result.requestID == seen.requestTime)
            #expect(await driver.timeProofsSent >= 1)
            running.cancel()
            _ = await running.result
            await connection.close()
            await real.stop()
        }
    }

    /// The node stopped between request and response — cleanly, or by a crash — and started again
    /// on the same database decides the request once. A clean stop stored the registration with
    /// the position past the request; after a crash, the registration (which waited for the next
    /// write, never made) and the position are both gone, and the node reads the request again.
    /// A third start after the verdict replays nothing it processed and sends nothing twice.
    @Test(arguments: [false, true]) func aStopBetweenRequestAndResponseDecidesOnce(crash: Bool) async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url)
            // No write by time or count: only the stop (or the response's) stores the registration.
            var settings = MediatorDriver.Settings()
            settings.positionStoreEventsMax = 10_000
            settings.positionStoreInterval = .seconds(3600)
            var (driver, connection) = try await real.mediatorDriver(settings: settings)
            var running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 3)
            try await real.p2Client.send(try real.request(views), messageID: "request-3")
            let requestTime = try await Self.requestTime(real.p1Client)
            await driver.processed(after: SequencingTimestamp(requestTime).adding(micros: -1))
            #expect(await driver.mediator.pendingRequests.map(\.timestamp) == [SequencingTimestamp(requestTime)])
            if crash { await driver.crashOnStop() }
            running.cancel()
            _ = await running.result
            await connection.close()
            try await real.p2Client.send(try real.approval(views, requestAt: requestTime), messageID: "approval-3")
            // A new node on the same database takes over from its stored position.
            (driver, connection) = try await real.mediatorDriver()
            #expect(await driver.mediator.pendingRequests.map(\.timestamp) == (crash ? [] : [SequencingTimestamp(requestTime)]))
            running = Self.run(driver)
            let result = try #require(try await Self.read(real.p1Client, domain: real.domain, until: nil).verdicts.first)
            guard case .approve? = result.verdict?.outcome else {
                Issue.record("not approved: \(result)")
                return
            }
            await driver.processed(after: SequencingTimestamp(requestTime))
            running.cancel()
            _ = await running.result
            await connection.close()
            (driver, connection) = try await real.mediatorDriver()
            running = Self.run(driver)
            try await Self.mark(real, "end")
            for client in [real.p1Client, real.p2Client] {
                let seen = try await Self.read(client, domain: real.domain, until: "end")
                #expect(seen.verdicts == [result], "\(client.member)")
            }
            running.cancel()
            _ = await running.result
            await connection.close()
            await real.stop()
        }
    }

    @Test func aVerdictDecidedBeforeACrashIsSentAfterTheRestartOnce() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url)
            var (driver, connection) = try await real.mediatorDriver()
            var running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 4)
            try await real.p2Client.send(try real.request(views), messageID: "request-4")
            let requestTime = try await Self.requestTime(real.p1Client)
            await driver.processed(after: SequencingTimestamp(requestTime).adding(micros: -1))
            running.cancel()
            _ = await running.result
            await connection.close()
            // The crash came after the decision was stored and before the verdict was sent: the
            // response is counted straight into the store, as the driver would have.
            let approval = try real.approval(views, requestAt: requestTime)
            try await real.p2Client.send(approval, messageID: "approval-4")
            (driver, connection) = try await real.mediatorDriver()
            let response = try Weft.V1.EnvelopeContent(serializedBytes: approval.envelopes[0].content)
            guard case .signedMessage(let signed)? = response.message else { throw TestFailure("no response") }
            let snapshot = await driver.topology.snapshot(at: SequencingTimestamp(requestTime))
            let outcome = try await driver.mediator.receive(
                response: signed, at: SequencingTimestamp(requestTime).adding(micros: 1), snapshot: snapshot)
            guard case .decided(let decided) = outcome else { throw TestFailure("not decided: \(outcome)") }
            #expect(try await driver.mediator.store.undeliveredVerdicts().count == 1)
            // The restarted node sends it from the outbox; the response in its stream finds it decided.
            running = Self.run(driver)
            let result = try #require(try await Self.read(real.p1Client, domain: real.domain, until: nil).verdicts.first)
            #expect(result == decided.result)
            await driver.processed(after: SequencingTimestamp(requestTime))
            try await Self.mark(real, "end")
            for client in [real.p1Client, real.p2Client] {
                let seen = try await Self.read(client, domain: real.domain, until: "end")
                #expect(seen.verdicts == [result], "\(client.member)")
            }
            // Marked delivered with the next write, or at the latest when the node stops.
            running.cancel()
            _ = await running.result
            await connection.close()
            #expect(try await driver.mediator.store.undeliveredVerdicts().isEmpty)
            await real.stop()
        }
    }

    /// A verdict sent before a crash whose delivered mark was lost, found by the restarted node
    /// after the request's decision time: not sent again, and recorded as of unknown outcome,
    /// since the participants may have committed the request on the copy sent before.
    @Test func aVerdictSentBeforeACrashAndFoundAfterItsDecisionTimeIsRecordedAsOfUnknownOutcome() async throws {
        try await PostgresFixture.withFixture { fixture in
            // Decision time: the request's sequencing time plus 1 s plus 1 s.
            let real = try await RealDomain.start(fixture.url, responseTimeoutMicros: 1_000_000, reactionTimeoutMicros: 1_000_000)
            var settings = MediatorDriver.Settings()
            settings.positionStoreEventsMax = 10_000
            settings.positionStoreInterval = .seconds(3600)
            var (driver, connection) = try await real.mediatorDriver(settings: settings)
            var running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 7)
            try await real.p2Client.send(try real.request(views), messageID: "request-7")
            let requestTime = try await Self.requestTime(real.p1Client)
            try await real.p2Client.send(try real.approval(views, requestAt: requestTime), messageID: "approval-7")
            let sent = try #require(try await Self.read(real.p1Client, domain: real.domain, until: nil).verdicts.first)
            guard case .approve? = sent.verdict?.outcome else {
                Issue.record("not approved: \(sent)")
                return
            }
            // The crash comes before any write stored the delivered mark.
            await driver.crashOnStop()
            running.cancel()
            _ = await running.result
            await connection.close()
            #expect(try await driver.mediator.store.undeliveredVerdicts().count == 1)
            // Restarted after the decision time (time under test, not a wait for an event).
            let decisionTime = SequencingTimestamp(requestTime).microsSinceEpoch + 2_000_000
            let left = decisionTime - Int64(Date().timeIntervalSince1970 * 1_000_000)
            if left > 0 { try await Task.sleep(for: .microseconds(left + 10_000)) }
            (driver, connection) = try await real.mediatorDriver(settings: settings)
            running = Self.run(driver)
            let row = try await Self.undeliveredRecord(fixture.url, requestTime, storingWith: driver)
            #expect(row.approved == true && row.delivered == true)
            #expect(row.reason == "MEDIATOR_SEND_OUTCOME_UNKNOWN")
            // Not sent again: participant1 still has the one verdict.
            try await Self.mark(real, "end")
            #expect(try await Self.read(real.p1Client, domain: real.domain, until: "end").verdicts == [sent])
            running.cancel()
            _ = await running.result
            await connection.close()
            await real.stop()
        }
    }

    /// A verdict whose max sequencing time passes before the sequencer sequences it reaches no
    /// participant: its record says so (a send window of 1 µs makes that certain).
    @Test func aVerdictSequencedAfterItsMaxSequencingTimeIsRecordedAsUndelivered() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url)
            var settings = MediatorDriver.Settings()
            settings.verdictSendWindowMicros = 1
            let (driver, connection) = try await real.mediatorDriver(settings: settings)
            let running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 8)
            try await real.p2Client.send(try real.request(views), messageID: "request-8")
            let requestTime = try await Self.requestTime(real.p1Client)
            try await real.p2Client.send(try real.approval(views, requestAt: requestTime), messageID: "approval-8")
            let row = try await Self.undeliveredRecord(fixture.url, requestTime, storingWith: driver)
            #expect(row.approved == true && row.delivered == true)
            #expect(row.reason == "SEQUENCER_MAX_SEQUENCING_TIME_EXCEEDED")
            try await Self.mark(real, "end")
            #expect(try await Self.read(real.p1Client, domain: real.domain, until: "end").verdicts.isEmpty)
            running.cancel()
            _ = await running.result
            await connection.close()
            await real.stop()
        }
    }

    /// The stored verdict of the request at `requestTime` once `driver`'s mediator recorded why
    /// it did not reach its participants (its progress stored every 50 ms meanwhile, for at most
    /// 20 s): approved, delivered, and the reason.
    static func undeliveredRecord(_ url: String, _ requestTime: Weft.V1.Timestamp, storingWith driver: MediatorDriver) async throws
        -> (approved: Bool?, delivered: Bool?, reason: String)
    {
        let record = "SELECT approved, delivered, undelivered_reason FROM mediator_requests WHERE request_ts = $1"
        let at = PostgresValue.int64(SequencingTimestamp(requestTime).microsSinceEpoch)
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            if let row = try PostgresConnection(url: url).execute(record, [at]).rows.first, let reason = try row[2].string {
                return (try row[0].bool, try row[1].bool, reason)
            }
            guard ContinuousClock.now < deadline else { throw TestFailure("the node recorded no reason for the verdict") }
            try await driver.mediator.storeProgress()
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// The sequencing time of the mediator's first verdict on `client`'s stream.
    static func verdictTime(_ client: SequencerClient, domain: Domain) async throws -> Weft.V1.Timestamp {
        for try await event in try client.subscribe(from: 0) {
            if case .deliver(let deliver)? = event.event, deliver.sender == domain.mediatorMember.description,
                let timestamp = event.timestamp
            {
                return timestamp
            }
        }
        throw TestFailure("\(client.member)'s stream ended before a verdict")
    }

    @Test func thePositionIsStoredWithTheNextEffectAndAcknowledgedNoFurtherAndACrashReadsAgainToNoEffect() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await RealDomain.start(fixture.url)
            // The position is stored only with effects: no lag bound reached in this test.
            var settings = MediatorDriver.Settings()
            settings.positionStoreEventsMax = 10_000
            settings.positionStoreInterval = .seconds(3600)
            settings.acknowledgementInterval = .zero
            var (driver, connection) = try await real.mediatorDriver(settings: settings)
            var running = Self.run(driver)
            let views = try real.iouIssue(uuidByte: 5)
            try await real.p2Client.send(try real.request(views), messageID: "request-5")
            let requestTime = try await Self.requestTime(real.p1Client)
            try await real.p2Client.send(try real.approval(views, requestAt: requestTime), messageID: "approval-5")
            let verdictTime = try await Self.verdictTime(real.p1Client, domain: real.domain)
            // An event without effects for the mediator (its verdict comes back with no receipt):
            // an envelope it does not read.
            let unread = try Weft.V1.EnvelopeContent(message: .encryptedView(.init())).serializedBytes()
            try await real.p1Client.send(
                .init(envelopes: [.init(content: unread, recipients: [real.domain.mediatorMember.description])]), messageID: "unread")
            let unreadTime = try await Self.receiptTime(real.p1Client, messageID: "unread")
            await driver.processed(after: SequencingTimestamp(unreadTime).adding(micros: -1))
            let database = try PostgresConnection(url: fixture.url)
            func storedPosition() throws -> (next: Int64, last: Int64)? {
                try database.execute(
                    "SELECT next_counter, last_ts FROM mediator_stream WHERE mediator = $1",
                    [.text(real.domain.mediatorMember.description)]
                ).rows.first.map { (try $0[0].int64 ?? -1, try $0[1].int64 ?? -1) }
            }
            func acknowledged() throws -> Int64? {
                try database.execute(
                    "SELECT acknowledged_ts FROM sequencer_members WHERE member = $1",
                    [.text(real.domain.mediatorMember.description)]
                ).rows.first?.first?.int64
            }
            // The response's transaction stored the position before it (past the request); the
            // unread envelope moved it in memory only.
            let lagging = try #require(try storedPosition())
            #expect(lagging.last >= requestTime.microsSinceEpoch && lagging.last < verdictTime.microsSinceEpoch, "\(lagging)")
            #expect(await driver.storedStreamPosition?.lastTimestamp.microsSinceEpoch == lagging.last)
            // Acknowledged up to the stored position, never beyond (the unread envelope's event was not).
            let acknowledgedTime = try #require(try acknowledged())
            #expect(acknowledgedTime <= lagging.last)
            // The delivered mark waits for the next write too.
            #expect(try await driver.mediator.store.undeliveredVerdicts().count == 1)

            // A crash: the restarted node reads the response and the unread envelope again, decides
            // nothing new, and re-sends the verdict, which the sequencer refuses as a duplicate.
            await driver.crashOnStop()
            running.cancel()
            _ = await running.result
            await connection.close()
            #expect(try storedPosition()?.next == lagging.next)
            (driver, connection) = try await real.mediatorDriver()
            #expect(await driver.mediator.pendingRequests.isEmpty)
            running = Self.run(driver)
            await driver.processed(after: SequencingTimestamp(unreadTime).adding(micros: -1))
            try await Self.mark(real, "end")
            for client in [real.p1Client, real.p2Client] {
                let seen = try await Self.read(client, domain: real.domain, until: "end")
                #expect(seen.verdicts.count == 1, "\(client.member)")
            }
            // A graceful stop stores what was moved past in memory.
            running.cancel()
            _ = await running.result
            await connection.close()
            let stopped = try #require(try storedPosition())
            #expect(stopped.next > lagging.next && stopped.last >= unreadTime.microsSinceEpoch, "\(stopped)")
            #expect(try acknowledged().map { $0 <= stopped.last } ?? true)
            await real.stop()
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
