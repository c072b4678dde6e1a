public import WeftAuth
public import WeftParticipant
public import WeftTransport

/// Every refusal of the Ledger API, typed, with the gRPC status code it goes out with, a
/// stable error id and a message that tells the application what to do next
/// (docs/ledger-api.md §errors).
public enum LedgerAPIError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A request field is missing, malformed or over its limit.
    case invalidArgument(field: String, String)
    /// A filter names a party this participant does not host: it has nothing to read for it.
    case partyNotHosted(String)
    /// A command acts as a party not hosted here with submission permission.
    case notHostedForSubmission(party: String, hosted: String?)
    /// The same command id was submitted before, within its deduplication period. The first
    /// submission's outcome is told only to a caller acting as one of its parties
    /// (`toItsSubmitter`): the id alone does not entitle anyone to it.
    case duplicateCommand(ChangeID, first: CommandRecord, toItsSubmitter: Bool)
    /// A template or package the participant does not have.
    case unknownTemplate(String)
    /// No package with this id was uploaded here.
    case unknownPackage(String)
    /// The commands do not interpret (unknown contract, failed assertion, missing authority…).
    case interpretation(String)
    /// The package does not parse or check.
    case invalidPackage(String)
    /// The transaction was rejected (SubmitAndWait): the reason id is the participant's,
    /// the mediator's or the sequencer's.
    case rejected(reasonID: String, message: String)
    /// The party is already hosted here.
    case partyExists(String)
    /// This Ledger API was started without a way to publish party hostings.
    case partyAllocationUnavailable
    /// The hosting was published but did not reach this participant's topology in time.
    case hostingNotApplied(party: String, seconds: Int)
    /// The participant cannot take requests now (stopped, no mediator yet…).
    case unavailable(id: String, String)
    /// A failure of the participant or its database that the application cannot fix.
    case internalError(id: String, String)
    /// The request cannot be served in the participant's present state (e.g. it reads
    /// history that was pruned); the message says what to do instead.
    case failedPrecondition(id: String, String)
    /// The call's token is missing or invalid (UNAUTHENTICATED), or lacks a claim the call
    /// needs (PERMISSION_DENIED).
    case unauthorized(AuthError)
    /// A stream starts after the end of what this participant has (an offset of another
    /// participant, of the other sequence, or from before a database was rebuilt): it would
    /// send nothing until that offset exists, skipping everything before it.
    case offsetAfterEnd(field: String, given: Int64, end: Int64, of: String)

    public var id: String {
        switch self {
        case .invalidArgument: "LEDGER_API_INVALID_ARGUMENT"
        case .partyNotHosted: "LEDGER_API_PARTY_NOT_HOSTED"
        case .notHostedForSubmission: "LEDGER_API_PARTY_NOT_HOSTED_FOR_SUBMISSION"
        case .duplicateCommand: "LEDGER_API_DUPLICATE_COMMAND"
        case .unknownTemplate: "LEDGER_API_UNKNOWN_TEMPLATE"
        case .unknownPackage: "LEDGER_API_UNKNOWN_PACKAGE"
        case .interpretation: "LEDGER_API_INTERPRETATION_FAILED"
        case .invalidPackage: "LEDGER_API_INVALID_PACKAGE"
        case .rejected(let reasonID, _): reasonID
        case .partyExists: "LEDGER_API_PARTY_ALREADY_EXISTS"
        case .partyAllocationUnavailable: "LEDGER_API_PARTY_ALLOCATION_UNAVAILABLE"
        case .hostingNotApplied: "LEDGER_API_HOSTING_NOT_APPLIED"
        case .unavailable(let id, _): id
        case .internalError(let id, _): id
        case .failedPrecondition(let id, _): id
        case .unauthorized(let error): error.id
        case .offsetAfterEnd: "LEDGER_API_OFFSET_AFTER_END"
        }
    }

    public var code: StatusCode {
        switch self {
        case .invalidArgument, .interpretation, .invalidPackage: .invalidArgument
        case .partyNotHosted, .unknownTemplate, .unknownPackage: .notFound
        case .notHostedForSubmission: .permissionDenied
        case .duplicateCommand, .partyExists: .alreadyExists
        case .rejected: .aborted
        case .partyAllocationUnavailable: .unimplemented
        case .hostingNotApplied: .deadlineExceeded
        case .unavailable: .unavailable
        case .internalError: .internal
        case .failedPrecondition: .failedPrecondition
        case .unauthorized(let error): error.rpcError.code
        case .offsetAfterEnd: .outOfRange
        }
    }

    public var message: String {
        switch self {
        case .invalidArgument(let field, let text): "\(field): \(text)"
        case .partyNotHosted(let party):
            "party \(party) is not hosted on this participant, so it has no data here; "
                + "read through the participant that hosts it, or allocate it here"
        case .notHostedForSubmission(let party, let hosted):
            "party \(party) is "
                + (hosted.map { "hosted here with \($0) permission only" } ?? "not hosted on this participant")
                + "; submit through a participant that hosts it with submission permission"
        case .duplicateCommand(let key, _, false):
            "command \(key) was already submitted, possibly for other parties (recorded before participant migration 16), and is deduplicated; use a new command id"
        case .duplicateCommand(let key, let first, true):
            "command \(key) was already submitted (submission \(first.submissionID)) and is deduplicated "
                + (first.state == .inFlight
                    ? "while that submission is in flight"
                    : "until \(first.deduplicateUntil) µs since the epoch")
                + "; its first submission " + Self.outcome(first)
                + (first.state == .inFlight
                    ? "; wait for its completion, or use a new command id" : "; use a new command id to submit again")
        case .unknownTemplate(let text): "\(text); upload the package first (weft package upload)"
        case .unknownPackage(let id): "no package \(id) was uploaded to this participant; list them with weft package list"
        case .interpretation(let text): "the commands do not interpret: \(text)"
        case .invalidPackage(let text): "the package does not load: \(text)"
        case .rejected(_, let text): "the transaction was rejected: \(text)"
        case .partyExists(let party): "party \(party) is already hosted here; use it, or choose another hint"
        case .partyAllocationUnavailable:
            "this participant's Ledger API has no way to publish party hostings (started without a topology publisher); "
                + "ask the domain operator to publish the PartyToParticipant mapping"
        case .hostingNotApplied(let party, let seconds):
            "the hosting of \(party) was published but did not appear in this participant's topology within \(seconds) s; "
                + "check the domain manager's log, then list parties again, or allocate again (a repeat is a new request)"
        case .unavailable(_, let text): text
        case .internalError(_, let text): text
        case .failedPrecondition(_, let text): text
        case .unauthorized(let error): error.description
        case .offsetAfterEnd(let field, let given, let end, let of):
            "\(field) \(given) is after the \(of) (\(end)) of this participant: offsets are each participant's own, and "
                + "completion and ledger offsets are two sequences; read the end and resume from there"
        }
    }

    public var description: String { "\(id): \(message)" }

    /// The error as it goes on the wire.
    public var rpcError: RPCError { RPCError(code, message, errorID: id) }

    private static func outcome(_ record: CommandRecord) -> String {
        switch record.state {
        case .inFlight: "is still in flight"
        case .succeeded:
            "committed as transaction \(record.transactionID ?? "?") at offset \(record.ledgerOffset.map(String.init) ?? "?")"
        case .rejected: "was rejected (\(record.reasonID ?? "?"))"
        }
    }

    /// What the application is told when a call the participant made to its domain on its
    /// behalf failed (publishing a party's hosting through the sequencer, …). The code says
    /// what the application can do: retry (the domain busy or out of reach), nothing until the
    /// participant's operator acts (the domain refuses this participant), or nothing at all (the
    /// participant sent something the domain finds wrong: its bug). The domain's error id and
    /// message go along.
    static func from(domainCall error: RPCError) -> LedgerAPIError {
        let id = error.errorID.isEmpty ? "LEDGER_API_DOMAIN_CALL_FAILED" : error.errorID
        switch error.code {
        case .unavailable, .deadlineExceeded, .resourceExhausted, .aborted, .cancelled:
            return .unavailable(id: id, "the domain did not take the participant's request (\(error.message)); retry")
        case .permissionDenied, .unauthenticated, .failedPrecondition:
            return .failedPrecondition(
                id: id,
                "the domain refused this participant (\(error.message)); its operator must fix that (`weft health status`), then retry")
        default:
            return .internalError(id: id, "the domain found the participant's request wrong (\(error.message)); see the participant's log")
        }
    }

    /// Maps a failure of the participant to what the application is told.
    static func from(_ error: any Error) -> LedgerAPIError {
        if let error = error as? LedgerAPIError { return error }
        if let error = error as? AuthError { return .unauthorized(error) }
        if let error = error as? ParticipantError {
            switch error {
            case .notHostedForSubmission(let party): return .notHostedForSubmission(party: party, hosted: nil)
            case .interpretation(let contractError): return .interpretation("\(contractError)")
            case .views(let viewError): return .interpretation("\(viewError)")
            case .unauthenticatedDisclosure: return .interpretation(error.description)
            case .invalidPackage(let contractError): return .invalidPackage("\(contractError)")
            case .noEncryptionKey, .noMediator, .stopped, .narrowingTimedOut, .unknownCounterParticipant: return .unavailable(id: error.id, error.description)
            case .inconsistentStore: return .internalError(id: error.id, error.description)
            case .offsetPruned, .activeContractsPruned, .pruneOffsetOutOfRange, .pruneBeyondSafePoint:
                return .failedPrecondition(id: error.id, error.description)
            }
        }
        if let error = error as? ParticipantRecoveryError {
            return .unavailable(id: error.id, error.description)
        }
        if let error = error as? RPCError { return from(domainCall: error) }
        if CompletionLog.isTransient(error) {
            return .unavailable(
                id: "LEDGER_API_DATABASE_UNAVAILABLE",
                "the participant's database cannot be reached for now (\(error)); retry the call")
        }
        return .internalError(id: "LEDGER_API_INTERNAL", "the participant failed: \(error); see its log")
    }
}
