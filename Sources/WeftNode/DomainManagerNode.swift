import Foundation
import Logging
import NIOCore
import ServiceLifecycle
public import WeftCrypto
import WeftDomainManager
import WeftSequencer
import WeftStore
import WeftTopology
import WeftTransport
import WeftWire

/// Public keys on disk, as `weft keys generate` writes them next to the private
/// key: one line, `ed25519:<64 hex digits>` or `x25519:<64 hex digits>`.
public enum PublicKeyFile {
    public static func write(_ text: String, to path: String) throws {
        try (text + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    public static func line(_ key: SigningPublicKey) -> String { "ed25519:" + hex(key.rawRepresentation) }
    public static func line(_ key: EncryptionPublicKey) -> String { "x25519:" + hex(key.rawRepresentation) }

    public static func readSigning(_ path: String) throws -> SigningPublicKey {
        try SigningPublicKey(rawRepresentation: try raw(path, scheme: "ed25519"))
    }

    public static func readEncryption(_ path: String) throws -> EncryptionPublicKey {
        try EncryptionPublicKey(rawRepresentation: try raw(path, scheme: "x25519"))
    }

    private static func raw(_ path: String, scheme: String) throws -> [UInt8] {
        let text = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.hasPrefix(scheme + ":"), let raw = bytes(hex: String(text.dropFirst(scheme.count + 1))) else {
            throw ConfigurationError.invalid(key: path, value: String(text.prefix(20)), expected: "a \(scheme) public key file made by `weft keys generate`", source: .file(path))
        }
        return raw
    }
}

/// Where a node finds the domain's sequencers: `host:port` addresses and the
/// root certificate their TLS certificates chain to.
struct SequencerEndpoints: Sendable {
    let addresses: [(host: String, port: Int)]
    let rootCertificate: String?
    /// A bearer token file (`<key>.token-file`) for sequencers whose admin service needs an
    /// admin token (`auth.*` on the sequencer node): read at each connect, so a rotated token is used.
    let tokenFile: String?

    init(_ section: Configuration, key: String) throws(ConfigurationError) {
        let list = section.listEntries(key + ".addresses")
        guard !list.isEmpty else { throw .missing(key: section.fullKey(key + ".addresses")) }
        var addresses: [(String, Int)] = []
        for entry in list {
            let address = entry.value
            guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
                throw .invalid(key: section.fullKey(key + ".addresses"), value: address, expected: "host:port", source: entry.source)
            }
            addresses.append((String(address[..<colon]), port))
        }
        self.addresses = addresses
        rootCertificate = section.string(key + ".root-cert")
        tokenFile = section.string(key + ".token-file")
        if let tokenFile {
            do {
                try SecretFile.requirePrivate(tokenFile)
            } catch {
                throw .invalid(
                    key: section.fullKey(key + ".token-file"), value: tokenFile,
                    expected: "a file holding a bearer token with the admin claim that only its owner can read (\(error))",
                    source: section.source(of: key + ".token-file") ?? .defaultValue)
            }
        }
    }

    /// The sequencers as a member's fail-over endpoints.
    func endpoints() throws -> [SequencerConnection.Endpoint] {
        try addresses.map { address in
            guard let rootCertificate else { return .init(host: address.host, port: address.port, security: .plaintext) }
            let pem = try String(contentsOfFile: rootCertificate, encoding: .utf8)
            return .init(host: address.host, port: address.port, security: .tls(try TLSContext(.init(role: .client(serverHostname: address.host), trustRootsPEM: pem))))
        }
    }

    /// A connection to one of the sequencers (the endpoint's TLS, or plaintext without a root).
    func connect(_ endpoint: SequencerConnection.Endpoint, configuration: RPCConfiguration) async throws -> RPCClient {
        let client = try await RPCClient.connect(host: endpoint.host, port: endpoint.port, security: endpoint.security, configuration: configuration)
        guard let tokenFile else { return client }
        let token = try SecretFile.text(tokenFile).trimmingCharacters(in: .whitespacesAndNewlines)
        return client.withMetadata([.init(key: "authorization", value: .textValue("Bearer \(token)"))])
    }
}

/// The domain manager node: bootstraps the domain on first start, then serves
/// `weft.v1.DomainManagerAdministrationService` (set-state, members,
/// parameters, topology) to the domain's operator.
final class DomainManagerNode: Service {
    let settings: NodeSettings
    let logger: Logger
    let ready: @Sendable (String) -> Void
    let name: String
    let namespaceKey: SigningPrivateKey
    let signingKey: SigningPrivateKey
    let sequencers: SequencerEndpoints
    let sequencerKey: SigningPublicKey
    let mediator: (signing: SigningPublicKey, encryption: EncryptionPublicKey)?
    let access: NodeAccess

