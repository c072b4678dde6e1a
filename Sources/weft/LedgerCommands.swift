import ArgumentParser
import Foundation
import WeftTransport
import WeftWire

// The Ledger API console verbs (docs/ledger-api.md §CLI): `weft party`, `weft package`,
// `weft submit`, `weft acs`, `weft transactions`, `weft ledger-end`. Each talks to a
// participant's Ledger API with `--remote host:port --root-cert ca.pem` and prints text or,
// with `--output json`, one JSON object per line.

/// Runs a call (or the connection to the node) and turns an `RPCError` into a message that
/// names its id, and exit code 1.
func ledgerCall<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as RPCError {
        let id = error.errorID.isEmpty ? "\(error.code)" : error.errorID
        FileHandle.standardError.write(Data("error: \(error.message) [\(id)]\n".utf8))
        throw ExitCode.failure
    }
}

/// `weft party …`
struct PartyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "party", abstract: "Allocate and list the parties a participant hosts.",
        subcommands: [Allocate.self, List.self])

    struct Allocate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Allocate a party in the participant's namespace; its hosting is published through topology.",
            discussion: "Prints the party id, e.g. alice::1220…, once the participant can submit as it.")

        @Argument(help: "The party's name, e.g. alice: the id is alice::<participant namespace>.")
        var hint: String

        @Option(name: .customLong("display-name"), help: "A display name the participant keeps for it.")
        var displayName: String = ""

        @OptionGroup var remote: RemoteOptions
        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            let client = try await ledgerCall { try await remote.connect() }
            defer { Task { await client.close() } }
            let response = try await ledgerCall {
                try await client.partyManagement.allocateParty(.init(partyIDHint: hint, displayName: displayName))
            }
            let party = response.partyDetails?.party ?? ""
            switch output {
            case .text: print(party)
            case .json: try printJSON(["party": party, "display_name": displayName])
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the parties the participant hosts.")
        @OptionGroup var remote: RemoteOptions
        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            let client = try await ledgerCall { try await remote.connect() }
            defer { Task { await client.close() } }
            let parties = try await ledgerCall { try await client.partyManagement.listKnownParties(.init()) }.partyDetails
            for party in parties {
                switch output {
                case .text: print(party.displayName.isEmpty ? party.party : "\(party.party)  \(party.displayName)")
                case .json: try printJSON(["party": party.party, "display_name": party.displayName])
                }
            }
        }
    }
}

/// `weft package …`
struct PackageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "package", abstract: "Upload and list contract packages (docs/contracts.md).",
        subcommands: [Upload.self, List.self])

    struct Upload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upload a package file; it is checked before it is accepted. Prints its package id.")

        @Argument(help: "The package source, e.g. examples/packages/iou.weft.")
        var file: String

        @OptionGroup var remote: RemoteOptions
        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            guard let source = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read \(file) as UTF-8 text")
            }
            let client = try await ledgerCall { try await remote.connect() }
            defer { Task { await client.close() } }
            let response = try await ledgerCall {
                try await client.packageManagement.uploadPackage(
                    .init(source: source, fileName: (file as NSString).lastPathComponent))
            }
            switch output {
            case .text: print(response.packageID)
            case .json: try printJSON(["package_id": response.packageID, "file": file])
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the uploaded packages and their templates.")
        @OptionGroup var remote: RemoteOptions
        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            let client = try await ledgerCall { try await remote.connect() }
            defer { Task { await client.close() } }
            for package in try await ledgerCall({ try await client.packageManagement.listPackages(.init()) }).packages {
                switch output {
                case .text: print("\(package.packageID)  \(package.templateNames.joined(separator: ", "))  \(package.sizeBytes) bytes")
                case .json:
                    try printJSON([
                        "package_id": package.packageID, "templates": package.templateNames, "size_bytes": package.sizeBytes,
                        "uploaded_at_micros": package.uploadedAt?.microsSinceEpoch ?? 0,
                    ])
                }
            }
        }
    }
}

