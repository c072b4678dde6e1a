public import Logging
import Synchronization
public import WeftCrypto
public import WeftStore
import WeftWire

/// One sequencer node's core: members, the writer, and readers over the
/// domain's shared database. The RPC service (`SequencerServiceProvider`) and
/// authentication sit on top of it.
public final class Sequencer: Sendable {
    /// This node's number among the domain's sequencer nodes (0…31): part of every timestamp it assigns.
    public let node: Int16
    let database: PostgresDatabase
    let writer: SequencerWriter
    let safePoint: SafePoint
    let reader: SequencerReader
    let members: MemberDirectory
    /// The key and domain blocks are signed with, once the service has set them.
    let signing = BlockSigning()
    /// Recent signed blocks, shared by the writer (which adds its own) and the subscriptions.
    let blocks: BlockCache
    private let logger: Logger
    private let background: BackgroundTasks
    /// Wakes this node when another node commits (docs/sequencer.md §3); set by `start`.
    private let listener = Mutex<PostgresListener?>(nil)

    /// Timing of the node's background work.
    public struct Timing: Sendable {
        /// An idle node refreshes its heartbeat and advances its watermark this often. Not what
        /// makes other nodes' events prompt: a node advances its watermark at once when notified
        /// of another node's events; this is the fallback for a lost notification, and keeps the
        /// node from being marked offline, so it must be well below `offlineAfter`.
        public var heartbeatInterval: Duration = .milliseconds(500)
        /// Another node whose heartbeat is older than this is marked offline, so readers stop
        /// waiting for it. Larger than any pause a healthy node takes (GC-free Swift: seconds).
        public var offlineAfter: Duration = .seconds(5)
        /// While a subscription waits, readers look for other nodes' commits this often even
        /// without a notification (one lost while the listening connection was down).
        public var pollInterval: Duration = .milliseconds(100)
        /// Under load, a group commit starts no sooner than this long times the number of online
        /// sequencer nodes after the previous one began, unless 8 submissions per online node
        /// wait: groups grow instead of the node committing as often as PostgreSQL lets it, and
        /// every group costs as much again (a transaction, a block signature, each member's
        /// verification of it, a read and a delivery per subscription), on every node of the
        /// domain (each reads and delivers every commit's events for its subscriptions, and
        /// fetches the other nodes' blocks). Times the nodes, so that the domain as a whole
        /// commits about as often as one node would when the load is spread over the nodes.
        /// 4 ms: a domain busy with transactions (~650 submissions/s, four per transfer) then
        /// commits ~2.4 submissions per group instead of ~1.6, for 9 % less CPU per transfer
        /// (docs/benchmarks.md, session 21). Zero commits each group as soon as the previous one
        /// is done.
        public var groupCommitSpacing: Duration = .milliseconds(4)
        /// What "under load" means for `groupCommitSpacing`: the last two groups had at least
        /// this many submissions each, and followed each other within twice the spacing.
        /// Otherwise the next group starts at once, so that a lightly loaded node adds no
        /// latency (a transaction passes the sequencer three times in a row: request, responses,
        /// verdict), also after one group of a transaction's responses, which arrive together.
        public var groupCommitSpacingFromGroupSize = 2
        /// How long `start` keeps trying for the node number's lock while another session holds
        /// it (docs/sequencer.md §3, item 6); nil: `nodeLockIdleTimeout` and a second. A
        /// predecessor killed on a live host lets go at once (the server sees its socket close),
        /// one whose host vanished once its session idled out; a second live process with the
        /// same number keeps the lock, and `start` then fails with an error that says so.
        public var nodeLockWait: Duration?
        /// The server ends the node lock's session after this long without a check: a holder
        /// that vanished without closing its connection frees the number then. Three times
        /// `offlineAfter`; a live holder checks every heartbeat.
        var nodeLockIdleTimeout: Duration { offlineAfter * 3 }
        public init() {}

