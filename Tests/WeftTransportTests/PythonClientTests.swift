import Foundation
import Testing
import WeftTestSupport
import WeftTransport
import WeftWire

/// A client in another language: clients/python/weft_client.py (protoc's
/// Python classes, Python's ssl) calls Health/Check on a live Weft server.
@Suite(.timeLimit(.minutes(5))) struct PythonClientTests {
    /// The repository's root (where clients/python is) and `node`'s root certificate written to a
    /// temporary file for Python's ssl (the caller removes it).
    static func repositoryAndCAFile(_ node: RPCTestNode) throws -> (root: URL, caFile: String) {
        var root = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) { root.deleteLastPathComponent() }
        let caFile = FileManager.default.temporaryDirectory.appendingPathComponent("weft-python-ca-\(UUID()).pem").path
        try node.ca.certificatePEM.write(toFile: caFile, atomically: true, encoding: .utf8)
        return (root, caFile)
    }

    @Test func pythonCallsHealthCheckOverTLS() async throws {
        let node = try await RPCTestNode.start { router in
            router.register(Weft.V1.HealthService.check) { request, _ in
                guard request.service.isEmpty || request.service == "weft.v1.SequencerService" else {
                    throw RPCError(.notFound, "no service \(request.service)", errorID: "HEALTH_UNKNOWN_SERVICE")
                }
                return .init(status: .serving, detail: "serving \(request.service.isEmpty ? "the node" : request.service)")
            }
            router.registerServerStream(Weft.V1.HealthService.watch) { request, writer, _ in
                if request.service == "bulk" {
                    // 200 updates of 4 KiB: 800 KiB, far past the 64 KiB a stream starts with, so the
                    // stream completes only if Python grants window as it reads.
                    for _ in 0..<200 { try await writer.send(.init(status: .serving, detail: String(repeating: "d", count: 4096))) }
                    return
                }
                for status in [Weft.V1.ServingStatus.serving, .notServing, .serving] { try await writer.send(.init(status: status)) }
            }
        }
        defer { node.close() }

        let (root, caFile) = try Self.repositoryAndCAFile(node)
        defer { try? FileManager.default.removeItem(atPath: caFile) }

        func python(_ extra: [String], command: String = "health") async throws -> (status: Int32, output: String) {
            let outcome = try await TestSubprocess.run(
                [
                    "python3", root.appendingPathComponent("clients/python/weft_client.py").path, command,
                    "--port", String(node.port), "--ca", caFile, "--server-name", "localhost",
                ] + extra,
                environment: ProcessInfo.processInfo.environment.merging(["PYTHONDONTWRITEBYTECODE": "1"]) { $1 })
            return (outcome.status, outcome.output + outcome.error)
        }

        let serving = try await python(["--service", "weft.v1.SequencerService"])
        #expect(serving.status == 0, "\(serving.output)")
        #expect(serving.output.contains("status: SERVING_STATUS_SERVING"), "\(serving.output)")
        #expect(serving.output.contains("detail: serving weft.v1.SequencerService"), "\(serving.output)")

        let unknown = try await python(["--service", "weft.v1.Nothing"])
        #expect(unknown.status == 1, "\(unknown.output)")
        #expect(unknown.output.contains("status 5 HEALTH_UNKNOWN_SERVICE"), "\(unknown.output)")

        // A server stream, read by Python to its end.
        let watch = try await python([], command: "watch")
        #expect(watch.status == 0, "\(watch.output)")
        #expect(
            watch.output.contains("update: SERVING_STATUS_SERVING\nupdate: SERVING_STATUS_NOT_SERVING\nupdate: SERVING_STATUS_SERVING\nstream ended"),
            "\(watch.output)")

        // A long stream: Python's window updates keep it going.
        let bulk = try await python(["--service", "bulk"], command: "watch")
        #expect(bulk.status == 0, "\(bulk.output)")
        #expect(bulk.output.components(separatedBy: "update: SERVING_STATUS_SERVING").count - 1 == 200, "\(bulk.output.suffix(200))")
        #expect(bulk.output.hasSuffix("stream ended\n"), "\(bulk.output.suffix(200))")

        // The Python side verifies the server's certificate: another name is refused.
        let process = try await python(["--server-name", "elsewhere.example"])
        #expect(process.status == 2, "\(process.output)")
        #expect(process.output.contains("certificate verify failed") || process.output.contains("match"), "\(process.output)")
    }

    /// Nothing reads a Python connection between calls, so nothing answers the node's pings, and
    /// the node closes it (here after 1 s of quiet and 1 s more without a pong): a call after a
    /// quiet spell opens a new connection first. A request over the frame limit is refused by
    /// the client itself, with the reason, and the connection stays usable.
    @Test func pythonSurvivesAQuietSpellAndRefusesAnOversizedRequest() async throws {
        var configuration = RPCTestNode.testConfiguration
        configuration.keepaliveInterval = .seconds(1)
        configuration.keepaliveTimeout = .seconds(1)
        let node = try await RPCTestNode.start(configuration: configuration) { router in
            router.register(Weft.V1.HealthService.check) { _, _ in .init(status: .serving) }
        }
        defer { node.close() }
        let (root, caFile) = try Self.repositoryAndCAFile(node)
        defer { try? FileManager.default.removeItem(atPath: caFile) }
        // The 4 s of quiet is the scenario (longer than the node's 1 s + 1 s), not a wait.
        let script = """
            import sys, time
            import weft
            from weft.v1 import health_pb2
            connection = weft.Connection("127.0.0.1:\(node.port)", sys.argv[1], server_name="localhost", idle_reconnect_seconds=1.5)
            health = weft.HealthClient(connection)
            print("first", health_pb2.ServingStatus.Name(health.check().status))
            time.sleep(4)
            try:
                print("after quiet", health_pb2.ServingStatus.Name(health.check().status))
            except weft.ProtocolError as error:
                print("after quiet: broken", error)
            try:
                health.check("x" * (5 * 1024 * 1024))
            except weft.WeftError as error:
                print("oversized", error.error_id, int(error.code))
            print("then", health_pb2.ServingStatus.Name(health.check().status))
            """
        let outcome = try await TestSubprocess.run(
            ["python3", "-c", script, caFile],
            environment: ProcessInfo.processInfo.environment.merging([
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": root.appendingPathComponent("clients/python").path,
            ]) { $1 })
        let output = outcome.output + outcome.error
        #expect(outcome.status == 0, "\(output)")
        #expect(output.contains("first SERVING_STATUS_SERVING"), "\(output)")
        #expect(output.contains("after quiet SERVING_STATUS_SERVING"), "\(output)")
        #expect(output.contains("oversized RPC_MESSAGE_TOO_LARGE 8"), "\(output)")
        #expect(output.contains("then SERVING_STATUS_SERVING"), "\(output)")
    }
}
