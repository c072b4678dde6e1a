import Foundation
import Logging
import WeftContracts
import WeftCrypto
import WeftParticipant
import WeftTopology
import WeftTransport
import WeftWire

// The six services of ledger.proto, each a thin mapping onto the participant; the rules they
// share (errors, filters, limits) live in `LedgerAPI`.

/// Commands parsed and checked: what the participant is asked to interpret.
struct ParsedCommands {
    let key: CommandKey
    let actAs: [Party]
    /// What deduplicates the commands: the key and the act-as parties.
    var change: ChangeID { ChangeID(key, actAs: actAs) }
    let deduplicationPeriodMicros: Int64?
    let commands: [Command]
    /// Contracts the application disclosed for these commands, read from their blobs.
    let disclosed: [ActiveContract]
}

extension LedgerAPI {
    func parse(_ commands: Weft.V1.Commands?) async throws -> ParsedCommands {
        guard let commands else { throw LedgerAPIError.invalidArgument(field: "commands", "the commands are required") }
        try requireID(commands.commandID, field: "commands.command_id")
        try requireID(commands.applicationID, field: "commands.application_id")
        guard commands.submissionID.isEmpty else {
            throw LedgerAPIError.invalidArgument(
                field: "commands.submission_id", "choosing the submission id is not supported yet; leave it empty and read it from the response")
        }
        guard commands.workflowID.isEmpty else {
            throw LedgerAPIError.invalidArgument(
                field: "commands.workflow_id", "workflow ids are not stored yet; leave it empty")
        }
        guard commands.readAs.isEmpty else {
            throw LedgerAPIError.invalidArgument(
                field: "commands.read_as", "read-as parties are not supported yet; the act-as parties' contracts are readable")
        }
        guard !commands.commands.isEmpty, commands.commands.count <= configuration.commandsPerSubmissionMax else {
            throw LedgerAPIError.invalidArgument(
                field: "commands.commands", "give 1 to \(configuration.commandsPerSubmissionMax) commands; \(commands.commands.count) were given")
        }
        guard !commands.actAs.isEmpty, commands.actAs.count <= configuration.partiesPerRequestMax else {
            throw LedgerAPIError.invalidArgument(
                field: "commands.act_as", "give 1 to \(configuration.partiesPerRequestMax) parties; \(commands.actAs.count) were given")
        }
        var actAs: [Party] = []
        for id in commands.actAs {
            let party = try ValueReader.party(id, field: "commands.act_as")
            guard let identifier = try? UniqueIdentifier(parsing: id) else {
                throw LedgerAPIError.invalidArgument(field: "commands.act_as", "'\(id.prefix(300))' is not a party id (name::1220…)")
            }
            guard let hosting = await participant.hosting(of: identifier) else {
                throw LedgerAPIError.notHostedForSubmission(party: id, hosted: nil)
            }
            guard hosting.permission == .submission else {
                throw LedgerAPIError.notHostedForSubmission(party: id, hosted: Self.name(hosting.permission))
            }
            actAs.append(party)
        }
        var deduplication: Int64?
        if let period = commands.deduplicationPeriod {
            guard period.micros >= 0, period.micros <= configuration.deduplicationPeriodMicrosMax else {
                throw LedgerAPIError.invalidArgument(
                    field: "commands.deduplication_period",
                    "must be 0 to \(configuration.deduplicationPeriodMicrosMax) µs; \(period.micros) was given")
            }
            deduplication = period.micros
        }
        var parsed: [Command] = []
        for (index, command) in commands.commands.enumerated() {
            let field = "commands.commands[\(index)]"
            switch command.kind {
            case .create(let create)?:
                let known = try await packages.all(need: create.templateID.flatMap { PackageID(hex: $0.packageID) })
                let reader = ValueReader(packages: known)
                let (id, _, template) = try reader.templateID(create.templateID, field: field + ".create.template_id")
                parsed.append(
                    .create(id, argument: try reader.createArguments(create.createArguments, of: template, field: field + ".create.create_arguments")))
            case .exercise(let exercise)?:
                let known = try await packages.all(need: exercise.templateID.flatMap { PackageID(hex: $0.packageID) })
                let reader = ValueReader(packages: known)
                let (id, _, template) = try reader.templateID(exercise.templateID, field: field + ".exercise.template_id")
                let contract = try ValueReader.contractID(exercise.contractID, field: field + ".exercise.contract_id")
                let argument = try reader.choiceArgument(
                    exercise.choiceArgument, of: template, choice: exercise.choice, field: field + ".exercise.choice_argument")
                parsed.append(.exercise(id, contract: contract, choice: exercise.choice, argument: argument))
            case nil:
                throw LedgerAPIError.invalidArgument(field: field, "a command is a create or an exercise")
            }
        }
        var disclosed: [ActiveContract] = []
        for (index, contract) in commands.disclosedContracts.enumerated() {
            disclosed.append(try Self.disclosed(contract, field: "commands.disclosed_contracts[\(index)]"))
        }
        return ParsedCommands(
            key: CommandKey(applicationID: commands.applicationID, commandID: commands.commandID), actAs: actAs,
            deduplicationPeriodMicros: deduplication, commands: parsed, disclosed: disclosed)
    }