        /// The heartbeat, at least ten times per `offlineAfter`: a node configured with a short
        /// offline timeout (tests use 1 s) is not marked offline for one late heartbeat.
        var effectiveHeartbeatInterval: Duration { min(heartbeatInterval, offlineAfter / 10) }
    }

    public init(node: Int16, database: PostgresDatabase, timing: Timing = Timing(), logger: Logger = Logger(label: "weft.sequencer")) {
        self.node = node
        self.database = database
        self.logger = logger
        let safePoint = SafePoint(database: database, pollInterval: timing.pollInterval)
        self.safePoint = safePoint
        let blocks = BlockCache(database: database)
        self.blocks = blocks
        let fanOut = DeliveryFanOut(database: database, safePoint: safePoint, node: node, blocks: blocks)
        writer = SequencerWriter(
            node: node, database: database, signing: signing, blocks: blocks, groupSpacing: timing.groupCommitSpacing,
            spacedFromGroupSize: timing.groupCommitSpacingFromGroupSize, nodeLockIdleTimeout: timing.nodeLockIdleTimeout, logger: logger
        ) { commit in
            guard let commit else { return await safePoint.poke() }
            // The deliveries first: the shared reader, woken by the safe point, then finds them
            // covered instead of reading them.
            await fanOut.committedLocally(commit)
            await safePoint.committed(commit.safePoint)
        }
        reader = SequencerReader(database: database, safePoint: safePoint, fanOut: fanOut)
        members = MemberDirectory(database: database)
        background = BackgroundTasks(timing: timing)
    }

    /// Signs every group commit from now on as one block with `key` for `domain`, instead of
    /// each event as it is served (docs/sequencer.md §5). The service sets it.
    public func signBlocks(with key: SigningPrivateKey, domain: String) {
        signing.set(.init(key: key, domain: domain))
    }

    /// The schema this node needs.
    public static var migrator: Migrator { SequencerSchema.migrator }