/// Where a command's template is: `PACKAGE_ID:Template`, or `Template` alone when exactly one
/// uploaded package defines it.
func resolveTemplate(_ text: String, client: RPCClient) async throws -> Weft.V1.TemplateId {
    if let colon = text.firstIndex(of: ":") {
        return .init(packageID: String(text[..<colon]), templateName: String(text[text.index(after: colon)...]))
    }
    let packages = try await ledgerCall { () async throws -> [Weft.V1.PackageDetails] in
        do {
            return try await client.packageManagement.listPackages(.init()).packages
        } catch let error as RPCError where error.code == .permissionDenied {
            // A participant that lists packages to admins only (older versions) refuses an
            // application's token here: a package id in the name needs no lookup at all.
            throw RPCError(
                error.code,
                error.message + "; with this token, name the template as PACKAGE_ID:\(text) instead "
                    + "(weft package list with an admin token shows the package ids)",
                errorID: error.errorID, correlationID: error.correlationID)
        }
    }
    let candidates = packages.filter { $0.templateNames.contains(text) }
    guard candidates.count == 1 else {
        throw ValidationError(
            candidates.isEmpty
                ? "no uploaded package defines template \(text); upload it first (weft package upload)"
                : "template \(text) is in \(candidates.count) packages; name one as PACKAGE_ID:\(text)")
    }
    return .init(packageID: candidates[0].packageID, templateName: text)
}

