import ArgumentParser
import Foundation
import Logging
import WeftCrypto
import WeftDomainManager
import WeftNode
import WeftSequencer
import WeftStore
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire

/// The README's main command: a domain on PostgreSQL (two sequencer nodes and a
/// domain manager), three participants onboarded as the seed tells it, and an
/// encrypted message that only its recipients can read, while the sequencers
/// store ciphertext only.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the demo: a domain with two sequencers and a domain manager, three participants, encrypted messages.",
        discussion: """
            Without --database-url (or WEFT_DATABASE_URL), starts a throw-away PostgreSQL
            server from the system's binaries (scripts/pg-fixture) and removes it afterwards.
            Everything runs in this process over real TLS on 127.0.0.1; Ctrl-C stops it.
            """
    )

    @Option(name: .customLong("database-url"), help: "libpq URL of a PostgreSQL database to use instead of a throw-away one (it must be empty).")
    var databaseURL: String?

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .error  // the demo narrates; errors still show
            return handler
        }
        let configured = databaseURL ?? ProcessInfo.processInfo.environment["WEFT_DATABASE_URL"]
        if let configured {
            print("database: \(ConnectionStringRedaction.masked(configured)) (given)")
            try await Demo(url: configured).run()
        } else {
            print("database: starting a throw-away PostgreSQL (scripts/pg-fixture) …")
            let fixture = try await PostgresFixture.startThrowAwayServer()
            print("database: \(fixture.url) in \(fixture.directory ?? "?")")
            do {
                try await Demo(url: fixture.url).run()
            } catch {
                try? await fixture.stop()
                throw error
            }
            try await fixture.stop()
            print("database: stopped and removed")
        }
    }
}

/// One run of the demo against the database at `url`.
struct Demo {
    let url: String
    let logger = Logger(label: "weft.demo")

    func step(_ text: String) { print("\n== " + text) }