    /// A disclosed contract read from its blob, which must name the contract id and template
    /// given beside it and carry the creation seed (the participant checks that the seed proves
    /// the id).
    static func disclosed(_ contract: Weft.V1.DisclosedContract, field: String) throws(LedgerAPIError) -> ActiveContract {
        let decoded: (id: ContractID, contract: ContractInstance, creationSeed: NodeSeed?)
        do {
            decoded = try ContractInstance.fromWire(Weft.V1.ContractInstance(serializedBytes: contract.createdEventBlob))
        } catch {
            throw .invalidArgument(
                field: field + ".created_event_blob",
                "not a created_event_blob as GetActiveContracts gives it (\(error)); pass it on unchanged")
        }
        guard let seed = decoded.creationSeed else {
            throw .invalidArgument(field: field + ".created_event_blob", "the blob carries no creation seed, so it proves nothing")
        }
        guard decoded.id.description == contract.contractID else {
            throw .invalidArgument(
                field: field + ".contract_id", "the blob is contract \(decoded.id), not '\(contract.contractID.prefix(80))'")
        }
        if let template = contract.templateID,
            template.packageID != decoded.contract.template.package.description
                || template.templateName != decoded.contract.template.name
        {
            throw .invalidArgument(
                field: field + ".template_id",
                "the blob is a \(decoded.contract.template.name) of package \(decoded.contract.template.package), not \(template.templateName)")
        }
        return ActiveContract(id: decoded.id, contract: decoded.contract, createdAt: 0, creationSeed: seed)
    }

    /// Refuses a command id within its deduplication period before interpreting (a repeated
    /// transfer would no longer interpret: its input is archived), then interprets.
    func prepare(_ parsed: ParsedCommands) async throws -> PreparedSubmission {
        // After a loss, the deduplication records come back as the replay passes them.
        try await participant.awaitReplayEnd()
        if let first = try await participant.command(parsed.change),
            first.deduplicates(at: Int64(Date().timeIntervalSince1970 * 1_000_000))
        {
            throw LedgerAPIError.duplicateCommand(
                parsed.change, first: first, toItsSubmitter: try await completions.actsForFirst(first, of: parsed.change))
        }
        let prepared = try await participant.prepare(
            parsed.commands, actAs: parsed.actAs, command: parsed.key,
            deduplicationPeriodMicros: parsed.deduplicationPeriodMicros, disclosedContracts: parsed.disclosed)
        try await completions.submitted(parsed.change, submissionID: prepared.submissionID)
        return prepared
    }

    /// After `participant.submit(prepared)` threw (Submit's task, SubmitAndWait's call):
    /// recorded by the participant, the submission completes there (after a restart, if the node
    /// stopped), and the completion log follows. Not recorded, nothing was sent: it completes as
    /// lost now, so that its completion-log row neither stays in flight nor completes as lost at
    /// the next start, after a retry of the command that may have committed meanwhile.
    func submissionFailed(_ prepared: PreparedSubmission, _ error: any Error) async {
        let recorded: Bool
        do {
            recorded = try await participant.command(prepared.change)?.submissionID == prepared.submissionID
        } catch {
            recorded = true  // unknown: a restart's recovery of the completion log decides
        }
        if recorded {
            logger.warning(
                "a submission ended without a completion; its outcome is in the participant's store after a restart",
                metadata: [LedgerAPILogKey.command: "\(prepared.command)", LedgerAPILogKey.error: "\(error)"])
            return
        }
        logger.warning(
            "a submission failed before the participant recorded it; it completes as lost",
            metadata: [LedgerAPILogKey.command: "\(prepared.command)", LedgerAPILogKey.error: "\(error)"])
        await completions.record(
            CommandCompletion(
                change: prepared.change,
                completion: .rejected(
                    reasonID: CompletionLog.submissionLost,
                    message: "the submission failed before the participant recorded it (\(error)), so nothing was "
                        + "sequenced; submit the command again (the same command id is accepted)"),
                submissionID: prepared.submissionID))
    }

