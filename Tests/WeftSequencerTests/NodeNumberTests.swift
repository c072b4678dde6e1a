import Testing
import WeftStore
import WeftTestSupport
import WeftWire

@testable import WeftSequencer

/// One live process per sequencer node number (docs/sequencer.md §3.6): two writers with one
/// number would give out the same timestamps and move one watermark. A second one is refused
/// while the first holds the number's lock; one that lost its lock (with its connection) to
/// another process commits nothing more.
@Suite(.timeLimit(.minutes(2))) struct NodeNumberTests {
    static let members = OrderingTests.members

    /// A node numbered 0 on `url`, started; `heartbeat` long keeps it from noticing a lost lock
    /// by itself, so that the write path is what finds out.
    static func node(_ url: String, heartbeat: Duration = .milliseconds(500), lockWait: Duration = .seconds(3)) async throws -> Sequencer {
        var timing = Sequencer.Timing()
        timing.heartbeatInterval = heartbeat
        timing.offlineAfter = .seconds(7200)
        timing.nodeLockWait = lockWait
        let node = Sequencer(node: 0, database: PostgresDatabase(url: url, maximumConnections: 4), timing: timing)
        try await node.start()
        return node
    }

    static func send(_ node: Sequencer, _ id: String) async throws -> SequencingOutcome {
        let batch = Weft.V1.Batch(envelopes: [.init(content: Array(id.utf8), recipients: [members[1]])])
        return try await node.send(sender: members[0], messageID: id, batch: batch, maxSequencingTime: SequencerWriter.now() + 60_000_000)
    }

    static func incarnation(_ database: PostgresConnection) throws -> Int64? {
        try database.execute("SELECT incarnation FROM sequencer_writers WHERE node = 0").rows.first?[0].int64
    }

    @Test func aSecondLiveProcessWithTheSameNumberIsRefused() async throws {
        try await PostgresFixture.withFixture { fixture in
            let database = try PostgresConnection(url: fixture.url)
            try Sequencer.migrator.migrate(database)
            let first = try await Self.node(fixture.url)
            for member in Self.members { _ = try await first.register(member) }
            let incarnation = try Self.incarnation(database)

            let started = ContinuousClock.now
            await #expect {
                _ = try await Self.node(fixture.url, lockWait: .milliseconds(300))
            } throws: { error in
                guard case SequencerWriterError.nodeNumberInUse(node: 0) = error else { return false }
                return "\(error)".contains("in use by another live process")
            }
            #expect(ContinuousClock.now - started >= .milliseconds(300), "refused before its lock wait")
            // The refused node changed nothing: the first is still the writer, and sequences.
            #expect(try Self.incarnation(database) == incarnation)
            guard case .delivered = try await Self.send(first, "after-refusal") else {
                Issue.record("the first node no longer sequences")
                return
            }

            // Once the first has stopped, the number is free.
            await first.stop()
            let second = try await Self.node(fixture.url, lockWait: .zero)
            #expect(try Self.incarnation(database) == incarnation.map { $0 + 1 })
            guard case .delivered = try await Self.send(second, "from-second") else {
                Issue.record("the second node does not sequence")
                return
            }
            await second.stop()
        }
    }

    /// A writer whose lock went with its connection (here: its server session terminated, as a
    /// database restart or a network cut would) while another process took the number: its
    /// next group is rolled back whole, and it cannot rejoin until the other lets go.
    @Test func aWriterWhoseNumberWasTakenOverCommitsNothing() async throws {
        try await PostgresFixture.withFixture { fixture in
            let database = try PostgresConnection(url: fixture.url)
            try Sequencer.migrator.migrate(database)
            let stale = try await Self.node(fixture.url, heartbeat: .seconds(3600))
            for member in Self.members { _ = try await stale.register(member) }
            guard case .delivered = try await Self.send(stale, "before") else {
                Issue.record("first send not delivered")
                return
            }
            let ended = try database.execute(
                """
                SELECT count(pg_terminate_backend(pid)) FROM pg_locks
                WHERE locktype = 'advisory' AND classid = $1::int8::oid AND objid = 0 AND objsubid = 2 AND granted
                """, [.int64(Int64(SequencerWriter.nodeLockNamespace))]
            ).rows[0][0].int64
            #expect(ended == 1, "the node's lock session was not found in pg_locks")

            let successor = try await Self.node(fixture.url, lockWait: .seconds(10))
            await #expect(throws: SequencerWriterError.self) { _ = try await Self.send(stale, "stale") }
            for table in ["sequencer_events", "sequencer_submissions"] {
                let rows = try database.execute("SELECT count(*) FROM \(table) WHERE message_id = 'stale'").rows
                #expect(try rows[0][0].int64 == 0, "\(table) holds the stale writer's submission")
            }
            guard case .delivered = try await Self.send(successor, "successor") else {
                Issue.record("the successor does not sequence")
                return
            }
            await #expect {
                try await stale.writer.comeOnline()
            } throws: { error in
                if case SequencerWriterError.nodeNumberInUse(node: 0) = error { true } else { false }
            }

            // The successor stops: the stale process may come back, under a new incarnation.
            let successorIncarnation = try Self.incarnation(database)
            await successor.stop()
            try await stale.writer.comeOnline()
            #expect(try Self.incarnation(database) == successorIncarnation.map { $0 + 1 })
            guard case .delivered = try await Self.send(stale, "rejoined") else {
                Issue.record("the rejoined node does not sequence")
                return
            }
            let order = try database.execute("SELECT message_id FROM sequencer_events ORDER BY ts").rows.map { try $0[0].string ?? "" }
            #expect(order == ["before", "successor", "rejoined"])
            await stale.stop()
        }
    }
}
