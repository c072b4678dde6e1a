import Foundation
import Logging
import Testing
import WeftCrypto
@_spi(Testing) import WeftDomainManager
import WeftLedgerAPI
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

/// Sequencer processes dying and the database restarting while members send and read:
/// nothing is lost, nothing is delivered twice.
@Suite(.timeLimit(.minutes(5))) struct FailoverTests {
    /// A domain of `sequencerCount` sequencer processes on one database, bootstrapped by an
    /// in-process domain manager, with two onboarded participants.
    struct Domain {
        let directory: NodeDirectory
        let processes: [WeftProcess]
        let ports: [Int]
        let domainID: String
        let sequencerKey: SigningPrivateKey
        let alice: (member: String, key: SigningPrivateKey)
        let bob: (member: String, key: SigningPrivateKey)
        let manager: DomainManager
        /// Alice's participant id and namespace key (to sign hostings of her parties).
        let aliceIdentity: (id: UniqueIdentifier, namespaceKey: SigningPrivateKey)

        static func start(_ fixture: PostgresFixture, sequencerCount: Int) async throws -> Domain {
            let directory = try NodeDirectory()
            let namespaceKey = try SigningPrivateKey.generate()
            let sequencerKey = try SigningPrivateKey.generate()
            try KeyFile.write(sequencerKey, to: directory.path + "/keys-sequencer.pem")
            let domainID = "domain1::\(namespaceKey.publicKey.fingerprint)"
            var processes: [WeftProcess] = []
            var ports: [Int] = []
            for node in 0..<sequencerCount {
                let port = try ProcessDomain.freePort()
                try writeConfiguration(directory, name: "sequencer\(node)", node: node, port: port, domainID: domainID, url: fixture.url)
                let process = try WeftProcess(["run", "-c", "sequencer\(node).yaml", "--migrate"], directory: directory.path)
                let ready = await process.nextLine()
                guard ready?.contains("listening on") == true else { throw TestError("sequencer \(node) did not start: \(process.standardError)") }
                processes.append(process)
                ports.append(port)
            }
            // The domain manager keeps its topology in a database of its own.
            _ = try PostgresConnection(url: fixture.url).execute("CREATE DATABASE manager")
            let managerDatabase = PostgresDatabase(url: fixture.url.replacingOccurrences(of: "/weft", with: "/manager"))
            _ = try await managerDatabase.withConnection { try DomainManager.migrator.migrate($0) }
            let manager = try DomainManager(
                name: "domain1", namespaceKey: namespaceKey, memberKey: try SigningPrivateKey.generate(), database: managerDatabase, logger: Logger(label: "test"))
            var clients: [RPCClient] = []
            for port in ports { clients.append(try await Self.connect(directory, port)) }
            let parameters = Weft.V1.DomainParameters(
                participantResponseTimeout: .init(micros: 30_000_000), reconciliationInterval: .init(micros: 60_000_000), maxRequestSizeBytes: 1 << 20,
                ledgerTimeRecordTimeTolerance: .init(micros: 60_000_000), mediatorDeduplicationTimeout: .init(micros: 600_000_000),
                authenticationTokenLifetime: .init(micros: 3_600_000_000))
            try await manager.bootstrap(sequencers: clients, genesis: try await manager.genesis(sequencerKeys: [sequencerKey.publicKey], mediator: nil, parameters: parameters))
            let managerTLS = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: directory.ca.certificatePEM))
            await manager.connect(ports.map { .init(host: "127.0.0.1", port: $0, security: .tls(managerTLS)) }, sequencerKeys: [sequencerKey.publicKey])
            // Two participants, allow-listed by the manager, onboarded through the first sequencer.
            var participants: [(String, SigningPrivateKey)] = []
            var identities: [(UniqueIdentifier, SigningPrivateKey)] = []
            let domain = try UniqueIdentifier(parsing: domainID)
            for name in ["alice", "bob"] {
                let namespace = try SigningPrivateKey.generate()
                let signing = try SigningPrivateKey.generate()
                let id = try UniqueIdentifier(name: name, namespace: namespace.publicKey.fingerprint)
                let member = MemberID(role: .participant, identifier: id)
                _ = try await manager.change([.participantState(id, permission: .submission)])
                let identity = try SignedTopologyTransaction.participantIdentity(
                    id, namespaceKey: namespace, signingKey: signing.publicKey, encryptionKey: try EncryptionPrivateKey.generate().publicKey, domain: domain
                ).map(\.wire)
                _ = try await clients[0].sequencer.onboard(.init(participant: id.description, identity: identity))
                participants.append((member.description, signing))
                identities.append((id, namespace))
            }
            return Domain(
                directory: directory, processes: processes, ports: ports, domainID: domainID, sequencerKey: sequencerKey,
                alice: participants[0], bob: participants[1], manager: manager, aliceIdentity: identities[0])
        }

        /// `name`.yaml: a sequencer node numbered `node`, listening on `port`.
        static func writeConfiguration(_ directory: NodeDirectory, name: String, node: Int, port: Int, domainID: String, url: String) throws {
            try directory.write("\(name).yaml", """
                nodes:
                  \(name):
                    kind: sequencer
                    sequencer-node: \(node)
                    offline-after: 1s
                    listen: 127.0.0.1:\(port)
                    domain: \(domainID)
                    signing-key: keys-sequencer.pem
                    drain-timeout: 1s
                    tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem }
                    database: { url: \(url) }
                """)
        }

        static func connect(_ directory: NodeDirectory, _ port: Int) async throws -> RPCClient {
            let tls = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: directory.ca.certificatePEM))
            return try await RPCClient.connect(host: "127.0.0.1", port: port, security: .tls(tls))
        }

        /// A member's connection over every sequencer, first one first.
        func connection(_ member: (member: String, key: SigningPrivateKey)) throws -> SequencerConnection {
            let tls = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: directory.ca.certificatePEM))
            return SequencerConnection(
                member: member.member, domain: domainID, key: member.key, sequencerKeys: [sequencerKey.publicKey],
                endpoints: ports.map { .init(host: "127.0.0.1", port: $0, security: .tls(tls)) })
        }

        func stop() async {
            await manager.stop()
            for process in processes where process.process.isRunning {
                process.signal(SIGTERM)
                _ = await process.exitStatus()
            }
            directory.remove()
        }
    }

    /// Alice sends messages `alreadySent..<count` to Bob while `disrupt` runs after the first
    /// `after`; Bob, reading from his first event, must read each of `0..<count` exactly once, in order.
    static func sendAndRead(
        _ domain: Domain, count: Int, alreadySent: Int = 0, after: Int, disrupt: @escaping @Sendable () async throws -> Void
    ) async throws {
        let alice = try domain.connection(domain.alice)
        let bob = try domain.connection(domain.bob)
        let reader = Task {
            var received: [String] = []
            var counters: [UInt64] = []
            for try await event in bob.events(from: 0) {
                counters.append(event.counter)
                guard case .deliver(let deliver)? = event.event, deliver.sender == domain.alice.member else { continue }
                for envelope in deliver.batch?.envelopes ?? [] { received.append(String(decoding: envelope.content, as: UTF8.self)) }
                if received.count >= count { break }
            }
            return (received, counters)
        }
        for number in alreadySent..<count {
            if number == after { try await disrupt() }
            try await alice.send(.init(envelopes: [.init(content: Array("message \(number)".utf8), recipients: [domain.bob.member])]), messageID: "m\(number)")
        }
        let (received, counters) = try await reader.value
        #expect(received == (0..<count).map { "message \($0)" }, "lost, repeated or reordered messages")
        #expect(counters == Array(0..<UInt64(counters.count)), "Bob's counters are not consecutive")
        await alice.close()
        await bob.close()
    }

    @Test func killingASequencerProcessLosesAndRepeatsNothing() async throws {
        try await PostgresFixture.withFixture { fixture in
            let domain = try await Domain.start(fixture, sequencerCount: 2)
            try await Self.sendAndRead(domain, count: 120, after: 40) {
                // Both members are connected to the first sequencer: kill it without warning.
                domain.processes[0].signal(SIGKILL)
                _ = await domain.processes[0].exitStatus()
            }
            await domain.stop()
        }
    }

    /// One live process per sequencer node number (docs/sequencer.md §3.6): a second process
    /// started with a number in use exits with an error that says so, and the first keeps
    /// serving; after the first is killed, a process with its number starts (the killed one's
    /// lock went with its connection) and serves the same members.
    @Test func aNodeNumberInUseIsRefusedAndAKilledNodesSuccessorStarts() async throws {
        try await PostgresFixture.withFixture { fixture in
            let domain = try await Domain.start(fixture, sequencerCount: 1)
            let port = try ProcessDomain.freePort()
            try Domain.writeConfiguration(domain.directory, name: "again", node: 0, port: port, domainID: domain.domainID, url: fixture.url)
            let refused = try WeftProcess(["run", "-c", "again.yaml"], directory: domain.directory.path)
            #expect(await refused.exitStatus() != 0)
            #expect(refused.standardError.contains("sequencer node number 0 is in use by another live process"), "\(refused.standardError)")
            try await Self.sendAndRead(domain, count: 10, after: 10) {}

            domain.processes[0].signal(SIGKILL)
            _ = await domain.processes[0].exitStatus()
            let successor = try WeftProcess(["run", "-c", "again.yaml"], directory: domain.directory.path)
            let ready = await successor.nextLine()
            #expect(ready?.contains("listening on") == true, "the successor did not start: \(successor.standardError)")
            let moved = Domain(
                directory: domain.directory, processes: [successor], ports: [port], domainID: domain.domainID, sequencerKey: domain.sequencerKey,
                alice: domain.alice, bob: domain.bob, manager: domain.manager, aliceIdentity: domain.aliceIdentity)
            // Bob reads from the start: the ten messages above, then ten more through the successor.
            try await Self.sendAndRead(moved, count: 20, alreadySent: 10, after: 20) {}
            await moved.stop()
        }
    }

    /// Whether `member` receives a topology broadcast carrying `transaction` within 30 s.
    static func broadcastArrives(_ transaction: SignedTopologyTransaction, at member: SequencerConnection) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    for try await event in member.events(from: 0) {
                        guard case .deliver(let deliver)? = event.event else { continue }
                        for envelope in deliver.batch?.envelopes ?? [] {
                            guard case .topologyBroadcast(let broadcast)? = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content).message
                            else { continue }
                            if broadcast.transactions.contains(transaction.wire) { return true }
                        }
                    }
                } catch {}
                return false
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(30))  // a deadline, not a wait for the event
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// A participant's request to host one of its parties, whose broadcast failed at the
    /// domain manager (as when its sequencers are away for longer than a send retries), is read
    /// again and broadcast: the hosting reaches every member.
    @Test func aHostingRequestWhoseBroadcastFailedIsBroadcastAllTheSame() async throws {
        try await PostgresFixture.withFixture { fixture in
            let domain = try await Domain.start(fixture, sequencerCount: 1)
            let alice = try domain.connection(domain.alice)
            let bob = try domain.connection(domain.bob)
            let party = try UniqueIdentifier(name: "carol", namespace: domain.aliceIdentity.id.namespace)
            let hosting = try SignedTopologyTransaction(
                signing: .init(
                    replace: .hosting(party: party, on: domain.aliceIdentity.id, permission: .submission), serial: 1,
                    domain: try UniqueIdentifier(parsing: domain.domainID)),
                with: [domain.aliceIdentity.namespaceKey])
            await domain.manager.failNextRequestBroadcast()
            let publisher = SequencerHostingPublisher(connection: alice, domain: try UniqueIdentifier(parsing: domain.domainID))
            try await publisher.publish(hosting)
            // Bob gets the domain manager's broadcast of it (within 30 s; a failed broadcast
            // was lost for good before).
            let broadcast = await Self.broadcastArrives(hosting, at: bob)
            #expect(broadcast, "the hosting was not broadcast after its first broadcast failed")
            await alice.close()
            await bob.close()
            await domain.stop()
        }
    }

    /// A request whose broadcast is refused for good (here as too large: a retry meets the
    /// same refusal) is given up, said so in the log, and the domain manager goes on: a change
    /// made after it is applied. (Reading such a request again for ever stopped every change.)
    @Test func aHostingRequestRefusedForGoodDoesNotStopTheDomainManager() async throws {
        try await PostgresFixture.withFixture { fixture in
            let domain = try await Domain.start(fixture, sequencerCount: 1)
            let alice = try domain.connection(domain.alice)
            let domainID = try UniqueIdentifier(parsing: domain.domainID)
            let party = try UniqueIdentifier(name: "dora", namespace: domain.aliceIdentity.id.namespace)
            let hosting = try SignedTopologyTransaction(
                signing: .init(replace: .hosting(party: party, on: domain.aliceIdentity.id, permission: .submission), serial: 1, domain: domainID),
                with: [domain.aliceIdentity.namespaceKey])
            // Every attempt is refused alike, as a request too large would be.
            await domain.manager.failNextRequestBroadcast(
                with: RPCError(.resourceExhausted, "too large (failNextRequestBroadcast)", errorID: "RPC_MESSAGE_TOO_LARGE"), times: 1_000)
            try await SequencerHostingPublisher(connection: alice, domain: domainID).publish(hosting)
            // A change after the request: applied within the change's own 30 s.
            let carol = try UniqueIdentifier(name: "carol", namespace: try SigningPrivateKey.generate().publicKey.fingerprint)
            _ = try await domain.manager.change([.participantState(carol, permission: .submission)])
            #expect(await domain.manager.snapshot().hostingParticipants(of: party).isEmpty, "the refused request was not broadcast")
            // The allocation repeated once the refusal has passed: a new request, broadcast under
            // an id of its own (the same message was refused as a duplicate until a prune).
            await domain.manager.failNextRequestBroadcast(times: 0)
            try await SequencerHostingPublisher(connection: alice, domain: domainID).publish(hosting)
            let bob = try domain.connection(domain.bob)
            #expect(await Self.broadcastArrives(hosting, at: bob), "the repeated request was not broadcast")
            await bob.close()
            await alice.close()
            await domain.stop()
        }
    }

    @Test func restartingTheDatabaseLosesAndRepeatsNothing() async throws {
        try await PostgresFixture.withFixture { fixture in
            let domain = try await Domain.start(fixture, sequencerCount: 1)
            try await Self.sendAndRead(domain, count: 120, after: 40) {
                try await fixture.restart()
            }
            await domain.stop()
        }
    }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
