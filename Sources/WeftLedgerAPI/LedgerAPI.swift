import Foundation
public import Logging
public import WeftAuth
public import WeftCrypto
import WeftContracts
public import WeftParticipant
public import WeftStore
import WeftTopology
public import WeftTransport
public import WeftWire

/// Limits and waits of the Ledger API: everything an application sends is bounded before the
/// participant does work for it.
public struct LedgerAPIConfiguration: Sendable {
    /// Most commands in one submission. Default 100.
    public var commandsPerSubmissionMax: Int
    /// Most parties in a filter or an act-as list. Default 100.
    public var partiesPerRequestMax: Int
    /// Longest command, application and party hint text, in bytes. Default 255.
    public var idBytesMax: Int
    /// Longest deduplication period an application may ask for. Default 1 day.
    public var deduplicationPeriodMicrosMax: Int64
    /// Contracts per GetActiveContracts message. Default 100.
    public var activeContractsPerMessage: Int
    /// Completions, and transactions per party, read from the database per query while a stream
    /// catches up (so a stream from an early offset holds a page in memory, not the ledger).
    /// Default 500.
    public var completionsPerQuery: Int
    /// How long AllocateParty waits for the hosting to reach this participant's topology.
    /// Default 30 s (the domain manager's own wait for a change).
    public var hostingTimeout: Duration
    /// Completions a following completion stream holds for a client that reads slower than
    /// the participant completes commands; beyond them the oldest are read again from the
    /// database when the client catches up. Default 1,000.
    public var completionsBufferedPerStream: Int

    public init(
        commandsPerSubmissionMax: Int = 100, partiesPerRequestMax: Int = 100, idBytesMax: Int = 255,
        deduplicationPeriodMicrosMax: Int64 = 86_400_000_000, activeContractsPerMessage: Int = 100,
        completionsPerQuery: Int = 500, hostingTimeout: Duration = .seconds(30), completionsBufferedPerStream: Int = 1_000
    ) {
        precondition(commandsPerSubmissionMax > 0 && partiesPerRequestMax > 0 && idBytesMax > 0)
        precondition(activeContractsPerMessage > 0 && completionsPerQuery > 0 && deduplicationPeriodMicrosMax >= 0)
        self.commandsPerSubmissionMax = commandsPerSubmissionMax
        self.partiesPerRequestMax = partiesPerRequestMax
        self.idBytesMax = idBytesMax
        self.deduplicationPeriodMicrosMax = deduplicationPeriodMicrosMax
        self.activeContractsPerMessage = activeContractsPerMessage
        self.completionsPerQuery = completionsPerQuery
        self.hostingTimeout = hostingTimeout
        precondition(completionsBufferedPerStream > 0)
        self.completionsBufferedPerStream = completionsBufferedPerStream
    }
}

/// Why a Ledger API cannot start.
public enum LedgerAPIStartError: Error, CustomStringConvertible {
    /// The namespace key given is not the participant's.
    case wrongNamespaceKey(expected: String, given: String)

    public var description: String {
        switch self {
        case .wrongNamespaceKey(let expected, let given):
            "LEDGER_API_WRONG_NAMESPACE_KEY: the namespace key has fingerprint \(given), but the participant's namespace is "
                + "\(expected); give the participant's own namespace key (the one its id was derived from)"
        }
    }
}

/// The Ledger API of one participant (docs/ledger-api.md): the six services of
/// `weft.v1` ledger.proto over the transport, mapped onto `ParticipantNode`. Register it on
/// the router of an `RPCServer`; its state (the completion log, display names) lives in the
/// participant's PostgreSQL database.
public final class LedgerAPI: Sendable {
    let participant: ParticipantNode
    let completions: CompletionLog
    let packages: PackageCache
    let allocation: PartyAllocation?
    let configuration: LedgerAPIConfiguration
    /// Who may do what: every method checks the claims it needs before it acts.
    let authorizer: CallAuthorizer
    let logger: Logger

    private init(
        participant: ParticipantNode, completions: CompletionLog, allocation: PartyAllocation?,
        configuration: LedgerAPIConfiguration, authorizer: CallAuthorizer, logger: Logger
    ) {
        self.authorizer = authorizer
        self.participant = participant
        self.completions = completions
        self.packages = PackageCache(participant: participant)
        self.allocation = allocation
        self.configuration = configuration
        self.logger = logger
    }