    func run() async throws {
        // The domain owner's material: a root CA for TLS, and keys.
        step("The domain owner creates the domain's root certificate and keys")
        let ca = try CertificateAuthority.makeRoot(commonName: "domain1")
        let nodeCertificate = try CertificateAuthority.issue(commonName: "sequencer", hostnames: ["localhost", "127.0.0.1"], signedBy: ca)
        let namespaceKey = try SigningPrivateKey.generate()
        let sequencerKey = try SigningPrivateKey.generate()
        let managerKey = try SigningPrivateKey.generate()
        print("   root certificate for TLS (ca.pem, handed to every participant); namespace key \(namespaceKey.publicKey.fingerprint)")

        // Two sequencer nodes in front of one database.
        step("Two sequencer nodes start on one PostgreSQL database")
        let setup = try PostgresConnection(url: url)
        try Sequencer.migrator.migrate(setup)
        try SequencerTopology.migrator.migrate(setup)
        let domainID = try UniqueIdentifier(name: "domain1", namespace: namespaceKey.publicKey.fingerprint)
        var nodes: [(sequencer: Sequencer, topology: SequencerTopology, server: RPCServer)] = []
        let serverTLS = try TLSContext(.init(role: .server(requireClientCertificate: false), credentials: nodeCertificate))
        for number in 0..<2 {
            let sequencer = Sequencer(node: Int16(number), database: PostgresDatabase(url: url), logger: logger)
            try await sequencer.start()
            let topology = try SequencerTopology(domain: domainID, sequencer: sequencer, logger: logger)
            let service = SequencerServiceProvider(sequencer: sequencer, topology: topology, signingKey: sequencerKey, logger: logger)
            try await topology.start { member in await service.cutOff(member) }
            var router = RPCRouter()
            service.register(on: &router)
            SequencerAdministration(sequencer: sequencer, topology: topology, name: "sequencer\(number)").register(on: &router)
            let server = try await RPCServer.start(host: "127.0.0.1", port: 0, security: .tls(serverTLS), router: router, logger: logger)
            nodes.append((sequencer, topology, server))
            print("   sequencer node \(number) listening on 127.0.0.1:\(server.port) (TLS 1.3, ALPN weft/1)")
        }
        let clientTLS = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: ca.certificatePEM))
        func connect(_ node: Int) async throws -> RPCClient {
            try await RPCClient.connect(host: "127.0.0.1", port: nodes[node].server.port, security: .tls(clientTLS))
        }

        // The domain manager bootstraps the domain.
        step("The domain manager bootstraps the domain")
        // The domain manager keeps its topology in a database of its own, next to the sequencers'.
        guard var components = URLComponents(string: url), let database = components.path.split(separator: "/").last else {
            throw ValidationError("the demo needs a postgresql://…/DATABASE URL")
        }
        let managerDatabaseName = "\(database)_domain_manager"
        // An identifier cannot be a bound parameter: accept only plain names.
        guard managerDatabaseName.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            throw ValidationError("the demo's database name must be letters, digits and _ (got \(database))")
        }
        if try setup.execute("SELECT 1 FROM pg_database WHERE datname = $1", [.text(managerDatabaseName)]).rows.isEmpty {
            _ = try setup.execute("CREATE DATABASE \"\(managerDatabaseName)\"")
        }
        components.path = "/" + managerDatabaseName
        let managerDatabase = PostgresDatabase(url: components.string ?? url)
        _ = try await managerDatabase.withConnection { try DomainManager.migrator.migrate($0) }
        let manager = try DomainManager(name: "domain1", namespaceKey: namespaceKey, memberKey: managerKey, database: managerDatabase, logger: logger)
        let parameters = Weft.V1.DomainParameters(
            participantResponseTimeout: .init(micros: 30_000_000), reconciliationInterval: .init(micros: 60_000_000), maxRequestSizeBytes: 1 << 20,
            ledgerTimeRecordTimeTolerance: .init(micros: 60_000_000), mediatorDeduplicationTimeout: .init(micros: 600_000_000),
            authenticationTokenLifetime: .init(micros: 3_600_000_000))
        let genesis = try await manager.genesis(sequencerKeys: [sequencerKey.publicKey], mediator: nil, parameters: parameters)
        try await manager.bootstrap(sequencers: [try await connect(0), try await connect(1)], genesis: genesis)
        await manager.connect(
            nodes.map { SequencerConnection.Endpoint(host: "127.0.0.1", port: $0.server.port, security: .tls(clientTLS)) }, sequencerKeys: [sequencerKey.publicKey])
        print("   domain \(domainID): \(genesis.count) topology transactions signed by its namespace key, given to both sequencers")

        // Three participants, onboarded as the seed tells it.
        step("Three participants join: id, allow-list, connect-multi with the root certificate")
        let endpoints = nodes.map { SequencerConnection.Endpoint(host: "127.0.0.1", port: $0.server.port, security: .tls(clientTLS)) }
        var participants: [DemoParticipant] = []
        for name in ["participant1", "participant2", "participant3"] {
            let participant = try DemoParticipant(name: name)
            print("   \(name) prints its id: \(participant.id)")
            let identity = try participant.identity(domain: domainID)
            let client = try await connect(participants.count % 2)
            if participants.isEmpty {
                do {
                    _ = try await client.sequencer.onboard(.init(participant: participant.id.description, identity: identity))
                } catch let error as RPCError {
                    print("   before the owner allow-lists it, connecting is refused: \(error.message)")
                }
            }
            _ = try await manager.change([.participantState(participant.id, permission: .submission)])
            print("   the domain owner runs: set-state \(participant.id.name)::… --permission submission")
            _ = try await client.sequencer.onboard(.init(participant: participant.id.description, identity: identity))
            await client.close()
            participant.connection = SequencerConnection(
                member: participant.member.description, domain: domainID.description, key: participant.signingKey,
                sequencerKeys: [sequencerKey.publicKey], endpoints: participants.count % 2 == 0 ? endpoints : endpoints.reversed(), logger: logger)
            print("   \(name) registered its keys through sequencer node \(participants.count % 2) and is a member")
            participants.append(participant)
        }

        // An encrypted message and what each member sees.
        step("participant1 sends a view to participant2 only, and a note to all three")
        let (p1, p2, p3) = (participants[0], participants[1], participants[2])
        let secret = "IOU: participant1 owes participant2 100 USD (demo marker \(UInt64.random(in: 1...UInt64.max)))"
        let view = Array(secret.utf8)
        let sealed = try ViewEncryption.seal(view, viewHash: PurposeHasher.hash(.transactionView, view), recipients: [p2.encryptionKey.publicKey])
        let note = Array("hello from participant1".utf8)
        try await p1.connection!.send(.init(envelopes: [
            .init(content: try Weft.V1.EnvelopeContent(message: .encryptedView(sealed.message)).serializedBytes(), recipients: [p2.member.description]),
            .init(content: note, recipients: participants.map(\.member.description)),
        ]), messageID: "demo-1")
        for participant in [p1, p2, p3] {
            let events = participant.connection!.events(from: 0)
            for try await event in events {
                guard case .deliver(let deliver)? = event.event, deliver.messageID == "demo-1" else { continue }
                var seen: [String] = []
                for envelope in deliver.batch?.envelopes ?? [] {
                    if let content = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content), case .encryptedView(let message)? = content.message {
                        let plain = try ViewEncryption.open(message, with: participant.encryptionKey)
                        seen.append("an encrypted view, decrypted: \"\(String(decoding: plain, as: UTF8.self))\"")
                    } else {
                        seen.append("\"\(String(decoding: envelope.content, as: UTF8.self))\"")
                    }
                }
                print("   \(participant.id.name) event #\(event.counter), signed by the sequencers: \(seen.joined(separator: " and "))")
                break
            }
        }

        // What the sequencers stored.
        step("What the sequencers stored in PostgreSQL")
        let row = try setup.execute("SELECT length(batch), recipients::text FROM sequencer_events WHERE message_id = 'demo-1'").rows[0]
        let stored = try setup.execute("SELECT coalesce(string_agg(e::text, ' '), '') FROM sequencer_events e").rows[0][0].string ?? ""
        let marker = secret.suffix(20)
        let hexMarker = marker.utf8.map { String(format: "%02x", $0) }.joined()
        print("   one event, \(try row[0].int64 ?? 0) bytes of batch, recipients \(try row[1].string ?? "")")
        print("   the view's text appears in the sequencer's tables: \(stored.contains(marker) || stored.contains(hexMarker) ? "YES (a bug!)" : "no — ciphertext only")")
        let status = try await nodes[0].sequencer.status()
        print("   members: \(status.members.map { $0.name.prefix(20) + "…" }.joined(separator: ", "))")

        step("Stopping")
        for participant in participants { await participant.connection?.close() }
        await manager.stop()
        for node in nodes {
            await node.server.shutdown(gracePeriod: .seconds(1))
            await node.topology.stop()
            await node.sequencer.stop()
        }
        print("\nNext (see `issues`): the mediator, participants validating transactions, and the Ledger API.")
    }
}

/// A participant's keys and its connection to the domain.
final class DemoParticipant: @unchecked Sendable {
    // Set once during set-up, before use from other tasks.
    let namespaceKey: SigningPrivateKey
    let signingKey: SigningPrivateKey
    let encryptionKey: EncryptionPrivateKey
    let id: UniqueIdentifier
    var connection: SequencerConnection?
    var member: MemberID { MemberID(role: .participant, identifier: id) }

    init(name: String) throws {
        namespaceKey = try SigningPrivateKey.generate()
        signingKey = try SigningPrivateKey.generate()
        encryptionKey = try EncryptionPrivateKey.generate()
        id = try UniqueIdentifier(name: name, namespace: namespaceKey.publicKey.fingerprint)
    }

    func identity(domain: UniqueIdentifier) throws -> [Weft.V1.SignedTopologyTransaction] {
        try SignedTopologyTransaction.participantIdentity(
            id, namespaceKey: namespaceKey, signingKey: signingKey.publicKey, encryptionKey: encryptionKey.publicKey, domain: domain
        ).map(\.wire)
    }
}
