import Logging
import WeftStore
import WeftWire
#if canImport(Glibc)
    import Glibc
#endif

/// A submission the service has authenticated and checked, ready to be
/// given a timestamp.
struct Submission: Sendable {
    enum Content: Sendable {
        /// Deliver `batch` (the serialized `weft.v1.Batch`, exactly the sender's bytes)
        /// to `recipients` (member ids, each once), and a receipt to the sender if `receipt`
        /// (the sender did not ask to omit it, or the batch is a time proof).
        case deliver(batch: [UInt8], recipients: [Int32], receipt: Bool)
        /// Deliver only an error to the sender: the submission cannot be delivered.
        case error(code: UInt32, errorID: String, message: String)
    }

    let sender: Int32
    /// The sender's member id, for the events the writer builds (deliver errors).
    let senderName: String
    let messageID: String
    let content: Content
    /// For a deliver, what each delivery's member sees (`EventView.body`), when blocks are
    /// signed; the writer adds the timestamp and hashes them into the block's leaves.
    var views: [Int32: [UInt8]] = [:]
    /// Microseconds since the epoch; a later timestamp turns the submission into an error.
    let maxSequencingTime: Int64
    let traceparent: String
}

/// What became of a submission.
enum SequencingOutcome: Sendable, Equatable {
    /// Stored at `timestamp`, delivered to its recipients (and a receipt to its sender).
    case delivered(timestamp: Int64)
    /// Stored at `timestamp` as a deliver error to its sender (e.g. max sequencing time passed).
    case deliverError(timestamp: Int64, errorID: String)
    /// The sender used this message id before; nothing was stored.
    case duplicate
}

/// `sequencer_events.kind`: what an event is, and so who receives it (`deliveryMembers`).
enum EventKind: Int64 {
    /// A deliver: to its recipients, and a receipt to its sender.
    case deliver = 1
    /// A deliver error: to its sender only.
    case deliverError = 2
    /// A deliver whose sender asked for no receipt (`SubmissionRequest.omit_receipt`): to its
    /// recipients only.
    case deliverWithoutReceipt = 3

    /// The kind in a stored row; nil for a value no version of Weft writes.
    init?(stored: Int64?) {
        guard let stored else { return nil }
        self.init(rawValue: stored)
    }

    /// Whether the event's sender receives it (its receipt, or its deliver error).
    var reachesSender: Bool { self != .deliverWithoutReceipt }
}

/// Why the writer could not sequence anything.
enum SequencerWriterError: Error, CustomStringConvertible {
    /// Another node declared this one offline (its heartbeat was late); it must
    /// come back online before writing again.
    case markedOffline(node: Int16)
    /// Another live process holds this node number (its lock, docs/sequencer.md §3.6): two
    /// writers with one number would give out the same timestamps and move one watermark.
    case nodeNumberInUse(node: Int16, holder: String?)

    var description: String {
        switch self {
        case .markedOffline(let node):
            "sequencer node \(node) was marked offline by another node (heartbeat too late), or another process took over its number; it rejoins with a new watermark if it can"
        case .nodeNumberInUse(let node, let holder):
            "sequencer node number \(node) is in use by another live process on this domain's database"
                + (holder.map { " (its lock's session: \($0))" } ?? "")
                + "; give this node a number no other sequencer node uses (`sequencer-node` in its configuration), or stop the other process first"
        }
    }
}

