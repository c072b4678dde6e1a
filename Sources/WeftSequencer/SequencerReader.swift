import Logging
import WeftStore

/// The highest timestamp below which every event that will ever exist is
/// committed: the lowest watermark of the online writers (docs/sequencer.md §3).
/// Subscriptions never read past it.
///
/// A local commit hands over the safe point its own statement read (`committed`). The writers'
/// table is read while someone waits: at once when another sequencer node's notification
/// arrives or a change of this node's standing may have moved it (`poke`), and otherwise every
/// `pollInterval`, a slow fallback so that a lost notification costs latency, never progress.
actor SafePoint {
    private let database: PostgresDatabase
    private let pollInterval: Duration
    private(set) var current: Int64 = 0
    private var waiters: [(id: UInt64, after: Int64, continuation: CheckedContinuation<Int64, any Error>)] = []
    private var nextWaiter: UInt64 = 0
    private var poller: Task<Void, Never>?
    private var poked: CheckedContinuation<Void, Never>?
    private var pokedEarly = false
    /// Whether the table was read since this node started (the first wait reads it at once).
    private var read = false
    /// Reads of the table so far (tests check that local commits need none).
    private(set) var reads = 0
    /// Times the poller went to sleep until a poke or the poll interval, and whether it runs (tests).
    private(set) var sleeps = 0
    var isPolling: Bool { poller != nil }

    init(database: PostgresDatabase, pollInterval: Duration = .milliseconds(100)) {
        self.database = database
        self.pollInterval = pollInterval
    }

    /// Returns the safe point once it is later than `timestamp`; throws `CancellationError` when
    /// the caller is cancelled first (a subscription whose member went away: on an idle domain
    /// the safe point may not move for a long time, and its handler must end now).
    func wait(after timestamp: Int64) async throws -> Int64 {
        if current > timestamp { return current }
        let id = nextWaiter
        nextWaiter += 1
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                    return
                }
                waiters.append((id, timestamp, continuation))
                startPolling()
            }
        } onCancel: {
            Task { await self.cancelWait(id) }
        }
    }

    private func cancelWait(_ id: UInt64) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }

    /// A local writer committed, or another node notified a commit: look again now rather than
    /// at the next poll.
    func poke() {
        if let poked {
            self.poked = nil
            poked.resume()
        } else {
            pokedEarly = true
        }
    }

    /// A local commit's safe point (`LocalCommit.safePoint`): no read of the table needed.
    func committed(_ value: Int64) {
        advance(to: value)
    }

    /// Reads the safe point once (for a reader that is behind and need not wait).
    func refresh() async throws -> Int64 {
        let value = try await Self.read(database)
        reads += 1
        advance(to: value)
        return current
    }

    private static func read(_ database: PostgresDatabase) async throws -> Int64 {
        try await database.withConnection { connection in
            try connection.execute("SELECT coalesce(min(watermark), 0) FROM sequencer_writers WHERE online").rows[0][0].int64 ?? 0
        }
    }

    private func advance(to value: Int64) {
        guard value > current else { return }
        current = value
        let ready = waiters.filter { $0.after < value }
        waiters.removeAll { $0.after < value }
        for waiter in ready { waiter.continuation.resume(returning: value) }
    }

    private func startPolling() {
        guard poller == nil else { return }
        poller = Task { await self.poll() }
    }

    /// Reads when poked or after a poll interval; at once at the first wait, or if a read was due
    /// when the last poller stopped (a poke came while nobody polled, or woke the poller, or failed
    /// to read, when nobody waited any more). Otherwise the safe point is as current as its last
    /// change: local commits hand theirs over, and every other change pokes.
    private func poll() async {
        var failures = 0
        var due = pokedEarly || !read
        pokedEarly = false
        while !waiters.isEmpty {
            if !due {
                await sleepOrPoke()
                due = true
                guard !waiters.isEmpty else { break }
            }
            do {
                advance(to: try await Self.read(database))
                reads += 1
                read = true
                failures = 0
                due = false
            } catch {
                // The database is restarting or unreachable: readers wait, they are not failed;
                // the pool reconnects and reading resumes where it stopped.
                failures += 1
                if failures == 1 || failures % 50 == 0 {
                    Logger(label: "weft.sequencer").warning("cannot read the writers' watermarks; retrying", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .milliseconds(100))
                due = true
            }
        }
        // A read still due when nobody waits any more (a local commit's safe point or `close`
        // served the waiters, or they were served while a poke's read failed) may be news for
        // the next waiter: another node moved its watermark, and only a read shows it.
        if due { pokedEarly = true }
        poller = nil
    }

    /// Sleeps one poll interval, or less if poked.
    private func sleepOrPoke() async {
        if pokedEarly {
            pokedEarly = false
            return
        }
        let interval = pollInterval
        let timer = Task { [weak self] in
            // Cancelled when a poke came first: then it pokes no more (one that fired just before
            // its cancel still does, an extra read at most).
            guard (try? await Task.sleep(for: interval)) != nil else { return }
            await self?.poke()
        }
        sleeps += 1
        await withCheckedContinuation { poked = $0 }
        timer.cancel()
        pokedEarly = false
    }

    /// Fails every waiter: the node is shutting down.
    func close(_ error: any Error) {
        let failed = waiters
        waiters = []
        for waiter in failed { waiter.continuation.resume(throwing: error) }
        // A sleeping poller wakes, finds nobody waiting and stops, rather than at the poll interval.
        poke()
    }
}

