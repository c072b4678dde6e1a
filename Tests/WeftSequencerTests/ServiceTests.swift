import Foundation
import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

@testable import WeftSequencer

/// The sequencer's RPC service: authentication, send, subscribe, and every refusal.
@Suite(.timeLimit(.minutes(5))) struct ServiceTests {
    /// A running sequencer node on a fresh database with `domain`'s genesis.
    struct Node {
        let sequencer: Sequencer
        let topology: SequencerTopology
        let provider: SequencerServiceProvider
        let server: RPCServer

        /// `initialize: false` starts a node on a database whose domain is initialized already;
        /// `number`: the node's number among the sequencer nodes sharing the database.
        static func start(
            _ url: String, domain: inout TestDomain, tokenLifetime: Int64 = 3_600_000_000, initialize: Bool = true,
            honorsOmitReceipt: Bool = true, number: Int16 = 0, unauthenticatedWork: UnauthenticatedWorkLimit = .init()
        ) async throws -> Node {
            let setup = try PostgresConnection(url: url)
            try Sequencer.migrator.migrate(setup)
            try SequencerTopology.migrator.migrate(setup)
            let sequencer = Sequencer(node: number, database: PostgresDatabase(url: url))
            try await sequencer.start()
            let topology = try SequencerTopology(domain: domain.domain, sequencer: sequencer, logger: .init(label: "test"))
            let provider = SequencerServiceProvider(
                sequencer: sequencer, topology: topology, signingKey: domain.sequencerKey, honorsOmitReceipt: honorsOmitReceipt,
                unauthenticatedWork: unauthenticatedWork, logger: .init(label: "test"))
            try await topology.start { member in await provider.cutOff(member) }
            if initialize { _ = try await topology.initialize(try domain.genesis(tokenLifetime: tokenLifetime)) }
            var router = RPCRouter()
            provider.register(on: &router)
            let server = try await RPCServer.start(host: "127.0.0.1", port: 0, security: .plaintext, router: router)
            return Node(sequencer: sequencer, topology: topology, provider: provider, server: server)
        }

        func connect() async throws -> RPCClient {
            try await RPCClient.connect(host: "127.0.0.1", port: server.port, security: .plaintext)
        }

        func stop() async {
            await server.close()
            await topology.stop()
            await sequencer.stop()
        }
    }

    /// Whether `error` is the RPC error with `code` and `errorID`.
    static func isRPCError(_ error: any Error, _ code: StatusCode, _ errorID: String) -> Bool {
        (error as? RPCError).map { $0.code == code && $0.errorID == errorID } ?? false
    }

    static func client(_ node: Node, _ domain: TestDomain, member: MemberID, key: SigningPrivateKey) async throws -> SequencerClient {
        try await SequencerClient.authenticate(
            try await node.connect(), member: member.description, key: key, domain: domain.domain.description,
            sequencerKeys: [domain.sequencerKey.publicKey])
    }

    /// Onboards `participants` as the domain manager does: their identities and an
    /// allow-listing, broadcast to all; returns when the sequencer accepts them.
    static func onboard(_ participants: [TestDomain.Participant], node: Node, domain: inout TestDomain, manager: SequencerClient, permission: Weft.V1.ParticipantPermission = .submission) async throws {
        var transactions: [Weft.V1.SignedTopologyTransaction] = []
        for participant in participants {
            transactions += try participant.identity(domain: domain.domain)
            transactions.append(try domain.domainSigned(.participantState(participant.id, permission: permission), key: "state-\(participant.id)"))
        }
        try await manager.send(try TestDomain.broadcast(transactions, domain: domain.domain), messageID: "topology-\(domain.serials.values.reduce(0, +))")
        // The sequencer applies the broadcast from its own stream: wait until it has.
        for participant in participants {
            await node.topology.waitUntil(participant.member, isActive: permission != .disabled)
        }
    }

    /// A node on a fresh database with participant1 (alice) and participant2 (bob) onboarded, and
    /// authenticated sessions for them and the domain manager.
    static func startWithAliceAndBob(_ url: String) async throws -> (
        domain: TestDomain, node: Node, manager: SequencerClient, alice: TestDomain.Participant, bob: TestDomain.Participant,
        aliceClient: SequencerClient, bobClient: SequencerClient
    ) {
        var domain = try TestDomain()
        let node = try await Node.start(url, domain: &domain)
        let manager = try await Self.client(node, domain, member: domain.managerMember, key: domain.managerKey)
        let alice = try TestDomain.Participant("participant1")
        let bob = try TestDomain.Participant("participant2")
        try await Self.onboard([alice, bob], node: node, domain: &domain, manager: manager)
        let aliceClient = try await Self.client(node, domain, member: alice.member, key: alice.signingKey)
        let bobClient = try await Self.client(node, domain, member: bob.member, key: bob.signingKey)
        return (domain, node, manager, alice, bob, aliceClient, bobClient)
    }

    @Test func membersAuthenticateSendAndReadSignedEventsInOrder() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, _, alice, bob, aliceClient, bobClient) = try await Self.startWithAliceAndBob(fixture.url)
            for number in 0..<5 {
                try await aliceClient.send(
                    .init(envelopes: [
                        .init(content: Array("to bob \(number)".utf8), recipients: [bob.member.description]),
                        .init(content: Array("to alice only".utf8), recipients: [alice.member.description]),
                    ]), messageID: "m\(number)")
            }
            // Bob reads only his envelopes, signed by the sequencer, counters from 0.
            var received: [String] = []
            for try await event in try bobClient.subscribe(from: 0) {
                guard case .deliver(let deliver)? = event.event else { continue }
                for envelope in deliver.batch?.envelopes ?? [] {
                    if let content = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content) {
                        switch content.message {
                        case .topologyBroadcast?, .topologySnapshot?: continue
                        default: break
                        }
                    }
                    received.append(String(decoding: envelope.content, as: UTF8.self))
                }
                #expect([alice.member, domain.managerMember, domain.sequencerMember].map(\.description).contains(deliver.sender))
                if received.count == 5 { break }
            }
            #expect(received == (0..<5).map { "to bob \($0)" })
            await node.stop()
        }
    }

    /// `omit_receipt`: the sender's stream lacks the receipt of what was delivered, and has
    /// everything else: deliver errors, the receipt of a time proof, its own envelopes. Every
    /// event still proves itself against its block (the leaves follow the members who get it),
    /// whether a subscription reads it live or, later, from the database.
    @Test func aSenderThatOmitsItsReceiptsGetsItsErrorsTimeProofsAndOwnEnvelopesOnly() async throws {
        try await PostgresFixture.withFixture { fixture in
            var (domain, node, _, alice, bob, aliceClient, bobClient) = try await Self.startWithAliceAndBob(fixture.url)
            let (aliceID, bobID) = (alice.member.description, bob.member.description)
            // Alice reads live from before her first send.
            let live = Task { [aliceClient, domain] in try await Self.messageIDs(aliceClient, domain, sender: aliceID, until: "last") }
            func envelopes(_ recipients: [String]...) -> Weft.V1.Batch {
                .init(envelopes: recipients.map { .init(content: Array("for \($0)".utf8), recipients: $0) })
            }
            try await aliceClient.send(envelopes([bobID]), messageID: "to-bob", omitReceipt: true)
            try await aliceClient.send(.init(envelopes: []), messageID: "time-proof", omitReceipt: true)
            try await aliceClient.send(envelopes(["participant9::1220ab"]), messageID: "to-nobody", omitReceipt: true)
            try await aliceClient.send(envelopes([bobID], [aliceID]), messageID: "to-both", omitReceipt: true)
            try await aliceClient.send(envelopes([bobID]), messageID: "last")
            // And the other way (a receipt's leaf would come before or after the recipient's,
            // whichever of the two has the lower member id).
            try await bobClient.send(envelopes([aliceID]), messageID: "to-alice", omitReceipt: true)
            let expected = ["time-proof", "to-nobody (SEQUENCER_UNKNOWN_RECIPIENTS)", "to-both", "last"]
            #expect(try await live.value == expected)
            #expect(try await Self.messageIDs(bobClient, domain, sender: aliceID, until: "last") == ["to-bob", "to-both", "last"])
            #expect(try await Self.messageIDs(aliceClient, domain, sender: bobID, until: "to-alice") == ["to-alice"])
            // Read again from counter 0, from the stored deliveries.
            #expect(try await Self.messageIDs(aliceClient, domain, sender: aliceID, until: "last") == expected)
            // Stored: one delivery row per receiving member (none for the sender).
            let rows = try PostgresConnection(url: fixture.url).execute(
                """
                SELECT e.message_id, e.kind::int8, m.member FROM sequencer_events e
                JOIN sequencer_deliveries d ON d.ts = e.ts JOIN sequencer_members m ON m.id = d.member
                WHERE e.message_id IN ('to-bob', 'to-alice') ORDER BY e.message_id
                """
            ).rows
            #expect(
                try rows.map { [try $0[0].string, try $0[1].int64.map(String.init), try $0[2].string] }
                    == [["to-alice", "3", aliceID], ["to-bob", "3", bobID]])
            // A new node on the stored data: nothing in memory, every page and block read from the
            // database, each leaf found from the event's kind. It does not honor `omit_receipt`
            // (a rolling upgrade's setting).
            await node.stop()
            node = try await Node.start(fixture.url, domain: &domain, initialize: false, honorsOmitReceipt: false)
            await node.topology.waitUntil(bob.member)
            aliceClient = try await Self.client(node, domain, member: alice.member, key: alice.signingKey)
            bobClient = try await Self.client(node, domain, member: bob.member, key: bob.signingKey)
            #expect(try await Self.messageIDs(aliceClient, domain, sender: aliceID, until: "last") == expected)
            #expect(try await Self.messageIDs(bobClient, domain, sender: aliceID, until: "last") == ["to-bob", "to-both", "last"])
            #expect(try await Self.messageIDs(aliceClient, domain, sender: bobID, until: "to-alice") == ["to-alice"])
            try await aliceClient.send(envelopes([bobID]), messageID: "receipt-kept", omitReceipt: true)
            #expect(try await Self.messageIDs(aliceClient, domain, sender: aliceID, until: "receipt-kept") == expected + ["receipt-kept"])
            await node.stop()
        }
    }

    /// Only the domain manager and the sequencers address `ALL`: a batch to every member costs a
    /// copy of it per member, and nobody else has a reason to send one. A participant's is refused
    /// in its own stream and reaches nobody; the domain manager's still reaches every member.
    @Test func onlyTheDomainManagerAndTheSequencersAddressAll() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (started, node, manager, alice, bob, aliceClient, bobClient) = try await Self.startWithAliceAndBob(fixture.url)
            var domain = started
            let (aliceID, bobID, managerID) = (alice.member.description, bob.member.description, domain.managerMember.description)
            let toBob = Weft.V1.Envelope(content: Array("to bob".utf8), recipients: [bobID])
            let toAll = Weft.V1.Envelope(content: Array("to everyone".utf8), recipients: [Sequencer.allMembers])
            try await aliceClient.send(.init(envelopes: [toAll, toBob]), messageID: "to-all")
            try await aliceClient.send(.init(envelopes: [toBob]), messageID: "to-bob")
            try await manager.send(
                try TestDomain.broadcast(
                    [try domain.domainSigned(.participantState(alice.id, permission: .confirmation), key: "state-\(alice.id)")],
                    domain: domain.domain),
                messageID: "manager-to-all")
            let alicesStream = try await Self.messageIDs(aliceClient, domain, sender: aliceID, until: "to-bob")
            #expect(alicesStream == ["to-all (SEQUENCER_BROADCAST_NOT_ALLOWED)", "to-bob"])
            #expect(try await Self.messageIDs(bobClient, domain, sender: aliceID, until: "to-bob") == ["to-bob"])
            let fromTheManager = try await Self.messageIDs(bobClient, domain, sender: managerID, until: "manager-to-all")
            #expect(fromTheManager.last == "manager-to-all")
            await node.stop()
        }
    }

    /// The message ids of `sender`'s delivers on `client`'s stream (and, on the sender's own
    /// stream, its deliver errors with their id), from counter 0 until `until`'s. Each event must
    /// come with a block proof that verifies: one signed on its own instead means the service did
    /// not find the event's leaf in its block.
    static func messageIDs(
        _ client: SequencerClient, _ domain: TestDomain, sender: String, until: String
    ) async throws -> [String] {
        var verifier = SequencedEventVerifier(keys: [domain.sequencerKey.publicKey])
        var ids: [String] = []
        let request = Weft.V1.SubscribeRequest(member: client.member, fromCounter: 0)
        for try await response in try client.rpc.sequencer.subscribe(request, metadata: client.authorization) {
            let signed = try #require(response.signedEvent)
            #expect(signed.blockProof != nil && signed.signature == nil)
            let event = try verifier.verify(signed)
            #expect(event.recipient == client.member)
            switch event.event {
            case .deliver(let deliver)? where deliver.sender == sender:
                ids.append(deliver.messageID)
                if deliver.messageID == until { return ids }
            case .deliverError(let error)? where client.member == sender:
                ids.append("\(error.messageID) (\(error.reason?.errorID ?? "?"))")
            default:
                continue
            }
        }
        return ids
    }

    @Test func everyRefusalHasItsStatus() async throws {
        try await PostgresFixture.withFixture { fixture in
            var domain = try TestDomain()
            let node = try await Node.start(fixture.url, domain: &domain)
            let manager = try await Self.client(node, domain, member: domain.managerMember, key: domain.managerKey)
            let alice = try TestDomain.Participant("participant1")
            let bob = try TestDomain.Participant("participant2")
            let stranger = try TestDomain.Participant("stranger")
            try await Self.onboard([alice, bob], node: node, domain: &domain, manager: manager)

            func expectStatus(_ code: StatusCode, _ errorID: String, _ body: () async throws -> Void) async {
                await #expect {
                    try await body()
                } throws: { error in
                    guard let error = error as? RPCError else { return false }
                    return error.code == code && error.errorID == errorID
                }
            }
            // A member not allow-listed.
            await expectStatus(.permissionDenied, "SEQUENCER_MEMBER_NOT_ALLOWED") {
                _ = try await Self.client(node, domain, member: stranger.member, key: stranger.signingKey)
            }
            // A challenge signed with the wrong key (the participant's namespace key is not a signing key).
            await expectStatus(.unauthenticated, "SEQUENCER_UNKNOWN_KEY") {
                _ = try await Self.client(node, domain, member: alice.member, key: alice.namespaceKey)
            }
            // A bad signature by the right key.
            await expectStatus(.unauthenticated, "SEQUENCER_BAD_SIGNATURE") {
                let rpc = try await node.connect()
                let challenge = try await rpc.sequencer.getChallenge(.init(member: alice.member.description))
                var signature = try alice.signingKey.sign(SequencerAuthenticator.challengeHash(domain: domain.domain.description, member: alice.member.description, nonce: challenge.nonce))
                signature.signature[0] ^= 1
                _ = try await rpc.sequencer.authenticate(.init(member: alice.member.description, nonce: challenge.nonce, signature: signature))
            }
            // No token; a token stolen and used on another connection.
            let aliceClient = try await Self.client(node, domain, member: alice.member, key: alice.signingKey)
            let other = try await node.connect()
            await expectStatus(.unauthenticated, "SEQUENCER_NO_TOKEN") {
                _ = try await other.sequencer.send(.init(submissionRequest: []))
            }
            await expectStatus(.unauthenticated, "SEQUENCER_TOKEN_WRONG_CONNECTION") {
                _ = try await other.sequencer.send(.init(submissionRequest: []), metadata: aliceClient.authorization)
            }
            // A submission in another member's name.
            await expectStatus(.permissionDenied, "SEQUENCER_SENDER_MISMATCH") {
                let forged = Weft.V1.SubmissionRequest(sender: bob.member.description, messageID: "forged", batch: .init(envelopes: [.init(content: [1], recipients: [alice.member.description])]))
                _ = try await aliceClient.rpc.sequencer.send(.init(submissionRequest: try forged.serializedBytes()), metadata: aliceClient.authorization)
            }
            // Reading another member's stream.
            await expectStatus(.permissionDenied, "SEQUENCER_SUBSCRIBER_MISMATCH") {
                for try await _ in try aliceClient.rpc.sequencer.subscribe(.init(member: bob.member.description), metadata: aliceClient.authorization) {}
            }
            // A counter beyond any stream's (a bigint): refused, and the node serves on.
            await expectStatus(.invalidArgument, "SEQUENCER_INVALID_COUNTER") {
                for try await _ in try aliceClient.rpc.sequencer.subscribe(
                    .init(member: alice.member.description, fromCounter: UInt64(Int64.max) + 1), metadata: aliceClient.authorization) {}
            }
            // A replayed submission.
            let batch = Weft.V1.Batch(envelopes: [.init(content: [1], recipients: [bob.member.description])])
            try await aliceClient.send(batch, messageID: "once")
            await expectStatus(.alreadyExists, "SEQUENCER_DUPLICATE_MESSAGE_ID") { try await aliceClient.send(batch, messageID: "once") }

            // Disabled: bob's open subscription is closed, his calls refused.
            let bobClient = try await Self.client(node, domain, member: bob.member, key: bob.signingKey)
            let (events, eventsContinuation) = AsyncStream<String>.makeStream()
            let reading = Task {
                do {
                    for try await _ in try bobClient.subscribe(from: 0) { eventsContinuation.yield("event") }
                    return "ended"
                } catch let error as RPCError {
                    return error.errorID
                }
            }
            var iterator = events.makeAsyncIterator()
            #expect(await iterator.next() == "event")  // the subscription is live
            try await manager.send(
                try TestDomain.broadcast([try domain.domainSigned(.participantState(bob.id, permission: .disabled), key: "state-\(bob.id)")], domain: domain.domain),
                messageID: "disable-bob")
            #expect(try await reading.value == "SEQUENCER_MEMBER_DISABLED")
            await expectStatus(.permissionDenied, "SEQUENCER_MEMBER_NOT_ALLOWED") { try await bobClient.send(batch, messageID: "after") }
            await node.stop()
        }
    }

    /// A session is bound to the key that authenticated it: once the member's signing keys are
    /// replaced (a stolen key revoked), its sessions are refused at once (they lasted until
    /// their expiry, an hour by default), and it authenticates again with the new key.
    @Test func aSessionEndsWhenItsKeyIsReplaced() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, manager, alice, _, aliceClient, _) = try await Self.startWithAliceAndBob(fixture.url)
            let batch = Weft.V1.Batch(envelopes: [.init(content: [1], recipients: [alice.member.description])])
            try await aliceClient.send(batch, messageID: "before")
            let newKey = try SigningPrivateKey.generate()
            let rotation = try SignedTopologyTransaction(
                signing: .init(
                    replace: .keys(of: alice.member, signing: [newKey.publicKey], encryption: [alice.encryptionKey.publicKey]), serial: 2,
                    domain: domain.domain),
                with: [alice.namespaceKey])
            try await manager.send(try TestDomain.broadcast([rotation.wire], domain: domain.domain), messageID: "rotate-alice")
            let fingerprint = newKey.publicKey.fingerprint
            await node.topology.waitUntil { $0.signingKeys(of: alice.member).contains { $0.fingerprint == fingerprint } }
            await #expect {
                try await aliceClient.send(batch, messageID: "after")
            } throws: { Self.isRPCError($0, .unauthenticated, "SEQUENCER_KEY_REPLACED") }
            let renewed = try await Self.client(node, domain, member: alice.member, key: newKey)
            try await renewed.send(batch, messageID: "renewed")
            await node.stop()
        }
    }

    /// A subscription ends with its session: once the key that authenticated it is revoked, a
    /// stolen key no longer reads the member's events (it streamed on until the member was
    /// disabled).
    @Test func aSubscriptionEndsWhenItsKeyIsReplaced() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, manager, alice, _, aliceClient, _) = try await Self.startWithAliceAndBob(fixture.url)
            try await aliceClient.send(.init(envelopes: [.init(content: [1], recipients: [alice.member.description])]), messageID: "before")
            let events = try aliceClient.subscribe(from: 0)
            var iterator = events.makeAsyncIterator()
            while let event = try await iterator.next() {
                if case .deliver(let deliver)? = event.event, deliver.messageID == "before" { break }
            }
            let newKey = try SigningPrivateKey.generate()
            let rotation = try SignedTopologyTransaction(
                signing: .init(
                    replace: .keys(of: alice.member, signing: [newKey.publicKey], encryption: [alice.encryptionKey.publicKey]), serial: 2,
                    domain: domain.domain),
                with: [alice.namespaceKey])
            try await manager.send(try TestDomain.broadcast([rotation.wire], domain: domain.domain), messageID: "rotate-alice")
            await #expect {
                // The rotation's own broadcast may come first; then the stream ends.
                while try await iterator.next() != nil {}
            } throws: { Self.isRPCError($0, .unauthenticated, "SEQUENCER_KEY_REPLACED") }
            await node.stop()
        }
    }

    /// A subscription ends at its token's expiry, as every other call of the session is refused from then.
    @Test func aSubscriptionEndsAtItsTokensExpiry() async throws {
        try await PostgresFixture.withFixture { fixture in
            var domain = try TestDomain()
            let node = try await Node.start(fixture.url, domain: &domain, tokenLifetime: 1_000_000)
            let manager = try await Self.client(node, domain, member: domain.managerMember, key: domain.managerKey)
            await #expect {
                for try await _ in try manager.subscribe(from: 0) {}
            } throws: { Self.isRPCError($0, .unauthenticated, "SEQUENCER_TOKEN_EXPIRED") }
            await node.stop()
        }
    }

    /// Calls without a token cost a bounded amount of work: `Onboard` calls beyond the bucket are
    /// refused RESOURCE_EXHAUSTED before anything is checked, an identity of more transactions than
    /// any participant's is refused before any is verified, and active members still authenticate
    /// with the bucket empty (only catch-ups for unknown ones draw on it).
    @Test func callsWithoutATokenAreBoundedAndActiveMembersStillAuthenticate() async throws {
        try await PostgresFixture.withFixture { fixture in
            var domain = try TestDomain()
            let node = try await Node.start(fixture.url, domain: &domain, unauthenticatedWork: .init(perSecond: 0, burst: 2))
            let manager = try await Self.client(node, domain, member: domain.managerMember, key: domain.managerKey)
            let rpc = try await node.connect()
            let stranger = try TestDomain.Participant("stranger")
            let identity = try stranger.identity(domain: domain.domain)
            await #expect {
                _ = try await rpc.sequencer.onboard(.init(participant: stranger.id.description, identity: Array(repeating: identity[0], count: 17)))
            } throws: { Self.isRPCError($0, .invalidArgument, "SEQUENCER_ONBOARDING_TOO_LARGE") }
            // Two calls' worth: each is checked (and refused: the stranger is not allow-listed) …
            for _ in 0..<2 {
                await #expect {
                    _ = try await rpc.sequencer.onboard(.init(participant: stranger.id.description, identity: identity))
                } throws: { error in
                    (error as? RPCError)?.errorID == "SEQUENCER_NOT_ALLOW_LISTED"
                }
            }
            // … the next is refused for the rate.
            await #expect {
                _ = try await rpc.sequencer.onboard(.init(participant: stranger.id.description, identity: identity))
            } throws: { Self.isRPCError($0, .resourceExhausted, "SEQUENCER_ONBOARDING_RATE_LIMITED") }
            // The domain manager, active, authenticates and sends with the bucket empty.
            _ = try await Self.client(node, domain, member: domain.managerMember, key: domain.managerKey)
            try await manager.send(.init(envelopes: [.init(content: [1], recipients: [domain.mediatorMember.description])]), messageID: "still-served")
            await node.stop()
        }
    }

    @Test func anExpiredTokenIsRefused() async throws {
        try await PostgresFixture.withFixture { fixture in
            var domain = try TestDomain()
            let node = try await Node.start(fixture.url, domain: &domain, tokenLifetime: 1_000_000)
            let manager = try await Self.client(node, domain, member: domain.managerMember, key: domain.managerKey)
            try await Task.sleep(for: .milliseconds(1100))  // the token's lifetime is what is tested: time must pass
            await #expect {
                try await manager.send(.init(envelopes: [.init(content: [1], recipients: [domain.mediatorMember.description])]), messageID: "late")
            } throws: { error in
                (error as? RPCError)?.errorID == "SEQUENCER_TOKEN_EXPIRED"
            }
            await node.stop()
        }
    }

    @Test func theDatabaseHoldsOnlyCiphertextOfAPayload() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (_, node, _, _, bob, aliceClient, bobClient) = try await Self.startWithAliceAndBob(fixture.url)
            // Alice encrypts a view with a marker for Bob, as a participant does.
            let marker = "IOU-MARKER-\(UInt64.random(in: 1...UInt64.max))"
            let view = Array("amount 100 from alice to bob: \(marker)".utf8)
            let sealed = try ViewEncryption.seal(view, viewHash: PurposeHasher.hash(.transactionView, view), recipients: [bob.encryptionKey.publicKey])
            let content = Weft.V1.EnvelopeContent(message: .encryptedView(sealed.message))
            try await aliceClient.send(.init(envelopes: [.init(content: try content.serializedBytes(), recipients: [bob.member.description])]), messageID: "secret")
            // Bob receives it and can read the marker …
            var opened: [UInt8]?
            for try await event in try bobClient.subscribe(from: 0) {
                guard case .deliver(let deliver)? = event.event, deliver.messageID == "secret", let envelope = deliver.batch?.envelopes.first,
                    case .encryptedView(let message)? = try Weft.V1.EnvelopeContent(serializedBytes: envelope.content).message
                else { continue }
                opened = try ViewEncryption.open(message, with: bob.encryptionKey)
                break
            }
            #expect(opened == view)
            // … but no table holds it in any form: not as text, not as the bytes' hex.
            let connection = try PostgresConnection(url: fixture.url)
            let tables = try connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").rows.map { try $0[0].string ?? "" }
            #expect(tables.contains("sequencer_events"))
            let hexMarker = Array(marker.utf8).map { String(format: "%02x", $0) }.joined()
            for table in tables {
                let dump = try connection.execute("SELECT coalesce(string_agg(t::text, ' '), '') FROM \(table) t").rows[0][0].string ?? ""
                #expect(!dump.contains(marker) && !dump.contains(hexMarker), "table \(table) holds the payload in clear")
            }
            await node.stop()
        }
    }

    /// Alice sends Bob ten messages; Bob's first ten events as he reads them.
    static func tenMessagesToBob(_ aliceClient: SequencerClient, _ bobClient: SequencerClient, _ bob: TestDomain.Participant)
        async throws -> [Weft.V1.SequencedEvent]
    {
        for number in 0..<10 {
            try await aliceClient.send(
                .init(envelopes: [.init(content: Array("m\(number)".utf8), recipients: [bob.member.description])]), messageID: "m\(number)")
        }
        var bobEvents: [Weft.V1.SequencedEvent] = []
        for try await event in try bobClient.subscribe(from: 0) {
            bobEvents.append(event)
            if bobEvents.count == 10 { break }
        }
        return bobEvents
    }

    @Test func pruningRemovesExactlyWhatEveryMemberAcknowledged() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, manager, _, bob, aliceClient, bobClient) = try await Self.startWithAliceAndBob(fixture.url)
            let mediator = try await Self.client(node, domain, member: domain.mediatorMember, key: domain.mediatorKey)
            let bobEvents = try await Self.tenMessagesToBob(aliceClient, bobClient, bob)
            let cut = bobEvents[4]  // Bob has processed his first five events
            let cutTime = try #require(cut.timestamp)

            // Nobody has acknowledged anything yet: refused, naming who holds it back.
            await #expect {
                _ = try await node.sequencer.prune(upToInclusive: cutTime.microsSinceEpoch, force: false)
            } throws: { error in
                guard case .notAcknowledged(let members, _)? = error as? PruneError else { return false }
                return members.contains(bob.member.description) && members.contains(domain.mediatorMember.description)
            }
            // Everyone acknowledges at least up to the cut.
            try await bobClient.acknowledge(upTo: cutTime)
            try await mediator.acknowledge(upTo: cutTime)
            try await manager.acknowledge(upTo: cutTime)
            try await aliceClient.acknowledge(upTo: try #require(bobEvents.last?.timestamp))
            try await node.sequencer.acknowledge(domain.sequencerMember.description, upTo: cutTime.microsSinceEpoch)
            let outcome = try await node.sequencer.prune(upToInclusive: cutTime.microsSinceEpoch, force: false)
            #expect(outcome.membersCutOff.isEmpty)
            #expect(outcome.eventsRemoved >= 5)
            let remaining = try PostgresConnection(url: fixture.url).execute("SELECT count(*) FROM sequencer_events WHERE ts <= $1", [.int64(cutTime.microsSinceEpoch)]).rows[0][0].int64
            #expect(remaining == 0)

            // Bob cannot go back before the cut: a clear error, not a silent gap …
            await #expect {
                for try await _ in try bobClient.subscribe(from: 0) {}
            } throws: { error in
                guard let error = error as? RPCError else { return false }
                return error.errorID == "SEQUENCER_EVENTS_PRUNED" && error.message.contains("subscribe from \(cut.counter + 1)")
            }
            // … and from the next counter he gets exactly the rest, same counters as before.
            var rest: [Weft.V1.SequencedEvent] = []
            for try await event in try bobClient.subscribe(from: cut.counter + 1) {
                rest.append(event)
                if rest.count == 5 { break }
            }
            #expect(rest == Array(bobEvents[5...]))

            // A forced prune past what Bob acknowledged cuts him off, and says so.
            let last = try #require(bobEvents.last?.timestamp)
            let forced = try await node.sequencer.prune(upToInclusive: last.microsSinceEpoch, force: true)
            #expect(forced.membersCutOff.contains(bob.member.description))
            await node.stop()
        }
    }

    /// An event sequenced by another node, from a member that node registered after this one
    /// read its member table, is served under its sender's name: the name its block hashed.
    @Test func anEventFromAMemberAnotherNodeRegisteredIsServedVerifiable() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (started, first, manager, _, bob, _, _) = try await Self.startWithAliceAndBob(fixture.url)
            var domain = started
            let second = try await Node.start(fixture.url, domain: &domain, initialize: false, number: 1)
            await second.topology.waitUntil(bob.member)
            let bobAtSecond = try await Self.client(second, domain, member: bob.member, key: bob.signingKey)
            // The second node's topology follower, which would also learn of new members, falls
            // behind (here: stops), as it may behind a subscription it does not wait for.
            await second.topology.stop()
            // Carol joins through the first node, after the second one read its members.
            let carol = try TestDomain.Participant("participant3")
            try await Self.onboard([carol], node: first, domain: &domain, manager: manager)
            let carolClient = try await Self.client(first, domain, member: carol.member, key: carol.signingKey)
            try await carolClient.send(
                .init(envelopes: [.init(content: Array("from carol".utf8), recipients: [bob.member.description])]), messageID: "hello")
            // Bob reads at the second node; the client checks every event against its block.
            var received: String?
            for try await event in try bobAtSecond.subscribe(from: 0) {
                guard case .deliver(let deliver)? = event.event, deliver.messageID == "hello" else { continue }
                received = deliver.sender
                break
            }
            #expect(received == carol.member.description)
            await second.server.close()
            await second.sequencer.stop()
            await first.stop()
        }
    }

    /// A member's stream is read on demand: a subscriber that stops reading (its flow-control
    /// window full) holds at most a page of its backlog in the sequencer's memory, not all of it.
    @Test func aSubscriberThatStopsReadingHoldsAtMostAPageInTheSequencer() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (_, node, _, _, bob, aliceClient, _) = try await Self.startWithAliceAndBob(fixture.url)
            // A page and a half: enough for a reader running ahead to show, few enough sends (in
            // group commits of up to 32) to stay well inside the time limit with the whole
            // suite running at once on two cores.
            let backlog = SequencerReader.pageSize + SequencerReader.pageSize / 2
            try await withThrowingTaskGroup(of: Void.self) { group in
                for sender in 0..<32 {
                    group.addTask {
                        for number in stride(from: sender, to: backlog, by: 32) {
                            try await aliceClient.send(
                                .init(envelopes: [.init(content: Array("m\(number)".utf8), recipients: [bob.member.description])]),
                                messageID: "backlog-\(number)")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let bobID = try #require(try await node.sequencer.members.member(named: bob.member.description)).id
            let reads = node.sequencer.reader.fanOut
            let before = reads.ownReads.load(ordering: .relaxed)
            var items = node.sequencer.reader.items(member: bobID, memberName: bob.member.description, from: 0).makeAsyncIterator()
            guard case .delivery(let first)? = try await items.next() else {
                Issue.record("the stream did not start with a delivery")
                return
            }
            #expect(first.counter == 0)
            // The time under test: a reader running ahead of its consumer reads the backlog meanwhile.
            try await Task.sleep(for: .milliseconds(300))
            #expect(reads.ownReads.load(ordering: .relaxed) - before == 1, "one page read for one delivery taken")
            // Read on: every delivery once, in counter order, a page read each time the last is taken.
            var counters: [Int64] = [first.counter]
            while let item = try await items.next() {
                guard case .delivery(let delivery) = item else { break }  // caught up
                counters.append(delivery.counter)
            }
            #expect(counters == Array(0..<Int64(counters.count)))
            #expect(counters.count > backlog)
            #expect(reads.ownReads.load(ordering: .relaxed) - before == counters.count / SequencerReader.pageSize + 1)
            await node.stop()
        }
    }

    /// The member's client reads its stream on demand as well: a member catching up on a backlog
    /// lets the sequencer send at most a flow-control window ahead of what it has read, however
    /// long the backlog, rather than buffering all of it (docs/sequencer.md §5).
    @Test func aMemberCatchingUpPullsAtMostAWindowAheadOfWhatItReads() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, _, _, bob, aliceClient, bobClient) = try await Self.startWithAliceAndBob(fixture.url)
            let content = [UInt8](repeating: 7, count: 64 * 1024)
            let backlog = 40
            for number in 0..<backlog {
                try await aliceClient.send(
                    .init(envelopes: [.init(content: content, recipients: [bob.member.description])]), messageID: "large-\(number)")
            }
            // The events of a window: the sequencer sends these (and bob's few small ones before
            // them) without waiting for bob, then waits for credit that bob grants as he reads.
            let window = RPCConfiguration.default.streamWindowBytes / content.count
            let counts = node.provider.subscriptionCounts
            let connection = SequencerConnection(
                member: bob.member.description, domain: domain.domain.description, key: bob.signingKey,
                sequencerKeys: [domain.sequencerKey.publicKey], endpoints: [.init(host: "127.0.0.1", port: node.server.port, security: .plaintext)])
            let layers: [(String, @Sendable () throws -> AsyncThrowingStream<Weft.V1.SequencedEvent, any Error>, @Sendable () async throws -> RPCClient)] = [
                ("client", { try bobClient.subscribe(from: 0) }, { bobClient.rpc }),
                ("connection", { connection.events(from: 0) }, { try await connection.client().rpc }),
            ]
            for (layer, events, rpc) in layers {
                let before = await counts.wait { $0.open == 0 }.written
                do {
                    var iterator = try events().makeAsyncIterator()
                    #expect(try await iterator.next()?.counter == 0)
                    // Bob reads no further: the sequencer fills the window and waits (or, reading
                    // ahead of bob, sends the whole backlog).
                    _ = await counts.wait { $0.written - before >= window && $0.sending == 1 || $0.written - before >= backlog }
                    // A client reading ahead of bob would now take what arrived and grant credit for
                    // more. Calls on bob's connection give it the time to show: each answer comes
                    // after what the sequencer sent before it.
                    var written = 0
                    for _ in 0..<20 where written <= window + 4 {
                        _ = try await rpc().sequencer.getChallenge(.init(member: bob.member.description))
                        written = await counts.wait { _ in true }.written - before
                    }
                    #expect(written <= window + 4, "\(layer): \(written) events sent for one read, more than a window of \(window)")
                }
            }
            await connection.close()
            await node.stop()
        }
    }

    /// A subscription whose reader stops, by dropping its stream or with its task cancelled,
    /// ends at the sequencer too: no call is left running for events nobody reads.
    @Test func aSubscriptionItsReaderStopsEndsAtTheSequencer() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, _, _, bob, _, bobClient) = try await Self.startWithAliceAndBob(fixture.url)
            let counts = node.provider.subscriptionCounts
            let connection = SequencerConnection(
                member: bob.member.description, domain: domain.domain.description, key: bob.signingKey,
                sequencerKeys: [domain.sequencerKey.publicKey], endpoints: [.init(host: "127.0.0.1", port: node.server.port, security: .plaintext)])
            let streams: [@Sendable () throws -> AsyncThrowingStream<Weft.V1.SequencedEvent, any Error>] = [
                { try bobClient.subscribe(from: 0) }, { connection.events(from: 0) },
            ]
            for stream in streams {
                // Dropped after one event.
                do {
                    var iterator = try stream().makeAsyncIterator()
                    #expect(try await iterator.next()?.counter == 0)
                    #expect(await counts.wait { _ in true }.open == 1)
                }
                _ = await counts.wait { $0.open == 0 }
                // Its task cancelled while it waits for an event (bob has no more).
                let (read, readContinuation) = AsyncStream<UInt64>.makeStream()
                let reading = Task {
                    for try await event in try stream() { readContinuation.yield(event.counter) }
                }
                var counters = read.makeAsyncIterator()
                #expect(await counters.next() == 0)
                reading.cancel()
                _ = await reading.result
                _ = await counts.wait { $0.open == 0 }
            }
            await connection.close()
            await node.stop()
        }
    }

    /// A page read counts from the position the stream had before it. A prune committed in
    /// between (a stream starting from a checkpoint before the prune point, or catching up page by
    /// page) must not make the rows left take the counters of the ones removed.
    @Test func aPageReadAfterAPruneKeepsEachDeliverysCounter() async throws {
        try await PostgresFixture.withFixture { fixture in
            let (domain, node, manager, _, bob, aliceClient, bobClient) = try await Self.startWithAliceAndBob(fixture.url)
            let mediator = try await Self.client(node, domain, member: domain.mediatorMember, key: domain.mediatorKey)
            let bobEvents = try await Self.tenMessagesToBob(aliceClient, bobClient, bob)
            let bobID = try #require(try await node.sequencer.members.member(named: bob.member.description)).id
            let safe = try await node.sequencer.safePoint.refresh()
            // Where a stream from counter 0 starts (no checkpoint yet), taken before the prune.
            let before = (counter: Int64(-1), timestamp: Int64.min)
            let fromStart = try await node.sequencer.reader.read(
                member: bobID, memberName: bob.member.description, after: before, upTo: safe, requested: 0)
            #expect(fromStart.deliveries.prefix(10).map(\.counter) == bobEvents.map { Int64($0.counter) })

            let cut = bobEvents[4]
            let cutTime = try #require(cut.timestamp)
            try await bobClient.acknowledge(upTo: cutTime)
            try await mediator.acknowledge(upTo: cutTime)
            try await manager.acknowledge(upTo: cutTime)
            try await aliceClient.acknowledge(upTo: cutTime)
            try await node.sequencer.acknowledge(domain.sequencerMember.description, upTo: cutTime.microsSinceEpoch)
            _ = try await node.sequencer.prune(upToInclusive: cutTime.microsSinceEpoch, force: false)

            // The same read after the prune, for the counters after the cut: the same counters.
            let afterPrune = try await node.sequencer.reader.read(
                member: bobID, memberName: bob.member.description, after: before, upTo: safe, requested: Int64(cut.counter) + 1)
            #expect(afterPrune.deliveries.prefix(5).map(\.counter) == bobEvents[5...].map { Int64($0.counter) })
            #expect(afterPrune.deliveries.prefix(5).map(\.timestamp) == bobEvents[5...].map { $0.timestamp?.microsSinceEpoch ?? 0 })
            // For counters the prune removed: the pruned error a subscription from them gets.
            await #expect {
                _ = try await node.sequencer.reader.read(
                    member: bobID, memberName: bob.member.description, after: before, upTo: safe, requested: 0)
            } throws: { error in
                guard case .pruned(_, let requested, let firstAvailable)? = error as? SequencerReadError else { return false }
                return requested == 0 && firstAvailable == Int64(cut.counter) + 1
            }
            // A prune of everything up to Bob's last event leaves an empty page: the stream's
            // position moves to the prune point all the same, so what follows is counted from there.
            let last = try #require(bobEvents.last)
            let lastTime = try #require(last.timestamp)
            for client in [bobClient, mediator, manager, aliceClient] { try await client.acknowledge(upTo: lastTime) }
            try await node.sequencer.acknowledge(domain.sequencerMember.description, upTo: lastTime.microsSinceEpoch)
            _ = try await node.sequencer.prune(upToInclusive: lastTime.microsSinceEpoch, force: false)
            let empty = try await node.sequencer.reader.read(
                member: bobID, memberName: bob.member.description, after: before, upTo: lastTime.microsSinceEpoch,
                requested: Int64(last.counter) + 1)
            #expect(empty.deliveries.isEmpty)
            #expect(empty.position.counter == Int64(last.counter) && empty.position.timestamp == lastTime.microsSinceEpoch)
            await node.stop()
        }
    }
}