/// `weft submit create|exercise`
struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit", abstract: "Submit a create or an exercise and wait for its transaction.",
        discussion: """
            Arguments are one JSON object of labelled fields (docs/ledger-api.md §CLI):
              true/false → Bool, an integer → Int, a string → Text, and typed objects
              {"party": "alice::1220…"}, {"decimal": "100.0"}, {"contract": "<64 hex>"},
              {"time": <µs since epoch>}, {"unit": {}}, {"list": [ … ]}, {"record": [ …positional… ]}.
            Example:
              weft submit create --template Iou --act-as bank::1220… \\
                --arguments '{"issuer": {"party": "bank::1220…"}, "owner": {"party": "alice::1220…"},
                              "currency": "USD", "amount": {"decimal": "100.0"}}' --remote … --root-cert ca.pem
            The command id (--command-id, or a random cli-<uuid>) is printed with the outcome; when the \
            submission fails it is printed on standard error too: if the outcome is unknown (the \
            connection was lost), retry with that --command-id, so that a submission that went \
            through is deduplicated rather than committed twice.
            """,
        subcommands: [Create.self, Exercise.self])

    struct Common: ParsableArguments {
        @Option(name: .customLong("act-as"), help: "A party the command acts as (repeat for several).")
        var actAs: [String] = []

        @Option(
            name: .customLong("command-id"),
            help: "The command id (deduplication key); a random cli-<uuid> by default, printed with the outcome.")
        var commandID: String?

        @Option(name: .customLong("application-id"), help: "The application id completions are reported under.")
        var applicationID: String = "weft-cli"

        @Option(name: .customLong("deduplication-seconds"), help: "How long the command id is deduplicated (default: the participant's).")
        var deduplicationSeconds: Int64?

        @Flag(
            name: .customLong("no-wait"),
            help: """
                Return the submission id at once; read the outcome with weft call <host:port> \
                /weft.v1.CompletionService/CompletionStream --json '{"application_id": "weft-cli", "parties": ["<act-as party>"]}' \
                (docs/ledger-api.md).
                """)
        var noWait = false

        @Option(help: ArgumentHelp(
            "A contract the command uses that no act-as party is a stakeholder of: its created_event_blob as a stakeholder's `weft acs --output json` prints it (hex; repeatable).",
            valueName: "blob"))
        var disclose: [String] = []

        /// The command id without --command-id: made once per process, so that the id the
        /// request carries and the one the messages name are the same. (A default value on the
        /// option would also show a random id in --help, different at each call.)
        static let generatedCommandID = "cli-" + UUID().uuidString.lowercased()

        /// The command id the submission carries: --command-id, or the generated one.
        var effectiveCommandID: String { commandID ?? Self.generatedCommandID }

        func validate() throws {
            guard !actAs.isEmpty else { throw ValidationError("give --act-as PARTY at least once") }
            // The participant's default limit, checked here because the seconds are multiplied
            // into microseconds below, which a large enough value would overflow.
            if let deduplicationSeconds, !(0...86_400).contains(deduplicationSeconds) {
                throw ValidationError("--deduplication-seconds must be 0 to 86400 (one day)")
            }
            _ = try disclosed()
        }

        /// The --disclose blobs, with the contract id and template each names.
        func disclosed() throws -> [Weft.V1.DisclosedContract] {
            try disclose.map { hex in
                guard let bytes = hexBytes(hex),
                    let contract = try? Weft.V1.ContractInstance(serializedBytes: bytes)
                else {
                    throw ValidationError("--disclose: '\(hex.prefix(40))…' is not a created_event_blob (hex, as weft acs --output json prints it)")
                }
                return .init(templateID: contract.templateID, contractID: contract.contractID, createdEventBlob: bytes)
            }
        }

        func commands(_ command: Weft.V1.Command) -> Weft.V1.Commands {
            .init(
                commandID: effectiveCommandID, applicationID: applicationID, actAs: actAs,
                deduplicationPeriod: deduplicationSeconds.map { .init(micros: $0 * 1_000_000) }, commands: [command],
                disclosedContracts: (try? disclosed()) ?? [])
        }

        func submit(_ command: Weft.V1.Command, client: RPCClient, output: OutputFormat) async throws {
            let commandID = effectiveCommandID
            let request = commands(command)
            if noWait {
                let response = try await namingCommandIDOnFailure {
                    try await ledgerCall { try await client.command.submit(.init(commands: request)) }
                }
                switch output {
                case .text: print("submitted \(commandID) (submission \(response.submissionID))")
                case .json: try printJSON(["command_id": commandID, "submission_id": response.submissionID, "trace_id": RemoteOptions.trace.traceID])
                }
                return
            }
            let response = try await namingCommandIDOnFailure {
                try await ledgerCall { try await client.command.submitAndWait(.init(commands: request)) }
            }
            switch output {
            case .text: print("committed \(commandID) as transaction \(response.transactionID) at offset \(response.offset)")
            case .json:
                try printJSON([
                    "command_id": commandID, "transaction_id": response.transactionID, "offset": response.offset,
                    "trace_id": RemoteOptions.trace.traceID,
                ])
            }
        }

        /// Runs a submission call; when it fails, for whatever reason, names the command id
        /// before the error goes on. A failure can leave the outcome unknown (the connection lost
        /// after the participant took the command): only a retry under the same id is
        /// deduplicated, and without --command-id the user would not know the id.
        private func namingCommandIDOnFailure<T>(_ call: () async throws -> T) async throws -> T {
            do {
                return try await call()
            } catch {
                let id = effectiveCommandID
                FileHandle.standardError.write(
                    Data(
                        ("command id \(id) (trace id \(RemoteOptions.trace.traceID)): if the outcome is unknown, retry with "
                            + "--command-id \(id) so that a submission that went through is deduplicated\n").utf8))
                throw error
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a contract.")

        @Option(help: "The template: Template, or PACKAGE_ID:Template.")
        var template: String

        @Option(help: "The create arguments: a JSON object of labelled fields (see weft submit --help).")
        var arguments: String

        @OptionGroup var common: Common
        @OptionGroup var remote: RemoteOptions
        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            let record = try LedgerValueSyntax.record(arguments, option: "--arguments")
            let client = try await ledgerCall { try await remote.connect() }
            defer { Task { await client.close() } }
            let template = try await resolveTemplate(self.template, client: client)
            try await common.submit(
                .init(kind: .create(.init(templateID: template, createArguments: record))), client: client, output: output)
        }
    }

    struct Exercise: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Exercise a choice on a contract.")

        @Option(help: "The contract's template: Template, or PACKAGE_ID:Template.")
        var template: String

        @Option(help: "The contract id (64 hex digits, as weft acs prints it).")
        var contract: String

        @Option(help: "The choice, e.g. Transfer.")
        var choice: String

        @Option(help: "The choice's arguments: a JSON object of labelled parameters.")
        var arguments: String = "{}"

        @OptionGroup var common: Common
        @OptionGroup var remote: RemoteOptions
        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            let record = try LedgerValueSyntax.record(arguments, option: "--arguments")
            let client = try await ledgerCall { try await remote.connect() }
            defer { Task { await client.close() } }
            let template = try await resolveTemplate(self.template, client: client)
            try await common.submit(
                .init(
                    kind: .exercise(
                        .init(templateID: template, contractID: contract, choice: choice, choiceArgument: .init(sum: .record(record))))),
                client: client, output: output)
        }
    }
}