/// One stored delivery of a member's stream: its counter and the event.
struct StoredDelivery: Sendable, Equatable {
    let counter: Int64
    let timestamp: Int64
    let sender: Int32
    let messageID: String
    /// The sender's serialized batch; nil for a deliver error, and when the batch was left in
    /// the database (`batchLeftInDatabase`: read it with `SequencerReader.batch(of:)`).
    let batch: [UInt8]?
    let traceparent: String
    let recipients: [Int32]
    let error: (code: UInt32, errorID: String, message: String)?
    /// Its leaf in a signed block; nil for an event stored before blocks were signed.
    var block: BlockPlace? = nil
    /// The batch was left in the database (`batch` is nil although the event is a deliver): this
    /// node's block cache held the event's bytes when it was read (`DeliveryFanOut`).
    var batchLeftInDatabase = false

    /// The same delivery as the member's `counter`-th.
    func numbered(_ counter: Int64) -> StoredDelivery {
        StoredDelivery(
            counter: counter, timestamp: timestamp, sender: sender, messageID: messageID, batch: batch, traceparent: traceparent,
            recipients: recipients, error: error, block: block, batchLeftInDatabase: batchLeftInDatabase)
    }

    static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.counter == rhs.counter && lhs.timestamp == rhs.timestamp && lhs.sender == rhs.sender && lhs.messageID == rhs.messageID
            && lhs.block == rhs.block && lhs.batchLeftInDatabase == rhs.batchLeftInDatabase
            && lhs.batch == rhs.batch && lhs.traceparent == rhs.traceparent && lhs.recipients == rhs.recipients
            && lhs.error?.code == rhs.error?.code && lhs.error?.errorID == rhs.error?.errorID && lhs.error?.message == rhs.error?.message
    }
}

/// Why a member's stream cannot be read from where it asked.
enum SequencerReadError: Error, Equatable, CustomStringConvertible {
    /// Events up to `counter` were pruned; the member must recover from elsewhere.
    case pruned(member: String, requested: Int64, firstAvailable: Int64)
    /// The event at `timestamp`, read moments ago, was pruned before its batch could be read.
    case prunedWhileServing(timestamp: Int64)

    var description: String {
        switch self {
        case .prunedWhileServing(let timestamp):
            "the event at \(timestamp) was pruned (a forced prune) while it was being served; "
                + "the member resubscribes and gets the pruning error for its counter"

        case .pruned(let member, let requested, let firstAvailable):
            "events of \(member) before counter \(firstAvailable) were pruned, so counter \(requested) is gone; "
                + "the member must recover its state from a peer (repair import-acs) and subscribe from \(firstAvailable)"
        }
    }
}

/// Reads members' streams: each member's events in timestamp order with
/// consecutive counters from 0, never past the safe point.
struct SequencerReader: Sendable {
    let database: PostgresDatabase
    let safePoint: SafePoint
    /// The node's shared reader, for subscriptions that have caught up.
    let fanOut: DeliveryFanOut
    /// A checkpoint is recorded every this many counters.
    static let checkpointInterval: Int64 = 256
    /// Rows read per query.
    static let pageSize = 500