    /// Starts the Ledger API of `participant`: migrates its tables in `database` and follows
    /// the participant's completions. Without `namespaceKey` and `publisher`, AllocateParty
    /// answers UNIMPLEMENTED. `authorizer` decides what each call's token allows (docs/ledger-api.md
    /// §authorization); `.open` lets every call do everything.
    public static func start(
        participant: ParticipantNode, database: PostgresDatabase, namespaceKey: SigningPrivateKey? = nil,
        publisher: (any PartyHostingPublisher)? = nil, configuration: LedgerAPIConfiguration = LedgerAPIConfiguration(),
        authorizer: CallAuthorizer = .open, logger: Logger = Logger(label: "weft.ledger-api")
    ) async throws -> LedgerAPI {
        var logger = logger
        logger[metadataKey: LedgerAPILogKey.participant] = "\(participant.identity.id)"
        var allocation: PartyAllocation?
        if let namespaceKey, let publisher {
            guard namespaceKey.publicKey.fingerprint == participant.identity.id.namespace else {
                throw LedgerAPIStartError.wrongNamespaceKey(
                    expected: "\(participant.identity.id.namespace)", given: "\(namespaceKey.publicKey.fingerprint)")
            }
            allocation = PartyAllocation(
                participant: participant, namespaceKey: namespaceKey, publisher: publisher,
                timeout: configuration.hostingTimeout)
        }
        let completions = try await CompletionLog.start(database: database, participant: participant, logger: logger)
        return LedgerAPI(
            participant: participant, completions: completions, allocation: allocation, configuration: configuration,
            authorizer: authorizer, logger: logger)
    }

    /// Stops following the participant and ends the completion streams.
    public func stop() async {
        await completions.stop()
    }

    /// Hosts `party`, of this participant's namespace, on the participant's domain again with
    /// `permission`, as after a domain migration (topology is per domain, so the new domain
    /// knows the participant's parties only once they are hosted there). Returns once the
    /// participant's topology shows the hosting; does nothing for a party hosted already.
    public func hostAgain(_ party: UniqueIdentifier, permission: Weft.V1.ParticipantPermission) async throws {
        guard let allocation else { throw LedgerAPIError.partyAllocationUnavailable }
        try await allocation.host(party, permission: permission)
    }

    /// The Ledger API's own tables (the completion log), for `weft db migrate`.
    public static var migrator: Migrator { CompletionLog.migrator }

    /// The methods of the six services, for a server that registers them before the
    /// participant exists (`RPCRouter.registerDeferred`).
    public static let methods: [MethodDescriptor] =
        Weft.V1.CommandService.methods + Weft.V1.CompletionService.methods + Weft.V1.TransactionService.methods
        + Weft.V1.ActiveContractsService.methods + Weft.V1.PartyManagementService.methods + Weft.V1.PackageManagementService.methods

    /// The methods that need the admin claim (checked in their handlers): a node's
    /// `auth.admin-loopback-only` holds them to loopback as it does the admin services.
    public static let adminMethods: [MethodDescriptor] = [
        Weft.V1.PartyManagementService.allocateParty.descriptor, Weft.V1.PartyManagementService.listKnownParties.descriptor,
        Weft.V1.PackageManagementService.uploadPackage.descriptor,
    ]

    /// Registers all six services on `router`.
    public func register(on router: inout RPCRouter) {
        CommandServiceProvider(api: self).register(on: &router)
        CompletionServiceProvider(api: self).register(on: &router)
        TransactionServiceProvider(api: self).register(on: &router)
        ActiveContractsServiceProvider(api: self).register(on: &router)
        PartyManagementServiceProvider(api: self).register(on: &router)
        PackageManagementServiceProvider(api: self).register(on: &router)
    }

    // MARK: - Shared by the providers

    /// Ends a stream whose live part ended: the participant stopped processing (or the Ledger
    /// API is stopping). UNAVAILABLE, so that the application reconnects and resumes from its
    /// last offset, rather than OK, which would say the stream was complete.
    func followingEnded(_ context: RPCCallContext) async throws {
        try await serve(context) { () async throws -> Void in throw ParticipantError.stopped }
    }

    /// Runs one call: any failure becomes an `RPCError` with the Ledger API's code and id,
    /// and a log line that says which call was refused and why.
    func serve<Result: Sendable>(_ context: RPCCallContext, _ body: () async throws -> Result) async throws -> Result {
        do {
            return try await body()
        } catch let error as CancellationError {
            throw error
        } catch {
            let mapped = LedgerAPIError.from(error)
            let metadata: Logger.Metadata = [
                LedgerAPILogKey.method: "\(context.method)", LedgerAPILogKey.errorID: "\(mapped.id)",
                LedgerAPILogKey.code: "\(mapped.code)", LedgerAPILogKey.reason: "\(mapped.message)",
            ]
            if mapped.code == .internal {
                logger.error("Ledger API call failed", metadata: metadata)
            } else {
                logger.info("Ledger API call refused", metadata: metadata)
            }
            throw mapped.rpcError
        }
    }

    /// Checks that the caller may read as every party of `ids` (a filter's, a completion
    /// stream's): before anything about the parties is looked up, so a caller without rights
    /// learns nothing, not even whether a party is hosted here.
    func authorizeRead(_ ids: [String], field: String, _ context: RPCCallContext) throws {
        guard ids.count <= configuration.partiesPerRequestMax else {
            throw LedgerAPIError.invalidArgument(
                field: field, "at most \(configuration.partiesPerRequestMax) parties per request; \(ids.count) were given")
        }
        // Verifies the token too, after noting the parties for the audit line.
        try authorizer.requireReadAs(ids, context)
    }

