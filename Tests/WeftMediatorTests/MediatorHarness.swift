import Logging
import Testing
@_spi(Testing) import WeftMediator
import WeftStore
import WeftContracts
import WeftTopology
import WeftTestSupport

/// Starts one PostgreSQL server for a whole suite; its tests run in parallel, each with a
/// mediator of its own (the mediator's rows carry its member id), so they share nothing.
struct SharedPostgres: SuiteTrait, TestScoping {
    @TaskLocal static var url: String?

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await PostgresFixture.withFixture { fixture in
            try await Self.$url.withValue(fixture.url) { try await function() }
        }
    }
}

extension Trait where Self == SharedPostgres {
    static var sharedPostgres: Self { Self() }
}

/// A mediator of its own for one test, on the suite's server.
struct MediatorHarness {
    let test: TestDomain
    let store: MediatorStore

    init(_ name: String) async throws {
        let url = try #require(SharedPostgres.url, "the suite needs the .sharedPostgres trait")
        // A fresh name per run keeps runs against a long-lived WEFT_TEST_PGURL server apart.
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        test = try TestDomain(mediatorName: "mediator-\(name)-\(suffix)")
        store = MediatorStore(
            database: PostgresDatabase(url: url, maximumConnections: 2), mediator: test.mediator.member)
        try await store.migrate()
    }

    /// A mediator on the harness's store, as a (re)started node makes it.
    func start(database: PostgresDatabase? = nil) async throws -> Mediator {
        let store = database.map { MediatorStore(database: $0, mediator: test.mediator.member) } ?? self.store
        var logger = Logger(label: "weft.mediator.test")
        logger.logLevel = .warning
        return try await Mediator.start(
            store: store, domain: test.domain, signingKey: test.mediator.signing, logger: logger)
    }

    /// A mediator started on the store, with an IOU transfer registered at the test domain's
    /// request time: the mediator, the transfer's views, the snapshot at that time, the request.
    func startWithTransfer() async throws
        -> (mediator: Mediator, views: TransactionViews, snapshot: TopologySnapshot, id: RequestID)
    {
        let mediator = try await start()
        let views = try test.iouTransfer()
        let snapshot = test.snapshot(at: TestDomain.requestTime)
        _ = try await mediator.register(request: try test.request(views), snapshot: snapshot)
        return (mediator, views, snapshot, RequestID(timestamp: TestDomain.requestTime, rootHash: views.rootHash))
    }

    /// An IOU transfer registered and stored by one mediator; then a mediator started again on
    /// the store, with the same request sequenced again at `later` registered — carried to the
    /// next write, its uuid not yet found taken (`.registered`).
    func restartedWithCarriedReplay(at later: SequencingTimestamp) async throws
        -> (mediator: Mediator, views: TransactionViews, outcome: RegistrationOutcome)
    {
        let views = try test.iouTransfer()
        let before = try await start()
        _ = try await before.register(request: try test.request(views), snapshot: test.snapshot(at: TestDomain.requestTime))
        try await before.storeProgress()
        let mediator = try await start()
        let outcome = try await mediator.register(request: try test.request(views, at: later), snapshot: test.snapshot(at: later))
        return (mediator, views, outcome)
    }

    /// Replaces the stored root hash of the request at `timestamp`, as another process (or a
    /// hand) would: the store no longer agrees with the mediator's memory.
    func replaceRootHash(at timestamp: SequencingTimestamp) async throws {
        let mediator = test.mediator.member.description
        try await store.database.transaction { connection in
            try connection.enqueue(
                "UPDATE mediator_requests SET root_hash = $3 WHERE mediator = $1 AND request_ts = $2",
                [.text(mediator), .int64(timestamp.microsSinceEpoch), .bytes([UInt8](repeating: 7, count: 32))])
        }
    }

    /// How many response rows the store holds for this mediator.
    func responseRowCount() async throws -> Int64 {
        let mediator = test.mediator.member.description
        return try await store.database.withConnection { connection in
            try connection.execute("SELECT count(*) FROM mediator_responses WHERE mediator = $1", [.text(mediator)])
                .rows.first?.first?.int64 ?? -1
        }
    }
}

extension RegistrationOutcome {
    var verdict: MediatorVerdict? {
        switch self {
        case .refused(let verdict), .alreadyDecided(let verdict): verdict
        case .registered, .alreadyRegistered: nil
        }
    }
}

extension ResponseOutcome {
    var verdict: MediatorVerdict? {
        switch self {
        case .decided(let verdict), .alreadyDecided(let verdict): verdict
        case .counted, .duplicate: nil
        }
    }
}
