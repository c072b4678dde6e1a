import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftWire

@testable import WeftSequencer

/// A member's topology from its own stream: the history the sequencers send it as its first
/// event, then the broadcasts (docs/sequencer.md §4, docs/topology.md §6).
@Suite(.serialized, .timeLimit(.minutes(5))) struct MemberTopologyTests {
    /// One delivered topology envelope, as a member processes it.
    struct TopologyEvent {
        let counter: UInt64
        let content: Weft.V1.EnvelopeContent
        let sequencedAt: SequencingTimestamp
        let sender: String
    }

    /// Reads `client`'s stream from 0 and applies its topology envelopes to `topology` until it
    /// holds `count` transactions; returns the topology events read.
    static func follow(_ client: SequencerClient, into topology: MemberTopology, until count: Int) async throws -> [TopologyEvent] {
        var events: [TopologyEvent] = []
        for try await event in try client.subscribe(from: 0) {
            guard case .deliver(let deliver)? = event.event, let timestamp = event.timestamp else { continue }
            for envelope in deliver.batch?.envelopes ?? [] {
                guard let content = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content) else { continue }
                switch content.message {
                case .topologySnapshot?, .topologyBroadcast?:
                    let at = SequencingTimestamp(timestamp)
                    events.append(TopologyEvent(counter: event.counter, content: content, sequencedAt: at, sender: deliver.sender))
                    try await topology.apply(content, sequencedAt: at, sender: deliver.sender)
                default: continue
                }
            }
            if await topology.transactions.count >= count { break }
        }
        return events
    }

    static func memberTopology(_ url: String, domain: TestDomain, member: MemberID) async throws -> MemberTopology {
        let store = TopologyStore(database: PostgresDatabase(url: url), domain: domain.domain, member: member)
        try await store.migrate()
        let topology = MemberTopology(domain: domain.domain, store: store, logger: .init(label: "test"))
        try await topology.start()
        return topology
    }

    /// Times at which to compare two topologies: around every change, and after all of them.
    static func probes(_ state: TopologyState) -> [SequencingTimestamp] {
        var times = Set<SequencingTimestamp>()
        for transaction in state.transactions {
            for delta: Int64 in [-1, 0, 1] { times.insert(transaction.sequencedAt.adding(micros: delta)) }
        }
        times.insert(state.transactions.last!.sequencedAt.adding(micros: 3_600_000_000))
        return times.sorted()
    }

    @Test func aLateMemberAnswersLikeTheSequencerAndReplayChangesNothing() async throws {
        try await PostgresFixture.withFixture { fixture in
            var domain = try TestDomain()
            let node = try await ServiceTests.Node.start(fixture.url, domain: &domain)
            let manager = try await ServiceTests.client(node, domain, member: domain.managerMember, key: domain.managerKey)
            let alice = try TestDomain.Participant("participant1")
            let bob = try TestDomain.Participant("participant2")
            // Several changes before bob joins: alice onboarded, then made a VIP confirmer.
            try await ServiceTests.onboard([alice], node: node, domain: &domain, manager: manager)
            try await manager.send(
                try TestDomain.broadcast(
                    [try domain.domainSigned(.participantState(alice.id, permission: .confirmation, trustLevel: .vip), key: "state-\(alice.id)")],
                    domain: domain.domain), messageID: "alice-vip")
            await node.topology.catchUp()
            try await ServiceTests.onboard([bob], node: node, domain: &domain, manager: manager)
            await node.topology.catchUp()
            await node.topology.topologySnapshotsSent()
            // And one after: alice back to submission, which bob receives as a broadcast.
            try await manager.send(
                try TestDomain.broadcast(
                    [try domain.domainSigned(.participantState(alice.id, permission: .submission), key: "state-\(alice.id)")],
                    domain: domain.domain), messageID: "alice-submission")
            await node.topology.catchUp()
            let sequencerState = try await TopologyStore(database: PostgresDatabase(url: fixture.url), domain: domain.domain)
                .load(changeDelayMicros: 0)

            let bobClient = try await ServiceTests.client(node, domain, member: bob.member, key: bob.signingKey)
            let topology = try await Self.memberTopology(fixture.url, domain: domain, member: bob.member)
            let events = try await Self.follow(bobClient, into: topology, until: sequencerState.transactions.count)

            // The history is bob's first event, from the sequencers; the last change came as a broadcast.
            let first = try #require(events.first)
            #expect(first.counter == 0)
            #expect(first.sender == domain.sequencerMember.description)
            guard case .topologySnapshot(let history)? = first.content.message else {
                Issue.record("bob's first event is not the topology history: \(first.content)")
                return
            }
            #expect(history.transactions.count == sequencerState.transactions.count - 1)
            #expect(events.filter { if case .topologySnapshot? = $0.content.message { true } else { false } }.count == 1)
            #expect(events.last.map { if case .topologyBroadcast? = $0.content.message { true } else { false } } == true)

            for time in Self.probes(sequencerState) {
                #expect(await topology.snapshot(at: time).canonicalDump == sequencerState.snapshot(at: time).canonicalDump, "at \(time)")
            }
            // alice's permission really changed over time, so the comparison above can tell times apart.
            let vipTime = sequencerState.transactions.first { $0.key == .participantDomainState(participant: alice.id) && $0.serial == 2 }!.sequencedAt
            #expect(await topology.snapshot(at: vipTime.adding(micros: 1)).participantState(alice.id)?.trustLevel == .vip)
            #expect(await topology.snapshot(at: vipTime).participantState(alice.id)?.trustLevel == .ordinary)

            // Replaying every event changes nothing, in memory or in the store.
            for event in events {
                #expect(try await topology.apply(event.content, sequencedAt: event.sequencedAt, sender: event.sender) == false)
            }
            let restarted = try await Self.memberTopology(fixture.url, domain: domain, member: bob.member)
            #expect(await restarted.transactions == topology.transactions)
            for time in Self.probes(sequencerState) {
                #expect(await restarted.snapshot(at: time).canonicalDump == sequencerState.snapshot(at: time).canonicalDump)
            }
            await node.stop()
        }
    }

    /// A node on a fresh database with participant1 (alice) onboarded, and the domain manager's session.
    static func startWithAlice(_ url: String) async throws
        -> (domain: TestDomain, node: ServiceTests.Node, manager: SequencerClient, alice: TestDomain.Participant)
    {
        var domain = try TestDomain()
        let node = try await ServiceTests.Node.start(url, domain: &domain)
        let manager = try await ServiceTests.client(node, domain, member: domain.managerMember, key: domain.managerKey)
        let alice = try TestDomain.Participant("participant1")
        try await ServiceTests.onboard([alice], node: node, domain: &domain, manager: manager)
        return (domain, node, manager, alice)
    }

    @Test func aTamperedOrForeignHistoryIsRefusedWhole() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, _, alice) = try await Self.startWithAlice(fixture.url)
            let aliceClient = try await ServiceTests.client(node, domain, member: alice.member, key: alice.signingKey)
            let honest = try await Self.memberTopology(fixture.url, domain: domain, member: alice.member)
            let events = try await Self.follow(aliceClient, into: honest, until: 1)
            guard let first = events.first, case .topologySnapshot(let history)? = first.content.message else {
                Issue.record("no topology history as the first event")
                return
            }
            let sequencers = domain.sequencerMember.description

            /// Applies `snapshot` to a member with an empty store: it must be refused with `id`
            /// and leave nothing behind.
            func expectRefused(_ snapshot: Weft.V1.TopologySnapshot, sender: String = sequencers, _ id: String, _ note: Comment) async throws {
                let probe = try await Self.memberTopology(fixture.url, domain: domain, member: domain.mediatorMember)
                await #expect(throws: MemberTopologyError.self, note) {
                    do {
                        try await probe.apply(.init(message: .topologySnapshot(snapshot)), sequencedAt: first.sequencedAt, sender: sender)
                    } catch let error as MemberTopologyError {
                        #expect(error.id == id, note)
                        throw error
                    }
                }
                #expect(await probe.isInitialized == false, note)
                #expect(try await Self.memberTopology(fixture.url, domain: domain, member: domain.mediatorMember).isInitialized == false, note)
            }

            // A flipped signature byte.
            var badSignature = history
            badSignature.transactions[2].transaction!.signatures[0].signature[5] ^= 0x01
            try await expectRefused(badSignature, "TOPOLOGY_INVALID_SNAPSHOT", "altered signature")
            // Altered transaction bytes (a different serial), signatures kept.
            var badBytes = history
            var altered = try Weft.V1.TopologyTransaction(serializedBytes: badBytes.transactions[4].transaction!.transaction)
            altered.serial += 1
            badBytes.transactions[4].transaction!.transaction = try altered.serializedBytes()
            try await expectRefused(badBytes, "TOPOLOGY_INVALID_SNAPSHOT", "altered transaction")
            // A history rooted in someone else's key, claiming this domain: self-consistent, but not the domain's.
            let impostor = try SigningPrivateKey.generate()
            let forgedRoot = try SignedTopologyTransaction(
                signing: .init(replace: .rootDelegation(impostor.publicKey), serial: 1, domain: domain.domain), with: [impostor])
            var forged = history
            forged.transactions = [.init(transaction: forgedRoot.wire, validFrom: history.transactions[0].validFrom)]
            try await expectRefused(forged, "TOPOLOGY_INVALID_SNAPSHOT", "foreign root")
            // The genuine history, but not from the sequencers.
            try await expectRefused(history, sender: alice.member.description, "TOPOLOGY_NOT_FROM_DOMAIN", "wrong sender")
            // The genuine history, for another domain.
            var otherDomain = history
            otherDomain.domain = "domain2::" + domain.domain.namespace.description
            try await expectRefused(otherDomain, "TOPOLOGY_WRONG_DOMAIN", "wrong domain")
            // The genuine one is accepted by that same member.
            let probe = try await Self.memberTopology(fixture.url, domain: domain, member: domain.mediatorMember)
            #expect(try await probe.apply(first.content, sequencedAt: first.sequencedAt, sender: sequencers))
            #expect(await probe.transactions == honest.transactions)
            await node.stop()
        }
    }

    /// A pruned node's stream starts after its prune point: a sequencer node started after a
    /// prune follows topology broadcasts from there (what came before is in the store) instead
    /// of asking for counter 0 for ever, which froze its topology: members onboarded or
    /// disabled since were not seen.
    @Test func aNodeStartedAfterAPruneFollowsTopologyFromThePrunePoint() async throws {
        try await PostgresFixture.withFixture { fixture in
            var (domain, node, manager, alice) = try await Self.startWithAlice(fixture.url)
            _ = try await node.sequencer.prune(upToInclusive: try await node.sequencer.safePoint.refresh(), force: true)
            let prunePoints = try PostgresConnection(url: fixture.url).execute(
                """
                SELECT count(*)::int8 FROM sequencer_prune_points p JOIN sequencer_members m ON m.id = p.member
                WHERE m.member = $1
                """, [.text(domain.sequencerMember.description)])
            #expect(try prunePoints.rows[0][0].int64 == 1, "the sequencers' own stream is pruned")
            await manager.rpc.close()
            await node.stop()

            node = try await ServiceTests.Node.start(fixture.url, domain: &domain, initialize: false)
            #expect(await node.topology.snapshot().isActive(alice.member))
            manager = try await ServiceTests.client(node, domain, member: domain.managerMember, key: domain.managerKey)
            let bob = try TestDomain.Participant("participant2")
            // Waits until the node applies the broadcast (before, for ever: the suite's limit).
            try await ServiceTests.onboard([bob], node: node, domain: &domain, manager: manager)
            #expect(await node.topology.snapshot().isActive(bob.member), "the restarted node applied the new broadcast")
            await manager.rpc.close()
            await node.stop()
        }
    }

    @Test func twoNodesAndARestartSendTheHistoryOnce() async throws {
        try await PostgresFixture.withFixture { fixture in
            var domain = try TestDomain()
            let node = try await ServiceTests.Node.start(fixture.url, domain: &domain)
            let second = Sequencer(node: 1, database: PostgresDatabase(url: fixture.url))
            try await second.start()
            var secondTopology = try SequencerTopology(domain: domain.domain, sequencer: second, logger: .init(label: "test"))
            try await secondTopology.start { _ in }
            let manager = try await ServiceTests.client(node, domain, member: domain.managerMember, key: domain.managerKey)
            let bob = try TestDomain.Participant("participant2")
            try await ServiceTests.onboard([bob], node: node, domain: &domain, manager: manager)
            // Both nodes register bob and try to send him the history.
            await node.topology.catchUp()
            await secondTopology.catchUp()
            await node.topology.topologySnapshotsSent()
            await secondTopology.topologySnapshotsSent()
            // A restart that forgot the flag tries again: the message id stops it.
            await secondTopology.stop()
            _ = try PostgresConnection(url: fixture.url).execute("UPDATE sequencer_members SET topology_snapshot_sent = false")
            secondTopology = try SequencerTopology(domain: domain.domain, sequencer: second, logger: .init(label: "test"))
            try await secondTopology.start { _ in }
            await secondTopology.topologySnapshotsSent()
            let flags = try PostgresConnection(url: fixture.url).execute(
                "SELECT count(*)::int8 FROM sequencer_members WHERE NOT topology_snapshot_sent")
            #expect(try flags.rows[0][0].int64 == 0)

            try await manager.send(.init(envelopes: [.init(content: Array("marker".utf8), recipients: [bob.member.description])]), messageID: "marker")
            let bobClient = try await ServiceTests.client(node, domain, member: bob.member, key: bob.signingKey)
            var histories: [UInt64] = []
            read: for try await event in try bobClient.subscribe(from: 0) {
                guard case .deliver(let deliver)? = event.event else { continue }
                for envelope in deliver.batch?.envelopes ?? [] {
                    if envelope.content == Array("marker".utf8) { break read }
                    if let content = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content), case .topologySnapshot? = content.message {
                        histories.append(event.counter)
                    }
                }
            }
            #expect(histories == [0])
            await secondTopology.stop()
            await second.stop()
            await node.stop()
        }
    }
}
