public import WeftContracts
import WeftTopology

/// Every refusal of the participant's Swift API, typed, with a stable id (`PARTICIPANT_…`) and
/// a message that says what to do next. Validation outcomes are not errors: they become
/// rejections with reason ids (`RejectReason.Participant`).
public enum ParticipantError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A party the command acts as is not hosted here with submission permission.
    case notHostedForSubmission(party: String)
    /// The command does not interpret (unknown template, failed assertion, missing authority…).
    case interpretation(ContractError)
    /// A disclosed contract comes without its creation seed, or its data is not the data its
    /// id was derived from: nobody could check it, so it is not used.
    case unauthenticatedDisclosure(contract: String)
    /// The views could not be built (e.g. VIP policy without a VIP informee).
    case views(ViewError)
    /// A participant that must receive a view has no encryption key in the topology.
    case noEncryptionKey(participant: String)
    /// The topology names no mediator for the domain yet.
    case noMediator
    /// A package does not parse or check.
    case invalidPackage(ContractError)
    /// The node stopped processing before what was awaited happened (a command's completion, a
    /// request's outcome, a narrowing's answer): ask a node restarted on the same store.
    case stopped
    /// The database holds something the participant cannot read: a bug or a manual edit.
    case inconsistentStore(String)
    /// A commitment narrowing got no answer from the counter-participant in time.
    case narrowingTimedOut(counterParticipant: String)
    /// A commitment narrowing names a participant the domain's topology does not know (or
    /// this participant itself).
    case unknownCounterParticipant(String)
    /// A read starts below the earliest offset pruning kept: that history is gone here.
    case offsetPruned(requested: Int64, earliestReadable: Int64)
    /// The ledger was pruned past the offset an active contract set was being read at (a
    /// prune deletes contracts archived up to it, some of which were active then).
    case activeContractsPruned(offset: Int64, prunedOffset: Int64)
    /// A prune names an offset that is not in the ledger (0, negative, or past its end).
    case pruneOffsetOutOfRange(offset: Int64, ledgerEnd: Int64)
    /// A prune would remove history that commitments have not confirmed yet: the offset's
    /// commit time (its verdict's sequencing time) is after the commitment safe point (nil: no
    /// period confirmed at all).
    case pruneBeyondSafePoint(offset: Int64, commitTimeMicros: Int64, safePointMicros: Int64?, safeOffset: Int64?)

    public var id: String {
        switch self {
        case .notHostedForSubmission: "PARTICIPANT_PARTY_NOT_HOSTED"
        case .interpretation: "PARTICIPANT_INTERPRETATION_FAILED"
        case .unauthenticatedDisclosure: "PARTICIPANT_UNAUTHENTICATED_DISCLOSURE"
        case .views: "PARTICIPANT_VIEWS_FAILED"
        case .noEncryptionKey: "PARTICIPANT_NO_ENCRYPTION_KEY"
        case .noMediator: "PARTICIPANT_NO_MEDIATOR"
        case .invalidPackage: "PARTICIPANT_INVALID_PACKAGE"
        case .stopped: "PARTICIPANT_STOPPED"
        case .inconsistentStore: "PARTICIPANT_INCONSISTENT_STORE"
        case .narrowingTimedOut: "PARTICIPANT_NARROWING_TIMED_OUT"
        case .unknownCounterParticipant: "PARTICIPANT_UNKNOWN_COUNTER_PARTICIPANT"
        case .offsetPruned, .activeContractsPruned: "PARTICIPANT_OFFSET_PRUNED"
        case .pruneOffsetOutOfRange: "PARTICIPANT_PRUNE_OFFSET_OUT_OF_RANGE"
        case .pruneBeyondSafePoint: "PARTICIPANT_PRUNE_BEYOND_SAFE_POINT"
        }
    }

    public var description: String {
        let text: String
        switch self {
        case .notHostedForSubmission(let party):
            text =
                "party \(party) is not hosted on this participant with submission permission; "
                + "allocate it here or submit through the participant that hosts it"
        case .interpretation(let error): text = "the command does not interpret: \(error)"
        case .unauthenticatedDisclosure(let contract):
            text =
                "disclosed contract \(contract) has no creation seed or its data does not hash to its id; "
                + "disclose it as a stakeholder's participant serves it (with its creation seed), unchanged"
        case .views(let error): text = "the transaction cannot be cut into views: \(error)"
        case .noEncryptionKey(let participant):
            text =
                "participant \(participant) must receive a view but has no encryption key in the topology; "
                + "it must register its keys (onboarding) before it can take part"
        case .noMediator:
            text = "the domain has no mediator in its topology yet; wait until the domain manager names one"
        case .invalidPackage(let error): text = "the package does not load: \(error)"
        case .stopped:
            text =
                "the participant stopped processing before the command completed or the request was decided; "
                + "restart it and ask again: the completion or outcome is then in its store"
        case .inconsistentStore(let what): text = "the participant's database is inconsistent: \(what)"
        case .narrowingTimedOut(let counter):
            text =
                "participant \(counter) did not answer the narrowing request in time; check that it is running and "
                + "connected to the domain (`weft health status`), then ask again, with a longer --timeout if its ACS is large"
        case .unknownCounterParticipant(let counter):
            text =
                "\(counter) is not another participant of this domain; name one that `weft commitments mismatches` "
                + "or `weft domain-manager members` lists"
        case .offsetPruned(let requested, let earliest):
            text =
                "the ledger was pruned: offset \(requested) is no longer readable here; read from offset \(earliest - 1) "
                + "(the earliest readable transaction is at \(earliest)), or query the active contracts for the current state"
        case .activeContractsPruned(let offset, let pruned):
            text =
                "the ledger was pruned up to offset \(pruned) while the active contracts as of offset \(offset) were read; "
                + "read them again (they are then as of a later offset)"
        case .pruneOffsetOutOfRange(let offset, let end):
            text = "cannot prune up to offset \(offset): the ledger's offsets are 1 to \(end); give one of them"
        case .pruneBeyondSafePoint(let offset, let commitTime, let safePoint, let safeOffset):
            let point = safePoint.map { "\(SequencingTimestamp(microsSinceEpoch: $0)) (\($0) µs)" } ?? "none (no period confirmed yet)"
            text =
                "offset \(offset) was committed (its verdict sequenced) at "
                + "\(SequencingTimestamp(microsSinceEpoch: commitTime)) (\(commitTime) µs), after the commitment safe point "
                + "\(point), which corresponds to offset \(safeOffset.map(String.init) ?? "none"); prune up to that offset, wait until "
                + "`weft commitments safe-point` passes \(offset), or override with --force-unsafe "
                + "(a later mismatch in the unconfirmed range can then no longer be narrowed or repaired from this node)"
        }
        return "\(id): \(text)"
    }
}
