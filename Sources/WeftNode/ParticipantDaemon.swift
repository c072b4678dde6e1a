import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import WeftAuth
import WeftCrypto
import WeftLedgerAPI
import WeftParticipant
import WeftSequencer
import WeftStore
import WeftTopology
import WeftTransport
import WeftWire

/// A participant node: its keys, its database, its connection to a domain
/// (made by `connect-multi`, kept in the database, resumed at start), the
/// participant core processing its sequencer stream, and its APIs — the
/// participant administration service and the Ledger API — on its `listen`
/// address.
final class ParticipantDaemon: Service {
    let settings: NodeSettings
    let keys: ParticipantKeys
    let id: UniqueIdentifier
    let access: NodeAccess
    /// The participant core's settings from the node's section (`view-session-key-lifetime`).
    let configuration: ParticipantConfiguration
    let logger: Logger
    let ready: @Sendable (String) -> Void

    init(_ settings: NodeSettings, logger: Logger, ready: @escaping @Sendable (String) -> Void) throws(ConfigurationError) {
        self.settings = settings
        do {
            keys = try ParticipantKeys.load(node: settings.name, section: settings.section)
            id = try keys.id
        } catch {
            throw .invalid(
                key: settings.section.fullKey("namespace-key"), value: settings.section.string("namespace-key", default: "keys/\(settings.name)-namespace-key.pem"),
                expected: "readable key files made by `weft participant id` or `weft keys generate` (\(error))",
                source: settings.section.source(of: "namespace-key") ?? .defaultValue)
        }
        access = try NodeAccess(settings, participantID: id.description)
        configuration = try Self.configuration(settings)
        var logger = logger
        logger[metadataKey: "node"] = "\(settings.name)"
        self.logger = logger
        self.ready = ready
    }

    /// The participant core's settings in the node's section.
    static func configuration(_ settings: NodeSettings) throws(ConfigurationError) -> ParticipantConfiguration {
        let key = "view-session-key-lifetime"
        let lifetime = try settings.section.duration(key, default: OutgoingSessionKeys.defaultLifetime)
        guard lifetime <= OutgoingSessionKeys.maximumLifetime else {
            throw .invalid(
                key: settings.section.fullKey(key), value: settings.section.string(key) ?? "",
                expected: "a duration of at most 1h (0s: every view's seed wrapped for each recipient)",
                source: settings.section.source(of: key) ?? .defaultValue)
        }
        return ParticipantConfiguration(viewSessionKeyLifetime: lifetime)
    }

    func run() async throws {
        try await NodeObservability.running(settings, logger: logger) { database, observability in
            try await serve(database, observability)
        }
    }

    /// Resumes the participant's domain connection and starts its server, serves until the
    /// group shuts down, then drains. A failure to start stops the runtime too, so that its
    /// node stores what it processed (its write-behind, its cursor) before the database closes.
    private func serve(_ database: PostgresDatabase, _ observability: NodeObservability) async throws {
        try await NodeDatabase.prepare(database, migrators: NodeMigrations.migrators(for: .participant), migrate: settings.migrate, logger: logger)
        let runtime = ParticipantRuntime(
            identity: ParticipantIdentity(id: id, signingKey: keys.signing, encryptionKey: keys.encryption), namespaceKey: keys.namespace,
            database: database, rpc: settings.rpc, authorizer: access.authorizer, configuration: configuration, logger: logger)
        let server: RPCServer
        do {
            try await runtime.resume()
            var router = RPCRouter()
            ParticipantAdministration(runtime: runtime).register(on: &router)
            // The Ledger API exists once the participant is connected to a domain; until then its
            // calls are UNAVAILABLE with what to do.
            router.registerDeferred(
                LedgerAPI.methods,
                unavailable: RPCError(
                    .unavailable, "participant \(id) is not connected to a domain yet; connect it with `weft participant connect-multi … --remote`",
                    errorID: "PARTICIPANT_NOT_CONNECTED")
            ) { await runtime.ledgerRouter }
            access.install(
                on: &router, adminPaths: Set(Weft.V1.ParticipantAdministrationService.methods.map(\.path)),
                auditedPaths: Set(LedgerAPI.methods.map(\.path)), adminClaimPaths: Set(LedgerAPI.adminMethods.map(\.path)),
                logger: logger)
            server = try await RPCServer.start(
                host: settings.listenHost, port: settings.listenPort, security: settings.serverSecurity(), router: router,
                configuration: settings.rpc, logger: logger)
        } catch {
            await runtime.stop()
            throw error
        }
        observability.serving()
        ready("node \(settings.name) (participant \(id)) listening on \(settings.listenHost):\(server.port)" + observability.readyNote)
        try? await gracefulShutdown()
        logger.info("draining", metadata: ["timeout": "\(settings.drainTimeout)"])
        observability.drain()
        await server.shutdown(gracePeriod: TimeAmount(settings.drainTimeout))
        await runtime.stop()
        logger.info("stopped")
    }
}

