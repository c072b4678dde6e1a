import Foundation
import Synchronization
import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport

/// A domain as its owner runs it with `weft run`: one process with a sequencer, the domain
/// manager and the mediator, on the fixture's PostgreSQL (the manager in its own database),
/// with keys and certificates made by the `weft` CLI in `directory`.
struct ProcessDomain {
    let process: WeftProcess
    let domainID: String
    let sequencerPort: Int
    let managerPort: Int
    let fixtureURL: String
    let directory: String

    /// The domain manager's admin API with the operator's client certificate (mutual TLS).
    var admin: [String] {
        ["--remote", "localhost:\(managerPort)", "--root-cert", "certs/ca.pem", "--cert", "certs/operator.pem", "--key", "certs/operator-key.pem"]
    }

    /// A TCP port on loopback that nothing listens on now, below the kernel's ephemeral range
    /// (32768…): a port released here is not taken by some outgoing connection before `weft
    /// run` binds it (an ephemeral one was, with EADDRINUSE, on a busy machine). Ports handed
    /// out by this process are not handed out again.
    static func freePort() throws -> Int {
        try handedOut.withLock { taken in
            let port = try ExampleDeployment.unusedPort(besides: taken)
            taken.insert(port)
            return port
        }
    }

    private static let handedOut = Mutex<Set<Int>>([])

    /// `runArguments` go to the domain's `weft run` (e.g. `--tls-keylog FILE` for a capture).
    static func start(
        fixture: PostgresFixture, directory: NodeDirectory, environment: [String: String] = [:], runArguments: [String] = []
    ) async throws -> ProcessDomain {
        let dir = directory.path
        func weft(_ arguments: String...) async throws {
            let (status, _, error) = try await WeftProcess.run(arguments, directory: dir)
            #expect(status == 0, "weft \(arguments.joined(separator: " ")): \(error)")
        }
        for key in ["domain-namespace", "manager", "sequencer", "mediator"] { try await weft("keys", "generate", "--out", "keys-\(key).pem") }
        try await weft("keys", "generate", "--kind", "encryption", "--out", "keys-mediator-encryption.pem")
        try await weft("certs", "issue", "--ca-dir", "certs", "--name", "operator", "--host", "localhost", "--out", "certs")
        let namespaceKey = try KeyFile.readSigningKey(at: dir + "/keys-domain-namespace.pem")
        let domainID = "domain1::\(namespaceKey.publicKey.fingerprint)"
        _ = try PostgresConnection(url: fixture.url).execute("CREATE DATABASE manager")
        let sequencerPort = try freePort()
        try directory.write("domain.yaml", """
            nodes:
              sequencer1:
                kind: sequencer
                listen: 127.0.0.1:\(sequencerPort)
                domain: \(domainID)
                signing-key: keys-sequencer.pem
                tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem }
                database: { url: \(fixture.url) }
              manager:
                kind: domain-manager
                listen: 127.0.0.1:0
                domain: domain1
                namespace-key: keys-domain-namespace.pem
                signing-key: keys-manager.pem
                sequencers:
                  addresses: [127.0.0.1:\(sequencerPort)]
                  root-cert: certs/ca.pem
                bootstrap:
                  sequencer-key: keys-sequencer.pem.pub
                  mediator-key: keys-mediator.pem.pub
                  mediator-encryption-key: keys-mediator-encryption.pem.pub
                tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem, client-roots: certs/ca.pem }
                database: { url: \(databaseURL(fixture.url, "manager")) }
              mediator1:
                kind: mediator
                listen: 127.0.0.1:0
                domain: \(domainID)
                signing-key: keys-mediator.pem
                sequencer-key: keys-sequencer.pem.pub
                sequencers:
                  addresses: [127.0.0.1:\(sequencerPort)]
                  root-cert: certs/ca.pem
                tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem }
                database: { url: \(fixture.url) }
            """)
        let process = try WeftProcess(["run", "-c", "domain.yaml", "--migrate"] + runArguments, directory: dir, environment: environment)
        var managerPort = 0
        for _ in 0..<3 {
            let line = try #require(await process.nextLine(), "\(process.standardError)")
            if line.contains("domain manager") { managerPort = Int(line.split(separator: ":").last ?? "") ?? 0 }
        }
        #expect(managerPort > 0)
        return ProcessDomain(
            process: process, domainID: domainID, sequencerPort: sequencerPort, managerPort: managerPort,
            fixtureURL: fixture.url, directory: dir)
    }

    /// The URL of database `name` on the fixture's server.
    static func databaseURL(_ fixtureURL: String, _ name: String) -> String {
        fixtureURL.replacingOccurrences(of: "/weft", with: "/\(name)")
    }

    /// Creates a database for participant `name` and writes `name.yaml`, a participant node on
    /// `port` (0: a free port the node picks), plaintext API (the tests' clients are on loopback).
    func writeParticipant(_ name: String, directory: NodeDirectory, port: Int = 0) throws {
        _ = try PostgresConnection(url: fixtureURL).execute("CREATE DATABASE \(name)")
        try directory.write("\(name).yaml", """
            nodes:
              \(name):
                kind: participant
                listen: 127.0.0.1:\(port)
                tls: { plaintext: true }
                database: { url: \(Self.databaseURL(fixtureURL, name)) }
            """)
    }

    /// Runs `weft arguments…` in the domain's directory, expecting it to succeed; its stdout, trimmed.
    func weft(_ arguments: [String]) async throws -> String {
        let (status, output, error) = try await WeftProcess.run(arguments, directory: directory)
        #expect(status == 0, "weft \(arguments.joined(separator: " ")): \(error)")
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Onboards participant `name` as the seed tells it: its configuration (API on `port`), its
    /// id allow-listed by the domain owner, its node started and connected to the sequencer, the
    /// IOU package uploaded. Returns its id (`name::1220…`), its process and its API arguments.
    func joinParticipant(_ name: String, directory: NodeDirectory, port: Int = 0) async throws
        -> (id: String, node: WeftProcess, api: [String])
    {
        try writeParticipant(name, directory: directory, port: port)
        let id = try await weft(["participant", "id", "-c", "\(name).yaml"])
        _ = try await weft(["domain-manager", "set-state", id, "--permission", "submission"] + admin)
        let (node, api) = try await startParticipant(name)
        _ = try await weft(
            ["participant", "connect-multi", "mydomain", "127.0.0.1:\(sequencerPort)", "--root-cert", "certs/ca.pem",
             "--remote", api[1], "--remote-plaintext"])
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        _ = try await weft(["package", "upload", root.appendingPathComponent("examples/packages/iou.weft").path] + api)
        return (id, node, api)
    }

    /// Starts the participant node of `name.yaml`; returns it and its API's `--remote` arguments.
    func startParticipant(_ name: String) async throws -> (node: WeftProcess, api: [String]) {
        let node = try WeftProcess(["run", "-c", "\(name).yaml", "--migrate"], directory: directory)
        let ready = try #require(await node.nextLine(), "\(node.standardError)")
        #expect(ready.hasPrefix("node \(name) (participant \(name)::1220"), "\(ready)")
        let port = try #require(Int(ready.split(separator: ":").last ?? ""), "\(ready)")
        return (node, ["--remote", "127.0.0.1:\(port)", "--plaintext"])
    }
}
