import Logging
import Synchronization
import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftWire

/// Broadcasts that reach a member before its topology history (docs/topology.md §6, "A
/// member's own copy"): held, then applied with the history exactly as the nodes that read them
/// live applied them — and never more of them than the member holds.
@Suite(.timeLimit(.minutes(5))) struct MemberTopologyEarlyBroadcastTests {
    let test: TestDomain
    /// The genesis, sequenced at `TestDomain.start`.
    let genesisAt = TestDomain.start

    init() throws { test = try TestDomain() }

    /// The sequencers' history of a domain that has its genesis only, as its sequencers send it.
    func genesisHistory() throws -> Weft.V1.EnvelopeContent {
        var state = test.newState()
        for transaction in try test.bootstrap() { try state.add(transaction, sequencedAt: genesisAt) }
        return .init(
            message: .topologySnapshot(
                .init(domain: test.domain.description, transactions: state.transactions.map(\.wire))))
    }

    func broadcast(_ transactions: [SignedTopologyTransaction]) -> Weft.V1.TopologyTransactionsBroadcast {
        .init(domain: test.domain.description, transactions: transactions.map(\.wire))
    }

    /// A change of the domain parameters with serial 1 again: every node refuses it as stale.
    func staleParameters() throws -> SignedTopologyTransaction {
        var parameters = TestDomain.parameters
        parameters.reconciliationInterval = .init(micros: 120_000_000)
        return try test.replace(.parameters(parameters, of: test.domain), serial: 1, by: [test.domainKey])
    }

    /// The mediator's own topology in `database`, with an empty or restarted store.
    func memberTopology(
        _ database: PostgresDatabase, earlyBroadcastsMax: Int = MemberTopology.earlyBroadcastsMaxDefault,
        log: CapturedLogEvents? = nil
    ) async throws -> MemberTopology {
        let store = TopologyStore(database: database, domain: test.domain, member: test.mediator.member)
        try await store.migrate()
        let logger = log.map { log in Logger(label: "test") { _ in log } } ?? Logger(label: "test")
        let topology = MemberTopology(
            domain: test.domain, store: store, changeDelayMicros: TestDomain.delayMicros,
            earlyBroadcastsMax: earlyBroadcastsMax,
            logger: logger)
        try await topology.start()
        return topology
    }

    /// A held broadcast with a transaction every node refuses used to end the loop that applied
    /// the held ones: every later held broadcast was dropped for good (the driver goes on past a
    /// refusal and stores its position after the history), and this member's topology differed
    /// from every other node's. Each is applied on its own now, the refusals reported at the end.
    @Test func aRefusalInAHeldBroadcastDropsNoLaterOne() async throws {
        let t1 = genesisAt.adding(micros: 1_000_000)
        let t2 = genesisAt.adding(micros: 2_000_000)
        let t3 = genesisAt.adding(micros: 3_000_000)
        let historyAt = genesisAt.adding(micros: 4_000_000)
        let p1 = test.participant1
        let p2 = test.participant2
        // t1: a stale change (refused), then participant2's identity (accepted).
        let b1 = broadcast([try staleParameters()] + (try test.identity(of: p2)))
        // t2: participant1 joins and is admitted.
        let b2 = broadcast(try test.identity(of: p1) + [try test.admit(p1)])
        // t3: participant1 made a confirmer with serial 1 again (stale: refused).
        let b3 = broadcast([try test.admit(p1, permission: .confirmation, serial: 1)])

        // What every node that read them live has: each broadcast applied at its time.
        var reference = test.newState()
        for transaction in try test.bootstrap() { try reference.add(transaction, sequencedAt: genesisAt) }
        for (held, at) in [(b1, t1), (b2, t2), (b3, t3)] { _ = reference.add(held, sequencedAt: at) }
        #expect(
            reference.snapshot(at: TestDomain.visible(historyAt)).isActive(p1.member), "the control: participant1 is in"
        )

        try await PostgresFixture.withFixture { fixture in
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 2)
            let log = CapturedLogEvents()
            let topology = try await memberTopology(database, log: log)
            let manager = topology.managerMember.description
            for (held, at) in [(b1, t1), (b2, t2), (b3, t3)] {
                #expect(
                    try await topology.apply(.init(message: .topologyBroadcast(held)), sequencedAt: at, sender: manager)
                        == false)
            }
            #expect(await !topology.isInitialized)

            let error = await #expect(throws: MemberTopologyError.self) {
                try await topology.apply(
                    try genesisHistory(), sequencedAt: historyAt, sender: topology.sequencerMember.description)
            }
            guard case .transactionsRefused(let refused, let appliedCount)? = error else {
                Issue.record("expected the held broadcasts' refusals, got \(String(describing: error))")
                return
            }
            #expect(refused.map(\.sequencedAt) == [t1, t3])
            #expect(refused.map(\.index) == [0, 0])
            #expect(refused.map(\.error.id) == ["TOPOLOGY_SERIAL_MISMATCH", "TOPOLOGY_SERIAL_MISMATCH"])
            #expect(
                appliedCount == reference.transactions.count,
                "the history's and the held broadcasts' accepted transactions")
            #expect(error?.description.contains("sequenced at \(t3)") == true)
            // Each refusal is logged as the live path logs it, with its own broadcast's time.
            #expect(
                log.events(containing: "refused a topology transaction").map {
                    $0.metadata?["weft.sequenced_at"]?.description
                }
                    == ["\(t1)", "\(t3)"])

            // Participant1, admitted after the first refusal, is in — as on every other node.
            #expect(await topology.isInitialized)
            let after = TestDomain.visible(historyAt)
            #expect(await topology.snapshot(at: after).isActive(p1.member))
            #expect(await topology.snapshot(at: after).participantState(p1.id)?.permission == .submission)
            #expect(await topology.transactions == reference.transactions)
            for time in [genesisAt, t1, t2, TestDomain.visible(t2), t3, after] {
                #expect(
                    await topology.snapshot(at: time).canonicalDump == reference.snapshot(at: time).canonicalDump,
                    "at \(time)")
            }

            // And it was stored: a restarted member loads the same topology.
            let restartedDatabase = PostgresDatabase(url: fixture.url, maximumConnections: 2)
            let restarted = try await memberTopology(restartedDatabase)
            #expect(await restarted.transactions == reference.transactions)
            #expect(await restarted.snapshot(at: after).isActive(p1.member))
            await database.shutdown()
            await restartedDatabase.shutdown()
        }
    }

    /// A member holds at most `earlyBroadcastsMax` broadcasts while it waits for its history.
    /// Beyond, the broadcast and then the history are refused (`TOPOLOGY_HISTORY_TOO_LATE`)
    /// rather than the history applied without a broadcast that came before it; a restart, which
    /// reads the stream again from its unstored position, applies them all.
    @Test func aMemberHoldsABoundedNumberOfEarlyBroadcasts() async throws {
        let p1 = test.participant1
        let held = [
            broadcast(try test.identity(of: p1)),
            broadcast([try test.admit(p1)]),
            broadcast([try test.admit(p1, permission: .confirmation, serial: 2)]),
        ]
        let times = (1...3).map { genesisAt.adding(micros: Int64($0) * 1_000_000) }
        let historyAt = genesisAt.adding(micros: 4_000_000)
        let after = TestDomain.visible(historyAt)
        try await PostgresFixture.withFixture { fixture in
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 2)
            let topology = try await memberTopology(database, earlyBroadcastsMax: 2)
            let manager = topology.managerMember.description
            let sequencers = topology.sequencerMember.description
            for (broadcast, at) in zip(held, times).prefix(2) {
                try await topology.apply(
                    .init(message: .topologyBroadcast(broadcast)), sequencedAt: at, sender: manager)
            }
            await #expect(throws: MemberTopologyError.historyTooLate(earlyBroadcastsMax: 2)) {
                try await topology.apply(
                    .init(message: .topologyBroadcast(held[2])), sequencedAt: times[2], sender: manager)
            }
            await #expect(throws: MemberTopologyError.historyTooLate(earlyBroadcastsMax: 2)) {
                try await topology.apply(try genesisHistory(), sequencedAt: historyAt, sender: sequencers)
            }
            #expect(MemberTopologyError.historyTooLate(earlyBroadcastsMax: 2).id == "TOPOLOGY_HISTORY_TOO_LATE")
            #expect(await !topology.isInitialized, "nothing applied: the driver stores no stream position")
            #expect(await topology.transactions.isEmpty)

            // The restart reads the stream again, with room for all three.
            let restartedDatabase = PostgresDatabase(url: fixture.url, maximumConnections: 2)
            let restarted = try await memberTopology(restartedDatabase, earlyBroadcastsMax: 3)
            #expect(await !restarted.isInitialized)
            for (broadcast, at) in zip(held, times) {
                try await restarted.apply(
                    .init(message: .topologyBroadcast(broadcast)), sequencedAt: at, sender: manager)
            }
            #expect(try await restarted.apply(try genesisHistory(), sequencedAt: historyAt, sender: sequencers))
            #expect(await restarted.snapshot(at: after).participantState(p1.id)?.permission == .confirmation)
            await database.shutdown()
            await restartedDatabase.shutdown()
        }
    }
}

/// Log events kept in memory, for tests that check what a component logged and with which metadata.
final class CapturedLogEvents: LogHandler, @unchecked Sendable {
    private let events = Mutex<[LogEvent]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        events.withLock { $0.append(event) }
    }

    func events(containing text: String) -> [LogEvent] {
        events.withLock { $0.filter { "\($0.message)".contains(text) } }
    }
}
