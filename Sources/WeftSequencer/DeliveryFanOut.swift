import Synchronization
import WeftStore

/// One reader per node for the subscriptions that have caught up (docs/sequencer.md §3): each
/// advance of the safe point is read once, for every member, and each subscription takes its
/// deliveries from memory.
///
/// Why: each subscription used to query the database on every advance (every group commit),
/// so reads grew with members × commits and were a third of PostgreSQL's work. A subscription
/// reads on its own only to catch up from where it started, or when it falls further behind
/// than the ranges kept here.
actor DeliveryFanOut {
    /// The deliveries of one advance, per member, in timestamp order; counters are the
    /// subscriptions' (each numbers its own), so they are 0 here.
    private struct Range {
        let upTo: Int64
        let deliveries: [Int32: [StoredDelivery]]
        /// The prune points (`sequencer_prune_points`) past where the range starts, read with its
        /// events: a prune removed those members' deliveries up to there before they were read.
        /// Empty when no prune reached into the range (nearly always).
        var prunePoints: [Int32: PrunePoint] = [:]
    }

    /// A member's last pruned counter and its delivery's timestamp (`sequencer_prune_points`).
    struct PrunePoint: Sendable, Equatable {
        let counter: Int64
        let timestamp: Int64
    }

    /// What `next` hands a subscription.
    struct Served: Sendable {
        /// The member's deliveries, in timestamp order, counters 0.
        let deliveries: [StoredDelivery]
        /// Everything of the member after the caller's `after` up to here is in `deliveries`,
        /// except what `prunePoint` says was pruned.
        let upTo: Int64
        /// Set when a prune had removed deliveries of the member in the ranges served before they
        /// were read: the member's deliveries up to this point are missing from `deliveries`, so
        /// counting must go on from it (or the stream fail, if it needed a counter removed).
        let prunePoint: PrunePoint?
    }

    /// Ranges kept for subscriptions a little behind; at a commit every few milliseconds,
    /// about a second.
    static let rangesMaximum = 256
    /// Events read at most per query, so a long pause does not make one huge read.
    static let eventsPerReadMaximum = 5000

    private let database: PostgresDatabase
    private let safePoint: SafePoint
    /// This node, and its recent blocks: the events of its own blocks whose bytes the cache holds
    /// are served from there, so their batches are not read again.
    private let node: Int16
    private let blocks: BlockCache
    /// Everything after `oldest` up to `covered` is in `ranges` (consecutive); nil before the
    /// first read, after a failed read and after `close`.
    private var oldest: Int64?
    private var covered: Int64 = 0
    private var ranges: [Range] = []
    private var waiters: [UInt64: (after: Int64, continuation: CheckedContinuation<Void, Never>)] = [:]
    private var nextWaiter: UInt64 = 0
    private var reading: Task<Void, Never>?
    private var closed = false
    /// Queries made here, and pages the subscriptions read on their own: what the shared reader
    /// saves shows in these (tests and operators).
    private(set) var reads = 0
    /// Ranges with deliveries a local commit handed over (`committedLocally`), which no query
    /// read (the empty ranges of heartbeats are not counted).
    private(set) var handedOver = 0
    /// This node's commits since `ownFrom`, consecutive (each starts where the one before ended):
    /// every event of this node after `ownFrom` up to the last one's `upTo` is in their
    /// deliveries. A read of a range inside that span leaves this node's events in the database
    /// and takes them from here (`read`). At most `rangesMaximum` commits and about
    /// `eventsPerReadMaximum` deliveries are kept, whether or not anyone reads.
    ///
    /// This relies on a node number being used by one process at a time, as the watermarks
    /// already do: the events of another process writing as this node would be in no kept commit.
    private var own: [LocalCommit] = []
    private var ownFrom: Int64 = .max
    private var ownDeliveryCount = 0
    /// Deliveries of this node's events that reads took from its commits rather than the database.
    private(set) var ownDeliveriesFromMemory = 0
    nonisolated let ownReads = Atomic<Int>(0)

    init(database: PostgresDatabase, safePoint: SafePoint, node: Int16, blocks: BlockCache) {
        self.database = database
        self.safePoint = safePoint
        self.node = node
        self.blocks = blocks
    }

    /// `member`'s deliveries after `after`, up to the returned timestamp, as soon as the safe
    /// point passes `after`; nil if this reader cannot serve from `after` (it was passed, a read
    /// failed, the node is stopping, or the caller was cancelled): the caller reads on its own.
    func next(member: Int32, after: Int64) async -> Served? {
        guard !closed else { return nil }
        if oldest == nil || (after > covered && reading == nil) {
            // Nothing read, or idle and behind this caller: start from it.
            oldest = after
            covered = after
            ranges = []
        }
        guard let start = oldest, after >= start else { return nil }
        while covered <= after {
            startReading()
            let id = nextWaiter
            nextWaiter += 1
            await withTaskCancellationHandler {
                await withCheckedContinuation { continuation in
                    if Task.isCancelled {
                        continuation.resume()
                    } else {
                        waiters[id] = (after, continuation)
                    }
                }
            } onCancel: {
                Task { await self.resume(id) }
            }
            guard !Task.isCancelled, !closed, let start = oldest, after >= start else { return nil }
        }
        var deliveries: [StoredDelivery] = []
        var prunePoint: PrunePoint?
        var from = start
        for range in ranges {
            defer { from = range.upTo }
            guard range.upTo > after else { continue }
            // The latest prune point counts every delivery up to it, earlier prunes' included.
            if let pruned = range.prunePoints[member], pruned.counter > prunePoint?.counter ?? .min {
                prunePoint = pruned
            }
            guard let mine = range.deliveries[member] else { continue }
            deliveries += from >= after ? mine : mine.filter { $0.timestamp > after }
        }
        return Served(deliveries: deliveries, upTo: covered, prunePoint: prunePoint)
    }

    /// A commit of this node's writer: when it holds every event after what is covered up to
    /// its safe point (`LocalCommit.holdsEveryEventOfItsRange`, in practice: this node writes
    /// alone), its deliveries are the next range, and no query reads them back. Otherwise the
    /// range is read as any other.
    func committedLocally(_ commit: LocalCommit) {
        guard !closed else { return }
        keepOwn(commit)
        guard oldest != nil, covered == commit.after, commit.holdsEveryEventOfItsRange else { return }
        if !commit.deliveries.isEmpty { handedOver += 1 }
        append(Range(upTo: commit.upTo, deliveries: commit.deliveries))
    }

    /// Keeps `commit` for the reads of ranges that other writers' events share with this node's
    /// (`read`); a commit that does not start where the last one ended (the first, or one after a
    /// group that may have committed unseen: `LocalCommit.after`) starts the span again.
    private func keepOwn(_ commit: LocalCommit) {
        if let last = own.last, last.upTo == commit.after {
            own.append(commit)
        } else {
            own = [commit]
            ownFrom = commit.after
            ownDeliveryCount = 0
        }
        ownDeliveryCount += commit.deliveries.values.reduce(0) { $0 + $1.count }
        // Commits the reader has passed are of no more use; nor, if it lags far behind or
        // nobody reads, the oldest.
        while let first = own.first,
            first.upTo <= covered || own.count > Self.rangesMaximum || (own.count > 1 && ownDeliveryCount > Self.eventsPerReadMaximum)
        {
            ownFrom = first.upTo
            ownDeliveryCount -= first.deliveries.values.reduce(0) { $0 + $1.count }
            own.removeFirst()
        }
    }

    /// This node's deliveries after `after` up to `upTo`, if its kept commits hold all of them.
    func ownDeliveries(after: Int64, upTo: Int64) -> [Int32: [StoredDelivery]]? {
        guard ownFrom <= after, let last = own.last, upTo <= last.upTo else { return nil }
        var deliveries: [Int32: [StoredDelivery]] = [:]
        for commit in own where commit.upTo > after && commit.after < upTo {
            for (member, mine) in commit.deliveries {
                deliveries[member, default: []] += mine.lazy.filter { $0.timestamp > after && $0.timestamp <= upTo }
            }
        }
        return deliveries
    }

    /// Ends every wait: the node is stopping.
    func close() {
        closed = true
        oldest = nil
        ranges = []
        own = []
        ownFrom = .max
        ownDeliveryCount = 0
        resumeAll()
    }

    /// The next range after `covered`; wakes the subscriptions it serves.
    private func append(_ range: Range) {
        ranges.append(range)
        covered = range.upTo
        if ranges.count > Self.rangesMaximum { oldest = ranges.removeFirst().upTo }
        let ready = waiters.filter { $0.value.after < range.upTo }
        for (id, waiter) in ready {
            waiters.removeValue(forKey: id)
            waiter.continuation.resume()
        }
    }

    private func resume(_ id: UInt64) {
        waiters.removeValue(forKey: id)?.continuation.resume()
    }

    private func resumeAll() {
        let all = waiters
        waiters = [:]
        for waiter in all.values { waiter.continuation.resume() }
    }

    private func startReading() {
        guard reading == nil else { return }
        reading = Task { await self.read() }
    }

    private func read() async {
        while !waiters.isEmpty, !closed {
            do {
                let safe = try await safePoint.wait(after: covered)
                let from = covered
                guard safe > from else { continue }  // a local commit handed the range over meanwhile
                reads += 1
                // This node's events in the range, if its own commits hold them all: taken before
                // the query, whose wait lets later commits replace the kept ones.
                let mine = ownDeliveries(after: from, upTo: safe)
                var (deliveries, upTo, prunePoints) = try await Self.read(
                    database, after: from, upTo: safe, node: node, cachedBlocks: mine == nil ? blocks.blocksWithEvents(of: node) : [],
                    withoutNode: mine != nil)
                guard oldest != nil, covered == from else { continue }  // closed, or handed over, meanwhile
                if let mine {
                    // Up to where the query read (less than `safe` if it read its most rows).
                    let taken = mine.mapValues { $0.filter { $0.timestamp <= upTo } }
                    deliveries = Self.merge(deliveries, taken)
                    ownDeliveriesFromMemory += taken.values.reduce(0) { $0 + $1.count }
                }
                append(Range(upTo: upTo, deliveries: deliveries, prunePoints: prunePoints))
            } catch {
                // The database is away (or the node stopping): every subscription falls back to its
                // own reads, which report or wait out the failure as before.
                oldest = nil
                ranges = []
                resumeAll()
            }
        }
        reading = nil
    }

    /// Every delivery of the events after `after` up to `safe` (or up to the last of the first
    /// `eventsPerReadMaximum`), per member: the same rows as `sequencer_deliveries` holds, derived
    /// from each event's recipients and sender as the writer wrote them.
    ///
    /// The batches of `node`'s events in `cachedBlocks` stay in the database (`batchLeftInDatabase`):
    /// the subscriptions serve those events from the block cache, which holds their bytes as the
    /// block hashed them. Reading them was a kilobyte per event (the bench's payload) through
    /// PostgreSQL, libpq and an allocation, for nothing; a delivery whose bytes the cache has let
    /// go of by the time it is served reads its batch then (`SequencerReader.batch`).
    ///
    /// `withoutNode`: `node`'s events are left out (the caller has them from its own commits).
    ///
    /// Also returns the prune points past `after`, from the same snapshot as the events. A
    /// subscription counts what it is handed from its position before the range; a forced prune
    /// that committed before the range was read (the member's stream paused, or this node's reader
    /// idle while another node sequenced and a prune passed) removed some of the member's
    /// deliveries in it, and counted from that position the rows left would take the removed ones'
    /// counters: a gap the member cannot see, and wrong checkpoints that later subscriptions trust.
    /// A prune point past `after` is exactly such a prune (it is the member's last delivery at or
    /// before the prune's time). The page read (`SequencerReader.read`) does the same per member.
    private static func read(
        _ database: PostgresDatabase, after: Int64, upTo safe: Int64, node: Int16, cachedBlocks: [Int64], withoutNode: Bool
    ) async throws -> ([Int32: [StoredDelivery]], Int64, [Int32: PrunePoint]) {
        try await database.withConnection { connection in
            // One row even when no event is left (its event columns NULL): a prune that removed
            // every event of the range must still be seen.
            var rows = try connection.execute(
                """
                SELECT e.*, p.points FROM (
                        SELECT string_agg(member || ':' || counter || ':' || ts, ',') AS points
                        FROM sequencer_prune_points WHERE ts > $1) p
                    LEFT JOIN LATERAL (
                        SELECT ts, sender::int8, message_id, kind::int8,
                               CASE WHEN node = $3::int8::int2 AND block_ts = ANY($4::int8[]) THEN NULL ELSE batch END,
                               traceparent, array_to_string(recipients, ','),
                               error_code::int8, error_id, error_message, node::int8, block_ts, leaf_offset::int8
                        FROM sequencer_events WHERE ts > $1 AND ts <= $2 AND node <> $5::int8::int2
                        ORDER BY ts LIMIT \(Self.eventsPerReadMaximum)) e ON true
                ORDER BY e.ts
                """, [.int64(after), .int64(safe), .int64(Int64(node)), .int64Array(cachedBlocks as [Int64?]),
                   .int64(withoutNode ? Int64(node) : -1)]
            ).rows
            var prunePoints: [Int32: PrunePoint] = [:]
            for point in (try rows.first?[13].string ?? "").split(separator: ",") {
                let fields = point.split(separator: ":").compactMap { Int64($0) }
                guard fields.count == 3, let member = Int32(exactly: fields[0]) else { continue }
                prunePoints[member] = PrunePoint(counter: fields[1], timestamp: fields[2])
            }
            if rows.count == 1, try rows[0][0].int64 == nil { rows = [] }  // no event in the range
            var deliveries: [Int32: [StoredDelivery]] = [:]
            var last = after
            for row in rows {
                let timestamp = try row[0].int64 ?? 0
                last = timestamp
                let sender = Int32(try row[1].int64 ?? 0)
                let recipients = (try row[6].string ?? "").split(separator: ",").compactMap { Int32($0) }
                var error: (UInt32, String, String)?
                let kind = EventKind(stored: try row[3].int64)
                if kind == .deliverError {
                    error = (UInt32(try row[7].int64 ?? 2), try row[8].string ?? "", try row[9].string ?? "")
                }
                let batch = try row[4].bytes
                let batchLeftInDatabase = batch == nil && (kind == .deliver || kind == .deliverWithoutReceipt)
                let messageID = try row[2].string ?? ""
                let traceparent = try row[5].string ?? ""
                for member in SequencerWriter.deliveryMembers(sender: sender, recipients: recipients, kind: kind) {
                    deliveries[member, default: []].append(StoredDelivery(
                        counter: 0, timestamp: timestamp, sender: sender, messageID: messageID, batch: batch, traceparent: traceparent,
                        recipients: recipients, error: error,
                        block: try SequencerReader.blockPlace(
                            row, member: member, sender: sender, recipients: recipients, kind: kind, node: 10, blockTimestamp: 11,
                            leafOffset: 12),
                        batchLeftInDatabase: batchLeftInDatabase))
                }
            }
            return (deliveries, rows.count == Self.eventsPerReadMaximum ? last : safe, prunePoints)
        }
    }

    /// Each member's deliveries of `read` and of `mine`, in timestamp order.
    private static func merge(_ read: [Int32: [StoredDelivery]], _ mine: [Int32: [StoredDelivery]]) -> [Int32: [StoredDelivery]] {
        var merged = read
        for (member, own) in mine {
            guard !own.isEmpty else { continue }
            guard let others = read[member], !others.isEmpty else {
                merged[member] = own
                continue
            }
            var result: [StoredDelivery] = []
            result.reserveCapacity(others.count + own.count)
            var (i, j) = (0, 0)
            while i < others.count || j < own.count {
                if j == own.count || (i < others.count && others[i].timestamp < own[j].timestamp) {
                    result.append(others[i])
                    i += 1
                } else {
                    result.append(own[j])
                    j += 1
                }
            }
            merged[member] = result
        }
        return merged
    }
}
