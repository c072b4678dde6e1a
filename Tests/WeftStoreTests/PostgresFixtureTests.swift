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

    /// A run killed before it stopped its server (a timeout, a signal) leaves the server running;
    /// the next fixture to start stops it, knowing by the owner it recorded that nobody will.
    @Test func aServerWhoseOwnerIsGoneIsStoppedByTheNextStart() async throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/pg-fixture").path
        // A process that has exited by the time its pid is known.
        let gone = try await TestSubprocess.run(["sh", "-c", "echo $$"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("orphan-\(UUID().uuidString).out").path
        defer { try? FileManager.default.removeItem(atPath: output) }
        // Output to a file: the server outlives the script and must not hold a pipe of ours.
        let started = try await TestSubprocess.run(["bash", "-c", "WEFT_PG_FIXTURE_OWNER=\(gone) bash '\(script)' start >'\(output)' 2>/dev/null"])
        try #require(started.status == 0)
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(whereSeparator: \.isNewline).map(String.init)
        // The script returned once the server accepted connections. (Not checked here again: a
        // fixture that another test starts meanwhile may already have stopped the orphan.)
        let (orphanURL, orphanDirectory) = (try #require(lines.first), try #require(lines.last))
        try #require(orphanURL.hasPrefix("postgresql://") && orphanDirectory.contains("weft-pg"))

        let next = try await PostgresFixture.startThrowAwayServer()
        #expect(!FileManager.default.fileExists(atPath: orphanDirectory), "the orphan's directory is still there")
        let error = #expect(throws: PostgresError.self) { try PostgresConnection(url: orphanURL) }
        #expect(error?.code == .connectionFailed)
        // A fixture whose owner is alive (this process) is left alone.
        #expect(try PostgresConnection(url: next.url).execute("SELECT 1").rows.first?.first?.int64 == 1)
        try await next.stop()
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
