import Testing
import WeftStore
import WeftTestSupport

@Suite(.timeLimit(.minutes(2))) struct SessionLockTests {
    /// One process holds the lock; another is refused while it does and takes it once the
    /// first closes.
    @Test func oneHolderAtATimeAndCloseReleases() async throws {
        try await PostgresFixture.withFixture { fixture in
            let first = PostgresSessionLock(url: fixture.url, namespace: 7, key: 1, idleSessionTimeout: .seconds(60))
            let second = PostgresSessionLock(url: fixture.url, namespace: 7, key: 1, idleSessionTimeout: .seconds(60))
            let firstTakes = try await first.acquire()
            let firstStillHolds = try await first.acquire()  // asked again: still the holder
            #expect(firstTakes && firstStillHolds)
            #expect(first.stillHeldCheck != nil)
            let secondTakesWhileHeld = try await second.acquire()
            #expect(!secondTakesWhileHeld)
            #expect(second.stillHeldCheck == nil)
            await first.close()
            let firstAfterClose = try await first.acquire()
            #expect(!firstAfterClose, "closed: never again")
            let secondTakesAfterClose = try await second.acquire()
            #expect(secondTakesAfterClose)
            await second.close()
        }
    }

    /// A lock whose server hangs (accepts TCP, never answers) keeps its own thread waiting,
    /// not its callers: reading `stillHeldCheck` does not wait for the stuck attempt (it did:
    /// the whole conversation ran under the mutex that guards it, 10 s here, libpq's connect
    /// timeout; for ever before it had one).
    @Test func aStuckAttemptDoesNotHoldUpItsCallers() async throws {
        let listener = try SilentListener()
        defer { listener.close() }
        let lock = PostgresSessionLock(
            url: "postgresql://weft@127.0.0.1:\(listener.port)/weft", namespace: 7, key: 2, idleSessionTimeout: .seconds(60))
        let attempt = Task { try await lock.acquire() }
        // Waits for the attempt to be under way (a loaded machine may start it late).
        #expect(await listener.connectionArrives(within: .seconds(60)), "the attempt reached the listener")
        let started = ContinuousClock.now
        #expect(lock.stillHeldCheck == nil)
        let waited = ContinuousClock.now - started
        #expect(waited < .seconds(2), "stillHeldCheck waited \(waited) for the stuck attempt")
        await #expect(throws: PostgresError.self) { _ = try await attempt.value }
        await lock.close()
    }
}
