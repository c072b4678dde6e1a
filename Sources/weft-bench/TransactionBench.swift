import Foundation
import Logging
import Synchronization
import WeftContracts
import WeftCrypto
import WeftMediator
import WeftParticipant
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

/// `weft-bench transactions`: committed transactions per second and submit → completion
/// latency through a whole domain in this one process (issue 7): a sequencer node on an
/// RPCServer with TLS on loopback, the mediator driven from its own stream (MediatorDriver),
/// three participant nodes (ParticipantNode), each node with its own connection pool on one
/// throw-away PostgreSQL server (or `--url`) — the set-up of the participant tests'
/// DomainHarness, built here because weft-bench cannot import test targets.
///
///   swift run -c release weft-bench transactions [--kind iou|dvp|both] [--seconds N]
///       [--warmup S] [--rate R] [--submitters K] [--offers N] [--db-connections C] [--url postgres://…] [--pg-statements]
///       [--repeat N]
///
/// Parties: alice on participant1; bob and the bank on participant2; the custodian on
/// participant3. Settle fetches the cash bob is paid with, which only the bank and alice are
/// stakeholders of: bob's command carries it as a disclosed contract, as an application of
/// theirs would hand it over (a command sees only its act-as parties' contracts).
///
/// - iou: each of K submitters owns one IOU (the bank's, issued in the set-up) and moves it
///   back and forth: alice → bob (submitted on participant1), then bob → alice (on
///   participant2), so inputs never run out. Two participants take part in every transfer.
/// - dvp: bob (participant2) settles alice's (participant1) offer: the bank's cash moves to bob,
///   the custodian's (participant3) security to alice, in one transaction confirmed by all
///   three participants. Cash, securities and offers are created in bulk before each phase.
///
/// Closed loop: K submitters back to back, counting approved completions in the window.
/// Open loop: a fixed rate (`--rate`, or half the closed loop's), latency counted from the
/// scheduled time. Latency is submit → completion: from the call that interprets the command
/// (`prepare`) to the submitting participant's completion, which it reports once it has
/// committed the mediator's verdict. Any completion other than success is counted and
/// printed: none is expected. Baseline, same run: the submitting participant's own CPU work
/// per transaction (interpret, views, encryption, signature: `prepare`) on one core, and
/// Ed25519 sign / verify per second.
///
/// `--repeat N` runs both phases N times on the same domain (the open loop at the first
/// round's rate) and prints each figure's median and range over the rounds: this machine's
/// speed drifts by ±10 % within minutes, more than many changes move a single run.
enum TransactionBenchmark {
    enum Kind: String { case iou, dvp }

    struct Options {
        var kinds: [Kind] = [.iou, .dvp]
        var seconds = 10.0
        var warmup = 2.0
        var rate: Double?
        var submitters = 32
        var databaseConnections = 4
        var url: String?
        /// Offers made for the DvP closed loop (the open loop gets what it needs on top).
        var offers = 1500
        /// Rounds of both phases on the same domain (`--repeat`).
        var rounds = 1
        /// Loads pg_stat_statements (a server restart) and prints each phase's costliest statements.
        var statements = false

        init(_ arguments: [String]) {
            func value(_ name: String) -> String? {
                guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
                return arguments[index + 1]
            }
            if let text = value("--kind") { kinds = text == "both" ? [.iou, .dvp] : text.split(separator: ",").compactMap { Kind(rawValue: String($0)) } }
            if let text = value("--seconds"), let number = Double(text) { seconds = max(1, number) }
            if let text = value("--warmup"), let number = Double(text) { warmup = max(0, number) }
            if let text = value("--rate"), let number = Double(text), number > 0 { rate = number }
            if let text = value("--submitters"), let number = Int(text) { submitters = min(max(1, number), 512) }
            if let text = value("--db-connections"), let number = Int(text) { databaseConnections = max(2, number) }
            url = value("--url")
            if let text = value("--offers"), let number = Int(text) { offers = max(0, number) }
            statements = arguments.contains("--pg-statements")
            if let text = value("--repeat"), let number = Int(text) { rounds = min(max(1, number), 20) }
        }
    }