    static func name(_ permission: Weft.V1.ParticipantPermission) -> String {
        switch permission {
        case .submission: "submission"
        case .confirmation: "confirmation"
        case .observation: "observation"
        case .disabled: "disabled"
        case .unspecified, .unrecognized: "unspecified"
        }
    }
}

struct CommandServiceProvider: Weft.V1.CommandService.Provider {
    let api: LedgerAPI

    func submit(_ request: Weft.V1.SubmitRequest, context: RPCCallContext) async throws -> Weft.V1.SubmitResponse {
        try await api.serve(context) {
            try api.authorizeSubmission(request.commands, context)
            let parsed = try await api.parse(request.commands)
            let prepared = try await api.prepare(parsed)
            let (participant, completions) = (api.participant, api.completions)
            Task {
                do {
                    let completion = try await participant.submit(prepared)
                    // A duplicate found at recording time never reaches the participant's
                    // completions; the completion stream still reports it.
                    if case .duplicate = completion {
                        await completions.record(
                            CommandCompletion(change: prepared.change, completion: completion, submissionID: prepared.submissionID))
                    }
                } catch {
                    await api.submissionFailed(prepared, error)
                }
            }
            return Weft.V1.SubmitResponse(submissionID: prepared.submissionID)
        }
    }

    func submitAndWait(_ request: Weft.V1.SubmitAndWaitRequest, context: RPCCallContext) async throws
        -> Weft.V1.SubmitAndWaitResponse
    {
        try await api.serve(context) {
            try api.authorizeSubmission(request.commands, context)
            let parsed = try await api.parse(request.commands)
            let prepared = try await api.prepare(parsed)
            let completion: Completion
            do {
                completion = try await api.participant.submit(prepared)
            } catch {
                await api.submissionFailed(prepared, error)
                throw error
            }
            switch completion {
            case .succeeded(let transactionID, let offset):
                return Weft.V1.SubmitAndWaitResponse(transactionID: transactionID, offset: UInt64(offset))
            case .rejected(let reasonID, let message):
                throw LedgerAPIError.rejected(reasonID: reasonID, message: message)
            case .duplicate(let previous):
                await api.completions.record(
                    CommandCompletion(change: prepared.change, completion: completion, submissionID: prepared.submissionID))
                throw LedgerAPIError.duplicateCommand(
                    prepared.change, first: previous,
                    toItsSubmitter: try await api.completions.actsForFirst(previous, of: prepared.change))
            }
        }
    }
}

struct CompletionServiceProvider: Weft.V1.CompletionService.Provider {
    let api: LedgerAPI