/// What a participant node runs, once connected: its domain connection and its core.
actor ParticipantRuntime {
    let identity: ParticipantIdentity
    let namespaceKey: SigningPrivateKey
    let database: PostgresDatabase
    let store: ParticipantStore
    let connections: DomainConnectionStore
    let rpc: RPCConfiguration
    let authorizer: CallAuthorizer
    let configuration: ParticipantConfiguration
    let logger: Logger
    private(set) var node: ParticipantNode?
    private(set) var ledgerAPI: LedgerAPI?
    /// The Ledger API's routes while connected (while held for repair: routes answering
    /// UNAVAILABLE `PARTICIPANT_HELD_FOR_REPAIR`).
    private(set) var ledgerRouter: RPCRouter?
    /// The Ledger API's routes kept back while the node is held for repair.
    private var ledgerRouterAfterRepair: RPCRouter?
    private(set) var connected: DomainConnectionSettings?
    /// An `ImportAcs` call is running: a second one waits for nothing, it is refused.
    var repairImportRunning = false
    /// The domain operation running now (connect, disconnect, migrate): one at a time, since
    /// each stops or starts the node across awaits.
    private var operation: String?

    init(
        identity: ParticipantIdentity, namespaceKey: SigningPrivateKey, database: PostgresDatabase, rpc: RPCConfiguration,
        authorizer: CallAuthorizer, configuration: ParticipantConfiguration = ParticipantConfiguration(), logger: Logger
    ) {
        self.authorizer = authorizer
        self.configuration = configuration
        self.identity = identity
        self.namespaceKey = namespaceKey
        self.database = database
        store = ParticipantStore(database: database, participant: identity.id)
        connections = DomainConnectionStore(database: database, participant: identity.id.description)
        self.rpc = rpc
        self.logger = logger
    }

    /// Reconnects to the domain stored by an earlier `connect`.
    func resume() async throws {
        guard let stored = try await connections.load().first else {
            logger.info("not connected to a domain yet; connect with `weft participant connect-multi … --remote <this node>`")
            return
        }
        try await start(stored)
        // A migration to this domain whose parties were not hosted yet (a stop in between).
        Task { try? await self.exclusively("finishing the domain migration") { await self.finishMigration(of: stored) } }
    }

    /// Runs `body` unless another domain operation runs: then ABORTED, to be retried.
    func exclusively<T: Sendable>(_ name: String, _ body: @Sendable () async throws -> T) async throws -> T {
        if let operation {
            throw RPCError(
                .aborted, "\(operation) is in progress on this participant; try \(name) again once it has finished",
                errorID: "PARTICIPANT_DOMAIN_OPERATION_IN_PROGRESS")
        }
        operation = name
        defer { operation = nil }
        return try await body()
    }

    /// The stored connections, and whether each is running.
    /// (`heldForRepair` of each is as stored: true until its repair import finished.)
    func list() async throws -> [(DomainConnectionSettings, connected: Bool)] {
        try await connections.load().map { ($0, $0.alias == connected?.alias) }
    }

    /// Connects to the domain whose sequencers are `urls`: asks the first that answers for the
    /// domain's identity and keys, presents the participant's identity (the domain manager
    /// admits it only if allow-listed), stores the connection and starts processing — or, with
    /// `repair`, holds the node until its peers' snapshots are imported (`importSnapshots`).
    func connect(alias: String, urls: [String], rootCertificatePEM: String, repair: Bool = false) async throws -> String {
        guard !alias.isEmpty, !urls.isEmpty else {
            throw RPCError(.invalidArgument, "give a domain alias and at least one sequencer URL", errorID: "PARTICIPANT_CONNECT_ARGUMENTS")
        }
        if let connected {
            guard connected.alias == alias else {
                throw RPCError(
                    .failedPrecondition, "connected to domain \(connected.alias) (\(connected.domain)) already; this release connects a participant to one domain",
                    errorID: "PARTICIPANT_ALREADY_CONNECTED")
            }
            if repair, !connected.heldForRepair {
                try await holdForRepair(connected)
            }
            return connected.domain
        }
        let settings = try await onboard(alias: alias, urls: urls, rootCertificatePEM: rootCertificatePEM, repair: repair)
        try await connections.save(settings)
        try await start(settings)
        logger.info("connected to domain", metadata: ["alias": "\(alias)", "domain": "\(settings.domain)"])
        return settings.domain
    }

    /// Asks the first of the sequencers `urls` that answers for the domain's identity and
    /// keys and presents the participant's identity to it (the domain manager admits it only
    /// if allow-listed; a participant known already is accepted again): the connection to
    /// store, not stored yet (`repair`: to be held for a repair import).
    func onboard(alias: String, urls: [String], rootCertificatePEM: String, repair: Bool = false) async throws
        -> DomainConnectionSettings
    {
        let endpoints = try urls.map { try Self.endpoint($0, rootCertificatePEM: rootCertificatePEM) }
        var failures: [String] = []
        for endpoint in endpoints {
            let client: RPCClient
            do {
                client = try await RPCClient.connect(host: endpoint.host, port: endpoint.port, security: endpoint.security, configuration: rpc)
            } catch {
                failures.append("\(endpoint): \(error)")
                continue
            }
            defer { Task { await client.close() } }
            let info = try await client.sequencer.getDomainInfo(.init(), timeout: .seconds(30))
            let domain = try UniqueIdentifier(parsing: info.domain)
            let identityTransactions = try SignedTopologyTransaction.participantIdentity(
                identity.id, namespaceKey: namespaceKey, signingKey: identity.signingKey.publicKey, encryptionKey: identity.encryptionKey.publicKey,
                domain: domain
            ).map(\.wire)
            // A sequencer node taking no more calls without a token for the moment (a flood, or
            // many participants joining at once) says so: retry for a while before failing.
            for attempt in 1... {
                do {
                    _ = try await client.sequencer.onboard(
                        .init(participant: identity.id.description, identity: identityTransactions), timeout: .seconds(60))
                    break
                } catch let error as RPCError where error.errorID == "SEQUENCER_ONBOARDING_RATE_LIMITED" && attempt < 30 {
                    try await Task.sleep(for: .seconds(1))
                }
            }
            let settings = DomainConnectionSettings(
                alias: alias, domain: info.domain, sequencerURLs: urls, rootCertificatePEM: rootCertificatePEM,
                sequencerKeys: try info.sequencerKeys.map { try SigningPublicKey($0) }, heldForRepair: repair)
            guard !settings.sequencerKeys.isEmpty else {
                throw RPCError(.failedPrecondition, "the sequencer named no signing keys of its own; is it initialized?", errorID: "PARTICIPANT_NO_SEQUENCER_KEYS")
            }
            return settings
        }
        throw RPCError(.unavailable, "no sequencer answered: \(failures.joined(separator: "; "))", errorID: "PARTICIPANT_SEQUENCERS_UNAVAILABLE")
    }

    /// Stops processing the domain's stream and forgets the connection; the participant's
    /// ledger stays, and a later `connect` resumes from where it stopped.
    func disconnect(alias: String) async throws {
        guard try await connections.load().contains(where: { $0.alias == alias }) else {
            throw RPCError(.notFound, "no domain connection named \(alias); `weft participant domains` lists them", errorID: "PARTICIPANT_UNKNOWN_DOMAIN")
        }
        if connected?.alias == alias { await stop() }
        try await connections.remove(alias: alias)
    }

    func stop() async {
        ledgerRouter = nil
        await ledgerAPI?.stop()
        ledgerAPI = nil
        await node?.stop()
        node = nil
        connected = nil
        ledgerRouterAfterRepair = nil
    }

    func start(_ settings: DomainConnectionSettings) async throws {
        if node != nil { await stop() }  // one node per participant, whatever asked
        let domain = try UniqueIdentifier(parsing: settings.domain)
        let topology = MemberTopology(
            domain: domain, store: TopologyStore(database: database, domain: domain, member: identity.member, logger: logger), logger: logger)
        try await topology.start()
        if await topology.isInitialized {
            // The keys pinned at connect must be the ones the domain's topology registers.
            let sequencer = MemberID(role: .sequencer, identifier: domain)
            let registered = Set(await topology.snapshot(at: SequencingTimestamp(microsSinceEpoch: .max)).signingKeys(of: sequencer).map(\.fingerprint))
            guard Set(settings.sequencerKeys.map(\.fingerprint)).isSubset(of: registered) else {
                throw RPCError(
                    .failedPrecondition,
                    "the sequencer keys pinned when connecting to \(settings.alias) are not the ones the domain's topology registers; disconnect and connect again after checking the domain's root certificate",
                    errorID: "PARTICIPANT_SEQUENCER_KEYS_MISMATCH")
            }
        }
        let connection = SequencerConnection(
            member: identity.member.description, domain: settings.domain, key: identity.signingKey, sequencerKeys: settings.sequencerKeys,
            endpoints: try settings.sequencerURLs.map { try Self.endpoint($0, rootCertificatePEM: settings.rootCertificatePEM) }, configuration: rpc,
            logger: logger)
        // The Ledger API follows the node's completions before the node reads its stream.
        let node = try await ParticipantNode.start(
            identity: identity, domain: domain, store: store, topology: topology, connection: connection, configuration: configuration,
            logger: logger, processing: false)
        let api: LedgerAPI
        do {
            api = try await LedgerAPI.start(
                participant: node, database: database, namespaceKey: namespaceKey,
                publisher: SequencerHostingPublisher(connection: connection, domain: domain), authorizer: authorizer, logger: logger)
        } catch {
            await node.stop()
            throw error
        }
        var router = RPCRouter()
        api.register(on: &router)
        self.node = node
        ledgerAPI = api
        connected = settings
        if settings.heldForRepair {
            ledgerRouterAfterRepair = router
            ledgerRouter = Self.heldForRepairRouter(identity.id)
            logger.warning(
                "held for repair: the domain's stream is not processed until the peers' snapshots are imported; import them with `weft repair import-acs FILE… --remote <this node>`",
                metadata: ["alias": "\(settings.alias)", "domain": "\(settings.domain)"])
        } else {
            await node.beginProcessing()
            ledgerRouter = router
        }
    }

    /// Holds a connected node for repair after all: allowed while its store is still empty —
    /// a node started on a new database that found its stream pruned (`PARTICIPANT_EVENTS_PRUNED`)
    /// and processed nothing — and refused once it processed events (a repair imports only into
    /// an empty store).
    private func holdForRepair(_ settings: DomainConnectionSettings) async throws {
        guard let node, await node.nextCounter == 0, await node.ledgerEndOffset == 0 else {
            throw RPCError(
                .failedPrecondition,
                "connected to \(settings.alias) and processing its stream already: a repair needs the participant's new, empty database (docs/operator-guide.md §7.2)",
                errorID: "PARTICIPANT_REPAIR_NOT_EMPTY")
        }
        await stop()
        var held = settings
        held.heldForRepair = true
        try await connections.save(held)
        try await start(held)
    }

    /// Whether the connected node waits for its repair import.
    var heldForRepair: Bool { connected?.heldForRepair ?? false }

    /// The repair import finished: records it (a restart processes the stream), then lets the
    /// node process its stream and serves the Ledger API.
    func releaseFromRepair() async throws {
        guard let settings = connected, settings.heldForRepair, let node else { return }
        try await connections.releaseFromRepair(alias: settings.alias)
        connected?.heldForRepair = false
        await node.finishRepair()
        ledgerRouter = ledgerRouterAfterRepair
        ledgerRouterAfterRepair = nil
        logger.info("repair finished: processing the domain's stream", metadata: ["alias": "\(settings.alias)"])
    }

    /// Ledger API routes of a node held for repair: each call answers UNAVAILABLE saying what
    /// to do, instead of waiting for a stream that is not processed.
    private static func heldForRepairRouter(_ participant: UniqueIdentifier) -> RPCRouter {
        var router = RPCRouter()
        router.registerDeferred(
            LedgerAPI.methods,
            unavailable: RPCError(
                .unavailable,
                "participant \(participant) is held for repair: import the peers' ACS snapshots with `weft repair import-acs FILE…` (docs/operator-guide.md §7.2); its Ledger API answers after that",
                errorID: "PARTICIPANT_HELD_FOR_REPAIR")
        ) { nil }
        return router
    }

    /// `https://host:port` or `host:port` (TLS with the root certificate), `http://host:port` (plaintext).
    static func endpoint(_ url: String, rootCertificatePEM: String) throws -> SequencerConnection.Endpoint {
        var rest = Substring(url)
        var plaintext = false
        if rest.hasPrefix("https://") {
            rest = rest.dropFirst("https://".count)
        } else if rest.hasPrefix("http://") {
            rest = rest.dropFirst("http://".count)
            plaintext = true
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else {
            throw RPCError(.invalidArgument, "sequencer URL \(url): expected https://host:port", errorID: "PARTICIPANT_BAD_SEQUENCER_URL")
        }
        let host = String(rest[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if plaintext { return .init(host: host, port: port, security: .plaintext) }
        guard !rootCertificatePEM.isEmpty else {
            throw RPCError(.invalidArgument, "give the domain's root certificate (--root-cert ca.pem) to reach \(url) over TLS", errorID: "PARTICIPANT_NO_ROOT_CERT")
        }
        let tls = try TLSContext(.init(role: .client(serverHostname: host), trustRootsPEM: rootCertificatePEM))
        return .init(host: host, port: port, security: .tls(tls))
    }
}

/// `weft.v1.ParticipantAdministrationService` of a participant node.
struct ParticipantAdministration: Weft.V1.ParticipantAdministrationService.Provider {
    let runtime: ParticipantRuntime

    func getParticipantID(_ request: Weft.V1.GetParticipantIdRequest, context: RPCCallContext) async throws -> Weft.V1.GetParticipantIdResponse {
        .init(participant: runtime.identity.id.description)
    }

    func connectDomain(_ request: Weft.V1.ConnectDomainRequest, context: RPCCallContext) async throws -> Weft.V1.ConnectDomainResponse {
        .init(
            domain: try await runtime.exclusively("a domain connection") {
                try await runtime.connect(
                    alias: request.alias, urls: request.sequencerURLs, rootCertificatePEM: request.rootCertificatePem, repair: request.repair)
            })
    }

    func disconnectDomain(_ request: Weft.V1.DisconnectDomainRequest, context: RPCCallContext) async throws -> Weft.V1.DisconnectDomainResponse {
        try await runtime.exclusively("a domain disconnection") { try await runtime.disconnect(alias: request.alias) }
        return .init()
    }

    func listDomainConnections(_ request: Weft.V1.ListDomainConnectionsRequest, context: RPCCallContext) async throws -> Weft.V1.ListDomainConnectionsResponse {
        .init(connections: try await runtime.list().map { settings, connected in
            .init(
                alias: settings.alias, domain: settings.domain, sequencerURLs: settings.sequencerURLs, connected: connected,
                heldForRepair: settings.heldForRepair)
        })
    }

    func migrateDomain(_ request: Weft.V1.MigrateDomainRequest, context: RPCCallContext) async throws -> Weft.V1.MigrateDomainResponse {
        try await runtime.exclusively("a domain migration") {
            try await runtime.migrate(
                from: request.fromAlias, to: request.toAlias, urls: request.sequencerURLs, rootCertificatePEM: request.rootCertificatePem)
        }
    }
}