    /// Checks the schema, joins the writers and starts the heartbeat. Throws
    /// `MigrationError.pending` if the database needs `weft db migrate` first.
    public func start() async throws {
        try await database.withConnection { try SequencerSchema.migrator.requireCurrent($0) }
        try await members.load()
        try await startListening()
        do {
            let timing = background.timing
            try await comeOnline(waitingUpTo: timing.nodeLockWait ?? timing.nodeLockIdleTimeout + .seconds(1))
        } catch {
            await listener.withLock { $0 }?.stop()
            await writer.closeNodeLock()
            throw error
        }
        let writer = self.writer
        let logger = self.logger
        let node = self.node
        background.start { timing in
            var lastStaleCheck = ContinuousClock.now
            let interval = timing.effectiveHeartbeatInterval
            // Whether another process holds this node's number: said once, not every heartbeat.
            var displaced = false
            // Failures in a row of a rejoin and of marking silent nodes offline: both are tried
            // again at every heartbeat, so they are logged the first time and then every 20th.
            var rejoinFailures = 0
            var staleCheckFailures = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                do {
                    if displaced {
                        logger.debug("trying to take this sequencer node's number back", metadata: ["sequencer_node": "\(node)"])
                        try await writer.comeOnline()
                        displaced = false
                        logger.notice("this process is the node's writer again", metadata: ["sequencer_node": "\(node)"])
                    } else {
                        try await writer.heartbeat()
                    }
                } catch SequencerWriterError.markedOffline {
                    logger.warning(
                        "this sequencer node is offline (another node marked it offline, or another process took over its number); rejoining",
                        metadata: ["sequencer_node": "\(node)"])
                    do {
                        try await writer.comeOnline()
                        rejoinFailures = 0
                    } catch SequencerWriterError.nodeNumberInUse(_, let holder) {
                        displaced = true
                        Self.logDisplaced(logger, node: node, holder: holder)
                    } catch where !Task.isCancelled {
                        // Until it rejoins, this node sequences nothing (sends get
                        // SEQUENCER_WRITER_OFFLINE); the next heartbeat tries again.
                        rejoinFailures += 1
                        if rejoinFailures % 20 == 1 {
                            logger.warning(
                                "this sequencer node cannot rejoin the writers; it sequences nothing until it does and tries again at every heartbeat: check its connection to the database",
                                metadata: ["sequencer_node": "\(node)", "error": "\(error)", "failures_in_a_row": "\(rejoinFailures)"])
                        }
                    } catch {
                        break  // stopping
                    }
                } catch SequencerWriterError.nodeNumberInUse(_, let holder) {
                    // This process lost the node's lock (with its session) and another took it.
                    if !displaced {
                        displaced = true
                        Self.logDisplaced(logger, node: node, holder: holder)
                    }
                } catch where !Task.isCancelled {
                    logger.warning("heartbeat failed", metadata: ["sequencer_node": "\(node)", "error": "\(error)"])
                } catch {
                    break  // stopping
                }
                if ContinuousClock.now - lastStaleCheck > timing.offlineAfter / 5 {
                    lastStaleCheck = .now
                    do {
                        let stale = try await writer.markStaleWritersOffline(olderThan: timing.offlineAfter)
                        staleCheckFailures = 0
                        if !stale.isEmpty {
                            logger.warning("marked silent sequencer nodes offline", metadata: ["nodes": "\(stale)"])
                        }
                    } catch where !Task.isCancelled {
                        // Another node may mark them; if none can, the readers of every node wait
                        // for a silent node's watermark until one does.
                        staleCheckFailures += 1
                        if staleCheckFailures % 20 == 1 {
                            logger.warning(
                                "cannot check for silent sequencer nodes to mark offline; if one stopped, subscriptions wait for it until a node can: check this node's connection to the database",
                                metadata: ["sequencer_node": "\(node)", "error": "\(error)", "failures_in_a_row": "\(staleCheckFailures)"])
                        }
                    } catch {
                        break  // stopping
                    }
                }
            }
        }
    }

    private static func logDisplaced(_ logger: Logger, node: Int16, holder: String?) {
        logger.error(
            "another process holds this sequencer node's number now; this process sequences nothing while it does: stop one of the two",
            metadata: ["sequencer_node": "\(node)", "holder": "\(holder ?? "unknown")"])
    }

    /// Joins the writers, trying for the node's lock until `wait` has passed (a killed
    /// predecessor's session may take a moment to end); throws `nodeNumberInUse` if another
    /// process still holds it then.
    private func comeOnline(waitingUpTo wait: Duration) async throws {
        let deadline = ContinuousClock.now + wait
        var attempts = 0
        while true {
            do {
                return try await writer.comeOnline()
            } catch SequencerWriterError.nodeNumberInUse(_, let holder) where ContinuousClock.now < deadline {
                attempts += 1
                if attempts == 1 {
                    logger.notice(
                        "sequencer node number \(node) is held by another session; waiting for it to end",
                        metadata: ["sequencer_node": "\(node)", "holder": "\(holder ?? "unknown")", "waiting_up_to": "\(wait)"])
                }
                try await Task.sleep(for: .milliseconds(50))
            } catch let error as SequencerWriterError {
                logger.error("\(error)", metadata: ["sequencer_node": "\(node)", "waited": "\(wait)"])
                throw error
            }
        }
    }

    /// Listens for the other nodes' notifications: their events make this node's watermark
    /// advance past them at once, and any change of theirs makes the safe point look again.
    /// After the listening connection was lost (and notifications with it), both look again
    /// as soon as it is back.
    private func startListening() async throws {
        let safePoint = self.safePoint
        let writer = self.writer
        let node = self.node
        let listener = try PostgresListener(url: database.url, channels: [WriterNotification.channel], logger: logger) { event in
            switch event {
            case .listening:
                Task {
                    await safePoint.poke()
                    try? await writer.heartbeat()
                }
            case .notification(let notification):
                guard let message = WriterNotification(payload: notification.payload), message.node != node else { return }
                Task {
                    switch message {
                    case .events(_, let watermark), .needed(_, let watermark): await writer.otherWriterCommitted(upTo: watermark)
                    case .watermark, .joined, .left: break
                    }
                    await safePoint.poke()
                }
            }
        }
        let previous = self.listener.withLock { current in
            defer { current = listener }
            return current
        }
        await previous?.stop()  // started twice: one listener is enough
        listener.start()
    }

    /// Stops the heartbeat and leaves the writers, so readers stop waiting for this node.
    public func stop() async {
        await background.stop()
        let listener = self.listener.withLock { current in
            defer { current = nil }
            return current
        }
        await listener?.stop()
        do {
            try await writer.goOffline()
        } catch {
            // Not fatal: the other nodes mark this one offline once its heartbeat is older than
            // `offlineAfter`. Until then their subscriptions wait for its watermark.
            logger.warning(
                "this sequencer node could not leave the writers as it stopped; the other nodes mark it offline after offline-after (5 s by default), and their subscriptions wait for it until then",
                metadata: ["sequencer_node": "\(node)", "error": "\(error)"])
        }
        await reader.fanOut.close()
        await safePoint.close(CancellationError())
    }
}