    func completionStream(
        _ request: Weft.V1.CompletionStreamRequest, responses: RPCMessageWriter<Weft.V1.CompletionStreamResponse>,
        context: RPCCallContext
    ) async throws {
        let (live, parties) = try await api.serve(context) {
            try api.authorizeRead(request.parties, field: "parties", context)
            try api.authorizer.requireApplication(request.applicationID, context)
            try api.requireID(request.applicationID, field: "application_id")
            guard !request.parties.isEmpty, request.parties.count <= api.configuration.partiesPerRequestMax else {
                throw LedgerAPIError.invalidArgument(
                    field: "parties", "give 1 to \(api.configuration.partiesPerRequestMax) parties")
            }
            for id in request.parties { _ = try ValueReader.party(id, field: "parties") }
            guard request.beginExclusive <= UInt64(Int64.max) else {
                throw LedgerAPIError.invalidArgument(field: "begin_exclusive", "out of range")
            }
            // Subscribe before the replay, so nothing stored in between is missed; then check
            // the start against what is stored (any offset handed out was stored before).
            let live = await api.completions.subscribe(buffered: api.configuration.completionsBufferedPerStream)
            let end = try await api.completions.storedEnd()
            guard Int64(request.beginExclusive) <= end else {
                throw LedgerAPIError.offsetAfterEnd(
                    field: "begin_exclusive", given: Int64(request.beginExclusive), end: end, of: "last completion offset")
            }
            return (live, Set(request.parties))
        }
        func wanted(_ completion: Weft.V1.Completion) -> Bool {
            completion.applicationID == request.applicationID && !parties.isDisjoint(with: completion.actAs)
        }
        var last = Int64(request.beginExclusive)
        while true {
            let page = try await api.serve(context) {
                try await api.completions.completions(after: last, limit: api.configuration.completionsPerQuery)
            }
            for completion in page where wanted(completion) {
                try await responses.send(.init(completion: completion))
            }
            last = page.last.map { Int64($0.offset) } ?? last
            if page.count < api.configuration.completionsPerQuery { break }
        }
        for await completion in live where Int64(completion.offset) > last {
            // Offsets the live stream skipped were stored by a write it did not see (another
            // completion log of this participant, one stopped mid-write): read them.
            while Int64(completion.offset) > last + 1 {
                let missed = try await api.serve(context) {
                    try await api.completions.completions(
                        after: last, limit: min(Int(Int64(completion.offset) - last - 1), api.configuration.completionsPerQuery))
                }
                for stored in missed where wanted(stored) { try await responses.send(.init(completion: stored)) }
                last = missed.last.map { Int64($0.offset) } ?? Int64(completion.offset) - 1
            }
            last = Int64(completion.offset)
            if wanted(completion) { try await responses.send(.init(completion: completion)) }
        }
        try await api.followingEnded(context)
    }
}

struct TransactionServiceProvider: Weft.V1.TransactionService.Provider {
    let api: LedgerAPI

    func getTransactions(
        _ request: Weft.V1.GetTransactionsRequest, responses: RPCMessageWriter<Weft.V1.GetTransactionsResponse>,
        context: RPCCallContext
    ) async throws {
        let (parties, templates, progress) = try await api.serve(context) {
            try api.authorizeRead(request.filter?.parties ?? [], field: "filter.parties", context)
            let parties = try await api.hostedParties(request.filter?.parties ?? [], field: "filter.parties")
            let templates = try api.templates(request.filter)
            try Self.checkRange(begin: request.beginExclusive, end: request.endInclusive)
            try await api.checkBegin(request.beginExclusive)
            // Follow before the replay, so a commit in between wakes the loop below.
            return (parties, templates, await api.participant.progressEvents())
        }
        let end: Int64? = request.endInclusive == 0 ? nil : Int64(request.endInclusive)
        var last = Int64(request.beginExclusive)
        let domains = await api.participant.domainHistory
        // Sends what committed after `last`; true once `end` is reached.
        func catchUp() async throws -> Bool {
            let ledgerEnd = await api.participant.ledgerEndOffset
            let upTo = end.map { min($0, ledgerEnd) } ?? ledgerEnd
            let limit = api.configuration.completionsPerQuery
            // A page at a time: each party's next `limit` transactions; the page ends where the
            // first party's full page ends (every party's transactions up to there are read).
            while upTo > last {
                let (batches, pageEnd) = try await api.serve(context) {
                    () async throws -> ([[(party: Party, transaction: LedgerTransaction)]], Int64) in
                    var pageEnd = upTo
                    var pages: [(Party, [LedgerTransaction])] = []
                    for party in parties {
                        let page = try await api.participant.transactions(of: party, after: last, upTo: upTo, limit: limit)
                        if page.count == limit, let lastOffset = page.last?.offset { pageEnd = min(pageEnd, lastOffset) }
                        pages.append((party, page))
                    }
                    var byOffset: [Int64: [(party: Party, transaction: LedgerTransaction)]] = [:]
                    for (party, page) in pages {
                        for transaction in page where transaction.offset <= pageEnd && transaction.events.contains(where: templates.admits) {
                            byOffset[transaction.offset, default: []].append((party, transaction))
                        }
                    }
                    return (byOffset.keys.sorted().map { byOffset[$0]! }, pageEnd)
                }
                let packages = Array(try await api.serve(context) { try await api.packages.all() }.values)
                let writer = EventWriter(packages: packages, templates: templates)
                for projections in batches {
                    let domain = domains.domain(ofOffset: projections.first?.transaction.offset ?? 0)
                    try await responses.send(.init(transaction: writer.transaction(projections, domain: domain, readers: parties)))
                }
                last = pageEnd
            }
            return end.map { last >= $0 } ?? false
        }
        if try await catchUp() { return }
        for await _ in progress {
            if try await catchUp() { return }
        }
        try await api.followingEnded(context)
    }