    /// What a reader yields: a delivery, or the news that everything up to a safe point has
    /// been yielded (so a consumer that processed the items before it has processed all of them).
    enum Item: Sendable {
        case delivery(StoredDelivery)
        case caughtUp(Int64)
    }

    /// The member's deliveries from `counter` on, as they become safe to read; runs until cancelled.
    func deliveries(member: Int32, memberName: String, from counter: Int64) -> AsyncThrowingStream<StoredDelivery, any Error> {
        let stream = MemberStream(reader: self, member: member, memberName: memberName, from: counter)
        return AsyncThrowingStream(unfolding: { try await stream.nextDelivery() })
    }

    /// `deliveries`, with a `caughtUp` marker after each safe point read completely.
    ///
    /// Read on demand: a page (or the shared reader's next deliveries) is read when the consumer
    /// has taken everything read before. A subscriber that stops reading — its flow-control window
    /// full — holds one read in this node's memory (a page, or deliveries the shared reader keeps
    /// anyway), not its whole backlog. One consumer per stream: `next` is not reentrant.
    func items(member: Int32, memberName: String, from counter: Int64) -> AsyncThrowingStream<Item, any Error> {
        let stream = MemberStream(reader: self, member: member, memberName: memberName, from: counter)
        return AsyncThrowingStream(unfolding: { try await stream.next() })
    }

    /// One member's stream from a counter on: its own page reads until it has caught up with
    /// the safe point, then the node's shared reader until that cannot serve it.
    private actor MemberStream {
        let reader: SequencerReader
        let member: Int32
        let memberName: String
        /// The first counter the stream yields.
        let counter: Int64
        /// Read and not yet taken, in order; `taken` is the index of the next one.
        private var buffer: [Item] = []
        private var taken = 0
        /// The last delivery read (counter and timestamp), nil before the start was looked up.
        private var position: (counter: Int64, timestamp: Int64)?
        private var safe: Int64 = .min
        /// Set while following the shared reader: the time up to which the stream is complete.
        private var caughtUp: Int64?

        init(reader: SequencerReader, member: Int32, memberName: String, from counter: Int64) {
            self.reader = reader
            self.member = member
            self.memberName = memberName
            self.counter = counter
        }

        /// The next item; nil once the consuming task is cancelled.
        func next() async throws -> Item? {
            while taken == buffer.count {
                if Task.isCancelled { return nil }
                buffer.removeAll(keepingCapacity: true)
                taken = 0
                try await readMore()
            }
            defer { taken += 1 }
            return buffer[taken]
        }

        func nextDelivery() async throws -> StoredDelivery? {
            while let item = try await next() {
                if case .delivery(let delivery) = item { return delivery }
            }
            return nil
        }

        /// Reads what follows `position` into the buffer (possibly nothing: the caller asks again).
        private func readMore() async throws {
            guard let position else {
                position = try await reader.start(member: member, memberName: memberName, counter: counter)
                safe = try await reader.safePoint.refresh()
                return
            }
            guard let caughtUp else {
                let (page, after) = try await reader.read(
                    member: member, memberName: memberName, after: position, upTo: safe, requested: counter)
                for delivery in page where delivery.counter >= counter { buffer.append(.delivery(delivery)) }
                self.position = after
                guard page.count < SequencerReader.pageSize else { return }
                buffer.append(.caughtUp(safe))
                // Caught up: follow the node's shared reader until it cannot serve this stream
                // (it fell too far behind, or a read failed); then read on its own again.
                self.caughtUp = max(safe, self.position?.timestamp ?? safe)
                return
            }
            guard let next = await reader.fanOut.next(member: member, after: caughtUp) else {
                if Task.isCancelled { return }
                safe = try await reader.safePoint.wait(after: caughtUp)
                self.caughtUp = nil
                return
            }
            // A prune that removed some of this member's deliveries before the shared reader read
            // them: counting on from `position` would give the rows left the removed ones'
            // counters, a gap the member cannot see. Go on from the prune point instead, or fail
            // as a subscription from a removed counter does (as a page read does).
            var from = position
            if let pruned = next.prunePoint, pruned.counter > from.counter {
                guard counter > pruned.counter else {
                    throw SequencerReadError.pruned(member: memberName, requested: counter, firstAvailable: pruned.counter + 1)
                }
                from = (pruned.counter, pruned.timestamp)
            }
            var numbered: [StoredDelivery] = []
            // Deliveries at or before `from` are counted in it: a prune point's, which this node
            // may still hold in memory (its own commits).
            for delivery in next.deliveries where delivery.timestamp > from.timestamp {
                numbered.append(delivery.numbered(from.counter + 1 + Int64(numbered.count)))
            }
            // Checkpoints first, as a page read does: a delivery the member has seen is never
            // missing its checkpoint.
            let checkpoints = numbered.filter { $0.counter % SequencerReader.checkpointInterval == 0 }.map { ($0.counter, $0.timestamp) }
            if !checkpoints.isEmpty { try await reader.record(checkpoints, member: member) }
            for delivery in numbered where delivery.counter >= counter { buffer.append(.delivery(delivery)) }
            self.position = numbered.last.map { ($0.counter, $0.timestamp) } ?? from
            self.caughtUp = next.upTo
            buffer.append(.caughtUp(next.upTo))
        }
    }

