/// The stable ids of the mediator's own reject reasons (`weft.v1.MediatorReject.reason_id`),
/// and the participants' reasons it passes on (`weft.v1.LocalReject.reason_id`).
///
/// Ids never change once released: applications, dashboards and other implementations match
/// on them, and the human-readable message next to them is free to improve.
public enum RejectReason {
    /// No verdict was reached before the participant response timeout (a domain parameter)
    /// passed: some view still lacked approvals.
    public static let timedOut = "MEDIATOR_SAYS_TX_TIMED_OUT"
    /// The request is not one the mediator can decide: a malformed or blinded informee tree,
    /// root hash messages that disagree with it or miss an informee participant, a request
    /// for another domain or mediator, a threshold the view's policy does not allow.
    public static let invalidMessage = "MEDIATOR_INVALID_MESSAGE"
    /// An informee is hosted on no active participant, or a confirming party on none that may
    /// confirm for it (confirmation or submission permission, VIP trust under the VIP policy):
    /// the request could never be approved.
    public static let informeesNotHosted = "INFORMEES_NOT_HOSTED_ON_ACTIVE_PARTICIPANT"
    /// Another request with the same uuid was registered before at a different time: a
    /// replayed request is rejected rather than processed twice.
    public static let nonUniqueRequestUUID = "MEDIATOR_NON_UNIQUE_REQUEST_UUID"

    /// Participants' reasons (DESIGN.md §8), listed here so that every id has one spelling.
    public enum Participant {
        /// The submitter's own verdict on its command: its request was not sequenced by its max
        /// sequencing time (a send whose outcome was lost, or a crash before sending).
        public static let notSequenced = "PARTICIPANT_REQUEST_NOT_SEQUENCED"
        /// The participant's own verdict on a request it validated: no verdict came before the
        /// request's decision time (sequencing time + participant response timeout + mediator
        /// reaction timeout, domain parameters). A verdict sequenced in time precedes any later
        /// event in every participant's stream, so the participants of a request all apply it or
        /// all reject it so; a verdict sequenced later is ignored.
        public static let verdictTimedOut = "PARTICIPANT_VERDICT_TIMED_OUT"
        /// An input contract is locked by another pending request.
        public static let lockedContracts = "LOCKED_CONTRACTS"
        /// An input contract is not active (archived or never created).
        public static let inactiveContracts = "INACTIVE_CONTRACTS"
        /// A view does not re-interpret to the same actions (docs/contracts.md §14).
        public static let failedModelConformanceCheck = "FAILED_MODEL_CONFORMANCE_CHECK"
        /// The participant lacks a package the request uses.
        public static let packageNotFound = "PACKAGE_NOT_FOUND"
        /// A view does not decrypt or decode, or is not the view its envelope names.
        public static let malformedView = "MALFORMED_VIEW"
        /// The views do not lead to the root hash of the request's root hash message, or
        /// the root hash messages disagree: the participants would not validate one transaction.
        public static let rootHashMismatch = "ROOT_HASH_MISMATCH"
        /// The submitting participant's signature on the root hash is missing or does not
        /// verify with its signing key.
        public static let invalidSubmitterSignature = "INVALID_SUBMITTER_SIGNATURE"
        /// The submitting participant may not submit for the acting parties: it is not active
        /// with submission permission, or does not host them with submission permission.
        public static let submitterNotEntitled = "SUBMITTER_NOT_ENTITLED"
        /// A root action needs the authority of parties the submitter does not act as.
        public static let missingAuthorization = "MISSING_AUTHORIZATION"
        /// The ledger time is too far from the sequencing time, or the request was sequenced
        /// after its max sequencing time.
        public static let ledgerTimeOutOfBounds = "LEDGER_TIME_OUT_OF_BOUNDS"
        /// A contract the request creates exists already, or another pending request creates it.
        public static let createsExistingContracts = "CREATES_EXISTING_CONTRACTS"
    }
}