    /// Checks that the caller may submit `commands`: act as each of its parties, under its application id.
    func authorizeSubmission(_ commands: Weft.V1.Commands?, _ context: RPCCallContext) throws {
        guard let commands else {
            try authorizer.requireAuthenticated(context)
            return  // parse() says what is missing
        }
        guard commands.actAs.count <= configuration.partiesPerRequestMax else {
            throw LedgerAPIError.invalidArgument(
                field: "commands.act_as", "give 1 to \(configuration.partiesPerRequestMax) parties; \(commands.actAs.count) were given")
        }
        // Verifies the token too, after noting the parties for the audit line.
        try authorizer.requireActAs(commands.actAs, context)
        try authorizer.requireApplication(commands.applicationID, context)
    }

    /// A transaction or tree stream's start must be at or before the ledger end: any offset an
    /// application was given (by a stream or by SubmitAndWait) is, since the ledger end moves
    /// before either hands it out.
    func checkBegin(_ beginExclusive: UInt64) async throws(LedgerAPIError) {
        let end = await participant.ledgerEndOffset
        // A replay rebuilds the same offsets: a stream resumed meanwhile waits for them.
        let replaying = await participant.isReplaying
        guard Int64(beginExclusive) <= end || replaying else {
            throw .offsetAfterEnd(field: "begin_exclusive", given: Int64(beginExclusive), end: end, of: "ledger end")
        }
    }

    /// Parses a filter's parties; each must be hosted here (any permission: an observing
    /// participant reads its parties' transactions too).
    func hostedParties(_ ids: [String], field: String) async throws -> [Party] {
        guard !ids.isEmpty else { throw LedgerAPIError.invalidArgument(field: field, "name at least one party") }
        guard ids.count <= configuration.partiesPerRequestMax else {
            throw LedgerAPIError.invalidArgument(
                field: field, "at most \(configuration.partiesPerRequestMax) parties per request; \(ids.count) were given")
        }
        var parties: [Party] = []
        for id in Set(ids).sorted() {
            let party = try ValueReader.party(id, field: field)
            guard let identifier = try? UniqueIdentifier(parsing: id) else {
                throw LedgerAPIError.invalidArgument(field: field, "'\(id.prefix(300))' is not a party id (name::1220…)")
            }
            guard await participant.hosting(of: identifier) != nil else { throw LedgerAPIError.partyNotHosted(id) }
            parties.append(party)
        }
        return parties
    }

    /// Checks an id an application chose (command id, application id).
    func requireID(_ text: String, field: String) throws(LedgerAPIError) {
        guard !text.isEmpty else { throw .invalidArgument(field: field, "must not be empty") }
        guard text.utf8.count <= configuration.idBytesMax else {
            throw .invalidArgument(field: field, "at most \(configuration.idBytesMax) bytes; \(text.utf8.count) were given")
        }
    }
}

/// The participant's packages, parsed once: the Ledger API reads labels, templates and
/// choices from them. Filled from the participant's store on a miss, so packages uploaded
/// through the Swift API are found too.
actor PackageCache {
    private let participant: ParticipantNode
    private var packages: [PackageID: Package] = [:]
    private var stored: [PackageID: StoredPackage] = [:]

    init(participant: ParticipantNode) {
        self.participant = participant
    }

    /// How often the store's packages were read: for tests.
    private(set) var reloads = 0

    /// Every package by id; re-reads the store when `need` is not known yet, or when the
    /// participant has a package this cache lacks (uploaded since, also through the Swift API).
    /// Streams ask for every page and every transaction they follow: reading every package's
    /// source from the store each time was their cost before.
    func all(need: PackageID? = nil) async throws -> [PackageID: Package] {
        if let need {
            if packages[need] == nil { try await reload() }
        } else if await participant.packageCount > packages.count {
            try await reload()
        }
        return packages
    }

    func storedPackages() async throws -> [StoredPackage] {
        try await reload()
        return stored.values.sorted { ($0.uploadedAtMicros, $0.id) < ($1.uploadedAtMicros, $1.id) }
    }

    private func reload() async throws {
        reloads += 1
        for entry in try await participant.storedPackages() where packages[entry.id] == nil || stored[entry.id] == nil {
            stored[entry.id] = entry
            if packages[entry.id] == nil {
                do throws(ContractError) {
                    packages[entry.id] = try Package(source: entry.source, file: "package \(entry.id)")
                } catch {
                    throw LedgerAPIError.internalError(
                        id: "LEDGER_API_STORED_PACKAGE_INVALID", "stored package \(entry.id) does not load: \(error)")
                }
            }
        }
    }
}

/// The metadata keys of the Ledger API's log lines: dotted, from this one list.
enum LedgerAPILogKey {
    static let participant = "weft.participant"
    static let method = "weft.ledger_api.method"
    static let errorID = "weft.ledger_api.error_id"
    static let code = "weft.ledger_api.code"
    static let reason = "weft.ledger_api.reason"
    static let command = "weft.ledger_api.command"
    static let submission = "weft.ledger_api.submission_id"
    static let party = "weft.ledger_api.party"
    static let error = "weft.ledger_api.error"
}