    static func run(_ arguments: [String]) async throws {
        let options = Options(arguments)
        guard !options.kinds.isEmpty else { throw BenchError("--kind takes iou, dvp or both") }
        print("weft-bench transactions: sequencer (TLS 1.3 on 127.0.0.1), mediator and 3 participants in this process,")
        print("  each node with its own pool of \(options.databaseConnections) connections on one PostgreSQL server; \(options.submitters) submitters")
        print("  \(options.warmup) s warm-up + \(options.seconds) s per phase; load before start: \(SequencerBenchmark.loadAverage())")
        var logger = Logger(label: "weft-bench") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .error
        var fixture: PostgresFixture?
        if options.url == nil { fixture = try await PostgresFixture.startThrowAwayServer() }
        let base = options.url ?? fixture!.url
        if options.statements, let fixture {
            let connection = try PostgresConnection(url: fixture.url)
            try connection.executeScript("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            try await fixture.restart()
            try await Task.sleep(for: .seconds(1))
        }
        do {
            try await runAll(options, baseURL: base, postmaster: fixture.flatMap(SequencerBenchmark.postmasterPID), logger: logger)
            try await fixture?.stop()
        } catch {
            try? await fixture?.stop()
            throw error
        }
    }

    static func runAll(_ options: Options, baseURL: String, postmaster: Int32?, logger: Logger) async throws {
        let admin = try PostgresConnection(url: baseURL)
        var rows: [(String, Phase)] = []
        var preparePerSecond: [Kind: Double] = [:]
        for kind in options.kinds {
            let name = "tx_\(kind.rawValue)_\(UInt32.random(in: 0...UInt32.max))"
            try admin.executeScript("CREATE DATABASE \(name)")
            let url = SequencerBenchmark.url(baseURL, database: name)
            print()
            print("== \(kind == .iou ? "IOU transfers, 2 participants" : "DvP settlements, 3 participants") (database \(name)) ==")
            if options.statements { try PostgresConnection(url: url).executeScript("CREATE EXTENSION pg_stat_statements") }
            let domain = try await BenchDomain.start(url: url, connections: options.databaseConnections, logger: logger)
            let probe = Probe(url: url, postmaster: postmaster, statements: options.statements)
            let workload: any Workload
            if kind == .iou {
                workload = try IOUWorkload(domain)
                try await workload.setUp(count: options.submitters)
            } else {
                let dvp = try DvPWorkload(domain)
                try await dvp.setUp(count: options.submitters)
                print("making \(options.offers) offers to settle …")
                try await dvp.replenish(count: options.offers)
                workload = dvp
            }

            var rate = options.rate
            var rounds: [(closed: Phase, open: Phase)] = []
            for round in 1...options.rounds {
                let suffix = options.rounds > 1 ? " (round \(round) of \(options.rounds))" : ""
                if round > 1, kind == .dvp {
                    print("making \(options.offers) offers to settle …")
                    try await workload.replenish(count: options.offers)
                }
                print("closed loop: \(options.submitters) submitters back to back …\(suffix)")
                let closed = try await closedLoop(workload, options: options, probe: probe)
                printPhase(closed)
                rows.append(("\(kind.rawValue): closed loop\(suffix)", closed))

                let openRate = rate ?? max(1, (closed.committedPerSecond / 2).rounded())
                rate = openRate
                print("open loop at \(Int(openRate)) transactions/s …\(suffix)")
                let open = try await openLoop(workload, rate: openRate, options: options, probe: probe)
                printPhase(open)
                rows.append(("\(kind.rawValue): open loop at \(Int(openRate))/s\(suffix)", open))
                rounds.append((closed, open))
            }
            if rounds.count > 1 {
                printSpread(rounds.map(\.closed), label: "\(kind.rawValue): closed loop")
                printSpread(rounds.map(\.open), label: "\(kind.rawValue): open loop at \(Int(rate ?? 0))/s")
            }

            preparePerSecond[kind] = try await workload.preparesPerSecond(seconds: 2)
            await domain.stop()
        }
        let sign = signaturesPerSecond()
        print()
        print("baseline (same run, one core, the domain idle):")
        for (kind, rate) in preparePerSecond.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            print("  \(kind.rawValue): the submitter's prepare alone (interpret, views, encrypt, sign): \(Int(rate))/s")
        }
        print("  Ed25519 sign \(Int(sign.sign))/s, verify \(Int(sign.verify))/s")
        print()
        print("summary (load after: \(SequencerBenchmark.loadAverage())):")
        for (label, phase) in rows {
            print("  \(SequencerBenchmark.format(phase.committedPerSecond, 1))/s committed  p50 \(SequencerBenchmark.format(phase.latency.p50, 1)) ms  p90 \(SequencerBenchmark.format(phase.latency.p90, 1)) ms  p99 \(SequencerBenchmark.format(phase.latency.p99, 1)) ms  max \(SequencerBenchmark.format(phase.latency.max, 1)) ms  rejected \(phase.rejected)  failed \(phase.failed)  — \(label)")
        }
    }

    // MARK: - The domain

    /// A sequencer, a mediator and three participant nodes, each with its own connection pool
    /// on its own database's server, TLS between them and the sequencer.
    final class BenchDomain: Sendable {
        let sequencer: Sequencer
        let topology: SequencerTopology
        let server: RPCServer
        let mediatorTask: Task<Void, any Error>
        let mediatorConnection: SequencerConnection
        let manager: SequencerClient
        let nodes: [ParticipantNode]
        let databases: [PostgresDatabase]
        let alice: Party, bob: Party, bank: Party, custodian: Party
        /// The participants' identities and the sequencer's address: what a node that lost
        /// its database needs to start again (`weft-bench replay`).
        let members: [TestDomain.Participant]
        let domain: TestDomain
        let endpoint: SequencerConnection.Endpoint

