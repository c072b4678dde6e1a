import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport
import WeftTransport
import WeftWire

@testable import WeftSequencer

/// Blocks of events signed once per group commit (docs/sequencer.md §5): the Merkle proofs, what
/// a member refuses, and verification from the stored blocks alone.
@Suite(.timeLimit(.minutes(5))) struct BlockSigningTests {
    static func leaves(_ count: Int, seed: UInt64) -> [[UInt8]] {
        var random = SplitMix64(state: seed)
        return (0..<count).map { _ in SequencedBlockTree.leaf((0..<40).map { _ in UInt8(truncatingIfNeeded: random.next()) }) }
    }

    @Test func everyLeafOfEveryShapeProvesTheRootAndNothingElseDoes() throws {
        for count in 1...37 {
            let leaves = Self.leaves(count, seed: UInt64(count))
            let tree = SequencedBlockTree(leaves: leaves)
            for index in 0..<count {
                let siblings = tree.siblings(of: index)
                #expect(siblings.count <= 6)
                let root = try SequencedBlockTree.root(leaf: leaves[index], index: UInt64(index), count: UInt64(count), siblings: siblings)
                #expect(root == tree.root, "leaf \(index) of \(count)")
                // Another leaf at this place leads elsewhere.
                let other = leaves[(index + 1) % count]
                if count > 1 {
                    #expect(try SequencedBlockTree.root(leaf: other, index: UInt64(index), count: UInt64(count), siblings: siblings) != tree.root)
                }
                // A changed sibling leads elsewhere.
                if var changed = siblings.first {
                    changed[0] ^= 1
                    let tampered = [changed] + siblings.dropFirst()
                    #expect(try SequencedBlockTree.root(leaf: leaves[index], index: UInt64(index), count: UInt64(count), siblings: tampered) != tree.root)
                }
            }
        }
    }

    @Test func aProofOfTheWrongShapeIsMalformed() throws {
        let leaves = Self.leaves(5, seed: 7)
        let tree = SequencedBlockTree(leaves: leaves)
        let siblings = tree.siblings(of: 1)
        func malformed(_ body: () throws -> [UInt8]) -> Bool {
            do {
                _ = try body()
                return false
            } catch {
                if case .malformedBlockProof = error as? SequencerClientError { return true }
                return false
            }
        }
        #expect(malformed { try SequencedBlockTree.root(leaf: leaves[1], index: 1, count: 5, siblings: Array(siblings.dropLast())) })
        #expect(malformed { try SequencedBlockTree.root(leaf: leaves[1], index: 1, count: 5, siblings: siblings + [siblings[0]]) })
        #expect(malformed { try SequencedBlockTree.root(leaf: leaves[1], index: 5, count: 5, siblings: siblings) })
        #expect(malformed { try SequencedBlockTree.root(leaf: leaves[1], index: 0, count: 0, siblings: []) })
        #expect(malformed { try SequencedBlockTree.root(leaf: leaves[1], index: 1, count: 5, siblings: [Array(siblings[0].dropLast())] + siblings.dropFirst()) })
        #expect(malformed { try SequencedBlockTree.root(leaf: leaves[1], index: 1, count: SequencedBlockTree.leafCountMaximum + 1, siblings: siblings) })
    }

    /// Alice sends to Bob and herself; Bob's raw stream: events of a signed block.
    static func bobsSignedEvents(_ url: String, count: Int) async throws -> (
        domain: TestDomain, node: ServiceTests.Node, events: [Weft.V1.SignedSequencedEvent], bob: TestDomain.Participant
    ) {
        let (domain, node, _, alice, bob, aliceClient, bobClient) = try await ServiceTests.startWithAliceAndBob(url)
        for number in 0..<count {
            try await aliceClient.send(
                .init(envelopes: [
                    .init(content: Array("to bob \(number)".utf8), recipients: [bob.member.description]),
                    .init(content: Array("to alice \(number)".utf8), recipients: [alice.member.description]),
                ]), messageID: "m\(number)")
        }
        var events: [Weft.V1.SignedSequencedEvent] = []
        for try await response in try bobClient.rpc.sequencer.subscribe(.init(member: bobClient.member, fromCounter: 0), metadata: bobClient.authorization) {
            let signed = try #require(response.signedEvent)
            let event = try Weft.V1.SequencedEvent(serializedBytes: signed.event)
            if case .deliver(let deliver)? = event.event, deliver.messageID == "m\(count - 1)" {
                events.append(signed)
                break
            }
            events.append(signed)
        }
        return (domain, node, events, bob)
    }

    @Test func aMemberVerifiesBlockProofsAndRefusesEveryTamperedPart() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, events, bob) = try await Self.bobsSignedEvents(fixture.url, count: 3)
            let keys = [domain.sequencerKey.publicKey]
            var verifier = SequencedEventVerifier(keys: keys)
            for (counter, signed) in events.enumerated() {
                // Every event is in block form: no signature of its own, counter beside the signed bytes.
                #expect(signed.signature == nil)
                let proof = try #require(signed.blockProof)
                #expect(proof.leafCount >= 2)  // Alice's receipt and Bob's delivery at least
                #expect(signed.counter == UInt64(counter))
                let event = try verifier.verify(signed)
                #expect(event.counter == UInt64(counter))
                #expect(event.recipient == bob.member.description)
            }
            let good = try #require(events.last)
            let proof = try #require(good.blockProof)
            #expect(!proof.siblings.isEmpty)
            func refused(_ change: (inout Weft.V1.SignedSequencedEvent) -> Void) -> SequencerClientError? {
                var tampered = good
                change(&tampered)
                var fresh = SequencedEventVerifier(keys: keys)
                do {
                    _ = try fresh.verify(tampered)
                    return nil
                } catch {
                    return error as? SequencerClientError
                }
            }
            // The event's bytes: the leaf, hence the root, changes.
            #expect(refused { $0.event[$0.event.count - 1] ^= 1 } == .badSignature)
            // A sibling hash.
            #expect(refused { $0.blockProof!.siblings[0][5] ^= 1 } == .badSignature)
            // The block signature.
            #expect(refused { $0.blockProof!.blockSignature!.signature[0] ^= 1 } == .badSignature)
            // The leaf index: another path, another root (or an impossible one).
            #expect(refused { $0.blockProof!.leafIndex ^= 1 } != nil)
            // The leaf count: signed with the root.
            #expect(refused { $0.blockProof!.leafCount += 1 } != nil)
            // A missing sibling.
            if case .malformedBlockProof? = refused({ $0.blockProof!.siblings.removeLast() }) {} else { Issue.record("a missing sibling was not refused as malformed") }
            // No signature at all, or one by a key that is not the sequencers'.
            #expect(refused { $0.blockProof!.blockSignature = nil } == .unsigned)
            let stranger = try SigningPrivateKey.generate()
            let tree = SequencedBlockTree(leaves: [SequencedBlockTree.leaf(good.event)])
            #expect(
                refused {
                    $0.blockProof = .init(
                        blockSignature: try? stranger.sign(SequencedBlockTree.signedHash(leafCount: 1, root: tree.root)),
                        leafCount: 1, leafIndex: 0, siblings: [])
                } == .unsigned)
            // Both forms at once is ambiguous; a counter inside the signed bytes contradicts the one beside.
            if case .malformedBlockProof? = refused({ $0.signature = proof.blockSignature }) {} else { Issue.record("both forms at once were not refused") }
            let withCounter = try {
                var event = try Weft.V1.SequencedEvent(serializedBytes: good.event)
                event.counter = 7
                return try event.serializedBytes()
            }()
            #expect(refused { $0.event = withCounter } != nil)
            await node.stop()
        }
    }

    @Test func aMemberVerifiesEveryEventFromTheStoredBlocksAloneAlsoWithEventsFromBeforeBlocks() async throws {
        try await PostgresFixture.withFixture { fixture in
            let first = try await Self.bobsSignedEvents(fixture.url, count: 20)
            var domain = first.domain  // Node.start takes it inout
            let events = first.events
            let member = first.bob.member.description
            await first.node.stop()
            // Bob's first three events as if stored before blocks were signed: served signed one by one.
            let connection = try PostgresConnection(url: fixture.url)
            let unblocked = try connection.execute(
                """
                UPDATE sequencer_events SET block_ts = NULL WHERE ts IN (
                    SELECT ts FROM sequencer_deliveries WHERE member = (SELECT id FROM sequencer_members WHERE member = $1) ORDER BY ts LIMIT 3)
                RETURNING ts
                """, [.text(member)]
            ).rows.count
            #expect(unblocked == 3)
            // A new node on the stored data: nothing in memory, every block read from the database.
            let replay = try await ServiceTests.Node.start(fixture.url, domain: &domain, initialize: false)
            await replay.topology.waitUntil(first.bob.member)
            let client = try await SequencerClient.authenticate(
                try await replay.connect(), member: member, key: first.bob.signingKey, domain: domain.domain.description,
                sequencerKeys: [domain.sequencerKey.publicKey])
            var verifier = SequencedEventVerifier(keys: [domain.sequencerKey.publicKey])
            var expected: [Weft.V1.SequencedEvent] = []
            for signed in events { expected.append(try verifier.verify(signed)) }
            var replayed: [Weft.V1.SequencedEvent] = []
            var ownSignatures = 0
            for try await response in try client.rpc.sequencer.subscribe(.init(member: member, fromCounter: 0), metadata: client.authorization) {
                let signed = try #require(response.signedEvent)
                if signed.signature != nil { ownSignatures += 1 }
                replayed.append(try verifier.verify(signed))
                if replayed.count == expected.count { break }
            }
            #expect(replayed == expected)
            #expect(ownSignatures == 3)
            await replay.stop()
        }
    }

    /// The node's shared reader leaves the batches of the events of its own cached blocks in the
    /// database (the subscriptions serve those events from the cache); whoever needs such a batch
    /// all the same (an event served without the cache, the topology follower) reads it then.
    @Test func theSharedReaderLeavesCachedBatchesInTheDatabaseAndEveryConsumerStillGetsThem() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, _, _, bob, aliceClient, _) = try await ServiceTests.startWithAliceAndBob(fixture.url)
            let bobName = bob.member.description
            // Caught up before the sends, so that the deliveries come from the shared reader.
            var items = try await node.sequencer.subscribeItems(bobName, from: 0).makeAsyncIterator()
            while let item = try await items.next() {
                if case .caughtUp = item { break }
            }
            let handedBefore = await node.sequencer.reader.fanOut.handedOver
            // Sent one at a time until three deliveries came from the shared reader, as the first
            // three do on an idle machine. On a loaded one, another subscription may have started
            // the shared reader past bob's point meanwhile (a heartbeat moved the safe point), and
            // bob reads a page on its own before it follows the reader (seen once in a full run).
            var live: [StoredDelivery] = []
            var batches: [Weft.V1.Batch] = []
            var sent = 0
            while live.count < 3, sent < 20 {
                let batch = Weft.V1.Batch(envelopes: [.init(content: Array("to bob \(sent)".utf8), recipients: [bobName])])
                try await aliceClient.send(batch, messageID: "m\(sent)")
                while let item = try await items.next() {
                    guard case .delivery(let delivery) = item, delivery.messageID == "m\(sent)" else { continue }
                    if delivery.batchLeftInDatabase {
                        live.append(delivery)
                        batches.append(batch)
                    }
                    break
                }
                sent += 1
            }
            try #require(live.count == 3, "\(live.count) of \(sent) deliveries from the shared reader")
            for (delivery, batch) in zip(live, batches) {
                #expect(delivery.batch == nil)
                #expect(try await node.sequencer.reader.batch(of: delivery) == (try batch.serializedBytes()))
                // Served with the cache: the bytes the block hashed. Without it (no block place
                // here): rebuilt from the batch read now, and signed on its own.
                let cached = try await node.provider.signed(delivery, for: bobName, domain: domain.domain.description)
                #expect(cached.blockProof != nil)
                var uncached = delivery
                uncached.block = nil
                let rebuilt = try await node.provider.signed(uncached, for: bobName, domain: domain.domain.description)
                #expect(rebuilt.signature != nil)
                for signed in [cached, rebuilt] {
                    let event = try Weft.V1.SequencedEvent(serializedBytes: signed.event)
                    guard case .deliver(let deliver)? = event.event else {
                        Issue.record("\(delivery.messageID) is not a deliver: \(event)")
                        continue
                    }
                    #expect(deliver.batch == batch)
                }
            }
            // This node writes alone: its commits handed these deliveries to the shared reader,
            // which read none of them back. They are the deliveries a subscription reading on
            // its own finds in the database, block places included; only the batch is left there.
            #expect(await node.sequencer.reader.fanOut.handedOver - handedBefore >= batches.count)
            var own: [StoredDelivery] = []
            var fresh = try await node.sequencer.subscribeItems(bobName, from: 0).makeAsyncIterator()
            while own.count < live.count, let item = try await fresh.next() {
                if case .delivery(let delivery) = item, live.contains(where: { $0.messageID == delivery.messageID }) {
                    own.append(delivery)
                }
            }
            for (handed, read) in zip(live, own) {
                #expect(handed.block != nil)
                #expect(read.batch == (try await node.sequencer.reader.batch(of: handed)))
                #expect(!read.batchLeftInDatabase && read.error == nil && handed.error == nil)
                #expect(
                    [handed.counter, handed.timestamp, Int64(handed.sender)] == [read.counter, read.timestamp, Int64(read.sender)])
                #expect([handed.messageID, handed.traceparent] == [read.messageID, read.traceparent])
                #expect(handed.recipients == read.recipients && handed.block == read.block)
            }
            // A forced prune between the read and the serving: an error, never an empty batch.
            let first = try #require(live.first)
            _ = try PostgresConnection(url: fixture.url).execute("DELETE FROM sequencer_events WHERE ts = $1", [.int64(first.timestamp)])
            await #expect(throws: SequencerReadError.prunedWhileServing(timestamp: first.timestamp)) {
                try await node.sequencer.reader.batch(of: first)
            }
            await node.stop()
        }
    }
}

