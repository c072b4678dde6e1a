import Testing
import WeftStore
import WeftTestSupport
import WeftWire

@testable import WeftSequencer

/// Wake-ups by notification (docs/sequencer.md §3): with the fallback heartbeat and poll set
/// to an hour, only notifications can move the safe point in these tests, so an event that
/// arrives at all arrived because of them.
@Suite(.timeLimit(.minutes(5))) struct NotificationTests {
    static let sender = "PAR::p1::1220aa"
    static let receiver = "PAR::p2::1220bb"

    /// Two nodes whose timers never fire during a test.
    static func nodesWithoutTimers(_ url: String) async throws -> [Sequencer] {
        let setup = try PostgresConnection(url: url)
        try Sequencer.migrator.migrate(setup)
        var timing = Sequencer.Timing()
        timing.heartbeatInterval = .seconds(3600)
        timing.pollInterval = .seconds(3600)
        timing.offlineAfter = .seconds(7200)
        var nodes: [Sequencer] = []
        for node in 0..<2 {
            let sequencer = Sequencer(node: Int16(node), database: PostgresDatabase(url: url, maximumConnections: 4), timing: timing)
            try await sequencer.start()
            nodes.append(sequencer)
        }
        return nodes
    }

    static func send(_ messageID: String, through node: Sequencer) async throws {
        let batch = Weft.V1.Batch(envelopes: [.init(content: Array(messageID.utf8), recipients: [Self.receiver])])
        let outcome = try await node.send(
            sender: Self.sender, messageID: messageID, batch: batch, maxSequencingTime: SequencerWriter.now() + 3_600_000_000)
        guard case .delivered = outcome else { throw TestFailure("\(messageID): \(outcome)") }
    }

    @Test func anIdleNodeLetsTheOtherNodesEventsThroughAlsoAfterTheListenersWereKilled() async throws {
        try await PostgresFixture.withFixture { fixture in
            let nodes = try await Self.nodesWithoutTimers(fixture.url)
            for member in [Self.sender, Self.receiver] { _ = try await nodes[0].register(member) }
            // The receiver reads at the idle node (which must advance its watermark when told of
            // node 0's events) and at the busy one (which must hear of that advance).
            var atIdle = try await nodes[1].subscribe(Self.receiver, from: 0).makeAsyncIterator()
            var atBusy = try await nodes[0].subscribe(Self.receiver, from: 0).makeAsyncIterator()
            try await Self.send("first", through: nodes[0])
            #expect(try await atIdle.next()?.messageID == "first")
            #expect(try await atBusy.next()?.messageID == "first")

            // Both listening connections killed: whatever is sent while they reconnect may be
            // lost, and each node looks again once its listener is back.
            let admin = try PostgresConnection(url: fixture.url)
            let killed = try admin.execute(
                "SELECT count(*)::int8 FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"weft_sequencer\"') AS t"
            ).rows[0][0].int64 ?? 0
            #expect(killed >= 1)
            try await Self.send("second", through: nodes[0])
            #expect(try await atIdle.next()?.messageID == "second")
            #expect(try await atBusy.next()?.messageID == "second")

            // And the idle node's own events reach readers at the other node too.
            try await Self.send("third", through: nodes[1])
            #expect(try await atIdle.next()?.messageID == "third")
            #expect(try await atBusy.next()?.messageID == "third")
            for node in nodes { await node.stop() }
        }
    }

    /// A local commit hands its readers the safe point its own statement read: with one node and
    /// no fallback poll, each event reaches a waiting subscriber, and the writers' table is not
    /// read again for it (before, every commit cost a read).
    @Test func aLocalCommitMovesTheSafePointWithoutAReadOfTheWritersTable() async throws {
        try await PostgresFixture.withFixture { fixture in
            let setup = try PostgresConnection(url: fixture.url)
            try Sequencer.migrator.migrate(setup)
            var timing = Sequencer.Timing()
            timing.heartbeatInterval = .seconds(3600)
            timing.pollInterval = .seconds(3600)
            timing.offlineAfter = .seconds(7200)
            let node = Sequencer(node: 0, database: PostgresDatabase(url: fixture.url, maximumConnections: 4), timing: timing)
            try await node.start()
            for member in [Self.sender, Self.receiver] { _ = try await node.register(member) }
            var stream = try await node.subscribe(Self.receiver, from: 0).makeAsyncIterator()
            try await Self.send("first", through: node)
            #expect(try await stream.next()?.messageID == "first")
            let before = await node.safePoint.reads
            let events = 20
            for index in 0..<events {
                try await Self.send("next-\(index)", through: node)
                let delivery = try #require(try await stream.next())
                #expect(delivery.messageID == "next-\(index)")
                // The shared reader had the delivery handed over; the safe point moved past it
                // too, with no read and no poll.
                #expect(await node.safePoint.current >= delivery.timestamp)
            }
            // At most two reads may still be due to the node's start: its listener reports that
            // it listens (a poke) whenever its connection is up, which may be after "first", and
            // a poke that wakes the poller when nobody waits any more is kept for the next wait
            // (a read each).
            let after = await node.safePoint.reads
            #expect(after - before <= 2, "\(after - before) reads of the writers' table for \(events) local commits")
            await node.stop()
        }
    }

    /// A migrated database with one online writer at watermark 100, and a safe point over it that
    /// polls only once an hour (so that only pokes and local commits move it).
    static func safePointAtWatermark100(_ url: String) throws -> (PostgresConnection, PostgresDatabase, SafePoint) {
        let setup = try PostgresConnection(url: url)
        try Sequencer.migrator.migrate(setup)
        _ = try setup.execute("INSERT INTO sequencer_writers (node, watermark, online, heartbeat_at) VALUES (0, 100, true, now())")
        let database = PostgresDatabase(url: url, maximumConnections: 2)
        return (setup, database, SafePoint(database: database, pollInterval: .seconds(3600)))
    }

    /// A poke that wakes the poller after a local commit's safe point served every waiter is kept
    /// for the next waiter. It was spent on the empty poller, and the next waiter slept until the
    /// poll interval (an hour here): another node's watermark advance went unseen that long.
    @Test func aPokeThatFindsNobodyWaitingIsKeptForTheNextWait() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (setup, database, safePoint) = try Self.safePointAtWatermark100(fixture.url)
            // A waiter the table cannot serve yet: the poller reads once, then sleeps.
            let first = Task { try await safePoint.wait(after: 100) }
            while await safePoint.sleeps == 0 { await Task.yield() }
            // A local commit serves it; the poller sleeps on with nobody waiting.
            await safePoint.committed(150)
            #expect(try await first.value == 150)
            // Another writer moves its watermark, and its notification pokes: the poller wakes,
            // finds nobody waiting, and stops.
            _ = try setup.execute("UPDATE sequencer_writers SET watermark = 200")
            await safePoint.poke()
            while await safePoint.isPolling { await Task.yield() }
            // The next waiter reads at once (a deadline, so that a lost poke fails here rather
            // than at the suite's time limit).
            let served = await withTaskGroup(of: Int64?.self) { group in
                group.addTask { try? await safePoint.wait(after: 150) }
                group.addTask {
                    // Past the deadline the waiter is failed, so that the group can end.
                    guard (try? await Task.sleep(for: .seconds(20))) != nil else { return nil }
                    await safePoint.close(CancellationError())
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            #expect(served == 200, "the next waiter was not served within 20 s")
            await safePoint.close(CancellationError())
            await database.shutdown()
        }
    }

    /// A waiter that is cancelled leaves at once: a subscription whose member went away must not
    /// wait for the safe point to move (on an idle domain nothing may move it for a long time).
    @Test func aCancelledWaitForTheSafePointEndsAtOnce() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (_, database, safePoint) = try Self.safePointAtWatermark100(fixture.url)
            let waiter = Task { try await safePoint.wait(after: 100) }
            while await safePoint.sleeps == 0 { await Task.yield() }  // it waits; the poller sleeps
            waiter.cancel()
            let ended = await withTaskGroup(of: String?.self) { group in
                group.addTask {
                    do {
                        _ = try await waiter.value
                        return "served"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
                group.addTask {
                    // A deadline, so that a waiter left waiting fails here, not at the suite's limit.
                    guard (try? await Task.sleep(for: .seconds(20))) != nil else { return nil }
                    struct StillWaiting: Error {}
                    await safePoint.close(StillWaiting())
                    return "still waiting after 20 s"
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            #expect(ended == "cancelled")
            await safePoint.close(CancellationError())
            await database.shutdown()
        }
    }

    @Test func notificationPayloadsRoundTrip() {
        for message in [
            WriterNotification.events(node: 3, watermark: 1_764_000_000_000_003), .watermark(node: 31, watermark: 5), .needed(node: 2, watermark: 9), .joined(node: 0, watermark: 0),
            .left(by: 7),
        ] {
            #expect(WriterNotification(payload: message.payload) == message)
        }
        #expect(WriterNotification(payload: "x:1:2") == nil)
        #expect(WriterNotification(payload: "e:1") == nil)
    }
}
