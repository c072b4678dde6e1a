import Testing
import WeftStore
import WeftTestSupport

/// The listening connection: notifications committed by other connections arrive, and a
/// killed connection is replaced by itself.
@Suite(.timeLimit(.minutes(5))) struct PostgresListenerTests {
    /// Starts a listener on `channel` whose events arrive on the returned stream.
    static func listen(_ url: String, _ channel: String) throws -> (PostgresListener, AsyncStream<PostgresListener.Event>.AsyncIterator) {
        let (events, continuation) = AsyncStream<PostgresListener.Event>.makeStream()
        let listener = try PostgresListener(url: url, channels: [channel], reconnectDelay: .milliseconds(20)) { continuation.yield($0) }
        listener.start()
        return (listener, events.makeAsyncIterator())
    }

    /// The next notification on `events`, skipping `.listening`.
    static func nextNotification(_ events: inout AsyncStream<PostgresListener.Event>.AsyncIterator) async -> PostgresNotification? {
        while let event = await events.next() {
            if case .notification(let notification) = event { return notification }
        }
        return nil
    }

    @Test func aNotificationCommittedByAnotherConnectionArrivesOnlyWithItsCommit() async throws {
        try await PostgresFixture.withFixture { fixture in
            var (listener, events) = try Self.listen(fixture.url, "weft_test")
            #expect(await events.next() == .listening)
            let sender = try PostgresConnection(url: fixture.url)
            // One rolled back, then one committed: only the committed one is ever delivered, so
            // the first to arrive must be it.
            _ = try sender.execute("BEGIN")
            _ = try sender.execute("SELECT pg_notify('weft_test', 'rolled back')")
            _ = try sender.execute("ROLLBACK")
            _ = try sender.execute("BEGIN")
            _ = try sender.execute("SELECT pg_notify('weft_test', 'committed')")
            _ = try sender.execute("SELECT pg_notify('weft_other', 'not listened to')")
            _ = try sender.execute("COMMIT")
            let received = await Self.nextNotification(&events)
            #expect(received?.channel == "weft_test")
            #expect(received?.payload == "committed")
            await listener.stop()
        }
    }

    @Test func aKilledListeningConnectionIsReplacedAndListensAgain() async throws {
        try await PostgresFixture.withFixture { fixture in
            var (listener, events) = try Self.listen(fixture.url, "weft_test")
            #expect(await events.next() == .listening)
            let admin = try PostgresConnection(url: fixture.url)
            let killed = try admin.execute(
                "SELECT count(*)::int8 FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"weft_test\"') AS t"
            ).rows[0][0].int64
            #expect(killed == 1)
            // Listening again on a new connection: what is sent from now on arrives.
            #expect(await events.next() == .listening)
            _ = try admin.execute("SELECT pg_notify('weft_test', 'after')")
            #expect(await Self.nextNotification(&events)?.payload == "after")
            await listener.stop()
        }
    }

    @Test func aChannelNameThatIsNotAnIdentifierIsRefused() {
        #expect(throws: PostgresError.self) { try PostgresListener(url: "", channels: ["x\"; DROP TABLE t"]) { _ in } }
    }
}
