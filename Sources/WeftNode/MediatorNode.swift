import Logging
import NIOCore
import ServiceLifecycle
import WeftCrypto
import WeftMediator
import WeftSequencer
import WeftStore
import WeftTopology
import WeftTransport

/// A mediator node (`kind: mediator`): the mediator of a domain as a member of it. It reads its
/// sequencer stream through any of the domain's sequencers, keeps its own copy of the topology,
/// decides confirmation requests and sends the verdicts (docs/mediator.md). Its member id is
/// `MED::<domain>`; its signing key is the one the domain manager registered at bootstrap.
final class MediatorNode: Service {
    let settings: NodeSettings
    let logger: Logger
    let ready: @Sendable (String) -> Void
    let domain: UniqueIdentifier
    let signingKey: SigningPrivateKey
    let sequencerKey: SigningPublicKey
    let sequencers: SequencerEndpoints

    init(_ settings: NodeSettings, logger: Logger, ready: @escaping @Sendable (String) -> Void) throws {
        self.settings = settings
        var logger = logger
        logger[metadataKey: "node"] = "\(settings.name)"
        self.logger = logger
        self.ready = ready
        let section = settings.section
        let domainText = try section.required("domain")
        do {
            domain = try UniqueIdentifier(parsing: domainText)
        } catch {
            throw ConfigurationError.invalid(
                key: section.fullKey("domain"), value: domainText, expected: "a domain id such as domain1::1220… (\(error))",
                source: section.source(of: "domain") ?? .defaultValue)
        }
        let keyPath = try section.required("signing-key")
        do {
            signingKey = try KeyFile.readSigningKey(at: keyPath)
        } catch {
            throw ConfigurationError.invalid(
                key: section.fullKey("signing-key"), value: keyPath,
                expected: "the mediator's signing key file, as registered by the domain manager's bootstrap.mediator-key (\(error))",
                source: section.source(of: "signing-key") ?? .defaultValue)
        }
        sequencerKey = try PublicKeyFile.readSigning(try section.required("sequencer-key"))
        sequencers = try SequencerEndpoints(section, key: "sequencers")
    }

    func run() async throws {
        try await NodeObservability.running(settings, logger: logger) { database, observability in
            try await serve(database, observability)
        }
    }

    /// Starts the mediator and its server, follows the mediator's stream until the group shuts
    /// down or the stream fails for good, then drains. A failure to start closes the sequencer
    /// connection it had opened.
    private func serve(_ database: PostgresDatabase, _ observability: NodeObservability) async throws {
        try await NodeDatabase.prepare(database, migrators: NodeMigrations.migrators(for: .mediator), migrate: settings.migrate, logger: logger)
        let member = MemberID(role: .mediator, identifier: domain)
        let topology = MemberTopology(
            domain: domain, store: TopologyStore(database: database, domain: domain, member: member, logger: logger), logger: logger)
        try await topology.start()
        let mediator = try await Mediator.start(
            store: MediatorStore(database: database, mediator: member), domain: domain, signingKey: signingKey, logger: logger)
        let connection = SequencerConnection(
            member: member.description, domain: domain.description, key: signingKey, sequencerKeys: [sequencerKey],
            endpoints: try sequencers.endpoints(), configuration: settings.rpc, logger: logger)
        let driver = MediatorDriver(mediator: mediator, topology: topology, connection: connection, logger: logger)
        // The node's own API is the health and reflection services every node serves.
        let server: RPCServer
        do {
            server = try await RPCServer.start(
                host: settings.listenHost, port: settings.listenPort, security: settings.serverSecurity(), router: RPCRouter(),
                configuration: settings.rpc, logger: logger)
        } catch {
            await connection.close()
            throw error
        }
        observability.serving()
        ready("node \(settings.name) (mediator \(member)) listening on \(settings.listenHost):\(server.port)" + observability.readyNote)
        // Runs until SIGTERM / SIGINT, when the driver is cancelled (whatever it processed is
        // stored), or until its stream fails for good: then the node fails and `weft run` exits 1.
        // A failed stream stops the server and the connection all the same before it is thrown:
        // they are not left open while the process stops its other nodes.
        var failure: (any Error)?
        do {
            try await cancelWhenGracefulShutdown { try await driver.run() }
        } catch is CancellationError {
            // stopping
        } catch {
            failure = error
        }
        observability.drain()
        await server.shutdown(gracePeriod: TimeAmount(settings.drainTimeout))
        await connection.close()
        if let failure { throw failure }
        logger.info("stopped")
    }
}
