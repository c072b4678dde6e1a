import Foundation
import Logging
import Synchronization
import WeftCrypto
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

/// `weft-bench sequencer`: submissions sequenced and delivered per second, and send → deliver
/// latency, through real sequencer nodes (Sequencer + SequencerTopology + SequencerService on
/// an RPCServer with TLS on loopback) on a throw-away PostgreSQL, with 1 and with 2 nodes,
/// 4 participants, 1 KiB payloads to 2 recipients, every submission on an authenticated
/// session. The baseline, measured in the same run on the same server: raw batched INSERTs of
/// rows of the same size, through `PostgresConnection` on one connection, in transactions of the
/// size the writer's group commits had.
///
///   swift run -c release weft-bench sequencer [--seconds N] [--rate R] [--warmup S]
///       [--in-flight K] [--nodes 1,2] [--no-verify] [--db-connections C] [--phases closed,open]
///       [--pg-statements] [--node-processes] [--node-cpu C]
///
/// `--rate R` fixes the open-loop rate (submissions/s over all members); otherwise it is half of
/// the closed-loop maximum of the same node count. The members check every event's sequencer
/// signature or block proof (`SequencerClient.subscribe`) as a member must; `--no-verify` makes
/// them decode events and check counters only, to see what the checks cost the load generator,
/// which shares the 2 cores with the sequencer and PostgreSQL. `--pg-statements` loads pg_stat_statements (a server
/// restart) and prints each phase's costliest statements. Each phase prints where the CPU went:
/// this process by thread kind, the PostgreSQL server's processes, everything else.
///
/// `--node-processes` runs each sequencer node in a process of its own (`SequencerNodeProcess`),
/// and `--node-cpu C` also holds each of them to C cores (a cgroup quota; root only): what a
/// second node adds when it has CPU of its own, as on a machine of its own. The members and
/// PostgreSQL stay outside the budgets.
enum SequencerBenchmark {
    struct Options {
        var seconds = 10.0
        var warmup = 2.0
        var rate: Double?
        var inFlight = 64
        var nodes = [1, 2]
        var verify = true
        var databaseConnections = 8
        var phases: Set<String> = ["closed", "open"]
        /// Loads pg_stat_statements (a server restart) and prints each phase's costliest statements.
        var statements = false
        /// Each sequencer node in a process of its own (`--node-processes`), held to this many
        /// cores if set (`--node-cpu`).
        var nodeProcesses = false
        var nodeCPU: Double?

        init(_ arguments: [String]) {
            func value(_ name: String) -> String? {
                guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
                return arguments[index + 1]
            }
            if let text = value("--seconds"), let number = Double(text) { seconds = max(1, number) }
            if let text = value("--warmup"), let number = Double(text) { warmup = max(0, number) }
            if let text = value("--rate"), let number = Double(text), number > 0 { rate = number }
            if let text = value("--in-flight"), let number = Int(text) { inFlight = min(max(1, number), 96) }
            if let text = value("--nodes") { nodes = text.split(separator: ",").compactMap { Int($0) }.filter { (1...2).contains($0) } }
            if let text = value("--db-connections"), let number = Int(text) { databaseConnections = max(2, number) }
            if let text = value("--phases") { phases = Set(text.split(separator: ",").map(String.init)) }
            verify = !arguments.contains("--no-verify")
            statements = arguments.contains("--pg-statements")
            if let text = value("--node-cpu"), let number = Double(text), number > 0 { nodeCPU = number }
            nodeProcesses = arguments.contains("--node-processes") || nodeCPU != nil
        }
    }

    static let payloadBytes = 1024
    static let memberCount = 4
    /// The first 8 bytes of every benchmark payload; the next 8 are the send time (ns, monotonic).
    static let magic: UInt64 = 0x6863_6E62_7466_6577  // "weftbnch"

    static func run(_ arguments: [String]) async throws {
        let options = Options(arguments)
        print("weft-bench sequencer: \(memberCount) participants, \(payloadBytes)-byte payloads to 2 recipients, TLS 1.3 on 127.0.0.1")
        print("  closed loop: \(options.inFlight) sends in flight per member; open loop: fixed rate; \(options.warmup) s warm-up + \(options.seconds) s per phase")
        if options.nodeProcesses {
            print("  each sequencer node in a process of its own\(options.nodeCPU.map { ", held to \(format($0, 2)) cores (cgroup quota); members and PostgreSQL outside the budgets" } ?? "")")
        }
        print("  members \(options.verify ? "verify every event (block proof, one signature check per block)" : "decode events and check counters (no signature check: --no-verify)")")
        print("  load before start: \(loadAverage())")
        var logger = Logger(label: "weft-bench") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning

        let fixture = try await PostgresFixture.startThrowAwayServer()
        do {
            let results = try await runAll(options, fixture: fixture, logger: logger)
            try await fixture.stop()
            report(results, options: options)
        } catch {
            try? await fixture.stop()
            throw error
        }
    }

    // MARK: - Results

    struct PhaseResult {
        var sequencedPerSecond = 0.0
        /// Envelopes received by recipients per second (2 per submission).
        var deliveredPerSecond = 0.0
        /// Submissions sequenced and delivered to both recipients per second.
        var throughput: Double { min(sequencedPerSecond, deliveredPerSecond / 2) }
        var deliver = Percentiles()
        var send = Percentiles()
        var failures = 0
        var firstFailure: String?
        var missing = 0
        var meanGroup = 0.0
        var groupsPerSecond = 0.0
        var writeTransactionsPerSecond = 0.0
        var cpu = CPUSplit()
        var rate: Double?
    }

    struct ConfigurationResult {
        var nodes: Int
        var closed: PhaseResult?
        var open: PhaseResult?
    }

    struct Results {
        var configurations: [ConfigurationResult] = []
        var eventBytes = 0
        /// Raw INSERT rows/s by transaction size.
        var raw: [Int: Double] = [:]
        /// The writer's own SQL (submissions, events, deliveries, watermark) replayed without a sequencer, submissions/s by group size.
        var writerSQL: [Int: Double] = [:]
        var loadAfter = ""
    }

