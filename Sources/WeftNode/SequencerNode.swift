import Logging
import NIOCore
import ServiceLifecycle
import WeftCrypto
public import WeftSequencer
import WeftTopology
import WeftStore
public import WeftTransport
public import WeftWire

/// A sequencer node: the sequencer core on the domain's shared database and
/// its RPC server. Several nodes of one domain share the database; each needs
/// its own `sequencer-node` number (0…31).
final class SequencerNode: Service {
    let settings: NodeSettings
    let number: Int16
    let domain: UniqueIdentifier
    let signingKey: SigningPrivateKey
    let timing: Sequencer.Timing
    let access: NodeAccess
    /// `honor-omit-receipt` (default true): false during a rolling upgrade from a version
    /// without `omit_receipt` (docs/operator-guide.md §5).
    let honorsOmitReceipt: Bool
    let logger: Logger
    let ready: @Sendable (String) -> Void

    init(_ settings: NodeSettings, logger: Logger, ready: @escaping @Sendable (String) -> Void) throws(ConfigurationError) {
        self.settings = settings
        let number = try settings.section.int("sequencer-node", default: 0)
        guard (0..<32).contains(number) else {
            throw .invalid(key: settings.section.fullKey("sequencer-node"), value: "\(number)", expected: "a number from 0 to 31, different for each sequencer node of the domain", source: settings.section.source(of: "sequencer-node") ?? .defaultValue)
        }
        self.number = Int16(number)
        let domainText = try settings.section.required("domain")
        do {
            domain = try UniqueIdentifier(parsing: domainText)
        } catch {
            throw .invalid(key: settings.section.fullKey("domain"), value: domainText, expected: "a domain id such as domain1::1220… (\(error))", source: settings.section.source(of: "domain") ?? .defaultValue)
        }
        let keyPath = try settings.section.required("signing-key")
        do {
            signingKey = try KeyFile.readSigningKey(at: keyPath)
        } catch {
            throw .invalid(key: settings.section.fullKey("signing-key"), value: keyPath, expected: "a signing key file made by `weft keys generate` (\(error))", source: settings.section.source(of: "signing-key") ?? .defaultValue)
        }
        var timing = Sequencer.Timing()
        timing.heartbeatInterval = try settings.section.duration("heartbeat-interval", default: timing.heartbeatInterval)
        timing.offlineAfter = try settings.section.duration("offline-after", default: timing.offlineAfter)
        timing.groupCommitSpacing = try settings.section.duration("group-commit-spacing", default: timing.groupCommitSpacing)
        self.timing = timing
        honorsOmitReceipt = try settings.section.bool("honor-omit-receipt", default: true)
        access = try NodeAccess(settings)
        var logger = logger
        logger[metadataKey: "node"] = "\(settings.name)"
        self.logger = logger
        self.ready = ready
    }

    func run() async throws {
        try await NodeObservability.running(settings, logger: logger) { database, observability in
            try await serve(database, observability)
        }
    }