extension Sequencer {
    /// Limits the service applies before sequencing.
    public static let defaultMaximumRequestBytes = 1 << 20
    /// The recipient that stands for every member at sequencing time.
    public static let allMembers = "ALL"

    /// Records that `member` has processed its events up to `timestamp` (never moves back).
    func acknowledge(_ member: String, upTo timestamp: Int64) async throws {
        try await database.withConnection { connection in
            _ = try connection.execute(
                "UPDATE sequencer_members SET acknowledged_ts = greatest(coalesce(acknowledged_ts, $2), $2) WHERE member = $1",
                [.text(member), .int64(timestamp)])
        }
    }

    /// Registers `member`: it receives events sequenced from now on.
    func register(_ member: String) async throws -> MemberDirectory.Member {
        try await members.register(member, at: SequencerWriter.now())
    }

    /// Sequences `batch` from `sender` (already authenticated): checks the sender and
    /// recipients, then hands it to the writer. An empty batch is a time proof: only its sender
    /// receives it, as a pure receipt whose timestamp tells it the sequencer's time. Problems with the recipients or the size are
    /// sequenced as a deliver error to the sender, so it learns of them in its stream.
    ///
    /// `mayAddressAll`: whether the sender may name `ALL` (the domain manager and the sequencers,
    /// for topology broadcasts; the service decides). Nobody else has a reason to, and it is the
    /// one recipient whose cost does not show in the request: each member's view is a copy of the
    /// whole batch (and a leaf hashed over it), so a 1 MiB batch to `ALL` in a domain of 500
    /// members is half a GiB of views, leaves and deliveries. Refused as
    /// `SEQUENCER_BROADCAST_NOT_ALLOWED` before any member is looked up.
    func send(
        sender: String, messageID: String, batch: Weft.V1.Batch, maxSequencingTime: Int64, traceparent: String = "",
        omitReceipt: Bool = false, maximumRequestBytes: Int = Sequencer.defaultMaximumRequestBytes, mayAddressAll: Bool = false
    ) async throws -> SequencingOutcome {
        guard let from = try await members.member(named: sender), from.enabled else {
            throw SequencerError.unknownSender(sender)
        }
        let bytes = try batch.serializedBytes()
        var content = Submission.Content.deliver(batch: bytes, recipients: [], receipt: true)
        var recipients = Set<Int32>()
        var names: [Int32: String] = [from.id: from.name]
        var unknown: [String] = []
        // Each name once, however many envelopes (or times in one) name it.
        var requested = Set(batch.envelopes.flatMap(\.recipients))
        let addressesAllWithoutRight = !mayAddressAll && requested.contains(Self.allMembers)
        if addressesAllWithoutRight {
            // A member's own bug, or one trying its luck: either way its operator should know.
            logger.warning(
                "refused a batch addressed to ALL from a member that is neither the domain manager nor a sequencer; it gets a deliver error (SEQUENCER_BROADCAST_NOT_ALLOWED) and should name its recipients",
                metadata: ["member": "\(sender)", "message_id": "\(messageID)", "error_id": "SEQUENCER_BROADCAST_NOT_ALLOWED"])
            requested = []  // refused whole: nobody to look up
        } else if requested.remove(Self.allMembers) != nil {
            // Read from the database, not this node's cache: a member another sequencer node
            // registered a moment ago (its onboarding) must get the broadcasts that follow —
            // the demo's third participant once never saw its party's hosting.
            for member in try await members.allFromDatabase() where member.enabled {
                recipients.insert(member.id)
                names[member.id] = member.name
            }
        }
        let found = try await members.members(named: requested)
        for name in requested {
            if let member = found[name], member.enabled {
                recipients.insert(member.id)
                names[member.id] = member.name
            } else {
                unknown.append(name)
            }
        }
        if addressesAllWithoutRight {
            content = .error(
                code: 7, errorID: "SEQUENCER_BROADCAST_NOT_ALLOWED",
                message: "only the domain manager and the sequencers may address ALL (every member); name the recipients instead")
        } else if !unknown.isEmpty {
            content = .error(code: 5, errorID: "SEQUENCER_UNKNOWN_RECIPIENTS", message: "unknown or disabled recipients: \(Array(Set(unknown)).sorted().joined(separator: ", "))")
        } else if bytes.count > maximumRequestBytes {
            content = .error(code: 8, errorID: "SEQUENCER_REQUEST_TOO_LARGE", message: "the batch has \(bytes.count) bytes; the domain allows \(maximumRequestBytes)")
        } else if recipients.isEmpty && !batch.envelopes.isEmpty {
            content = .error(code: 3, errorID: "SEQUENCER_NO_RECIPIENTS", message: "the batch names no recipients")
        } else {
            // A time proof has no recipients: its receipt is all it is.
            content = .deliver(batch: bytes, recipients: recipients.sorted(), receipt: !omitReceipt || recipients.isEmpty)
        }
        var submission = Submission(
            sender: from.id, senderName: from.name, messageID: messageID, content: content, maxSequencingTime: maxSequencingTime,
            traceparent: traceparent)
        if case .deliver(_, let recipients, let receipt) = content, let signer = signing.current {
            // What each member will see, serialized here (concurrently with other submissions)
            // rather than in the writer, which only adds the timestamp.
            for member in SequencerWriter.deliveryMembers(sender: from.id, recipients: recipients, receipt: receipt) {
                guard let name = names[member] else { continue }
                submission.views[member] = try EventView.body(
                    domain: signer.domain, recipient: name,
                    event: EventView.deliver(sender: from.name, messageID: messageID, batch: batch, traceparent: traceparent, recipient: name))
            }
        }
        return try await writer.sequence(submission)
    }