    func getTransactionTrees(
        _ request: Weft.V1.GetTransactionTreesRequest, responses: RPCMessageWriter<Weft.V1.GetTransactionTreesResponse>,
        context: RPCCallContext
    ) async throws {
        let (parties, templates, progress) = try await api.serve(context) {
            try api.authorizeRead(request.filter?.parties ?? [], field: "filter.parties", context)
            let parties = try await api.hostedParties(request.filter?.parties ?? [], field: "filter.parties")
            let templates = try api.templates(request.filter)
            try Self.checkRange(begin: request.beginExclusive, end: request.endInclusive)
            try await api.checkBegin(request.beginExclusive)
            return (Set(parties.map(\.id)), templates, await api.participant.progressEvents())
        }
        let end: Int64? = request.endInclusive == 0 ? nil : Int64(request.endInclusive)
        var last = Int64(request.beginExclusive)
        let domains = await api.participant.domainHistory
        // Sends the trees committed after `last` that the parties witness; true once `end` is reached.
        func catchUp() async throws -> Bool {
            let ledgerEnd = await api.participant.ledgerEndOffset
            let upTo = end.map { min($0, ledgerEnd) } ?? ledgerEnd
            while upTo > last {
                let page = try await api.serve(context) {
                    try await api.participant.transactionTrees(
                        after: last, upTo: upTo, limit: api.configuration.completionsPerQuery)
                }
                guard let lastOfPage = page.last else { break }
                for tree in page {
                    let (events, roots) = LedgerTree.project(tree.events.filter(templates.admits), to: parties)
                    guard !events.isEmpty else { continue }
                    try await responses.send(
                        .init(
                            transaction: .init(
                                transactionID: tree.transactionID,
                                commandID: LedgerAPI.commandID(tree.commandID, actAs: tree.actAs, readers: parties), workflowID: "",
                                effectiveAt: .init(microsSinceEpoch: tree.recordTime.microsSinceEpoch),
                                offset: UInt64(tree.offset), events: events, rootEventIDs: roots,
                                domain: domains.domain(ofOffset: tree.offset))))
                }
                last = lastOfPage.offset
            }
            last = max(last, upTo)
            return end.map { last >= $0 } ?? false
        }
        if try await catchUp() { return }
        for await _ in progress {
            if try await catchUp() { return }
        }
        try await api.followingEnded(context)
    }

    /// The offsets of a transaction or tree stream request, checked. An end after the ledger
    /// end is allowed: the stream waits for it.
    static func checkRange(begin: UInt64, end: UInt64) throws(LedgerAPIError) {
        guard begin <= UInt64(Int64.max), end <= UInt64(Int64.max) else {
            throw LedgerAPIError.invalidArgument(field: "begin_exclusive", "out of range")
        }
        guard end == 0 || end > begin else {
            throw LedgerAPIError.invalidArgument(
                field: "end_inclusive", "must be after begin_exclusive (\(begin)), or 0 to follow the ledger")
        }
    }

    func getLedgerEnd(_ request: Weft.V1.GetLedgerEndRequest, context: RPCCallContext) async throws -> Weft.V1.GetLedgerEndResponse {
        try await api.serve(context) {
            // The offset says nothing about any party: any valid token may ask.
            try api.authorizer.requireAuthenticated(context)
            return Weft.V1.GetLedgerEndResponse(offset: UInt64(await api.participant.ledgerEndOffset))
        }
    }
}

/// A filter's templates: empty admits every event.
struct TemplateFilter: Sendable {
    let templates: Set<TemplateID>

