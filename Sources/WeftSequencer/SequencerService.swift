import CoreMetrics
public import Logging
public import WeftCrypto
import WeftTopology
public import WeftTransport
public import WeftWire
import Synchronization
import WeftStore

/// `weft.v1.SequencerService`: what members call (docs/sequencer.md).
public final class SequencerServiceProvider: Weft.V1.SequencerService.Provider {
    let sequencer: Sequencer
    let topology: SequencerTopology
    let authenticator: SequencerAuthenticator
    /// Signs every delivered event; its public key is registered for the sequencers' member id.
    let signingKey: SigningPrivateKey
    let logger: Logger
    /// Whether a submission's `omit_receipt` is followed. Sequencer nodes from before it existed
    /// read such an event as one with a receipt (a receipt without its delivery row, and leaf
    /// positions off by one): while any of them shares the database, the upgraded ones must
    /// not write it (docs/operator-guide.md §5).
    let honorsOmitReceipt: Bool
    /// The domain manager's member id, whose broadcasts the request-size limit does not hold.
    let managerMember: String
    /// Open subscriptions per member, so a disabled member's are closed at once.
    private let subscriptions = Mutex<[String: [UInt64: AsyncThrowingStream<Weft.V1.SubscribeResponse, any Error>.Continuation]]>([:])
    private let nextSubscription = Atomic<UInt64>(0)
    /// What the subscriptions have written: a test sees how far a subscriber's client lets the
    /// sequencer run ahead of what it reads, and that a subscription it stops ends here too.
    let subscriptionCounts = SubscriptionCounts()

    /// The bound on work for calls without a token: `Onboard`, and catch-ups for members not known as active.
    let unauthenticatedWork: UnauthenticatedWorkLimit
    /// The most topology transactions an `Onboard` call may carry: a participant's identity is
    /// its namespace's root delegation, perhaps intermediate ones, and its key registration.
    static let onboardingTransactionsMax = 16

    public init(
        sequencer: Sequencer, topology: SequencerTopology, signingKey: SigningPrivateKey, honorsOmitReceipt: Bool = true,
        unauthenticatedWork: UnauthenticatedWorkLimit = .init(), logger: Logger
    ) {
        self.unauthenticatedWork = unauthenticatedWork
        self.sequencer = sequencer
        self.topology = topology
        self.signingKey = signingKey
        self.honorsOmitReceipt = honorsOmitReceipt
        self.logger = logger
        managerMember = MemberID(role: .domainManager, identifier: topology.domain).description
        authenticator = SequencerAuthenticator(topology: topology, unauthenticatedWork: unauthenticatedWork)
        sequencer.signBlocks(with: signingKey, domain: topology.domain.description)
    }

    /// Closes `member`'s subscriptions: it is no longer active. (Its sessions stay, but every
    /// call checks that the member is active, so they are refused with a clear reason.)
    public func cutOff(_ member: String) async {
        let open = subscriptions.withLock { $0.removeValue(forKey: member) ?? [:] }
        for continuation in open.values {
            continuation.finish(throwing: RPCError(
                .permissionDenied, "\(member) was disabled by the domain operator; ask them to re-enable it", errorID: "SEQUENCER_MEMBER_DISABLED"))
        }
    }

    public func getChallenge(_ request: Weft.V1.GetChallengeRequest, context: RPCCallContext) async throws -> Weft.V1.GetChallengeResponse {
        try await authenticator.challenge(for: request.member)
    }

    public func authenticate(_ request: Weft.V1.AuthenticateRequest, context: RPCCallContext) async throws -> Weft.V1.AuthenticateResponse {
        do {
            return try await authenticator.authenticate(request, connectionID: context.connectionID)
        } catch let error as RPCError {
            logger.warning("authentication refused", metadata: ["member": "\(request.member)", "error_id": "\(error.errorID)"])
            throw error
        }
    }