    init(_ settings: NodeSettings, logger: Logger, ready: @escaping @Sendable (String) -> Void) throws {
        self.settings = settings
        var logger = logger
        logger[metadataKey: "node"] = "\(settings.name)"
        self.logger = logger
        self.ready = ready
        let section = settings.section
        name = try section.required("domain")
        namespaceKey = try KeyFile.readSigningKey(at: try section.required("namespace-key"))
        signingKey = try KeyFile.readSigningKey(at: try section.required("signing-key"))
        sequencers = try SequencerEndpoints(section, key: "sequencers")
        access = try NodeAccess(settings)
        sequencerKey = try PublicKeyFile.readSigning(try section.required("bootstrap.sequencer-key"))
        if let mediatorSigning = section.string("bootstrap.mediator-key") {
            mediator = (try PublicKeyFile.readSigning(mediatorSigning), try PublicKeyFile.readEncryption(try section.required("bootstrap.mediator-encryption-key")))
        } else {
            mediator = nil
        }
    }

    /// Sequencers may start after the domain manager (or in the same process): retry for a while.
    private func connectWithRetry(_ endpoint: SequencerConnection.Endpoint) async throws -> RPCClient {
        var attempt = 0
        while true {
            do {
                return try await sequencers.connect(endpoint, configuration: settings.rpc)
            } catch {
                attempt += 1
                guard attempt < 150 else { throw error }
                if attempt % 25 == 1 {
                    logger.info("waiting for sequencer", metadata: ["address": "\(endpoint)", "error": "\(error)"])
                }
                try await Task.sleep(for: .milliseconds(200))  // a listener coming up has no event to await from here
            }
        }
    }

    static let defaultParameters = Weft.V1.DomainParameters(
        participantResponseTimeout: .init(micros: 30_000_000), reconciliationInterval: .init(micros: 60_000_000),
        maxRequestSizeBytes: 1 << 20, ledgerTimeRecordTimeTolerance: .init(micros: 60_000_000),
        mediatorDeduplicationTimeout: .init(micros: 600_000_000), authenticationTokenLifetime: .init(micros: 3_600_000_000),
        mediatorReactionTimeout: .init(micros: Weft.V1.DomainParameters.defaultMediatorReactionTimeoutMicros))

    func run() async throws {
        try await NodeObservability.running(settings, logger: logger) { database, observability in
            try await serve(database, observability)
        }
    }

    /// Connects to the sequencers (bootstrapping the domain the first time), starts the
    /// server, serves until the group shuts down, then drains. A failure to start stops the
    /// manager's stream and closes the sequencer connections made so far.
    private func serve(_ database: PostgresDatabase, _ observability: NodeObservability) async throws {
        try await NodeDatabase.prepare(database, migrators: NodeMigrations.migrators(for: .domainManager), migrate: settings.migrate, logger: logger)
        let manager = try DomainManager(name: name, namespaceKey: namespaceKey, memberKey: signingKey, database: database, logger: logger)
        // Start-up waits for the sequencers; a shutdown meanwhile (another node failed) ends it.
        let clients: [RPCClient] = try await cancelWhenGracefulShutdown {
            var clients: [RPCClient] = []
            do {
                for endpoint in try self.sequencers.endpoints() { clients.append(try await self.connectWithRetry(endpoint)) }
                if !(try await manager.load()) {
                    let genesis = try await manager.genesis(sequencerKeys: [self.sequencerKey], mediator: self.mediator, parameters: Self.defaultParameters)
                    try await manager.bootstrap(sequencers: clients, genesis: genesis)
                }
                await manager.connect(try self.sequencers.endpoints(), sequencerKeys: [self.sequencerKey])
            } catch {
                for client in clients { await client.close() }
                throw error
            }
            return clients
        }
        let server: RPCServer
        do {
            var router = RPCRouter()
            DomainManagerAdministration(manager: manager).register(on: &router)
            access.install(
                on: &router, adminPaths: Set(Weft.V1.DomainManagerAdministrationService.methods.map(\.path)), auditedPaths: [], logger: logger)
            server = try await RPCServer.start(
                host: settings.listenHost, port: settings.listenPort, security: settings.serverSecurity(), router: router,
                configuration: settings.rpc, logger: logger)
        } catch {
            await manager.stop()
            for client in clients { await client.close() }
            throw error
        }
        observability.serving()
        ready("node \(settings.name) (domain manager of \(manager.domain)) listening on \(settings.listenHost):\(server.port)" + observability.readyNote)
        try? await gracefulShutdown()
        observability.drain()
        await server.shutdown(gracePeriod: TimeAmount(settings.drainTimeout))
        await manager.stop()
        for client in clients { await client.close() }
        logger.info("stopped")
    }
}

/// `weft.v1.DomainManagerAdministrationService`.
struct DomainManagerAdministration: Weft.V1.DomainManagerAdministrationService.Provider {
    /// The smallest `max_request_size_bytes` the domain manager sets.
    static let maxRequestSizeFloor: UInt32 = 64 * 1024
    let manager: DomainManager

