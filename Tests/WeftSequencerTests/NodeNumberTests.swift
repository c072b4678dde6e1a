import Foundation
import Logging
import Synchronization
import Testing
import WeftStore
import WeftTestSupport
import WeftWire

@testable import WeftSequencer

/// One live process per sequencer node number (docs/sequencer.md §3.6): two writers with one
/// number would give out the same timestamps and move one watermark. A second one is refused
/// while the first holds the number's lock; one that lost its lock (with its connection) to
/// another process commits nothing more.
@Suite(.timeLimit(.minutes(5))) struct NodeNumberTests {
    static let members = OrderingTests.members

    /// A node numbered 0 on `url`, started; `heartbeat` long keeps it from noticing a lost lock
    /// by itself, so that the write path is what finds out.
    static func node(
        _ url: String, heartbeat: Duration = .milliseconds(500), lockWait: Duration = .seconds(3), logger: Logger = Logger(label: "test")
    ) async throws -> Sequencer {
        var timing = Sequencer.Timing()
        timing.heartbeatInterval = heartbeat
        timing.offlineAfter = .seconds(7200)
        timing.nodeLockWait = lockWait
        let node = Sequencer(node: 0, database: PostgresDatabase(url: url, maximumConnections: 4), timing: timing, logger: logger)
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

    /// Ends the server session that holds node 0's lock, as a database restart or a network cut
    /// would; returns how many it ended.
    static func endLockSession(_ database: PostgresConnection) throws -> Int64? {
        try database.execute(
            """
            SELECT count(pg_terminate_backend(pid)) FROM pg_locks
            WHERE locktype = 'advisory' AND classid = $1::int8::oid AND objid = 0 AND objsubid = 2 AND granted
            """, [.int64(Int64(SequencerWriter.nodeLockNamespace))]
        ).rows[0][0].int64
    }

    /// Waits (up to 20 s) until `condition` holds.
    static func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestFailure("timed out waiting until \(what)") }
            try await Task.sleep(for: .milliseconds(20))
        }
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
                guard case SequencerWriterError.nodeNumberInUse(node: 0, let holder?) = error else { return false }
                return "\(error)".contains("in use by another live process") && holder.contains("server process")
            }
            #expect(ContinuousClock.now - started >= .milliseconds(300), "refused before its lock wait")
            // The refused node changed nothing: the first is still the writer, and sequences.
            #expect(try Self.incarnation(database) == incarnation)
            guard case .delivered = try await Self.send(first, "after-refusal") else {
                Issue.record("the first node no longer sequences")
                return
            }

            // Once the first has stopped, the number is free at once (it unlocks before it goes).
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
            #expect(try Self.endLockSession(database) == 1, "the node's lock session was not found in pg_locks")

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
                if case SequencerWriterError.nodeNumberInUse(node: 0, _) = error { true } else { false }
            }

            // The stale process stops while the successor writes: it marks nothing offline.
            await stale.stop()
            let row = try database.execute("SELECT online FROM sequencer_writers WHERE node = 0").rows[0]
            #expect(try row[0].bool == true, "the stale process marked its successor offline")
            guard case .delivered = try await Self.send(successor, "successor-after") else {
                Issue.record("the successor stopped sequencing when the stale process stopped")
                return
            }
            let order = try database.execute("SELECT message_id FROM sequencer_events ORDER BY ts").rows.map { try $0[0].string ?? "" }
            #expect(order == ["before", "successor", "successor-after"])
            await successor.stop()
        }
    }

    /// The heartbeat finds the lock lost and held by another session: the node stops writing,
    /// says so once, tries to take its number back at every heartbeat, and writes again under a
    /// new incarnation once the other session lets go.
    @Test func aNodeDisplacedByAnotherHolderTakesItsNumberBackWhenItIsFree() async throws {
        try await PostgresFixture.withFixture { fixture in
            let database = try PostgresConnection(url: fixture.url)
            try Sequencer.migrator.migrate(database)
            let lines = CapturedLog()
            var logger = Logger(label: "weft.sequencer") { _ in lines }
            logger.logLevel = .debug
            let node = try await Self.node(fixture.url, heartbeat: .milliseconds(50), logger: logger)
            for member in Self.members { _ = try await node.register(member) }
            let incarnation = try #require(try Self.incarnation(database))

            // Another session takes the number the moment the node's session ends: it waits for
            // the lock before the node's next heartbeat can ask for it again.
            // A session of its own on a thread of its own: it blocks until the lock is free,
            // keeps it until told to let go, then lets go.
            let letGo = DispatchSemaphore(value: 0)
            let url = fixture.url
            let other = Thread {
                do {
                    let other = try PostgresConnection(url: url)
                    _ = try other.execute("SELECT pg_advisory_lock($1::int8::int4, 0)", [.int64(Int64(SequencerWriter.nodeLockNamespace))])
                    letGo.wait()
                    _ = try other.execute("SELECT pg_advisory_unlock($1::int8::int4, 0)", [.int64(Int64(SequencerWriter.nodeLockNamespace))])
                } catch {
                    Issue.record("the other session failed: \(error)")
                }
            }
            other.start()
            try await Self.eventually("the other session waits for the lock") {
                try database.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 0 AND NOT granted").rows[0][0].int64 == 1
            }
            #expect(try Self.endLockSession(database) == 1)
            try await Self.eventually("the node notices and tries to take its number back three times") {
                lines.count(containing: "trying to take this sequencer node's number back") >= 3
            }
            await #expect(throws: SequencerWriterError.self) { _ = try await Self.send(node, "displaced") }
            #expect(lines.count(containing: "another process holds this sequencer node's number now") == 1)
            #expect(try Self.incarnation(database) == incarnation)

            letGo.signal()
            // Its join has committed (the incarnation) and come back to the writer (online): sends
            // in between are refused, and a member retries them.
            try await Self.eventually("the node is the writer again") {
                let online = await node.writer.online
                return try online && Self.incarnation(database) == incarnation + 1
            }
            guard case .delivered = try await Self.send(node, "back") else {
                Issue.record("the node does not sequence after taking its number back")
                return
            }
            #expect(lines.count(containing: "this process is the node's writer again") == 1)
            let stored = try database.execute("SELECT message_id FROM sequencer_events ORDER BY ts").rows.map { try $0[0].string ?? "" }
            #expect(stored == ["back"])
            await node.stop()
        }
    }
    /// A node that loses its database says what it could not do and what follows, once rather than
    /// at every heartbeat: it cannot check for silent nodes to mark offline, and, stopping, cannot
    /// leave the writers. Both failures used to pass without a line.
    @Test func aNodeWithoutItsDatabaseSaysWhatItCouldNotDoOnce() async throws {
        try await PostgresFixture.withFixture { fixture in
            try Sequencer.migrator.migrate(try PostgresConnection(url: fixture.url))
            let lines = CapturedLog()
            var timing = Sequencer.Timing()
            timing.offlineAfter = .seconds(1)  // a check for silent nodes every 200 ms
            timing.heartbeatInterval = .milliseconds(50)
            let node = Sequencer(
                node: 0, database: PostgresDatabase(url: fixture.url, maximumConnections: 4), timing: timing,
                logger: Logger(label: "weft.sequencer") { _ in lines })
            try await node.start()
            // The pool shut down: every query fails at once, as with a database that is away.
            await node.database.shutdown()
            try await Self.eventually("the node says it cannot check for silent nodes") {
                lines.count(containing: "cannot check for silent sequencer nodes") == 1 && lines.count(containing: "heartbeat failed") >= 10
            }
            // Ten heartbeats, about two checks: one line for as long as it lasts (every 20th after).
            #expect(lines.count(containing: "cannot check for silent sequencer nodes") == 1)
            await node.stop()
            #expect(lines.count(containing: "could not leave the writers") == 1)
        }
    }
}

/// Log lines kept in memory, for tests that check what a node said.
final class CapturedLog: LogHandler, @unchecked Sendable {
    private let lines = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lines.withLock { $0.append("\(event.level) \(event.message)") }
    }

    func count(containing text: String) -> Int {
        lines.withLock { $0.filter { $0.contains(text) }.count }
    }
}