    /// The member's events from `counter` on, as they become safe to read.
    func subscribe(_ member: String, from counter: Int64) async throws -> AsyncThrowingStream<StoredDelivery, any Error> {
        guard let record = try await members.member(named: member), record.enabled else { throw SequencerError.unknownSender(member) }
        return reader.deliveries(member: record.id, memberName: member, from: counter)
    }

    /// The member's stream with progress markers (for the sequencer's own topology follower).
    func subscribeItems(_ member: String, from counter: Int64) async throws -> AsyncThrowingStream<SequencerReader.Item, any Error> {
        guard let record = try await members.member(named: member), record.enabled else { throw SequencerError.unknownSender(member) }
        return reader.items(member: record.id, memberName: member, from: counter)
    }
}

/// What a prune removed.
public struct PruneOutcome: Sendable, Equatable {
    public let eventsRemoved: Int
    /// Members that had not acknowledged the pruned events (forced prune only): they must
    /// recover from a peer's snapshot.
    public let membersCutOff: [String]
}

/// Why a prune was refused.
public enum PruneError: Error, Equatable, CustomStringConvertible {
    case notAcknowledged(members: [String], safeUpTo: Int64?)
    case inTheFuture(requested: Int64, safePoint: Int64)

    public var description: String {
        switch self {
        case .notAcknowledged(let members, let safe):
            "members \(members.joined(separator: ", ")) have not acknowledged events up to that time"
                + (safe.map { "; everything up to \($0) is acknowledged by all" } ?? "; some never acknowledged")
                + "; prune less, wait, or force it (those members then recover from a peer's snapshot)"
        case .inTheFuture(let requested, let safe):
            "cannot prune up to \(requested): events are only final up to \(safe)"
        }
    }
}