    struct Percentiles {
        var p50 = 0.0, p99 = 0.0, max = 0.0  // ms
        var count = 0

        init() {}
        init(_ micros: [UInt32]) {
            guard !micros.isEmpty else { return }
            let sorted = micros.sorted()
            count = sorted.count
            p50 = Double(sorted[sorted.count / 2]) / 1000
            p99 = Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]) / 1000
            max = Double(sorted[sorted.count - 1]) / 1000
        }
    }

    // MARK: - The run

    static func runAll(_ options: Options, fixture: PostgresFixture, logger: Logger) async throws -> Results {
        var results = Results()
        if options.statements {
            let connection = try PostgresConnection(url: fixture.url)
            try connection.executeScript("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            try await fixture.restart()
            try await Task.sleep(for: .seconds(1))
            // Known only once the library is loaded.
            let loaded = try PostgresConnection(url: fixture.url)
            try loaded.executeScript("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
            _ = try loaded.execute("SELECT pg_reload_conf()")
        }
        let admin = try PostgresConnection(url: fixture.url)
        let postmaster = Self.postmasterPID(fixture)
        // One certificate authority and one server certificate for every node (all on 127.0.0.1).
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let credentials = try CertificateAuthority.issue(commonName: "sequencer", hostnames: ["localhost", "127.0.0.1"], signedBy: ca)
        let serverTLS = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: credentials))
        let clientTLS = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))

        for nodeCount in options.nodes {
            let name = "seq\(nodeCount)"
            try admin.executeScript("CREATE DATABASE \(name)")
            let url = Self.url(fixture.url, database: name)
            print()
            print("== \(nodeCount) sequencer node\(nodeCount == 1 ? "" : "s") (database \(name)) ==")
            var configuration = ConfigurationResult(nodes: nodeCount)
            let setup = try PostgresConnection(url: url)
            try Sequencer.migrator.migrate(setup)
            try SequencerTopology.migrator.migrate(setup)
            // Counts the writer's group commits: one INSERT statement into sequencer_submissions
            // per group of up to 500 (SequencerWriter). A nextval is not transactional and takes no lock.
            try setup.executeScript(
                """
                CREATE SEQUENCE bench_group_statements;
                CREATE FUNCTION bench_count_group() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM nextval('bench_group_statements'); RETURN NULL; END $$;
                CREATE TRIGGER bench_count_group AFTER INSERT ON sequencer_submissions FOR EACH STATEMENT EXECUTE FUNCTION bench_count_group();
                """)
            if options.statements { try setup.executeScript("CREATE EXTENSION pg_stat_statements") }

            var domain = try TestDomain()
            let genesis = try domain.genesis()
            var nodes: [NodeHandle] = []
            if options.nodeProcesses {
                let directory = NSTemporaryDirectory() + "weft-bench-nodes-\(getpid())"
                try SequencerNodeProcess.Material(domain: domain.domain, sequencerKey: domain.sequencerKey, genesis: genesis, credentials: credentials)
                    .write(to: directory)
                defer { try? FileManager.default.removeItem(atPath: directory) }
                for number in 0..<nodeCount {
                    nodes.append(.process(try await SequencerNodeProcess.start(
                        number: number, directory: directory, url: url, connections: options.databaseConnections, cores: options.nodeCPU)))
                }
            } else {
                for number in 0..<nodeCount {
                    nodes.append(.inProcess(try await BenchNode.start(
                        number: number, url: url, domain: domain.domain, sequencerKey: domain.sequencerKey, genesis: genesis, tls: serverTLS,
                        connections: options.databaseConnections, logger: logger)))
                }
            }
            let sequencerKeys = [domain.sequencerKey.publicKey]
            let manager = try await SequencerClient.authenticate(
                try await nodes[0].connect(clientTLS), member: domain.managerMember.description, key: domain.managerKey,
                domain: domain.domain.description, sequencerKeys: sequencerKeys)
            let participants = try (1...memberCount).map { try TestDomain.Participant("participant\($0)") }
            try await manager.send(try domain.onboarding(participants), messageID: "onboard")
            for node in nodes {
                for participant in participants { try await node.waitUntil(participant.member) }
            }
            // Members spread over the nodes; each authenticates on its own connection and reads its own stream.
            var members: [BenchMember] = []
            for (index, participant) in participants.enumerated() {
                let node = nodes[index % nodeCount]
                let client = try await SequencerClient.authenticate(
                    try await node.connect(clientTLS), member: participant.member.description, key: participant.signingKey,
                    domain: domain.domain.description, sequencerKeys: sequencerKeys)
                members.append(BenchMember(index: index, client: client, others: participants.filter { $0.id != participant.id }.map(\.member.description)))
            }
            let recorder = Recorder()
            let readers = members.map { member in Task { await Self.read(member, verify: options.verify, recorder: recorder) } }
            let probe = Probe(
                url: url, postmaster: postmaster, statements: options.statements,
                nodeProcesses: nodes.compactMap { if case .process(let process) = $0 { process } else { nil } })
            let template = Self.template()
            if results.eventBytes == 0 {
                results.eventBytes = try Weft.V1.Batch(envelopes: [.init(content: template, recipients: Array(members[0].others.prefix(2)))]).serializedBytes().count
            }

            if options.phases.contains("closed") {
                print("closed loop: up to \(memberCount) × \(options.inFlight) submissions in flight (sent, not yet at both recipients) …")
                let phase = try await Self.closedLoop(members, options: options, recorder: recorder, probe: probe, template: template)
                Self.printPhase(phase)
                configuration.closed = phase
            }
            if options.phases.contains("open") {
                let rate = options.rate ?? (configuration.closed.map { ($0.throughput / 2).rounded() } ?? 1000)
                print("open loop at \(Int(rate)) submissions/s …")
                var phase = try await Self.openLoop(members, rate: rate, options: options, recorder: recorder, probe: probe, template: template)
                phase.rate = rate
                Self.printPhase(phase)
                configuration.open = phase
            }
            for reader in readers { reader.cancel() }
            for member in members { await member.client.rpc.close() }
            await manager.rpc.close()
            for node in nodes { await node.stop() }
            results.configurations.append(configuration)
        }

        // The baseline on the same server, with the sequencer nodes stopped.
        try admin.executeScript("CREATE DATABASE raw")
        let rawURL = Self.url(fixture.url, database: "raw")
        let groupSizes = Set(results.configurations.compactMap { $0.closed.map { max(1, Int($0.meanGroup.rounded())) } })
        for size in groupSizes.sorted() {
            // Rounds alternate the two baselines so that the machine's drift affects both alike; medians.
            print()
            print("baseline, \(size) rows per transaction, one connection, 5 alternating rounds of 1 s each:")
            var raw: [Double] = []
            var writer: [Double] = []
            for _ in 0..<5 {
                raw.append(try await RawInsert.rowsPerSecond(url: rawURL, rowBytes: results.eventBytes, perTransaction: size, seconds: 1))
                writer.append(try await RawInsert.writerStatementsPerSecond(url: rawURL, rowBytes: results.eventBytes, perTransaction: size, seconds: 1))
            }
            results.raw[size] = raw.sorted()[2]
            results.writerSQL[size] = writer.sorted()[2]
            print("  raw INSERT of \(results.eventBytes)-byte rows: \(raw.map { String(Int($0)) }.joined(separator: ", ")) rows/s; median \(Int(results.raw[size]!))")
            print("  the writer's SQL alone (message ids, events, 3 deliveries each, block, watermark): \(writer.map { String(Int($0)) }.joined(separator: ", ")) submissions/s; median \(Int(results.writerSQL[size]!))")
        }
        results.loadAfter = loadAverage()
        return results
    }

    // MARK: - Nodes and members

    /// A sequencer node of the run: in this process, or in one of its own.
    enum NodeHandle {
        case inProcess(BenchNode)
        case process(SequencerNodeProcess)

        func connect(_ tls: TLSContext) async throws -> RPCClient {
            let port = switch self {
            case .inProcess(let node): node.server.port
            case .process(let process): process.port
            }
            return try await RPCClient.connect(host: "127.0.0.1", port: port, security: .tls(tls))
        }

        /// Returns once the node's topology has `member`.
        func waitUntil(_ member: MemberID) async throws {
            switch self {
            case .inProcess(let node): await node.topology.waitUntil(member)
            case .process(let process): try await process.waitUntil(member.description)
            }
        }

        func stop() async {
            switch self {
            case .inProcess(let node): await node.stop()
            case .process(let process): await process.stop()
            }
        }
    }

    struct BenchNode {
        let sequencer: Sequencer
        let topology: SequencerTopology
        let server: RPCServer
        let database: PostgresDatabase

        static func start(
            number: Int, url: String, domain: UniqueIdentifier, sequencerKey: SigningPrivateKey, genesis: [Weft.V1.SignedTopologyTransaction],
            tls: TLSContext, connections: Int, logger: Logger
        ) async throws -> BenchNode {
            let database = PostgresDatabase(url: url, maximumConnections: connections, logger: logger)
            let sequencer = Sequencer(node: Int16(number), database: database, logger: logger)
            try await sequencer.start()
            let topology = try SequencerTopology(domain: domain, sequencer: sequencer, logger: logger)
            let provider = SequencerServiceProvider(sequencer: sequencer, topology: topology, signingKey: sequencerKey, logger: logger)
            try await topology.start { member in await provider.cutOff(member) }
            _ = try await topology.initialize(genesis)  // the second node finds it applied already
            var router = RPCRouter()
            provider.register(on: &router)
            let server = try await RPCServer.start(host: "127.0.0.1", port: 0, security: .tls(tls), router: router, logger: logger)
            return BenchNode(sequencer: sequencer, topology: topology, server: server, database: database)
        }

        func stop() async {
            await server.close()
            await topology.stop()
            await sequencer.stop()
            await database.shutdown()
        }
    }

    final class BenchMember: Sendable {
        let index: Int
        let client: SequencerClient
        /// The other participants: each submission goes to 2 of these 3.
        let others: [String]
        let nextMessage = Atomic<Int>(0)

        init(index: Int, client: SequencerClient, others: [String]) {
            self.index = index
            self.client = client
            self.others = others
        }
    }

    /// A payload: the magic, room for the send time, then filler.
    static func template() -> [UInt8] {
        var bytes = (0..<payloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        Self.store(magic, at: 0, in: &bytes)
        return bytes
    }

    static func store(_ value: UInt64, at offset: Int, in bytes: inout [UInt8]) {
        for index in 0..<8 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
    }

    static func load(at offset: Int, in bytes: [UInt8]) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[offset + index]) << (8 * UInt64(index)) }
        return value
    }

    /// Sends one submission from `member`, stamped `sentAt`, to 2 of the other 3 participants.
    static func send(_ member: BenchMember, template: [UInt8], sentAt: UInt64, recorder: Recorder) async {
        var content = template
        Self.store(sentAt, at: 8, in: &content)
        let number = member.nextMessage.add(1, ordering: .relaxed).oldValue
        var recipients = member.others
        recipients.remove(at: number % recipients.count)
        let batch = Weft.V1.Batch(envelopes: [.init(content: content, recipients: recipients)])
        do {
            try await member.client.send(batch, messageID: "m\(number)")
            recorder.sequenced(sentAt: sentAt, at: now())
        } catch {
            recorder.failed(error)
        }
    }

    /// Reads `member`'s stream until cancelled: counts deliveries (events carrying a benchmark
    /// payload) and receipts, records send → deliver latency, checks counters.
    static func read(_ member: BenchMember, verify: Bool, recorder: Recorder) async {
        var expected: UInt64 = 0
        func handle(_ event: Weft.V1.SequencedEvent) {
            if event.counter != expected { recorder.streamProblem("\(member.client.member): counter \(event.counter), expected \(expected)") }
            expected = event.counter + 1
            guard case .deliver(let deliver)? = event.event else { return }
            let arrived = now()
            for envelope in deliver.batch?.envelopes ?? [] where envelope.content.count >= 16 && Self.load(at: 0, in: envelope.content) == magic {
                recorder.delivered(sentAt: Self.load(at: 8, in: envelope.content), at: arrived)
            }
        }
        do {
            if verify {
                for try await event in try member.client.subscribe(from: 0) { handle(event) }
            } else {
                let client = member.client
                for try await response in try client.rpc.sequencer.subscribe(.init(member: client.member, fromCounter: 0), metadata: client.authorization) {
                    var event = try Weft.V1.SequencedEvent(serializedBytes: response.signedEvent?.event ?? [])
                    // An event of a signed block has its counter beside the signed bytes.
                    if let signed = response.signedEvent, signed.blockProof != nil { event.counter = signed.counter }
                    handle(event)
                }
            }
        } catch where !Task.isCancelled {
            recorder.streamProblem("\(member.client.member)'s stream ended: \(error)")
        } catch {}
    }

    // MARK: - Phases

    static func closedLoop(_ members: [BenchMember], options: Options, recorder: Recorder, probe: Probe, template: [UInt8]) async throws -> PhaseResult {
        recorder.reset()
        let running = Flag()
        // The loop closes on delivery: at most `inFlight` submissions per member (in all) that
        // are not yet at both recipients, so the writer cannot run ahead of the readers and the
        // latency measured is that of a steady state. Every second delivery lets one send start.
        recorder.gate.reset(permits: members.count * options.inFlight)
        return try await withThrowingTaskGroup(of: PhaseResult?.self) { group in
            for member in members {
                for _ in 0..<options.inFlight {
                    group.addTask {
                        while true {
                            await recorder.gate.acquire()
                            guard running.value.load(ordering: .relaxed) else { return nil }
                            await Self.send(member, template: template, sentAt: now(), recorder: recorder)
                        }
                    }
                }
            }
            try await Task.sleep(for: .seconds(options.warmup))
            let before = try await probe.snapshot()
            recorder.open(from: now(), until: .max)
            try await Task.sleep(for: .seconds(options.seconds))
            let end = now()
            recorder.open(from: recorder.start, until: end)
            let after = try await probe.snapshot()
            running.value.store(false, ordering: .relaxed)
            recorder.gate.open()
            try await group.waitForAll()
            return try await Self.finish(recorder: recorder, before: before, after: after)
        }
    }

    /// How late the open loop may release a send: one timer wake-up per tick at most, whatever
    /// the rate. Waiting out each send's own time instead (one timer per send) woke the
    /// dispatcher's timer thread ~4,700 times/s at 3,500 sends/s, CPU the load generator took
    /// from the sequencer on the shared cores. The latency counts from the scheduled time, so
    /// a send released up to a tick late is charged for it.
    static let openLoopTick: UInt64 = 500_000

    static func openLoop(_ members: [BenchMember], rate: Double, options: Options, recorder: Recorder, probe: Probe, template: [UInt8]) async throws -> PhaseResult {
        recorder.reset()
        recorder.gate.open()
        let interval = 1e9 / (rate / Double(members.count))  // ns between one member's sends
        let perMember = Int((options.warmup + options.seconds) * rate / Double(members.count))
        let start = now() + 20_000_000
        let windowStart = start + UInt64(options.warmup * 1e9)
        let windowEnd = windowStart + UInt64(options.seconds * 1e9)
        recorder.open(from: windowStart, until: windowEnd)
        let offsets = members.map { UInt64(Double($0.index) * interval / Double(members.count)) }
        func scheduled(_ member: Int, _ slot: Int) -> UInt64 { start + offsets[member] + UInt64(Double(slot) * interval) }
        let window = Task {
            let current = now()
            if windowStart > current { try await Task.sleep(nanoseconds: windowStart - current) }
            let before = try await probe.snapshot()
            try await Task.sleep(nanoseconds: windowEnd - max(now(), windowStart))
            return (before, try await probe.snapshot())
        }
        try await withThrowingDiscardingTaskGroup { group in
            // One ticker releases every send that is due, each as a task of its own (an open
            // loop: a slow sequencer does not slow the sends down), then sleeps until the next
            // is due, but at least a tick.
            var next = [Int](repeating: 0, count: members.count)
            while true {
                let current = now()
                var due: UInt64 = .max
                for (index, member) in members.enumerated() {
                    while next[index] < perMember, scheduled(index, next[index]) <= current {
                        let sentAt = scheduled(index, next[index])
                        group.addTask { await Self.send(member, template: template, sentAt: sentAt, recorder: recorder) }
                        next[index] += 1
                    }
                    if next[index] < perMember { due = min(due, scheduled(index, next[index])) }
                }
                guard due != .max else { break }
                let wake = max(due, current + Self.openLoopTick)
                let afterRelease = now()
                if wake > afterRelease { try await Task.sleep(nanoseconds: wake - afterRelease) }
            }
        }
        let (before, after) = try await window.value
        return try await Self.finish(recorder: recorder, before: before, after: after)
    }

    /// Waits until every sequenced submission reached both recipients (or 30 s pass), then
    /// computes the phase's figures.
    static func finish(recorder: Recorder, before: Probe.Snapshot, after: Probe.Snapshot) async throws -> PhaseResult {
        let deadline = now() + 30_000_000_000
        while recorder.deliveredTotal.load(ordering: .relaxed) < 2 * recorder.sequencedTotal.load(ordering: .relaxed), now() < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let seconds = Double(recorder.end - recorder.start) / 1e9
        var result = PhaseResult()
        result.sequencedPerSecond = Double(recorder.sequencedInWindow.load(ordering: .relaxed)) / seconds
        result.deliveredPerSecond = Double(recorder.deliveredInWindow.load(ordering: .relaxed)) / seconds
        result.deliver = Percentiles(recorder.deliverLatencies.withLock { $0 })
        result.send = Percentiles(recorder.sendLatencies.withLock { $0 })
        result.failures = recorder.failures.load(ordering: .relaxed)
        result.firstFailure = recorder.firstFailure.withLock { $0 }
        result.missing = max(0, 2 * recorder.sequencedTotal.load(ordering: .relaxed) - recorder.deliveredTotal.load(ordering: .relaxed))
        let probeSeconds = Double(after.at - before.at) / 1e9
        let groups = Double(after.groupStatements - before.groupStatements)
        result.groupsPerSecond = groups / probeSeconds
        result.meanGroup = groups > 0 ? Double(after.submissions - before.submissions) / groups : 0
        result.writeTransactionsPerSecond = Double(after.transactionIDs - before.transactionIDs) / probeSeconds
        result.cpu = CPUSplit(before, after, submissions: Double(after.submissions - before.submissions))
        if let problem = recorder.streamProblems.withLock({ $0.first }) { print("  STREAM PROBLEM: \(problem)") }
        if !after.statements.isEmpty {
            print("  PostgreSQL statements in the window (pg_stat_statements; ms = planning + execution in the server):")
            for line in after.statements { print("    " + line) }
        }
        return result
    }

    static func printPhase(_ phase: PhaseResult) {
        print("  sequenced \(Int(phase.sequencedPerSecond))/s, delivered \(Int(phase.deliveredPerSecond)) envelopes/s (2 per submission)")
        print("  send → deliver  p50 \(format(phase.deliver.p50, 1)) ms  p99 \(format(phase.deliver.p99, 1)) ms  max \(format(phase.deliver.max, 1)) ms  (\(phase.deliver.count) deliveries)")
        print("  send → sequenced p50 \(format(phase.send.p50, 1)) ms  p99 \(format(phase.send.p99, 1)) ms")
        print("  group commits \(Int(phase.groupsPerSecond))/s, \(format(phase.meanGroup, 1)) submissions each; write transactions \(Int(phase.writeTransactionsPerSecond))/s")
        let cpu = phase.cpu
        print("  CPU (cores busy): machine \(format(cpu.machine, 2)) of 2 — weft-bench \(format(cpu.process, 2)) [\(cpu.threads.map { "\($0.key) \(format($0.value, 2))" }.sorted().joined(separator: ", "))], PostgreSQL \(format(cpu.postgres, 2)), other processes \(format(max(0, cpu.machine - cpu.stolen - cpu.process - cpu.postgres), 2)), stolen by the hypervisor \(format(cpu.stolen, 2))")
        print("  CPU per submission: weft-bench \(Int(cpu.processMicrosPerSubmission)) µs, PostgreSQL \(Int(cpu.postgresMicrosPerSubmission)) µs")
        if phase.failures > 0 { print("  FAILED SENDS: \(phase.failures), first: \(phase.firstFailure ?? "")") }
        if phase.missing > 0 { print("  MISSING DELIVERIES after 30 s: \(phase.missing)") }
    }

    // MARK: - Report

    static func report(_ results: Results, options: Options) {
        print()
        print("event batch: \(results.eventBytes) bytes (\(payloadBytes)-byte envelope, 2 recipients); load after: \(results.loadAfter)")
        print()
        let columns = [46, 24, 26, 7, 22, 4]
        func row(_ cells: [String]) {
            print(zip(cells, columns).enumerated().map { index, pair in pad(pair.0, pair.1, right: index > 0 && index < 4) }.joined(separator: "  "))
        }
        row(["workload", "figure", "baseline", "ratio", "target", "met"])
        var single: Double?
        for configuration in results.configurations {
            let label = "\(configuration.nodes) node\(configuration.nodes == 1 ? "" : "s")"
                + (options.nodeCPU.map { " of \(format($0, 2)) cores" } ?? (options.nodeProcesses ? " (processes)" : ""))
            if let closed = configuration.closed {
                let size = max(1, Int(closed.meanGroup.rounded()))
                let raw = results.raw[size] ?? 0
                let figure = closed.throughput
                let target: String
                let met: String
                if configuration.nodes == 1 {
                    single = figure
                    // The targets of one node are for a node that has the machine (no budget).
                    target = options.nodeCPU == nil ? "≥ 10,000/s" : ""
                    met = options.nodeCPU == nil ? (figure >= 10_000 ? "yes" : "no") : ""
                } else {
                    target = "> 1 node" + (single.map { " (\(Int($0)))" } ?? "")
                    met = single.map { figure > $0 ? "yes" : "no" } ?? "?"
                }
                row(["\(label): submissions/s, sequenced + delivered", "\(Int(figure))", "\(Int(raw)) raw rows/s (×\(size))",
                     raw > 0 ? format(figure / raw, 3) + "×" : "", target, met])
                let writer = results.writerSQL[size] ?? 0
                row(["\(label): same, vs the writer's SQL alone", "\(Int(figure))", "\(Int(writer)) subs/s (×\(size))",
                     writer > 0 ? format(figure / writer, 3) + "×" : "", "", ""])
                row(["\(label): send → deliver at that rate", "p50 \(format(closed.deliver.p50, 1)) / p99 \(format(closed.deliver.p99, 1)) ms", "", "", "", ""])
            }
            if let open = configuration.open, let rate = open.rate {
                let met = open.deliver.p99 <= 20 && open.failures == 0 && open.missing == 0
                let budgeted = options.nodeCPU != nil
                row(["\(label): send → deliver at \(Int(rate))/s (open loop)", "p50 \(format(open.deliver.p50, 1)) / p99 \(format(open.deliver.p99, 1)) ms", "", "",
                     budgeted ? "" : rate >= 5000 ? "p99 ≤ 20 ms" : "p99 ≤ 20 ms @5,000/s", budgeted ? "" : met ? (rate >= 5000 ? "yes" : "yes*") : "no"])
            }
        }
        if let cores = options.nodeCPU {
            print("each node in a process held to \(format(cores, 2)) cores; the targets name nodes sharing the machine (without --node-cpu)")
        }
        if options.nodeCPU == nil, results.configurations.contains(where: { ($0.open?.rate ?? 5000) < 5000 }) {
            print("* measured at half of this run's maximum, below the 5,000/s the target names")
        }
    }

    static func format(_ value: Double, _ digits: Int) -> String {
        let factor = [1.0, 10.0, 100.0, 1000.0][min(digits, 3)]
        return String((value * factor).rounded() / factor)
    }

    static func url(_ base: String, database: String) -> String {
        guard let slash = base.lastIndex(of: "/") else { return base }
        return String(base[..<slash]) + "/" + database
    }

    static func loadAverage() -> String {
        (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
    }

    static func postmasterPID(_ fixture: PostgresFixture) -> Int32? {
        guard let directory = fixture.directory,
            let text = try? String(contentsOfFile: directory + "/data/postmaster.pid", encoding: .utf8)
        else { return nil }
        return text.split(separator: "\n").first.flatMap { Int32($0) }
    }
}