        init(
            sequencer: Sequencer, topology: SequencerTopology, server: RPCServer, mediatorTask: Task<Void, any Error>,
            mediatorConnection: SequencerConnection, manager: SequencerClient, nodes: [ParticipantNode],
            databases: [PostgresDatabase], parties: [Party], members: [TestDomain.Participant], domain: TestDomain,
            endpoint: SequencerConnection.Endpoint
        ) {
            self.members = members
            self.domain = domain
            self.endpoint = endpoint
            self.sequencer = sequencer
            self.topology = topology
            self.server = server
            self.mediatorTask = mediatorTask
            self.mediatorConnection = mediatorConnection
            self.manager = manager
            self.nodes = nodes
            self.databases = databases
            (alice, bob, bank, custodian) = (parties[0], parties[1], parties[2], parties[3])
        }

        var p1: ParticipantNode { nodes[0] }
        var p2: ParticipantNode { nodes[1] }
        var p3: ParticipantNode { nodes[2] }

        static func start(url: String, connections: Int, logger: Logger) async throws -> BenchDomain {
            var domain = try TestDomain()
            let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
            let certificate = try CertificateAuthority.issue(
                commonName: "sequencer", hostnames: ["localhost", "127.0.0.1"], signedBy: ca)
            let serverTLS = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: certificate))
            let clientTLS = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))

            let setup = try PostgresConnection(url: url)
            try Sequencer.migrator.migrate(setup)
            try SequencerTopology.migrator.migrate(setup)
            // The counters `Probe` reads (group commits of the sequencer's writer).
            try setup.executeScript(
                """
                CREATE SEQUENCE bench_group_statements;
                CREATE FUNCTION bench_count_group() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM nextval('bench_group_statements'); RETURN NULL; END $$;
                CREATE TRIGGER bench_count_group AFTER INSERT ON sequencer_submissions FOR EACH STATEMENT EXECUTE FUNCTION bench_count_group();
                """)
            var databases: [PostgresDatabase] = []
            func pool() -> PostgresDatabase {
                let database = PostgresDatabase(url: url, maximumConnections: connections, logger: logger)
                databases.append(database)
                return database
            }
            let sequencer = Sequencer(node: 0, database: pool(), logger: logger)
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

            // Onboarding: identities, allow-listing, party hostings; broadcast by the manager.
            let members = try ["participant1", "participant2", "participant3"].map { try TestDomain.Participant($0) }
            func party(_ name: String, _ participant: TestDomain.Participant) throws -> UniqueIdentifier {
                try UniqueIdentifier(name: name, namespace: participant.namespaceKey.publicKey.fingerprint)
            }
            let hosted = [
                (try party("alice", members[0]), members[0]), (try party("bob", members[1]), members[1]),
                (try party("bank", members[1]), members[1]), (try party("custodian", members[2]), members[2]),
            ]
            var transactions: [Weft.V1.SignedTopologyTransaction] = []
            for participant in members {
                transactions += try participant.identity(domain: domain.domain)
                transactions.append(
                    try domain.domainSigned(.participantState(participant.id, permission: .submission), key: "state-\(participant.id)"))
            }
            for (id, participant) in hosted {
                transactions.append(
                    try SignedTopologyTransaction(
                        signing: .init(
                            replace: .hosting(party: id, on: participant.id, permission: .submission), serial: 1,
                            domain: domain.domain), with: [participant.namespaceKey]
                    ).wire)
            }
            let manager = try await SequencerClient.authenticate(
                try await RPCClient.connect(host: "127.0.0.1", port: server.port, security: .tls(clientTLS)),
                member: domain.managerMember.description, key: domain.managerKey, domain: domain.domain.description,
                sequencerKeys: [domain.sequencerKey.publicKey])
            try await manager.send(try TestDomain.broadcast(transactions, domain: domain.domain), messageID: "onboarding")
            for participant in members { await sequencerTopology.waitUntil(participant.member) }
            await sequencerTopology.topologySnapshotsSent()

            // The mediator node.
            let mediatorDatabase = pool()
            let topologyStore = TopologyStore(database: mediatorDatabase, domain: domain.domain, member: domain.mediatorMember)
            try await topologyStore.migrate()
            let mediatorTopology = MemberTopology(domain: domain.domain, store: topologyStore, logger: logger)
            try await mediatorTopology.start()
            let mediatorStore = MediatorStore(database: mediatorDatabase, mediator: domain.mediatorMember)
            try await mediatorStore.migrate()
            let mediator = try await Mediator.start(
                store: mediatorStore, domain: domain.domain, signingKey: domain.mediatorKey, logger: logger)
            let mediatorConnection = SequencerConnection(
                member: domain.mediatorMember.description, domain: domain.domain.description, key: domain.mediatorKey,
                sequencerKeys: [domain.sequencerKey.publicKey], endpoints: [endpoint], logger: logger)
            let driver = MediatorDriver(
                mediator: mediator, topology: mediatorTopology, connection: mediatorConnection, logger: logger)
            let mediatorTask = Task { try await driver.run() }

            // The participant nodes.
            let iou = try ViewsBenchmark.source("iou.weft")
            let dvp = try ViewsBenchmark.source("dvp.weft")
            var nodes: [ParticipantNode] = []
            for participant in members {
                let node = try await startParticipant(participant, database: pool(), domain: domain, endpoint: endpoint, logger: logger)
                await node.waitUntilReady()
                _ = try await node.upload(packageSource: iou, file: "iou.weft")
                _ = try await node.upload(packageSource: dvp, file: "dvp.weft")
                nodes.append(node)
            }
            return BenchDomain(
                sequencer: sequencer, topology: sequencerTopology, server: server, mediatorTask: mediatorTask,
                mediatorConnection: mediatorConnection, manager: manager, nodes: nodes, databases: databases,
                parties: try hosted.map { try Party($0.0.description) }, members: members, domain: domain, endpoint: endpoint)
        }

        /// Participant `participant`'s node on `database` (its tables migrated), processing its
        /// stream from where its store stopped: from counter 0 on an empty one.
        static func startParticipant(
            _ participant: TestDomain.Participant, database: PostgresDatabase, domain: TestDomain,
            endpoint: SequencerConnection.Endpoint, logger: Logger
        ) async throws -> ParticipantNode {
            let store = ParticipantStore(database: database, participant: participant.id)
            try await store.migrate()
            let topologyStore = TopologyStore(database: database, domain: domain.domain, member: participant.member)
            try await topologyStore.migrate()
            let topology = MemberTopology(domain: domain.domain, store: topologyStore, logger: logger)
            try await topology.start()
            let connection = SequencerConnection(
                member: participant.member.description, domain: domain.domain.description, key: participant.signingKey,
                sequencerKeys: [domain.sequencerKey.publicKey], endpoints: [endpoint], logger: logger)
            return try await ParticipantNode.start(
                identity: ParticipantIdentity(
                    id: participant.id, signingKey: participant.signingKey, encryptionKey: participant.encryptionKey),
                domain: domain.domain, store: store, topology: topology, connection: connection, logger: logger)
        }

        func stop() async {
            for node in nodes { await node.stop() }
            mediatorTask.cancel()
            _ = await mediatorTask.result
            await mediatorConnection.close()
            await manager.rpc.close()
            await server.close()
            await topology.stop()
            await sequencer.stop()
            for database in databases { await database.shutdown() }
        }
    }

    // MARK: - Workloads

    /// One submission's outcome.
    enum Outcome: Sendable {
        case committed
        /// A completion other than success: unexpected in this benchmark.
        case rejected(String)
        /// prepare or submit threw.
        case failed(String)
    }

    protocol Workload: Sendable {
        /// Creates what `count` concurrent submitters need to start with.
        func setUp(count: Int) async throws
        /// Makes sure `count` more transactions can run (the DvP creates offers; IOUs go round).
        func replenish(count: Int) async throws
        /// The number of independent submitters (each runs one transaction at a time).
        var submitters: Int { get }
        /// Runs submitter `index`'s next transaction; returns when it is complete at the
        /// submitter and ready for the next one. `started` is set just before `prepare`,
        /// `completed` when the submitting participant returns the completion.
        func next(_ index: Int) async -> (outcome: Outcome, started: UInt64, completed: UInt64)
        /// The submitting participant's `prepare` alone, back to back (nothing is sent).
        func preparesPerSecond(seconds: Double) async throws -> Double
    }

    /// Commands of the example packages.
    struct Commands: Sendable {
        let iou: Package
        let dvp: Package

        init() throws {
            iou = try Package(source: try ViewsBenchmark.source("iou.weft"), file: "iou.weft")
            dvp = try Package(source: try ViewsBenchmark.source("dvp.weft"), file: "dvp.weft")
        }

        func create(_ package: Package, _ template: String, _ fields: KeyValuePairs<String, Value>) throws -> Command {
            .create(try package.templateID(template), argument: try package.record(template, fields))
        }

        func exercise(_ package: Package, _ template: String, _ contract: ContractID, _ choice: String, _ arguments: KeyValuePairs<String, Value>) throws -> Command {
            .exercise(try package.templateID(template), contract: contract, choice: choice, argument: try package.arguments(template, choice, arguments))
        }
    }

    static let commandNumber = Counter()
    static func commandKey(_ prefix: String) -> CommandKey {
        CommandKey(applicationID: "weft-bench", commandID: "\(prefix)-\(commandNumber.value.add(1, ordering: .relaxed).oldValue)")
    }

    /// Submits `commands` as `actAs` on `node`, requires success, waits until every node in
    /// `alsoAt` has decided the request too; returns the contracts created.
    static func submitRequired(
        _ commands: [Command], on node: ParticipantNode, actAs: [Party], alsoAt others: [ParticipantNode]
    ) async throws -> [ContractID] {
        let prepared = try await node.prepare(commands, actAs: actAs, command: commandKey("setup"))
        let completion = try await node.submit(prepared)
        guard case .succeeded = completion else { throw BenchError("set-up transaction failed: \(completion)") }
        for other in others {
            let outcome = try await other.outcome(ofRequest: prepared.rootHash)
            guard outcome == "approved" else { throw BenchError("set-up transaction \(outcome) at another participant") }
        }
        return prepared.views.transaction.createdContracts.filter { !$0.consumed }.map(\.id)
    }

    /// Runs one submission on `node`: prepare, submit, wait for the completion.
    static func timed(
        _ node: ParticipantNode, _ commands: [Command], actAs: [Party], disclosedContracts: [ActiveContract] = []
    ) async -> (outcome: Outcome, started: UInt64, completed: UInt64, prepared: PreparedSubmission?) {
        let started = now()
        do {
            let prepared = try await node.prepare(
                commands, actAs: actAs, command: commandKey("tx"), disclosedContracts: disclosedContracts)
            let completion = try await node.submit(prepared)
            let completed = now()
            if case .succeeded = completion { return (.committed, started, completed, prepared) }
            return (.rejected("\(completion)"), started, completed, prepared)
        } catch {
            return (.failed("\(error)"), started, now(), nil)
        }
    }

    /// IOUs that go back and forth between alice (participant1) and bob (participant2).
    final class IOUWorkload: Workload {
        let domain: BenchDomain
        let commands: Commands
        /// Per submitter: its IOU and whether alice holds it.
        let assets = Mutex<[(iou: ContractID, aliceHolds: Bool)]>([])

        init(_ domain: BenchDomain) throws {
            self.domain = domain
            commands = try Commands()
        }

        var submitters: Int { assets.withLock { $0.count } }

        func setUp(count: Int) async throws {
            var ious: [ContractID] = []
            // The bank issues to alice in transactions of up to 25 creates.
            for start in stride(from: 0, to: count, by: 25) {
                let batch = try (start..<min(count, start + 25)).map { _ in
                    try commands.create(
                        commands.iou, "Iou",
                        ["issuer": .party(domain.bank), "owner": .party(domain.alice), "currency": .text("USD"), "amount": .decimal(FixedDecimal("100")!)])
                }
                ious += try await TransactionBenchmark.submitRequired(batch, on: domain.p2, actAs: [domain.bank], alsoAt: [domain.p1])
            }
            assets.withLock { $0 = ious.map { ($0, true) } }
        }

        func replenish(count: Int) async throws {}

        func next(_ index: Int) async -> (outcome: Outcome, started: UInt64, completed: UInt64) {
            let (iou, aliceHolds) = assets.withLock { $0[index] }
            let (node, other, from, to) = aliceHolds ? (domain.p1, domain.p2, domain.alice, domain.bob) : (domain.p2, domain.p1, domain.bob, domain.alice)
            let command: Command
            do {
                command = try commands.exercise(commands.iou, "Iou", iou, "Transfer", ["newOwner": .party(to)])
            } catch {
                return (.failed("\(error)"), now(), now())
            }
            let result = await TransactionBenchmark.timed(node, [command], actAs: [from])
            if case .committed = result.outcome, let prepared = result.prepared,
                let created = prepared.views.transaction.createdContracts.first(where: { !$0.consumed })
            {
                // The new owner's participant must have committed it before it can move it on.
                do {
                    let outcome = try await other.outcome(ofRequest: prepared.rootHash)
                    if outcome != "approved" { return (.rejected("at the new owner's participant: \(outcome)"), result.started, result.completed) }
                } catch {
                    return (.failed("waiting for the new owner's participant: \(error)"), result.started, result.completed)
                }
                assets.withLock { $0[index] = (created.id, !aliceHolds) }
            }
            return (result.outcome, result.started, result.completed)
        }

        func preparesPerSecond(seconds: Double) async throws -> Double {
            let (iou, aliceHolds) = assets.withLock { $0[0] }
            let (node, from, to) = aliceHolds ? (domain.p1, domain.alice, domain.bob) : (domain.p2, domain.bob, domain.alice)
            let command = try commands.exercise(commands.iou, "Iou", iou, "Transfer", ["newOwner": .party(to)])
            return try await TransactionBenchmark.countPrepares(seconds: seconds) {
                _ = try await node.prepare([command], actAs: [from], command: TransactionBenchmark.commandKey("prepare"))
            }
        }
    }

    /// Settlements of alice's offers by bob: cash of the bank (participant2) to bob, a
    /// security of the custodian (participant3) to alice. Offers are made in bulk beforehand.
    final class DvPWorkload: Workload {
        let domain: BenchDomain
        let commands: Commands
        let count = Mutex(0)
        /// Ready settlements: (offer, security bob delivers, the offer's cash disclosed to bob).
        let ready = Mutex<[(offer: ContractID, security: ContractID, cash: ActiveContract)]>([])

        init(_ domain: BenchDomain) throws {
            self.domain = domain
            commands = try Commands()
        }

        var submitters: Int { count.withLock { $0 } }

        func setUp(count: Int) async throws {
            self.count.withLock { $0 = count }
            try await replenish(count: count)
        }

        /// Creates `count` offers, each with its cash and bob's security, in transactions of up
        /// to 25 creates, 4 such transactions at a time.
        func replenish(count: Int) async throws {
            let domain = self.domain
            let commands = self.commands
            let chunks = stride(from: 0, to: count, by: 25).map { min(25, count - $0) }
            try await withThrowingTaskGroup(of: [(ContractID, ContractID, ActiveContract)].self) { group in
                var next = 0
                func add() {
                    guard next < chunks.count else { return }
                    let size = chunks[next]
                    next += 1
                    group.addTask {
                        let cash = try await TransactionBenchmark.submitRequired(
                            try (0..<size).map { _ in
                                try commands.create(commands.dvp, "Cash", ["bank": .party(domain.bank), "owner": .party(domain.alice), "amount": .decimal(FixedDecimal("1000")!)])
                            }, on: domain.p2, actAs: [domain.bank], alsoAt: [domain.p1])
                        // As the bank's application hands them to bob's.
                        let made = Set(cash)
                        let stored = try await domain.p2.activeContracts(of: domain.bank).filter { made.contains($0.id) }
                        let disclosed = Dictionary(uniqueKeysWithValues: stored.map { ($0.id, $0) })
                        let securities = try await TransactionBenchmark.submitRequired(
                            try (0..<size).map { _ in
                                try commands.create(commands.dvp, "Security", ["custodian": .party(domain.custodian), "holder": .party(domain.bob), "isin": .text("XS0000000001"), "quantity": .int(10)])
                            }, on: domain.p3, actAs: [domain.custodian], alsoAt: [domain.p2])
                        let offers = try await TransactionBenchmark.submitRequired(
                            try cash.map { payment in
                                try commands.create(
                                    commands.dvp, "Offer",
                                    [
                                        "buyer": .party(domain.alice), "seller": .party(domain.bob), "bank": .party(domain.bank),
                                        "custodian": .party(domain.custodian), "isin": .text("XS0000000001"), "quantity": .int(10),
                                        "price": .decimal(FixedDecimal("1000")!), "payment": .contractID(payment),
                                    ])
                            }, on: domain.p1, actAs: [domain.alice], alsoAt: [domain.p2])
                        return try zip(zip(offers, securities), cash).map { pair, payment in
                            guard let contract = disclosed[payment] else { throw BenchError("cash \(payment) not stored") }
                            return (pair.0, pair.1, contract)
                        }
                    }
                }
                for _ in 0..<4 { add() }
                while let made = try await group.next() {
                    let pairs = made.map { pair in (offer: pair.0, security: pair.1, cash: pair.2) }
                    ready.withLock { list in list += pairs }
                    add()
                }
            }
        }

        func next(_ index: Int) async -> (outcome: Outcome, started: UInt64, completed: UInt64) {
            guard let next = ready.withLock({ $0.popLast() }) else {
                return (.failed("no offer left to settle (make more with --offers N)"), now(), now())
            }
            let command: Command
            do {
                command = try commands.exercise(commands.dvp, "Offer", next.offer, "Settle", ["delivery": .contractID(next.security)])
            } catch {
                return (.failed("\(error)"), now(), now())
            }
            let result = await TransactionBenchmark.timed(domain.p2, [command], actAs: [domain.bob], disclosedContracts: [next.cash])
            return (result.outcome, result.started, result.completed)
        }

        func preparesPerSecond(seconds: Double) async throws -> Double {
            try await replenish(count: 1)
            guard let next = ready.withLock({ $0.last }) else { throw BenchError("no offer") }
            let command = try commands.exercise(commands.dvp, "Offer", next.offer, "Settle", ["delivery": .contractID(next.security)])
            let domain = self.domain
            return try await TransactionBenchmark.countPrepares(seconds: seconds) {
                _ = try await domain.p2.prepare(
                    [command], actAs: [domain.bob], command: TransactionBenchmark.commandKey("prepare"), disclosedContracts: [next.cash])
            }
        }
    }

    static func countPrepares(seconds: Double, _ body: () async throws -> Void) async throws -> Double {
        for _ in 0..<20 { try await body() }
        let start = now()
        let end = start + UInt64(seconds * 1e9)
        var count = 0
        while now() < end {
            try await body()
            count += 1
        }
        return Double(count) / (Double(now() - start) / 1e9)
    }

    // MARK: - Phases

    struct Phase {
        var committedPerSecond = 0.0
        var latency = Latency()
        var committed = 0
        var rejected = 0
        var failed = 0
        var firstProblem: String?
        var cpu = CPUSplit()
        var rate: Double?
        var statements: [String] = []
        /// Per committed transaction: PostgreSQL transactions that wrote, and statements (with
        /// --pg-statements), over the whole domain.
        var writeTransactions = 0.0
        var statementCalls = 0.0
        /// Per committed transaction: cursor writes of the participants' and the mediator's
        /// stores, one per write transaction of their event processors.
        var cursorWrites = (participants: 0.0, mediator: 0.0)

        /// The CPU and database counts between two snapshots of the window.
        mutating func count(_ before: Probe.Snapshot, _ after: Probe.Snapshot) {
            cpu = CPUSplit(before, after, submissions: Double(committed))
            statements = after.statements
            guard committed > 0 else { return }
            let committed = Double(self.committed)
            writeTransactions = Double(after.transactionIDs - before.transactionIDs) / committed
            statementCalls = Double(after.statementCalls) / committed
            cursorWrites = (
                Double(after.cursorWrites.participants - before.cursorWrites.participants) / committed,
                Double(after.cursorWrites.mediator - before.cursorWrites.mediator) / committed
            )
        }
    }

    struct Latency {
        var p50 = 0.0, p90 = 0.0, p99 = 0.0, max = 0.0  // ms
        var count = 0

        init() {}
        init(_ micros: [UInt32]) {
            guard !micros.isEmpty else { return }
            let sorted = micros.sorted()
            func at(_ quantile: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * quantile))]) / 1000 }
            count = sorted.count
            (p50, p90, p99, max) = (at(0.5), at(0.9), at(0.99), Double(sorted[sorted.count - 1]) / 1000)
        }
    }

    /// Counts of one phase: completions in the window, latencies of submissions started in it.
    final class Tally: Sendable {
        struct State {
            var committed = 0, rejected = 0, failed = 0
            var firstProblem: String?
            var latencies: [UInt32] = []
        }
        let window: (start: UInt64, end: UInt64)
        let state = Mutex(State())

        init(start: UInt64, end: UInt64) { window = (start, end) }

        func record(_ outcome: Outcome, started: UInt64, completed: UInt64) {
            state.withLock { state in
                let inWindow = completed >= window.start && completed < window.end
                switch outcome {
                case .committed:
                    if inWindow { state.committed += 1 }
                    if started >= window.start && started < window.end {
                        state.latencies.append(UInt32(clamping: (completed &- started) / 1000))
                    }
                case .rejected(let why):
                    state.rejected += 1
                    if state.firstProblem == nil { state.firstProblem = "rejected: " + why }
                case .failed(let why):
                    state.failed += 1
                    if state.firstProblem == nil { state.firstProblem = "failed: " + why }
                }
            }
        }

        func phase(seconds: Double) -> Phase {
            state.withLock { state in
                var phase = Phase()
                phase.committed = state.committed
                phase.committedPerSecond = Double(state.committed) / seconds
                phase.latency = Latency(state.latencies)
                (phase.rejected, phase.failed, phase.firstProblem) = (state.rejected, state.failed, state.firstProblem)
                return phase
            }
        }
    }

    /// Snapshots of the probe at `start` and at `end`.
    static func probeWindow(_ probe: Probe, start: UInt64, end: UInt64) async throws -> (Probe.Snapshot, Probe.Snapshot) {
        try await sleep(until: start)
        let before = try await probe.snapshot()
        try await sleep(until: end)
        return (before, try await probe.snapshot())
    }

    static func sleep(until time: UInt64) async throws {
        let current = now()
        if time > current { try await Task.sleep(nanoseconds: time - current) }
    }

    static func closedLoop(_ workload: any Workload, options: Options, probe: Probe) async throws -> Phase {
        let start = now() + UInt64(options.warmup * 1e9)
        let end = start + UInt64(options.seconds * 1e9)
        let tally = Tally(start: start, end: end)
        async let snapshots = probeWindow(probe, start: start, end: end)
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<workload.submitters {
                group.addTask {
                    while now() < end {
                        let result = await workload.next(index)
                        tally.record(result.outcome, started: result.started, completed: result.completed)
                        if case .failed = result.outcome { return }
                    }
                }
            }
        }
        var phase = tally.phase(seconds: options.seconds)
        let (before, after) = try await snapshots
        phase.count(before, after)
        return phase
    }

    static func openLoop(_ workload: any Workload, rate: Double, options: Options, probe: Probe) async throws -> Phase {
        let total = Int((options.warmup + options.seconds) * rate)
        try await workload.replenish(count: total + workload.submitters)
        let interval = 1e9 / rate
        let begin = now() + 20_000_000
        let start = begin + UInt64(options.warmup * 1e9)
        let end = start + UInt64(options.seconds * 1e9)
        let tally = Tally(start: start, end: end)
        let slots = Counter()
        async let snapshots = probeWindow(probe, start: start, end: end)
        // Each submitter takes the next scheduled slot, waits for its time and submits; latency
        // counts from the scheduled time, so a submission that starts late is charged for it.
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<workload.submitters {
                group.addTask {
                    while true {
                        let slot = slots.value.add(1, ordering: .relaxed).oldValue
                        guard slot < total else { return }
                        let scheduled = begin + UInt64(Double(slot) * interval)
                        let current = now()
                        if scheduled > current { try? await Task.sleep(nanoseconds: scheduled - current) }
                        let result = await workload.next(index)
                        tally.record(result.outcome, started: scheduled, completed: result.completed)
                        if case .failed = result.outcome { return }
                    }
                }
            }
        }
        var phase = tally.phase(seconds: options.seconds)
        phase.rate = rate
        let (before, after) = try await snapshots
        phase.count(before, after)
        return phase
    }

    /// Each figure's median and range over the rounds of one phase.
    static func printSpread(_ phases: [Phase], label: String) {
        func spread(_ values: [Double], _ digits: Int) -> String {
            let sorted = values.sorted()
            let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
            func format(_ value: Double) -> String { digits == 0 ? "\(Int(value.rounded()))" : SequencerBenchmark.format(value, digits) }
            return "\(format(median)) [\(format(sorted.first ?? 0))–\(format(sorted.last ?? 0))]"
        }
        print("\(label), median [range] of \(phases.count) rounds:")
        print("  committed/s \(spread(phases.map(\.committedPerSecond), 1));  p50 \(spread(phases.map(\.latency.p50), 1)) ms;  p99 \(spread(phases.map(\.latency.p99), 1)) ms")
        print("  CPU per committed transaction: weft-bench \(spread(phases.map(\.cpu.processMicrosPerSubmission), 0)) µs, PostgreSQL \(spread(phases.map(\.cpu.postgresMicrosPerSubmission), 0)) µs")
    }

    static func printPhase(_ phase: Phase) {
        let format = SequencerBenchmark.format
        print("  committed \(format(phase.committedPerSecond, 1))/s (\(phase.committed) in the window)")
        print("  submit → completion  p50 \(format(phase.latency.p50, 1)) ms  p90 \(format(phase.latency.p90, 1)) ms  p99 \(format(phase.latency.p99, 1)) ms  max \(format(phase.latency.max, 1)) ms  (\(phase.latency.count) transactions)")
        let cpu = phase.cpu
        print("  CPU (cores busy): machine \(format(cpu.machine, 2)) of 2 — weft-bench \(format(cpu.process, 2)) [\(cpu.threads.map { "\($0.key) \(format($0.value, 2))" }.sorted().joined(separator: ", "))], PostgreSQL \(format(cpu.postgres, 2)), other processes \(format(max(0, cpu.machine - cpu.stolen - cpu.process - cpu.postgres), 2)), stolen by the hypervisor \(format(cpu.stolen, 2))")
        print("  CPU per committed transaction: weft-bench \(Int(cpu.processMicrosPerSubmission)) µs, PostgreSQL \(Int(cpu.postgresMicrosPerSubmission)) µs")
        print("  per committed transaction: \(format(phase.writeTransactions, 1)) PostgreSQL write transactions\(phase.statements.isEmpty ? "" : ", \(format(phase.statementCalls, 1)) statements") (whole domain, idle polling included)")
        print("  cursor writes per committed transaction (write transactions of the event processors): participants \(format(phase.cursorWrites.participants, 2)), mediator \(format(phase.cursorWrites.mediator, 2)) (PostgreSQL's table statistics, up to 1 s late)")
        if !phase.statements.isEmpty {
            print("  PostgreSQL statements in the window (pg_stat_statements; ms = planning + execution in the server):")
            for line in phase.statements { print("    " + line) }
        }
        if phase.rejected > 0 || phase.failed > 0 {
            print("  UNEXPECTED: \(phase.rejected) rejected, \(phase.failed) failed; first: \(phase.firstProblem ?? "")")
        }
    }

    // MARK: - Baseline

    static func signaturesPerSecond() -> (sign: Double, verify: Double) {
        let key = try! SigningPrivateKey.generate()
        let hash = PurposeHasher.hash(.submissionRequest, Array(repeating: 7, count: 100))
        let signature = try! key.sign(hash)
        let signIterations = calibrate(seconds: 0.5) { blackHole(try! key.sign(hash)) }
        let sign = 1e9 / time(signIterations) { blackHole(try! key.sign(hash)) }
        let verifyIterations = calibrate(seconds: 0.5) { try! key.publicKey.verify(signature, over: hash) }
        let verify = 1e9 / time(verifyIterations) { try! key.publicKey.verify(signature, over: hash) }
        return (sign, verify)
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
