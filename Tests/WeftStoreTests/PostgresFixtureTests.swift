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
        let script = Self.script
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

    /// Every fixture copies one template cluster (one initdb per user and PostgreSQL version, in
    /// TMPDIR) instead of running initdb: the copies must be clusters of their own, and a
    /// template left incomplete (its removal cut short) must be made again, not copied.
    @Test func fixturesCopyOneTemplateAndShareNoData() async throws {
        let script = Self.script
        // A TMPDIR of its own, so that the template is made here; the server user must reach it.
        let temporary = "/tmp/weft-template-test-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(
            atPath: temporary, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        var started: [String] = []
        func start() async throws -> String {
            let run = try await TestSubprocess.run(
                ["bash", "-c", "TMPDIR='\(temporary)' WEFT_PG_FIXTURE_OWNER=\(getpid()) bash '\(script)' start 2>&1 >'\(temporary)/out'"])
            try #require(run.status == 0, "pg-fixture start failed: \(run.output)")
            let lines = try String(contentsOfFile: "\(temporary)/out", encoding: .utf8).split(whereSeparator: \.isNewline)
            try #require(lines.count == 2)
            started.append(String(lines[1]))
            return String(lines[0])
        }
        func templates() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: temporary).filter { $0.hasPrefix("weft-pg-template.") && !$0.hasSuffix(".lock") }
        }
        do {
            let first = try await start()
            let made = try templates()
            try #require(made.count == 1, "templates in \(temporary): \(made)")
            let ready = "\(temporary)/\(made[0])/ready"
            #expect(FileManager.default.fileExists(atPath: ready))
            let second = try await start()
            #expect(try templates() == made, "the second start made a template of its own")

            _ = try PostgresConnection(url: first).execute("CREATE TABLE only_in_the_first (x int)")
            let count = "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_the_first'"
            #expect(try PostgresConnection(url: first).execute(count).rows.first?.first?.int64 == 1)
            #expect(try PostgresConnection(url: second).execute(count).rows.first?.first?.int64 == 0)
            #expect(try PostgresConnection(url: second).execute("SELECT current_database()::text").rows.first?.first?.string == "weft")

            // An incomplete template is debris: the next start makes it again.
            try FileManager.default.removeItem(atPath: ready)
            try FileManager.default.removeItem(atPath: "\(temporary)/\(made[0])/data/PG_VERSION")
            let third = try await start()
            #expect(FileManager.default.fileExists(atPath: ready))
            #expect(try PostgresConnection(url: third).execute(count).rows.first?.first?.int64 == 0)
        } catch {
            for directory in started { _ = try? await TestSubprocess.run(["bash", script, "stop", directory]) }
            throw error
        }
        for directory in started {
            let stopped = try await TestSubprocess.run(["bash", script, "stop", directory])
            #expect(stopped.status == 0, "\(stopped.error)")
        }
    }

    /// The repository's `scripts/pg-fixture`, for tests that run it directly.
    private static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/pg-fixture").path

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
