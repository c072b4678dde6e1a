import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftWire

/// The topology store on a real PostgreSQL server: what a node persisted is what it loads
/// after a restart, and persisting twice writes nothing twice.
@Suite(.timeLimit(.minutes(5))) struct TopologyStoreTests {
    @Test func aRestartedNodeLoadsTheSameTopology() async throws {
        let test = try TestDomain()
        let (source, times) = try test.onboarded()
        let t = times[3].adding(micros: 1_000_000)
        try await PostgresFixture.withFixture { fixture in
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 2)
            let store = TopologyStore(database: database, domain: test.domain)
            #expect(try await store.migrate() == [1, 2])
            #expect(try await store.migrate() == [])

            // Feed the node as a sequencer stream would: one broadcast per time, persisted
            // before the in-memory state moves on.
            var state = try await store.load(changeDelayMicros: TestDomain.delayMicros)
            #expect(state.transactions.isEmpty)
            for time in times {
                let broadcast = Weft.V1.TopologyTransactionsBroadcast(
                    domain: test.domain.description,
                    transactions: source.transactions.filter { $0.sequencedAt == time }.map(\.transaction.wire))
                var next = state
                let outcome = next.add(broadcast, sequencedAt: time)
                #expect(outcome.refused.isEmpty)
                try await store.persist(outcome.changes)
                state = next
            }
            // A later change that supersedes an earlier row, persisted twice.
            var next = state
            let disable = try #require(
                try next.add(try test.admit(test.participant1, permission: .disabled, serial: 2), sequencedAt: t))
            try await store.persist(disable)
            try await store.persist(disable)
            state = next
            let rowCount = try await Self.rowCount(database)
            #expect(rowCount == state.transactions.count)

            // A new store on the same database (a restarted node) loads the same topology.
            let restarted = TopologyStore(database: PostgresDatabase(url: fixture.url), domain: test.domain)
            var loaded = try await restarted.load(changeDelayMicros: TestDomain.delayMicros)
            #expect(loaded.transactions == state.transactions)
            for time in times + [t, t.adding(micros: TestDomain.delayMicros), TestDomain.visible(t)] {
                #expect(loaded.snapshot(at: time).canonicalDump == state.snapshot(at: time).canonicalDump)
            }
            #expect(!loaded.snapshot(at: TestDomain.visible(t)).isActive(test.participant1.member))
            #expect(loaded.transactions[disable.superseded!.position].validUntil == disable.added.validFrom)

            // Replaying the whole stream into the loaded state is a no-op, so nothing to persist.
            for stored in state.transactions {
                #expect(try loaded.add(stored.transaction, sequencedAt: stored.sequencedAt) == nil)
            }
            #expect(try await Self.rowCount(database) == rowCount)

            // The wire form of the history, as ListTopologyTransactions returns it.
            let wire = loaded.transactions(inForceAt: TestDomain.visible(t)).map(\.wire)
            #expect(wire.count == state.transactions.count - 1)
            #expect(wire.allSatisfy { $0.validUntil == nil && $0.validFrom != nil })
            await database.shutdown()
            await restarted.database.shutdown()
        }
    }

    @Test func aStoreRefusesADifferentChangeDelayAndTamperedRows() async throws {
        let test = try TestDomain()
        let (state, _) = try test.onboarded()
        try await PostgresFixture.withFixture { fixture in
            let database = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            let store = TopologyStore(database: database, domain: test.domain)
            await #expect(throws: MigrationError.pending(component: "topology", versions: [1, 2])) {
                try await store.load(changeDelayMicros: TestDomain.delayMicros)
            }
            try await store.migrate()
            var replay = test.newState()
            for stored in state.transactions {
                try await store.persist(
                    try #require(try replay.add(stored.transaction, sequencedAt: stored.sequencedAt)))
            }

            // Another domain in the same database is a separate history.
            let otherDomain = try UniqueIdentifier(name: "domain2", namespace: test.domain.namespace)
            #expect(
                try await TopologyStore(database: database, domain: otherDomain).load(changeDelayMicros: 0).transactions
                    .isEmpty)

            // The delay is a domain constant: a node configured otherwise refuses to start.
            await #expect {
                try await store.load(changeDelayMicros: 0)
            } throws: { error in
                guard let error = error as? TopologyError, case .inconsistentStore(let reason) = error else {
                    return false
                }
                return reason.contains("topology change delay of 250000µs, but this node is configured with 0µs")
            }

            // A row whose signature was altered in the database no longer validates.
            let bytes = try await database.withConnection { connection in
                try connection.execute("SELECT signed_transaction FROM topology_transactions WHERE position = 9").rows[
                    0][0].bytes
            }
            var signed = try Weft.V1.SignedTopologyTransaction(serializedBytes: try #require(bytes))
            signed.signatures[0].signature[5] ^= 0x20
            let tampered = try signed.serializedBytes()
            try await database.withConnection { connection in
                _ = try connection.execute(
                    "UPDATE topology_transactions SET signed_transaction = $1 WHERE position = 9", [.bytes(tampered)])
            }
            await #expect {
                try await store.load(changeDelayMicros: TestDomain.delayMicros)
            } throws: { error in
                guard let error = error as? TopologyError, case .inconsistentStore(let reason) = error else {
                    return false
                }
                return reason.contains("position 9 no longer validates") && reason.contains("bad signature")
            }
            await database.shutdown()
        }
    }

    @Test func twoNodesWritingTheSameChangesAtOnceBothSucceed() async throws {
        // The sequencers share one database and persist every broadcast each; their transactions
        // overlap. Each round is one history (the domain's, then member copies), written by two
        // stores on separate connections at the same time, change by change.
        let test = try TestDomain()
        let (source, times) = try test.onboarded()
        try await PostgresFixture.withFixture { fixture in
            let one = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            let other = PostgresDatabase(url: fixture.url, maximumConnections: 1)
            try await TopologyStore(database: one, domain: test.domain).migrate()
            try await TopologyStore(database: one, domain: test.domain, member: test.participant1.member).migrate()
            var stores = [(TopologyStore(database: one, domain: test.domain), TopologyStore(database: other, domain: test.domain))]
            for index in 0..<15 {
                let member = MemberID(role: .participant, identifier: try UniqueIdentifier(name: "p\(index)", namespace: test.domain.namespace))
                stores.append((
                    TopologyStore(database: one, domain: test.domain, member: member),
                    TopologyStore(database: other, domain: test.domain, member: member)))
            }
            for (first, second) in stores {
                var state = test.newState()
                for time in times {
                    let broadcast = Weft.V1.TopologyTransactionsBroadcast(
                        domain: test.domain.description,
                        transactions: source.transactions.filter { $0.sequencedAt == time }.map(\.transaction.wire))
                    let changes = state.add(broadcast, sequencedAt: time).changes
                    async let a: Void = first.persist(changes)
                    async let b: Void = second.persist(changes)
                    _ = try await (a, b)
                }
                let loaded = try await first.load(changeDelayMicros: TestDomain.delayMicros)
                #expect(loaded.transactions == state.transactions)
            }
            await one.shutdown()
            await other.shutdown()
        }
    }

    static func rowCount(_ database: PostgresDatabase) async throws -> Int {
        let count = try await database.withConnection {
            try $0.execute("SELECT count(*) FROM topology_transactions").rows[0][0].int64
        }
        return Int(count ?? -1)
    }
}
