import CoreMetrics
import Foundation
public import Logging
public import WeftContracts
public import WeftCrypto
import WeftProtocol
import WeftStore
public import WeftSequencer
public import WeftTopology
import WeftTransport
import WeftWire

/// Settings of a participant node.
public struct ParticipantConfiguration: Sendable {
    /// How long after submission a request must be sequenced, or it is void (and its command
    /// completes with the sequencer's error). Default 60 s.
    public var maxSequencingDelayMicros: Int64
    /// The deduplication period when a command names none. Default 10 minutes.
    public var defaultDeduplicationPeriodMicros: Int64
    /// How long to wait before subscribing again when no sequencer answers (the domain's
    /// only sequencer restarting). Default 250 ms.
    public var reconnectDelay: Duration
    /// Events without effects (the receipt of the participant's own time proof, say) move the
    /// stream cursor in memory only, stored with the next write: a database transaction each
    /// would be most of the participant's per-event work. The cursor is stored anyway once this
    /// many such events have passed since it was last stored, bounding what a restart reads
    /// again. Default 256.
    public var cursorStoreEventsMax: Int
    /// … or once this long has passed since it was last stored (also while the stream is idle).
    /// Default 1 s.
    public var cursorStoreInterval: Duration
    /// How long this participant seals the seeds of views for one set of recipient
    /// participants under the same session key, wrapped for each recipient once
    /// (docs/crypto.md §6.1): two public-key operations per recipient and view saved, against a
    /// leaked session key opening every view sealed under it in that time. `.zero` wraps every
    /// view's seed for each recipient, which participants of older versions than this feature
    /// need; at most `OutgoingSessionKeys.maximumLifetime` (1 h). Default 10 s.
    /// Received views are read either way.
    public var viewSessionKeyLifetime: Duration

    public init(
        maxSequencingDelayMicros: Int64 = 60_000_000, defaultDeduplicationPeriodMicros: Int64 = 600_000_000,
        reconnectDelay: Duration = .milliseconds(250), cursorStoreEventsMax: Int = 256,
        cursorStoreInterval: Duration = .seconds(1), viewSessionKeyLifetime: Duration = OutgoingSessionKeys.defaultLifetime
    ) {
        precondition(maxSequencingDelayMicros > 0 && defaultDeduplicationPeriodMicros >= 0 && reconnectDelay >= .zero)
        precondition(cursorStoreEventsMax > 0 && cursorStoreInterval >= .zero)
        precondition(viewSessionKeyLifetime >= .zero && viewSessionKeyLifetime <= OutgoingSessionKeys.maximumLifetime)
        self.viewSessionKeyLifetime = viewSessionKeyLifetime
        self.maxSequencingDelayMicros = maxSequencingDelayMicros
        self.defaultDeduplicationPeriodMicros = defaultDeduplicationPeriodMicros
        self.reconnectDelay = reconnectDelay
        self.cursorStoreEventsMax = cursorStoreEventsMax
        self.cursorStoreInterval = cursorStoreInterval
    }
}