extension Sequencer {
    /// Removes events up to `timestamp` (inclusive) that every enabled member has acknowledged;
    /// with `force`, also those some have not, cutting those members off. Each member's
    /// counters stay what they were: its last pruned counter is recorded, and a subscription
    /// from a pruned counter is refused with the first one still available.
    public func prune(upToInclusive timestamp: Int64, force: Bool) async throws -> PruneOutcome {
        let safe = try await safePoint.refresh()
        guard timestamp <= safe else { throw PruneError.inTheFuture(requested: timestamp, safePoint: safe) }
        let outcome = try await database.transaction { connection in
            // One prune at a time, across sequencer nodes.
            _ = try connection.execute("SELECT pg_advisory_xact_lock(hashtext('weft.sequencer.prune'))")
            let members = try connection.execute("SELECT id::int8, member, enabled, acknowledged_ts FROM sequencer_members").rows.map { row in
                (id: try row[0].int64 ?? 0, name: try row[1].string ?? "", enabled: try row[2].bool ?? false, acknowledged: try row[3].int64)
            }
            let laggards = members.filter { $0.enabled && ($0.acknowledged ?? Int64.min) < timestamp }
            if !laggards.isEmpty && !force {
                let acknowledged = members.filter(\.enabled).compactMap(\.acknowledged)
                throw PruneError.notAcknowledged(members: laggards.map(\.name).sorted(), safeUpTo: laggards.contains { $0.acknowledged == nil } ? nil : acknowledged.min())
            }
            for member in members {
                // The member's last counter at or before `timestamp`, from its nearest checkpoint.
                let base = try connection.execute(
                    "SELECT counter, ts FROM sequencer_counter_checkpoints WHERE member = $1::int8::int4 AND ts <= $2 ORDER BY counter DESC LIMIT 1",
                    [.int64(member.id), .int64(timestamp)]
                ).rows.first.map { (try $0[0].int64 ?? -1, try $0[1].int64 ?? Int64.min) } ?? (-1, Int64.min)
                let counted = try connection.execute(
                    "SELECT count(*)::int8, max(ts) FROM sequencer_deliveries WHERE member = $1::int8::int4 AND ts > $2 AND ts <= $3",
                    [.int64(member.id), .int64(base.1), .int64(timestamp)]
                ).rows[0]
                let count = try counted[0].int64 ?? 0
                guard count > 0 || base.0 >= 0, let last = count > 0 ? try counted[1].int64 : base.1 else { continue }
                let counter = base.0 + count
                _ = try connection.execute(
                    "INSERT INTO sequencer_counter_checkpoints (member, counter, ts) VALUES ($1::int8::int4, $2, $3) ON CONFLICT DO NOTHING",
                    [.int64(member.id), .int64(counter), .int64(last)])
                _ = try connection.execute(
                    """
                    INSERT INTO sequencer_prune_points (member, counter, ts) VALUES ($1::int8::int4, $2, $3)
                    ON CONFLICT (member) DO UPDATE SET counter = greatest(sequencer_prune_points.counter, excluded.counter),
                                                      ts = greatest(sequencer_prune_points.ts, excluded.ts)
                    """, [.int64(member.id), .int64(counter), .int64(last)])
            }
            _ = try connection.execute("DELETE FROM sequencer_deliveries WHERE ts <= $1", [.int64(timestamp)])
            // A block goes with its last events (its timestamp is above all of them).
            _ = try connection.execute("DELETE FROM sequencer_blocks WHERE block_ts <= $1", [.int64(timestamp)])
            let removed = try connection.execute("DELETE FROM sequencer_events WHERE ts <= $1", [.int64(timestamp)]).affectedRowCount ?? 0
            _ = try connection.execute("DELETE FROM sequencer_counter_checkpoints c USING sequencer_prune_points p WHERE c.member = p.member AND c.counter < p.counter")
            _ = try connection.execute("DELETE FROM sequencer_submissions WHERE expires_ts < $1", [.int64(timestamp)])
            return PruneOutcome(eventsRemoved: removed, membersCutOff: laggards.map(\.name).sorted())
        }
        if !outcome.membersCutOff.isEmpty {
            logger.warning("forced prune cut members off; they must recover from a peer's snapshot", metadata: ["members": "\(outcome.membersCutOff)", "up_to": "\(timestamp)"])
        }
        logger.info("pruned", metadata: ["up_to": "\(timestamp)", "events_removed": "\(outcome.eventsRemoved)"])
        return outcome
    }
}