/// Assigns timestamps and writes events for one sequencer node
/// (docs/sequencer.md §3): concurrent submissions are grouped into one
/// transaction (group commit), which also advances the node's watermark.
///
/// Timestamps of node `n` are congruent to `n` modulo `SequencerWriter.nodeSlots`,
/// strictly increasing, and never at or below the node's committed watermark,
/// so events of different nodes never share a timestamp and a reader that
/// reads up to the lowest watermark of the online nodes never misses an event
/// committed later.
actor SequencerWriter {
    static let nodeSlots: Int64 = 32
    /// Most submissions in one transaction.
    static let maximumBatch = 2000
    /// Submissions per online writer that start a group without waiting out the rest of the
    /// spacing (`groupSpacing` × online writers): once that many wait, the group goes. A
    /// sequencer busy enough to gather them sooner than the spacing (8 at 3,500 submissions/s
    /// in ~2.3 ms) already shares a group's cost over that many, and the spacing then costs it
    /// no latency. Times the writers, as the spacing is.
    static let groupWithoutSpacing = 8

    let node: Int16
    private let database: PostgresDatabase
    /// Held while this process is node `node`'s writer: a second live process with the same
    /// number cannot come online (docs/sequencer.md §3.6).
    private let nodeLock: PostgresSessionLock
    /// The namespace of the node locks (`pg_try_advisory_lock(namespace, node)`): "WEFT".
    static let nodeLockNamespace: Int32 = 0x5745_4654
    /// This process's turn as the node's writer, counted in `sequencer_writers.incarnation`:
    /// every watermark update requires it, so a process whose number another one took over
    /// (after losing its lock with its connection) commits nothing more.
    private var incarnation: Int64 = -1
    private let logger: Logger
    /// Told of each commit, in commit order; with what the commit's own statement read
    /// (`updateWatermark`) when it moved this node's watermark, so that the readers take the safe
    /// point, and the shared reader the commit's deliveries, without reading them back.
    private let onCommit: @Sendable (LocalCommit?) async -> Void
    private let signing: BlockSigning
    private let blocks: BlockCache
    /// The least time from the start of one group commit to the start of the next, per online
    /// writer (`Sequencer.Timing.groupCommitSpacing`).
    private let groupSpacing: Duration
    /// How many writers were online when this node last wrote its watermark (at least 1).
    private(set) var onlineWriters = 1
    /// The least size of the last two groups after which the next waits out the spacing (`groupSpacing` × online writers).
    private let spacedFromGroupSize: Int
    private var lastGroupStart: ContinuousClock.Instant?
    /// Submissions waiting for the next group.
    var waitingSubmissions: Int { pending.count }

    /// The sizes of the last group and of the one before it, while groups follow each other
    /// under load (`spaced`); zero after a pause.
    private var lastGroupSize = 0
    private var previousGroupSize = 0
    private var lastTimestamp: Int64 = 0
    /// Whether this process writes as the node now (set once a join's transaction is back).
    private(set) var online = false
    /// The watermark this node last committed.
    private var committedWatermark: Int64 = 0
    /// The highest watermark another writer announced with events: until this node's
    /// watermark reaches it, those events are held back from every reader.
    private var wantedWatermark: Int64 = 0
    /// Whether the next watermark advance asks the other nodes to pass it too (`advancePastNow`).
    private var askingOthers = false
    private var pending: [(Submission, CheckedContinuation<SequencingOutcome, any Error>)] = []
    /// The highest timestamp of a group whose commit failed in a way that may still have
    /// committed it (`write`).
    private var uncertainUpTo: Int64 = .min
    /// Where a commit's range starts for the shared reader (`LocalCommit.after`): this node's
    /// committed watermark, or past a group that may have committed unbeknown to it. A reader
    /// covers exactly that far only once it has read past such a group.
    private var handOverAfter: Int64 { max(committedWatermark, uncertainUpTo) }
    private var flushing = false
    /// The flush waiting out the spacing, woken early once `groupWithoutSpacing` × online writers
    /// submissions wait, with the timer that ends the wait otherwise.
    private var spacingWait: (id: UInt64, continuation: CheckedContinuation<Void, Never>, timer: Task<Void, Never>?)?
    private var spacingWaits: UInt64 = 0

    /// `nodeLockIdleTimeout`: the server ends the node lock's session after this long without a
    /// check (a vanished holder's), so it must be well above the heartbeat interval.
    init(
        node: Int16, database: PostgresDatabase, signing: BlockSigning, blocks: BlockCache, groupSpacing: Duration,
        spacedFromGroupSize: Int, nodeLockIdleTimeout: Duration, logger: Logger, onCommit: @escaping @Sendable (LocalCommit?) async -> Void
    ) {
        precondition(node >= 0 && Int64(node) < Self.nodeSlots, "sequencer node numbers are 0…31")
        self.node = node
        self.database = database
        nodeLock = PostgresSessionLock(
            url: database.url, namespace: Self.nodeLockNamespace, key: Int32(node), idleSessionTimeout: nodeLockIdleTimeout)
        self.signing = signing
        self.blocks = blocks
        self.groupSpacing = groupSpacing
        self.spacedFromGroupSize = spacedFromGroupSize
        self.logger = logger
        self.onCommit = onCommit
    }

    /// Microseconds since the Unix epoch.
    static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1_000_000 + Int64(time.tv_nsec) / 1000
    }

    /// The next timestamp of this node: after the last one and not before now.
    private func nextTimestamp() -> Int64 {
        var candidate = max(Self.now(), lastTimestamp + 1)
        let remainder = ((candidate % Self.nodeSlots) + Self.nodeSlots) % Self.nodeSlots
        candidate += (Int64(node) - remainder + Self.nodeSlots) % Self.nodeSlots
        lastTimestamp = candidate
        return candidate
    }

    /// Joins (or rejoins) the writers: the watermark starts at the highest of all
    /// watermarks, so every event this node writes from now on is later than
    /// anything any reader has read. The other nodes are notified. Throws `nodeNumberInUse`
    /// if another live process holds this node's lock.
    func comeOnline() async throws {
        guard try await nodeLock.acquire(), let stillHeld = nodeLock.stillHeldCheck else {
            throw SequencerWriterError.nodeNumberInUse(node: node, holder: try? await nodeLock.holder()?.description)
        }
        let node = self.node
        let (watermark, incarnation) = try await database.transaction { connection in
            // Serialize joins with each other; writers' own updates take row locks.
            _ = try connection.execute("LOCK TABLE sequencer_writers IN SHARE ROW EXCLUSIVE MODE")
            // The lock is still this process's, under the table lock: a process that lost it
            // since `acquire` never takes an incarnation after the one its successor took.
            let held = try connection.execute(stillHeld.sql, stillHeld.parameters).rows[0][0].bool ?? false
            guard held else { throw SequencerWriterError.nodeNumberInUse(node: node, holder: nil) }
            let highest = try connection.execute("SELECT coalesce(max(watermark), 0) FROM sequencer_writers").rows[0][0].int64 ?? 0
            let row = try connection.execute(
                """
                INSERT INTO sequencer_writers (node, watermark, online, heartbeat_at) VALUES ($1::int8::int2, $2, true, now())
                ON CONFLICT (node) DO UPDATE SET watermark = greatest(sequencer_writers.watermark, excluded.watermark), online = true,
                    heartbeat_at = now(), incarnation = sequencer_writers.incarnation + 1
                RETURNING watermark, incarnation
                """, [.int64(Int64(node)), .int64(highest)]
            ).rows[0]
            let watermark = try row[0].int64 ?? highest
            _ = try connection.execute(
                "SELECT pg_notify($1, $2)", [.text(WriterNotification.channel), .text(WriterNotification.joined(node: node, watermark: watermark).payload)])
            return (watermark, try row[1].int64 ?? 0)
        }
        self.incarnation = max(self.incarnation, incarnation)  // two joins that overlapped: the later one counts
        lastTimestamp = max(lastTimestamp, watermark)
        committedWatermark = watermark
        online = true
        logger.info(
            "sequencer writer online", metadata: ["sequencer_node": "\(node)", "watermark": "\(watermark)", "incarnation": "\(incarnation)"])
        await onCommit(nil)
    }

    /// Leaves the writers cleanly, so readers stop waiting for this node, and lets go of the
    /// node's number. Marks nothing if another process has taken over the number.
    func goOffline() async throws {
        online = false
        let (node, incarnation) = (self.node, self.incarnation)
        do {
            try await database.transaction { connection in
                _ = try connection.execute(
                    "UPDATE sequencer_writers SET online = false WHERE node = $1::int8::int2 AND incarnation = $2",
                    [.int64(Int64(node)), .int64(incarnation)])
                _ = try connection.execute(
                    "SELECT pg_notify($1, $2)", [.text(WriterNotification.channel), .text(WriterNotification.left(by: node).payload)])
            }
        } catch {
            await closeNodeLock()
            throw error
        }
        await closeNodeLock()
    }

    /// Lets go of the node's number for good (stop, or a start that failed).
    func closeNodeLock() async {
        await nodeLock.close()
    }

    /// This process stops writing after a failure under `incarnation`, unless it has since
    /// rejoined under a newer one.
    private func goneOffline(under incarnation: Int64) {
        if self.incarnation == incarnation { online = false }
    }

    /// Sequences `submission`, together with whatever else is waiting; returns once committed.
    func sequence(_ submission: Submission) async throws -> SequencingOutcome {
        try await withCheckedThrowingContinuation { continuation in
            pending.append((submission, continuation))
            if pending.count >= Self.groupWithoutSpacing * onlineWriters { endSpacing() }
            startFlushIfIdle()
        }
    }

    /// Another writer committed events up to `watermark` (its notification said so), or asked
    /// for the present (`advancePastNow`): this node's watermark must pass it soon, or readers
    /// hold those events back. Never called for another node's plain watermark advance, and the
    /// advance it causes is a plain one, so two idle nodes do not keep advancing each other's
    /// watermarks.
    func otherWriterCommitted(upTo watermark: Int64) {
        guard watermark > wantedWatermark else { return }
        wantedWatermark = watermark
        startFlushIfIdle()
    }

    /// A reader of this node waits for the safe point to pass the present rather than an event
    /// (the topology follower's catch-up, a new member's history): advances this node's watermark
    /// now, and asks the other nodes to advance theirs past it, instead of waiting for heartbeats.
    func advancePastNow() {
        wantedWatermark = max(wantedWatermark, Self.now())
        askingOthers = true
        startFlushIfIdle()
    }

    /// Whether another writer's events (or this node's readers) wait for this node's watermark,
    /// or the other nodes are still to be asked to advance theirs.
    private var watermarkWanted: Bool { online && (wantedWatermark > committedWatermark || askingOthers) }

    /// Starts writing what is pending, or advancing the watermark past another writer's events,
    /// unless a write is under way: one write at a time per node, so this node's watermark only
    /// ever covers committed events.
    private func startFlushIfIdle() {
        guard !flushing, !pending.isEmpty || watermarkWanted else { return }
        flushing = true
        Task { await self.flush() }
    }

    /// Waits until `deadline`, or until `groupWithoutSpacing` submissions wait (`endSpacing`).
    private func waitOutSpacing(until deadline: ContinuousClock.Instant) async {
        precondition(spacingWait == nil, "one flush, so one spacing wait, at a time")
        spacingWaits += 1
        let id = spacingWaits
        await withCheckedContinuation { continuation in
            spacingWait = (id, continuation, nil)
            spacingWait?.timer = Task {
                try? await Task.sleep(until: deadline)
                endSpacing(id)
            }
        }
    }

    /// Ends the spacing wait `id` (nil: whichever is under way), and its timer.
    private func endSpacing(_ id: UInt64? = nil) {
        guard let wait = spacingWait, id == nil || wait.id == id else { return }
        spacingWait = nil
        if id == nil { wait.timer?.cancel() }
        wait.continuation.resume()
    }

    /// Whether the next group waits out the spacing after groups of `last` and `previous`
    /// submissions: under load, the last two large enough. One group of a few is usually a
    /// burst that arrived together (a transaction's responses), not load, and spacing the group
    /// after it (the verdict) would only add latency.
    static func spaced(last: Int, previous: Int, from size: Int) -> Bool {
        min(last, previous) >= size
    }

    private func flush() async {
        while true {
            if !pending.isEmpty {
                // Spacing: submissions arriving meanwhile join this group (the actor takes them
                // while this task waits; `flushing` keeps a second flush from starting).
                let spacing = groupSpacing * onlineWriters
                if let last = lastGroupStart, .now - last > spacing * 2 {
                    (lastGroupSize, previousGroupSize) = (0, 0)  // a pause: no longer under load
                }
                if let last = lastGroupStart, Self.spaced(last: lastGroupSize, previous: previousGroupSize, from: spacedFromGroupSize),
                    pending.count < Self.groupWithoutSpacing * onlineWriters
                {
                    let until = last + spacing
                    if until > .now { await waitOutSpacing(until: until) }
                }
                lastGroupStart = .now
                let group = Array(pending.prefix(Self.maximumBatch))
                previousGroupSize = lastGroupSize
                lastGroupSize = group.count
                pending.removeFirst(group.count)
                do {
                    let outcomes = try await write(group.map(\.0))
                    for (index, entry) in group.enumerated() { entry.1.resume(returning: outcomes[index]) }
                } catch {
                    logger.error("writing events failed", metadata: ["sequencer_node": "\(node)", "submissions": "\(group.count)", "error": "\(error)"])
                    for entry in group { entry.1.resume(throwing: error) }
                }
            } else if watermarkWanted {
                do {
                    let asking = askingOthers
                    askingOthers = false
                    try await advanceWatermark(reaching: wantedWatermark, askingOthers: asking)
                } catch {
                    // Given up: the next heartbeat advances the watermark anyway (and rejoins if
                    // this node was marked offline). Retrying here would spin while the database is away.
                    wantedWatermark = committedWatermark
                    logger.warning("advancing the watermark failed", metadata: ["sequencer_node": "\(node)", "error": "\(error)"])
                }
            } else {
                break
            }
        }
        flushing = false
    }

    /// Advances the watermark when idle: keeps this node's heartbeat fresh (so no other node
    /// marks it offline) and lets through any events of other nodes whose notification was lost.
    /// Throws `markedOffline` when this node is not online (another node marked it offline): the
    /// caller rejoins.
    /// Throws `nodeNumberInUse` when this process lost the node's lock (with its connection)
    /// and another process holds it now: it stops writing.
    func heartbeat() async throws {
        guard online else { throw SequencerWriterError.markedOffline(node: node) }
        let checkedUnder = incarnation
        guard try await nodeLock.acquire() else {
            goneOffline(under: checkedUnder)
            throw SequencerWriterError.nodeNumberInUse(node: node, holder: try? await nodeLock.holder()?.description)
        }
        guard online else { throw SequencerWriterError.markedOffline(node: node) }
        guard !flushing else { return }  // the write under way refreshes the heartbeat
        flushing = true
        defer {
            flushing = false
            startFlushIfIdle()
        }
        try await advanceWatermark(reaching: wantedWatermark)
    }

    /// Sets the watermark to this node's next timestamp, and at least to `floor` (another node's
    /// watermark, which may be ahead of this node's clock), in a transaction of its own that
    /// notifies the other nodes. Only while `flushing`: the watermark never passes a write under way.
    private func advanceWatermark(reaching floor: Int64, askingOthers: Bool = false) async throws {
        lastTimestamp = max(lastTimestamp, floor - 1)
        let watermark = nextTimestamp()
        let (node, incarnation) = (self.node, self.incarnation)
        let payload = (askingOthers ? WriterNotification.needed(node: node, watermark: watermark) : .watermark(node: node, watermark: watermark)).payload
        let updated = try await database.withConnection { connection in
            try connection.execute(
                Self.updateWatermark,
                [.int64(watermark), .int64(Int64(node)), .text(WriterNotification.channel), .text(payload), .int64(incarnation)]
            ).rows
        }
        guard updated.count == 1 else {
            goneOffline(under: incarnation)
            throw SequencerWriterError.markedOffline(node: node)
        }
        onlineWriters = try Self.onlineWriters(updated[0])
        let previous = handOverAfter
        committedWatermark = max(committedWatermark, watermark)
        await onCommit(try LocalCommit(updated[0], after: previous, watermark: watermark, deliveries: [:]))
    }

    /// Marks writers whose heartbeat is older than `timeout` offline, so readers stop waiting for
    /// them, and notifies the other nodes if it marked any.
    func markStaleWritersOffline(olderThan timeout: Duration) async throws -> [Int16] {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        let node = self.node
        let stale = try await database.transaction { connection in
            let stale = try connection.execute(
                """
                UPDATE sequencer_writers SET online = false
                WHERE online AND node <> $2::int8::int2 AND heartbeat_at < now() - make_interval(secs => $1::text::float8)
                RETURNING node::int8
                """, [.text(String(seconds)), .int64(Int64(node))]
            ).rows.compactMap { try $0[0].int64.map { Int16($0) } }
            if !stale.isEmpty {
                _ = try connection.execute(
                    "SELECT pg_notify($1, $2)", [.text(WriterNotification.channel), .text(WriterNotification.left(by: node).payload)])
            }
            return stale
        }
        if !stale.isEmpty { await onCommit(nil) }  // the safe point may move: look again
        return stale
    }

    /// Writes one group in one transaction: dedup, events, deliveries, watermark.
    private func write(_ group: [Submission]) async throws -> [SequencingOutcome] {
        guard online else { throw SequencerWriterError.markedOffline(node: node) }
        // Within the group, a repeated (sender, message id) is a duplicate of the first.
        var seen = Set<String>()
        var outcomes = [SequencingOutcome?](repeating: nil, count: group.count)
        var rows: [(index: Int, ts: Int64)] = []
        for (index, submission) in group.enumerated() {
            let key = "\(submission.sender)/\(submission.messageID)"
            guard seen.insert(key).inserted else {
                outcomes[index] = .duplicate
                continue
            }
            rows.append((index, nextTimestamp()))
        }
        let watermark = lastTimestamp
        let writtenUnder = incarnation
        let written: [Int: SequencingOutcome]
        let block: (signed: SignedBlock, events: [[UInt8]])?
        let commit: LocalCommit
        do {
            (written, block, onlineWriters, commit) = try await insert(group, rows, after: handOverAfter, watermark: watermark)
        } catch let error as SequencerWriterError {
            goneOffline(under: writtenUnder)
            throw error
        } catch {
            // The connection may have failed after the server committed (the reply to COMMIT
            // lost): the database may hold events up to `watermark` that `committedWatermark`
            // does not count. No commit hands its range over until the readers are past them.
            uncertainUpTo = max(uncertainUpTo, watermark)
            throw error
        }
        if let block { blocks.insert(block.signed, node: node, timestamp: watermark, events: block.events) }
        committedWatermark = max(committedWatermark, watermark)
        await onCommit(commit)
        for (index, outcome) in written { outcomes[index] = outcome }
        return outcomes.map { $0 ?? .duplicate }
    }

    private func insert(
        _ group: [Submission], _ rows: [(index: Int, ts: Int64)], after previous: Int64, watermark: Int64
    ) async throws -> (
        outcomes: [Int: SequencingOutcome], block: (signed: SignedBlock, events: [[UInt8]])?, onlineWriters: Int, commit: LocalCommit
    ) {
        let (node, incarnation) = (self.node, self.incarnation)
        // Signed only if every deliver came with its views: the key may have been set while
        // some of them were on their way (they were checked before it was); such a group is
        // stored as before, its events signed one by one when served.
        let signer = signing.current.flatMap { signer in
            group.allSatisfy { submission in
                if case .deliver(_, let recipients, let receipt) = submission.content {
                    Self.deliveryMembers(sender: submission.sender, recipients: recipients, receipt: receipt)
                        .allSatisfy { submission.views[$0] != nil }
                } else {
                    true
                }
            } ? signer : nil
        }
        return try await database.transaction { connection in
            // 1. Message ids: the ones already used are duplicates and are not stored. Each
            //    statement here has one text whatever the group's size (arrays, `unnest`), so the
            //    connection runs it prepared.
            let fresh: Set<Int>
            do {
                let submissions = rows.map { group[$0.index] }
                let inserted = Set(
                    try connection.execute(
                        GroupCommitSQL.insertSubmissions(into: "sequencer_submissions"),
                        [
                            .int64Array(submissions.map { Int64($0.sender) }), .textArray(submissions.map(\.messageID)),
                            .int64Array(submissions.map(\.maxSequencingTime)),
                        ]
                    ).rows.map { "\(try $0[0].int64 ?? -1)/\(try $0[1].string ?? "")" })
                fresh = Set(rows.lazy.map(\.index).filter { inserted.contains("\(group[$0].sender)/\(group[$0].messageID)") })
            }
            // 2. Events and the delivery index.
            var result: [Int: SequencingOutcome] = [:]
            var events = EventColumns()
            var deliveries: [(member: Int32, ts: Int64)] = []
            // The same deliveries as the shared reader would read back (`DeliveryFanOut.read`).
            var stored: [Int32: [StoredDelivery]] = [:]
            var leaves: [[UInt8]] = []
            // Each leaf's event as its member receives it, for the subscriptions of this node.
            var eventBytes: [[UInt8]] = []
            for row in rows where fresh.contains(row.index) {
                let submission = group[row.index]
                var content = submission.content
                if row.ts > submission.maxSequencingTime {
                    content = .error(
                        code: 10, errorID: "SEQUENCER_MAX_SEQUENCING_TIME_EXCEEDED",
                        message: "the submission's max sequencing time passed before it could be sequenced; resubmit with a later one")
                }
                // The event's block, and where its leaves start: its deliveries' leaves follow each
                // other in member order (`deliveryMembers`), so readers derive each one's position.
                let blockTimestamp = signer == nil ? nil : watermark
                let leafOffset = signer == nil ? nil : Int64(leaves.count)
                switch content {
                case .deliver(let batch, let recipients, let receipt):
                    events.append(
                        ts: row.ts, node: node, sender: submission.sender, messageID: submission.messageID,
                        kind: receipt ? .deliver : .deliverWithoutReceipt,
                        batch: batch, traceparent: submission.traceparent, recipients: recipients, error: nil,
                        blockTimestamp: blockTimestamp, leafOffset: leafOffset)
                    for (position, member) in Self.deliveryMembers(sender: submission.sender, recipients: recipients, receipt: receipt)
                        .enumerated()
                    {
                        deliveries.append((member, row.ts))
                        // A signed block's events are served from the block cache, which holds
                        // their bytes: the batch stays in the database, as the shared reader leaves it.
                        stored[member, default: []].append(StoredDelivery(
                            counter: 0, timestamp: row.ts, sender: submission.sender, messageID: submission.messageID,
                            batch: signer == nil ? batch : nil, traceparent: submission.traceparent, recipients: recipients, error: nil,
                            block: leafOffset.map { BlockPlace(node: node, timestamp: watermark, leaf: Int($0) + position) },
                            batchLeftInDatabase: signer != nil))
                        guard signer != nil else { continue }
                        guard let body = submission.views[member] else {
                            preconditionFailure("a signed block needs every delivery's view; \(member) has none")
                        }
                        let bytes = try EventView.bytes(timestamp: row.ts, body: body)
                        leaves.append(SequencedBlockTree.leaf(bytes))
                        eventBytes.append(bytes)
                    }
                    result[row.index] = .delivered(timestamp: row.ts)
                case .error(let code, let errorID, let message):
                    events.append(
                        ts: row.ts, node: node, sender: submission.sender, messageID: submission.messageID, kind: .deliverError,
                        batch: nil, traceparent: submission.traceparent, recipients: [submission.sender],
                        error: (code, errorID, message), blockTimestamp: blockTimestamp, leafOffset: leafOffset)
                    deliveries.append((submission.sender, row.ts))
                    stored[submission.sender, default: []].append(StoredDelivery(
                        counter: 0, timestamp: row.ts, sender: submission.sender, messageID: submission.messageID, batch: nil,
                        traceparent: submission.traceparent, recipients: [submission.sender], error: (code, errorID, message),
                        block: leafOffset.map { BlockPlace(node: node, timestamp: watermark, leaf: Int($0)) }))
                    if let signer {
                        let body = try EventView.body(
                            domain: signer.domain, recipient: submission.senderName,
                            event: EventView.deliverError(messageID: submission.messageID, code: code, errorID: errorID, message: message))
                        let bytes = try EventView.bytes(timestamp: row.ts, body: body)
                        leaves.append(SequencedBlockTree.leaf(bytes))
                        eventBytes.append(bytes)
                    }
                    result[row.index] = .deliverError(timestamp: row.ts, errorID: errorID)
                }
            }
            // 3. The block: its leaves and one signature over their root, stored so that a member
            //    replaying from a copy of this database can still verify every event.
            var block: (signed: SignedBlock, events: [[UInt8]])?
            if let signer, !leaves.isEmpty {
                let tree = SequencedBlockTree(leaves: leaves)
                let signature = try signer.key.sign(SequencedBlockTree.signedHash(leafCount: UInt64(leaves.count), root: tree.root))
                try connection.enqueue(
                    "INSERT INTO sequencer_blocks (node, block_ts, leaves, signature) VALUES ($1::int8::int2, $2, $3, $4)",
                    [.int64(Int64(node)), .int64(watermark), .bytes(Array(leaves.joined())), .bytes(try signature.serializedBytes())])
                block = (SignedBlock(tree: tree, signature: signature), eventBytes)
            }
            if !events.ts.isEmpty {
                try connection.enqueue(
                    GroupCommitSQL.insertEvents(into: "sequencer_events"),
                    events.parameters)
            }
            if !deliveries.isEmpty {
                try connection.enqueue(
                    GroupCommitSQL.insertDeliveries(into: "sequencer_deliveries"),
                    [.int64Array(deliveries.map { Int64($0.member) }), .int64Array(deliveries.map(\.ts))])
            }
            // 4. The watermark, only while this node is still online and this process still its
            //    writer: if another node marked it offline, or another process took over its
            //    number, nothing of this group may commit (readers may have passed these
            //    timestamps; the other process gives out the same ones).
            //    The notification goes out with the commit, never without it.
            let updated = try connection.execute(
                Self.updateWatermark,
                [.int64(watermark), .int64(Int64(node)), .text(WriterNotification.channel),
                 .text(WriterNotification.events(node: node, watermark: watermark).payload), .int64(incarnation)]
            ).rows
            guard updated.count == 1 else { throw SequencerWriterError.markedOffline(node: node) }
            return (
                result, block, try Self.onlineWriters(updated[0]),
                try LocalCommit(updated[0], after: previous, watermark: watermark, deliveries: stored)
            )
        }
    }

    /// Sets this node's watermark (`$1`) and heartbeat if it is still online (`$2` its number)
    /// and this process still its writer (`$5` the incarnation), notifying the other nodes (`$3`
    /// channel, `$4` payload) with the commit; returns one row if it was (none if another node
    /// marked it offline or another process took over): the number of online writers (for the
    /// spacing), and the lowest watermark of the other online writers and the highest of all
    /// other writers (NULL: none), as the statement's snapshot shows them committed.
    static let updateWatermark = """
        UPDATE sequencer_writers SET watermark = $1, heartbeat_at = now() WHERE node = $2::int8::int2 AND online AND incarnation = $5
        RETURNING (SELECT count(*) FROM sequencer_writers WHERE online), pg_notify($3, $4),
            (SELECT min(watermark) FROM sequencer_writers WHERE online AND node <> $2::int8::int2),
            (SELECT max(watermark) FROM sequencer_writers WHERE node <> $2::int8::int2)
        """

    /// The number of online writers in `updateWatermark`'s row (at least 1: this node).
    private static func onlineWriters(_ row: [PostgresCell]) throws -> Int {
        max(1, Int(try row[0].int64 ?? 1))
    }

    /// Who receives an event, in the order of its leaves: its recipients and its sender (a
    /// deliver's receipt unless the sender asked to omit it; the only recipient of a deliver
    /// error), each once, by member id.
    static func deliveryMembers(sender: Int32, recipients: [Int32], receipt: Bool) -> [Int32] {
        Set(receipt ? recipients + [sender] : recipients).sorted()
    }

    /// `deliveryMembers` of a stored event, by its kind (nil: a value no version of Weft writes,
    /// read as a deliver).
    static func deliveryMembers(sender: Int32, recipients: [Int32], kind: EventKind?) -> [Int32] {
        deliveryMembers(sender: sender, recipients: recipients, receipt: kind?.reachesSender ?? true)
    }

    /// `{1,2,3}`: a PostgreSQL array literal of member ids (digits only, so nothing to escape).
    static func arrayLiteral(_ values: [Int32]) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }
}

