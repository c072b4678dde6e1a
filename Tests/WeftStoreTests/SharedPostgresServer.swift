import Testing
import WeftStore
import WeftTestSupport

/// Starts one PostgreSQL server for a whole suite and makes its URL available to the
/// suite's tests, which run in parallel, each on its own connection.
///
/// One server per suite rather than per test because `initdb` dominates the run time;
/// tests stay independent by using temporary tables, which are private to a session.
struct SharedPostgresServer: SuiteTrait, TestScoping {
    @TaskLocal static var url: String?

    func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        try await PostgresFixture.withFixture { fixture in
            try await Self.$url.withValue(fixture.url) {
                try await function()
            }
        }
    }

    /// Opens a new connection to the suite's server.
    static func connect() throws -> PostgresConnection {
        let url = try #require(url, "the suite needs the .sharedPostgresServer trait")
        return try PostgresConnection(url: url)
    }
}

extension Trait where Self == SharedPostgresServer {
    /// Runs the suite against one throw-away PostgreSQL server.
    static var sharedPostgresServer: Self { Self() }
}