/// `weft acs`
struct ActiveContractsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acs", abstract: "List the active contracts of parties hosted on the participant.",
        discussion: """
            Text: a line per contract, then "(valid at offset N)". JSON: an object per contract, then \
            a last line {"offset": N}. N is the ledger offset the set is valid at: follow it with \
            weft transactions --from N to miss no change after it.
            """)

    @Option(help: "A party whose contracts to list (repeat for several).")
    var party: [String] = []

    @Option(help: "Only this template (Template or PACKAGE_ID:Template; repeatable).")
    var template: [String] = []

    @OptionGroup var remote: RemoteOptions
    @Option(help: "text or json.") var output: OutputFormat = .text

    func validate() throws {
        guard !party.isEmpty else { throw ValidationError("give --party PARTY at least once") }
    }

    func run() async throws {
        let client = try await ledgerCall { try await remote.connect() }
        defer { Task { await client.close() } }
        var templates: [Weft.V1.TemplateId] = []
        for name in template { templates.append(try await resolveTemplate(name, client: client)) }
        var offset: UInt64 = 0
        try await ledgerCall {
            for try await response in try client.activeContracts.getActiveContracts(
                .init(filter: .init(parties: party, templateIDs: templates)))
            {
                for contract in response.activeContracts {
                    switch output {
                    case .text:
                        print("\(contract.contractID)  \(contract.templateID?.templateName ?? "?")  \(LedgerValueSyntax.text(contract.createArguments))")
                    case .json: try printJSON(LedgerValueSyntax.json(contract))
                    }
                }
                offset = max(offset, response.offset)
            }
        }
        // The set is only meaningful with the offset it is valid at, in either format.
        switch output {
        case .text: print("(valid at offset \(offset))")
        case .json: try printJSON(["offset": offset])
        }
    }
}