/// The group commit's statements, one text whatever the group's size (the rows travel as
/// arrays), so that each runs prepared. Public for the benchmark's baseline, which runs them on
/// tables of the same shape without a sequencer around them.
public enum GroupCommitSQL {
    /// Message ids: `$1` senders, `$2` message ids, `$3` max sequencing times; returns the
    /// (sender, message id) pairs that were new.
    public static func insertSubmissions(into table: String) -> String {
        """
        INSERT INTO \(table) (sender, message_id, expires_ts)
        SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[])
        ON CONFLICT DO NOTHING RETURNING sender::int8, message_id
        """
    }

    /// Events: `$1` … `$13` in the column order of `EventColumns.parameters`; recipients as
    /// array literals (`{1,2}`), since `unnest` cannot take an array of arrays of varying length.
    public static func insertEvents(into table: String) -> String {
        """
        INSERT INTO \(table) (ts, node, sender, message_id, kind, batch, traceparent, recipients,
            error_code, error_id, error_message, block_ts, leaf_offset)
        SELECT ts, node, sender, message_id, kind, batch, traceparent, recipients::int4[],
            error_code, error_id, error_message, block_ts, leaf_offset
        FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::int8[], $6::bytea[], $7::text[], $8::text[],
            $9::int8[], $10::text[], $11::text[], $12::int8[], $13::int8[])
            AS event (ts, node, sender, message_id, kind, batch, traceparent, recipients,
            error_code, error_id, error_message, block_ts, leaf_offset)
        """
    }

