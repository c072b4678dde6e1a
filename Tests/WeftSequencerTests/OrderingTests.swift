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
@Suite(.timeLimit(.minutes(5))) struct OrderingTests {
    static let members = ["PAR::p1::1220aa", "PAR::p2::1220bb", "PAR::p3::1220cc", "MED::m1::1220dd"]

    /// Starts `count` sequencer nodes on the fixture's database.
    /// `quietHeartbeat`: the nodes' heartbeats are an hour apart, so that only their commits move
    /// the safe point (a heartbeat's watermark is an advance of its own, read by the fan-out).
    static func nodes(_ url: String, count: Int, quietHeartbeat: Bool = false) async throws -> [Sequencer] {
        let setup = try PostgresConnection(url: url)
        try Sequencer.migrator.migrate(setup)
        var nodes: [Sequencer] = []
        for node in 0..<count {
            // These tests are about order, not liveness: a node whose heartbeat a loaded test
            // machine delays by 5 s would be marked offline and fail its in-flight sends.
            var timing = Sequencer.Timing()
            timing.offlineAfter = .seconds(60)
            if quietHeartbeat {
                timing.offlineAfter = .seconds(36_000)
                timing.heartbeatInterval = .seconds(3600)
            }
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
            // non-empty set of members, asking for its receipt or not at random.
            var generator = SplitMix64(state: seed)
            var plan: [[(node: Int, recipients: [String], omitReceipt: Bool)]] = []
            for _ in Self.members {
                plan.append((0..<150).map { _ in
                    let recipients = Self.members.filter { _ in Bool.random(using: &generator) }
                    return (
                        Int.random(in: 0..<2, using: &generator), recipients.isEmpty ? [Self.members[0]] : recipients,
                        Bool.random(using: &generator)
                    )
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
                                sender: sender, messageID: "m\(number)", batch: batch, maxSequencingTime: farFuture,
                                omitReceipt: send.omitReceipt)
                            guard case .delivered = outcome else { throw TestFailure("\(sender)#\(number): \(outcome)") }
                        }
                    }
                }
                try await group.waitForAll()
            }
            // What each member must see: every message it receives, plus a receipt for each it sent
            // without omitting it.
            var expected: [String: Set<String>] = [:]
            for (index, sender) in Self.members.enumerated() {
                for (number, send) in plan[index].enumerated() {
                    for member in Set(send.recipients + (send.omitReceipt ? [] : [sender])) {
                        expected[member, default: []].insert("\(sender)/m\(number)")
                    }
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
                for delivery in stream { keys.append("\(try await directory.member(id: delivery.sender)!.name)/\(delivery.messageID)") }
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

    /// docs/sequencer.md §3.5: once another node has marked this one offline, readers may have
    /// passed its timestamps, so nothing of its next group may commit.
    @Test func aGroupOfANodeMarkedOfflineIsRolledBackWhole() async throws {
        try await PostgresFixture.withFixture { fixture in
            try Sequencer.migrator.migrate(try PostgresConnection(url: fixture.url))
            // No heartbeat during the test: the group, not the heartbeat, must find the node offline.
            var timing = Sequencer.Timing()
            timing.heartbeatInterval = .seconds(3600)
            timing.offlineAfter = .seconds(7200)
            let node = Sequencer(node: 0, database: PostgresDatabase(url: fixture.url, maximumConnections: 4), timing: timing)
            try await node.start()
            for member in Self.members { _ = try await node.register(member) }
            let batch = Weft.V1.Batch(envelopes: [.init(content: [1, 2, 3], recipients: [Self.members[1]])])
            let later = SequencerWriter.now() + 60_000_000
            guard case .delivered = try await node.send(sender: Self.members[0], messageID: "before", batch: batch, maxSequencingTime: later) else {
                Issue.record("first send not delivered")
                return
            }
            // Another node's verdict on this one (its heartbeat looked late), as it writes it.
            let other = try PostgresConnection(url: fixture.url)
            _ = try other.execute("UPDATE sequencer_writers SET online = false WHERE node = 0")
            await #expect(throws: (any Error).self) {
                try await node.send(sender: Self.members[0], messageID: "while-offline", batch: batch, maxSequencingTime: later)
            }
            for table in ["sequencer_events", "sequencer_submissions"] {
                let rows = try other.execute("SELECT count(*) FROM \(table) WHERE message_id = 'while-offline'").rows
                #expect(try rows[0][0].int64 == 0, "\(table)")
            }
            #expect(try other.execute("SELECT count(*) FROM sequencer_events WHERE message_id = 'before'").rows[0][0].int64 == 1)
            await node.stop()
        }
    }

    @Test func aGroupWithARepeatedMessageIDStoresTheOthers() async throws {
        try await PostgresFixture.withFixture { fixture in
            let node = try await Self.nodes(fixture.url, count: 1)[0]
            for member in Self.members { _ = try await node.register(member) }
            let batch = Weft.V1.Batch(envelopes: [.init(content: [4, 5], recipients: [Self.members[1]])])
            let later = SequencerWriter.now() + 60_000_000
            _ = try await node.send(sender: Self.members[0], messageID: "first", batch: batch, maxSequencingTime: later)
            // Sent together, so that they may share a group: the repeat is refused, the new ones
            // (the same message id from another sender among them) are stored.
            async let repeated = node.send(sender: Self.members[0], messageID: "first", batch: batch, maxSequencingTime: later)
            async let fresh = node.send(sender: Self.members[0], messageID: "second", batch: batch, maxSequencingTime: later)
            async let other = node.send(sender: Self.members[1], messageID: "first", batch: batch, maxSequencingTime: later)
            let outcomes = try await [repeated, fresh, other]
            #expect(outcomes[0] == .duplicate)
            guard case .delivered = outcomes[1], case .delivered = outcomes[2] else {
                Issue.record("expected the new message ids delivered: \(outcomes)")
                return
            }
            let stored = try PostgresConnection(url: fixture.url).execute("SELECT count(*) FROM sequencer_events").rows[0][0].int64
            #expect(stored == 3)
            await node.stop()
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

    /// Recipients are resolved once per name, whatever the batch repeats: a member named in
    /// many envelopes, many times each, receives the event once; a batch naming thousands of
    /// names that do not exist is one deliver error listing each once (it read the members'
    /// table once, not twice per name).
    @Test func recipientsNamedManyTimesAreResolvedOnce() async throws {
        try await PostgresFixture.withFixture { fixture in
            let node = try await Self.nodes(fixture.url, count: 1)[0]
            for member in Self.members { _ = try await node.register(member) }
            let later = SequencerWriter.now() + 60_000_000
            let repeated = Weft.V1.Batch(
                envelopes: (0..<50).map { _ in .init(content: [7], recipients: Array(repeating: Self.members[1], count: 200)) })
            guard case .delivered = try await node.send(sender: Self.members[0], messageID: "many", batch: repeated, maxSequencingTime: later)
            else {
                Issue.record("the batch naming one member 10,000 times was not delivered")
                return
            }
            let ghosts = (0..<2_000).map { "PAR::ghost\($0 % 1_000)::1220ee" }
            let haunted = try await node.send(
                sender: Self.members[0], messageID: "ghosts", batch: .init(envelopes: [.init(content: [1], recipients: ghosts)]),
                maxSequencingTime: later)
            guard case .deliverError(_, let errorID) = haunted else { Issue.record("expected a deliver error, got \(haunted)"); return }
            #expect(errorID == "SEQUENCER_UNKNOWN_RECIPIENTS")
            guard
                case .delivered = try await node.send(
                    sender: Self.members[0], messageID: "last",
                    batch: .init(envelopes: [.init(content: [9], recipients: [Self.members[1]])]), maxSequencingTime: later)
            else {
                Issue.record("the last send was not delivered")
                return
            }
            var received: [String] = []
            for try await delivery in try await node.subscribe(Self.members[1], from: 0) {
                received.append(delivery.messageID)
                if delivery.messageID == "last" { break }
            }
            #expect(received == ["many", "last"])
            var senderStream: [StoredDelivery] = []
            for try await delivery in try await node.subscribe(Self.members[0], from: 0) {
                senderStream.append(delivery)
                if delivery.messageID == "last" { break }
            }
            let error = try #require(senderStream.first { $0.messageID == "ghosts" }?.error)
            #expect(error.message.components(separatedBy: "PAR::ghost").count - 1 == 1_000, "each unknown name listed once")
            await node.stop()
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One reader per node: subscriptions that have caught up take their deliveries from it.
@Suite(.timeLimit(.minutes(5))) struct FanOutTests {
    @Test func caughtUpSubscriptionsShareOneReadPerAdvanceWithTheSameStreams() async throws {
        try await PostgresFixture.withFixture { fixture in
            // A heartbeat during the sends would be a range the shared reader reads, and the
            // next commit would start behind it (not handed over): how many there are would
            // depend on how slow the machine is.
            let node = try await OrderingTests.nodes(fixture.url, count: 1, quietHeartbeat: true)[0]
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

    /// The kept span of this node's commits: consecutive commits extend it, a gap (a group that
    /// may have committed unseen, a rejoin) restarts it, and a range outside it is read whole.
    @Test func theKeptCommitsSpanOnlyWhatTheyHold() async throws {
        let database = PostgresDatabase(url: "postgresql://nobody@127.0.0.1:1/none", maximumConnections: 1)
        let fanOut = DeliveryFanOut(database: database, safePoint: SafePoint(database: database), node: 0, blocks: BlockCache(database: database))
        func delivery(_ timestamp: Int64) -> StoredDelivery {
            StoredDelivery(counter: 0, timestamp: timestamp, sender: 1, messageID: "m\(timestamp)", batch: [1], traceparent: "", recipients: [2], error: nil)
        }
        func commit(_ after: Int64, _ upTo: Int64, _ timestamps: [Int64]) -> LocalCommit {
            // Another writer is ahead, so no commit is handed over as a range of its own.
            LocalCommit(after: after, upTo: upTo, safePoint: after, othersHighest: upTo + 100, deliveries: timestamps.isEmpty ? [:] : [2: timestamps.map(delivery)])
        }
        func timestamps(_ after: Int64, _ upTo: Int64) async -> [Int64]? {
            await fanOut.ownDeliveries(after: after, upTo: upTo).map { ($0[2] ?? []).map(\.timestamp) }
        }
        #expect(await timestamps(0, 10) == nil, "nothing kept yet")
        await fanOut.committedLocally(commit(0, 10, [3, 7]))
        await fanOut.committedLocally(commit(10, 20, [15]))
        await fanOut.committedLocally(commit(20, 25, []))  // a heartbeat
        #expect(await timestamps(0, 25) == [3, 7, 15])
        #expect(await timestamps(3, 15) == [7, 15])
        #expect(await timestamps(15, 25) == [])
        #expect(await timestamps(0, 26) == nil, "past the last commit")
        // A group that may have committed unseen up to 30: the next commit starts past it.
        await fanOut.committedLocally(commit(30, 40, [35]))
        #expect(await timestamps(25, 40) == nil, "the gap may hold this node's events")
        #expect(await timestamps(20, 40) == nil)
        #expect(await timestamps(30, 40) == [35])
        // Bounded: the oldest commits go once more than 256 are kept.
        for index in Int64(0)..<300 { await fanOut.committedLocally(commit(40 + index * 10, 50 + index * 10, [45 + index * 10])) }
        #expect(await timestamps(30, 100) == nil, "pruned")
        #expect(await timestamps(3000, 3040) == [3005, 3015, 3025, 3035])
        await fanOut.close()
        #expect(await timestamps(3000, 3040) == nil, "closed")
        await database.shutdown()
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
            // The shared reader took most deliveries of node 0's events (4 per send: the sender's
            // receipt and 3 recipients) from its commits, not from the database.
            let fromMemory = await nodes[0].reader.fanOut.ownDeliveriesFromMemory
            #expect(fromMemory > 2 * count, "\(fromMemory) of \(4 * count) deliveries of node 0's events taken from its commits")
            // Each stream is what the database holds for the member, batches included.
            let database = try PostgresConnection(url: fixture.url)
            for (index, member) in members.enumerated() {
                let rows = try database.execute(
                    """
                    SELECT e.ts, e.sender::int8, e.message_id, e.batch FROM sequencer_deliveries d
                    JOIN sequencer_events e ON e.ts = d.ts JOIN sequencer_members m ON m.id = d.member
                    WHERE m.member = $1 ORDER BY d.ts
                    """, [.text(member)]
                ).rows
                let expected = try rows.map { "\(try $0[0].int64 ?? 0) \(try $0[1].int64 ?? 0) \(try $0[2].string ?? "")" }
                let served = streams[index].map { "\($0.timestamp) \($0.sender) \($0.messageID)" }
                let differs = expected.indices.first { $0 >= served.count || expected[$0] != served[$0] }
                #expect(differs == nil && expected.count == served.count, "\(member): delivery \(differs ?? served.count) differs")
                #expect(streams[index].map(\.counter) == (0..<Int64(served.count)).map { $0 }, "\(member): counters")
                var batchesDiffer: [String] = []
                for (row, delivery) in zip(rows, streams[index]) where try await row[3].bytes != nodes[0].reader.batch(of: delivery) {
                    batchesDiffer.append(delivery.messageID)
                }
                #expect(batchesDiffer.isEmpty, "\(member): other batches in \(batchesDiffer.prefix(5))")
            }
            for node in nodes { await node.stop() }
        }
    }

    /// A caught-up stream follows the shared reader, which numbers nothing itself: a forced prune
    /// that removed part of a range before this node's shared reader read it (the member paused,
    /// the events sequenced through another node) must not give the deliveries left the removed
    /// ones' counters. Counters 3…7 are sent while Bob's streams at node 0 pause, and 3…5 pruned:
    /// a stream that still needs counter 3 fails as a subscription from it would, and one from
    /// counter 7 gets counter 7 with its own event.
    @Test func aPruneOfARangeTheSharedReaderHasNotReadKeepsEachDeliverysCounter() async throws {
        try await PostgresFixture.withFixture { fixture in
            // Quiet heartbeats: only the sends move the safe point, so node 0's shared reader reads
            // nothing while Bob's streams pause.
            let nodes = try await OrderingTests.nodes(fixture.url, count: 2, quietHeartbeat: true)
            let (alice, bob) = (OrderingTests.members[0], OrderingTests.members[1])
            for member in [alice, bob] { _ = try await nodes[0].register(member) }
            let bobID = try #require(try await nodes[0].members.member(named: bob)).id
            let later = SequencerWriter.now() + 600_000_000
            var sent: [Int64] = []  // Bob's counter n is sent[n]
            func send(through node: Sequencer) async throws {
                let number = sent.count
                let batch = Weft.V1.Batch(envelopes: [.init(content: Array("m\(number)".utf8), recipients: [bob])])
                let outcome = try await node.send(
                    sender: alice, messageID: "m\(number)", batch: batch, maxSequencingTime: later, omitReceipt: true)
                guard case .delivered(let timestamp) = outcome else { throw TestFailure("m\(number): \(outcome)") }
                sent.append(timestamp)
            }
            /// The stream's deliveries until it is caught up with `timestamp`, or its error.
            func read(
                _ stream: inout AsyncThrowingStream<SequencerReader.Item, any Error>.Iterator, until timestamp: Int64
            ) async -> Result<[StoredDelivery], any Error> {
                var deliveries: [StoredDelivery] = []
                do {
                    while let item = try await stream.next() {
                        switch item {
                        case .delivery(let delivery): deliveries.append(delivery)
                        case .caughtUp(let upTo) where upTo >= timestamp: return .success(deliveries)
                        case .caughtUp: continue
                        }
                    }
                    return .failure(TestFailure("the stream ended after \(deliveries.count) deliveries"))
                } catch {
                    return .failure(error)
                }
            }
            for _ in 0..<3 { try await send(through: nodes[0]) }
            _ = try await nodes[0].safePoint.wait(after: sent[2] - 1)
            var fromStart = nodes[0].reader.items(member: bobID, memberName: bob, from: 0).makeAsyncIterator()
            let first = try await read(&fromStart, until: sent[2]).get()
            #expect(first.map(\.counter) == [0, 1, 2])
            var fromSeven = nodes[0].reader.items(member: bobID, memberName: bob, from: 7).makeAsyncIterator()
            #expect(try await read(&fromSeven, until: sent[2]).get().isEmpty)

            // Both streams pause (nobody asks node 0's shared reader for more); Alice sends five
            // more through node 1, and a forced prune removes Bob's counters up to 5.
            for _ in 0..<5 { try await send(through: nodes[1]) }
            _ = try await nodes[1].safePoint.wait(after: sent[7] - 1)
            let outcome = try await nodes[1].prune(upToInclusive: sent[5], force: true)
            #expect(outcome.membersCutOff.contains(bob))
            _ = try await nodes[0].safePoint.wait(after: sent[7] - 1)

            // Both streams resume from the shared reader, not pages of their own.
            let pagesBefore = nodes[0].reader.fanOut.ownReads.load(ordering: .relaxed)
            switch await read(&fromStart, until: sent[7]) {
            case .success(let deliveries):
                Issue.record(
                    "no pruned error; got counters \(deliveries.map(\.counter)) at \(deliveries.map(\.timestamp)), sent \(sent)")
            case .failure(let error):
                #expect(error as? SequencerReadError == .pruned(member: bob, requested: 0, firstAvailable: 6))
            }
            let resumed = try await read(&fromSeven, until: sent[7]).get()
            #expect(resumed.map(\.counter) == [7])
            #expect(resumed.map(\.timestamp) == [sent[7]])
            let pagesAfter = nodes[0].reader.fanOut.ownReads.load(ordering: .relaxed)
            #expect(pagesAfter == pagesBefore, "a stream read pages of its own")
            // A new subscription agrees.
            var again: [StoredDelivery] = []
            for try await delivery in try await nodes[0].subscribe(bob, from: 6) {
                again.append(delivery)
                if again.count == 2 { break }
            }
            #expect(again.map(\.counter) == [6, 7])
            #expect(again.map(\.timestamp) == [sent[6], sent[7]])
            for node in nodes { await node.stop() }
        }
    }
}

/// The writer's group commits (docs/sequencer.md §3).
@Suite(.timeLimit(.minutes(5))) struct GroupCommitTests {
    static let members = OrderingTests.members

    /// Sends `id` from `sender` to the fourth member through `node`; throws unless delivered.
    static func send(_ node: Sequencer, from sender: String, _ id: String, until maxSequencingTime: Int64) async throws {
        let batch = Weft.V1.Batch(envelopes: [.init(content: Array(id.utf8), recipients: [members[3]])])
        let outcome = try await node.send(sender: sender, messageID: id, batch: batch, maxSequencingTime: maxSequencingTime)
        guard case .delivered = outcome else { throw TestFailure("\(id): \(outcome)") }
    }

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
            // Long, so that on a loaded machine the 7 sends are surely all waiting before it ends
            // (with 400 ms, and later with 3 s, the suite's first wave on two cores once split the
            // burst in two); after any two groups, here the first two, of one. Seven: eight
            // waiting would end the wait.
            let (node, setup) = try await Self.node(fixture.url, spacing: .seconds(20), fromGroupSize: 1)
            let farFuture = SequencerWriter.now() + 3_600_000_000
            func send(_ sender: String, _ id: String) async throws { try await Self.send(node, from: sender, id, until: farFuture) }
            // The first two groups start at once; the next waits out the spacing from the
            // second's start.
            try await send(Self.members[0], "zero")
            let start = ContinuousClock.now
            try await send(Self.members[0], "first")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for number in 0..<7 {
                    group.addTask { try await send(Self.members[number % 3], "burst-\(number)") }
                }
                try await group.waitForAll()
            }
            #expect(ContinuousClock.now - start >= .seconds(20), "the burst did not wait for the spacing")
            let groups = try setup.execute(
                "SELECT count(DISTINCT xmin::text)::int8 FROM sequencer_events WHERE message_id = 'first' OR message_id LIKE 'burst-%'"
            ).rows[0][0].int64
            #expect(groups == 2, "the first send and the burst of 7 were written in \(groups ?? 0) transactions, not 2")
            await node.stop()
        }
    }

    /// Under load means the last two groups, not one: a single group of a few is a burst that
    /// arrived together (a transaction's responses), and the group after it (the verdict) goes
    /// at once.
    @Test func theSpacingNeedsTwoGroupsLargeEnough() {
        #expect(SequencerWriter.spaced(last: 2, previous: 2, from: 2))
        #expect(SequencerWriter.spaced(last: 9, previous: 3, from: 2))
        #expect(!SequencerWriter.spaced(last: 3, previous: 1, from: 2))
        #expect(!SequencerWriter.spaced(last: 1, previous: 5, from: 2))
        #expect(!SequencerWriter.spaced(last: 3, previous: 0, from: 2), "a pause resets the sizes to zero")
    }

    /// Eight submissions waiting end the spacing's wait: a group that large shares its cost
    /// well, and waiting longer only adds latency.
    @Test func eightWaitingSubmissionsDoNotWaitOutTheSpacing() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (node, setup) = try await Self.node(fixture.url, spacing: .seconds(60), fromGroupSize: 1)
            let farFuture = SequencerWriter.now() + 3_600_000_000
            func send(_ sender: String, _ id: String) async throws { try await Self.send(node, from: sender, id, until: farFuture) }
            try await send(Self.members[0], "zero")
            try await send(Self.members[0], "first")
            // Seven wait out the spacing (a minute, after two groups of one); the eighth ends it.
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                let eight = SequencerWriter.groupWithoutSpacing
                for number in 0..<(eight - 1) {
                    group.addTask { try await send(Self.members[number % 3], "burst-\(number)") }
                }
                let deadline = ContinuousClock.now + .seconds(20)
                while await node.writer.waitingSubmissions < eight - 1, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(await node.writer.waitingSubmissions == eight - 1, "the seven are not waiting")
                group.addTask { try await send(Self.members[0], "burst-\(eight - 1)") }
                try await group.waitForAll()
            }
            #expect(ContinuousClock.now - start < .seconds(30), "the burst waited out the spacing")
            let groups = try setup.execute("SELECT count(DISTINCT xmin::text)::int8 FROM sequencer_events WHERE message_id LIKE 'burst-%'").rows[0][0].int64
            #expect(groups == 1, "the burst of eight was written in \(groups ?? 0) transactions, not 1")
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
            func send(_ id: String) async throws { try await Self.send(node, from: Self.members[0], id, until: farFuture) }
            try await send("zero")  // its commit tells the writer that 2 nodes are online
            let start = ContinuousClock.now
            try await send("first")
            #expect(await node.writer.onlineWriters == 2)
            try await send("second")  // after two groups of one
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
            // A spacing far longer than any commit, even with the whole suite's first wave on two
            // cores (three sends took 6.4 s there once), so that the bound below tells them apart.
            let (node, _) = try await Self.node(fixture.url, spacing: .seconds(40), fromGroupSize: Sequencer.Timing().groupCommitSpacingFromGroupSize)
            let farFuture = SequencerWriter.now() + 3_600_000_000
            let start = ContinuousClock.now
            for number in 0..<3 {
                let batch = Weft.V1.Batch(envelopes: [.init(content: [UInt8(number)], recipients: [Self.members[3]])])
                let outcome = try await node.send(sender: Self.members[0], messageID: "one-\(number)", batch: batch, maxSequencingTime: farFuture)
                guard case .delivered = outcome else { throw TestFailure("one-\(number): \(outcome)") }
            }
            // Spaced, the three would take at least 80 s.
            #expect(ContinuousClock.now - start < .seconds(30), "single submissions waited for the spacing")
            await node.stop()
        }
    }
}
