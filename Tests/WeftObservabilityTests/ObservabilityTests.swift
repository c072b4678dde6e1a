import Foundation
import Logging
import Testing
import WeftObservability
import WeftTestSupport
import WeftTransport
import WeftWire

/// `/metrics` and `/health` over real HTTP, read by Python's standard library
/// and parsed by the Prometheus project's own client library
/// (`prometheus_client`), so the exposition format is checked by a parser we
/// did not write.
@Suite(.timeLimit(.minutes(5))) struct ObservabilityTests {
    @Test func rpcCallsAreCountedByMethodAndCodeInValidPrometheusText() async throws {
        let logger = Logger(label: "test")
        let metrics = try await ObservabilityServer.start(host: "127.0.0.1", port: 0, logger: logger) { .serving }
        defer { Task { try await metrics.close() } }
        let health = HealthStatus(.serving)
        let server = try await RPCServer.start(host: "127.0.0.1", port: 0, security: .plaintext, router: RPCRouter(), health: health, logger: logger)
        defer { Task { await server.close() } }
        let client = try await RPCClient.connect(host: "127.0.0.1", port: server.port, security: .plaintext)
        defer { Task { await client.close() } }

        let url = "http://127.0.0.1:\(metrics.port)/metrics"
        let before = try await HTTPScrape.fetch(url, parse: true).samples
        let check = "/weft.v1.HealthService/Check"
        for _ in 0..<3 { _ = try await client.health.check(.init()) }
        await #expect(throws: RPCError.self) { try await client.health.check(.init(service: "weft.v1.Nothing")) }
        await #expect(throws: RPCError.self) {
            let nowhere = Method<Weft.V1.CheckRequest, Weft.V1.CheckResponse>(path: "/weft.v1.Nothing/Nowhere", kind: .unary)
            _ = try await client.unary(nowhere, .init())
        }

        let scrape = try await HTTPScrape.fetch(url, parse: true)
        #expect(scrape.status == 200)
        let after = scrape.samples
        func delta(_ name: String, _ labels: [String: String]) -> Double { HTTPScrape.value(after, name, labels) - HTTPScrape.value(before, name, labels) }
        // Other suites in this process make calls too: at least ours are counted.
        #expect(delta("weft_rpc_server_calls_total", ["method": check, "code": "OK"]) >= 3)
        #expect(delta("weft_rpc_server_calls_total", ["method": check, "code": "NOT_FOUND"]) >= 1)
        #expect(delta("weft_rpc_server_refused_total", ["code": "UNIMPLEMENTED"]) >= 1)
        #expect(delta("weft_rpc_server_call_duration_seconds_count", ["method": check]) >= 4)
        // Histogram buckets are cumulative and end in +Inf = count.
        let buckets = after.filter { $0.name == "weft_rpc_server_call_duration_seconds_bucket" && $0.labels["method"] == check }
        #expect(buckets.count == WeftMetrics.durationBuckets.count + 1)
        let inf = buckets.first { $0.labels["le"] == "+Inf" }?.value
        #expect(inf == HTTPScrape.value(after, "weft_rpc_server_call_duration_seconds_count", ["method": check]))
        // A client-chosen method name never becomes a label.
        #expect(!scrape.body.contains("Nowhere"))
    }

    @Test func healthFollowsTheNodeAndOtherPathsAreRefused() async throws {
        let state = HealthState()
        let metrics = try await ObservabilityServer.start(host: "127.0.0.1", port: 0, logger: Logger(label: "test")) { await state.health }
        defer { Task { try await metrics.close() } }
        let base = "http://127.0.0.1:\(metrics.port)"

        let serving = try await HTTPScrape.fetch(base + "/health")
        #expect(serving.status == 200)
        #expect(serving.body == "SERVING\n")
        await state.set(.notServing(reason: "draining"))
        let draining = try await HTTPScrape.fetch(base + "/health")
        #expect(draining.status == 503)
        #expect(draining.body == "NOT_SERVING: draining\n")

        let missing = try await HTTPScrape.fetch(base + "/nothing")
        #expect(missing.status == 404)
        #expect(missing.body.contains("/metrics and /health"))
        #expect(try await HTTPScrape.fetch(base + "/metrics", method: "POST").status == 405)
    }

    actor HealthState {
        var health: ObservabilityServer.Health = .serving
        func set(_ health: ObservabilityServer.Health) { self.health = health }
    }
}
