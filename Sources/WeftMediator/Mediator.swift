public import Logging
import WeftContracts
public import WeftCrypto
public import WeftTopology
public import WeftWire

/// What `Mediator.register(request:snapshot:)` did.
public enum RegistrationOutcome: Sendable, Equatable {
    /// The request is registered and waits for responses until `deadline` — stored with the
    /// mediator's next write, which may still find its uuid taken by a request stored before
    /// and refuse it then (`Mediator.takeLateRefusals()`).
    case registered(RequestID, deadline: SequencingTimestamp)
    /// The request cannot be approved (see `RejectReason`): it was decided at once. Send the
    /// verdict.
    case refused(MediatorVerdict)
    /// The same request was registered before and is still pending: nothing changed.
    case alreadyRegistered(RequestID)
    /// The same request was decided before: its stored verdict, never a new one.
    case alreadyDecided(MediatorVerdict)
}

/// What `Mediator.receive(response:at:snapshot:)` did with a valid response.
public enum ResponseOutcome: Sendable, Equatable {
    /// Counted; the request still waits for other responses.
    case counted(RequestID)
    /// Counted, and it decided the request (every view approved, or a rejection). Send the
    /// verdict.
    case decided(MediatorVerdict)
    /// Every party it names was counted before for its view (for a rejection of the whole
    /// request: for every view the party confirms): nothing changed.
    case duplicate(RequestID)
    /// The request was decided before: its stored verdict, never a new one. Nothing to send.
    case alreadyDecided(MediatorVerdict)
}