    /// The delivery index: `$1` members, `$2` timestamps.
    public static func insertDeliveries(into table: String) -> String {
        "INSERT INTO \(table) (member, ts) SELECT * FROM unnest($1::int8[], $2::int8[])"
    }
}

/// The rows of `sequencer_events` one group commit writes, column by column: the
/// arrays its `INSERT … SELECT … FROM unnest(…)` takes.
struct EventColumns {
    private(set) var ts: [Int64?] = []
    private var node: [Int64?] = []
    private var sender: [Int64?] = []
    private var messageID: [String?] = []
    private var kind: [Int64?] = []
    private var batch: [[UInt8]?] = []
    private var traceparent: [String?] = []
    private var recipients: [String?] = []
    private var errorCode: [Int64?] = []
    private var errorID: [String?] = []
    private var errorMessage: [String?] = []
    private var blockTimestamp: [Int64?] = []
    private var leafOffset: [Int64?] = []

    /// One event: a deliver (with its batch) or a deliver error (with `error`).
    mutating func append(
        ts: Int64, node: Int16, sender: Int32, messageID: String, kind: EventKind, batch: [UInt8]?, traceparent: String,
        recipients: [Int32], error: (code: UInt32, id: String, message: String)?, blockTimestamp: Int64?, leafOffset: Int64?
    ) {
        self.ts.append(ts)
        self.node.append(Int64(node))
        self.sender.append(Int64(sender))
        self.messageID.append(messageID)
        self.kind.append(kind.rawValue)
        self.batch.append(batch)
        self.traceparent.append(traceparent)
        self.recipients.append(SequencerWriter.arrayLiteral(recipients))
        errorCode.append(error.map { Int64($0.code) })
        errorID.append(error?.id)
        errorMessage.append(error?.message)
        self.blockTimestamp.append(blockTimestamp)
        self.leafOffset.append(leafOffset)
    }

