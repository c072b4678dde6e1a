import CoreMetrics
import Foundation
public import Logging
import WeftCrypto
public import WeftSequencer
public import WeftTopology
import WeftTransport
import WeftWire

/// The I/O shell around `Mediator`: it reads the mediator's sequencer stream strictly in order
/// and feeds it — topology to `MemberTopology`, confirmation requests to `register`, signed
/// responses to `receive`, every event's time to `timeouts(now:)` — and sends the verdicts
/// through the sequencer (docs/mediator.md §8).
///
/// - Verdicts go out from the store's outbox, never straight from a decision: a verdict
///   decided before a crash is sent after the restart. Each is sent under a message id derived
///   from its request and with a max sequencing time derived from its decision, so a re-send is
///   recognised by the sequencer (ALREADY_EXISTS) until then and refused after: a verdict is
///   sequenced at most once.
/// - Sequencing time only moves with events. When the wall clock passes a pending request's
///   deadline and no event has arrived since, the driver asks the sequencer for the time by
///   sending an empty batch (a time proof): the receipt's timestamp fires the timeout.
/// - The next counter to process is stored in the transaction of the next event's effects
///   (the position before that event), or in one of its own after `positionStoreEventsMax`
///   events or `positionStoreInterval` without effects, and when the driver stops. A restart
///   resumes there and reads again what came after: an event processed twice changes nothing.
///   The driver acknowledges the stream to the sequencer up to the stored position only.
/// - Verdicts sent are marked delivered in the next transaction as well; a restart before it
///   sends them again under the same message id, which the sequencer refuses as a duplicate
///   (within the verdict's window, `verdictSubmission`).
public actor MediatorDriver {
    /// Timing and limits of the driver.
    public struct Settings: Sendable {
        /// How long a verdict's submission may be sequenced: its max sequencing time is the end of
        /// a window of this length, counted in whole windows from the decision
        /// (`verdictSubmission`). A re-send within one window is deduplicated by its message id.
        /// Default 10 min.
        public var verdictSendWindowMicros: Int64 = 600_000_000
        /// How long to wait for a time proof (or any event) before asking again. Default 1 s.
        public var timeProofRetry: Duration = .seconds(1)
        /// How often the time-proof watch looks at the next deadline at most. Default 250 ms.
        public var deadlineCheckInterval: Duration = .milliseconds(250)
        /// Acknowledge the processed stream to the sequencer at most this often. Default 1 s.
        public var acknowledgementInterval: Duration = .seconds(1)
        /// After a failed verdict send, wait this long before trying the outbox again. Default 500 ms.
        public var sendRetryDelay: Duration = .milliseconds(500)
        /// While no sequencer answers, or the domain has not admitted the mediator yet, try again
        /// this often. Default 1 s.
        public var reconnectDelay: Duration = .seconds(1)
        /// Events without effects (the receipt of the mediator's own time proof, say) move the
        /// stream position in memory only, stored with the next event's effects: a database
        /// transaction each would be most of the mediator's per-event work. The position is
        /// stored anyway once this many events have passed since it was last stored, bounding
        /// what a restart reads again. Default 256.
        public var positionStoreEventsMax = 256
        /// … or once this long has passed since it was last stored (also while the stream is
        /// idle), which also bounds how far acknowledgements lag. Default 1 s.
        public var positionStoreInterval: Duration = .seconds(1)
        public init() {}
    }

    public nonisolated let mediator: Mediator
    public nonisolated let topology: MemberTopology
    private let connection: SequencerConnection
    private let settings: Settings
    private let logger: Logger
    private let store: MediatorStore
    private let memberText: String
    /// Sequencing time of the last event processed.
    private var lastTimestamp: SequencingTimestamp?
    /// The trace of each registered request, so that its verdict continues it (until sent).
    private var requestTraces: [SequencingTimestamp: TraceContext] = [:]
    private var lastAcknowledgement = ContinuousClock.now - .seconds(3600)
    private var outboxSignal: AsyncStream<Void>.Continuation?
    private var timeProofs = 0
    private var streamLosses = 0
    private var lossWaiters: [CheckedContinuation<Void, Never>] = []
    /// Tasks waiting for the stream to be processed past a time (`processed(through:)`).
    private var progressWaiters: [(target: SequencingTimestamp, continuation: CheckedContinuation<Void, Never>)] = []
    /// The stored position as last seen, when it last moved, and the events processed since.
    private var storedPosition: MediatorStore.StreamPosition?
    private var positionStoredAt = ContinuousClock.now
    private var eventsSinceStored = 0
    /// The event being processed must have the position after it stored: it applied topology,
    /// which lives in another store and is not read twice for nothing.
    private var storePositionAfterEvent = false
    /// Verdicts to send, by request: those the store holds undelivered at start (decided before
    /// a restart), then each one decided here. Kept in memory so that sending needs no read of
    /// the store; a verdict leaves once the sequencer took it (its delivered mark is then
    /// stored with the next write) or its window passed.
    private var outbox: [SequencingTimestamp: MediatorVerdict] = [:]
    /// Whether the store's undelivered verdicts were read into `outbox` (once, at the first send).
    private var outboxLoaded = false
    /// Verdicts in `outbox` that may have reached the sequencer already: read from the store at
    /// start (a send before a crash may have been sequenced, its delivered mark lost) or sent in
    /// this process by a send that failed without an answer. Should the decision time pass before
    /// one is sent, its record says the outcome is unknown, not that it was never sent.
    private var maybeSequenced: Set<SequencingTimestamp> = []
    /// The message id of the last verdict copy this process sent per request: a deliver error
    /// for an older copy (one sent before a restart, in an earlier window) says nothing of the
    /// copy sent since. Bounded: the oldest half goes beyond `sentMessageIDsMax` entries.
    private var lastSentMessageID: [SequencingTimestamp: String] = [:]
    static let sentMessageIDsMax = 10_000
    /// Whether stopping stores what was processed and sent (false: as a crash leaves it).
    private var storesProgressAtStop = true

    public init(
        mediator: Mediator, topology: MemberTopology, connection: SequencerConnection, settings: Settings = Settings(),
        logger: Logger
    ) {
        precondition(mediator.domain == topology.domain, "the mediator and its topology are of one domain")
        self.mediator = mediator
        self.topology = topology
        self.connection = connection
        self.settings = settings
        self.logger = logger
        store = mediator.store
        memberText = mediator.member.description
    }

    /// The message id of the verdict on `request`: the same for every (re-)send.
    public nonisolated static func verdictMessageID(_ request: RequestID) -> String {
        "verdict-\(request.timestamp.microsSinceEpoch)-\(String(request.rootHash.description.prefix(16)))"
    }

    /// The sequencing time of the request a verdict's message id (`verdictSubmission`) names;
    /// nil for another message id.
    nonisolated static func request(ofVerdictMessageID messageID: String) -> SequencingTimestamp? {
        let parts = messageID.split(separator: "-")
        guard parts.count >= 3, parts[0] == "verdict", let micros = Int64(parts[1]) else { return nil }
        return SequencingTimestamp(microsSinceEpoch: micros)
    }

    /// The message id and max sequencing time of a verdict decided at `decidedAt` (µs) and sent at
    /// `now` (µs): window `k` of `window` µs counted from the decision, chosen so that at least
    /// half a window is left, and the message id of that window (`verdictMessageID`, with `-k`
    /// after the first). Both follow from stored values and the clock, so a re-send after a
    /// restart within the same window is refused by the sequencer as a duplicate.
    ///
    /// A verdict decided long ago — by a mediator catching up after a downtime, where a decision's
    /// time is its event's sequencing time — is still sent, under a later window, as long as the
    /// request's decision time allows (`verdictSubmission(_:decidedAt:now:window:decisionTime:)`).
    /// Once a window has ended, its submission can no longer be sequenced; if it was sequenced
    /// before a crash kept it from being marked delivered, the later window's copy reaches
    /// participants that already decided the request, and they ignore it.
    public nonisolated static func verdictSubmission(
        _ request: RequestID, decidedAt: Int64, now: Int64, window: Int64
    ) -> (messageID: String, maxSequencingTime: Int64) {
        let elapsed = max(0, now - decidedAt)
        let k = elapsed < window / 2 ? 0 : (elapsed + window / 2) / window
        let base = verdictMessageID(request)
        return (k == 0 ? base : "\(base)-\(k)", decidedAt + (k + 1) * window)
    }

    /// As `verdictSubmission(_:decidedAt:now:window:)`, within the request's decision time
    /// (`DomainParameters.decisionTime`): the max sequencing time is never later, since a
    /// participant whose stream passes that time without a verdict rejects the request itself
    /// and ignores a verdict sequenced after it. Nil once `now` has reached the decision time:
    /// the verdict could only be sequenced too late, and every participant rejects the request
    /// (at the first event of its stream after the decision time) whatever the verdict said.
    public nonisolated static func verdictSubmission(
        _ request: RequestID, decidedAt: Int64, now: Int64, window: Int64, decisionTime: Int64?
    ) -> (messageID: String, maxSequencingTime: Int64)? {
        let submission = verdictSubmission(request, decidedAt: decidedAt, now: now, window: window)
        guard let decisionTime else { return submission }
        guard now < decisionTime else { return nil }
        return (submission.messageID, min(submission.maxSequencingTime, decisionTime))
    }

    /// Processes the stream from where the store says it stopped, sends verdicts and time
    /// proofs, until cancelled or until the stream fails for good (then it throws).
    public func run() async throws {
        let position = try await store.streamPosition()
        lastTimestamp = position.lastTimestamp
        let (signals, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        outboxSignal = signal
        signal.yield()  // verdicts decided before a restart
        logger.info(
            "mediator node processing its sequencer stream",
            metadata: ["member": "\(memberText)", "from_counter": "\(position.nextCounter)"])
        defer { signal.finish() }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.processEvents(from: position.nextCounter) }
                group.addTask { await self.sendVerdicts(signals) }
                group.addTask { try await self.watchDeadlines() }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            await storeProgressAtStop()
            throw error
        }
        await storeProgressAtStop()
    }

    /// Stores what was processed (and sent) but not stored yet, as the driver stops: a restart
    /// then neither reads those events again nor re-sends those verdicts (both harmless).
    private func storeProgressAtStop() async {
        guard storesProgressAtStop else { return }
        do {
            // In a task of its own: the driver's is cancelled, and the database refuses to
            // start work for a cancelled task.
            let mediator = self.mediator
            try await Task { try await mediator.storeProgress() }.value
        } catch {
            logger.warning(
                "the stream position was not stored at stop; a restart reads the events since the stored one again",
                metadata: ["error": "\(error)"])
        }
    }

    /// For tests: the driver's next stop (its task cancelled) leaves the store as a crash
    /// would, the position and delivered marks kept in memory only not stored.
    @_spi(Testing) public func crashOnStop() { storesProgressAtStop = false }

    /// The stream position as stored (nil before the first store since start): acknowledgements
    /// to the sequencer never go beyond it.
    public var storedStreamPosition: MediatorStore.StreamPosition? {
        get async { await mediator.storedStreamPosition }
    }

    /// Returns once an event sequenced after `timestamp` has been processed: for tests and
    /// tools that must know the mediator saw something.
    public func processed(after timestamp: SequencingTimestamp) async {
        if let lastTimestamp, lastTimestamp > timestamp { return }
        await withCheckedContinuation { progressWaiters.append((timestamp, $0)) }
    }

    /// How many time proofs this driver sent.
    public var timeProofsSent: Int { timeProofs }

    /// Returns once the driver has lost its stream (no sequencer answered) since it started.
    public func streamLost() async {
        guard streamLosses == 0 else { return }
        await withCheckedContinuation { lossWaiters.append($0) }
    }

    // MARK: - The stream

    /// Reads the stream until cancelled. While no sequencer answers, or the domain has not
    /// admitted the mediator yet (a domain being bootstrapped by a node started at the same
    /// time), it waits and tries again, resuming after the last event processed.
    private func processEvents(from counter: UInt64) async throws {
        var next = counter
        while !Task.isCancelled {
            do {
                for try await event in connection.events(from: next) {
                    try await process(event)
                    next = event.counter + 1
                }
            } catch let error as RPCError where Self.worthWaiting(error) {
                streamLosses += 1
                let waiters = lossWaiters
                lossWaiters = []
                for waiter in waiters { waiter.resume() }
                logger.warning(
                    "cannot read the sequencer stream; retrying",
                    metadata: ["error": "\(error)", "error_id": "\(error.errorID)", "from_counter": "\(next)", "retry_in": "\(settings.reconnectDelay)"])
            }
            try? await Task.sleep(for: settings.reconnectDelay)
        }
    }

    /// Failures that time can cure: no sequencer reachable, or this member not (yet) admitted.
    static func worthWaiting(_ error: RPCError) -> Bool {
        [.unavailable, .cancelled, .deadlineExceeded].contains(error.code) || error.errorID == "SEQUENCER_MEMBER_NOT_ALLOWED"
    }

    private func process(_ event: Weft.V1.SequencedEvent) async throws {
        guard let wireTime = event.timestamp else {
            logger.error("a sequenced event without a timestamp was skipped", metadata: ["counter": "\(event.counter)"])
            return
        }
        let at = SequencingTimestamp(wireTime)
        switch event.event {
        case .deliver(let deliver)?:
            // The submission's trace (a request, or a participant's responses to one).
            try await TraceContext.withSpan(of: deliver.traceparent) { try await handle(deliver, at: at) }
        case .deliverError(let error)?:
            let level: Logger.Level = error.messageID.hasPrefix("verdict-") ? .error : .warning
            logger.log(
                level: level, "the sequencer refused a submission of this mediator",
                metadata: ["message_id": "\(error.messageID)", "error_id": "\(error.reason?.errorID ?? "")", "error": "\(error.reason?.message ?? "")"])
            // A verdict the sequencer took but delivered to nobody (sequenced after its max
            // sequencing time, a recipient disabled meanwhile…): its participants time the request
            // out instead. Unless this process has sent another copy since.
            if let request = Self.request(ofVerdictMessageID: error.messageID),
                lastSentMessageID[request].map({ $0 == error.messageID }) ?? true
            {
                let reasonID = error.reason?.errorID ?? ""
                await mediator.verdictUndelivered(request, reasonID: reasonID.isEmpty ? "SEQUENCER_REFUSED" : reasonID)
            }
        case nil:
            break
        }
        let expired = try await mediator.timeouts(now: at)
        for verdict in expired { queue(verdict) }
        for verdict in await mediator.takeLateRefusals() { queue(verdict) }
        lastTimestamp = at
        // Until the topology history has arrived, early broadcasts are only held in memory: the
        // position stays, so that a restart reads them again.
        if await topology.isInitialized {
            await mediator.advanceStream(to: MediatorStore.StreamPosition(nextCounter: event.counter + 1, lastTimestamp: at))
            await noteStoredPosition()
            eventsSinceStored += 1
            if storePositionAfterEvent || eventsSinceStored >= settings.positionStoreEventsMax
                || ContinuousClock.now - positionStoredAt >= settings.positionStoreInterval
            {
                try await mediator.storeProgress()
                // The write may have found a carried registration's uuid taken: its refusal
                // leaves now, not with whatever event comes next.
                for verdict in await mediator.takeLateRefusals() { queue(verdict) }
                await noteStoredPosition()
            }
            storePositionAfterEvent = false
            await acknowledgeIfDue()
        }
        let ready = progressWaiters.filter { $0.target < at }
        progressWaiters.removeAll { $0.target < at }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// One delivered batch: topology first, then a confirmation request (the informee message
    /// and the root hash messages of the batch), then confirmation responses.
    private func handle(_ deliver: Weft.V1.Deliver, at: SequencingTimestamp) async throws {
        var informee: Weft.V1.InformeeMessage?
        var rootHashes: [RootHashEnvelope] = []
        var responses: [Weft.V1.SignedProtocolMessage] = []
        for envelope in deliver.batch?.envelopes ?? [] {
            let content: Weft.V1.EnvelopeContent
            do {
                content = try Weft.V1.EnvelopeContent(serializedBytes: envelope.content)
            } catch {
                logger.warning(
                    "an envelope that is no EnvelopeContent was ignored",
                    metadata: ["sender": "\(deliver.sender)", "timestamp": "\(at)", "error": "\(error)"])
                continue
            }
            switch content.message {
            case .topologySnapshot?, .topologyBroadcast?:
                storePositionAfterEvent = true
                do {
                    try await topology.apply(content, sequencedAt: at, sender: deliver.sender)
                } catch is MemberTopologyError {
                    // Logged by the topology with its id; refused content changes nothing, as on every node.
                }
            case .informeeMessage(let message)?:
                if informee == nil {
                    informee = message
                } else {
                    logger.warning(
                        "a batch with a second informee message; only the first is a request",
                        metadata: ["sender": "\(deliver.sender)", "timestamp": "\(at)"])
                }
            case .rootHash(let message)?:
                rootHashes.append(
                    RootHashEnvelope(message: message, recipients: envelope.recipients.compactMap { try? MemberID(parsing: $0) }))
            case .signedMessage(let message)?:
                responses.append(message)
            case .encryptedView?, .topologyRequest?, .commitmentNarrowingRequest?, .commitmentNarrowingResponse?, nil:
                logger.debug("an envelope the mediator does not read", metadata: ["sender": "\(deliver.sender)", "timestamp": "\(at)"])
            }
        }
        if let informee {
            try await register(ConfirmationRequest(timestamp: at, informeeMessage: informee, rootHashMessages: rootHashes), from: deliver.sender)
        } else if !rootHashes.isEmpty {
            logger.debug("root hash messages without an informee message", metadata: ["sender": "\(deliver.sender)", "timestamp": "\(at)"])
        }
        if !responses.isEmpty { try await receive(responses, at: at, from: deliver.sender) }
    }

    private func register(_ request: ConfirmationRequest, from sender: String) async throws {
        if await !topology.isInitialized {
            logger.error(
                "a confirmation request arrived before the domain's topology history; it is judged against an empty topology and refused",
                metadata: ["sender": "\(sender)", "timestamp": "\(request.timestamp)"])
        }
        do {
            let outcome = try await mediator.register(request: request, snapshot: topology.snapshot(at: request.timestamp))
            switch outcome {
            case .refused(let verdict):
                queue(verdict)
            case .registered(let id, let deadline):
                Counter(label: "weft_mediator_requests_total").increment()
                requestTraces[request.timestamp] = TraceContext.current
                logger.debug("registered a request", metadata: ["request": "\(id)", "deadline": "\(deadline)"])
            case .alreadyRegistered, .alreadyDecided:
                break
            }
        } catch let error as MediatorError {
            if case .inconsistentStore = error { throw error }
            logger.warning(
                "a confirmation request was refused", metadata: ["sender": "\(sender)", "timestamp": "\(request.timestamp)", "error": "\(error)", "error_id": "\(error.id)"])
        }
    }

    /// The responses of one event, counted in one write; each one refused is logged and counts
    /// for nothing.
    private func receive(_ responses: [Weft.V1.SignedProtocolMessage], at: SequencingTimestamp, from sender: String)
        async throws
    {
        var checked: [Weft.V1.SignedProtocolMessage] = []
        for response in responses {
            do {
                let claimed = try Mediator.responder(of: response)
                guard sender == "PAR::" + claimed else {
                    throw MediatorError.senderMismatch(claimed: claimed, sequencedFrom: sender)
                }
                checked.append(response)
            } catch let error as MediatorError {
                refused(error, at: at, from: sender)
            }
        }
        guard !checked.isEmpty else { return }
        // Snapshots only for the requests pending, once each (`Mediator.receive`).
        let topology = self.topology
        for outcome in try await mediator.receive(responses: checked, at: at, snapshot: { await topology.snapshot(at: $0) }) {
            switch outcome {
            case .success(.decided(let verdict)): queue(verdict)
            case .success: break
            case .failure(let error):
                if case .inconsistentStore = error { throw error }
                refused(error, at: at, from: sender)
            }
        }
    }

    private func refused(_ error: MediatorError, at: SequencingTimestamp, from sender: String) {
        logger.warning(
            "a confirmation response was refused; it counts for nothing",
            metadata: ["sender": "\(sender)", "timestamp": "\(at)", "error": "\(error)", "error_id": "\(error.id)"])
    }

    // MARK: - Verdicts

    /// Sends what the outbox holds whenever something was decided; retries after failures.
    private func sendVerdicts(_ signals: AsyncStream<Void>) async {
        for await _ in signals {
            while !Task.isCancelled {
                do {
                    try await flushOutbox()
                    break
                } catch {
                    logger.warning("sending verdicts failed; retrying", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: settings.sendRetryDelay)
                }
            }
        }
    }

    /// A verdict decided: sent by the outbox task.
    private func queue(_ verdict: MediatorVerdict) {
        outbox[verdict.request.timestamp] = verdict
        outboxSignal?.yield()
    }

    private func flushOutbox() async throws {
        if !outboxLoaded {
            for verdict in try await store.undeliveredVerdicts() {
                if outbox[verdict.request.timestamp] == nil { outbox[verdict.request.timestamp] = verdict }
                maybeSequenced.insert(verdict.request.timestamp)
            }
            outboxLoaded = true
        }
        for timestamp in outbox.keys.sorted() {
            guard let verdict = outbox[timestamp] else { continue }
            // A participant disabled since the request is no recipient the sequencer accepts, and
            // one unknown recipient would refuse the verdict for everyone: it goes to the others.
            let now = await topology.snapshot(at: (lastTimestamp ?? verdict.decidedAt).adding(micros: 1))
            let informees = verdict.recipients.map { MemberID(role: .participant, identifier: $0) }
            let gone = informees.filter { !now.isActive($0) }
            if !gone.isEmpty {
                logger.warning(
                    "a verdict is not sent to informee participants that are no longer active",
                    metadata: ["request": "\(verdict.request)", "participants": "\(gone.map(\.description))"])
            }
            let recipients = informees.filter { now.isActive($0) }.map(\.description)
            let decidedAt = verdict.decidedAt.microsSinceEpoch
            let decisionTime = await topology.snapshot(at: verdict.request.timestamp).domainParameters?
                .decisionTime(ofRequestAt: verdict.request.timestamp.microsSinceEpoch)
            guard
                let submission = Self.verdictSubmission(
                    verdict.request, decidedAt: decidedAt, now: Self.wallClockMicros(), window: settings.verdictSendWindowMicros,
                    decisionTime: decisionTime)
            else {
                // Never sent: the participants reject the request themselves. Maybe sent before:
                // whether that copy was sequenced in time, the participants' records say.
                let reasonID =
                    maybeSequenced.contains(timestamp) ? "MEDIATOR_SEND_OUTCOME_UNKNOWN" : "MEDIATOR_DECISION_TIME_PASSED"
                logger.warning(
                    "a verdict is not sent: the request's decision time has passed, so its participants reject it themselves (PARTICIPANT_VERDICT_TIMED_OUT) and would ignore this verdict",
                    metadata: [
                        "request": "\(verdict.request)", "approved": "\(verdict.isApproved)",
                        "decision_time": "\(decisionTime ?? 0)", "reason_id": "\(reasonID)",
                    ])
                Counter(label: "weft_mediator_verdicts_total", dimensions: [("outcome", "too_late")]).increment()
                await mediator.verdictUndelivered(verdict.request.timestamp, reasonID: reasonID)
                leaveOutbox(timestamp)
                continue
            }
            let (messageID, maxSequencingTime) = submission
            if recipients.isEmpty {
                logger.warning(
                    "a verdict is not sent: none of its informee participants is active any more (MEDIATOR_NO_ACTIVE_RECIPIENTS)",
                    metadata: ["request": "\(verdict.request)"])
                await mediator.verdictUndelivered(verdict.request.timestamp, reasonID: "MEDIATOR_NO_ACTIVE_RECIPIENTS")
                leaveOutbox(timestamp)
                continue
            }
            if maxSequencingTime - decidedAt > settings.verdictSendWindowMicros {
                logger.warning(
                    "a verdict is sent more than half a window after its decision (a mediator catching up); a participant that has it already ignores this copy",
                    metadata: ["request": "\(verdict.request)", "message_id": "\(messageID)"])
            }
            // One envelope per participant: an envelope's recipient list is delivered with it,
            // and one to them all would tell each of the others, also of those it shares no view
            // with (the submitter sends its root hash messages so too).
            let content = try Weft.V1.EnvelopeContent(message: .signedMessage(verdict.message)).serializedBytes()
            var batch = Weft.V1.Batch(envelopes: recipients.map { .init(content: content, recipients: [$0]) })
            // A rejection carries the rejecting participants' reasons (up to ~10 KB): copies for
            // many participants could pass the domain's request size, which the sequencer would
            // refuse, leaving the inputs locked until the decision time. Such a verdict goes as
            // one envelope to all: delivered, though each participant then sees the others.
            // The smaller of the limit now and the newest this node knows of: the sequencer checks
            // the batch against its own newest snapshot, which may hold a lower limit already.
            let newest = await topology.snapshot(at: SequencingTimestamp(microsSinceEpoch: .max))
            let limit = [now, newest].map { $0.domainParameters.map { Int($0.maxRequestSizeBytes) } ?? Sequencer.defaultMaximumRequestBytes }
                .min()!
            if recipients.count > 1, try batch.serializedBytes().count > limit {
                logger.warning(
                    "a verdict goes as one envelope to all its participants: one copy each would pass the domain's request size",
                    metadata: ["request": "\(verdict.request)", "recipients": "\(recipients.count)", "limit": "\(limit)"])
                batch = Weft.V1.Batch(envelopes: [.init(content: content, recipients: recipients)])
            }
            // Under the request's trace (known unless the mediator restarted since it came).
            let trace = requestTraces[verdict.request.timestamp]?.childSpan()
            // Until the send returns, this verdict may be sequenced whatever the send says.
            maybeSequenced.insert(timestamp)
            noteSent(messageID, for: timestamp)
            try await TraceContext.$current.withValue(trace) {
                do {
                    // No receipt: the outbox lets go of a verdict once a sequencer accepts it.
                    try await connection.send(batch, messageID: messageID, maxSequencingTime: maxSequencingTime, omitReceipt: true)
                    Counter(
                        label: "weft_mediator_verdicts_total", dimensions: [("outcome", verdict.isApproved ? "approved" : "rejected")]
                    ).increment()
                    logger.info(
                        "sent a verdict",
                        metadata: ["request": "\(verdict.request)", "approved": "\(verdict.isApproved)", "recipients": "\(recipients.count)"])
                } catch let error as RPCError where error.errorID == "SEQUENCER_DUPLICATE_MESSAGE_ID" {
                    logger.info("a verdict was sequenced before a restart; not sent again", metadata: ["request": "\(verdict.request)"])
                }
            }
            await mediator.verdictDelivered(verdict.request.timestamp)
            leaveOutbox(timestamp)
        }
    }

    /// Remembers `messageID` as the last copy sent of the verdict on the request at `timestamp`.
    private func noteSent(_ messageID: String, for timestamp: SequencingTimestamp) {
        lastSentMessageID[timestamp] = messageID
        if lastSentMessageID.count > Self.sentMessageIDsMax {
            for old in lastSentMessageID.keys.sorted().prefix(Self.sentMessageIDsMax / 2) { lastSentMessageID[old] = nil }
        }
    }

    /// Forgets what the outbox held for the verdict on the request at `timestamp`.
    private func leaveOutbox(_ timestamp: SequencingTimestamp) {
        outbox[timestamp] = nil
        maybeSequenced.remove(timestamp)
        requestTraces[timestamp] = nil
    }

    // MARK: - Stream position

    /// Follows the stored position: the lag bounds count from its last move.
    private func noteStoredPosition() async {
        let stored = await mediator.storedStreamPosition
        guard stored != storedPosition else { return }
        storedPosition = stored
        positionStoredAt = .now
        eventsSinceStored = 0
    }

    /// Acknowledges the stream up to the stored position (at most every
    /// `acknowledgementInterval`): the sequencer may prune what is acknowledged, and a restart
    /// reads again from the stored position, so never beyond it.
    private func acknowledgeIfDue() async {
        guard let stored = storedPosition, ContinuousClock.now - lastAcknowledgement >= settings.acknowledgementInterval
        else { return }
        lastAcknowledgement = .now
        do {
            try await connection.acknowledge(upTo: .init(microsSinceEpoch: stored.lastTimestamp.microsSinceEpoch))
        } catch {
            logger.warning("acknowledging the processed stream failed; it is retried", metadata: ["error": "\(error)"])
        }
    }

    /// Stores the position (and delivered marks) when nothing carried them for
    /// `positionStoreInterval`: an idle stream's last events and verdicts sent. A store that
    /// disagrees with this mediator stops the driver, as it does when an event finds it.
    private func storeProgressIfIdle() async throws {
        guard await mediator.hasUnstoredProgress, ContinuousClock.now - positionStoredAt >= settings.positionStoreInterval
        else { return }
        do {
            try await mediator.storeProgress()
            for verdict in await mediator.takeLateRefusals() { queue(verdict) }
            await noteStoredPosition()
            positionStoredAt = .now
        } catch let error as MediatorError {
            guard case .inconsistentStore = error else {
                logger.warning("storing the stream position failed; retried", metadata: ["error": "\(error)"])
                return
            }
            throw error
        } catch {
            logger.warning("storing the stream position failed; retried", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Time proofs

    /// Watches the earliest pending deadline; once the wall clock passed it and no event has
    /// carried sequencing time past it, asks the sequencer for the time.
    private func watchDeadlines() async throws {
        while !Task.isCancelled {
            try await storeProgressIfIdle()
            var pause = settings.deadlineCheckInterval
            if let deadline = await mediator.nextDeadline, lastTimestamp.map({ $0 <= deadline }) ?? true {
                let untilDeadline = deadline.microsSinceEpoch - Self.wallClockMicros()
                if untilDeadline < 0 {
                    await sendTimeProof()
                    pause = settings.timeProofRetry
                } else {
                    pause = min(pause, .microseconds(untilDeadline + 1))
                }
            }
            try? await Task.sleep(for: pause)
        }
    }

    private func sendTimeProof() async {
        timeProofs += 1
        let messageID = "time-proof-\(Self.wallClockMicros())-\(timeProofs)"
        do {
            try await connection.send(Weft.V1.Batch(), messageID: messageID)
            logger.debug("asked the sequencer for the time", metadata: ["message_id": "\(messageID)"])
        } catch {
            logger.warning("a time proof failed; retried", metadata: ["error": "\(error)"])
        }
    }

    static func wallClockMicros() -> Int64 { Int64((Date().timeIntervalSince1970 * 1_000_000).rounded()) }
}
