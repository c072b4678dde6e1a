import Foundation
import Testing
import WeftTestSupport
import WeftTransport

/// A node whose `metrics.listen` port is taken, run as an operator runs it.
@Suite(.timeLimit(.minutes(5))) struct MetricsListenTests {
    /// The node binds its metrics port before anything else: it exits 1 naming the key and the
    /// address, having never listened for calls, instead of failing with NIO's bind error
    /// after its RPC server and its sequencer had started (and leaving them as they were).
    @Test func aMetricsPortInUseStopsTheNodeBeforeItServesAndNamesTheKey() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            try directory.write("nodes.yaml", RunTests.configuration(databaseURL: fixture.url, domain: directory.domainID))
            // Another listener on the port, as another process would hold it.
            let taken = try await RPCServer.start(host: "127.0.0.1", port: 0, security: .plaintext, router: RPCRouter())
            let port = taken.port
            let result: (status: Int32, output: String, error: String)
            do {
                // --migrate: the database is ready, so without the metrics port the node would serve.
                result = try await WeftProcess.run(
                    ["run", "-c", "nodes.yaml", "--migrate", "--set", "nodes.sequencer1.metrics.listen=127.0.0.1:\(port)"],
                    directory: directory.path)
            } catch {
                await taken.close()
                throw error
            }
            await taken.close()
            #expect(result.status == 1, "\(result.error)")
            #expect(result.output.isEmpty, "no ready line: \(result.output)")
            #expect(
                result.error.contains("nodes.sequencer1.metrics.listen: cannot listen on 127.0.0.1:\(port)")
                    && result.error.contains("the port is in use by another process"),
                "\(result.error)")
            // It failed before its RPC server listened: nothing was serving to be left behind.
            #expect(!result.error.contains(#""message":"listening""#), "\(result.error)")
        }
    }
}