    /// The delivery's batch (nil for a deliver error): as read, or from the database when the
    /// shared reader left it there (`StoredDelivery.batchLeftInDatabase`). Every consumer of a
    /// delivery's batch asks here.
    func batch(of delivery: StoredDelivery) async throws -> [UInt8]? {
        guard delivery.batchLeftInDatabase else { return delivery.batch }
        let rows = try await database.withConnection { connection in
            try connection.execute("SELECT batch FROM sequencer_events WHERE ts = $1", [.int64(delivery.timestamp)]).rows
        }
        // Gone: a forced prune ran since the event was read. Never an empty batch in its place
        // (it would be served, signed, as the event), nor a skipped delivery.
        guard let row = rows.first, let batch = try row[0].bytes else {
            throw SequencerReadError.prunedWhileServing(timestamp: delivery.timestamp)
        }
        return batch
    }

    /// Records (counter, timestamp) checkpoints of `member` (idempotent: whichever reader passes first).
    fileprivate func record(_ checkpoints: [(Int64, Int64)], member: Int32) async throws {
        try await database.withConnection { connection in
            let values = checkpoints.indices.map { "($1::int8::int4, $\($0 * 2 + 2), $\($0 * 2 + 3))" }
            _ = try connection.execute(
                "INSERT INTO sequencer_counter_checkpoints (member, counter, ts) VALUES \(values.joined(separator: ", ")) ON CONFLICT DO NOTHING",
                [.int64(Int64(member))] + checkpoints.flatMap { [PostgresValue.int64($0.0), .int64($0.1)] })
        }
    }

    /// The (counter, timestamp) just before `counter`: the nearest checkpoint at or below it.
    fileprivate func start(member: Int32, memberName: String, counter: Int64) async throws -> (counter: Int64, timestamp: Int64) {
        try await database.withConnection { connection in
            let pruned = try connection.execute(
                "SELECT counter FROM sequencer_prune_points WHERE member = $1::int8::int4", [.int64(Int64(member))]
            ).rows.first.flatMap { try $0[0].int64 }
            if let pruned, counter <= pruned {
                throw SequencerReadError.pruned(member: memberName, requested: counter, firstAvailable: pruned + 1)
            }
            let rows = try connection.execute(
                "SELECT counter, ts FROM sequencer_counter_checkpoints WHERE member = $1::int8::int4 AND counter < $2 ORDER BY counter DESC LIMIT 1",
                [.int64(Int64(member)), .int64(counter)]
            ).rows
            if let row = rows.first { return (try row[0].int64 ?? -1, try row[1].int64 ?? 0) }
            return (-1, Int64.min)
        }
    }

    /// Where `member`'s leaf of a stored event is, from the event's columns `node`, `block_ts`
    /// and `leaf_offset`; nil for an event stored before blocks were signed.
    static func blockPlace(
        _ row: [PostgresCell], member: Int32, sender: Int32, recipients: [Int32], kind: EventKind?, node: Int, blockTimestamp: Int,
        leafOffset: Int
    ) throws -> BlockPlace? {
        guard let timestamp = try row[blockTimestamp].int64, let offset = try row[leafOffset].int64,
            let position = SequencerWriter.deliveryMembers(sender: sender, recipients: recipients, kind: kind)
                .firstIndex(of: member)
        else { return nil }
        return BlockPlace(node: Int16(try row[node].int64 ?? 0), timestamp: timestamp, leaf: Int(offset) + position)
    }

