public import Logging
public import WeftCrypto
public import WeftSequencer
public import WeftStore
public import WeftTopology
public import WeftTransport
public import WeftWire

/// The domain manager: holds the domain's namespace key, bootstraps the domain
/// (its own, the sequencers' and the mediator's identities, the domain
/// parameters), and decides who takes part: every change is a topology
/// transaction it signs and broadcasts through the sequencer to all members
/// (DESIGN.md §5).
///
/// Its view of the topology is what comes back on its own event stream, in
/// sequencing order, the same order every other member applies: the genesis,
/// its own broadcasts and the participants' onboarding.
public actor DomainManager {
    public nonisolated let domain: UniqueIdentifier
    public nonisolated let member: MemberID
    private let namespaceKey: SigningPrivateKey
    private let memberKey: SigningPrivateKey
    private let store: TopologyStore
    private var state: TopologyState
    private var connection: SequencerConnection?
    private var follower: Task<Void, Never>?
    private var changeWaiters: [CheckedContinuation<Void, Never>] = []
    /// The change under way, and why the sequencer or the topology refused it, if they did:
    /// its message id's deliver error, or a refusal of one of its transactions.
    private var awaited: (messageID: String, hashes: Set<PurposeHash>)?
    private var refusal: RPCError?
    /// The change under way: the next one waits for it, so that its serials follow.
    private var changing: Task<Void, Never>?
    /// How many more broadcasts of members' requests fail before they are sent
    /// (`failNextRequestBroadcast`).
    private var requestBroadcastsFailing: (error: RPCError, remaining: Int)?
    /// Most transactions in one member's topology request; a larger one is refused whole.
    private let requestTransactionsMax: Int
    private let logger: Logger

    public static var migrator: Migrator { TopologyStore.migrator }

    /// `name` becomes the domain id `name::<fingerprint of namespaceKey>`.
    ///
    /// - Parameter requestTransactionsMax: most transactions in one member's topology request
    ///   (`TopologyState.requestTransactionsMaxDefault`, 100); a larger request is refused whole.
    public init(
        name: String, namespaceKey: SigningPrivateKey, memberKey: SigningPrivateKey, database: PostgresDatabase,
        requestTransactionsMax: Int = TopologyState.requestTransactionsMaxDefault, logger: Logger
    ) throws {
        precondition(requestTransactionsMax > 0, "a topology request may hold at least one transaction")
        domain = try UniqueIdentifier(name: name, namespace: namespaceKey.publicKey.fingerprint)
        member = MemberID(role: .domainManager, identifier: domain)
        self.namespaceKey = namespaceKey
        self.memberKey = memberKey
        self.requestTransactionsMax = requestTransactionsMax
        self.logger = logger
        store = TopologyStore(database: database, domain: domain, logger: logger)
        state = TopologyState(domain: domain, changeDelayMicros: 0)
    }

    /// Loads the stored topology; false if the domain was never bootstrapped.
    public func load() async throws -> Bool {
        state = try await store.load(changeDelayMicros: 0)
        return !state.transactions.isEmpty
    }

    /// The identities a domain starts with, signed by the namespace key.
    public func genesis(
        sequencerKeys: [SigningPublicKey], mediator: (signing: SigningPublicKey, encryption: EncryptionPublicKey)?,
        parameters: Weft.V1.DomainParameters
    ) throws -> [Weft.V1.SignedTopologyTransaction] {
        let sequencers = MemberID(role: .sequencer, identifier: domain)
        var mappings: [Weft.V1.TopologyMapping.Mapping] = [
            .rootDelegation(namespaceKey.publicKey),
            .keys(of: member, signing: [memberKey.publicKey]),
            .keys(of: sequencers, signing: sequencerKeys),
            .sequencers([sequencers]),
            .parameters(parameters, of: domain),
        ]
        if let mediator {
            let id = MemberID(role: .mediator, identifier: domain)
            mappings += [.keys(of: id, signing: [mediator.signing], encryption: [mediator.encryption]), .mediator(id)]
        }
        return try mappings.map { mapping in
            try SignedTopologyTransaction(signing: .init(replace: mapping, serial: 1, domain: domain), with: [namespaceKey]).wire
        }
    }

    /// Bootstraps the domain: gives every sequencer node the genesis and records it. Safe to
    /// repeat (a sequencer that has it answers with the same genesis).
    public func bootstrap(sequencers: [RPCClient], genesis: [Weft.V1.SignedTopologyTransaction]) async throws {
        var initializedAt: Weft.V1.Timestamp?
        for sequencer in sequencers {
            let response = try await sequencer.sequencerAdministration.initializeSequencer(.init(domain: domain.description, topology: genesis))
            initializedAt = initializedAt ?? response.initializedAt
        }
        guard let initializedAt else { return }
        let at = SequencingTimestamp(initializedAt)
        var next = state
        var changes: [TopologyChange] = []
        for wire in genesis {
            if let change = try next.add(try SignedTopologyTransaction(wire), sequencedAt: at) { changes.append(change) }
        }
        try await store.persist(changes)
        state = next
        logger.info("domain bootstrapped", metadata: ["domain": "\(domain)", "sequencers": "\(sequencers.count)"])
    }

    /// Connects to the domain's sequencers (moving to another when one fails) and follows the
    /// domain's topology on the manager's own stream, acknowledging what it has stored.
    public func connect(_ endpoints: [SequencerConnection.Endpoint], sequencerKeys: [SigningPublicKey]) {
        let connection = SequencerConnection(
            member: member.description, domain: domain.description, key: memberKey, sequencerKeys: sequencerKeys, endpoints: endpoints,
            logger: logger)
        self.connection = connection
        follower?.cancel()
        follower = Task { [weak self] in
            var pause = Duration.milliseconds(200)
            while !Task.isCancelled {
                do {
                    // From the stored position: the sequencer may have pruned what came before it
                    // (everything before it is acknowledged). An event read again changes
                    // nothing: applying a known transaction is a no-op.
                    guard let from = try await self?.storedNextCounter() else { return }
                    for try await event in connection.events(from: from) {
                        guard let self else { return }
                        // A change not stored stops reading here, unacknowledged: it is read
                        // again (below, or after a restart) instead of pruned unapplied.
                        guard await self.apply(event) else { break }
                        try await self.storeNextCounter(event.counter + 1)
                        if let timestamp = event.timestamp { try? await connection.acknowledge(upTo: timestamp) }
                        pause = .milliseconds(200)
                    }
                } catch {
                    if Task.isCancelled { return }
                    self?.logger.error(
                        "the domain manager's event stream failed; it is read again from the stored position",
                        metadata: ["error": "\(error)", "retry_in": "\(pause)"])
                }
                // A database or stream failure: read again from the stored position, after a pause.
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(10))
            }
        }
    }

    public func stop() {
        follower?.cancel()
        follower = nil
        if let connection { Task { await connection.close() } }
    }

    /// The next counter of the manager's stream to read (0 before the first event is stored).
    private func storedNextCounter() async throws -> UInt64 {
        let domain = PostgresValue.text(self.domain.description)
        let stored = try await store.database.withConnection { connection in
            try connection.execute("SELECT next_counter FROM domain_manager_stream WHERE domain = $1", [domain]).rows.first?
                .first?.int64
        }
        return UInt64(stored ?? 0)
    }

    private func storeNextCounter(_ next: UInt64) async throws {
        let values: [PostgresValue] = [.text(domain.description), .int64(Int64(next))]
        _ = try await store.database.withConnection { connection in
            try connection.execute(
                """
                INSERT INTO domain_manager_stream (domain, next_counter) VALUES ($1, $2)
                ON CONFLICT (domain) DO UPDATE SET next_counter = greatest(domain_manager_stream.next_counter, excluded.next_counter)
                """, values)
        }
    }

    /// Applies the topology of `event`; false if its changes could not be stored.
    private func apply(_ event: Weft.V1.SequencedEvent) async -> Bool {
        if case .deliverError(let error)? = event.event {
            // A broadcast of this manager the sequencer did not deliver (too large for the
            // domain's max request size, its max sequencing time passed…): its change fails.
            let errorID = error.reason?.errorID ?? "SEQUENCER_REFUSED"
            logger.error(
                "the sequencer refused a submission of the domain manager",
                metadata: ["message_id": "\(error.messageID)", "error_id": "\(errorID)", "error": "\(error.reason?.message ?? "")"])
            if awaited?.messageID == error.messageID {
                refusal = RPCError(
                    .failedPrecondition,
                    "the sequencer did not deliver the change: \(error.reason?.message ?? "") [\(errorID)]; a retry of the same change is refused as a duplicate until the sequencer prunes, so change something or wait",
                    errorID: errorID)
                wakeWaiters()
            }
            return true
        }
        guard case .deliver(let deliver)? = event.event, let at = event.timestamp.map(SequencingTimestamp.init) else { return true }
        var next = state
        var changes: [TopologyChange] = []
        for envelope in deliver.batch?.envelopes ?? [] {
            guard let content = try? Weft.V1.EnvelopeContent(serializedBytes: envelope.content) else { continue }
            if case .topologyRequest(let request)? = content.message {
                // A request whose broadcast failed stops reading here, unacknowledged: it is
                // read again and broadcast again, instead of acknowledged and lost (its sender's
                // retry is the same message, which the sequencer refuses as a duplicate).
                guard await handle(request, from: deliver.sender, sequencedAt: at) else { return false }
                continue
            }
            guard case .topologyBroadcast(let broadcast)? = content.message else { continue }
            // Only its own broadcasts and the sequencers' (onboarding) change topology, as on
            // every other node; a member's "broadcast" changes nothing anywhere.
            guard deliver.sender == member.description || deliver.sender == MemberID(role: .sequencer, identifier: domain).description else {
                logger.warning(
                    "ignored a topology broadcast not sent by the domain manager or the sequencers",
                    metadata: ["sender": "\(deliver.sender)", "error_id": "DOMAIN_MANAGER_BROADCAST_NOT_FROM_DOMAIN"])
                continue
            }
            let outcome = next.add(broadcast, sequencedAt: at)
            changes += outcome.changes
            for refused in outcome.refused {
                logger.warning("refused a broadcast topology transaction", metadata: ["error": "\(refused.error)", "error_id": "\(refused.error.id)"])
                if deliver.sender == member.description, let awaited, broadcast.transactions.indices.contains(refused.index),
                    let transaction = try? SignedTopologyTransaction(broadcast.transactions[refused.index]),
                    awaited.hashes.contains(transaction.hash)
                {
                    refusal = RPCError(.failedPrecondition, "\(refused.error)", errorID: refused.error.id)
                    wakeWaiters()
                }
            }
        }
        guard !changes.isEmpty else { return true }
        do {
            try await store.persist(changes)
            state = next
        } catch {
            logger.error(
                "cannot persist topology changes; the domain manager stops reading its stream, and a restart reads this event again",
                metadata: ["error": "\(error)"])
            return false
        }
        let waiters = changeWaiters
        changeWaiters = []
        for waiter in waiters { waiter.resume() }
        return true
    }

    /// A member asks for its own transactions to be broadcast (`TopologyTransactionsRequest`):
    /// this release accepts a participant's hostings of parties in its own namespace on itself
    /// (`TopologyState.transactionsToBroadcast`). A request is broadcast whole, unchanged, or
    /// refused whole and logged (so is one with more than `requestTransactionsMax`
    /// transactions): it is one intent of its member, who learns of a refusal only as its change
    /// timing out. Transactions already accepted (a replayed stream) are left out. False if the
    /// broadcast failed: the request is to be read again.
    private func handle(_ request: Weft.V1.TopologyTransactionsRequest, from sender: String, sequencedAt at: SequencingTimestamp) async -> Bool {
        var logger = self.logger
        logger[metadataKey: "sender"] = "\(sender.prefix(200))"
        let accepted: [SignedTopologyTransaction]
        do throws(TopologyRequestRefusal) {
            accepted = try state.transactionsToBroadcast(for: request, from: sender, transactionsMax: requestTransactionsMax)
        } catch {
            logger.warning(
                "refused a topology request; none of its transactions is broadcast",
                metadata: ["reason": "\(error)", "error_id": "\(error.id)", "transactions": "\(request.transactions.count)"])
            return true
        }
        guard !accepted.isEmpty, let connection else { return true }
        do {
            if let failing = requestBroadcastsFailing {
                requestBroadcastsFailing = failing.remaining > 1 ? (failing.error, failing.remaining - 1) : nil
                throw failing.error
            }
            // One broadcast per request: the request read again sends it under the same message
            // id (sequenced once), while a participant's new request for the same hosting, after
            // a broadcast the sequencer refused or let expire, gets one of its own. Broadcasting
            // a transaction twice is harmless: the second is known and changes nothing.
            try await broadcast(accepted, over: connection, messageID: Self.messageID(accepted) + "-\(at.microsSinceEpoch)")
            logger.info("broadcast a participant's topology request", metadata: ["transactions": "\(accepted.count)"])
        } catch let error as RPCError where error.errorID == "SEQUENCER_DUPLICATE_MESSAGE_ID" {
            // Read again after a failure whose earlier attempt was sequenced after all: the
            // stream brings that broadcast next.
            logger.info("a participant's topology request was broadcast before", metadata: ["transactions": "\(accepted.count)"])
        } catch {
            guard Self.mayPass(error) else {
                // A refusal that a retry would meet again (too large, invalid): reading the
                // request again for ever would stop every change behind it. It is lost, said so.
                logger.error(
                    "cannot broadcast a participant's topology request, and a retry would be refused alike; the participant's change times out",
                    metadata: ["error": "\(error)", "error_id": "DOMAIN_MANAGER_BROADCAST_REFUSED"])
                return true
            }
            logger.error(
                "cannot broadcast a participant's topology request; the request is read again and broadcast once the sequencer takes it",
                metadata: ["error": "\(error)", "error_id": "DOMAIN_MANAGER_BROADCAST_FAILED"])
            return false
        }
        return true
    }

    /// Whether a failed send may pass when tried again: no sequencer answered, or one that did
    /// may have sequenced it (its answer was lost), or a deadline passed.
    private static func mayPass(_ error: any Error) -> Bool {
        guard let error = error as? RPCError else { return true }  // a connection's own failure
        return error.code == .unavailable || error.code == .deadlineExceeded
            || [SequencerConnection.outcomeUnknown, "SEQUENCER_ALL_UNAVAILABLE"].contains(error.errorID)
    }

    /// The next `times` broadcasts of members' topology requests fail before they are sent: by
    /// default as one whose sequencer was away for longer than its retries (for the test that
    /// the request is broadcast all the same), or with `error` (a refusal a retry would meet
    /// again, for the test that it stops nothing).
    @_spi(Testing) public func failNextRequestBroadcast(
        with error: RPCError = RPCError(.unavailable, "a broadcast failed on purpose (failNextRequestBroadcast)", errorID: "TEST_BROADCAST_FAILED"),
        times: Int = 1
    ) {
        requestBroadcastsFailing = times > 0 ? (error, times) : nil
    }

    /// Sends `transactions` to every member (`ALL`); the message id names them, so a retried
    /// send of the same transactions is sequenced once.
    private func broadcast(
        _ transactions: [SignedTopologyTransaction], over connection: SequencerConnection, messageID: String? = nil
    ) async throws {
        let content = Weft.V1.EnvelopeContent(message: .topologyBroadcast(.init(domain: domain.description, transactions: transactions.map(\.wire))))
        let batch = Weft.V1.Batch(envelopes: [.init(content: try content.serializedBytes(), recipients: [Sequencer.allMembers])])
        try await connection.send(batch, messageID: messageID ?? Self.messageID(transactions))
    }

    private static func messageID(_ transactions: [SignedTopologyTransaction]) -> String {
        "topology-" + String(transactions.map(\.hash.description).joined(separator: "+").suffix(64))
    }

    /// Waits for the next applied change, or until `deadline`.
    private func waitForChange(until deadline: ContinuousClock.Instant) async {
        let timer = Task { [weak self] in
            try? await Task.sleep(until: deadline)
            await self?.wakeWaiters()
        }
        await withCheckedContinuation { changeWaiters.append($0) }
        timer.cancel()
    }

    private func wakeWaiters() {
        let waiters = changeWaiters
        changeWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    public func snapshot() -> TopologySnapshot {
        state.snapshot(at: SequencingTimestamp(microsSinceEpoch: Int64.max - 1))
    }

    /// Signs `mappings` with the namespace key (serials from the current state), checks them,
    /// broadcasts them to all members and returns once they came back on the stream, with the
    /// time they are in force after (their `valid_from`). One change at a time: the next takes
    /// its serials once this one is applied, so two changes of one mapping never share a serial.
    public func change(_ mappings: [Weft.V1.TopologyMapping.Mapping]) async throws -> SequencingTimestamp {
        try await change { _ in mappings }
    }

    /// `change`, with the mappings made from the topology as it is when this change's turn
    /// comes (every earlier change applied): a change that keeps part of a mapping as it is
    /// (set-state without a trust level keeps the participant's) must read it then, not when
    /// it was asked for, or it undoes a change made in between.
    public func change(
        computing mappings: (TopologySnapshot) throws -> [Weft.V1.TopologyMapping.Mapping]
    ) async throws -> SequencingTimestamp {
        let previous = changing
        let (done, finish) = AsyncStream<Void>.makeStream()
        changing = Task { for await _ in done {} }
        changesStarted += 1
        defer { finish.finish() }
        await previous?.value
        // A caller that gave up while it waited (its deadline) changes nothing.
        try Task.checkCancellation()
        return try await changeAlone(try mappings(snapshot()))
    }

    /// Changes asked for so far (each counted as it joins the queue), for tests that need one
    /// queued before they ask for the next.
    @_spi(Testing) public private(set) var changesStarted = 0

    private func changeAlone(_ mappings: [Weft.V1.TopologyMapping.Mapping]) async throws -> SequencingTimestamp {
        guard let connection else {
            throw RPCError(.unavailable, "the domain manager is not connected to a sequencer yet; retry shortly", errorID: "DOMAIN_MANAGER_NOT_CONNECTED")
        }
        var next = state
        var transactions: [SignedTopologyTransaction] = []
        let probe = SequencingTimestamp(microsSinceEpoch: Int64.max - 2)
        for mapping in mappings {
            let key = try TopologyMappingKey(mapping, domain: domain)
            let signed = try SignedTopologyTransaction(
                signing: .init(replace: mapping, serial: next.nextSerial(for: key), domain: domain), with: [namespaceKey])
            _ = try next.add(signed, sequencedAt: probe)  // refuses here what every member would refuse
            transactions.append(signed)
        }
        let hashes = Set(transactions.map(\.hash))
        let messageID = Self.messageID(transactions)
        awaited = (messageID, hashes)
        refusal = nil
        defer { awaited = nil }
        try await broadcast(transactions, over: connection)
        let deadline = ContinuousClock.now + .seconds(30)
        while !hashes.isSubset(of: Set(state.transactions.map(\.transaction.hash))) {
            if let refusal { throw refusal }
            guard ContinuousClock.now < deadline else {
                throw RPCError(
                    .deadlineExceeded, "the change was sequenced but has not come back on the domain manager's stream within 30 s; check the sequencers and the domain manager's log",
                    errorID: "DOMAIN_MANAGER_CHANGE_UNCONFIRMED")
            }
            await waitForChange(until: deadline)
        }
        return state.transactions.filter { hashes.contains($0.transaction.hash) }.map(\.validFrom).max() ?? probe
    }

    /// The transactions in force at `timestamp` (all accepted ones when nil).
    public func transactions(asOf timestamp: SequencingTimestamp?) -> [StoredTopologyTransaction] {
        guard let timestamp else { return state.transactions }
        return state.transactions(inForceAt: timestamp)
    }

    /// The domain's members as the topology has them now.
    public func members() -> [Weft.V1.MemberInfo] {
        let snapshot = self.snapshot()
        var infos: [Weft.V1.MemberInfo] = []
        for participant in snapshot.participants {
            let member = MemberID(role: .participant, identifier: participant.participant)
            infos.append(.init(
                member: member.description, role: .participant, permission: participant.permission, trustLevel: participant.trustLevel,
                registered: !snapshot.signingKeys(of: member).isEmpty))
        }
        for member in snapshot.members where member.role != .participant {
            infos.append(.init(member: member.description, role: member.role, registered: snapshot.isActive(member)))
        }
        return infos.sorted { $0.member < $1.member }
    }
}