    public func send(_ request: Weft.V1.SendRequest, context: RPCCallContext) async throws -> Weft.V1.SendResponse {
        let member = try await authorized(context)
        let submission: Weft.V1.SubmissionRequest
        do {
            submission = try Weft.V1.SubmissionRequest(serializedBytes: request.submissionRequest)
        } catch {
            throw RPCError(.invalidArgument, "submission_request is not a valid SubmissionRequest: \(error)", errorID: "SEQUENCER_MALFORMED_SUBMISSION")
        }
        guard submission.sender == member else {
            logger.warning("submission in another member's name refused", metadata: ["member": "\(member)", "claimed_sender": "\(submission.sender)", "trace_id": "\(context.traceID ?? "")"])
            throw RPCError(.permissionDenied, "the token is \(member)'s but the submission names sender \(submission.sender)", errorID: "SEQUENCER_SENDER_MISMATCH")
        }
        var maximum = await topology.snapshot().domainParameters.map { Int($0.maxRequestSizeBytes) } ?? Sequencer.defaultMaximumRequestBytes
        // The domain manager's topology broadcasts are not held to the limit: a limit set too
        // low must not keep out the change that raises it.
        if member == managerMember { maximum = Int.max }
        // Topology broadcasts go to every member; nobody else may address ALL (docs/sequencer.md §5).
        let mayAddressAll = member == managerMember || member == topology.sequencerMember.description
        let outcome = try await Self.databaseErrorsAsUnavailable { try await self.sequencer.send(
            sender: member, messageID: submission.messageID, batch: submission.batch ?? .init(),
            maxSequencingTime: submission.maxSequencingTime?.microsSinceEpoch ?? (SequencerWriter.now() + 60_000_000),
            traceparent: submission.traceparent, omitReceipt: honorsOmitReceipt && submission.omitReceipt, maximumRequestBytes: maximum > 0 ? maximum : Sequencer.defaultMaximumRequestBytes,
            mayAddressAll: mayAddressAll) }
        Counter(label: "weft_sequencer_submissions_total", dimensions: [("outcome", outcome == .duplicate ? "duplicate" : "sequenced")])
            .increment()
        if outcome != .duplicate {
            Recorder(label: "weft_sequencer_submission_bytes").record(request.submissionRequest.count)
        }
        if outcome == .duplicate {
            // Info, not a warning: a sender re-sending what it is not sure was sequenced (a lost
            // reply, a participant's restart re-sending its pending responses) is how a send is
            // made idempotent, and the sender takes this answer as "sent before".
            logger.info(
                "submission refused: its message id was used before (a re-send)",
                metadata: ["member": "\(member)", "message_id": "\(submission.messageID)"])
            throw RPCError(.alreadyExists, "message id \(submission.messageID) was already used by \(member); use a fresh one per submission", errorID: "SEQUENCER_DUPLICATE_MESSAGE_ID")
        }
        // Debug level: one line per submission; its trace_id (the call's) follows a transaction here.
        logger.debug(
            "submission sequenced",
            metadata: ["member": "\(member)", "message_id": "\(submission.messageID)", "envelopes": "\(submission.batch?.envelopes.count ?? 0)"])
        return .init()
    }

