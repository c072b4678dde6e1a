import Testing
import WeftStore
import WeftTestSupport
import WeftWire

@testable import WeftSequencer

/// A small deterministic generator, so a failing run can be repeated with its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Two sequencer nodes on one database: every member's stream has consecutive counters,
/// no gaps, no duplicates, and any two members see their common events in the same order.
@Suite(.timeLimit(.minutes(3))) struct OrderingTests {
    static let members = ["PAR::p1::1220aa", "PAR::p2::1220bb", "PAR::p3::1220cc", "MED::m1::1220dd"]

    /// Starts `count` sequencer nodes on the fixture's database.
    static func nodes(_ url: String, count: Int) async throws -> [Sequencer] {
        let setup = try PostgresConnection(url: url)
        try Sequencer.migrator.migrate(setup)
        var nodes: [Sequencer] = []
        for node in 0..<count {
            // These tests are about order, not liveness: a node whose heartbeat a loaded test
            // machine delays by 5 s would be marked offline and fail its in-flight sends.
            var timing = Sequencer.Timing()
            timing.offlineAfter = .seconds(60)
            let sequencer = Sequencer(node: Int16(node), database: PostgresDatabase(url: url, maximumConnections: 4), timing: timing)
            try await sequencer.start()
            nodes.append(sequencer)
        }
        return nodes
    }

    @Test(arguments: [UInt64(20261123)])
    func concurrentMulticastOnTwoNodesIsTotallyOrderedPerMember(seed: UInt64) async throws {
        try await PostgresFixture.withFixture { fixture in
            let nodes = try await Self.nodes(fixture.url, count: 2)
            for member in Self.members { _ = try await nodes[0].register(member) }
            // The plan: each member sends 150 messages, each through a random node, to a random
            // non-empty set of members.
            var generator = SplitMix64(state: seed)
            var plan: [[(node: Int, recipients: [String])]] = []
            for _ in Self.members {
                plan.append((0..<150).map { _ in
                    let recipients = Self.members.filter { _ in Bool.random(using: &generator) }
                    return (Int.random(in: 0..<2, using: &generator), recipients.isEmpty ? [Self.members[0]] : recipients)
                })
            }
            let farFuture = SequencerWriter.now() + 3_600_000_000
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, sender) in Self.members.enumerated() {
                    let sends = plan[index]
                    group.addTask {
                        for (number, send) in sends.enumerated() {
                            let batch = Weft.V1.Batch(envelopes: [.init(content: Array("\(sender)#\(number)".utf8), recipients: send.recipients)])
                            let outcome = try await nodes[send.node].send(
                                sender: sender, messageID: "m\(number)", batch: batch, maxSequencingTime: farFuture)
                            guard case .delivered = outcome else { throw TestFailure("\(sender)#\(number): \(outcome)") }
                        }
                    }
                }
                try await group.waitForAll()
            }
            // What each member must see: every message it receives, plus a receipt for each it sent.
            var expected: [String: Set<String>] = [:]
            for (index, sender) in Self.members.enumerated() {
                for (number, send) in plan[index].enumerated() {
                    for member in Set(send.recipients + [sender]) { expected[member, default: []].insert("\(sender)/m\(number)") }
                }
            }
            var streams: [String: [StoredDelivery]] = [:]
            for (index, member) in Self.members.enumerated() {
                let want = expected[member]!.count
                var received: [StoredDelivery] = []
                // Read from alternating nodes: both give the same stream.
                for try await delivery in try await nodes[index % 2].subscribe(member, from: 0) {
                    received.append(delivery)
                    if received.count == want { break }
                }
                streams[member] = received
            }
            let directory = nodes[0].members
            for member in Self.members {
                let stream = streams[member]!
                #expect(stream.map(\.counter) == Array(0..<Int64(stream.count)), "\(member): counters are not 0, 1, 2, …")
                #expect(zip(stream, stream.dropFirst()).allSatisfy { $0.timestamp < $1.timestamp }, "\(member): timestamps not increasing")
                var keys: [String] = []
                for delivery in stream { keys.append("\(await directory.member(id: delivery.sender)!.name)/\(delivery.messageID)") }
                #expect(Set(keys) == expected[member]!, "\(member): wrong set of events")
                #expect(keys.count == Set(keys).count, "\(member): duplicates")
            }
            // Common events appear in the same order (same timestamps) for every pair of members.
            for first in Self.members {
                for second in Self.members where first < second {
                    let shared = Set(streams[first]!.map(\.timestamp)).intersection(streams[second]!.map(\.timestamp))
                    #expect(streams[first]!.map(\.timestamp).filter(shared.contains) == streams[second]!.map(\.timestamp).filter(shared.contains))
                }
            }
            // Resuming from a later counter (past a checkpoint), at the other node, gives the same suffix.
            let member = Self.members[1]
            var resumed: [StoredDelivery] = []
            let full = streams[member]!
            let from = full.count - 20
            // A stream cut short (the test's time ran out) must fail here, not trap below.
            try #require(from > Int(SequencerReader.checkpointInterval), "member stream of \(full.count) events")
            for try await delivery in try await nodes[0].subscribe(member, from: Int64(from)) {
                resumed.append(delivery)
                if resumed.count == full.count - from { break }
            }
            #expect(resumed == Array(full.dropFirst(from)))
            for node in nodes { await node.stop() }
        }
    }

    @Test func aReplayedMessageIDIsRefusedAndAnExpiredSubmissionBecomesAnError() async throws {
        try await PostgresFixture.withFixture { fixture in
            let node = try await Self.nodes(fixture.url, count: 1)[0]
            for member in Self.members { _ = try await node.register(member) }
            let batch = Weft.V1.Batch(envelopes: [.init(content: [1, 2, 3], recipients: [Self.members[1]])])
            let later = SequencerWriter.now() + 60_000_000
            guard case .delivered = try await node.send(sender: Self.members[0], messageID: "once", batch: batch, maxSequencingTime: later) else {
                Issue.record("first send not delivered")
                return
            }
            #expect(try await node.send(sender: Self.members[0], messageID: "once", batch: batch, maxSequencingTime: later) == .duplicate)
            // Already past its max sequencing time: sequenced as an error for the sender only.
            let expired = try await node.send(sender: Self.members[0], messageID: "late", batch: batch, maxSequencingTime: SequencerWriter.now() - 1)
            guard case .deliverError(_, let errorID) = expired else { Issue.record("expected a deliver error, got \(expired)"); return }
            #expect(errorID == "SEQUENCER_MAX_SEQUENCING_TIME_EXCEEDED")
            let unknown = try await node.send(
                sender: Self.members[0], messageID: "nobody", batch: .init(envelopes: [.init(content: [1], recipients: ["PAR::ghost::1220ee"])]),
                maxSequencingTime: later)
            guard case .deliverError(_, let unknownID) = unknown else { Issue.record("expected a deliver error, got \(unknown)"); return }
            #expect(unknownID == "SEQUENCER_UNKNOWN_RECIPIENTS")
            await #expect(throws: SequencerError.unknownSender("PAR::ghost::1220ee")) {
                _ = try await node.send(sender: "PAR::ghost::1220ee", messageID: "x", batch: batch, maxSequencingTime: later)
            }
            // The sender's stream: receipt, then the two errors; the recipient got only the first.
            var senderStream: [StoredDelivery] = []
            for try await delivery in try await node.subscribe(Self.members[0], from: 0) {
                senderStream.append(delivery)
                if senderStream.count == 3 { break }
            }
            #expect(senderStream.map(\.messageID) == ["once", "late", "nobody"])
            #expect(senderStream.map { $0.error?.errorID } == [nil, "SEQUENCER_MAX_SEQUENCING_TIME_EXCEEDED", "SEQUENCER_UNKNOWN_RECIPIENTS"])
            await node.stop()
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One reader per node: subscriptions that have caught up take their deliveries from it.
@Suite(.timeLimit(.minutes(3))) struct FanOutTests {
    @Test func caughtUpSubscriptionsShareOneReadPerAdvanceWithTheSameStreams() async throws {
        try await PostgresFixture.withFixture { fixture in
            let node = try await OrderingTests.nodes(fixture.url, count: 1)[0]
            let members = OrderingTests.members
            for member in members { _ = try await node.register(member) }
            let count = 300
            // Every member subscribes before anything is sent, then reads everything it gets.
            let streams = try await withThrowingTaskGroup(of: (Int, [StoredDelivery]).self) { group in
                for (index, member) in members.enumerated() {
                    let stream = try await node.subscribe(member, from: 0)
                    group.addTask {
                        var received: [StoredDelivery] = []
                        for try await delivery in stream {
                            received.append(delivery)
                            if received.count == count { break }
                        }
                        return (index, received)
                    }
                }
                // Member 0 sends to all others, one at a time: one commit each.
                let later = SequencerWriter.now() + 600_000_000
                for number in 0..<count {
                    let batch = Weft.V1.Batch(envelopes: [.init(content: Array("m\(number)".utf8), recipients: Array(members.dropFirst()))])
                    let outcome = try await node.send(sender: members[0], messageID: "m\(number)", batch: batch, maxSequencingTime: later)
                    guard case .delivered = outcome else { throw TestFailure("m\(number): \(outcome)") }
                }
                var streams = [[StoredDelivery]](repeating: [], count: members.count)
                for try await (index, received) in group { streams[index] = received }
                return streams
            }
            // A stream cut short (cancelled at the time limit) must fail here, not crash below.
            try #require(streams.allSatisfy { $0.count == count }, "streams of \(streams.map(\.count)) deliveries")
            for stream in streams {
                #expect(stream.map(\.counter) == (0..<Int64(count)).map { $0 })
                #expect(stream.map(\.messageID) == (0..<count).map { "m\($0)" })
            }
            // 300 commits, 4 subscriptions: reading on their own they would have queried ~1,200
            // times. This node writes alone, so its commits hand their deliveries over and the
            // shared reader reads almost none back.
            let shared = await node.reader.fanOut.reads
            let handed = await node.reader.fanOut.handedOver
            let own = node.reader.fanOut.ownReads.load(ordering: .relaxed)
            #expect(handed >= count - 10, "\(handed) of \(count) commits handed over, \(shared) read")
            #expect(shared < 10, "the shared reader read \(shared) times")
            #expect(own < 60, "subscriptions read \(own) pages on their own")
            // The checkpoint the shared path recorded is right: a new subscription from past it
            // gets exactly the same deliveries.
            let checkpoint = try PostgresConnection(url: fixture.url).execute(
                "SELECT ts FROM sequencer_counter_checkpoints c JOIN sequencer_members m ON m.id = c.member WHERE m.member = $1 AND c.counter = 256",
                [.text(members[1])]
            ).rows.first.flatMap { try $0[0].int64 }
            #expect(checkpoint == streams[1][256].timestamp)
            var again: [StoredDelivery] = []
            for try await delivery in try await node.subscribe(members[1], from: 260) {
                again.append(delivery)
                if again.count == count - 260 { break }
            }
            #expect(again == Array(streams[1][260...]))
            await node.stop()
        }
    }

    /// What a member's stream is made of, whichever way it was read (a delivery served from the
    /// block cache may have left its batch in the database).
    static func shape(_ stream: [StoredDelivery]) -> [String] {
        stream.map { "\($0.counter) \($0.timestamp) \($0.sender) \($0.messageID) \($0.recipients) \(String(describing: $0.block))" }
    }

    @Test func withAnotherNodeWritingTooANodeTakesItsOwnEventsFromItsCommits() async throws {
        try await PostgresFixture.withFixture { fixture in
            let nodes = try await OrderingTests.nodes(fixture.url, count: 2)
            let members = OrderingTests.members
            for member in members { _ = try await nodes[0].register(member) }
            let count = 150
            // Every member subscribes at node 0 first; member 0 sends through node 0 and member 1
            // through node 1 at the same time, each to every other member: each stream gets both.
            let streams = try await withThrowingTaskGroup(of: (Int, [StoredDelivery]).self) { group in
                for (index, member) in members.enumerated() {
                    let stream = try await nodes[0].subscribe(member, from: 0)
                    group.addTask {
                        var received: [StoredDelivery] = []
                        for try await delivery in stream {
                            received.append(delivery)
                            if received.count == 2 * count { break }
                        }
                        return (index, received)
                    }
                }
                let later = SequencerWriter.now() + 600_000_000
                try await withThrowingTaskGroup(of: Void.self) { senders in
                    for sender in 0..<2 {
                        senders.addTask {
                            for number in 0..<count {
                                let batch = Weft.V1.Batch(envelopes: [
                                    .init(content: Array("\(sender)/\(number)".utf8), recipients: members.filter { $0 != members[sender] })
                                ])
                                let outcome = try await nodes[sender].send(
                                    sender: members[sender], messageID: "m\(number)", batch: batch, maxSequencingTime: later)
                                guard case .delivered = outcome else { throw TestFailure("\(sender)/m\(number): \(outcome)") }
                            }
                        }
                    }
                    try await senders.waitForAll()
                }
                var streams = [[StoredDelivery]](repeating: [], count: members.count)
                for try await (index, received) in group { streams[index] = received }
                return streams
            }
            try #require(streams.allSatisfy { $0.count == 2 * count }, "streams of \(streams.map(\.count)) deliveries")
            // The shared reader left node 0's events in the database on most of its reads.
            let fromMemory = await nodes[0].reader.fanOut.ownEventsFromMemory
            let reads = await nodes[0].reader.fanOut.reads
            #expect(fromMemory > reads / 2, "\(fromMemory) of \(reads) reads took node 0's events from its commits")
            // Each stream is the one a subscription reading on its own from the database gets.
            for (index, member) in members.enumerated() {
                var again: [StoredDelivery] = []
                for try await delivery in try await nodes[1].subscribe(member, from: 0) {
                    again.append(delivery)
                    if again.count == 2 * count { break }
                }
                let (expected, served) = (Self.shape(again), Self.shape(streams[index]))
                let differs = expected.indices.first { $0 >= served.count || expected[$0] != served[$0] }
                #expect(differs == nil, "\(member): delivery \(differs ?? 0) is \(differs.map { served[$0] } ?? ""), not \(differs.map { expected[$0] } ?? "")")
                var batchesDiffer: [String] = []
                for (first, second) in zip(again, streams[index]) where try await nodes[1].reader.batch(of: first) != nodes[0].reader.batch(of: second) {
                    batchesDiffer.append(first.messageID)
                }
                #expect(batchesDiffer.isEmpty, "\(member): other batches in \(batchesDiffer.prefix(5))")
            }
            for node in nodes { await node.stop() }
        }
    }
}

/// The writer's group commits (docs/sequencer.md §3).
@Suite(.timeLimit(.minutes(2))) struct GroupCommitTests {
    static let members = OrderingTests.members

    /// A started node with the given spacing, the members registered; and a connection to its database.
    static func node(_ url: String, spacing: Duration, fromGroupSize: Int) async throws -> (Sequencer, PostgresConnection) {
        let setup = try PostgresConnection(url: url)
        try Sequencer.migrator.migrate(setup)
        var timing = Sequencer.Timing()
        timing.offlineAfter = .seconds(60)
        timing.groupCommitSpacing = spacing
        timing.groupCommitSpacingFromGroupSize = fromGroupSize
        let node = Sequencer(node: 0, database: PostgresDatabase(url: url, maximumConnections: 4), timing: timing)
        try await node.start()
        for member in members { _ = try await node.register(member) }
        return (node, setup)
    }

    /// `groupCommitSpacing`: submissions that arrive within the spacing after a group commit
    /// started wait for the next one and go together; each transaction of the writer is one
    /// group, so the events' inserting transactions (`xmin`) count the groups.
    @Test func submissionsWithinTheSpacingShareOneGroupCommit() async throws {
        try await PostgresFixture.withFixture { fixture in
            // Long, so that on a loaded machine the 12 sends are surely all waiting before it ends
            // (with 400 ms, a full parallel test run once split the burst in two); after any
            // group, here the first, of one.
            let (node, setup) = try await Self.node(fixture.url, spacing: .seconds(3), fromGroupSize: 1)
            let farFuture = SequencerWriter.now() + 3_600_000_000
            func send(_ sender: String, _ id: String) async throws {
                let batch = Weft.V1.Batch(envelopes: [.init(content: Array(id.utf8), recipients: [Self.members[3]])])
                let outcome = try await node.send(sender: sender, messageID: id, batch: batch, maxSequencingTime: farFuture)
                guard case .delivered = outcome else { throw TestFailure("\(id): \(outcome)") }
            }
            // The first group starts at once; the next waits out the spacing from its start.
            let start = ContinuousClock.now
            try await send(Self.members[0], "first")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for number in 0..<12 {
                    group.addTask { try await send(Self.members[number % 3], "burst-\(number)") }
                }
                try await group.waitForAll()
            }
            #expect(ContinuousClock.now - start >= .seconds(3), "the burst did not wait for the spacing")
            let groups = try setup.execute(
                "SELECT count(DISTINCT xmin::text)::int8 FROM sequencer_events WHERE message_id = 'first' OR message_id LIKE 'burst-%'"
            ).rows[0][0].int64
            #expect(groups == 2, "the first send and the burst of 12 were written in \(groups ?? 0) transactions, not 2")
            await node.stop()
        }
    }

    /// With two nodes online, a node spaces its groups twice as far apart: every group costs
    /// work on every node, so the domain commits about as often as one node would.
    @Test func theSpacingGrowsWithTheOnlineNodes() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (node, setup) = try await Self.node(fixture.url, spacing: .seconds(2), fromGroupSize: 1)
            var timing = Sequencer.Timing()
            timing.offlineAfter = .seconds(60)
            let other = Sequencer(node: 1, database: PostgresDatabase(url: fixture.url, maximumConnections: 4), timing: timing)
            try await other.start()
            let farFuture = SequencerWriter.now() + 3_600_000_000
            func send(_ id: String) async throws {
                let batch = Weft.V1.Batch(envelopes: [.init(content: Array(id.utf8), recipients: [Self.members[3]])])
                let outcome = try await node.send(sender: Self.members[0], messageID: id, batch: batch, maxSequencingTime: farFuture)
                guard case .delivered = outcome else { throw TestFailure("\(id): \(outcome)") }
            }
            let start = ContinuousClock.now
            try await send("first")  // its commit tells the writer that 2 nodes are online
            #expect(await node.writer.onlineWriters == 2)
            try await send("second")
            #expect(ContinuousClock.now - start >= .seconds(4), "the second group did not wait for twice the spacing")
            let groups = try setup.execute(
                "SELECT count(DISTINCT xmin::text)::int8 FROM sequencer_events WHERE message_id IN ('first', 'second')"
            ).rows[0][0].int64
            #expect(groups == 2)
            await other.stop()
            await node.stop()
        }
    }

    /// A node whose groups stay small (one submission at a time) is not under load: each
    /// group starts at once, the spacing does not apply.
    @Test func groupsBelowTheLoadThresholdAreNotSpaced() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (node, _) = try await Self.node(fixture.url, spacing: .seconds(5), fromGroupSize: Sequencer.Timing().groupCommitSpacingFromGroupSize)
            let farFuture = SequencerWriter.now() + 3_600_000_000
            let start = ContinuousClock.now
            for number in 0..<3 {
                let batch = Weft.V1.Batch(envelopes: [.init(content: [UInt8(number)], recipients: [Self.members[3]])])
                let outcome = try await node.send(sender: Self.members[0], messageID: "one-\(number)", batch: batch, maxSequencingTime: farFuture)
                guard case .delivered = outcome else { throw TestFailure("one-\(number): \(outcome)") }
            }
            // Spaced, the three would take at least 10 s.
            #expect(ContinuousClock.now - start < .seconds(5), "single submissions waited for the spacing")
            await node.stop()
        }
    }
}