/// The mediator's core (DESIGN.md §8 step 5, docs/mediator.md): registers confirmation
/// requests from their informee trees, checks responses against the topology at each
/// request's sequencing time, aggregates them per view by the confirmation policy, and
/// decides each request exactly once — approve, reject at the first rejection, or reject when
/// the participant response timeout passes — with a verdict signed by the mediator's key.
///
/// No networking and no clock: the caller feeds requests and responses in sequencer order with
/// their sequencing times and the topology snapshot at the request's time, calls
/// `timeouts(now:)` as sequencing time advances, and sends the verdicts it gets back.
///
/// Every state change is persisted (`MediatorStore`) in one database transaction before this
/// actor changes its memory or returns a verdict (but one, below), and operations run one at a time, so a
/// mediator started again on the same database (`start`) continues every pending request with
/// the responses counted so far and answers a replayed request or response with the stored
/// verdict. That transaction also carries the node's progress (`advanceStream(to:)`,
/// `verdictDelivered(_:)`), so that a node storing its stream position needs no transaction
/// of its own per event.
///
/// One change waits for the next write instead: a request registered pending, sequenced after
/// every request in the store, is carried by the next transaction (in practice, that of its
/// first responses), as the stream position is — nothing leaves the mediator on a
/// registration, and the position stored with it is past the request, so a crash before that
/// write loses only what the restart reads again. Should its uuid turn out to be taken by a
/// request stored before (a replay), that write fails as a whole, the carried requests are
/// stored one at a time (the replay refused), and the write runs again; the refusal's verdict
/// is handed out by `takeLateRefusals()`.
public actor Mediator {
    public nonisolated let domain: UniqueIdentifier
    /// This mediator's member id (`MED::…`): requests must name it.
    public nonisolated let member: MemberID
    public nonisolated let store: MediatorStore
    public nonisolated let configuration: MediatorConfiguration
    private let signingKey: SigningPrivateKey
    private let logger: Logger
    private var pending: [SequencingTimestamp: PendingRequest] = [:]
    /// Operations run one at a time: each reads memory, awaits the database and then changes
    /// memory, which the actor's reentrancy would otherwise let interleave.
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    /// The driver's progress (stream position, delivered verdicts) not stored yet: the next
    /// write of a state change carries it (`MediatorStore.Progress`).
    private var unstoredProgress = MediatorStore.Progress()
    /// The stream position as last stored by this mediator (nil: none since start). The driver
    /// acknowledges the stream to the sequencer up to here, never beyond: the sequencer may
    /// prune what is acknowledged, and a restart reads again from the stored position.
    private(set) var storedStreamPosition: MediatorStore.StreamPosition?
    /// The latest request in the store when this mediator started, or registered since: a
    /// request sequenced later was never stored, so its registration can wait for the next
    /// write. One at or before it (a replay) is stored at once, as the insert tells whether it
    /// is there.
    private var registeredUpTo: SequencingTimestamp?
    /// Refusals of carried registrations whose uuid was found taken when they were stored: the
    /// node sends them (`takeLateRefusals()`).
    private var lateRefusals: [MediatorVerdict] = []

    private init(
        store: MediatorStore, domain: UniqueIdentifier, signingKey: SigningPrivateKey,
        configuration: MediatorConfiguration, logger: Logger
    ) {
        self.store = store
        self.domain = domain
        member = store.mediator
        self.signingKey = signingKey
        self.configuration = configuration
        self.logger = logger
    }

    /// A mediator on `store`, with every request still pending there (and the responses
    /// counted for it) loaded. The store's schema must be current (`MediatorStore.migrate`).
    public static func start(
        store: MediatorStore, domain: UniqueIdentifier, signingKey: SigningPrivateKey,
        configuration: MediatorConfiguration = MediatorConfiguration(),
        logger: Logger = Logger(label: "weft.mediator")
    ) async throws -> Mediator {
        try await store.requireCurrent()
        let stored = try await store.loadPending()
        let latest = try await store.latestRequestTime()
        let mediator = Mediator(
            store: store, domain: domain, signingKey: signingKey, configuration: configuration, logger: logger)
        try await mediator.restore(stored, latestRequest: latest)
        return mediator
    }

    private func restore(_ stored: [MediatorStore.StoredPending], latestRequest: SequencingTimestamp?) throws {
        registeredUpTo = latestRequest
        for request in stored {
            let tree: InformeeTree
            do {
                let message = try Weft.V1.InformeeMessage(serializedBytes: request.informeeMessage)
                tree = try InformeeTree(message.informeeTree ?? .init(), viewCountMax: configuration.viewCountMax)
            } catch {
                throw MediatorError.inconsistentStore(
                    "pending request \(request.timestamp) has an informee message that no longer reads: \(error)")
            }
            guard tree.rootHash == request.rootHash else {
                throw MediatorError.inconsistentStore(
                    "pending request \(request.timestamp) is stored with root hash \(request.rootHash), "
                        + "but its informee tree's is \(tree.rootHash)")
            }
            var aggregation = ResponseAggregation(tree)
            for approval in request.approvals {
                try aggregation.restoreApproval(view: approval.view, party: approval.party, sender: approval.sender)
            }
            pending[request.timestamp] = PendingRequest(
                id: RequestID(timestamp: request.timestamp, rootHash: request.rootHash), tree: tree,
                deadline: request.deadline, recipients: request.recipients, aggregation: aggregation)
        }
        if !stored.isEmpty {
            logger.info("resumed pending requests", metadata: [LogKey.pendingCount: "\(stored.count)"])
        }
    }

    // MARK: - Requests

    /// Registers the confirmation request sequenced at `request.timestamp`, checked against
    /// `snapshot` (the topology at that time): its informee tree, the root hash messages
    /// (all carry the tree's root hash, and every informee participant is told), the domain and
    /// mediator it names, each view's threshold under its policy, and that every informee is
    /// hosted (every confirming party where it can confirm). A request that fails is decided
    /// at once with a mediator reject (`refused`); one with no root hash at all throws
    /// `MediatorError.malformedRequest`. Registering the same request again changes nothing.
    /// A request that passes, sequenced after every request known, is stored by the next write
    /// (see the type's documentation); the uuid check against requests stored before happens
    /// then.
    public func register(request: ConfirmationRequest, snapshot: TopologySnapshot) async throws
        -> RegistrationOutcome
    {
        await enter()
        defer { leave() }
        guard snapshot.timestamp == request.timestamp else {
            throw MediatorError.snapshotAtWrongTime(request: request.timestamp, snapshot: snapshot.timestamp)
        }
        let parsed: Result<InformeeTree, MediatorError>
        if let tree = request.informeeMessage.informeeTree {
            parsed = Result { () throws(MediatorError) in
                try InformeeTree(tree, viewCountMax: configuration.viewCountMax)
            }
        } else {
            parsed = .failure(.malformedRequest("the informee message has no informee tree"))
        }
        let rootHash: Digest32
        switch parsed {
        case .success(let tree): rootHash = tree.rootHash
        case .failure(let error):
            let claimed = Set(request.rootHashMessages.map(\.message.rootHash))
            guard claimed.count == 1, let only = claimed.first, let hash = Digest32(only) else {
                throw MediatorError.malformedRequest("\(error); and no one root hash in its root hash messages")
            }
            rootHash = hash
        }
        let id = RequestID(timestamp: request.timestamp, rootHash: rootHash)
        // Pending here, or not seen before: the store is asked only if the insert below finds
        // the request there (decided before a restart), which saves a read per request.
        if let known = try known(pending: id) { return known }

        let check = RequestCheck(domain: domain, mediator: member)
        let told = Set(
            request.rootHashMessages.flatMap(\.recipients).filter { $0.role == .participant }.map(\.identifier))
        let deadline = request.timestamp.adding(micros: responseTimeoutMicros(snapshot))
        let informeeBytes = try request.informeeMessage.serializedBytes()
        let rejection: Weft.V1.MediatorReject?
        var recipients: Set<UniqueIdentifier> = told
        var uuid: [UInt8]?
        switch parsed {
        case .failure(let error):
            rejection = Weft.V1.MediatorReject(reasonID: RejectReason.invalidMessage, message: error.description)
        case .success(let tree):
            let informeeParticipants = check.informeeParticipants(tree, snapshot: snapshot)
            uuid = tree.uuid
            if let reject = check.rejection(of: tree, rootHashMessages: request.rootHashMessages, snapshot: snapshot) {
                rejection = reject
                recipients.formUnion(informeeParticipants)
            } else {
                // Unless another request has its uuid: the insert below checks that.
                rejection = nil
                recipients = Set(informeeParticipants)
            }
        }
        let sortedRecipients = recipients.sorted { $0.description < $1.description }
        let verdict = try rejection.map { reject in
            try MediatorVerdict.signing(
                Weft.V1.Verdict(outcome: .mediatorReject(reject)), request: id, domain: domain,
                recipients: sortedRecipients, decidedAt: request.timestamp, key: signingKey)
        }
        let newRequest = MediatorStore.NewRequest(
            id: id, uuid: uuid, informeeMessage: informeeBytes, deadline: deadline, recipients: sortedRecipients,
            verdict: verdict)
        let sequencedAfterEveryRequest = registeredUpTo.map { request.timestamp > $0 } ?? true
        if sequencedAfterEveryRequest { registeredUpTo = request.timestamp }
        if case .success(let tree) = parsed, verdict == nil, sequencedAfterEveryRequest,
            !unstoredProgress.registrations.contains(where: { uuid != nil && $0.uuid == uuid })
        {
            // Carried by the next write (see the type's documentation). A uuid that a request
            // still carried has is stored below instead, which refuses it at once.
            unstoredProgress.registrations.append(newRequest)
            return registered(PendingRequest(
                id: id, tree: tree, deadline: deadline, recipients: sortedRecipients, aggregation: ResponseAggregation(tree)))
        }
        let insertion = try await writing { progress in
            try await store.insert(newRequest, progress: progress, refusal: refusal(of: newRequest))
        }
        guard case .inserted(let stored) = insertion else {
            // Registered before: decided before a restart (pending ones are loaded at start), or
            // by another process on the same tables.
            guard let known = try await known(id) else {
                throw MediatorError.inconsistentStore("request \(id) is stored but cannot be read back")
            }
            return known
        }

        if let verdict = stored {
            logger.info(
                "refused a request",
                metadata: [LogKey.request: "\(id)", LogKey.reasonID: "\(verdict.reasonID ?? "")"])
            return .refused(verdict)
        }
        guard case .success(let tree) = parsed else { preconditionFailure("an unparsed request is refused") }
        return registered(PendingRequest(
            id: id, tree: tree, deadline: deadline, recipients: sortedRecipients, aggregation: ResponseAggregation(tree)))
    }

    private func registered(_ request: PendingRequest) -> RegistrationOutcome {
        pending[request.id.timestamp] = request
        logger.debug(
            "registered a request",
            metadata: [
                LogKey.request: "\(request.id)", LogKey.viewCount: "\(request.tree.views.count)",
                LogKey.deadline: "\(request.deadline)",
            ])
        return .registered(request.id, deadline: request.deadline)
    }

    /// The verdict that refuses `request` because the request at `first` has its uuid.
    private func refusal(of request: MediatorStore.NewRequest)
        -> @Sendable (_ first: SequencingTimestamp) throws -> MediatorVerdict
    {
        let (domain, key) = (domain, signingKey)
        return { first in
            try MediatorVerdict.signing(
                Weft.V1.Verdict(
                    outcome: .mediatorReject(
                        Weft.V1.MediatorReject(
                            reasonID: RejectReason.nonUniqueRequestUUID,
                            message: "the request's uuid was used by the request at \(first)"))),
                request: request.id, domain: domain, recipients: request.recipients, decidedAt: request.id.timestamp,
                key: key)
        }
    }

    /// Stores `request`, carried by a write that found the time or uuid of one of the requests
    /// it carried taken, in a transaction of its own: a uuid taken refuses it (the verdict
    /// waits in `lateRefusals`); a time taken (by another process on the same tables) is
    /// reported as `register` would.
    private func storeOne(_ request: MediatorStore.NewRequest) async throws {
        switch try await store.insert(request, refusal: refusal(of: request)) {
        case .inserted(nil):
            break
        case .inserted(let verdict?):
            pending[request.id.timestamp] = nil
            lateRefusals.append(verdict)
            logger.info(
                "refused a request when storing it: another request has its uuid",
                metadata: [LogKey.request: "\(request.id)", LogKey.reasonID: "\(verdict.reasonID ?? "")"])
        case .existing:
            switch try await store.state(at: request.id.timestamp) {
            case .pending(let rootHash)? where rootHash == request.id.rootHash:
                // Stored by an earlier write after all: one that failed after its commit (a
                // store found inconsistent, a lost acknowledgement) and put it back. It stays.
                break
            case .decided(let verdict)? where verdict.request.rootHash == request.id.rootHash:
                // Decided before (a replay): its verdict stands and was sent then.
                pending[request.id.timestamp] = nil
            case let state:
                pending[request.id.timestamp] = nil
                throw MediatorError.inconsistentStore(
                    "request \(request.id) was carried to the store, which holds \(state.map { "\($0)" } ?? "nothing") at its time")
            }
        }
    }

    /// The refusals of requests found, when stored, to reuse a uuid (a request registered as
    /// pending that turned out to be a replay of one stored before): verdicts to send, to
    /// `verdict.recipients`. Ask after every event, as for `timeouts(now:)`.
    public func takeLateRefusals() -> [MediatorVerdict] {
        defer { lateRefusals = [] }
        return lateRefusals
    }

    /// The outcome for a request already registered at `id`'s time, in memory or in the store;
    /// throws if another request is registered there.
    private func known(_ id: RequestID) async throws -> RegistrationOutcome? {
        if let known = try known(pending: id) { return known }
        switch try await store.state(at: id.timestamp) {
        case nil: return nil
        case .pending(let rootHash)?:
            // Registered by another process on the same tables; this one never loaded it.
            throw MediatorError.inconsistentStore(
                "request \(id.timestamp) (root hash \(rootHash)) is pending in the store but not in this mediator")
        case .decided(let verdict)?:
            guard verdict.request.rootHash == id.rootHash else {
                throw MediatorError.conflictingRequest(
                    timestamp: id.timestamp, registered: verdict.request.rootHash, received: id.rootHash)
            }
            return .alreadyDecided(verdict)
        }
    }

    /// `.alreadyRegistered` if a request is pending at `id`'s time in memory (throws if another
    /// one is); nil otherwise.
    private func known(pending id: RequestID) throws(MediatorError) -> RegistrationOutcome? {
        guard let request = pending[id.timestamp] else { return nil }
        guard request.id.rootHash == id.rootHash else {
            throw .conflictingRequest(timestamp: id.timestamp, registered: request.id.rootHash, received: id.rootHash)
        }
        return .alreadyRegistered(id)
    }

    private func responseTimeoutMicros(_ snapshot: TopologySnapshot) -> Int64 {
        guard let timeout = snapshot.domainParameters?.participantResponseTimeout?.micros else {
            return configuration.defaultParticipantResponseTimeoutMicros
        }
        return max(0, timeout)
    }

    // MARK: - Responses

    /// The sequencing time of the request `response` answers: the time whose topology snapshot
    /// `receive` needs.
    public nonisolated static func requestTimestamp(of response: Weft.V1.SignedProtocolMessage)
        throws(MediatorError) -> SequencingTimestamp
    {
        try confirmationResponse(ProtocolSigning.mediatorContent(of: response)).requestTimestamp
    }

    private nonisolated static func confirmationResponse(_ content: Weft.V1.SignedContent) throws(MediatorError)
        -> (response: Weft.V1.ConfirmationResponse, requestTimestamp: SequencingTimestamp)
    {
        guard case .confirmationResponse(let response)? = content.content else {
            throw .malformedResponse("the signed content is not a confirmation response")
        }
        guard let requestID = response.requestID else { throw .malformedResponse("the response has no request id") }
        return (response, SequencingTimestamp(requestID))
    }

    /// The participant id `response` names as its sender, for checking it against the member
    /// the sequencer authenticated (`Deliver.sender`) before counting it.
    public nonisolated static func responder(of response: Weft.V1.SignedProtocolMessage) throws(MediatorError) -> String {
        try confirmationResponse(ProtocolSigning.mediatorContent(of: response)).response.sender
    }

    /// Counts the signed confirmation `response`, sequenced at `at`, checked against `snapshot`
    /// (the topology at the *request's* time): the signature with the sender's signing key,
    /// that the request and view exist, that the sender hosts every party it responds for with
    /// confirmation or submission permission (and is VIP under the VIP policy), and that `at`
    /// is not after the request's deadline. A response that fails throws `MediatorError` and
    /// counts for nothing.
    public func receive(response: Weft.V1.SignedProtocolMessage, at: SequencingTimestamp, snapshot: TopologySnapshot)
        async throws -> ResponseOutcome
    {
        try await receive(responses: [(response, snapshot)], at: at)[0].get()
    }

    /// Counts the confirmation responses of one sequenced event (in their order in its batch),
    /// each checked as `receive(response:at:snapshot:)` does against its own snapshot, and
    /// stores them in one database transaction. Returns one result per response: its outcome,
    /// or the `MediatorError` that refused it (it counts for nothing; the others count). Throws
    /// only when the store fails, and then nothing of the event is counted in memory; a store
    /// found inconsistent with memory (a request missing, or stored with another root hash) has
    /// the event's other requests written, which a restart reads again as counted.
    ///
    /// A participant sends all its responses to a request in one batch, so one transaction per
    /// event instead of one per response is what makes the decision cost one round of writes.
    public func receive(
        responses: [(message: Weft.V1.SignedProtocolMessage, snapshot: TopologySnapshot)], at: SequencingTimestamp
    ) async throws -> [Result<ResponseOutcome, MediatorError>] {
        try await receive(responses.map(\.message), at: at) { index, _ in responses[index].snapshot }
    }

    /// As `receive(responses:at:)`, with each response checked against `snapshot(at:)` of its
    /// request's time, taken only for a request pending here and once per request of the event.
    /// Anyone admitted can send a batch of responses naming request times of its choice: each
    /// snapshot may be built from the whole topology history, and each unknown request costs a
    /// store read, so neither may be paid per response.
    public func receive(
        responses: [Weft.V1.SignedProtocolMessage], at: SequencingTimestamp,
        snapshot: @Sendable (SequencingTimestamp) async -> TopologySnapshot
    ) async throws -> [Result<ResponseOutcome, MediatorError>] {
        var snapshots: [SequencingTimestamp: TopologySnapshot] = [:]
        return try await receive(responses, at: at) { _, timestamp in
            if let known = snapshots[timestamp] { return known }
            let taken = await snapshot(timestamp)
            snapshots[timestamp] = taken
            return taken
        }
    }

    private func receive(
        _ responses: [Weft.V1.SignedProtocolMessage], at: SequencingTimestamp,
        snapshotOf: (Int, SequencingTimestamp) async -> TopologySnapshot
    ) async throws -> [Result<ResponseOutcome, MediatorError>] {
        await enter()
        defer { leave() }
        var outcomes: [Result<ResponseOutcome, MediatorError>?] = Array(repeating: nil, count: responses.count)
        /// The store's word on each request time this event names that is not pending here.
        var storedStates: [SequencingTimestamp: MediatorStore.RequestState?] = [:]
        // The requests as this event leaves them: memory changes only once the write succeeded.
        var working: [SequencingTimestamp: PendingRequest] = [:]
        var decided: [SequencingTimestamp: MediatorVerdict] = [:]
        var writes: [MediatorStore.CountedResponse] = []
        /// The responses of this event per request they counted for (or found decided by an
        /// earlier one of the event): all answered with the stored verdict if the write finds
        /// the request decided already.
        var writtenBy: [SequencingTimestamp: [Int]] = [:]
        for (index, response) in responses.enumerated() {
            do {
                let content = try ProtocolSigning.mediatorContent(of: response)
                let (confirmation, timestamp) = try Self.confirmationResponse(content)
                if let verdict = decided[timestamp] {
                    // Decided by an earlier response of this event: as after a stored decision.
                    guard confirmation.rootHash == verdict.request.rootHash.bytes else {
                        throw MediatorError.wrongRootHash(request: verdict.request, received: confirmation.rootHash)
                    }
                    outcomes[index] = .success(.alreadyDecided(verdict))
                    writtenBy[timestamp, default: []].append(index)
                    continue
                }
                guard var request = working[timestamp] ?? pending[timestamp] else {
                    let state: MediatorStore.RequestState?
                    if let known = storedStates[timestamp] {
                        state = known
                    } else {
                        state = try await store.state(at: timestamp)
                        storedStates[timestamp] = .some(state)
                    }
                    outcomes[index] = .success(try Self.storedOutcome(of: confirmation, at: timestamp, state: state))
                    continue
                }
                let snapshot = await snapshotOf(index, timestamp)
                let checked = try ResponseCheck(domain: domain).check(
                    confirmation, content: content, message: response, request: request, at: at, snapshot: snapshot)
                let verdict: MediatorVerdict?
                let parties: [Party]
                switch request.aggregation.apply(checked) {
                case .duplicate:
                    outcomes[index] = .success(.duplicate(request.id))
                    continue
                case .counted(let counted):
                    parties = counted
                    verdict = nil
                case .approved(let counted):
                    parties = counted
                    verdict = try MediatorVerdict.signing(
                        Weft.V1.Verdict(outcome: .approve(Weft.V1.LocalApprove())), request: request.id, domain: domain,
                        recipients: request.recipients, decidedAt: at, key: signingKey)
                case .rejected(let counted):
                    parties = counted
                    let reject = Weft.V1.ParticipantReject(
                        participant: checked.sender.description, parties: counted.map(\.id), reject: checked.reject)
                    verdict = try MediatorVerdict.signing(
                        Weft.V1.Verdict(outcome: .participantReject(Weft.V1.ParticipantRejects(rejects: [reject]))),
                        request: request.id, domain: domain, recipients: request.recipients, decidedAt: at, key: signingKey)
                }
                working[timestamp] = request
                writes.append(.init(response: checked, parties: parties, request: request.id, decision: verdict))
                writtenBy[timestamp, default: []].append(index)
                if let verdict {
                    decided[timestamp] = verdict
                    outcomes[index] = .success(.decided(verdict))
                } else {
                    outcomes[index] = .success(.counted(request.id))
                }
            } catch let error as MediatorError {
                outcomes[index] = .failure(error)
            }
        }
        if !writes.isEmpty {
            let counted = writes
            let decidedBefore = try await writing { progress in try await store.record(counted, progress: progress) }
            for (timestamp, request) in working {
                if let stored = decidedBefore[timestamp] {
                    // Decided in the store already (never by this actor): nothing was counted.
                    pending[timestamp] = nil
                    for index in writtenBy[timestamp] ?? [] { outcomes[index] = .success(.alreadyDecided(stored)) }
                } else if let verdict = decided[timestamp] {
                    pending[timestamp] = nil
                    logDecision(verdict)
                } else {
                    pending[timestamp] = request
                }
            }
        }
        return outcomes.map { $0! }
    }

    /// A response to a request this mediator has no pending entry for: decided before (the
    /// stored verdict), or unknown.
    private static func storedOutcome(
        of confirmation: Weft.V1.ConfirmationResponse, at timestamp: SequencingTimestamp, state: MediatorStore.RequestState?
    ) throws(MediatorError) -> ResponseOutcome {
        switch state {
        case nil: throw MediatorError.unknownRequest(timestamp)
        case .pending:
            throw MediatorError.inconsistentStore("request \(timestamp) is pending in the store but not in this mediator")
        case .decided(let verdict)?:
            guard confirmation.rootHash == verdict.request.rootHash.bytes else {
                throw MediatorError.wrongRootHash(request: verdict.request, received: confirmation.rootHash)
            }
            return .alreadyDecided(verdict)
        }
    }

    /// Rejects every pending request whose deadline is before `now` (sequencing time, e.g. of
    /// the latest event the mediator received) with `MEDIATOR_SAYS_TX_TIMED_OUT`, and returns
    /// the verdicts to send, oldest request first.
    public func timeouts(now: SequencingTimestamp) async throws -> [MediatorVerdict] {
        await enter()
        defer { leave() }
        let expired = pending.values.filter { $0.deadline < now }.sorted { $0.id.timestamp < $1.id.timestamp }
        guard !expired.isEmpty else { return [] }
        var verdicts: [MediatorVerdict] = []
        for request in expired {
            let reject = Weft.V1.MediatorReject(
                reasonID: RejectReason.timedOut,
                message: "the participant response timeout passed at \(request.deadline) before every view was approved"
            )
            verdicts.append(
                try MediatorVerdict.signing(
                    Weft.V1.Verdict(outcome: .mediatorReject(reject)), request: request.id, domain: domain,
                    recipients: request.recipients, decidedAt: now, key: signingKey))
        }
        let standing = try await writing { progress in try await store.decide(verdicts, progress: progress) }
        for request in expired { pending[request.id.timestamp] = nil }
        let decided = zip(verdicts, standing).filter { $0 == $1 }.map(\.0)
        for verdict in decided { logDecision(verdict) }
        return decided
    }

    // MARK: - Queries

    /// The earliest deadline of a pending request: once sequencing time passes it, `timeouts(now:)`
    /// rejects that request. A node asks the sequencer for the time when the wall clock has.
    public var nextDeadline: SequencingTimestamp? { pending.values.map(\.deadline).min() }

    /// The requests waiting for their verdicts, oldest first.
    public var pendingRequests: [RequestID] { pending.values.map(\.id).sorted { $0.timestamp < $1.timestamp } }

    /// The stored verdict on the request at `timestamp`; nil while it is pending or unknown.
    public func verdict(at timestamp: SequencingTimestamp) async throws -> MediatorVerdict? {
        if case .decided(let verdict)? = try await store.state(at: timestamp) { return verdict }
        return nil
    }

    // MARK: - Progress of the node

    /// The node processed every event before `position` (it calls this after each event): the
    /// next write stores the position with its own change.
    func advanceStream(to position: MediatorStore.StreamPosition) {
        if let current = unstoredProgress.position, current.nextCounter >= position.nextCounter { return }
        if let stored = storedStreamPosition, stored.nextCounter >= position.nextCounter { return }
        unstoredProgress.position = position
    }

    /// The verdict on the request at `timestamp` reached the sequencer: stored with the next write.
    func verdictDelivered(_ timestamp: SequencingTimestamp) {
        unstoredProgress.delivered.append(timestamp)
    }

    /// The verdict on the request at `timestamp` did not reach its participants in time, for the
    /// reason `reasonID` names (`mediator_requests.undelivered_reason`): stored with the next
    /// write, so that it is not sent after a restart and its `approved` is not read as what
    /// decided the request.
    func verdictUndelivered(_ timestamp: SequencingTimestamp, reasonID: String) {
        unstoredProgress.undelivered.append((timestamp, reasonID))
    }

    /// Whether progress waits to be stored.
    var hasUnstoredProgress: Bool { !unstoredProgress.isEmpty }

    /// Stores the progress not stored yet (and the registrations carried) in a transaction of
    /// its own: when no state change carried it for a while, and when the node stops.
    @_spi(Testing) public func storeProgress() async throws {
        await enter()
        defer { leave() }
        try await writing { progress in try await store.store(progress) }
    }

    /// Runs a write of the store with the progress not stored yet; puts it back if the write fails.
    private func writing<T: Sendable>(_ write: (MediatorStore.Progress) async throws -> T) async throws -> T {
        let progress = unstoredProgress
        unstoredProgress = MediatorStore.Progress()
        do {
            let result = try await write(progress)
            if let position = progress.position,
                storedStreamPosition.map({ $0.nextCounter < position.nextCounter }) ?? true
            {
                storedStreamPosition = position
            }
            return result
        } catch {
            // Meanwhile the driver may have moved the position on: keep the later one.
            if unstoredProgress.position == nil { unstoredProgress.position = progress.position }
            unstoredProgress.delivered += progress.delivered
            unstoredProgress.undelivered += progress.undelivered
            // Operations run one at a time, so nothing was registered meanwhile.
            guard MediatorStore.isRegistrationTaken(error), !progress.registrations.isEmpty else {
                unstoredProgress.registrations = progress.registrations + unstoredProgress.registrations
                throw error
            }
            logger.notice(
                "a request registered without a write of its own has a time or uuid taken in the store; storing the requests carried one at a time",
                metadata: [LogKey.pendingCount: "\(progress.registrations.count)"])
            var remaining = progress.registrations[...]
            do {
                while let request = remaining.first {
                    try await storeOne(request)
                    remaining = remaining.dropFirst()
                }
            } catch {
                unstoredProgress.registrations = Array(remaining) + unstoredProgress.registrations
                throw error
            }
            return try await writing(write)
        }
    }

    // MARK: - Internals

    private func logDecision(_ verdict: MediatorVerdict) {
        logger.info(
            "decided a request",
            metadata: [
                LogKey.request: "\(verdict.request)", LogKey.approved: "\(verdict.isApproved)",
                LogKey.reasonID: "\(verdict.reasonID ?? "")",
            ])
    }

    private func enter() async {
        if busy {
            await withCheckedContinuation { waiting.append($0) }
        } else {
            busy = true
        }
    }

    private func leave() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()  // handed over: still busy
        }
    }
}

/// Metadata keys of the mediator's log lines.
enum LogKey {
    static let request = "weft.mediator.request"
    static let approved = "weft.mediator.approved"
    static let reasonID = "weft.mediator.reason_id"
    static let viewCount = "weft.mediator.view_count"
    static let deadline = "weft.mediator.deadline"
    static let pendingCount = "weft.mediator.pending_count"
}
