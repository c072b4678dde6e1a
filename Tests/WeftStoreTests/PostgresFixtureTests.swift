import Foundation
import Testing
import WeftStore
import WeftTestSupport

/// Always starts its own servers (`startThrowAwayServer`), so it also runs when the rest
/// of the suite uses `WEFT_TEST_PGURL`.
@Suite struct PostgresFixtureTests {
    @Test func concurrentFixturesAreSeparateServersAndStopCleansUp() async throws {
        async let startedFirst = Self.startCapturingFailure()
        async let startedSecond = Self.startCapturingFailure()
        let started = await [startedFirst, startedSecond]
        let fixtures = started.compactMap { try? $0.get() }
        do {
            try await checkSeparateServersAndStop(try started[0].get(), try started[1].get())
        } catch {
            for fixture in fixtures {
                try? await fixture.stop()
            }
            throw error
        }
    }

    private func checkSeparateServersAndStop(
        _ first: PostgresFixture,
        _ second: PostgresFixture
    ) async throws {
        #expect(first.url != second.url)
        for fixture in [first, second] {
            let connection = try PostgresConnection(url: fixture.url)
            let result = try connection.execute("SELECT current_database()::text")
            #expect(try result.rows.first?.first?.string == "weft")
        }

        try await first.stop()
        try await first.stop()  // idempotent
        let directory = try #require(first.directory)
        #expect(!FileManager.default.fileExists(atPath: directory))
        let error = #expect(throws: PostgresError.self) {
            try PostgresConnection(url: first.url)
        }
        #expect(error?.code == .connectionFailed)

        // The second server is unaffected by the first one's shutdown.
        let connection = try PostgresConnection(url: second.url)
        #expect(try connection.execute("SELECT 1").rows.first?.first?.int64 == 1)
        try await second.stop()
    }

    /// Keeps a failed start from hiding a successful one, whose server must still be stopped.
    private static func startCapturingFailure() async -> Result<
        PostgresFixture, PostgresFixtureError
    > {
        do {
            return .success(try await PostgresFixture.startThrowAwayServer())
        } catch {
            return .failure(error)
        }
    }
}