    func setParticipantState(_ request: Weft.V1.SetParticipantStateRequest, context: RPCCallContext) async throws -> Weft.V1.SetParticipantStateResponse {
        let participant: UniqueIdentifier
        do {
            participant = try UniqueIdentifier(parsing: request.participant)
        } catch {
            throw RPCError(.invalidArgument, "not a participant id: \(error); `weft participant id` prints it", errorID: "DOMAIN_MANAGER_BAD_PARTICIPANT")
        }
        guard request.permission != .unspecified else {
            throw RPCError(.invalidArgument, "say which permission: submission, confirmation, observation or disabled", errorID: "DOMAIN_MANAGER_NO_PERMISSION")
        }
        // Unspecified keeps the participant's trust level (a VIP stays one when only its
        // permission changes); a participant new to the domain starts ordinary. Read when the
        // change's turn comes: a trust change queued before it is then in force, not undone.
        let permission = request.permission
        let requested = request.trustLevel
        do {
            let at = try await manager.change { snapshot in
                let trust = requested == .unspecified ? (snapshot.participantState(participant)?.trustLevel ?? .ordinary) : requested
                return [.participantState(participant, permission: permission, trustLevel: trust)]
            }
            return .init(effectiveAt: at.wire)
        } catch let error as TopologyError {
            throw RPCError(.failedPrecondition, "\(error)", errorID: error.id)
        }
    }

    func listMembers(_ request: Weft.V1.ListMembersRequest, context: RPCCallContext) async throws -> Weft.V1.ListMembersResponse {
        .init(members: await manager.members())
    }

    func getDomainParameters(_ request: Weft.V1.GetDomainParametersRequest, context: RPCCallContext) async throws -> Weft.V1.GetDomainParametersResponse {
        .init(parameters: await manager.snapshot().domainParameters)
    }

    func setDomainParameters(_ request: Weft.V1.SetDomainParametersRequest, context: RPCCallContext) async throws -> Weft.V1.SetDomainParametersResponse {
        guard let parameters = request.parameters else {
            throw RPCError(.invalidArgument, "no parameters given", errorID: "DOMAIN_MANAGER_NO_PARAMETERS")
        }
        // Every member's submissions are held to it, and the smallest confirmation request is a
        // few KiB: a smaller limit (a typo, "1" for 1 MiB) would stop the domain's traffic.
        guard parameters.maxRequestSizeBytes >= Self.maxRequestSizeFloor else {
            throw RPCError(
                .invalidArgument,
                "max_request_size_bytes \(parameters.maxRequestSizeBytes) is below \(Self.maxRequestSizeFloor) bytes (64 KiB), too small for the domain's requests; give a size such as 1MiB",
                errorID: "DOMAIN_MANAGER_MAX_REQUEST_SIZE_TOO_SMALL")
        }
        do {
            let at = try await manager.change([.parameters(parameters, of: manager.domain)])
            return .init(effectiveAt: at.wire)
        } catch let error as TopologyError {
            throw RPCError(.invalidArgument, "\(error)", errorID: error.id)
        }
    }

    func listTopologyTransactions(_ request: Weft.V1.ListTopologyTransactionsRequest, context: RPCCallContext) async throws -> Weft.V1.ListTopologyTransactionsResponse {
        .init(transactions: await manager.transactions(asOf: request.asOf.map(SequencingTimestamp.init)).map(\.wire))
    }
}
