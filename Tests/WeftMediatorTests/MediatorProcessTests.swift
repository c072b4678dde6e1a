import Foundation
import Testing
import WeftCrypto
import WeftMediator
import WeftStore
import WeftTestSupport
import WeftWire

/// `weft run` with a mediator node, as a real process killed with SIGKILL between a request and
/// its response: the restarted node decides the request once and every informee participant
/// receives one verdict.
@Suite(.timeLimit(.minutes(5))) struct MediatorProcessTests {
    /// The `weft` executable of this build, running one configuration; stderr goes to a file.
    final class NodeProcess: @unchecked Sendable {
        let process = Process()
        private let output = Pipe()

        static var executable: URL {
            let beside = Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("weft")
            if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
            return repositoryRoot.appendingPathComponent(".build/debug/weft")
        }

        init(directory: String, log: String) throws {
            process.executableURL = Self.executable
            process.arguments = ["run", "-c", "nodes.yaml", "--migrate"]
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            process.standardOutput = output
            _ = FileManager.default.createFile(atPath: directory + "/" + log, contents: nil)
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/" + log))
            try process.run()
        }

        /// The first line the node prints: its ready line, or nothing if it exits first. Read by
        /// a thread of its own with blocking reads.
        func firstLine() async -> String {
            let handle = output.fileHandleForReading
            return await withCheckedContinuation { continuation in
                Thread.detachNewThread {
                    var bytes: [UInt8] = []
                    while let chunk = try? handle.read(upToCount: 1), let byte = chunk.first, byte != UInt8(ascii: "\n") {
                        bytes.append(byte)
                    }
                    continuation.resume(returning: String(decoding: bytes, as: UTF8.self))
                }
            }
        }

        /// Sends `signal` and waits for the process to end.
        func stop(_ signal: Int32) async {
            kill(process.processIdentifier, signal)
            await withCheckedContinuation { continuation in
                DispatchQueue.global().async {
                    self.process.waitUntilExit()
                    continuation.resume()
                }
            }
        }
    }

    @Test func aMediatorProcessKilledBetweenRequestAndResponseDecidesOnce() async throws {
        try await PostgresFixture.withFixture { fixture in
            let real = try await MediatorNodeTests.RealDomain.start(fixture.url)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-mediator-\(UUID())").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try real.ca.write(certificateTo: directory + "/ca.pem", keyTo: directory + "/ca-key.pem")
            try CertificateAuthority.issue(commonName: "mediator1", hostnames: ["localhost", "127.0.0.1"], signedBy: real.ca)
                .write(certificateTo: directory + "/mediator1.pem", keyTo: directory + "/mediator1-tls-key.pem")
            try KeyFile.write(real.domain.mediatorKey, to: directory + "/mediator-key.pem")
            try ("ed25519:" + hex(real.domain.sequencerKey.publicKey.rawRepresentation) + "\n")
                .write(toFile: directory + "/sequencer.pub", atomically: true, encoding: .utf8)
            try """
                nodes:
                  mediator1:
                    kind: mediator
                    listen: 127.0.0.1:0
                    domain: \(real.domain.domain)
                    signing-key: mediator-key.pem
                    sequencer-key: sequencer.pub
                    sequencers:
                      addresses: [127.0.0.1:\(real.server.port)]
                      root-cert: ca.pem
                    tls: { certificate: mediator1.pem, key: mediator1-tls-key.pem }
                    database: { url: \(fixture.url) }
                    drain-timeout: 1s
                """.write(toFile: directory + "/nodes.yaml", atomically: true, encoding: .utf8)

            var node = try NodeProcess(directory: directory, log: "mediator-1.log")
            let ready = await node.firstLine()
            #expect(ready.hasPrefix("node mediator1 (mediator MED::"), "\(ready); see \(directory)/mediator-1.log")
            let views = try real.iouIssue(uuidByte: 7)
            try await real.p2Client.send(try real.request(views), messageID: "request-7")
            let requestTime = try await MediatorNodeTests.requestTime(real.p1Client)
            // Killed between the request and its response, wherever it is.
            await node.stop(SIGKILL)
            try await real.p2Client.send(try real.approval(views, requestAt: requestTime), messageID: "approval-7")

            node = try NodeProcess(directory: directory, log: "mediator-2.log")
            #expect(await node.firstLine().hasPrefix("node mediator1"))
            let result = try #require(try await MediatorNodeTests.read(real.p1Client, domain: real.domain, until: nil).verdicts.first)
            guard case .approve? = result.verdict?.outcome else {
                Issue.record("not approved: \(result)")
                return
            }
            #expect(result.requestID == requestTime)
            try await MediatorNodeTests.mark(real, "end")
            for client in [real.p1Client, real.p2Client] {
                let seen = try await MediatorNodeTests.read(client, domain: real.domain, until: "end")
                #expect(seen.verdicts == [result], "\(client.member)")
            }
            // SIGTERM drains and exits 0; the verdict is stored as sent, so no later start sends it again.
            await node.stop(SIGTERM)
            #expect(node.process.terminationStatus == 0)
            let undelivered = try await MediatorStore(database: PostgresDatabase(url: fixture.url), mediator: real.domain.mediatorMember)
                .undeliveredVerdicts()
            #expect(undelivered.isEmpty)
            await real.stop()
        }
    }
}