    /// `$1` … `$13`, in the statement's column order.
    var parameters: [PostgresValue] {
        [
            .int64Array(ts), .int64Array(node), .int64Array(sender), .textArray(messageID), .int64Array(kind),
            .bytesArray(batch), .textArray(traceparent), .textArray(recipients), .int64Array(errorCode),
            .textArray(errorID), .textArray(errorMessage), .int64Array(blockTimestamp), .int64Array(leafOffset),
        ]
    }
}

/// What a writer tells the other sequencer nodes through PostgreSQL's `NOTIFY` on
/// `WriterNotification.channel`, sent inside the transaction that makes it true, so it is
/// delivered only if that transaction commits (docs/sequencer.md §3).
///
/// The payload is `<kind>:<node>:<watermark>`, `node` being the sender's number, so a node
/// ignores its own notifications (it knows of its commits already).
enum WriterNotification: Equatable {
    static let channel = "weft_sequencer"

    /// `node` committed events up to `watermark`: idle nodes advance their watermarks past it.
    case events(node: Int16, watermark: Int64)
    /// `node` advanced its watermark without events (heartbeat, or to let another node's events through).
    case watermark(node: Int16, watermark: Int64)
    /// `node` advanced its watermark because its readers wait for the present: the other nodes
    /// advance theirs past it, as for events.
    case needed(node: Int16, watermark: Int64)
    /// `node` joined or rejoined the writers with `watermark`.
    case joined(node: Int16, watermark: Int64)
    /// A writer left the online writers, or `node` marked silent ones offline: the safe point may move.
    case left(by: Int16)