/// Where a sequencer's store stands, for operators.
public struct SequencerStatus: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public let name: String
        public let enabled: Bool
        /// Latest acknowledged timestamp (µs since the epoch).
        public let acknowledged: Int64?
    }

    public let members: [Member]
    /// Oldest and newest stored event timestamps (µs); nil when nothing is stored.
    public let lowerBound: Int64?
    public let upperBound: Int64?
}

extension Sequencer {
    /// Members and the range of stored events.
    public func status() async throws -> SequencerStatus {
        try await database.withConnection { connection in
            let members = try connection.execute("SELECT member, enabled, acknowledged_ts FROM sequencer_members ORDER BY member").rows.map { row in
                SequencerStatus.Member(name: try row[0].string ?? "", enabled: try row[1].bool ?? false, acknowledged: try row[2].int64)
            }
            let bounds = try connection.execute("SELECT min(ts), max(ts) FROM sequencer_events").rows[0]
            return SequencerStatus(members: members, lowerBound: try bounds[0].int64, upperBound: try bounds[1].int64)
        }
    }
}

/// Why the sequencer refused a request outright (nothing sequenced).
enum SequencerError: Error, Equatable, CustomStringConvertible {
    case unknownSender(String)

    var description: String {
        switch self {
        case .unknownSender(let member):
            "\(member) is not an active member of this domain; ask the domain operator to allow-list it (weft domain-manager set-state)"
        }
    }
}

/// The node's long-running background task.
final class BackgroundTasks: Sendable {
    let timing: Sequencer.Timing
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(timing: Sequencer.Timing) { self.timing = timing }

    func start(_ body: @escaping @Sendable (Sequencer.Timing) async -> Void) {
        let timing = self.timing
        task.withLock { $0 = Task { await body(timing) } }
    }

    func stop() async {
        let running = task.withLock { task in
            defer { task = nil }
            return task
        }
        running?.cancel()
        await running?.value
    }
}