// MARK: - Recording

final class Flag: Sendable {
    let value = Atomic<Bool>(true)
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

/// A counting semaphore for tasks: `acquire` waits (without polling) for a permit.
final class Gate: Sendable {
    private struct State {
        var permits = Int.max / 2
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func acquire() async {
        if state.withLock({ state in
            guard state.permits > 0 else { return false }
            state.permits -= 1
            return true
        }) { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state in
                guard state.permits > 0 else {
                    state.waiters.append(continuation)
                    return false
                }
                state.permits -= 1
                return true
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { state in
            guard !state.waiters.isEmpty else {
                state.permits += 1
                return nil as CheckedContinuation<Void, Never>?
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume()
    }

    func reset(permits: Int) {
        state.withLock { $0.permits = permits }
    }

    /// Lets every waiter and every later `acquire` through.
    func open() {
        let waiters = state.withLock { state in
            state.permits = Int.max / 2
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// Counts and latency samples of the current phase, and totals for the drain check.
final class Recorder: Sendable {
    let windowStart = Atomic<UInt64>(.max)
    let windowEnd = Atomic<UInt64>(.max)
    let sequencedInWindow = Atomic<Int>(0)
    let deliveredInWindow = Atomic<Int>(0)
    let sequencedTotal = Atomic<Int>(0)
    let deliveredTotal = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let firstFailure = Mutex<String?>(nil)
    let streamProblems = Mutex<[String]>([])
    /// Microseconds, for sends made in the window.
    let sendLatencies = Mutex<[UInt32]>([])
    let deliverLatencies = Mutex<[UInt32]>([])
    /// Sends the closed loop may start.
    let gate = Gate()

    var start: UInt64 { windowStart.load(ordering: .relaxed) }
    var end: UInt64 { windowEnd.load(ordering: .relaxed) }

    func reset() {
        windowStart.store(.max, ordering: .relaxed)
        windowEnd.store(.max, ordering: .relaxed)
        sequencedInWindow.store(0, ordering: .relaxed)
        deliveredInWindow.store(0, ordering: .relaxed)
        failures.store(0, ordering: .relaxed)
        firstFailure.withLock { $0 = nil }
        sendLatencies.withLock { $0.removeAll(keepingCapacity: true) }
        deliverLatencies.withLock { $0.removeAll(keepingCapacity: true) }
    }

    func open(from start: UInt64, until end: UInt64) {
        windowStart.store(start, ordering: .relaxed)
        windowEnd.store(end, ordering: .relaxed)
    }

    private func inWindow(_ time: UInt64) -> Bool { time >= start && time < end }

    func sequenced(sentAt: UInt64, at time: UInt64) {
        sequencedTotal.add(1, ordering: .relaxed)
        if inWindow(time) { sequencedInWindow.add(1, ordering: .relaxed) }
        if inWindow(sentAt) { sendLatencies.withLock { $0.append(UInt32(clamping: (time &- sentAt) / 1000)) } }
    }

    func delivered(sentAt: UInt64, at time: UInt64) {
        if deliveredTotal.add(1, ordering: .relaxed).newValue % 2 == 0 { gate.release() }
        if inWindow(time) { deliveredInWindow.add(1, ordering: .relaxed) }
        if inWindow(sentAt) { deliverLatencies.withLock { $0.append(UInt32(clamping: (time &- sentAt) / 1000)) } }
    }

    func failed(_ error: any Error) {
        failures.add(1, ordering: .relaxed)
        gate.release()
        firstFailure.withLock { if $0 == nil { $0 = "\(error)" } }
    }

    func streamProblem(_ problem: String) {
        streamProblems.withLock { $0.append(problem) }
    }
}

// MARK: - Where the time goes: database counters and CPU time

/// Reads the database's counters and the CPU time of this process (per thread kind), of the
/// PostgreSQL server's processes and of the whole machine.
struct Probe: Sendable {
    let url: String
    let postmaster: Int32?
    var statements = false
    /// Sequencer nodes in processes of their own, whose CPU counts as the benchmark's.
    var nodeProcesses: [SequencerNodeProcess] = []

    struct Snapshot: Sendable {
        var at: UInt64 = 0
        var groupStatements: Int64 = 0
        var submissions: Int64 = 0
        /// Transaction ids handed out: one per transaction that wrote.
        var statements: [String] = []
        /// Statements executed since the previous snapshot (pg_stat_statements, when loaded).
        var statementCalls: Int64 = 0
        var transactionIDs: Int64 = 0
        /// Rows inserted or updated in the participants' and the mediator's cursor tables
        /// (`pg_stat_user_tables`, which a backend reports at most once a second).
        var cursorWrites: (participants: Int64, mediator: Int64) = (0, 0)
        /// CPU seconds.
        var threads: [String: Double] = [:]
        var postgres = 0.0
        var machineBusy = 0.0
        /// CPU seconds the hypervisor ran something else while this VM wanted to run (steal).
        var machineStolen = 0.0
    }

    func snapshot() async throws -> Snapshot {
        let url = self.url
        let counters = try await Task.detached {
            let connection = try PostgresConnection(url: url)
            let row = try connection.execute(
                """
                SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM bench_group_statements),
                       (SELECT count(*) FROM sequencer_submissions),
                       txid_snapshot_xmax(txid_current_snapshot()),
                       (SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0)::int8 FROM pg_stat_user_tables
                        WHERE relname = 'participant_cursor'),
                       (SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0)::int8 FROM pg_stat_user_tables
                        WHERE relname = 'mediator_stream')
                """
            ).rows[0]
            return (
                try row[0].int64 ?? 0, try row[1].int64 ?? 0, try row[2].int64 ?? 0,
                (try row[3].int64 ?? 0, try row[4].int64 ?? 0)
            )
        }.value
        var snapshot = Snapshot()
        if statements {
            (snapshot.statements, snapshot.statementCalls) = try await Task.detached {
                let connection = try PostgresConnection(url: url)
                let calls = try connection.execute(
                    """
                    SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements
                    WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                    """
                ).rows[0][0].int64 ?? 0
                let lines = try connection.execute(
                    """
                    SELECT calls, round((total_plan_time + total_exec_time)::numeric, 1)::text, rows,
                           regexp_replace(left(query, 110), '\\s+', ' ', 'g')
                    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                    ORDER BY total_plan_time + total_exec_time DESC LIMIT 8
                    """
                ).rows.map { row in
                    "\(try row[0].int64 ?? 0) calls, \(try row[1].string ?? "") ms, \(try row[2].int64 ?? 0) rows: \(try row[3].string ?? "")"
                }
                _ = try connection.execute("SELECT pg_stat_statements_reset()")
                return (lines, calls)
            }.value
        }
        snapshot.at = now()
        (snapshot.groupStatements, snapshot.submissions, snapshot.transactionIDs, snapshot.cursorWrites) = counters
        snapshot.threads = Self.threadTimes()
        if !nodeProcesses.isEmpty { snapshot.threads["sequencer node processes"] = nodeProcesses.map(\.cpuSeconds).reduce(0, +) }
        snapshot.postgres = postmaster.map(Self.postgresTime) ?? 0
        (snapshot.machineBusy, snapshot.machineStolen) = Self.machineBusy()
        return snapshot
    }

    static let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// utime + stime of /proc/PID[/task/TID]/stat, in seconds, and the process's parent.
    static func stat(_ path: String) -> (seconds: Double, parent: Int32, name: String)? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")")
        else { return nil }
        let name = String(text[text.index(after: open)..<close])
        let fields = text[text.index(close, offsetBy: 2)...].split(separator: " ")
        // Fields after the name: state(0) ppid(1) … utime(11) stime(12).
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]), let parent = Int32(fields[1]) else { return nil }
        return ((user + system) / ticks, parent, name)
    }

    /// This process's CPU seconds by thread kind: NIO event loops (TLS, frames, client and
    /// server), database threads (libpq and the SQL each closure builds), Swift's cooperative
    /// pool (handlers, actors, signing, the members' send and read loops), other.
    static func threadTimes() -> [String: Double] {
        var times: [String: Double] = [:]
        for thread in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
            guard let entry = stat("/proc/self/task/\(thread)/stat") else { continue }
            let kind: String
            if thread == String(getpid()) {
                kind = "main"
            } else if entry.name.hasPrefix("NIO-") {
                kind = "event loops"
            } else if entry.name.hasPrefix("TP-") || entry.name.contains("ThreadPool") {
                kind = "database threads"
            } else {
                kind = "Swift pool"
            }
            times[kind, default: 0] += entry.seconds
        }
        return times
    }

    static func postgresTime(_ postmaster: Int32) -> Double {
        var total = 0.0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(name), let entry = stat("/proc/\(pid)/stat") else { continue }
            if pid == postmaster || entry.parent == postmaster { total += entry.seconds }
        }
        return total
    }