    /// Starts the sequencer and its server, serves until the group shuts down, then drains.
    /// A failure to start stops what had started, so that nothing of the node runs on while
    /// the process shuts its other nodes down.
    private func serve(_ database: PostgresDatabase, _ observability: NodeObservability) async throws {
        try await NodeDatabase.prepare(database, migrators: NodeMigrations.migrators(for: .sequencer), migrate: settings.migrate, logger: logger)
        let sequencer = Sequencer(node: number, database: database, timing: timing, logger: logger)
        try await sequencer.start()
        let topology: SequencerTopology
        let server: RPCServer
        do {
            topology = try SequencerTopology(domain: domain, sequencer: sequencer, logger: logger)
            do {
                let service = SequencerServiceProvider(
                    sequencer: sequencer, topology: topology, signingKey: signingKey, honorsOmitReceipt: honorsOmitReceipt, logger: logger)
                try await topology.start { member in await service.cutOff(member) }
                var router = RPCRouter()
                service.register(on: &router)
                SequencerAdministration(sequencer: sequencer, topology: topology, name: settings.name).register(on: &router)
                // Members authenticate on the sequencer service with their own keys; the admin service takes operators' tokens.
                access.install(
                    on: &router, adminPaths: Set(Weft.V1.SequencerAdministrationService.methods.map(\.path)), auditedPaths: [], logger: logger)
                server = try await RPCServer.start(
                    host: settings.listenHost, port: settings.listenPort, security: settings.serverSecurity(), router: router,
                    configuration: settings.rpc, logger: logger)
            } catch {
                await topology.stop()
                throw error
            }
        } catch {
            await sequencer.stop()
            throw error
        }
        observability.serving()
        ready("node \(settings.name) (sequencer \(number)) listening on \(settings.listenHost):\(server.port)" + observability.readyNote)
        // Serve until SIGTERM / SIGINT (or the group stops); then drain.
        try? await gracefulShutdown()
        logger.info("draining", metadata: ["timeout": "\(settings.drainTimeout)"])
        observability.drain()
        await server.shutdown(gracePeriod: TimeAmount(settings.drainTimeout))
        await topology.stop()
        await sequencer.stop()
        logger.info("stopped")
    }
}

/// `weft.v1.SequencerAdministrationService` of a sequencer node.
public struct SequencerAdministration: Weft.V1.SequencerAdministrationService.Provider {
    let sequencer: Sequencer
    let topology: SequencerTopology
    let name: String

    public init(sequencer: Sequencer, topology: SequencerTopology, name: String) {
        self.sequencer = sequencer
        self.topology = topology
        self.name = name
    }

    public func initializeSequencer(_ request: Weft.V1.InitializeSequencerRequest, context: RPCCallContext) async throws -> Weft.V1.InitializeSequencerResponse {
        guard request.domain == topology.domain.description else {
            throw RPCError(.invalidArgument, "this sequencer serves \(topology.domain), not \(request.domain)", errorID: "SEQUENCER_WRONG_DOMAIN")
        }
        do {
            let at = try await topology.initialize(request.topology)
            return .init(sequencer: topology.sequencerMember.description, initializedAt: at.wire)
        } catch let error as InitializationError {
            throw RPCError(.failedPrecondition, error.description, errorID: "SEQUENCER_GENESIS_REFUSED")
        } catch let error as TopologyError {
            throw RPCError(.invalidArgument, "the genesis does not validate: \(error)", errorID: error.id)
        }
    }

    public func prune(_ request: Weft.V1.PruneRequest, context: RPCCallContext) async throws -> Weft.V1.PruneResponse {
        guard let upTo = request.upToInclusive?.microsSinceEpoch else {
            throw RPCError(.invalidArgument, "say up to which time to prune (up_to_inclusive)", errorID: "SEQUENCER_PRUNE_NO_TIME")
        }
        do {
            let outcome = try await sequencer.prune(upToInclusive: upTo, force: request.force)
            return .init(eventsRemoved: UInt64(outcome.eventsRemoved), membersCutOff: outcome.membersCutOff)
        } catch let error as PruneError {
            throw RPCError(.failedPrecondition, error.description, errorID: "SEQUENCER_PRUNE_REFUSED")
        }
    }

    public func getSequencerStatus(_ request: Weft.V1.GetSequencerStatusRequest, context: RPCCallContext) async throws -> Weft.V1.GetSequencerStatusResponse {
        let status = try await sequencer.status()
        return .init(
            sequencer: name,
            members: status.members.map { .init(member: $0.name, acknowledged: $0.acknowledged.map { .init(microsSinceEpoch: $0) }, enabled: $0.enabled) },
            lowerBound: status.lowerBound.map { .init(microsSinceEpoch: $0) }, upperBound: status.upperBound.map { .init(microsSinceEpoch: $0) })
    }
}