    func admits(_ event: LedgerEvent) -> Bool {
        guard !templates.isEmpty else { return true }
        switch event {
        case .created(_, let contract): return templates.contains(contract.template)
        case .archived(_, let template): return templates.contains(template)
        }
    }

    func admits(_ event: Weft.V1.TreeEvent) -> Bool {
        guard !templates.isEmpty else { return true }
        let wire: Weft.V1.TemplateId?
        switch event.kind {
        case .created(let created)?: wire = created.templateID
        case .exercised(let exercised)?: wire = exercised.templateID
        case nil: return false
        }
        guard let wire, let package = PackageID(hex: wire.packageID) else { return false }
        return templates.contains(TemplateID(package: package, name: wire.templateName))
    }
}

extension LedgerAPI {
    /// A transaction's command id as `readers` may see it: the submitting application's, so
    /// only for a reader of a party the command acted as (ledger.proto), empty for every other
    /// party the transaction concerns on this participant.
    static func commandID(_ commandID: String, actAs: [Party], readers: some Sequence<Party>) -> String {
        readers.contains(where: actAs.contains) ? commandID : ""
    }

    /// As `commandID(_:actAs:readers:)`, for readers given by party id.
    static func commandID(_ commandID: String, actAs: [Party], readers ids: Set<String>) -> String {
        actAs.contains { ids.contains($0.id) } ? commandID : ""
    }

    func templates(_ filter: Weft.V1.TransactionFilter?) throws(LedgerAPIError) -> TemplateFilter {
        var templates = Set<TemplateID>()
        for (index, wire) in (filter?.templateIDs ?? []).enumerated() {
            guard let package = PackageID(hex: wire.packageID), !wire.templateName.isEmpty else {
                throw .invalidArgument(field: "filter.template_ids[\(index)]", "a template id needs a package id (64 hex digits) and a name")
            }
            templates.insert(TemplateID(package: package, name: wire.templateName))
        }
        return TemplateFilter(templates: templates)
    }
}

struct ActiveContractsServiceProvider: Weft.V1.ActiveContractsService.Provider {
    let api: LedgerAPI

    func getActiveContracts(
        _ request: Weft.V1.GetActiveContractsRequest, responses: RPCMessageWriter<Weft.V1.GetActiveContractsResponse>,
        context: RPCCallContext
    ) async throws {
        // The set as of one offset, read a page at a time (a participant with millions of
        // contracts streams them without holding them all); a commit racing the read is wholly
        // in the set or out of it. Reads go through `serve` (typed errors, logged); sends do not.
        let (parties, templates, writer, offset) = try await api.serve(context) {
            () async throws -> ([Party], TemplateFilter, EventWriter, Int64) in
            try api.authorizeRead(request.filter?.parties ?? [], field: "filter.parties", context)
            let parties = try await api.hostedParties(request.filter?.parties ?? [], field: "filter.parties")
            let templates = try api.templates(request.filter)
            let writer = EventWriter(packages: Array(try await api.packages.all().values), templates: templates)
            return (parties, templates, writer, try await api.participant.activeContractsOffset())
        }
        let size = api.configuration.activeContractsPerMessage
        var pending: [Weft.V1.CreatedEvent] = []
        var cursor: ActiveContractPage.Cursor?
        repeat {
            let page = try await api.serve(context) {
                try await api.participant.activeContracts(of: parties, at: offset, after: cursor, limit: size * 10)
            }
            cursor = page.next
            for entry in page.contracts where templates.admits(.created(entry.contract.id, entry.contract.contract)) {
                var event = writer.created(
                    entry.contract.id, entry.contract.contract, eventID: "\(entry.contract.createdAt):\(entry.contract.id)",
                    witnesses: entry.parties.map(\.id).sorted())
                if let seed = entry.contract.creationSeed {
                    event.createdEventBlob = (try? writer.blob(entry.contract.id, entry.contract.contract, seed: seed)) ?? []
                }
                pending.append(event)
                // A full message goes once another contract follows it: the last message, which
                // carries the offset, is empty only when the set is.
                if pending.count > size {
                    try await responses.send(.init(activeContracts: Array(pending.prefix(size)), offset: 0))
                    pending.removeFirst(size)
                }
            }
        } while cursor != nil
        try await responses.send(.init(activeContracts: pending, offset: UInt64(offset)))
    }
}

