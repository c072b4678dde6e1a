public import WeftContracts
public import WeftTopology
public import WeftWire

/// A command as its application names it: its application id and command id. Deduplication
/// and completions are per `ChangeID`: this key and the parties the command acts as.
public struct CommandKey: Hashable, Sendable, CustomStringConvertible {
    public let applicationID: String
    public let commandID: String

    public init(applicationID: String, commandID: String) {
        self.applicationID = applicationID
        self.commandID = commandID
    }

    public var description: String { "\(applicationID)/\(commandID)" }
}

/// What deduplication keys a command by (Canton's change id): the application's command key
/// and the parties the command acts as. Two users of one application id, or one application
/// acting for different parties, may use the same command id without one being refused as the
/// other's duplicate (ledger.proto: "unique per application and act-as parties").
public struct ChangeID: Hashable, Sendable, CustomStringConvertible {
    public let command: CommandKey
    /// Sorted, each party once: the order a command names its parties in does not matter.
    /// Empty only for a record stored before the parties were part of the key (participant
    /// migration 16), which stands for its command id whatever the parties.
    public let actAs: [Party]

    public init(_ command: CommandKey, actAs: some Sequence<Party>) {
        self.command = command
        self.actAs = Set(actAs).sorted()
    }

    public var applicationID: String { command.applicationID }
    public var commandID: String { command.commandID }

    public var description: String { "\(command) as \(actAs.map(\.id).joined(separator: ","))" }
}

/// What the submitter records before it sends a confirmation request.
struct SubmittedCommand: Sendable {
    let key: ChangeID
    let submissionID: String
    let messageID: String
    let rootHash: Digest32
    let deduplicationPeriodMicros: Int64
    /// The request's max sequencing time (µs): once the sequencer's time has passed it without
    /// the request, it never will be sequenced.
    let maxSequencingTime: Int64
    /// The request as sent (a serialized `weft.v1.Batch`), kept while the command is in flight
    /// so that a restart can send it again; nil when the request is not at hand (replay).
    var batch: [UInt8]? = nil
}

/// A command as stored: in flight, or completed.
public struct CommandRecord: Sendable, Equatable {
    public enum State: String, Sendable {
        case inFlight = "in_flight"
        case succeeded
        case rejected
    }
    public let state: State
    public let transactionID: String?
    public let ledgerOffset: Int64?
    public let reasonID: String?
    public let reason: String?
    public let submissionID: String
    /// Until when (microseconds since the epoch) the same command id is a duplicate: the
    /// deduplication period after the submission, and once it succeeded, after its completion.
    public let deduplicateUntil: Int64
    /// The parties the command acts as, sorted; empty for a record from before participant
    /// migration 16, which deduplicates its command id whatever the parties.
    public var actAs: [Party] = []

    /// Whether a new submission of the same command id at `now` (µs since the epoch) is this
    /// one's duplicate: while it is in flight, whatever its period (two requests of one command
    /// in flight at once could both commit, and the first one's verdict would complete the
    /// second), and once it succeeded, until its period ends. A rejected command may be retried.
    public func deduplicates(at now: Int64) -> Bool {
        switch state {
        case .inFlight: true
        case .succeeded: deduplicateUntil >= now
        case .rejected: false
        }
    }
}

/// What a submitting application learns about its command (Canton's completion).
public enum Completion: Sendable, Equatable {
    /// Committed: the transaction's id (its root hash in hex) and its offset in this
    /// participant's ledger.
    case succeeded(transactionID: String, offset: Int64)
    /// Not committed: a stable reason id (a participant's or the mediator's, docs/mediator.md
    /// §6, or the sequencer's error id when the request was never sequenced) and a message.
    case rejected(reasonID: String, message: String)
    /// The same command id was submitted before and is still within its deduplication
    /// period: nothing was sent; `previous` is what is known of the first submission.
    case duplicate(previous: CommandRecord)

    /// The reason id of a rejection; nil otherwise.
    public var reasonID: String? {
        if case .rejected(let reason, _) = self { reason } else { nil }
    }
}

/// A contract in the active contract set.
public struct ActiveContract: Sendable, Equatable {
    public let id: ContractID
    public let contract: ContractInstance
    /// The ledger offset of the transaction that created it.
    public let createdAt: Int64
    /// The seed of the create that made it, when known: with it anyone can check that the
    /// data belongs to the id (`ContractID.authenticates`), so an application may disclose
    /// the contract to a submitter on another participant (`prepare(…disclosedContracts:)`).
    public let creationSeed: NodeSeed?

    public init(id: ContractID, contract: ContractInstance, createdAt: Int64, creationSeed: NodeSeed? = nil) {
        self.id = id
        self.contract = contract
        self.createdAt = createdAt
        self.creationSeed = creationSeed
    }
}

/// What a transaction did that a party may see: Daml's flat transaction events.
public enum LedgerEvent: Sendable, Equatable {
    case created(ContractID, ContractInstance)
    case archived(ContractID, template: TemplateID)

    public var contractID: ContractID {
        switch self {
        case .created(let id, _), .archived(let id, _): id
        }
    }
}

/// One committed transaction as one party sees it (its projection).
public struct LedgerTransaction: Sendable, Equatable {
    /// Position in this participant's ledger: 1, 2, 3, … in sequencer order.
    public let offset: Int64
    /// The transaction's root hash in hex: the same on every participant.
    public let transactionID: String
    /// The request's sequencing time.
    public let recordTime: SequencingTimestamp
    /// The command id, on the submitting participant only (empty elsewhere). The submitting
    /// application's: the Ledger API shows it only to readers of `actAs` parties.
    public let commandID: String
    public internal(set) var events: [LedgerEvent]
    /// The parties the command acted as, on the submitting participant (empty elsewhere, and
    /// for transactions stored before they were recorded).
    public internal(set) var actAs: [Party] = []
    /// `eventIDs[i]` is the Ledger API event id of `events[i]`: that of the create or consuming
    /// exercise it comes from, as in the transaction tree (empty when not known).
    public internal(set) var eventIDs: [String] = []
}

/// One committed transaction as a tree (the Ledger API's tree form): every create and
/// exercise a party hosted here witnesses, with those parties as witnesses. Projecting it to
/// the parties a reader asks for is `LedgerTree.project`.
public struct LedgerTransactionTree: Sendable, Equatable {
    /// Position in this participant's ledger (as `LedgerTransaction.offset`).
    public let offset: Int64
    /// The transaction's root hash in hex.
    public let transactionID: String
    /// The request's sequencing time.
    public let recordTime: SequencingTimestamp
    /// The command id, on the submitting participant only (empty elsewhere); see
    /// `LedgerTransaction.commandID`.
    public let commandID: String
    /// In pre-order of the transaction; `child_event_ids` link them.
    public let events: [Weft.V1.TreeEvent]
    /// As `LedgerTransaction.actAs`.
    public internal(set) var actAs: [Party] = []
}