/// `weft transactions`
struct TransactionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transactions", abstract: "Print parties' transactions (creates and archives) from an offset.",
        discussion: """
            Without --follow it stops at the ledger end as of the call; with --follow it waits for new ones. \
            With --tree it prints each transaction as the tree of creates and exercises the parties witness \
            (the Ledger API's GetTransactionTrees). Offsets are each participant's own: --from beyond this \
            participant's ledger end is an error. When the stream fails after it started, the offset of the \
            last transaction printed goes to standard error, to resume from with --from.
            """)

    @Option(help: "A party whose projection to read (repeat for several).")
    var party: [String] = []

    @Option(help: "Start after this offset (0: the beginning).")
    var from: UInt64 = 0

    @Option(help: "Stop at this offset.")
    var to: UInt64?

    @Flag(help: "Keep following the ledger until interrupted or the stream fails; a failure prints the offset to resume from.")
    var follow = false

    @Flag(help: "Print transaction trees (exercises with their consequences) instead of creates and archives.")
    var tree = false

    @OptionGroup var remote: RemoteOptions
    @Option(help: "text or json.") var output: OutputFormat = .text

    func validate() throws {
        guard !party.isEmpty else { throw ValidationError("give --party PARTY at least once") }
        guard !(follow && to != nil) else { throw ValidationError("--follow and --to exclude each other") }
        if let to, to <= from { throw ValidationError("--to must be after --from") }
    }

    func run() async throws {
        let client = try await ledgerCall { try await remote.connect() }
        defer { Task { await client.close() } }
        var end: UInt64 = 0
        if let to {
            end = to
        } else if !follow {
            end = try await ledgerCall { try await client.transaction.getLedgerEnd(.init()) }.offset
            // Asked as of the ledger end, the server would refuse an offset after it; it is an
            // offset of another participant (or from before a rebuild), which deserves the
            // same clear failure here rather than an empty, successful output.
            if from > end {
                FileHandle.standardError.write(
                    Data(
                        ("error: --from \(from) is after the ledger end \(end) of this participant (offsets are local to "
                            + "each participant); use an offset at most \(end)\n").utf8))
                throw ExitCode.failure
            }
            // Nothing committed after --from: nothing to print.
            guard end > from else { return }
        }
        // The offset of the last transaction printed (nil: none yet): where a failed stream
        // can be resumed.
        var last: UInt64?
        // Whether the participant refused the request itself before sending anything (an
        // offset after its end or pruned, a party not hosted or not granted): its message says
        // what to do, and "resume from --from" would contradict it.
        var refused = false
        do {
            try await ledgerCall {
                do {
                    let filter = Weft.V1.TransactionFilter(parties: party)
                    if tree {
                        for try await response in try client.transaction.getTransactionTrees(
                            .init(beginExclusive: from, endInclusive: end, filter: filter))
                        {
                            guard let tree = response.transaction else { continue }
                            switch output {
                            case .text: printTree(tree)
                            case .json: try printJSON(LedgerValueSyntax.json(tree))
                            }
                            last = tree.offset
                        }
                    } else {
                        for try await response in try client.transaction.getTransactions(
                            .init(beginExclusive: from, endInclusive: end, filter: filter))
                        {
                            guard let transaction = response.transaction else { continue }
                            switch output {
                            case .text: printFlat(transaction)
                            case .json: try printJSON(LedgerValueSyntax.json(transaction))
                            }
                            last = transaction.offset
                        }
                    }
                } catch let error as RPCError {
                    let refusals: [StatusCode] = [
                        .invalidArgument, .notFound, .permissionDenied, .failedPrecondition, .outOfRange,
                    ]
                    refused = last == nil && refusals.contains(error.code)
                    throw error
                }
            }
        } catch {
            // Whatever else ended it (the participant stopping, the token expiring, the
            // connection lost), the transactions up to `last` were printed: resuming there
            // repeats none and misses none.
            if !refused {
                let resume = last ?? from
                FileHandle.standardError.write(
                    Data("the stream ended after offset \(resume); resume with --from \(resume)\n".utf8))
            }
            throw error
        }
    }

    /// A flat transaction: a line for it, then one per create and archive.
    private func printFlat(_ transaction: Weft.V1.Transaction) {
        print("offset \(transaction.offset)  transaction \(transaction.transactionID)"
            + (transaction.commandID.isEmpty ? "" : "  command \(transaction.commandID)"))
        for event in transaction.events {
            switch event.kind {
            case .created(let created)?:
                print("  created \(created.contractID)  \(created.templateID?.templateName ?? "?")  \(LedgerValueSyntax.text(created.createArguments))")
            case .archived(let archived)?:
                print("  archived \(archived.contractID)  \(archived.templateID?.templateName ?? "?")")
            case nil: break
            }
        }
    }

    /// The tree indented: each exercise with its consequences below it.
    private func printTree(_ tree: Weft.V1.TransactionTreeView) {
        print("offset \(tree.offset)  transaction \(tree.transactionID)"
            + (tree.commandID.isEmpty ? "" : "  command \(tree.commandID)"))
        var byID: [String: Weft.V1.TreeEvent] = [:]
        for event in tree.events {
            switch event.kind {
            case .created(let created)?: byID[created.eventID] = event
            case .exercised(let exercised)?: byID[exercised.eventID] = event
            case nil: break
            }
        }
        func show(_ id: String, depth: Int) {
            let indent = String(repeating: "  ", count: depth + 1)
            switch byID[id]?.kind {
            case .created(let created)?:
                print("\(indent)created \(created.contractID)  \(created.templateID?.templateName ?? "?")  "
                    + LedgerValueSyntax.text(created.createArguments))
            case .exercised(let exercised)?:
                let argument: String
                if case .record(let record)? = exercised.choiceArgument?.sum {
                    argument = LedgerValueSyntax.text(record)
                } else {
                    argument = ""
                }
                print("\(indent)exercised \(exercised.consuming ? "" : "(non-consuming) ")\(exercised.choice) on "
                    + "\(exercised.contractID)  \(exercised.templateID?.templateName ?? "?")  \(argument)  by "
                    + exercised.actingParties.joined(separator: ", "))
                for child in exercised.childEventIDs { show(child, depth: depth + 1) }
            case nil: break
            }
        }
        for root in tree.rootEventIDs { show(root, depth: 0) }
    }
}

