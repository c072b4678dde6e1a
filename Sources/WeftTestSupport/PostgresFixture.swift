internal import Foundation

/// A throw-away PostgreSQL server for one test run, started by `scripts/pg-fixture`.
///
/// Tests use a real server because the behaviour under test (SQLSTATEs, bytea, parameter
/// binding) belongs to PostgreSQL, and a fake would only test our idea of it. Set
/// `WEFT_TEST_PGURL` to run against an existing server instead; the fixture then starts and
/// stops nothing. Set `WEFT_PG_FIXTURE_SCRIPT` to use a script other than the repository's.
public struct PostgresFixture: Sendable {
    /// The libpq URL of the server's `weft` database.
    public let url: String
    /// The directory holding the server's data, socket and log (`server.log`), or `nil`
    /// when the fixture uses `WEFT_TEST_PGURL`.
    public let directory: String?
    private let script: String?

    /// Starts a server (or adopts `WEFT_TEST_PGURL`); call `stop()` when done, or use
    /// `withFixture`, which cannot forget to.
    public static func start() async throws(PostgresFixtureError) -> PostgresFixture {
        let environment = ProcessInfo.processInfo.environment
        if let url = environment["WEFT_TEST_PGURL"], !url.isEmpty {
            return PostgresFixture(url: url, directory: nil, script: nil)
        }
        return try await startThrowAwayServer()
    }

    /// Starts a throw-away server even when `WEFT_TEST_PGURL` is set: for tests of the
    /// fixture itself and for the demo's embedded database.
    public static func startThrowAwayServer() async throws(PostgresFixtureError) -> PostgresFixture {
        let environment = ProcessInfo.processInfo.environment
        let script = try scriptPath(environment: environment)
        let output = try await runScript(script, ["start"])
        let lines = output.split(whereSeparator: \.isNewline).map(String.init)
        guard lines.count == 2, lines[0].hasPrefix("postgresql://"), lines[1].hasPrefix("/") else {
            // Something started but we cannot tell what; stop it if we can see where.
            if let directory = lines.last, directory.hasPrefix("/") {
                _ = try? await runScript(script, ["stop", directory])
            }
            throw PostgresFixtureError(
                message: "\(script) start printed \(lines.count) lines, expected a URL and a "
                    + "directory: \(output)"
            )
        }
        return PostgresFixture(url: lines[0], directory: lines[1], script: script)
    }

    /// Stops the server and deletes its directory; a no-op for `WEFT_TEST_PGURL`.
    /// Stopping twice is harmless.
    public func stop() async throws(PostgresFixtureError) {
        guard let script, let directory else { return }
        _ = try await Self.runScript(script, ["stop", directory])
    }

    /// Stops the server at once, dropping every connection as a crash would, and starts it
    /// again on the same port with the same data. Throws for `WEFT_TEST_PGURL` servers,
    /// which the fixture does not control.
    public func restart() async throws(PostgresFixtureError) {
        guard let script, let directory else {
            throw PostgresFixtureError(message: "cannot restart a server the fixture did not start (WEFT_TEST_PGURL)")
        }
        _ = try await Self.runScript(script, ["restart", directory])
    }

    /// Runs `body` with a fresh server and stops the server afterwards, even if `body`
    /// throws (an error from `body` wins over one from stopping).
    public static func withFixture<Result>(
        isolation: isolated (any Actor)? = #isolation,
        _ body: (PostgresFixture) async throws -> Result
    ) async throws -> Result {
        let fixture = try await start()
        let result: Result
        do {
            result = try await body(fixture)
        } catch {
            try? await fixture.stop()
            throw error
        }
        try await fixture.stop()
        return result
    }

    /// `WEFT_PG_FIXTURE_SCRIPT`, or `scripts/pg-fixture` in the repository this file is in:
    /// the nearest ancestor directory of `#filePath` that holds `Package.swift`.
    private static func scriptPath(
        environment: [String: String],
        filePath: String = #filePath
    ) throws(PostgresFixtureError) -> String {
        if let script = environment["WEFT_PG_FIXTURE_SCRIPT"], !script.isEmpty {
            return script
        }
        var directory = URL(fileURLWithPath: filePath).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(
                atPath: directory.appendingPathComponent("Package.swift").path)
            {
                return directory.appendingPathComponent("scripts/pg-fixture").path
            }
            directory.deleteLastPathComponent()
        }
        throw PostgresFixtureError(
            message: "no Package.swift above \(filePath); set WEFT_PG_FIXTURE_SCRIPT to the "
                + "pg-fixture script or WEFT_TEST_PGURL to a running server"
        )
    }

    /// Runs `bash script arguments…` and returns its stdout, without blocking a thread
    /// while it runs.
    ///
    /// Output goes to temporary files rather than pipes: the script starts a server that
    /// outlives it, and a pipe inherited by that server would never reach end-of-file.
    private static func runScript(
        _ script: String,
        _ arguments: [String]
    ) async throws(PostgresFixtureError) -> String {
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("weft-pg-fixture-\(UUID().uuidString)")
        let stdoutURL = scratch.appendingPathExtension("out")
        let stderrURL = scratch.appendingPathExtension("err")
        defer {
            try? FileManager.default.removeItem(at: stdoutURL)
            try? FileManager.default.removeItem(at: stderrURL)
        }
        let command = "\(script) \(arguments.joined(separator: " "))"
        let status: Int32
        do {
            guard FileManager.default.createFile(atPath: stdoutURL.path, contents: nil),
                FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
            else {
                throw PostgresFixtureError(message: "cannot create output files in \(scratch.path)")
            }
            let stdout = try FileHandle(forWritingTo: stdoutURL)
            let stderr = try FileHandle(forWritingTo: stderrURL)
            defer {
                try? stdout.close()
                try? stderr.close()
            }
            let process = Process()
            // Through env, so a developer's newer bash (macOS ships 3.2) is the one used.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["bash", script] + arguments
            // The script stops the servers of owners that are gone (a run killed before its stop).
            var environment = ProcessInfo.processInfo.environment
            environment["WEFT_PG_FIXTURE_OWNER"] = String(ProcessInfo.processInfo.processIdentifier)
            process.environment = environment
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = stdout
            process.standardError = stderr
            status = try await withCheckedThrowingContinuation { continuation in
                process.terminationHandler = { process in
                    continuation.resume(returning: process.terminationStatus)
                }
                do {
                    try process.run()
                } catch {
                    process.terminationHandler = nil
                    continuation.resume(throwing: error)
                }
            }
        } catch let error as PostgresFixtureError {
            throw error
        } catch {
            throw PostgresFixtureError(message: "could not run \(command): \(error)")
        }
        let output = (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? ""
        guard status == 0 else {
            let diagnostics = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
            throw PostgresFixtureError(
                message: "\(command) exited with status \(status):\n\(diagnostics)"
            )
        }
        return output
    }
}

/// Why a `PostgresFixture` could not start or stop a server, with the script's stderr.
public struct PostgresFixtureError: Error, Sendable, CustomStringConvertible {
    public var message: String

    public init(message: String) {
        self.message = message
    }

    public var description: String { "PostgresFixtureError: \(message)" }
}