    /// Busy CPU seconds of the whole machine (all cores) from /proc/stat, and of them the
    /// seconds stolen: a VM's cores wanted to run but the hypervisor ran another guest. Stolen
    /// time is no process's, but it takes cores from the measurement all the same.
    static func machineBusy() -> (busy: Double, stolen: Double) {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8), let line = text.split(separator: "\n").first else {
            return (0, 0)
        }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 8 else { return (0, 0) }
        // user nice system idle iowait irq softirq steal
        return ((values[0] + values[1] + values[2] + values[5] + values[6] + values[7]) / ticks, values[7] / ticks)
    }
}

/// CPU cores busy during a window, and per submission.
struct CPUSplit {
    var machine = 0.0
    /// Of `machine`, cores the hypervisor gave to other guests.
    var stolen = 0.0
    var process = 0.0
    var postgres = 0.0
    var threads: [String: Double] = [:]
    var processMicrosPerSubmission = 0.0
    var postgresMicrosPerSubmission = 0.0

    init() {}

    init(_ before: Probe.Snapshot, _ after: Probe.Snapshot, submissions: Double) {
        let seconds = Double(after.at - before.at) / 1e9
        machine = (after.machineBusy - before.machineBusy) / seconds
        stolen = (after.machineStolen - before.machineStolen) / seconds
        for (kind, time) in after.threads { threads[kind] = (time - (before.threads[kind] ?? 0)) / seconds }
        process = threads.values.reduce(0, +)
        postgres = (after.postgres - before.postgres) / seconds
        if submissions > 0 {
            processMicrosPerSubmission = process * seconds / submissions * 1e6
            postgresMicrosPerSubmission = postgres * seconds / submissions * 1e6
        }
    }
}

// MARK: - The baseline

/// Raw batched INSERTs on one libpq connection (`PostgresConnection`), no sequencer.
enum RawInsert {
    static let eventsTable = """
        CREATE TABLE IF NOT EXISTS raw_events (
            ts bigint PRIMARY KEY, node smallint NOT NULL, sender integer NOT NULL, message_id text NOT NULL, kind smallint NOT NULL,
            batch bytea, traceparent text NOT NULL DEFAULT '', recipients integer[] NOT NULL,
            error_code integer, error_id text, error_message text, block_ts bigint, leaf_offset integer);
        CREATE TABLE IF NOT EXISTS raw_submissions (sender integer NOT NULL, message_id text NOT NULL, expires_ts bigint NOT NULL, PRIMARY KEY (sender, message_id));
        CREATE TABLE IF NOT EXISTS raw_deliveries (member integer NOT NULL, ts bigint NOT NULL, PRIMARY KEY (member, ts));
        CREATE TABLE IF NOT EXISTS raw_blocks (node smallint NOT NULL, block_ts bigint NOT NULL, leaves bytea NOT NULL, signature bytea NOT NULL, PRIMARY KEY (node, block_ts));
        ALTER TABLE raw_blocks ALTER COLUMN leaves SET STORAGE EXTERNAL;
        CREATE TABLE IF NOT EXISTS raw_writers (node smallint PRIMARY KEY, watermark bigint NOT NULL, online boolean NOT NULL, heartbeat_at timestamptz NOT NULL DEFAULT now());
        """