/// Members known to the sequencer, by name and by small id.
actor MemberDirectory {
    struct Member: Sendable, Equatable {
        let id: Int32
        let name: String
        var enabled: Bool
        let registeredAt: Int64
    }

    private let database: PostgresDatabase
    private var byName: [String: Member] = [:]
    private var byID: [Int32: Member] = [:]
    /// The read of the table in flight: callers that miss meanwhile (every subscription serving
    /// the first event of a member another node registered) share it instead of each reading.
    private var loading: Task<[Member], any Error>?

    init(database: PostgresDatabase) { self.database = database }

    /// Reads the table, or joins a read in flight; `fresh`: a read of its own (one in flight may
    /// have started before the member looked for was registered).
    func load(fresh: Bool = false) async throws {
        let task: Task<[Member], any Error>
        if let loading, !fresh {
            task = loading
        } else {
            let database = self.database
            task = Task {
                try await database.withConnection { connection in
                    try connection.execute("SELECT id::int8, member, enabled, registered_ts FROM sequencer_members").rows.map { row in
                        Member(id: Int32(try row[0].int64 ?? 0), name: try row[1].string ?? "", enabled: try row[2].bool ?? false, registeredAt: try row[3].int64 ?? 0)
                    }
                }
            }
            loading = task
        }
        defer { if loading == task { loading = nil } }
        for member in try await task.value { remember(member) }
    }

    private func remember(_ member: Member) {
        byName[member.name] = member
        byID[member.id] = member
    }

    /// The members named `names` that exist (enabled or not), reading the table at most once,
    /// fresh, and only if one is not known here: a batch naming thousands of recipients, or
    /// names that do not exist, costs one read, not two per name.
    func members(named names: Set<String>) async throws -> [String: Member] {
        if names.contains(where: { byName[$0] == nil }) { try await load(fresh: true) }
        var found: [String: Member] = [:]
        for name in names {
            if let member = byName[name] { found[name] = member }
        }
        return found
    }

    func member(named name: String) async throws -> Member? {
        if let member = byName[name] { return member }
        try await load()  // registered by another sequencer node since
        if let member = byName[name] { return member }
        try await load(fresh: true)
        return byName[name]
    }

    /// The member with small id `id`, reading the table again when it is not known here: another
    /// sequencer node registered it since (an event it sequenced names it as sender).
    func member(id: Int32) async throws -> Member? {
        if let member = byID[id] { return member }
        try await load()
        if let member = byID[id] { return member }
        try await load(fresh: true)
        return byID[id]
    }

    /// Every member known, sorted by id.
    func all() -> [Member] { byID.values.sorted { $0.id < $1.id } }

    /// Every member registered, by any sequencer node of the domain, as the database has them
    /// now (with their enabled flags), sorted by id.
    func allFromDatabase() async throws -> [Member] {
        try await load()
        return all()
    }

    /// Registers `name` (idempotent); it receives events sequenced after `timestamp`.
    func register(_ name: String, at timestamp: Int64) async throws -> Member {
        if let member = byName[name] { return member }
        let member = try await database.withConnection { connection in
            let row = try connection.execute(
                """
                INSERT INTO sequencer_members (member, registered_ts) VALUES ($1, $2)
                ON CONFLICT (member) DO UPDATE SET member = excluded.member
                RETURNING id::int8, member, enabled, registered_ts
                """, [.text(name), .int64(timestamp)]
            ).rows[0]
            return Member(id: Int32(try row[0].int64 ?? 0), name: try row[1].string ?? "", enabled: try row[2].bool ?? false, registeredAt: try row[3].int64 ?? 0)
        }
        remember(member)
        return member
    }

    /// Enabled members that have not been sent the topology history yet.
    func awaitingTopologySnapshot() async throws -> [String] {
        try await database.withConnection { connection in
            try connection.execute(
                "SELECT member FROM sequencer_members WHERE enabled AND NOT topology_snapshot_sent ORDER BY id"
            ).rows.map { try $0[0].string ?? "" }
        }
    }

    /// Records that `name` was sent the topology history (or that it was sent before).
    func markTopologySnapshotSent(_ name: String) async throws {
        try await database.withConnection { connection in
            _ = try connection.execute("UPDATE sequencer_members SET topology_snapshot_sent = true WHERE member = $1", [.text(name)])
        }
    }

    /// Enables or disables `name`; a disabled member can neither send nor read.
    func setEnabled(_ name: String, _ enabled: Bool) async throws {
        try await database.withConnection { connection in
            _ = try connection.execute("UPDATE sequencer_members SET enabled = $2::text::boolean WHERE member = $1", [.text(name), .text(enabled ? "true" : "false")])
        }
        if var member = byName[name] {
            member.enabled = enabled
            remember(member)
        }
    }
}