/// The events' bytes a node keeps for its own recent blocks are bounded in bytes as well as in
/// blocks: the oldest go first, and a block larger than the whole budget is not kept (its
/// events are read from the database).
@Suite struct BlockCacheBoundTests {
    static func block(_ events: [[UInt8]]) -> SignedBlock {
        SignedBlock(tree: SequencedBlockTree(leaves: events.map(SequencedBlockTree.leaf)), signature: .init())
    }

    @Test func keptEventsAreBoundedInBytes() {
        let cache = BlockCache(database: PostgresDatabase(url: "postgres://unused@127.0.0.1:1/unused"))
        let quarter = BlockCache.eventsBytesCapacity / 4
        let big: [[UInt8]] = [[UInt8](repeating: 1, count: quarter), [UInt8](repeating: 2, count: quarter)]
        for timestamp in Int64(1)...3 { cache.insert(Self.block(big), node: 0, timestamp: timestamp, events: big) }
        // Three blocks of half the budget each: the first went when the third came.
        #expect(cache.blocksWithEvents(of: 0) == [2, 3])
        #expect(cache.eventBytes(BlockPlace(node: 0, timestamp: 1, leaf: 0))?.count == nil)
        #expect(cache.eventBytes(BlockPlace(node: 0, timestamp: 3, leaf: 1))?.first == 2)
        // A block over the whole budget is not kept, and evicts nothing.
        let huge: [[UInt8]] = [[UInt8](repeating: 3, count: BlockCache.eventsBytesCapacity + 1)]
        cache.insert(Self.block(huge), node: 0, timestamp: 4, events: huge)
        #expect(cache.blocksWithEvents(of: 0) == [2, 3])
        // Small blocks: up to the count bound, oldest first.
        for timestamp in Int64(5)...Int64(4 + BlockCache.eventsCapacity) {
            cache.insert(Self.block([[9]]), node: 0, timestamp: timestamp, events: [[9]])
        }
        #expect(cache.blocksWithEvents(of: 0) == Array(Int64(5)...Int64(4 + BlockCache.eventsCapacity)))
    }
}