    /// Rows per second: multi-row INSERTs of rows shaped like `sequencer_events` (a `rowBytes`
    /// bytea and a few ints, the writer's statement and casts, 400 rows per statement),
    /// `perTransaction` rows per transaction.
    static func rowsPerSecond(url: String, rowBytes: Int, perTransaction: Int, seconds: Double) async throws -> Double {
        try await run(url: url, seconds: seconds) { connection, next in
            _ = try connection.execute("BEGIN")
            try insertEvents(connection, from: next, count: perTransaction, rowBytes: rowBytes)
            _ = try connection.execute("COMMIT")
            return perTransaction
        }
    }

    /// Submissions per second of the writer's complete SQL for a group (message ids, events,
    /// deliveries to 2 recipients and the sender, the block's leaves and signature, the
    /// watermark) without the sequencer around it.
    static func writerStatementsPerSecond(url: String, rowBytes: Int, perTransaction: Int, seconds: Double) async throws -> Double {
        let batch = [UInt8](repeating: 0x5A, count: rowBytes)
        return try await run(url: url, seconds: seconds) { connection, next in
            // The writer's statements (SequencerWriter.insert): one `unnest` statement per table.
            let timestamps = (0..<Int64(perTransaction)).map { next + $0 }
            _ = try connection.execute("BEGIN")
            _ = try connection.execute(
                GroupCommitSQL.insertSubmissions(into: "raw_submissions"),
                [
                    .int64Array(timestamps.map { _ in 1 }), .textArray(timestamps.map { "m\($0)" }),
                    .int64Array(timestamps.map { _ in Int64.max }),
                ])
            _ = try connection.execute(
                GroupCommitSQL.insertEvents(into: "raw_events"),
                [
                    .int64Array(timestamps), .int64Array(timestamps.map { _ in 0 }), .int64Array(timestamps.map { _ in 1 }),
                    .textArray(timestamps.map { "m\($0)" }), .int64Array(timestamps.map { _ in 1 }),
                    .bytesArray(timestamps.map { _ in batch }), .textArray(timestamps.map { _ in "" }),
                    .textArray(timestamps.map { _ in "{2,3}" }), .int64Array(timestamps.map { _ in nil }),
                    .textArray(timestamps.map { _ in nil }), .textArray(timestamps.map { _ in nil }),
                    .int64Array(timestamps.map { _ in next + Int64(perTransaction) }),
                    .int64Array((0..<Int64(perTransaction)).map { 3 * $0 }),
                ])
            let deliveries = (0..<perTransaction * 3)
            _ = try connection.execute(
                GroupCommitSQL.insertDeliveries(into: "raw_deliveries"),
                [
                    .int64Array(deliveries.map { Int64($0 % 3 + 1) }),
                    .int64Array(deliveries.map { next + Int64($0 / 3) }),
                ])
            _ = try connection.execute(
                "INSERT INTO raw_blocks (node, block_ts, leaves, signature) VALUES ($1::int8::int2, $2, $3, $4)",
                [.int64(0), .int64(next + Int64(perTransaction)), .bytes([UInt8](repeating: 0xA5, count: 32 * 3 * perTransaction)),
                 .bytes([UInt8](repeating: 0x5A, count: 140))])
            _ = try connection.execute(
                "UPDATE raw_writers SET watermark = $1, heartbeat_at = now() WHERE node = $2::int8::int2 AND online RETURNING node",
                [.int64(next + Int64(perTransaction)), .int64(0)])
            _ = try connection.execute("COMMIT")
            return perTransaction
        }
    }