    /// The node that sent it.
    var node: Int16 {
        switch self {
        case .events(let node, _), .watermark(let node, _), .needed(let node, _), .joined(let node, _), .left(let node): node
        }
    }

    var payload: String {
        switch self {
        case .events(let node, let watermark): "e:\(node):\(watermark)"
        case .watermark(let node, let watermark): "w:\(node):\(watermark)"
        case .needed(let node, let watermark): "n:\(node):\(watermark)"
        case .joined(let node, let watermark): "j:\(node):\(watermark)"
        case .left(let node): "o:\(node):0"
        }
    }

    /// Parses a payload; nil for anything else (such as a later version's kinds).
    init?(payload: String) {
        let parts = payload.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let node = Int16(parts[1]), let watermark = Int64(parts[2]) else { return nil }
        switch parts[0] {
        case "e": self = .events(node: node, watermark: watermark)
        case "w": self = .watermark(node: node, watermark: watermark)
        case "n": self = .needed(node: node, watermark: watermark)
        case "j": self = .joined(node: node, watermark: watermark)
        case "o": self = .left(by: node)
        default: return nil
        }
    }
}

/// A commit that moved this node's watermark, with what its own statement read of the other
/// writers (`SequencerWriter.updateWatermark`): the readers need not read it back.
struct LocalCommit: Sendable {
    /// Where the commit's range starts: this node's watermark before it (or past a group that
    /// may have committed unseen, `SequencerWriter.handOverAfter`).
    let after: Int64
    /// Where it ends: this node's new watermark.
    let upTo: Int64
    /// The safe point once the commit is visible: the lowest watermark of the online writers,
    /// this node's new one included. The others' come from the statement's snapshot. Each only
    /// grows while its writer is online, and a writer joins under a table lock that waits for
    /// this transaction (or makes this statement wait for it) and starts at the highest
    /// watermark: so the value is at most the safe point at any later moment, which is all a
    /// reader relies on (docs/sequencer.md §3).
    let safePoint: Int64
    /// The highest watermark of the other writers, online or not (nil: none).
    let othersHighest: Int64?
    /// The commit's deliveries per member, in timestamp order, as `DeliveryFanOut` reads them.
    let deliveries: [Int32: [StoredDelivery]]

    init(after: Int64, upTo: Int64, safePoint: Int64, othersHighest: Int64?, deliveries: [Int32: [StoredDelivery]]) {
        self.after = after
        self.upTo = upTo
        self.safePoint = safePoint
        self.othersHighest = othersHighest
        self.deliveries = deliveries
    }

    init(_ row: [PostgresCell], after: Int64, watermark: Int64, deliveries: [Int32: [StoredDelivery]]) throws {
        self.init(
            after: after, upTo: watermark, safePoint: min(watermark, try row[2].int64 ?? watermark), othersHighest: try row[3].int64,
            deliveries: deliveries)
    }

    /// Whether every event after `after` up to the safe point is this commit's: no other
    /// writer, online or not, has a watermark above `after` (its events are at or below its
    /// watermark, and an online one's next events above it would hold the safe point below
    /// `upTo`), and the safe point is this node's new watermark.
    var holdsEveryEventOfItsRange: Bool { (othersHighest ?? .min) <= after && safePoint == upTo }
}