    /// Up to a page of deliveries after `position`, no later than `safe`, with their counters,
    /// for a stream that asked for counters from `requested` on.
    ///
    /// Counters are counted from `position`, read before this page (a checkpoint, the page
    /// before). A prune that committed since then removed deliveries after it: counted from
    /// `position` the rows left would get the counters of the ones removed, and a member would
    /// skip events or see them again under other counters. So the member's prune point is read
    /// in the same statement (one snapshot): when it is past `position`, counting goes on from it,
    /// and if the stream asked for a counter it removed, the read fails as a subscription from
    /// that counter would.
    ///
    /// Returns the deliveries and the stream's position after them: the last delivery's, or the
    /// prune point's when a prune removed everything after `position` (else `position`).
    func read(
        member: Int32, memberName: String, after position: (counter: Int64, timestamp: Int64), upTo safe: Int64, requested: Int64
    ) async throws -> (deliveries: [StoredDelivery], position: (counter: Int64, timestamp: Int64)) {
        guard safe > position.timestamp else { return ([], position) }
        fanOut.ownReads.add(1, ordering: .relaxed)
        return try await database.withConnection { connection in
            // One row even for an empty page (its event columns NULL): a prune that removed every
            // delivery after `position` must still be seen.
            var rows = try connection.execute(
                """
                SELECT r.*, p.counter, p.ts FROM (SELECT 1) one
                    LEFT JOIN sequencer_prune_points p ON p.member = $1::int8::int4
                    LEFT JOIN LATERAL (
                        SELECT e.ts, e.sender::int8, e.message_id, e.kind::int8, e.batch, e.traceparent,
                               array_to_string(e.recipients, ','), e.error_code::int8, e.error_id, e.error_message, e.node::int8,
                               e.block_ts, e.leaf_offset::int8
                        FROM sequencer_deliveries d JOIN sequencer_events e ON e.ts = d.ts
                        WHERE d.member = $1::int8::int4 AND d.ts > $2 AND d.ts <= $3
                        ORDER BY d.ts LIMIT \(Self.pageSize)) r ON true
                ORDER BY r.ts
                """, [.int64(Int64(member)), .int64(position.timestamp), .int64(safe)]
            ).rows
            var counter = position.counter
            var after = position
            if let pruned = try rows.first?[13].int64, pruned > counter {
                guard requested > pruned else {
                    throw SequencerReadError.pruned(member: memberName, requested: requested, firstAvailable: pruned + 1)
                }
                counter = pruned  // the rows left follow the prune point
                after = (pruned, try rows[0][14].int64 ?? position.timestamp)
            }
            if rows.count == 1, try rows[0][0].int64 == nil { rows = [] }  // an empty page
            var deliveries: [StoredDelivery] = []
            var checkpoints: [PostgresValue] = []
            for row in rows {
                counter += 1
                let timestamp = try row[0].int64 ?? 0
                let kind = EventKind(stored: try row[3].int64)
                let recipients = (try row[6].string ?? "").split(separator: ",").compactMap { Int32($0) }
                var error: (UInt32, String, String)?
                if kind == .deliverError {
                    error = (UInt32(try row[7].int64 ?? 2), try row[8].string ?? "", try row[9].string ?? "")
                }
                let sender = Int32(try row[1].int64 ?? 0)
                deliveries.append(StoredDelivery(
                    counter: counter, timestamp: timestamp, sender: sender, messageID: try row[2].string ?? "",
                    batch: try row[4].bytes, traceparent: try row[5].string ?? "", recipients: recipients, error: error,
                    block: try Self.blockPlace(
                        row, member: member, sender: sender, recipients: recipients, kind: kind, node: 10, blockTimestamp: 11,
                        leafOffset: 12)))
                if counter % Self.checkpointInterval == 0 {
                    checkpoints += [.int64(Int64(member)), .int64(counter), .int64(timestamp)]
                }
            }
            if !checkpoints.isEmpty {
                let values = stride(from: 0, to: checkpoints.count, by: 3).map { "($\($0 + 1)::int8::int4, $\($0 + 2), $\($0 + 3))" }
                _ = try connection.execute(
                    "INSERT INTO sequencer_counter_checkpoints (member, counter, ts) VALUES \(values.joined(separator: ", ")) ON CONFLICT DO NOTHING",
                    checkpoints)
            }
            return (deliveries, deliveries.last.map { ($0.counter, $0.timestamp) } ?? after)
        }
    }
}