/// A participant node (DESIGN.md §8): it submits its applications' commands as confirmation
/// requests, processes its sequencer stream strictly in order — validating every request it
/// receives views of, answering with signed confirmation responses, committing or rolling back
/// on the mediator's verdict — and answers the Ledger API's questions (completions, active
/// contracts, transactions per party, ledger end).
///
/// Each event's effects and the counter after it are written in one database transaction, so
/// after a crash the node resumes at the first event whose effects are not stored: nothing is
/// lost or applied twice. An event without effects moves the counter in memory only; the next
/// write stores it (or a store of the counter alone, after `cursorStoreEventsMax` such events,
/// `cursorStoreInterval`, or `stop()`), and a restart reads such events again, to no effect.
/// The active contract set, locks and packages are mirrored in memory (the actor is their only
/// writer), loaded from the store at start.
public actor ParticipantNode {
    public nonisolated let identity: ParticipantIdentity
    public nonisolated let domain: UniqueIdentifier
    public nonisolated let store: ParticipantStore
    /// Session keys of the views this participant sends (nil: none, every seed wrapped) and of
    /// the views it receives (docs/crypto.md §6.1).
    nonisolated let outgoingSessionKeys: OutgoingSessionKeys?
    nonisolated let incomingSessionKeys = IncomingSessionKeys()
    let topology: any ParticipantTopology
    let connection: SequencerConnection
    let configuration: ParticipantConfiguration
    let logger: Logger

    var cursor: ParticipantStore.Cursor {
        didSet { cursorMoved(to: cursor.nextCounter) }
    }
    /// The cursor as stored: behind `cursor` by events without effects, moved past in memory.
    var storedCursor: ParticipantStore.Cursor
    /// Events moved past in memory only since the cursor was stored, and when it was.
    var unstoredEvents = 0
    var cursorStoredAt = ContinuousClock.now
    /// The event being processed must store the cursor after it even if it writes nothing of
    /// its own: its effects went elsewhere (topology, commitments) or out to the network, and
    /// reading it again after a crash might not be free of effects.
    var storeCursorAfterEvent = false
    /// Writes of processed events not committed yet (ParticipantNode+WriteBehind.swift).
    var writeBehind = WriteBehind()
    var packageSources: [PackageID: Package] = [:]
    private var interpreter: Interpreter
    var active: [ContractID: (contract: ContractInstance, seed: NodeSeed?)] = [:]
    /// `approveEveryRequest()`, for tests.
    private var respondsApproveAnyway = false
    /// This participant as a sequencer member (`PAR::…`), as deliveries name their sender.
    var memberText: String { MemberID(role: .participant, identifier: identity.id).description }
    /// One submission of a command: its change id and submission id. Two submissions of one
    /// change id (a resubmission after the first's rejection) are told apart by the second, so
    /// that a completion reaches only the caller of the submission it completes.
    private struct Submission: Hashable {
        let change: ChangeID
        let submissionID: String
    }
    /// When each command in flight was submitted here: its duration metric at completion.
    private var submittedAt: [Submission: ContinuousClock.Instant] = [:]
    /// Commands in flight whose request this participant has not yet seen sequenced, by message
    /// id: a send whose outcome is unknown, or one recorded before a crash and never sent. Once
    /// the stream's time passes a request's max sequencing time without it, the sequencer can no
    /// longer sequence it, and the command is rejected — never both rejected and committed.
    private var unsequenced: [String: (key: ChangeID, maxSequencingTime: Int64)] = [:]
    /// When the wall clock passed a deadline that the stream had not (a max sequencing time of
    /// `unsequenced`, a pending request's decision time), a time proof was asked for
    /// (`askForTimePastDeadlines`): when, and for which deadline.
    private var deadlineTimeProof: (deadline: Int64, askedAt: ContinuousClock.Instant, times: Int)?
    /// When the event processor last took an event: time proofs are asked for an idle stream
    /// only (one catching up moves by itself, and each proof would add to its backlog).
    private var lastEventTakenAt: ContinuousClock.Instant = .now
    /// The decision time of each pending request (`DomainParameters.decisionTime`; `.max` without
    /// domain parameters), computed once from the topology at the request's time.
    private var decisionTimes: [SequencingTimestamp: Int64] = [:]
    /// The full message of this participant's own rejection of a pending request of its own
    /// submitter: the verdict carries a fixed text only (`LocalDecision.wire`), the completion
    /// the whole reason. Kept until the request is decided (lost at a restart: the fixed text).
    private var ownRejectionMessages: [SequencingTimestamp: String] = [:]
    var known = Set<ContractID>()
    private var locks: [ContractID: SequencingTimestamp] = [:]
    private var pendingCreates: [ContractID: SequencingTimestamp] = [:]
    var pending: [SequencingTimestamp: ParticipantStore.StoredRequest] = [:]
    /// Root hashes of requests decided here whose outcome is queued, not stored yet
    /// (`writeBehind`): pending still, for whoever waits for the outcome.
    private var decidedUnstored: [Digest32: Int] = [:]
    /// The offset of the last transaction committed to the store: what readers see.
    private var ledgerEnd: Int64
    /// The offset of the last transaction processed, committed or queued (`writeBehind`): the
    /// next transaction takes the one after.
    private var ledgerEndProcessed: Int64
    /// The offset up to which the ledger was pruned (0: never); reads below it fail typed.
    var prunedOffset: Int64
    private var waiting: [Submission: [CheckedContinuation<Completion, any Error>]] = [:]
    private var ledgerEndWaiters: [(Int64, CheckedContinuation<Void, any Error>)] = []
    /// Outcomes of the requests decided last, by root hash ("approved" or the reason id): a
    /// submitter awaiting its own gets it without a read of the store, which has them all. At
    /// most `outcomesRememberedMax`, the oldest half forgotten beyond: every request decided
    /// here adds one, also those of other participants any submitter can send here.
    private var outcomes: [Digest32: String] = [:]
    /// The keys of `outcomes`, oldest first.
    private var outcomesInOrder: [Digest32] = []
    private var outcomesRememberedMax = 10_000
    private var outcomeWaiters: [Digest32: [CheckedContinuation<String, any Error>]] = [:]
    /// Set once processing has ended for good (`stop()`, or a failure that needs a restart):
    /// waits for what only processing brings then fail at once instead of never returning.
    private(set) var processingEnded = false
    private var validatedWaiters: [Digest32: [CheckedContinuation<Void, Never>]] = [:]
    var readyWaiters: [CheckedContinuation<Void, Never>] = []
    /// Waits of `waitUntilReady(within:)`, ended by readiness, their timeout or `stop()`.
    private var timedReadyWaiters: [Int: CheckedContinuation<Bool, Never>] = [:]
    private var nextTimedReadyWaiter = 0
    /// Whether the topology has the domain's history (see `waitUntilReady`).
    var ready = false
    /// ACS commitments (ParticipantNode+Commitments.swift).
    var commitmentRuntime = CommitmentRuntime()
    private var processing: Task<Void, Never>?
    var processingStarted = false
    /// Ledger API followers (ParticipantNode+Subscriptions.swift): completions as they happen,
    /// and each move of the cursor, so readers wait on events instead of polling.
    var completionSubscribers: [UInt64: AsyncStream<CommandCompletion>.Continuation] = [:]
    var progressSubscribers: [UInt64: AsyncStream<UInt64>.Continuation] = [:]
    var nextSubscriberID: UInt64 = 0
    /// Sends in progress, cancelled by `stop()` so that a stopped node sends nothing more.
    private var sends: [Int: Task<Void, Never>] = [:]
    /// Recovery by replay (ParticipantNode+Replay.swift).
    var recovery = RecoveryState()
    /// The period end of the repair snapshots imported so far (ParticipantNode+Repair.swift).
    var repairedAt: Int64?
    private var nextSend = 0
    private var sendsStopped = false
    /// How many more `begin`s (recording a command) answer with an error after they stored
    /// it (`loseNextRecordingAnswer`).
    private var beginAnswersLost = 0
    /// Confirmation responses are dropped instead of sent (`dropResponsesFromNowOn`).
    private var responsesDropped = false
    /// ACS commitments are not sent (`dropCommitmentSendsFromNowOn`).
    var commitmentSendsDropped = false

    /// Runs `body` (a send) in a task of its own that `stop()` cancels.
    func background(_ body: @escaping @Sendable () async -> Void) {
        guard !sendsStopped else { return }  // a stopped node sends nothing (a write committed at stop may ask)
        let number = nextSend
        nextSend += 1
        sends[number] = Task {
            await body()
            self.sendDone(number)
        }
    }

    private func sendDone(_ number: Int) { sends[number] = nil }

    private init(
        identity: ParticipantIdentity, domain: UniqueIdentifier, store: ParticipantStore,
        topology: any ParticipantTopology,
        connection: SequencerConnection, configuration: ParticipantConfiguration, logger: Logger,
        loaded: ParticipantStore.Loaded, packages: [Package]
    ) {
        self.identity = identity
        self.domain = domain
        self.store = store
        self.topology = topology
        self.connection = connection
        self.configuration = configuration
        outgoingSessionKeys =
            configuration.viewSessionKeyLifetime > .zero ? OutgoingSessionKeys(lifetime: configuration.viewSessionKeyLifetime) : nil
        self.logger = logger
        cursor = loaded.cursor
        storedCursor = loaded.cursor
        for package in packages { packageSources[package.id] = package }
        interpreter = Interpreter(packages: packages)
        for (id, contract, seed) in loaded.active { active[id] = (contract, seed) }
        known = loaded.known
        for request in loaded.pending {
            pending[request.timestamp] = request
            for id in request.locked { locks[id] = request.timestamp }
            for id in request.creates { pendingCreates[id] = request.timestamp }
        }
        ledgerEnd = loaded.ledgerEnd
        ledgerEndProcessed = loaded.ledgerEnd
        prunedOffset = loaded.prunedOffset
        domainHistory = DomainHistory(current: domain.description, migrations: [])
    }

    /// Loads the participant's state from `store` (migrated before) and starts processing its
    /// sequencer stream from the first event not processed yet; re-sends the responses of
    /// pending requests (whether they reached the sequencer before the stop is not recorded),
    /// and the requests of commands in flight that it has not seen sequenced.
    ///
    /// With `processing: false` the stream is not read until `beginProcessing()`: a follower
    /// (the Ledger API's completion log) subscribes first and misses no completion — one a
    /// replay from counter 0 decides at once, say.
    public static func start(
        identity: ParticipantIdentity, domain: UniqueIdentifier, store: ParticipantStore,
        topology: any ParticipantTopology, connection: SequencerConnection,
        configuration: ParticipantConfiguration = ParticipantConfiguration(),
        logger: Logger = Logger(label: "weft.participant"), processing: Bool = true
    ) async throws -> ParticipantNode {
        var logger = logger
        logger[metadataKey: LogKey.participant] = "\(identity.id)"
        let loaded = try await store.load()
        var packages: [Package] = []
        for source in loaded.packages {
            do throws(ContractError) {
                packages.append(try Package(source: source, file: "stored package"))
            } catch {
                throw ParticipantError.inconsistentStore("a stored package does not load: \(error)")
            }
        }
        let unsequenced = try await store.unsequencedCommands()
        let history = DomainHistory(current: domain.description, migrations: try await store.domainMigrations())
        let node = ParticipantNode(
            identity: identity, domain: domain, store: store, topology: topology, connection: connection,
            configuration: configuration, logger: logger, loaded: loaded, packages: packages)
        await node.setDomainHistory(history)
        await node.awaitSequencing(unsequenced)
        await node.resend(unsequenced)
        try await node.startCommitments()
        await node.resume(ready: await topology.isInitialized)
        if processing { await node.beginProcessing() }
        return node
    }

    private func resume(ready: Bool) async {
        self.ready = ready
        logger.info(
            "participant starting",
            metadata: [
                LogKey.counter: "\(cursor.nextCounter)", LogKey.activeContracts: "\(active.count)",
                LogKey.pendingCount: "\(pending.count)",
            ])
        // Their responses may or may not have reached the sequencer before the stop. Sent again,
        // they are refused as a duplicate message id (the sequencer remembers it until the
        // response deadline, the send's max sequencing time), or counted for nothing by the
        // mediator; past the deadline they are not sent.
        var pastDeadline = 0
        for request in pending.values.sorted(by: { $0.timestamp < $1.timestamp }) where !request.responses.isEmpty {
            let snapshot = await topology.snapshot(at: request.timestamp)
            if responseDeadlinePassed(request.timestamp, snapshot) {
                pastDeadline += 1
            } else {
                sendResponses(request, deadline: responseDeadline(request.timestamp, snapshot))
            }
        }
        if pastDeadline > 0 {
            logger.info(
                "pending requests past their participant response timeout: their responses are not sent again; the mediator decides them (by timeout, unless it counted them before the stop)",
                metadata: [LogKey.pendingCount: "\(pastDeadline)"])
        }
        beginReplayIfFresh()
    }

    /// Starts reading the sequencer stream (once; `start` does it unless told not to).
    public func beginProcessing() {
        guard processing == nil, !processingStarted else { return }
        processingStarted = true
        let (connection, delay, logger) = (self.connection, configuration.reconnectDelay, self.logger)
        processing = Task { [weak self] in
            // While no sequencer answers (the only one restarting), wait and subscribe again
            // from the first event not processed: pending requests and commands in flight stay
            // as they are and complete once the stream is back. Anything else — a database
            // failure, an event out of order — stops processing (a restart resumes).
            // Waits grow from `delay` to 5 s while no sequencer answers (the stream ends at once
            // then), and the warning is logged at the first failure and every 20th after.
            var failuresInARow = 0
            while !Task.isCancelled {
                guard let from = await self?.cursor.nextCounter else { return }
                do {
                    for try await event in connection.events(from: from) {
                        guard let self else { return }
                        try await self.process(event)
                        failuresInARow = 0
                    }
                    return
                } catch is CancellationError {
                    return
                } catch let error as RPCError where Self.worthWaiting(error) {
                    failuresInARow += 1
                    let wait = min(delay * (1 << min(failuresInARow - 1, 5)), max(delay, .seconds(5)))
                    logger.log(
                        level: failuresInARow == 1 || failuresInARow % 20 == 0 ? .warning : .debug,
                        "cannot read the sequencer stream; subscribing again",
                        metadata: [
                            "error": "\(error)", LogKey.counter: "\(from)", "retry_in": "\(wait)", "failures_in_a_row": "\(failuresInARow)",
                        ])
                    try? await Task.sleep(for: wait)
                } catch {
                    await self?.failed(error)
                    return
                }
            }
        }
    }

    /// Failures of the stream that time cures: no sequencer reachable at the moment.
    static func worthWaiting(_ error: RPCError) -> Bool {
        [.unavailable, .cancelled, .deadlineExceeded].contains(error.code)
    }

    /// Processing ends for good after `error` (a failed write of the event processor).
    func endProcessing(_ error: any Error) {
        processing?.cancel()
        processing = nil
        failed(error)
    }

    private func failed(_ error: any Error) {
        // Ended already (by this failure), or a stop is under way and the error is its doing.
        guard !processingEnded, !writeBehind.closed else { return }
        let error = recoveryFailed(error)
        if let error = error as? ParticipantRecoveryError {
            logger.error(
                "the participant cannot process its sequencer stream from where it is",
                metadata: ["error_id": "\(error.id)", "error": "\(error)", LogKey.counter: "\(cursor.nextCounter)"])
        } else {
            logger.error(
                "the participant stopped processing its sequencer stream; restart it to resume from the last stored counter",
                metadata: ["error": "\(error)", LogKey.counter: "\(cursor.nextCounter)"])
        }
        failWaiters(ParticipantError.stopped)
    }

    /// Stops processing events and closes the sequencer connection. Commands still in flight
    /// fail with `stopped`; their completions arrive in the store after a restart.
    public func stop() async {
        await stop(storingCursor: true)
    }

    /// Confirmation responses are dropped from now on instead of sent, as if the process died
    /// each time between storing a request and its responses reaching the sequencer: for the
    /// test of what a restart sends again.
    @_spi(Testing) public func dropResponsesFromNowOn() {
        responsesDropped = true
    }

    /// The next command recorded is answered with a lost connection after it is stored, as a
    /// connection lost between the commit and its answer leaves it: for the test
    /// that such a command is sent all the same.
    @_spi(Testing) public func loseNextRecordingAnswer() {
        beginAnswersLost += 1
    }

    /// ACS commitments are recorded but not sent from now on, as if the process died each time
    /// between recording a period and its commitments reaching the sequencer: for the test of
    /// what a restart sends again.
    @_spi(Testing) public func dropCommitmentSendsFromNowOn() {
        commitmentSendsDropped = true
    }

    /// Stops as a crash would leave the store: the cursor moved in memory only is not stored.
    /// For tests of what a restart reads again.
    @_spi(Testing) public func crash() async {
        await stop(storingCursor: false)
    }

    private func stop(storingCursor: Bool) async {
        processing?.cancel()
        processing = nil
        stopCommitments()
        sendsStopped = true
        for task in sends.values { task.cancel() }
        sends = [:]
        await connection.close()
        // The writes queued and what was moved past in memory only; a crash would read it
        // again. In a task of its own: the caller's may be cancelled (a service shutting down),
        // and the database refuses to start work for a cancelled task.
        await Task { await self.closeWrites(flushing: storingCursor) }.value
        _ = recoveryFailed(ParticipantError.stopped)
        failWaiters(ParticipantError.stopped)
        for id in timedReadyWaiters.keys { endTimedReadyWait(id, ready: false) }
    }

    /// Processing has ended for good: nothing the waiters wait for can happen on this node.
    private func failWaiters(_ error: ParticipantError) {
        processingEnded = true
        for continuations in waiting.values {
            for continuation in continuations { continuation.resume(throwing: error) }
        }
        waiting = [:]
        for continuations in outcomeWaiters.values {
            for continuation in continuations { continuation.resume(throwing: error) }
        }
        outcomeWaiters = [:]
        for (_, continuation) in ledgerEndWaiters { continuation.resume(throwing: error) }
        ledgerEndWaiters = []
        // Followers (the Ledger API's streams) are told that nothing more will come, instead
        // of waiting on a node that no longer moves.
        for subscriber in completionSubscribers.values { subscriber.finish() }
        completionSubscribers = [:]
        for subscriber in progressSubscribers.values { subscriber.finish() }
        progressSubscribers = [:]
    }

    // MARK: - Packages and parties

    /// Uploads a package (docs/contracts.md): stored, then usable for submission and validation.
    @discardableResult
    public func upload(packageSource source: String, file: String = "package.weft") async throws -> PackageID {
        let package: Package
        do throws(ContractError) {
            package = try Package(source: source, file: file)
        } catch {
            throw ParticipantError.invalidPackage(error)
        }
        try await store.store(package: package, source: source)
        packageSources[package.id] = package
        interpreter = Interpreter(packages: Array(packageSources.values))
        packagesChanged()
        logger.info(
            "package uploaded", metadata: [LogKey.package: "\(package.id)", LogKey.packageName: "\(package.name)"])
        return package.id
    }

    /// The packages this participant can validate.
    public var packages: [PackageID] { packageSources.keys.sorted() }

    /// How many packages are uploaded here: packages are only ever added, so a reader that
    /// holds as many knows them all (the Ledger API's package cache asks per stream page).
    public var packageCount: Int { packageSources.count }

    /// Returns once the participant has its domain's topology (the sequencers send it the
    /// history as its first event): before, it knows no party and cannot submit or validate.
    public func waitUntilReady() async {
        if ready { return }
        await withCheckedContinuation { readyWaiters.append($0) }
    }

    /// Which domain each part of the ledger was committed on (domain migrations).
    public private(set) var domainHistory: DomainHistory

    private func setDomainHistory(_ history: DomainHistory) { domainHistory = history }

    /// `waitUntilReady()` for at most `timeout`: whether the participant is ready (false too
    /// when the node stops first).
    public func waitUntilReady(within timeout: Duration) async -> Bool {
        if ready { return true }
        let id = nextTimedReadyWaiter
        nextTimedReadyWaiter += 1
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.endTimedReadyWait(id, ready: false)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { timedReadyWaiters[id] = $0 }
    }

    private func endTimedReadyWait(_ id: Int, ready: Bool) {
        timedReadyWaiters.removeValue(forKey: id)?.resume(returning: ready)
    }

    /// The topology has the domain's history: submissions and validation can begin.
    func becomeReady() {
        ready = true
        for continuation in readyWaiters { continuation.resume() }
        readyWaiters = []
        for id in timedReadyWaiters.keys { endTimedReadyWait(id, ready: true) }
    }

    /// The parties this participant hosts now (from topology at its last processed event).
    public func hostedParties() async -> [PartyHosting] {
        await topology.snapshot(at: now).hostedParties(on: identity.id)
    }

    /// The sequencing time the participant has processed up to, plus one microsecond: the
    /// topology time it reads "now" at.
    var now: SequencingTimestamp {
        (cursor.lastTimestamp ?? SequencingTimestamp(microsSinceEpoch: wallClockMicros())).adding(micros: 1)
    }

    // MARK: - Ledger API

    /// The offset of the last transaction in this participant's ledger (0 when empty).
    public var ledgerEndOffset: Int64 { ledgerEnd }

    /// The next sequencer counter this participant will process.
    public var nextCounter: UInt64 { cursor.nextCounter }

    /// Returns once the ledger has reached `offset`: how a reader awaits a transaction instead
    /// of polling. Throws `ParticipantError.stopped` once this node has stopped processing its
    /// stream (a stop, or a failure that needs a restart): its ledger will not move any more.
    public func waitForLedgerEnd(_ offset: Int64) async throws {
        if ledgerEnd >= offset { return }
        if processingEnded { throw ParticipantError.stopped }
        try await withCheckedThrowingContinuation { continuation in ledgerEndWaiters.append((offset, continuation)) }
    }

    /// The outcome of the request with root hash `rootHash` here, once this participant has
    /// processed its verdict: "approved", or the reject reason id. Waits for it; only for
    /// requests this participant received views of. Throws `ParticipantError.stopped` when
    /// this node stopped processing before the outcome was stored: another node on the same
    /// store (a restart) may decide it, but this one never will, so it does not wait.
    ///
    /// Requests with one root hash are one transaction sent more than once (a replay by another
    /// member): an approval of any of them is the outcome; a rejection is the outcome only once
    /// none of them is pending here any more.
    public func outcome(ofRequest rootHash: Digest32) async throws -> String {
        if outcomes[rootHash] == "approved" { return "approved" }
        // The store has a verdict as soon as its transaction commits, before `apply` resumes
        // and updates the contracts in memory: while the request is still pending here, wait
        // for `apply`, so that a caller who then submits with the contracts it created finds
        // them (weft-bench's IOU transfers did not, now and then).
        // A request pending here is waited for without reading the store (whose look-up by root
        // hash prefers an approval, also one decided before a restart).
        if !isPending(rootHash), let stored = try await store.outcome(ofRequest: rootHash), !isPending(rootHash) {
            return stored
        }
        if let outcome = outcomes[rootHash], outcome == "approved" || !isPending(rootHash) { return outcome }
        if processingEnded { throw ParticipantError.stopped }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                outcomeWaiters[rootHash, default: []].append(continuation)
            }
        } onCancel: {
            Task { await self.cancelOutcomeWait(rootHash) }
        }
    }

    private func rememberOutcome(_ outcome: String, of rootHash: Digest32) {
        if outcomes.updateValue(outcome, forKey: rootHash) == nil { outcomesInOrder.append(rootHash) }
        guard outcomes.count > outcomesRememberedMax else { return }
        let forgotten = outcomesInOrder.prefix(Swift.max(1, outcomesRememberedMax / 2))
        for rootHash in forgotten { outcomes[rootHash] = nil }
        outcomesInOrder.removeFirst(forgotten.count)
    }

    /// How many outcomes are remembered in memory, and the most kept: for tests.
    @_spi(Testing)
    public var rememberedOutcomeCount: Int { outcomes.count }

    @_spi(Testing)
    public func rememberOutcomes(atMost count: Int) { outcomesRememberedMax = count }

    private func isPending(_ rootHash: Digest32) -> Bool {
        decidedUnstored[rootHash] != nil || pending.values.contains { $0.rootHash == rootHash }
    }

    private func cancelOutcomeWait(_ rootHash: Digest32) {
        for continuation in outcomeWaiters.removeValue(forKey: rootHash) ?? [] {
            continuation.resume(throwing: CancellationError())
        }
    }

    /// Returns once a request with root hash `rootHash` is validated and pending here: for
    /// tests that act between validation and verdict.
    @_spi(Testing)
    public func awaitPending(_ rootHash: Digest32) async {
        // Stored, too: a caller reads the request's views from the store.
        if pending.values.contains(where: { $0.rootHash == rootHash }) {
            try? await drainWrites()
            return
        }
        await withCheckedContinuation { continuation in validatedWaiters[rootHash, default: []].append(continuation) }
    }

    /// The views of the request with root hash `rootHash` this participant decrypted, as it
    /// stored them (nil when it validated no such request): what a test compares with the
    /// views whose informees it hosts.
    @_spi(Testing)
    public func decryptedViews(ofRequest rootHash: Digest32) async throws -> [View]? {
        guard let trees = try await store.views(ofRequest: rootHash) else { return nil }
        return try trees.map { try ReceivedView(try Weft.V1.ViewTree(serializedBytes: $0)).view }
    }

    /// The contracts locked by pending requests, with the request holding each.
    @_spi(Testing)
    public var lockedContracts: [ContractID: SequencingTimestamp] { locks }

    /// The active contracts `party` is a stakeholder of.
    public func activeContracts(of party: Party) async throws -> [ActiveContract] {
        try await store.activeContracts(of: party)
    }

    /// `party`'s transactions after `offset` (its projection: the contracts created and
    /// archived that it is a stakeholder of), up to `upTo`, at most `limit` of them, in order: a
    /// stream reads them page by page rather than hold a long ledger in memory at once.
    public func transactions(of party: Party, after offset: Int64 = 0, upTo: Int64 = .max, limit: Int = .max) async throws
        -> [LedgerTransaction]
    {
        try requireReadable(after: offset)
        return try await store.transactions(of: party, after: offset, upTo: upTo, limit: limit)
    }

    /// The transaction trees committed after `offset` up to `upTo`, at most `limit` of them:
    /// every create and exercise a hosted party witnesses (read them for some parties with
    /// `LedgerTree.project`).
    public func transactionTrees(after offset: Int64, upTo: Int64, limit: Int = 500) async throws
        -> [LedgerTransactionTree]
    {
        try requireReadable(after: offset)
        return try await store.trees(after: offset, upTo: upTo, limit: limit)
    }

    /// What is stored for a command acting as some parties: in flight or its completion.
    public func command(_ key: ChangeID) async throws -> CommandRecord? {
        try await store.command(key)
    }

    /// What is stored for `command` acting as `actAs`.
    public func command(_ command: CommandKey, actAs: [Party]) async throws -> CommandRecord? {
        try await store.command(ChangeID(command, actAs: actAs))
    }

    // MARK: - Submission

    /// Interprets `commands` as `actAs`, builds and encrypts the views and signs the root hash:
    /// the request `submit(_:)` sends. Throws when a party is not hosted here with submission
    /// permission or the commands do not interpret.
    ///
    /// `disclosedContracts` are contracts none of this participant's parties is a stakeholder
    /// of that the commands use (explicit disclosure, as in Canton): a seller settling a
    /// delivery-versus-payment fetches the buyer's cash, which only the buyer's and the bank's
    /// participants store; the buyer's application hands it over, as its participant serves it.
    /// Each must carry its creation seed and authenticate with it, so every validator can check
    /// the data; whether it is active is checked by its stakeholders' participants, as for any
    /// input (a disclosed contract archived meanwhile is rejected `INACTIVE_CONTRACTS` there).
    public func prepare(
        _ commands: [Command], actAs: [Party], command: CommandKey,
        deduplicationPeriodMicros: Int64? = nil, disclosedContracts: [ActiveContract] = []
    ) async throws -> PreparedSubmission {
        try await awaitReplayEnd()
        // The parties are the command's authority and part of its deduplication key.
        guard !actAs.isEmpty else { throw ParticipantError.interpretation(.invalidCommand("a command acts as at least one party")) }
        let snapshot = await topology.snapshot(at: now)
        for party in actAs {
            let hostings = (try? UniqueIdentifier(parsing: party.id)).map { snapshot.hostingParticipants(of: $0) } ?? []
            guard hostings.contains(where: { $0.participant == identity.id && $0.permission == .submission }) else {
                throw ParticipantError.notHostedForSubmission(party: party.id)
            }
        }
        var disclosed: [ContractID: (contract: ContractInstance, seed: NodeSeed)] = [:]
        for contract in disclosedContracts {
            guard let seed = contract.creationSeed, contract.id.authenticates(contract.contract, seed: seed) else {
                logger.warning(
                    "a disclosed contract does not authenticate with its creation seed; the command is refused",
                    metadata: [LogKey.command: "\(command)", LogKey.contract: "\(contract.id)"])
                throw ParticipantError.unauthenticatedDisclosure(contract: contract.id.description)
            }
            disclosed[contract.id] = (contract.contract, seed)
        }
        return try prepareUnchecked(
            commands, actAs: actAs, command: command, snapshot: snapshot,
            deduplicationPeriodMicros: deduplicationPeriodMicros, disclosed: disclosed)
    }

    /// `prepare` without the local hosting check, interpreting as `actAs` but claiming
    /// `claimedActAs` in the submitter metadata: for tests that play a malicious submitter
    /// (acting for parties it does not host, or without their authority, or reusing the
    /// transaction seed `seed` of another submission, so that its creates get the same ids).
    @_spi(Testing)
    public func prepareUnchecked(
        _ commands: [Command], actAs: [Party], claimedActAs: [Party]? = nil, command: CommandKey, seed: [UInt8]? = nil
    ) async throws -> PreparedSubmission {
        try prepareUnchecked(
            commands, actAs: actAs, claimedActAs: claimedActAs, command: command,
            snapshot: await topology.snapshot(at: now), deduplicationPeriodMicros: nil, seed: seed)
    }

    /// `prepareUnchecked` with the interpreted transaction rewritten by `forge` before it is
    /// cut into views: for tests that play a submitter sending a transaction no interpreter
    /// would produce (a create without its signatories' authority, deep in a choice's body).
    @_spi(Testing)
    public func prepareForged(
        _ commands: [Command], actAs: [Party], command: CommandKey,
        forge: @escaping @Sendable (Transaction) throws -> Transaction
    ) async throws -> PreparedSubmission {
        try prepareUnchecked(
            commands, actAs: actAs, command: command, snapshot: await topology.snapshot(at: now),
            deduplicationPeriodMicros: nil, forge: forge)
    }

    /// For tests that play a confirmer approving what it should reject: from now on this node's
    /// confirmation responses approve every request, whatever its checks found.
    @_spi(Testing)
    public func approveEveryRequest() { respondsApproveAnyway = true }

    private func prepareUnchecked(
        _ commands: [Command], actAs: [Party], claimedActAs: [Party]? = nil, command: CommandKey,
        snapshot: TopologySnapshot, deduplicationPeriodMicros: Int64?,
        disclosed: [ContractID: (contract: ContractInstance, seed: NodeSeed)] = [:], seed chosenSeed: [UInt8]? = nil,
        forge: ((Transaction) throws -> Transaction)? = nil
    ) throws -> PreparedSubmission {
        guard let mediator = snapshot.mediators.first else { throw ParticipantError.noMediator }
        let seedBytes = try chosenSeed ?? Self.randomBytes(32)
        let seed = TransactionSeed(seedBytes)!
        var transaction: Transaction
        do throws(ContractError) {
            transaction = try interpreter.submit(
                commands, actAs: actAs, seed: seed, contracts: ActiveLookup(active: active, readers: Set(actAs), disclosed: disclosed))
        } catch {
            throw ParticipantError.interpretation(error)
        }
        if let forge { transaction = try forge(transaction) }
        let uuid = try Self.randomBytes(16)
        let submissionID = hexText(uuid)
        let time = wallClockMicros()
        let maxSequencingTime = time + configuration.maxSequencingDelayMicros
        let deduplication = deduplicationPeriodMicros ?? configuration.defaultDeduplicationPeriodMicros
        let metadata = TransactionMetadata(
            submitter: SubmitterMetadata(
                actAs: claimedActAs ?? actAs, submittingParticipant: identity.id.description,
                commandID: command.commandID,
                applicationID: command.applicationID, submissionID: submissionID, maxSequencingTime: maxSequencingTime,
                deduplicationPeriod: deduplication),
            common: CommonMetadata(domain: domain.description, mediator: mediator.description, uuid: uuid),
            participant: ParticipantMetadata(ledgerTime: time, submissionTime: time))
        let views: TransactionViews
        do throws(ViewError) {
            views = try TransactionViews(
                transaction, seed: seed, metadata: metadata, packages: Array(packageSources.values))
        } catch {
            throw ParticipantError.views(error)
        }
        let batch = try RequestBuilder(identity: identity, snapshot: snapshot, domain: domain, sessions: outgoingSessionKeys)
            .batch(views, mediator: mediator)
        return PreparedSubmission(
            change: ChangeID(command, actAs: claimedActAs ?? actAs), submissionID: submissionID, messageID: "request-\(submissionID)", views: views,
            batch: batch, maxSequencingTime: maxSequencingTime, deduplicationPeriodMicros: deduplication)
    }

    /// Interprets and submits `commands`, and returns the completion: success with the
    /// transaction id, the rejection's reason, or `duplicate` when the same command id was
    /// submitted within its deduplication period (then nothing is sent).
    public func submit(
        _ commands: [Command], actAs: [Party], command: CommandKey, deduplicationPeriodMicros: Int64? = nil,
        disclosedContracts: [ActiveContract] = []
    ) async throws -> Completion {
        try await awaitReplayEnd()
        if let previous = try await duplicate(ChangeID(command, actAs: actAs)) { return previous }
        let prepared = try await prepare(
            commands, actAs: actAs, command: command, deduplicationPeriodMicros: deduplicationPeriodMicros,
            disclosedContracts: disclosedContracts)
        return try await submit(prepared)
    }

    /// Sends a prepared request and returns its completion (see `submit(_:actAs:command:)`).
    public func submit(_ prepared: PreparedSubmission) async throws -> Completion {
        try await awaitReplayEnd()
        // A node that no longer processes its stream would never complete the command.
        if processingEnded { throw ParticipantError.stopped }
        let record = SubmittedCommand(
            key: prepared.change, submissionID: prepared.submissionID, messageID: prepared.messageID,
            rootHash: prepared.rootHash, deduplicationPeriodMicros: prepared.deduplicationPeriodMicros,
            maxSequencingTime: prepared.maxSequencingTime, batch: try prepared.batch.serializedBytes())
        let previous: CommandRecord?
        do {
            previous = try await store.begin(record, now: wallClockMicros())
            if beginAnswersLost > 0 {
                beginAnswersLost -= 1
                throw PostgresError(code: .connectionLost, message: "the answer was lost (a test's loss)")
            }
        } catch {
            // The record may be stored although the answer was lost (the connection dropped
            // after the commit). Left so, it would hold its command id, unsent, until a restart:
            // the caller's retry would be its duplicate. Its request is sent if it was recorded.
            unsequenced[prepared.messageID] = (prepared.change, prepared.maxSequencingTime)
            let node = self
            background { await node.sendIfRecorded(prepared) }
            throw error
        }
        if let previous {
            logger.info("duplicate command refused", metadata: [LogKey.command: "\(prepared.change)"])
            return .duplicate(previous: previous)
        }
        unsequenced[prepared.messageID] = (prepared.change, prepared.maxSequencingTime)
        submittedAt[Submission(change: prepared.change, submissionID: prepared.submissionID)] = .now
        // Cancelling the caller stops its wait, not the request: its completion stays in the store.
        return try await withTaskCancellationHandler {
            try await awaitCompletion(prepared)
        } onCancel: {
            Task { await self.cancelWait(Submission(change: prepared.change, submissionID: prepared.submissionID)) }
        }
    }

    private func cancelWait(_ key: Submission) {
        for continuation in waiting.removeValue(forKey: key) ?? [] {
            continuation.resume(throwing: CancellationError())
        }
    }

    private func awaitCompletion(_ prepared: PreparedSubmission) async throws -> Completion {
        try await withCheckedThrowingContinuation { continuation in
            // The command is recorded: its request is sent whatever becomes of this wait. Left
            // unsent, it would keep its command id taken until its max sequencing time passed (a
            // restart sends it; this node would not).
            if Task.isCancelled {
                continuation.resume(throwing: CancellationError())
            } else if processingEnded {
                // Processing ended while the command was recorded: nothing here completes it.
                continuation.resume(throwing: ParticipantError.stopped)
            } else {
                waiting[Submission(change: prepared.change, submissionID: prepared.submissionID), default: []]
                    .append(continuation)
            }
            background {
                do {
                    try await self.connection.send(
                        prepared.batch, messageID: prepared.messageID, maxSequencingTime: prepared.maxSequencingTime)
                    self.logger.info(
                        "confirmation request sent",
                        metadata: [LogKey.command: "\(prepared.change)", LogKey.rootHash: "\(prepared.rootHash)"])
                } catch {
                    await self.sendFailed(messageID: prepared.messageID, command: prepared.change, error)
                }
            }
        }
    }

    /// The answer for a command id in flight or succeeded within its deduplication period,
    /// checked before interpreting (a duplicate of a transfer would no longer interpret, its
    /// input being archived). `submit(_:)` checks again, atomically, when it records the command.
    private func duplicate(_ key: ChangeID) async throws -> Completion? {
        guard let record = try await store.command(key), record.deduplicates(at: wallClockMicros()) else { return nil }
        logger.info("duplicate command refused", metadata: [LogKey.command: "\(key)"])
        return .duplicate(previous: record)
    }

    /// After `begin` failed (see `submit(_:)`): sends `prepared`'s request if its record was
    /// stored after all, in flight under this submission, reading the store again until it
    /// answers or the request's max sequencing time passes. Unsent, the record is rejected
    /// once the stream's time passes that (`expireUnsequenced`); not stored, nothing is done.
    private func sendIfRecorded(_ prepared: PreparedSubmission) async {
        var delay = Duration.milliseconds(100)
        while !processingEnded, prepared.maxSequencingTime > wallClockMicros(), !Task.isCancelled {
            let record: CommandRecord?
            do {
                record = try await store.command(prepared.change)
            } catch {
                logger.warning(
                    "could not read whether a command was recorded before its answer was lost; reading again",
                    metadata: [LogKey.command: "\(prepared.change)", "error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
                continue
            }
            guard let record, record.submissionID == prepared.submissionID, record.state == .inFlight else {
                // Left among the unsequenced: a commit may still become visible after this read
                // (a stalled COMMIT), and then only the stream's time passing its max sequencing
                // time completes it. Expiring one that was never stored changes nothing.
                logger.info(
                    "a command whose recording failed was not found recorded; nothing sent",
                    metadata: [LogKey.command: "\(prepared.change)"])
                return
            }
            do {
                try await connection.send(
                    prepared.batch, messageID: prepared.messageID, maxSequencingTime: prepared.maxSequencingTime)
                logger.info(
                    "a confirmation request recorded before its answer was lost was sent",
                    metadata: [LogKey.command: "\(prepared.change)", LogKey.rootHash: "\(prepared.rootHash)"])
            } catch {
                await sendFailed(messageID: prepared.messageID, command: prepared.change, error)
            }
            return
        }
    }

    private func sendFailed(messageID: String, command: ChangeID, _ error: any Error) async {
        guard Self.certainlyNotSequenced(error) else {
            // The sequencer may have sequenced it before the answer was lost (or the node is
            // stopping): the stream decides — the request arrives, or its time passes it.
            logger.warning(
                "a confirmation request's send ended without an answer; its command completes when the stream shows the request or passes its max sequencing time",
                metadata: [LogKey.command: "\(command)", "error": "\(error)"])
            return
        }
        logger.error(
            "the sequencer did not accept a confirmation request",
            metadata: [LogKey.command: "\(command)", "error": "\(error)"])
        let reasonID =
            (error as? RPCError).map(\.errorID).flatMap { $0.isEmpty ? nil : $0 } ?? "PARTICIPANT_SEND_FAILED"
        do {
            let key = try await store.failSubmission(
                messageID: messageID, reasonID: reasonID, reason: "\(error)", cursor: nil)
            // Only once the rejection is stored: until then the command is still among those
            // whose max sequencing time rejects them, so a failed write here leaves it to that.
            unsequenced[messageID] = nil
            if let key {
                complete(key, .rejected(reasonID: reasonID, message: "\(error)"), submissionID: Self.submissionID(ofRequest: messageID))
            }
        } catch {
            logger.error(
                "could not record a failed submission; the command is rejected once the stream passes its max sequencing time",
                metadata: [LogKey.command: "\(command)", "error": "\(error)"])
        }
    }

    /// Whether a failed send surely left nothing sequenced: the sequencer answered with a
    /// refusal. Unavailability, deadlines, cancellation and lost connections leave it open.
    static func certainlyNotSequenced(_ error: any Error) -> Bool {
        guard let error = error as? RPCError else { return false }
        if error.errorID == "SEQUENCER_DUPLICATE_MESSAGE_ID" { return false }  // an earlier attempt was
        return [.invalidArgument, .permissionDenied, .unauthenticated, .failedPrecondition, .resourceExhausted, .notFound, .outOfRange]
            .contains(error.code)
    }

    /// Commands recorded earlier whose requests were not seen sequenced (loaded at start).
    private func awaitSequencing(_ commands: [ParticipantStore.UnsequencedCommand]) {
        for command in commands { unsequenced[command.messageID] = (command.key, command.maxSequencingTime) }
        if !commands.isEmpty {
            logger.info(
                "commands in flight whose requests were not seen sequenced wait for the stream's time",
                metadata: [LogKey.pendingCount: "\(commands.count)"])
        }
    }

    /// Sends again, under their message ids and max sequencing times, the requests of commands
    /// recorded before this start and not seen sequenced: a node killed between recording a
    /// command and sending its request (or before the send's answer) left them so, and without
    /// a send the command would wait for the stream's time to pass its max sequencing time —
    /// a minute by default, for ever on a stream without events. The sequencer sequences a
    /// message id once, so a request that was sequenced after all is refused as a duplicate
    /// (and arrives on the stream). A request past its max sequencing time is not sent: the
    /// sequencer could not sequence it, and the stream's time rejects its command.
    private func resend(_ commands: [ParticipantStore.UnsequencedCommand]) {
        for command in commands {
            guard let bytes = command.batch, command.maxSequencingTime > wallClockMicros() else { continue }
            let batch: Weft.V1.Batch
            do {
                batch = try Weft.V1.Batch(serializedBytes: bytes)
            } catch {
                logger.error(
                    "a stored confirmation request does not decode; its command completes when the stream passes its max sequencing time",
                    metadata: [LogKey.command: "\(command.key)", "error": "\(error)"])
                continue
            }
            background {
                do {
                    try await self.connection.send(
                        batch, messageID: command.messageID, maxSequencingTime: command.maxSequencingTime)
                    self.logger.info(
                        "a confirmation request recorded before the restart was sent",
                        metadata: [LogKey.command: "\(command.key)"])
                } catch let error as RPCError where error.errorID == "SEQUENCER_DUPLICATE_MESSAGE_ID" {
                    self.logger.debug(
                        "a confirmation request recorded before the restart was sequenced then",
                        metadata: [LogKey.command: "\(command.key)"])
                } catch {
                    await self.sendFailed(messageID: command.messageID, command: command.key, error)
                }
            }
        }
    }

    /// Rejects the commands whose requests the sequencer can no longer sequence: the stream's
    /// time (an event at `timestamp`) has passed their max sequencing time without them.
    private func expireUnsequenced(at timestamp: SequencingTimestamp) async throws {
        let expired = unsequenced.filter { $0.value.maxSequencingTime < timestamp.microsSinceEpoch }
        for (messageID, entry) in expired.sorted(by: { $0.key < $1.key }) {
            unsequenced[messageID] = nil
            let reason = RejectReason.Participant.notSequenced
            let message =
                "the confirmation request was not sequenced by its max sequencing time (the send's outcome was unknown, "
                + "or the participant stopped before sending); nothing was committed — submit the command again"
            if let key = try await store.failSubmission(messageID: messageID, reasonID: reason, reason: message, cursor: nil) {
                logger.warning(
                    "a command's request was never sequenced",
                    metadata: [LogKey.command: "\(key)", "max_sequencing_time": "\(entry.maxSequencingTime)"])
                complete(key, .rejected(reasonID: reason, message: message), submissionID: Self.submissionID(ofRequest: messageID))
            }
        }
    }

    /// A command whose request was not seen sequenced completes once the stream's time passes
    /// its max sequencing time, and a pending request without a verdict once it passes the
    /// request's decision time; but the stream moves only with events, and a participant the
    /// domain sends nothing to may wait for ever. Once the wall clock has passed the earliest such
    /// deadline and no event has, ask the sequencer for the time with an empty batch (a time
    /// proof, as the mediator does for its deadlines). Only while the stream is idle (no event
    /// taken for `timeProofRetry`): a stream catching up moves past the deadline by itself. Asked
    /// again for the same deadline after `timeProofRetry`, doubling up to 32 times that, while the
    /// stream stays behind (a sequencer clock behind this one, processing held up waiting for
    /// a package). The commitment ticker calls it.
    func askForTimePastDeadlines() async {
        if !pending.isEmpty { await computeDecisionTimes() }
        let maxSequencingTimes = unsequenced.values.lazy.map(\.maxSequencingTime)
        let decisions = pending.keys.lazy.compactMap { self.decisionTimes[$0] }.filter { $0 < .max }
        guard !processingEnded, let earliest = [maxSequencingTimes.min(), decisions.min()].compactMap({ $0 }).min(),
            wallClockMicros() > earliest, (cursor.lastTimestamp?.microsSinceEpoch ?? .min) <= earliest
        else { return }
        guard ContinuousClock.now - lastEventTakenAt >= Self.timeProofRetry else { return }
        var times = 1
        if let asked = deadlineTimeProof, asked.deadline == earliest {
            guard ContinuousClock.now - asked.askedAt >= Self.timeProofRetry * (1 << min(asked.times - 1, 5)) else { return }
            times = asked.times + 1
        }
        deadlineTimeProof = (earliest, .now, times)
        let messageID = "time-proof-\(earliest)-\(wallClockMicros())"
        let (connection, logger) = (self.connection, self.logger)
        background {
            do {
                try await connection.send(Weft.V1.Batch(envelopes: []), messageID: messageID)
                logger.debug(
                    "asked the sequencer for the time: a command's max sequencing time or a request's decision time passed without an event",
                    metadata: ["deadline": "\(earliest)"])
            } catch {
                logger.warning(
                    "asking the sequencer for the time failed; retried", metadata: ["error": "\(error)"])
            }
        }
    }

    /// How long to wait for a time proof before asking again.
    static let timeProofRetry: Duration = .seconds(1)

    /// The submission id in a confirmation request's message id (`request-<submission id>`): the
    /// completion of a request refused or never sequenced names the submission it completes, not
    /// whichever one of the same command id is in flight by the time it is published.
    static func submissionID(ofRequest messageID: String) -> String? {
        messageID.hasPrefix("request-") ? String(messageID.dropFirst("request-".count)) : nil
    }

    /// For tests: records `prepared` as submitted without sending it, as a node killed between
    /// the two leaves it.
    @_spi(Testing) public func recordWithoutSending(_ prepared: PreparedSubmission) async throws {
        let record = SubmittedCommand(
            key: prepared.change, submissionID: prepared.submissionID, messageID: prepared.messageID,
            rootHash: prepared.rootHash, deduplicationPeriodMicros: prepared.deduplicationPeriodMicros,
            maxSequencingTime: prepared.maxSequencingTime, batch: try prepared.batch.serializedBytes())
        _ = try await store.begin(record, now: wallClockMicros())
    }

    /// `submitter`: the act-as parties and submission id from the request's views, for a
    /// completion replayed after a loss (nil otherwise).
    /// `submissionID`: the submission's, for a completion of a request that names none in views
    /// (one refused or never sequenced), from its message id.
    private func complete(
        _ key: ChangeID, _ completion: Completion, submitter: SubmitterMetadata? = nil, submissionID: String? = nil
    ) {
        let outcome: String
        switch completion {
        case .succeeded: outcome = "succeeded"
        case .rejected: outcome = "rejected"
        case .duplicate: outcome = "duplicate"
        }
        Counter(label: "weft_participant_commands_total", dimensions: [("outcome", outcome)]).increment()
        let submission = Submission(change: key, submissionID: submitter?.submissionID ?? submissionID ?? "")
        if let started = submittedAt.removeValue(forKey: submission) {
            let (seconds, attoseconds) = (ContinuousClock.now - started).components
            Timer(label: "weft_participant_command_duration_seconds")
                .recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        }
        publish(CommandCompletion(change: key, completion: completion, submissionID: submission.submissionID))
        for continuation in waiting.removeValue(forKey: submission) ?? [] { continuation.resume(returning: completion) }
    }

    // MARK: - The event processor

    /// Processes one event of the stream, in order: its effects and the counter after it are
    /// queued to be stored together (`enqueue`, committed with the events' around it) before
    /// the next event is looked at. An event without effects moves the counter in memory only
    /// (`pass(to:)`), stored with the next write or by `storeCursor()` once
    /// `cursorStoreEventsMax` events or `cursorStoreInterval` have passed.
    func process(_ event: Weft.V1.SequencedEvent) async throws {
        guard event.counter == cursor.nextCounter else {
            if event.counter < cursor.nextCounter { return }  // already processed (a replayed stream)
            throw ParticipantError.inconsistentStore(
                "event \(event.counter) arrived while \(cursor.nextCounter) was expected")
        }
        lastEventTakenAt = .now
        let timestamp = SequencingTimestamp(event.timestamp ?? .init(microsSinceEpoch: 0))
        if event.counter == 0, let last = cursor.lastTimestamp, timestamp <= last {
            // Only a participant that migrated to a new domain starts a stream with a past: the
            // new domain's time must be after everything the old one sequenced (pruning and
            // commitments order the ledger by time).
            throw ParticipantRecoveryError.domainTimeBehind(
                firstEventAt: timestamp.microsSinceEpoch, lastProcessedAt: last.microsSinceEpoch)
        }
        let next = ParticipantStore.Cursor(nextCounter: event.counter + 1, lastTimestamp: timestamp)
        try await completePeriod(before: timestamp)
        if !pending.isEmpty { try await timeOutUndecided(before: timestamp) }
        switch event.event {
        case .deliverError(let error)?:
            unsequenced[error.messageID] = nil
            let reasonID = error.reason?.errorID.isEmpty == false ? error.reason!.errorID : "SEQUENCER_DELIVER_ERROR"
            let message = error.reason?.message ?? "the sequencer refused the submission"
            try await drainWrites()  // the store changes in stream order
            let key = try await store.failSubmission(messageID: error.messageID, reasonID: reasonID, reason: message, cursor: next)
            cursor = next
            cursorStored(next)
            if let key {
                logger.warning(
                    "a confirmation request was not sequenced",
                    metadata: [LogKey.command: "\(key)", LogKey.reason: "\(reasonID)"])
                complete(
                    key, .rejected(reasonID: reasonID, message: message), submissionID: Self.submissionID(ofRequest: error.messageID))
            } else {
                reportRefusedCommitment(messageID: error.messageID, reasonID: reasonID, message: message)
            }
        case .deliver(let deliver)?:
            if deliver.sender == memberText { unsequenced[deliver.messageID] = nil }  // our request, sequenced
            // The submission's trace: validation, responses and commit log under it, and the
            // responses carry it on to the mediator.
            try await TraceContext.withSpan(of: deliver.traceparent) {
                try await process(deliver, at: timestamp, next: next)
            }
            // The replay's summary counts what is stored.
            if recovery.replay?.markMessageID == deliver.messageID { try await drainWrites() }
            noteDelivered(deliver, sender: memberText)
        case nil:
            pass(to: next)
        }
        if storeCursorAfterEvent || unstoredEvents >= configuration.cursorStoreEventsMax
            || ContinuousClock.now - cursorStoredAt >= configuration.cursorStoreInterval
        {
            storeCursor()
        }
        if !unsequenced.isEmpty { try await expireUnsequenced(at: timestamp) }
        await throttleWrites()
    }

    /// Rejects each pending request whose decision time the stream has passed (an event at
    /// `timestamp`) without a verdict: the mediator did not send one in time (it was down past
    /// the domain's mediator reaction timeout, or lost its state), and none may come any more —
    /// the mediator never sends one with a later max sequencing time. Without this, the
    /// request's inputs would stay locked for ever. A verdict sequenced in time precedes this
    /// event in every participant's stream, so the request's participants all applied it or all
    /// reject the request, each at the first event of its stream after the decision time; a
    /// verdict sequenced later finds it no longer pending. Decided before the event, with the
    /// cursor before it.
    private func timeOutUndecided(before timestamp: SequencingTimestamp) async throws {
        await computeDecisionTimes()
        let due = pending.keys.filter { (decisionTimes[$0] ?? .max) < timestamp.microsSinceEpoch }.sorted()
        for requestTime in due {
            guard let request = pending[requestTime] else { continue }
            let decisionTime = decisionTimes[requestTime] ?? .max
            let reason =
                "no verdict reached this participant by the request's decision time (\(SequencingTimestamp(microsSinceEpoch: decisionTime))"
                + ": its sequencing time plus the domain's participant response and mediator reaction timeouts); the mediator "
                + "was down or its verdict was lost, and nothing was committed — submit the command again"
            logger.warning(
                "a pending request had no verdict by its decision time; rejected here, its locks released",
                metadata: [
                    LogKey.request: "\(requestTime)", LogKey.rootHash: "\(request.rootHash)",
                    LogKey.reasonID: "\(RejectReason.Participant.verdictTimedOut)", "decision_time": "\(decisionTime)",
                ])
            try await decide(
                request, at: requestTime, approved: false, reasonID: RejectReason.Participant.verdictTimedOut, reason: reason,
                commit: nil, effects: nil, next: cursor)
        }
    }

    /// Computes, once, the decision times of pending requests loaded at start (validation
    /// records those of the requests it adds), from the parameters in force at each one's time.
    private func computeDecisionTimes() async {
        // Before the history the topology has no domain parameters: every time would be "never".
        guard ready else { return }
        for requestTime in pending.keys where decisionTimes[requestTime] == nil {
            let decisionTime =
                await topology.snapshot(at: requestTime).domainParameters?
                .decisionTime(ofRequestAt: requestTime.microsSinceEpoch) ?? .max
            // Still pending after the wait (the ticker's call runs beside the event processor).
            if pending[requestTime] != nil { decisionTimes[requestTime] = decisionTime }
        }
    }

    // MARK: The cursor

    /// Moves the cursor past an event without effects, in memory only: the next write stores it.
    func pass(to next: ParticipantStore.Cursor) {
        cursor = next
        unstoredEvents += 1
    }

    /// A write stored `stored` (never taking the known stored cursor back: an idle store of an
    /// older cursor may finish after an event's write).
    func cursorStored(_ stored: ParticipantStore.Cursor) {
        if stored.nextCounter >= storedCursor.nextCounter { storedCursor = stored }
        if stored == cursor {
            unstoredEvents = 0
            cursorStoredAt = .now
        }
    }

    /// Stores the cursor when the stream has been idle for `cursorStoreInterval` since events
    /// without effects were moved past (the commitment ticker calls it).
    func storeCursorIfIdle() {
        guard cursor != storedCursor, ContinuousClock.now - cursorStoredAt >= configuration.cursorStoreInterval else {
            return
        }
        storeCursor()
    }

    private func process(_ deliver: Weft.V1.Deliver, at timestamp: SequencingTimestamp, next: ParticipantStore.Cursor)
        async throws
    {
        var request = ReceivedRequest(timestamp: timestamp, sender: deliver.sender)
        var verdicts: [Weft.V1.SignedProtocolMessage] = []
        for envelope in deliver.batch?.envelopes ?? [] {
            guard let content = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content) else {
                logger.warning(
                    "an envelope does not decode as weft.v1.EnvelopeContent; ignored",
                    metadata: [LogKey.sender: "\(deliver.sender)", LogKey.timestamp: "\(timestamp)"])
                continue
            }
            switch content.message {
            case .topologyBroadcast?, .topologySnapshot?:
                storeCursorAfterEvent = true
                try await drainWrites()  // the store changes in stream order
                do {
                    try await topology.apply(content, sequencedAt: timestamp, sender: deliver.sender)
                } catch let refused as MemberTopologyError {
                    // Refused as on every other node (logged where it was refused too); what was
                    // accepted of it is applied, so processing goes on. Any other failure (the
                    // database) stops processing before the cursor moves past this event.
                    logger.warning(
                        "topology content refused",
                        metadata: [
                            LogKey.sender: "\(deliver.sender)", LogKey.timestamp: "\(timestamp)", "error": "\(refused)",
                        ])
                }
                if !ready, await topology.isInitialized { becomeReady() }
            case .rootHash(let message)?: request.rootHashMessages.append(message)
            case .encryptedView(let message)?: request.encryptedViews.append(message)
            case .signedMessage(let message)?:
                if Self.isCommitment(message) {
                    storeCursorAfterEvent = true
                    try await drainWrites()
                    try await receive(commitment: message, from: deliver.sender, at: timestamp)
                } else {
                    verdicts.append(message)
                }
            case .commitmentNarrowingRequest(let message)?:
                storeCursorAfterEvent = true
                await receive(narrowing: message, from: deliver.sender, at: timestamp)
            case .commitmentNarrowingResponse(let message)?:
                storeCursorAfterEvent = true
                receive(narrowing: message, from: deliver.sender)
            case .informeeMessage?, .topologyRequest?, nil:
                logger.warning(
                    "an envelope this participant has no use for; ignored",
                    metadata: [LogKey.sender: "\(deliver.sender)", LogKey.timestamp: "\(timestamp)"])
            }
        }
        let isRequest = !request.rootHashMessages.isEmpty || !request.encryptedViews.isEmpty
        if !ready, isRequest || !verdicts.isEmpty {
            // Before the history, the topology knows nobody: no signature can be checked and
            // no party is hosted here. Storing a request (its write stores the cursor) would
            // also move the stored cursor past the broadcasts held in memory until the history
            // arrives, which a restart must read again. The mediator times such a request out.
            Counter(label: "weft_participant_messages_before_topology_total").increment()
            logger.warning(
                "a confirmation request or verdict arrived before the domain's topology history; ignored, as this participant cannot check it yet",
                metadata: [LogKey.sender: "\(deliver.sender)", LogKey.timestamp: "\(timestamp)"])
            pass(to: next)
        } else if isRequest {
            try await validate(request, next: next)
        } else if let verdict = verdicts.first {
            if verdicts.count > 1 {
                logger.warning(
                    "an event with several signed messages: only the first is read",
                    metadata: [LogKey.timestamp: "\(timestamp)"])
            }
            try await apply(verdict: verdict, at: timestamp, next: next)
        } else {
            // Stored after the event if it had effects elsewhere (`storeCursorAfterEvent`), but
            // only once the history is in (`storeCursor`): broadcasts before it are held in
            // memory only (MemberTopology), and a restart must read them again.
            pass(to: next)
        }
    }

    // MARK: Validation

    private func validate(_ request: ReceivedRequest, next: ParticipantStore.Cursor) async throws {
        let snapshot = await topology.snapshot(at: request.timestamp)
        let state = ConflictState(active: active, known: known, locks: locks, pendingCreates: pendingCreates)
        let validator = RequestValidator(
            identity: identity, domain: domain, snapshot: snapshot, interpreter: interpreter,
            packages: Set(packageSources.keys), state: state, sessions: incomingSessionKeys,
            respondsApproveAnyway: respondsApproveAnyway)
        let result = validator.validate(request)
        guard let rootHash = result.rootHash, !result.viewTrees.isEmpty || !result.responses.isEmpty else {
            logger.warning(
                "a confirmation request this participant cannot take part in: no readable view or no single root hash",
                metadata: [LogKey.timestamp: "\(request.timestamp)", LogKey.reason: "\(result.decision.message)"])
            pass(to: next)
            return
        }
        let stored = ParticipantStore.StoredRequest(
            timestamp: request.timestamp, rootHash: rootHash, locked: result.locks, creates: result.creates,
            responses: result.responses, views: result.viewTrees,
            command: result.command, decodedViews: result.views, ownSubmitter: result.ownSubmitter)
        // The request's locks hold from now on for the events behind it; its responses leave
        // once it is stored.
        let mediator = result.mediator
        try enqueue(.register(stored), next: next) {
            for continuation in self.validatedWaiters.removeValue(forKey: rootHash) ?? [] { continuation.resume() }
            guard !stored.responses.isEmpty else { return }
            if self.responseDeadlinePassed(stored.timestamp, snapshot) {
                self.lateResponsesWithheld(stored)
            } else if let mediator {
                self.sendResponses(stored, to: mediator, deadline: self.responseDeadline(stored.timestamp, snapshot))
            } else {
                self.logger.warning(
                    "responses without a mediator to send them to", metadata: [LogKey.request: "\(stored.timestamp)"])
            }
        }
        pending[request.timestamp] = stored
        decisionTimes[request.timestamp] =
            snapshot.domainParameters?.decisionTime(ofRequestAt: request.timestamp.microsSinceEpoch) ?? .max
        for id in result.locks { locks[id] = request.timestamp }
        for id in result.creates { pendingCreates[id] = request.timestamp }
        if let reason = result.decision.reasonID {
            if result.command != nil { ownRejectionMessages[request.timestamp] = result.decision.message }
            Counter(label: "weft_participant_local_rejections_total", dimensions: [("reason_id", reason)]).increment()
            logger.info(
                "request rejected locally",
                metadata: [
                    LogKey.request: "\(request.timestamp)", LogKey.reasonID: "\(reason)",
                    LogKey.reason: "\(result.decision.message)",
                ])
        } else {
            logger.debug("request approved locally", metadata: [LogKey.request: "\(request.timestamp)"])
        }
    }

    /// Whether the domain's participant response timeout for the request sequenced at
    /// `timestamp` has passed by the wall clock. The mediator has then rejected it as timed out
    /// or is about to (it asks the sequencer for the time once its own clock passes the
    /// deadline), and a response could only be a late confirmation: a participant catching up
    /// after a stop sends none. A clock ahead of the sequencer's may withhold a response that
    /// would have been in time by that skew; the mediator times the request out then.
    private func responseDeadlinePassed(_ timestamp: SequencingTimestamp, _ snapshot: TopologySnapshot) -> Bool {
        guard let deadline = responseDeadline(timestamp, snapshot) else { return false }
        return wallClockMicros() > deadline
    }

    /// The request's response deadline (sequencing time plus the domain's participant response
    /// timeout; nil without domain parameters).
    private func responseDeadline(_ timestamp: SequencingTimestamp, _ snapshot: TopologySnapshot) -> Int64? {
        guard let timeout = snapshot.domainParameters?.participantResponseTimeout?.micros else { return nil }
        return timestamp.microsSinceEpoch + max(0, timeout)
    }

    private func lateResponsesWithheld(_ request: ParticipantStore.StoredRequest) {
        logger.warning(
            "the participant response timeout of a request passed before it was validated here; no response sent, the mediator times it out",
            metadata: [LogKey.request: "\(request.timestamp)", LogKey.rootHash: "\(request.rootHash)"])
    }

    /// Sends the request's responses, to be sequenced by `deadline` (the response deadline: a
    /// response later than that only counts as late, and the sequencer remembers the message id
    /// until then, so a re-send after a restart is refused as a duplicate).
    private func sendResponses(_ request: ParticipantStore.StoredRequest, to mediatorHint: String? = nil, deadline: Int64?) {
        let mediator =
            mediatorHint
            ?? request.views.lazy.compactMap { bytes -> String? in
                guard let tree = try? Weft.V1.ViewTree(serializedBytes: bytes), let received = try? ReceivedView(tree)
                else {
                    return nil
                }
                return received.commonMetadata?.mediator
            }.first
        guard let mediator else { return }
        let envelopes = request.responses.compactMap { response in
            (try? Weft.V1.EnvelopeContent(message: .signedMessage(response)).serializedBytes()).map {
                Weft.V1.Envelope(content: $0, recipients: [mediator])
            }
        }
        let messageID = "response-\(request.timestamp.microsSinceEpoch)"
        guard !responsesDropped else { return }
        background {
            do {
                do {
                    // No receipt: nothing here waits for the responses' sequencing (the verdict
                    // or the timeout decides), and a refusal still comes as a deliver error.
                    try await self.connection.send(
                        Weft.V1.Batch(envelopes: envelopes), messageID: messageID, maxSequencingTime: deadline, omitReceipt: true)
                } catch let error as RPCError where error.errorID == "SEQUENCER_DUPLICATE_MESSAGE_ID" {
                    // Sent before under the same message id: by this participant before it lost
                    // its database, now replaying the request (or by an attempt whose answer was lost).
                    self.logger.debug(
                        "confirmation responses were sent before", metadata: [LogKey.request: "\(request.timestamp)"])
                }
            } catch {
                self.logger.error(
                    "confirmation responses not sent; the mediator will time the request out unless a restart resends them",
                    metadata: [LogKey.request: "\(request.timestamp)", "error": "\(error)"])
            }
        }
    }

    // MARK: Verdicts and commit

    private func apply(
        verdict message: Weft.V1.SignedProtocolMessage, at timestamp: SequencingTimestamp, next: ParticipantStore.Cursor
    )
        async throws
    {
        let result: Weft.V1.ConfirmationResult
        let requestTime: SequencingTimestamp
        do {
            guard case .confirmationResult(let decoded)? = try ProtocolSigning.content(of: message).content,
                let id = decoded.requestID
            else { throw ProtocolMessageError.malformed("not a confirmation result with a request id") }
            requestTime = SequencingTimestamp(id)
            let snapshot = await topology.snapshot(at: requestTime)
            let keys = snapshot.mediators.flatMap { snapshot.signingKeys(of: $0) }
            result = try ProtocolSigning.verifiedResult(message, mediatorKeys: keys)
        } catch {
            logger.warning(
                "a signed message that is not a verdict of the domain's mediator; ignored",
                metadata: [LogKey.timestamp: "\(timestamp)", "error": "\(error)"])
            pass(to: next)
            return
        }
        guard let request = pending[requestTime], result.domain == domain.description else {
            logger.info(
                "a verdict for no pending request here (decided before, or never validated); ignored",
                metadata: [LogKey.request: "\(requestTime)"])
            pass(to: next)
            return
        }
        var approved: Bool
        var reasonID: String
        var reason: String
        switch result.verdict?.outcome {
        case .approve?: (approved, reasonID, reason) = (true, "", "")
        case .mediatorReject(let reject)?: (approved, reasonID, reason) = (false, reject.reasonID, reject.message)
        case .participantReject(let rejects)?:
            let first = rejects.rejects.first
            // This participant's own rejection: its whole message, not the verdict's fixed text.
            let own = first?.participant == identity.id.description ? ownRejectionMessages[requestTime] : nil
            (approved, reasonID, reason) = (
                false, first?.reject?.reasonID ?? "PARTICIPANT_REJECT",
                "participant \(first?.participant ?? "?") rejected: \(own ?? first?.reject?.message ?? "")"
            )
        case nil: (approved, reasonID, reason) = (false, "MEDIATOR_EMPTY_VERDICT", "the verdict names no outcome")
        }
        if request.rootHash.bytes != result.rootHash {
            // Not the transaction this participant validated (mismatched root hash messages):
            // it commits nothing of it, whatever the verdict.
            if approved {
                logger.error(
                    "the mediator approved a request whose root hash differs from the one validated here; rolled back",
                    metadata: [LogKey.request: "\(requestTime)"])
            }
            if approved {
                (approved, reasonID, reason) = (
                    false, RejectReason.Participant.rootHashMismatch, "the verdict is for another root hash"
                )
            }
        }
        var commit: ParticipantStore.Commit?
        var effects: Effects?
        if approved {
            // As validation decoded them, or, for a request loaded at a restart, decoded once
            // for both uses (each decode hashes every view's Merkle tree again).
            let views = try request.decodedViews ?? Effects.views(of: request.views)
            if isReplaying {
                // Rebuilding a lost ledger: the operator uploads the packages it had, and the
                // rebuilt transactions get their trees as before.
                try await awaitPackages(usedBy: views, request: requestTime)
            } else {
                // Live, an approved transaction is committed whatever packages it uses: waiting
                // would stop this whole stream on an upload that may never come (any submitter
                // can name a party hosted here as an observer of a contract of a package only it
                // has, and confirm it alone). Without the package the views do not re-interpret,
                // so the flat events are stored, not the tree (`reinterpretationFailure` below).
                noteMissingPackages(usedBy: views, request: requestTime)
            }
            let snapshot = await topology.snapshot(at: requestTime)
            let hosted = { (party: Party) -> Bool in
                guard let id = try? UniqueIdentifier(parsing: party.id) else { return false }
                return snapshot.hostingParticipants(of: id).contains {
                    $0.participant == self.identity.id && $0.permission != .disabled
                }
            }
            let packages = Array(packageSources.values)
            let computed = try Effects(
                views, hosted: hosted, packages: packages, interpreter: interpreter, active: active, known: known)
            effects = computed
            for inconsistency in computed.inconsistencies {
                Counter(label: "weft_participant_inconsistent_approvals_total").increment()
                logger.error(
                    "the mediator approved a request that \(inconsistency); that part is left out of the commit (a confirmer approved what it should have rejected: check the request's confirming participants)",
                    metadata: [LogKey.request: "\(requestTime)", LogKey.rootHash: "\(request.rootHash)"])
            }
            if let failure = computed.reinterpretationFailure {
                logger.warning(
                    "the approved views do not re-interpret here, so their transaction tree is not stored (flat events are)",
                    metadata: [LogKey.request: "\(requestTime)", LogKey.reason: "\(failure)"])
            }
            let transactionID = request.rootHash.description
            let treeEvents = LedgerTree.events(
                of: computed.reinterpreted, transactionID: transactionID, packages: packages, sees: hosted)
            // Flat events name the tree's nodes: the create, or the consuming exercise.
            var createdBy: [String: String] = [:]
            var archivedBy: [String: String] = [:]
            for event in treeEvents {
                switch event.kind {
                case .created(let created)?: createdBy[created.contractID] = created.eventID
                case .exercised(let exercised)? where exercised.consuming: archivedBy[exercised.contractID] = exercised.eventID
                default: break
                }
            }
            let events = computed.events.map { event in
                var named = event
                named.eventID = (event.created ? createdBy : archivedBy)[event.contractID.description] ?? ""
                return named
            }
            if !computed.events.isEmpty || !treeEvents.isEmpty {
                commit = ParticipantStore.Commit(
                    offset: ledgerEndProcessed + 1, transactionID: transactionID, commitTime: timestamp,
                    created: computed.created, archived: computed.archived, events: events,
                    tree: try Weft.V1.TransactionTreeView(events: treeEvents).serializedBytes())
            }
        }
        try await decide(
            request, at: requestTime, approved: approved, reasonID: reasonID, reason: reason, commit: commit, effects: effects,
            next: next)
    }

    /// Queues the decision on the pending request `request` (sequenced at `requestTime`), with
    /// the cursor `next`, and updates the state in memory for the events behind it: the verdict's,
    /// or a rejection of its own once the request's decision time passed without one.
    private func decide(
        _ request: ParticipantStore.StoredRequest, at requestTime: SequencingTimestamp, approved: Bool, reasonID: String,
        reason: String, commit: ParticipantStore.Commit?, effects: Effects?, next: ParticipantStore.Cursor
    ) async throws {
        Counter(label: "weft_participant_requests_total", dimensions: [("outcome", approved ? "approved" : "rejected")])
            .increment()
        var submitter: SubmitterMetadata?
        if let command = request.command {
            if let own = request.ownSubmitter,
                submittedAt[Submission(change: ChangeID(command, actAs: own.actAs), submissionID: own.submissionID)] != nil
            {
                // This process recorded the command (`submit`), so its record exists: nothing to
                // restore, and the views were read at validation.
                submitter = own
            } else {
                try await drainWrites()  // the store changes in stream order
                submitter = try await restoreCommand(command, of: request)
            }
        }
        // The command and submission the verdict completes: as the views name them.
        let own = submitter.map { submitter in
            (
                change: ChangeID(
                    CommandKey(applicationID: submitter.applicationID, commandID: submitter.commandID),
                    actAs: submitter.actAs),
                submissionID: submitter.submissionID
            )
        }
        let outcome = approved ? "approved" : reasonID
        // The ledger end this decision leaves, where its command completes.
        let ledgerEndAfter = commit?.offset ?? ledgerEndProcessed
        let decision = ParticipantStore.Decision(
            timestamp: requestTime,
            verdict: !approved
                ? .rejected(reasonID: reasonID, reason: reason)
                : commit.map { .committed($0) }
                    ?? .approvedWithoutCommit(transactionID: request.rootHash.description, ledgerEnd: ledgerEndAfter),
            command: own)
        try enqueue(.decide(decision), next: next) { [commit, submitter, own, approved, reasonID, reason, ledgerEndAfter] in
            if let count = self.decidedUnstored[request.rootHash] {
                self.decidedUnstored[request.rootHash] = count > 1 ? count - 1 : nil
            }
            if let commit {
                self.ledgerEnd = commit.offset
                let ready = self.ledgerEndWaiters.filter { $0.0 <= commit.offset }
                self.ledgerEndWaiters.removeAll { $0.0 <= commit.offset }
                for (_, continuation) in ready { continuation.resume() }
            }
            self.logger.info(
                approved ? "request committed" : "request rolled back",
                metadata: [
                    LogKey.request: "\(requestTime)", LogKey.reasonID: "\(reasonID)",
                    LogKey.offset: "\(commit?.offset ?? 0)",
                ])
            // An approval stands: a replay of the request with the same root hash, rejected after
            // it, does not change the transaction's outcome (`ParticipantStore.outcomeSQL`). A
            // rejection while another request with the root hash is pending (the original,
            // when its replay is decided first) leaves the waiters to that one's decision.
            let known = self.outcomes[request.rootHash] == "approved" ? "approved" : outcome
            self.rememberOutcome(known, of: request.rootHash)
            if known == "approved" || !self.isPending(request.rootHash) {
                for continuation in self.outcomeWaiters.removeValue(forKey: request.rootHash) ?? [] {
                    continuation.resume(returning: known)
                }
            }
            if let command = own?.change {
                if approved {
                    self.complete(
                        command,
                        .succeeded(transactionID: request.rootHash.description, offset: ledgerEndAfter),
                        submitter: submitter)
                } else {
                    self.complete(command, .rejected(reasonID: reasonID, message: reason), submitter: submitter)
                }
            }
        }
        decidedUnstored[request.rootHash, default: 0] += 1
        // The next events see the contracts as this verdict leaves them.
        pending[requestTime] = nil
        decisionTimes[requestTime] = nil
        ownRejectionMessages[requestTime] = nil
        for id in request.locked where locks[id] == requestTime { locks[id] = nil }
        for id in request.creates where pendingCreates[id] == requestTime { pendingCreates[id] = nil }
        if let effects {
            for created in effects.created {
                active[created.id] = (created.contract, effects.createdSeeds[created.id])
                known.insert(created.id)
            }
            for id in effects.archived { active[id] = nil }
            trackCommitments(effects)
        }
        if let commit { ledgerEndProcessed = commit.offset }
    }

    // MARK: - Helpers

    /// `count` bytes from OpenSSL's CSPRNG in one call (the system generator read a byte at a
    /// time made 48 `getrandom` calls per submission, for its seed and uuid).
    static func randomBytes(_ count: Int) throws -> [UInt8] {
        try OpenSSL.randomBytes(count)
    }
}

/// The participant's log metadata keys: dotted, from one closed list, so that log queries can
/// rely on them.
enum LogKey {
    static let participant = "weft.participant"
    static let command = "weft.participant.command"
    static let contract = "weft.participant.contract"
    static let counter = "weft.participant.counter"
    static let offset = "weft.participant.offset"
    static let package = "weft.participant.package"
    static let packageName = "weft.participant.package_name"
    static let reason = "weft.participant.reason"
    static let reasonID = "weft.participant.reason_id"
    static let request = "weft.participant.request"
    static let rootHash = "weft.participant.root_hash"
    static let sender = "weft.participant.sender"
    static let timestamp = "weft.participant.timestamp"
    static let activeContracts = "weft.participant.active_contracts"
    static let pendingCount = "weft.participant.pending_count"
    static let period = "weft.participant.commitment_period"
    static let counterParticipant = "weft.participant.counter_participant"
}