    static func insertEvents(_ connection: PostgresConnection, from next: Int64, count: Int, rowBytes: Int) throws {
        let batch = [UInt8](repeating: 0x5A, count: rowBytes)
        for chunk in stride(from: 0, to: count, by: 400) {
            var sql = "INSERT INTO raw_events (ts, node, sender, message_id, kind, batch, traceparent, recipients, error_code, error_id, error_message, block_ts, leaf_offset) VALUES "
            var parameters: [PostgresValue] = []
            for position in 0..<min(400, count - chunk) {
                let base = parameters.count
                sql += (position == 0 ? "" : ", ")
                    + "($\(base + 1), $\(base + 2)::int8::int2, $\(base + 3)::int8::int4, $\(base + 4), $\(base + 5)::int8::int2, $\(base + 6), $\(base + 7), $\(base + 8)::int4[], $\(base + 9)::int8::int4, $\(base + 10), $\(base + 11), $\(base + 12), $\(base + 13)::int8::int4)"
                let ts = next + Int64(chunk + position)
                parameters += [
                    .int64(ts), .int64(0), .int64(1), .text("m\(ts)"), .int64(1), .bytes(batch), .text(""), .text("{2,3}"), .null, .null, .null,
                    .int64(next + Int64(count)), .int64(Int64(3 * (chunk + position))),
                ]
            }
            _ = try connection.execute(sql, parameters)
        }
    }

    /// Runs `body` (which writes rows numbered from its second argument and returns how many)
    /// back to back on one connection for `seconds`; returns rows per second.
    static func run(url: String, seconds: Double, _ body: @escaping @Sendable (PostgresConnection, Int64) throws -> Int) async throws -> Double {
        let database = PostgresDatabase(url: url, maximumConnections: 1)
        defer { Task { await database.shutdown() } }
        return try await database.withConnection { connection in
            try connection.executeScript(eventsTable + "TRUNCATE raw_events, raw_submissions, raw_deliveries, raw_writers, raw_blocks; INSERT INTO raw_writers VALUES (0, 0, true);")
            var next: Int64 = 1
            // Warm-up, not counted.
            let warm = now() + 300_000_000
            while now() < warm { next += Int64(try body(connection, next)) }
            let start = now()
            let end = start + UInt64(seconds * 1e9)
            var rows = 0
            while now() < end {
                let written = try body(connection, next)
                rows += written
                next += Int64(written)
            }
            return Double(rows) / (Double(now() - start) / 1e9)
        }
    }
}
