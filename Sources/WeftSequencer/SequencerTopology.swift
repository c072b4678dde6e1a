public import Logging
public import WeftCrypto
public import WeftStore
public import WeftTopology
public import WeftWire

/// What the sequencer knows of the domain's topology: who is a member, with
/// which keys. It starts from the genesis the domain manager gives
/// (`InitializeSequencer`) and follows the topology broadcasts sequenced to
/// `ALL`, which reach the sequencers' own member id; it registers members
/// as they become active and cuts off those that are disabled.
public actor SequencerTopology {
    public nonisolated let domain: UniqueIdentifier
    /// The sequencers' member id, `SEQ::<domain name>::<domain namespace>`.
    public nonisolated let sequencerMember: MemberID
    private var state: TopologyState
    private let store: TopologyStore
    private let sequencer: Sequencer
    private let logger: Logger
    private var follower: Task<Void, Never>?
    private var processedCounter: Int64 = -1
    /// A topology change was applied but registering or disabling the members it changes
    /// failed (a database error): the delivery is read again, and then finds nothing to apply.
    private var membersOutdated = false
    /// Every topology broadcast sequenced at or before this has been applied.
    private var caughtUpTo: Int64 = 0
    private var catchUpWaiters: [(target: Int64, continuation: CheckedContinuation<Void, Never>)] = []
    /// Tasks waiting for the next applied change (`waitUntil`), by a number of their own so
    /// that a cancelled one can be resumed (and forgotten) without the others.
    private var changeWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    private var nextChangeWaiter: UInt64 = 0
    /// Called with a member that is no longer active, to close its subscriptions.
    private var onCutOff: (@Sendable (String) async -> Void)?
    /// Members owed the history, each once the follower has read past the time it was registered.
    private var snapshotsDue: [String: Int64] = [:]
    /// Tasks waiting until no history is owed (`topologySnapshotsSent`).
    private var snapshotWaiters: [CheckedContinuation<Void, Never>] = []

    public init(domain: UniqueIdentifier, sequencer: Sequencer, logger: Logger) throws {
        self.domain = domain
        sequencerMember = MemberID(role: .sequencer, identifier: domain)
        self.sequencer = sequencer
        self.logger = logger
        store = TopologyStore(database: sequencer.database, domain: domain, logger: logger)
        state = TopologyState(domain: domain, changeDelayMicros: 0)
    }

    /// The migrations the sequencer's topology store needs.
    public static var migrator: Migrator { TopologyStore.migrator }

    /// Loads what the store holds; starts following broadcasts if initialized.
    public func start(onCutOff: @escaping @Sendable (String) async -> Void) async throws {
        self.onCutOff = onCutOff
        state = try await store.load(changeDelayMicros: 0)
        if isInitialized {
            try await registerActiveMembers()
            startFollowing()
        }
    }

    public func stop() {
        follower?.cancel()
        follower = nil
    }

    public var isInitialized: Bool { !state.transactions.isEmpty }

    /// The topology now, as the sequencer applies it to authentication and sends.
    public func snapshot() -> TopologySnapshot {
        state.snapshot(at: SequencingTimestamp(microsSinceEpoch: SequencerWriter.now()))
    }

    /// Applies the domain's genesis: every transaction must validate, the first
    /// must be the domain namespace's root delegation. Idempotent for the same genesis.
    public func initialize(_ genesis: [Weft.V1.SignedTopologyTransaction]) async throws -> SequencingTimestamp {
        let signed = try genesis.map { wire throws(TopologyError) in try SignedTopologyTransaction(wire) }
        // Another sequencer node of the domain may have stored the genesis since this one started.
        if !isInitialized { state = try await store.load(changeDelayMicros: 0) }
        if isInitialized {
            let known = Set(state.transactions.map(\.transaction.hash))
            guard signed.allSatisfy({ known.contains($0.hash) }) else {
                throw InitializationError.alreadyInitialized(domain: domain.description)
            }
            try await registerActiveMembers()
            startFollowing()
            return state.transactions.first!.sequencedAt
        }
        let at = SequencingTimestamp(microsSinceEpoch: SequencerWriter.now())
        var next = state
        var changes: [TopologyChange] = []
        for transaction in signed {
            if let change = try next.add(transaction, sequencedAt: at) { changes.append(change) }
        }
        let snapshot = next.snapshot(at: at.adding(micros: 1))
        guard snapshot.isActive(sequencerMember), snapshot.domainParameters != nil else {
            throw InitializationError.incomplete(
                "the genesis must register the sequencers' keys (\(sequencerMember)) and the domain parameters")
        }
        try await store.persist(changes)
        state = next
        try await registerActiveMembers()
        startFollowing()
        logger.info("domain initialized", metadata: ["domain": "\(domain)", "transactions": "\(changes.count)"])
        return at
    }

    /// Registers every active member the sequencer does not know yet; disables those no longer active.
    private func registerActiveMembers() async throws {
        let snapshot = self.snapshot()
        for member in snapshot.members where snapshot.isActive(member) {
            _ = try await sequencer.members.register(member.description, at: SequencerWriter.now())
            try await sequencer.members.setEnabled(member.description, true)
        }
        for known in await sequencer.members.all() where known.enabled {
            guard let id = try? MemberID(parsing: known.name), !snapshot.isActive(id) else { continue }
            try await sequencer.members.setEnabled(known.name, false)
            logger.warning("member disabled by topology; its subscriptions are closed", metadata: ["member": "\(known.name)"])
            await onCutOff?(known.name)
        }
        // Newly registered members get the history once this node has read its stream past
        // now: then it holds every broadcast sequenced before they became recipients of `ALL`.
        // Each keeps its own time, so that members registered later do not hold back earlier ones.
        let now = SequencerWriter.now()
        var due = false
        for member in try await sequencer.members.awaitingTopologySnapshot() where snapshotsDue[member] == nil {
            snapshotsDue[member] = now
            due = true
        }
        // The writers advance past `now` at once rather than at their next heartbeats.
        if due { await sequencer.writer.advancePastNow() }
    }

    /// The message id of `member`'s topology snapshot: the same on every sequencer node and
    /// after a restart, so the writer sequences it once (`sequencer_submissions`, in the same
    /// database transaction as the event) however many nodes try.
    static func topologySnapshotMessageID(for member: String) -> String { "topology-snapshot/" + member }

    /// Sends every newly registered member the domain's topology history, so that it can answer
    /// "the topology at T" for times before it joined (`MemberTopology`). Called by the follower
    /// once it has applied every broadcast sequenced before the members were registered: the
    /// history then holds every transaction the member will not receive as a broadcast. Only
    /// broadcasts sequenced in between can reach the member before it (it holds them until the
    /// history arrives); nothing else is addressed to a member before it could authenticate.
    private func sendTopologySnapshots(to due: Set<String>) async throws {
        let awaiting = try await sequencer.members.awaitingTopologySnapshot().filter(due.contains)
        guard !awaiting.isEmpty else { return }
        // The members as stored, not as this node last saw them: a member it still holds as
        // disabled would make the history a deliver error, and its message id, used then, would
        // refuse every later attempt as a duplicate.
        try await sequencer.members.load(fresh: true)
        let history = Weft.V1.TopologySnapshot(domain: domain.description, transactions: state.transactions.map(\.wire))
        let content = try Weft.V1.EnvelopeContent(message: .topologySnapshot(history)).serializedBytes()
        for member in awaiting {
            if member != sequencerMember.description {
                let batch = Weft.V1.Batch(envelopes: [.init(content: content, recipients: [member])])
                // No expiry: the submission row stays, so no node can ever send this member a second one.
                let outcome = try await sequencer.send(
                    sender: sequencerMember.description, messageID: Self.topologySnapshotMessageID(for: member), batch: batch,
                    maxSequencingTime: Int64.max, maximumRequestBytes: Int.max)
                switch outcome {
                case .delivered(let timestamp):
                    logger.info(
                        "sent the topology history to a new member",
                        metadata: ["member": "\(member)", "transactions": "\(history.transactions.count)", "timestamp": "\(timestamp)"])
                case .duplicate:
                    break  // another node, or this one before a restart, sent it
                case .deliverError(_, let errorID):
                    logger.error(
                        "could not send the topology history to a new member; it is retried at the next topology change or restart",
                        metadata: ["member": "\(member)", "error_id": "\(errorID)"])
                    continue
                }
            }
            try await sequencer.members.markTopologySnapshotSent(member)
        }
    }

    /// Follows the sequencers' own stream: topology broadcasts, in sequencing order.
    private func startFollowing() {
        guard follower == nil else { return }
        let member = sequencerMember.description
        follower = Task { [weak self] in
            // Acknowledgements that failed in a row: one is due every second, so a database that
            // is away would log one line a second; the first and every 60th are enough.
            var acknowledgementFailures = 0
            while !Task.isCancelled {
                guard let self else { return }
                do {
                    let from = await self.processedCounter + 1
                    for try await item in try await self.sequencer.subscribeItems(member, from: from) {
                        switch item {
                        case .delivery(let delivery): try await self.process(delivery)
                        case .caughtUp(let safe):
                            try await self.sendTopologySnapshotsIfDue(caughtUpTo: safe)
                            await self.caughtUp(to: safe)
                            if await self.acknowledgementDue() {
                                // The sequencers' own stream is processed (and its effects stored) up to here.
                                do {
                                    try await self.sequencer.acknowledge(member, upTo: safe)
                                    acknowledgementFailures = 0
                                } catch {
                                    // Nothing is lost (the next one acknowledges as far), but while
                                    // none succeeds a prune without force is refused.
                                    acknowledgementFailures += 1
                                    if acknowledgementFailures % 60 == 1 {
                                        self.logger.warning(
                                            "cannot record the sequencers' acknowledgement of their own stream; retried every second, and until one succeeds a prune without force names the sequencers as holding it back: check the connection to the database",
                                            metadata: ["error": "\(error)", "failures_in_a_row": "\(acknowledgementFailures)"])
                                    }
                                }
                            }
                        }
                    }
                } catch SequencerReadError.pruned(_, let requested, let firstAvailable) {
                    do {
                        try await self.skipPruned(requested: requested, firstAvailable: firstAvailable)
                    } catch {
                        self.logger.warning("reloading the topology after a prune failed; retrying", metadata: ["error": "\(error)"])
                        try? await Task.sleep(for: .milliseconds(200))
                    }
                } catch {
                    if Task.isCancelled { return }
                    self.logger.warning("following topology broadcasts failed; retrying", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .milliseconds(200))
                }
            }
        }
    }

    /// The sequencers' own stream was pruned before `firstAvailable`: following resumes there.
    /// A node that starts follows from the stream's beginning, and once a prune passed the
    /// sequencers' acknowledgement that beginning is gone; so is what a node lagging behind
    /// the others had still to read (they share the acknowledgement). What it held was applied
    /// by the node that acknowledged it, and the topology store, shared by the nodes, has it:
    /// the state and the members' registrations are read from there again. Only a forced prune
    /// past what no node applied loses broadcasts.
    private func skipPruned(requested: Int64, firstAvailable: Int64) async throws {
        logger.info(
            "the sequencers' own stream is pruned before counter \(firstAvailable); the topology is read from the store again and followed from there",
            metadata: ["requested": "\(requested)", "first_available": "\(firstAvailable)"])
        state = try await store.load(changeDelayMicros: 0)
        try await registerActiveMembers()
        processedCounter = firstAvailable - 1
        wakeChangeWaiters()
    }

    /// Wakes the tasks waiting for the next applied change (`waitUntil`).
    private func wakeChangeWaiters() {
        let waiters = changeWaiters
        changeWaiters = [:]
        for waiter in waiters.values { waiter.resume() }
    }

    /// Applies one delivery of the sequencers' stream; only once it is applied (or found to
    /// change nothing) does following resume after it. A failure (a database error) leaves it
    /// to be read and applied again: skipping it would leave this node's topology without a
    /// transaction the other nodes have, and every later position off by one.
    private func process(_ delivery: StoredDelivery) async throws {
        try await apply(delivery)
        processedCounter = delivery.counter
    }

    private func apply(_ delivery: StoredDelivery) async throws {
        guard let bytes = try await sequencer.reader.batch(of: delivery) else { return }  // a deliver error: nothing to apply
        let batch: Weft.V1.Batch
        do {
            batch = try Weft.V1.Batch(serializedBytes: bytes)
        } catch {
            // The sequencer stores only batches it decoded and serialized again, so this is a
            // damaged row (or one written by another version): a topology change in it would be
            // missing on this node only. Skipped, so that the stream goes on, but said loudly.
            logger.error(
                "a batch on the sequencers' own stream does not decode, so any topology change in it is not applied on this node: check that every sequencer node runs the same version, and the database's integrity",
                metadata: [
                    "timestamp": "\(delivery.timestamp)", "sender_id": "\(delivery.sender)", "message_id": "\(delivery.messageID)",
                    "error": "\(error)",
                ])
            return
        }
        // Only the domain manager's broadcasts (and the sequencers' own, for onboarding) change
        // topology, on every node alike (MemberTopology refuses others): a member that sends a
        // "broadcast" of its own changes nothing here either. Members ask the domain manager.
        let senderName = try await sequencer.members.member(id: delivery.sender)?.name
        let managers = [MemberID(role: .domainManager, identifier: domain).description, sequencerMember.description]
        guard let senderName, managers.contains(senderName) else {
            if batch.envelopes.contains(where: { envelope in
                envelope.recipients.contains(Sequencer.allMembers)
                    && (try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content))?.message.map({ if case .topologyBroadcast = $0 { true } else { false } }) == true
            }) {
                logger.warning(
                    "ignored a topology broadcast not sent by the domain manager or the sequencers", metadata: ["sender_id": "\(delivery.sender)", "error_id": "SEQUENCER_TOPOLOGY_BROADCAST_NOT_FROM_MANAGER"])
            }
            return
        }
        let at = SequencingTimestamp(microsSinceEpoch: delivery.timestamp)
        var changes: [TopologyChange] = []
        var next = state
        for envelope in batch.envelopes where envelope.recipients.contains(Sequencer.allMembers) {
            guard let content = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content),
                case .topologyBroadcast(let broadcast)? = content.message
            else { continue }
            let outcome = next.add(broadcast, sequencedAt: at)
            changes += outcome.changes
            for refused in outcome.refused {
                logger.warning("refused a topology transaction", metadata: ["index": "\(refused.index)", "error": "\(refused.error)", "error_id": "\(refused.error.id)"])
            }
        }
        // A delivery read again after a failure finds its changes applied already; if what
        // failed was registering the members they change, that is done now.
        guard !changes.isEmpty || membersOutdated else { return }
        if !changes.isEmpty {
            try await store.persist(changes)
            state = next
            membersOutdated = true
        }
        try await registerActiveMembers()
        membersOutdated = false
        wakeChangeWaiters()
    }

    private func sendTopologySnapshotsIfDue(caughtUpTo safe: Int64) async throws {
        let due = Set(snapshotsDue.filter { $0.value <= safe }.keys)
        guard !due.isEmpty else { return }
        try await sendTopologySnapshots(to: due)
        for member in due { snapshotsDue[member] = nil }
        guard snapshotsDue.isEmpty else { return }
        let waiters = snapshotWaiters
        snapshotWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once every member registered so far has been sent the topology history.
    public func topologySnapshotsSent() async {
        guard isInitialized, !snapshotsDue.isEmpty else { return }
        await withCheckedContinuation { snapshotWaiters.append($0) }
    }

    private var lastAcknowledgement = ContinuousClock.now - .seconds(10)

    /// Acknowledge the own stream at most once a second (each is a database write).
    private func acknowledgementDue() -> Bool {
        guard ContinuousClock.now - lastAcknowledgement >= .seconds(1) else { return false }
        lastAcknowledgement = .now
        return true
    }

    private func caughtUp(to timestamp: Int64) {
        guard timestamp > caughtUpTo else { return }
        caughtUpTo = timestamp
        let ready = catchUpWaiters.filter { $0.target <= timestamp }
        catchUpWaiters.removeAll { $0.target <= timestamp }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Returns once every topology broadcast sequenced before the call has been applied here:
    /// a member onboarded or allow-listed through another sequencer node is then known. Used
    /// before refusing a member, so a refusal is never just this node lagging.
    /// `advancing` false waits for the writers' heartbeats rather than asking them to advance
    /// now (a watermark write each): how calls without a token catch up once they have had
    /// their share (`UnauthenticatedWorkLimit`).
    public func catchUp(advancing: Bool = true) async {
        // Everything committed before now has a timestamp at or below now (writers' timestamps
        // follow the clock), and the safe point passes now once every writer advanced its
        // watermark: asked to (`advancePastNow`), or within a heartbeat.
        let target = SequencerWriter.now()
        guard isInitialized, target > caughtUpTo else { return }
        if advancing { await sequencer.writer.advancePastNow() }
        guard target > caughtUpTo else { return }  // caught up while this actor waited
        await withCheckedContinuation { catchUpWaiters.append((target, $0)) }
    }

    /// Checks a participant's self-onboarding (`SequencerService.Onboard`): it must be
    /// allow-listed, and `identity` may only establish its own namespace and register its own
    /// keys, validly. Returns its member id and whether it is already active.
    public func checkOnboarding(participant: String, identity: [Weft.V1.SignedTopologyTransaction]) async throws -> (MemberID, alreadyActive: Bool) {
        let id: UniqueIdentifier
        do {
            id = try UniqueIdentifier(parsing: participant)
        } catch {
            throw OnboardingError.badParticipant("\(error)")
        }
        let member = MemberID(role: .participant, identifier: id)
        if state.snapshot(at: SequencingTimestamp(microsSinceEpoch: SequencerWriter.now())).participantState(id) == nil { await catchUp() }
        let now = SequencingTimestamp(microsSinceEpoch: SequencerWriter.now())
        let current = state.snapshot(at: now)
        guard let allowed = current.participantState(id), allowed.permission != .disabled else {
            throw OnboardingError.notAllowListed(participant: participant, domain: domain.description)
        }
        if current.isActive(member) { return (member, true) }
        var next = state
        for wire in identity {
            let signed = try SignedTopologyTransaction(wire)
            switch signed.transaction.mapping?.mapping {
            case .namespaceDelegation(let delegation)? where delegation.namespace == id.namespace.description:
                break
            case .ownerToKeyMapping(let mapping)? where mapping.member == member.description:
                break
            default:
                throw OnboardingError.foreignTransaction("only \(participant)'s namespace delegations and its own key registration may be sent to onboard")
            }
            _ = try next.add(signed, sequencedAt: now)
        }
        guard next.snapshot(at: now.adding(micros: 1)).isActive(member) else {
            throw OnboardingError.incomplete("the identity must establish \(id.namespace)'s namespace and register \(member)'s signing and encryption keys")
        }
        return (member, false)
    }

    /// Returns once `member` is active (or, with `active` false, no longer active) in the
    /// sequencer's topology, or once the calling task is cancelled: how an onboarding step
    /// knows the sequencer has applied it.
    public func waitUntil(_ member: MemberID, isActive active: Bool = true) async {
        await waitUntil { $0.isActive(member) == active }
    }

    /// Returns once the topology satisfies `condition`, checked at each change, or once the
    /// calling task is cancelled (a subscription that ended stops watching its session's key).
    public func waitUntil(_ condition: @Sendable (TopologySnapshot) -> Bool) async {
        while !condition(snapshot()), !Task.isCancelled {
            let waiter = nextChangeWaiter
            nextChangeWaiter += 1
            // A change applied here may be in force only later (its sequencing time, from
            // another sequencer node's clock, ahead of this one's): then the snapshot changes
            // with no change applied, and the condition is checked again at the first such time.
            let now = SequencerWriter.now()
            // The earliest change not in force yet (valid-from times never decrease).
            var earliestPending: Int64?
            for transaction in state.transactions.reversed() {
                guard transaction.validFrom.microsSinceEpoch >= now else { break }
                earliestPending = transaction.validFrom.microsSinceEpoch
            }
            let pending = earliestPending.map { $0 + 1 - now }
            let timer = pending.map { micros in
                Task { [weak self] in
                    try await Task.sleep(for: .microseconds(micros))
                    await self?.resumeCancelled(waiter)
                }
            }
            await withTaskCancellationHandler {
                // Runs on this actor up to the suspension: the waiter is stored before
                // `onCancel`'s task can look for it.
                await withCheckedContinuation { changeWaiters[waiter] = $0 }
            } onCancel: {
                Task { await self.resumeCancelled(waiter) }
            }
            timer?.cancel()
        }
    }

    /// Resumes `waiter` alone (cancelled, or its time came), if it still waits.
    private func resumeCancelled(_ waiter: UInt64) {
        changeWaiters.removeValue(forKey: waiter)?.resume()
    }
}

/// Why a participant's onboarding was refused.
public enum OnboardingError: Error, Equatable, CustomStringConvertible {
    case badParticipant(String)
    case notAllowListed(participant: String, domain: String)
    case foreignTransaction(String)
    case incomplete(String)

    public var description: String {
        switch self {
        case .badParticipant(let reason): "not a participant id: \(reason)"
        case .notAllowListed(let participant, let domain):
            "\(participant) is not allow-listed on \(domain): ask the domain operator to run `weft domain-manager set-state \(participant) --permission submission`"
        case .foreignTransaction(let reason): reason
        case .incomplete(let reason): reason
        }
    }
}

/// Why `InitializeSequencer` was refused.
public enum InitializationError: Error, Equatable, CustomStringConvertible {
    case alreadyInitialized(domain: String)
    case incomplete(String)

    public var description: String {
        switch self {
        case .alreadyInitialized(let domain):
            "the sequencers of \(domain) were initialized with another genesis; a domain's genesis cannot change"
        case .incomplete(let reason):
            "the genesis is incomplete: \(reason)"
        }
    }
}