    public func subscribe(
        _ request: Weft.V1.SubscribeRequest, responses: RPCMessageWriter<Weft.V1.SubscribeResponse>, context: RPCCallContext
    ) async throws {
        let session = try await authorizedSession(context)
        let member = session.member
        guard request.member == member else {
            throw RPCError(.permissionDenied, "the token is \(member)'s; it cannot read \(request.member)'s events", errorID: "SEQUENCER_SUBSCRIBER_MISMATCH")
        }
        // Counters are stored as bigint: a larger one is no counter of any stream (and converting
        // it would stop the process).
        guard let from = Int64(exactly: request.fromCounter) else {
            throw RPCError(
                .invalidArgument, "from_counter \(request.fromCounter) is beyond any event counter (at most \(Int64.max))",
                errorID: "SEQUENCER_INVALID_COUNTER")
        }
        let id = nextSubscription.add(1, ordering: .relaxed).newValue
        subscriptionCounts.update { $0.open += 1 }
        defer { subscriptionCounts.update { $0.open -= 1 } }
        let (closed, closer) = AsyncThrowingStream<Weft.V1.SubscribeResponse, any Error>.makeStream()
        subscriptions.withLock { $0[member, default: [:]][id] = closer }
        defer { _ = subscriptions.withLock { $0[member]?.removeValue(forKey: id) } }
        let deliveries = try await Self.databaseErrorsAsUnavailable { try await self.sequencer.subscribe(member, from: from) }
        let refusePruned: @Sendable (any Error) -> any Error = { error in
            guard let pruned = error as? SequencerReadError else { return error }
            return RPCError(.failedPrecondition, pruned.description, errorID: "SEQUENCER_EVENTS_PRUNED")
        }
        let domain = topology.domain.description
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Ends with an error when the member is cut off.
                for try await _ in closed {}
            }
            // A subscription lasts as long as the session it was opened in, as every other call
            // does: not past the token's expiry, nor past the revocation of the key that
            // authenticated it (a stolen key revoked must stop reading the member's events too).
            // The member authenticates again and resumes from the counter after its last event.
            group.addTask {
                try await Task.sleep(for: .microseconds(max(session.expires - SequencerWriter.now(), 0)))
                throw self.sessionEnded(
                    member, context,
                    RPCError(.unauthenticated, "the token expired; authenticate again and subscribe from the next counter", errorID: "SEQUENCER_TOKEN_EXPIRED"))
            }
            group.addTask {
                let id = try MemberID(parsing: member)
                let key = session.key
                await self.topology.waitUntil { !$0.signingKeys(of: id).contains { $0.fingerprint.description == key } }
                try Task.checkCancellation()
                throw self.sessionEnded(
                    member, context,
                    RPCError(
                        .unauthenticated,
                        "the key this subscription authenticated with (\(key)) is no longer registered for \(member); authenticate again with a registered key and subscribe from the next counter",
                        errorID: "SEQUENCER_KEY_REPLACED"))
            }
            group.addTask {
                do {
                    try await Self.databaseErrorsAsUnavailable {
                        for try await delivery in deliveries {
                            let response = Weft.V1.SubscribeResponse(signedEvent: try await self.signed(delivery, for: member, domain: domain))
                            try await self.subscriptionCounts.sending { try await responses.send(response) }
                        }
                    }
                } catch {
                    throw refusePruned(error)
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    public func acknowledge(_ request: Weft.V1.AcknowledgeRequest, context: RPCCallContext) async throws -> Weft.V1.AcknowledgeResponse {
        let member = try await authorized(context)
        guard request.member == member else {
            throw RPCError(.permissionDenied, "the token is \(member)'s; it cannot acknowledge for \(request.member)", errorID: "SEQUENCER_SUBSCRIBER_MISMATCH")
        }
        try await Self.databaseErrorsAsUnavailable {
            try await sequencer.acknowledge(member, upTo: request.timestamp?.microsSinceEpoch ?? 0)
        }
        return .init()
    }

    /// A participant that the domain operator allow-listed registers its identity (its namespace
    /// and keys, signed by itself): the sequencer checks it and broadcasts it to every member
    /// in the sequencers' name, then answers once it is in effect. Needs no token: the
    /// participant cannot authenticate before its keys are known.
    public func onboard(_ request: Weft.V1.OnboardRequest, context: RPCCallContext) async throws -> Weft.V1.OnboardResponse {
        guard request.identity.count <= Self.onboardingTransactionsMax else {
            throw RPCError(
                .invalidArgument,
                "an identity of \(request.identity.count) topology transactions; onboarding takes at most \(Self.onboardingTransactionsMax) (the namespace's delegations and the participant's keys)",
                errorID: "SEQUENCER_ONBOARDING_TOO_LARGE")
        }
        guard unauthenticatedWork.take() else {
            logger.warning(
                "onboarding call refused: calls without a token are arriving faster than this node takes them",
                metadata: ["participant": "\(request.participant.prefix(200))", "peer": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
            throw RPCError(
                .resourceExhausted,
                "this sequencer node is taking no more onboarding calls for the moment (at most \(unauthenticatedWork.burst) at once, \(unauthenticatedWork.perSecond) a second); retry in a few seconds",
                errorID: "SEQUENCER_ONBOARDING_RATE_LIMITED")
        }
        let member: MemberID
        let alreadyActive: Bool
        do {
            (member, alreadyActive) = try await topology.checkOnboarding(participant: request.participant, identity: request.identity)
        } catch let error as OnboardingError {
            logger.warning("onboarding refused", metadata: ["participant": "\(request.participant)", "reason": "\(error)"])
            switch error {
            case .notAllowListed: throw RPCError(.permissionDenied, error.description, errorID: "SEQUENCER_NOT_ALLOW_LISTED")
            default: throw RPCError(.invalidArgument, error.description, errorID: "SEQUENCER_BAD_ONBOARDING")
            }
        } catch let error as TopologyError {
            throw RPCError(.invalidArgument, "the identity does not validate: \(error)", errorID: error.id)
        }
        if !alreadyActive {
            let broadcast = Weft.V1.EnvelopeContent(message: .topologyBroadcast(.init(domain: topology.domain.description, transactions: request.identity)))
            let batch = Weft.V1.Batch(envelopes: [.init(content: try broadcast.serializedBytes(), recipients: [Sequencer.allMembers])])
            let messageID = "onboard-" + PurposeHasher.hash(.topologyTransaction, try batch.serializedBytes()).description
            let outcome = try await Self.databaseErrorsAsUnavailable {
                try await sequencer.send(
                    sender: topology.sequencerMember.description, messageID: messageID, batch: batch,
                    maxSequencingTime: SequencerWriter.now() + 60_000_000, mayAddressAll: true)
            }
            guard case .delivered = outcome else {
                if outcome != .duplicate {
                    throw RPCError(.internal, "the onboarding broadcast was not delivered: \(outcome)", errorID: "SEQUENCER_ONBOARDING_FAILED")
                }
                return .init(effectiveAt: .init(microsSinceEpoch: SequencerWriter.now()))
            }
            await topology.waitUntil(member, isActive: true)
            try Task.checkCancellation()  // the wait ends early for a call that was cancelled
            logger.info("participant onboarded", metadata: ["participant": "\(member)"])
        }
        return .init(effectiveAt: .init(microsSinceEpoch: SequencerWriter.now()))
    }

    public func getDomainInfo(_ request: Weft.V1.GetDomainInfoRequest, context: RPCCallContext) async throws -> Weft.V1.GetDomainInfoResponse {
        let snapshot = await topology.snapshot()
        return .init(
            domain: snapshot.domain.description, parameters: snapshot.domainParameters, sequencers: snapshot.sequencers.map(\.description),
            submissionsRequireSignature: false, sequencerKeys: snapshot.signingKeys(of: topology.sequencerMember).map { $0.wire() })
    }

    /// A database failure (restart, network) is UNAVAILABLE for the member: retry, here or at
    /// another sequencer; a retried send with the same message id is never sequenced twice.
    static func databaseErrorsAsUnavailable<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PostgresError {
            throw RPCError(.unavailable, "the sequencer's database is unavailable (\(error.message)); retry", errorID: "SEQUENCER_DATABASE_UNAVAILABLE")
        } catch let error as SequencerWriterError {
            throw RPCError(.unavailable, "\(error); retry", errorID: "SEQUENCER_WRITER_OFFLINE")
        } catch let error as SequencerError {
            // Callers are authenticated, so active in the topology: this node has not
            // registered the member yet (its follower behind, or registering is retried).
            throw RPCError(.unavailable, "\(error); this sequencer node registers it shortly: retry", errorID: "SEQUENCER_MEMBER_NOT_REGISTERED")
        }
    }

    private func authorized(_ context: RPCCallContext) async throws -> String {
        try await authorizedSession(context).member
    }

    private func authorizedSession(_ context: RPCCallContext) async throws -> SequencerAuthenticator.Session {
        do {
            return try await authenticator.session(of: context)
        } catch let error as RPCError {
            logger.warning("call refused", metadata: ["method": "\(context.method)", "error_id": "\(error.errorID)", "trace_id": "\(context.traceID ?? "")"])
            throw error
        }
    }

    /// `error`, logged: a subscription ended because its session did.
    private func sessionEnded(_ member: String, _ context: RPCCallContext, _ error: RPCError) -> RPCError {
        logger.info(
            "subscription ended with its session", metadata: ["member": "\(member)", "error_id": "\(error.errorID)", "trace_id": "\(context.traceID ?? "")"])
        return error
    }

    /// The member's view of a stored event: only its envelopes, with the proof that it is a leaf
    /// of a block the sequencer signed, or (stored before blocks were signed) signed on its own.
    func signed(_ delivery: StoredDelivery, for member: String, domain: String) async throws -> Weft.V1.SignedSequencedEvent {
        // A recent block of this node: the bytes its writer hashed into the leaf are at hand.
        if let place = delivery.block, let bytes = sequencer.blocks.eventBytes(place), let block = try await sequencer.blocks.block(place),
            place.leaf < block.tree.leafCount
        {
            return .init(event: bytes, counter: UInt64(delivery.counter), blockProof: block.proof(leaf: place.leaf))
        }
        let content: Weft.V1.SequencedEvent.Event
        if let error = delivery.error {
            content = EventView.deliverError(messageID: delivery.messageID, code: error.code, errorID: error.errorID, message: error.message)
        } else {
            // A sender registered by another sequencer node since this one read the members is
            // looked up again: served under another name, the event would not match its block's
            // leaf, and the member would stop trusting the stream.
            guard let sender = try await sequencer.members.member(id: delivery.sender)?.name else {
                throw RPCError(
                    .internal, "the sender (member id \(delivery.sender)) of the event at \(delivery.timestamp) is in no member table",
                    errorID: "SEQUENCER_UNKNOWN_SENDER")
            }
            // A stored batch that does not decode is an error, not an empty batch: served empty,
            // the event would not match its block's leaf (no batch Weft stores comes near the
            // decode budget: DecodeBudgetTests).
            var stored = Weft.V1.Batch()
            if let bytes = try await sequencer.reader.batch(of: delivery) {
                do {
                    stored = try Weft.V1.Batch(serializedBytes: bytes)
                } catch {
                    throw RPCError(
                        .internal, "the stored batch of the event at \(delivery.timestamp) does not decode (\(error)); report it with the sequencer's log",
                        errorID: "SEQUENCER_STORED_BATCH_UNREADABLE")
                }
            }
            content = EventView.deliver(sender: sender, messageID: delivery.messageID, batch: stored, traceparent: delivery.traceparent, recipient: member)
        }
        if let place = delivery.block {
            if let block = try await sequencer.blocks.block(place), place.leaf < block.tree.leafCount {
                let bytes = try EventView.bytes(timestamp: delivery.timestamp, body: try EventView.body(domain: domain, recipient: member, event: content))
                return .init(event: bytes, counter: UInt64(delivery.counter), blockProof: block.proof(leaf: place.leaf))
            }
            // Only a concurrent prune removes a block before its events; serve the event signed
            // on its own rather than not at all.
            logger.warning(
                "the block of a stored event is missing; signing the event on its own",
                metadata: ["sequencer_node": "\(place.node)", "block_ts": "\(place.timestamp)", "leaf": "\(place.leaf)"])
        }
        let event = Weft.V1.SequencedEvent(
            counter: UInt64(delivery.counter), timestamp: .init(microsSinceEpoch: delivery.timestamp), domain: domain, recipient: member,
            event: content)
        let bytes = try event.serializedBytes()
        let signature = try signingKey.sign(PurposeHasher.hash(.sequencedEvent, bytes))
        return .init(event: bytes, signature: signature)
    }
}

/// Counts of a provider's subscriptions, which a test can wait for: those open, the events
/// they wrote, and the sends under way (waiting for the subscriber's flow-control credit, mostly).
final class SubscriptionCounts: Sendable {
    struct Counts: Sendable {
        var open = 0
        var written = 0
        var sending = 0
    }

    private struct State {
        var counts = Counts()
        var waiters: [(until: @Sendable (Counts) -> Bool, continuation: CheckedContinuation<Counts, Never>)] = []
    }

    private let state = Mutex(State())

    func update(_ change: (inout Counts) -> Void) {
        let ready = state.withLock { state in
            change(&state.counts)
            let counts = state.counts
            var ready: [(CheckedContinuation<Counts, Never>, Counts)] = []
            state.waiters.removeAll { waiter in
                guard waiter.until(counts) else { return false }
                ready.append((waiter.continuation, counts))
                return true
            }
            return ready
        }
        for (continuation, counts) in ready { continuation.resume(returning: counts) }
    }

    /// Counts one send of a response.
    func sending(_ send: () async throws -> Void) async throws {
        update { $0.sending += 1 }
        do {
            try await send()
        } catch {
            update { $0.sending -= 1 }
            throw error
        }
        update {
            $0.sending -= 1
            $0.written += 1
        }
    }

    /// The counts once `until` holds for them.
    func wait(until: @escaping @Sendable (Counts) -> Bool) async -> Counts {
        await withCheckedContinuation { continuation in
            let now: Counts? = state.withLock { state in
                guard !until(state.counts) else { return state.counts }
                state.waiters.append((until, continuation))
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }
}
