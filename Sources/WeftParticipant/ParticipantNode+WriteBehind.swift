import Logging
import WeftTransport
import WeftTopology

/// The writes of processed events on their way to the store.
///
/// The event processor does not wait for an event's write before it looks at the next event:
/// it queues the write, updates the state in memory (the next event is validated against it),
/// and goes on. One flush at a time commits everything queued, with the cursor past the last
/// event processed, in one transaction; the writes queued meanwhile go in the next one. Under
/// load a participant thus commits several events per transaction (a group commit); an idle
/// one starts its flush at once, so an event waits for no timer.
///
/// Nothing leaves the participant before the write it depends on is committed: responses go
/// to the mediator, completions to applications, outcomes and the ledger end to readers only
/// from `afterCommit`. A crash loses at most queued writes whose effects nobody saw, and the
/// restart reads their events again from the stored cursor. A failed flush ends processing
/// (a restart resumes from the store), as a failed write in the event processor always did.
struct WriteBehind {
    /// Queued for the next flush, in stream order.
    var writes: [ParticipantStore.EventWrite] = []
    /// What the queued writes release once committed, in stream order.
    var afterCommit: [() -> Void] = []
    /// The next flush has something to store: writes, or the cursor alone.
    var wanted = false
    /// The flush in flight: at most one, so flushes commit in stream order.
    var flushing: Task<Void, Never>?
    /// The cursor the flush in flight stores.
    var flushingCursor: ParticipantStore.Cursor?
    /// Flushes started and committed so far: a drain waits for a number, not for an empty
    /// queue, which a busy stream might never leave.
    var started: UInt64 = 0
    var committed: UInt64 = 0
    /// Why processing ended, once a flush failed; nothing is queued after it.
    var failure: (any Error)?
    /// Set by a stop: nothing is queued or written after it.
    var closed = false

    /// Queued writes beyond which the event processor waits for the flush in flight.
    static let queuedMax = 64
}

extension ParticipantNode {
    /// Queues `write`, the effects of the event before `next`, and moves the cursor past that
    /// event; `afterCommit` runs once both are committed, under the event's trace.
    func enqueue(
        _ write: ParticipantStore.EventWrite, next: ParticipantStore.Cursor, afterCommit: @escaping () -> Void
    ) throws {
        if let failure = writeBehind.failure { throw failure }
        guard !writeBehind.closed else { throw ParticipantError.stopped }
        cursor = next
        writeBehind.writes.append(write)
        let trace = TraceContext.current
        writeBehind.afterCommit.append { TraceContext.$current.withValue(trace) { afterCommit() } }
        writeBehind.wanted = true
        startFlushIfIdle()
    }

    /// Asks for the cursor to be stored by the next flush (one starts now unless one is in
    /// flight). Not before the topology history has arrived: broadcasts before it are held in
    /// memory only, and a restart must read them again.
    func storeCursor() {
        guard ready, !writeBehind.closed else { return }
        storeCursorAfterEvent = false
        guard cursor != (writeBehind.flushingCursor ?? storedCursor) else { return }
        writeBehind.wanted = true
        startFlushIfIdle()
    }

    /// Returns once everything queued so far is committed; throws if a flush failed or writes
    /// were closed by a stop. A write outside the queue (topology, commitments, a deliver
    /// error) waits for it first, so that the store changes in stream order.
    func drainWrites() async throws {
        let target = writeBehind.wanted ? writeBehind.started + 1 : writeBehind.started
        while writeBehind.committed < target, writeBehind.failure == nil, !writeBehind.closed,
            let flush = writeBehind.flushing
        {
            await flush.value
        }
        if let failure = writeBehind.failure { throw failure }
        if writeBehind.closed { throw ParticipantError.stopped }
    }

    /// Waits for the flush in flight when too many writes are queued behind it: the event
    /// processor must not run away from a slow database.
    func throttleWrites() async {
        if writeBehind.writes.count >= WriteBehind.queuedMax, let flush = writeBehind.flushing { await flush.value }
    }

    /// Stops queueing and writing: with `flushing`, once everything queued is committed (a
    /// stop); without, dropping what is queued and waiting only for the flush in flight (a
    /// crash, as far as the store can tell). An event processor still at work afterwards
    /// writes nothing more (`enqueue` and `drainWrites` throw `stopped`).
    func closeWrites(flushing: Bool) async {
        if flushing {
            storeCursor()
            do {
                try await drainWrites()
            } catch {
                logger.warning(
                    "the stream cursor was not stored at stop; a restart reads the events since the stored one again",
                    metadata: ["error": "\(error)", LogKey.counter: "\(storedCursor.nextCounter)"])
            }
        }
        writeBehind.closed = true
        writeBehind.writes = []
        writeBehind.afterCommit = []
        writeBehind.wanted = false
        while let flush = writeBehind.flushing { await flush.value }
    }

    private func startFlushIfIdle() {
        guard writeBehind.flushing == nil, writeBehind.wanted, writeBehind.failure == nil else { return }
        let (writes, afterCommit, target) = (writeBehind.writes, writeBehind.afterCommit, cursor)
        writeBehind.writes = []
        writeBehind.afterCommit = []
        writeBehind.wanted = false
        writeBehind.flushingCursor = target
        writeBehind.started += 1
        // The flush stores the cursor as it is now: the count of events moved past in memory
        // only starts again, whether or not more have been processed when it commits.
        unstoredEvents = 0
        cursorStoredAt = .now
        let store = self.store
        // Started from the actor, the task runs on it: `flushed` sees the state as it is when
        // the commit returns, and the next flush starts from there. It carries no event's
        // trace: each action after the commit runs under its own.
        writeBehind.flushing = TraceContext.$current.withValue(nil) {
            Task {
                do {
                    try await store.write(writes, cursor: target)
                    flushed(target, afterCommit)
                } catch {
                    flushFailed(error)
                }
            }
        }
    }

    private func flushed(_ stored: ParticipantStore.Cursor, _ afterCommit: [() -> Void]) {
        writeBehind.flushing = nil
        writeBehind.flushingCursor = nil
        writeBehind.committed += 1
        cursorStored(stored)
        for action in afterCommit { action() }
        // Readers of the store (the Ledger API's streams) wait for a move of the cursor.
        cursorMoved(to: stored.nextCounter)
        if !writeBehind.closed { startFlushIfIdle() }
    }

    private func flushFailed(_ error: any Error) {
        writeBehind.flushing = nil
        writeBehind.flushingCursor = nil
        writeBehind.failure = error
        writeBehind.writes = []
        writeBehind.afterCommit = []
        endProcessing(error)
    }
}