struct PartyManagementServiceProvider: Weft.V1.PartyManagementService.Provider {
    let api: LedgerAPI

    func allocateParty(_ request: Weft.V1.AllocatePartyRequest, context: RPCCallContext) async throws
        -> Weft.V1.AllocatePartyResponse
    {
        try await api.serve(context) {
            try api.authorizer.requireAdmin(context)
            try api.requireID(request.partyIDHint, field: "party_id_hint")
            guard request.displayName.utf8.count <= api.configuration.idBytesMax else {
                throw LedgerAPIError.invalidArgument(field: "display_name", "at most \(api.configuration.idBytesMax) bytes")
            }
            guard let allocation = api.allocation else { throw LedgerAPIError.partyAllocationUnavailable }
            let party = try await allocation.allocate(hint: request.partyIDHint)
            if !request.displayName.isEmpty {
                try await api.completions.setDisplayName(request.displayName, of: party.description)
            }
            api.logger.info("party allocated", metadata: [LedgerAPILogKey.party: "\(party)"])
            return Weft.V1.AllocatePartyResponse(
                partyDetails: .init(party: party.description, displayName: request.displayName, isLocal: true))
        }
    }

    func listKnownParties(_ request: Weft.V1.ListKnownPartiesRequest, context: RPCCallContext) async throws
        -> Weft.V1.ListKnownPartiesResponse
    {
        try await api.serve(context) {
            try api.authorizer.requireAdmin(context)
            let names = try await api.completions.displayNames()
            let hosted = await api.participant.hostedParties()
            return Weft.V1.ListKnownPartiesResponse(
                partyDetails: hosted.map {
                    .init(party: $0.party.description, displayName: names[$0.party.description] ?? "", isLocal: true)
                })
        }
    }
}

struct PackageManagementServiceProvider: Weft.V1.PackageManagementService.Provider {
    let api: LedgerAPI

    func uploadPackage(_ request: Weft.V1.UploadPackageRequest, context: RPCCallContext) async throws
        -> Weft.V1.UploadPackageResponse
    {
        try await api.serve(context) {
            try api.authorizer.requireAdmin(context)
            guard !request.source.isEmpty else { throw LedgerAPIError.invalidArgument(field: "source", "the package source is empty") }
            let file = request.fileName.isEmpty ? "package.weft" : String(request.fileName.prefix(api.configuration.idBytesMax))
            let id = try await api.participant.upload(packageSource: request.source, file: file)
            return Weft.V1.UploadPackageResponse(packageID: id.description)
        }
    }

    func listPackages(_ request: Weft.V1.ListPackagesRequest, context: RPCCallContext) async throws -> Weft.V1.ListPackagesResponse {
        try await api.serve(context) {
            try api.authorizer.requireAuthenticated(context)
            let stored = try await api.packages.storedPackages()
            let parsed = try await api.packages.all()
            return Weft.V1.ListPackagesResponse(packages: stored.map { Self.details($0, parsed[$0.id]) })
        }
    }

    func getPackage(_ request: Weft.V1.GetPackageRequest, context: RPCCallContext) async throws -> Weft.V1.GetPackageResponse {
        try await api.serve(context) {
            try api.authorizer.requireAuthenticated(context)
            guard let id = PackageID(hex: request.packageID) else {
                throw LedgerAPIError.invalidArgument(field: "package_id", "'\(request.packageID.prefix(80))' is not 64 hex digits")
            }
            guard let stored = try await api.packages.storedPackages().first(where: { $0.id == id }) else {
                throw LedgerAPIError.unknownPackage(request.packageID)
            }
            let parsed = try await api.packages.all()
            return Weft.V1.GetPackageResponse(details: Self.details(stored, parsed[id]), source: stored.source)
        }
    }

    static func details(_ stored: StoredPackage, _ package: Package?) -> Weft.V1.PackageDetails {
        Weft.V1.PackageDetails(
            packageID: stored.id.description, templateNames: package?.templates.map(\.name) ?? [],
            sizeBytes: UInt64(stored.source.utf8.count),
            uploadedAt: Weft.V1.Timestamp(microsSinceEpoch: stored.uploadedAtMicros))
    }
}