/// `weft ledger-end`
struct LedgerEndCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger-end", abstract: "Print the offset of the participant's latest transaction.",
        discussion: "Offsets are each participant's own: another participant numbers the same transactions differently.")
    @OptionGroup var remote: RemoteOptions
    @Option(help: "text or json.") var output: OutputFormat = .text

    func run() async throws {
        let client = try await ledgerCall { try await remote.connect() }
        defer { Task { await client.close() } }
        let offset = try await ledgerCall { try await client.transaction.getLedgerEnd(.init()) }.offset
        switch output {
        case .text: print(offset)
        case .json: try printJSON(["offset": offset])
        }
    }
}

/// The CLI's JSON syntax for values (see `weft submit --help`), both ways.
enum LedgerValueSyntax {
    /// JSON as the CLI reads it: booleans, integers and other numbers kept apart.
    enum JSON: Decodable {
        case bool(Bool), integer(Int64), number(Double), string(String), array([JSON]), object([String: JSON]), null

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() { self = .null }
            else if let value = try? container.decode(Bool.self) { self = .bool(value) }
            else if let value = try? container.decode(Int64.self) { self = .integer(value) }
            else if let value = try? container.decode(Double.self) { self = .number(value) }
            else if let value = try? container.decode(String.self) { self = .string(value) }
            else if let value = try? container.decode([JSON].self) { self = .array(value) }
            else { self = .object(try container.decode([String: JSON].self)) }
        }
    }

    static func record(_ text: String, option: String) throws -> Weft.V1.Record {
        guard case .object(let fields)? = try? JSONDecoder().decode(JSON.self, from: Data(text.utf8)) else {
            throw ValidationError("\(option): expected a JSON object of labelled fields, e.g. '{\"owner\": {\"party\": \"alice::1220…\"}}'")
        }
        return Weft.V1.Record(
            fields: try fields.keys.sorted().map { label in
                Weft.V1.RecordField(label: label, value: try value(fields[label]!, at: "\(option) \(label)"))
            })
    }

    static func value(_ json: JSON, at path: String) throws -> Weft.V1.Value {
        switch json {
        case .bool(let value): return .init(sum: .bool(value))
        case .integer(let value): return .init(sum: .int64(value))
        case .number(let value):
            throw ValidationError("\(path): \(value) is not an integer; write decimals as {\"decimal\": \"\(value)\"}")
        case .string(let text): return .init(sum: .text(text))
        case .null, .array:
            throw ValidationError("\(path): expected true/false, an integer, a string, or one typed object like {\"party\": \"…\"}")
        case .object(let object):
            guard object.count == 1, let (kind, inner) = object.first else {
                throw ValidationError("\(path): a typed value is an object with one key, like {\"party\": \"…\"}")
            }
            switch (kind, inner) {
            case ("party", .string(let id)): return .init(sum: .party(id))
            case ("text", .string(let text)): return .init(sum: .text(text))
            case ("decimal", .string(let text)): return .init(sum: .decimal(text))
            case ("decimal", .integer(let number)): return .init(sum: .decimal("\(number)"))
            case ("contract", .string(let id)): return .init(sum: .contractID(id))
            case ("int", .integer(let number)): return .init(sum: .int64(number))
            case ("bool", .bool(let value)): return .init(sum: .bool(value))
            case ("time", .integer(let micros)): return .init(sum: .time(.init(microsSinceEpoch: micros)))
            case ("unit", _): return .init(sum: .unit(.init()))
            case ("list", .array(let elements)):
                return .init(sum: .list(.init(elements: try elements.enumerated().map { try value($1, at: "\(path)[\($0)]") })))
            case ("record", .array(let fields)):
                return .init(
                    sum: .record(.init(fields: try fields.enumerated().map { .init(value: try value($1, at: "\(path).\($0)")) })))
            default:
                throw ValidationError(
                    "\(path): {\"\(kind)\": …} is not a typed value; use party, text, decimal (a string), contract, int, bool, "
                        + "time (µs), unit, list (an array) or record (an array, positional)")
            }
        }
    }

    static func json(_ value: Weft.V1.Value?) -> Any {
        switch value?.sum {
        case nil: return NSNull()
        case .unit?: return ["unit": [String: Any]()]
        case .bool(let bool)?: return bool
        case .int64(let integer)?: return integer
        case .decimal(let text)?: return ["decimal": text]
        case .text(let text)?: return text
        case .party(let party)?: return ["party": party]
        case .time(let time)?: return ["time": time.microsSinceEpoch]
        case .contractID(let id)?: return ["contract": id]
        case .list(let list)?: return ["list": list.elements.map { json($0) }]
        case .record(let record)?: return json(record)
        }
    }

    static func json(_ record: Weft.V1.Record?) -> Any {
        let fields = record?.fields ?? []
        if fields.allSatisfy({ !$0.label.isEmpty }) {
            var object: [String: Any] = [:]
            for field in fields { object[field.label] = json(field.value) }
            return object
        }
        return ["record": fields.map { json($0.value) }]
    }

    static func text(_ record: Weft.V1.Record?) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: json(record), options: [.sortedKeys]) else { return "?" }
        return String(decoding: data, as: UTF8.self)
    }

    static func json(_ event: Weft.V1.CreatedEvent) -> [String: Any] {
        [
            "contract_id": event.contractID, "template": event.templateID?.templateName ?? "",
            "package_id": event.templateID?.packageID ?? "", "arguments": json(event.createArguments),
            "signatories": event.signatories, "observers": event.observers, "witnesses": event.witnessParties,
        ].merging(event.createdEventBlob.isEmpty ? [:] : ["created_event_blob": event.createdEventBlob.map { String(format: "%02x", $0) }.joined()]) { $1 }
    }

    static func json(_ tree: Weft.V1.TransactionTreeView) -> [String: Any] {
        [
            "offset": tree.offset, "transaction_id": tree.transactionID, "command_id": tree.commandID,
            "effective_at_micros": tree.effectiveAt?.microsSinceEpoch ?? 0, "root_event_ids": tree.rootEventIDs,
            "events": tree.events.map { event -> [String: Any] in
                switch event.kind {
                case .created(let created)?:
                    var object = json(created)
                    object["event_id"] = created.eventID
                    return ["created": object]
                case .exercised(let exercised)?:
                    return [
                        "exercised": [
                            "event_id": exercised.eventID, "contract_id": exercised.contractID,
                            "template": exercised.templateID?.templateName ?? "", "choice": exercised.choice,
                            "argument": json(exercised.choiceArgument), "acting_parties": exercised.actingParties,
                            "consuming": exercised.consuming, "witnesses": exercised.witnessParties,
                            "child_event_ids": exercised.childEventIDs, "result": json(exercised.exerciseResult),
                        ] as [String: Any]
                    ]
                case nil: return [:]
                }
            },
        ]
    }

    static func json(_ transaction: Weft.V1.Transaction) -> [String: Any] {
        [
            "offset": transaction.offset, "transaction_id": transaction.transactionID, "command_id": transaction.commandID,
            "effective_at_micros": transaction.effectiveAt?.microsSinceEpoch ?? 0,
            "events": transaction.events.map { event -> [String: Any] in
                switch event.kind {
                case .created(let created)?: return ["created": json(created)]
                case .archived(let archived)?:
                    return [
                        "archived": [
                            "contract_id": archived.contractID, "template": archived.templateID?.templateName ?? "",
                            "witnesses": archived.witnessParties,
                        ] as [String: Any]
                    ]
                case nil: return [:]
                }
            },
        ]
    }
}

/// The bytes of an even-length hex string; nil for anything else.
func hexBytes(_ text: String) -> [UInt8]? {
    let digits = Array(text.utf8)
    guard !digits.isEmpty, digits.count % 2 == 0 else { return nil }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(digits.count / 2)
    for index in stride(from: 0, to: digits.count, by: 2) {
        guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
        bytes.append(high << 4 | low)
    }
    return bytes
}

private func hexValue(_ digit: UInt8) -> UInt8? {
    switch digit {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
    default: nil
    }
}
