import Foundation
import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport

/// A domain and two participants, every node a `weft run` process of its own so that any one
/// can be killed with SIGKILL and started again on the same configuration and database:
/// `sequencer1`, `manager`, `mediator1`, `participant1` (alice) and `participant2` (the bank
/// and bob). Every port is fixed in the node's YAML, so a restarted node answers where it did.
actor CrashCluster {
    let directory: NodeDirectory
    let fixtureURL: String
    let domainID: String
    let sequencerPort: Int
    let managerPort: Int
    /// The Ledger API port of each participant.
    let participantPorts: [String: Int]
    private var processes: [String: WeftProcess] = [:]
    /// Standard error of the processes that were killed, for failure messages.
    private var killedOutput: [String: String] = [:]
    private(set) var parties: (alice: String, bank: String, bob: String) = ("", "", "")
    private(set) var packageID = ""

    static let participants = ["participant1", "participant2"]

    private init(
        directory: NodeDirectory, fixtureURL: String, domainID: String, sequencerPort: Int, managerPort: Int, participantPorts: [String: Int]
    ) {
        self.directory = directory
        self.fixtureURL = fixtureURL
        self.domainID = domainID
        self.sequencerPort = sequencerPort
        self.managerPort = managerPort
        self.participantPorts = participantPorts
    }

    /// Runs `weft arguments…` in the cluster's directory; its trimmed standard output.
    @discardableResult
    nonisolated func weft(_ arguments: [String]) async throws -> String {
        let (status, output, error) = try await WeftProcess.run(arguments, directory: directory.path)
        guard status == 0 else { throw TestError("weft \(arguments.joined(separator: " ")) exited \(status): \(error)") }
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Keys, certificates and the YAML of every node; starts the domain, onboards both
    /// participants, uploads the IOU package to each and allocates the parties.
    static func start(_ fixture: PostgresFixture) async throws -> CrashCluster {
        let directory = try NodeDirectory()
        let dir = directory.path
        func weft(_ arguments: String...) async throws {
            let (status, _, error) = try await WeftProcess.run(arguments, directory: dir)
            guard status == 0 else { throw TestError("weft \(arguments.joined(separator: " ")): \(error)") }
        }
        for key in ["domain-namespace", "manager", "sequencer", "mediator"] { try await weft("keys", "generate", "--out", "keys-\(key).pem") }
        try await weft("keys", "generate", "--kind", "encryption", "--out", "keys-mediator-encryption.pem")
        try await weft("certs", "issue", "--ca-dir", "certs", "--name", "operator", "--host", "localhost", "--out", "certs")
        let namespaceKey = try KeyFile.readSigningKey(at: dir + "/keys-domain-namespace.pem")
        let domainID = "domain1::\(namespaceKey.publicKey.fingerprint)"
        let connection = try PostgresConnection(url: fixture.url)
        for database in ["manager"] + participants { _ = try connection.execute("CREATE DATABASE \(database)") }
        let sequencerPort = try ProcessDomain.freePort()
        let managerPort = try ProcessDomain.freePort()
        var participantPorts: [String: Int] = [:]
        for name in participants { participantPorts[name] = try ProcessDomain.freePort() }
        let tls = "tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem }"
        let sequencers = "sequencers: { addresses: [127.0.0.1:\(sequencerPort)], root-cert: certs/ca.pem }"
        try directory.write("sequencer1.yaml", """
            nodes:
              sequencer1:
                kind: sequencer
                listen: 127.0.0.1:\(sequencerPort)
                domain: \(domainID)
                signing-key: keys-sequencer.pem
                drain-timeout: 1s
                \(tls)
                database: { url: \(fixture.url) }
            """)
        try directory.write("manager.yaml", """
            nodes:
              manager:
                kind: domain-manager
                listen: 127.0.0.1:\(managerPort)
                domain: domain1
                namespace-key: keys-domain-namespace.pem
                signing-key: keys-manager.pem
                \(sequencers)
                bootstrap:
                  sequencer-key: keys-sequencer.pem.pub
                  mediator-key: keys-mediator.pem.pub
                  mediator-encryption-key: keys-mediator-encryption.pem.pub
                tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem, client-roots: certs/ca.pem }
                database: { url: \(ProcessDomain.databaseURL(fixture.url, "manager")) }
            """)
        try directory.write("mediator1.yaml", """
            nodes:
              mediator1:
                kind: mediator
                listen: 127.0.0.1:0
                domain: \(domainID)
                signing-key: keys-mediator.pem
                sequencer-key: keys-sequencer.pem.pub
                \(sequencers)
                \(tls)
                database: { url: \(fixture.url) }
            """)
        for name in participants {
            try directory.write("\(name).yaml", """
                nodes:
                  \(name):
                    kind: participant
                    listen: 127.0.0.1:\(participantPorts[name]!)
                    drain-timeout: 1s
                    tls: { plaintext: true }
                    database: { url: \(ProcessDomain.databaseURL(fixture.url, name)) }
                """)
        }
        let cluster = CrashCluster(
            directory: directory, fixtureURL: fixture.url, domainID: domainID, sequencerPort: sequencerPort, managerPort: managerPort,
            participantPorts: participantPorts)
        do {
            try await cluster.setUp()
        } catch {
            await cluster.stop()
            throw error
        }
        return cluster
    }

    /// Starts a cluster, runs `body` on it and stops it (each node must exit 0). A failure is
    /// recorded with the directory every node's log was saved to and the end of `node`'s log.
    static func withCluster(
        _ fixture: PostgresFixture, showingLogOf node: String, _ body: (CrashCluster) async throws -> Void
    ) async throws {
        let cluster = try await start(fixture)
        do {
            try await body(cluster)
        } catch {
            let logs = await cluster.saveLogs()
            Issue.record(
                "\(error)\n(every node's log is in \(logs))\n--- \(node)'s log:\n\(await cluster.log(node).suffix(3000))")
        }
        await cluster.stop(expectCleanExit: true)
    }

    private func setUp() async throws {
        for node in ["sequencer1", "manager", "mediator1"] { try await start(node) }
        for name in Self.participants {
            let id = try await weft(["participant", "id", "-c", "\(name).yaml"])
            try await weft(["domain-manager", "set-state", id, "--permission", "submission"] + admin)
            try await start(name)
            try await connect(name)
            packageID = try await uploadPackage(name)
        }
        parties = (
            alice: try await weft(["party", "allocate", "alice"] + api("participant1")),
            bank: try await weft(["party", "allocate", "bank"] + api("participant2")),
            bob: try await weft(["party", "allocate", "bob"] + api("participant2"))
        )
    }

    /// The domain manager's admin API arguments (mutual TLS with the operator's certificate).
    nonisolated var admin: [String] {
        ["--remote", "localhost:\(managerPort)", "--root-cert", "certs/ca.pem", "--cert", "certs/operator.pem", "--key", "certs/operator-key.pem"]
    }

    /// The sequencer's admin API arguments.
    nonisolated var sequencerAdmin: [String] { ["--remote", "localhost:\(sequencerPort)", "--root-cert", "certs/ca.pem"] }

    /// `weft participant connect-multi` for participant `name`, as its operator runs it (with
    /// `options`, e.g. `--repair`); its standard output.
    @discardableResult
    func connect(_ name: String, _ options: [String] = []) async throws -> String {
        try await weft(
            ["participant", "connect-multi", "mydomain", "127.0.0.1:\(sequencerPort)", "--root-cert", "certs/ca.pem",
             "--remote", "127.0.0.1:\(participantPorts[name]!)", "--remote-plaintext"] + options)
    }

    /// `weft package upload` of the IOU package to participant `name`; its package id.
    func uploadPackage(_ name: String) async throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try await weft(["package", "upload", root.appendingPathComponent("examples/packages/iou.weft").path] + api(name))
    }

    /// Drops node `name`'s database and creates it again empty: a lost disk. The node must be
    /// down (killed).
    func wipeDatabase(_ name: String) throws {
        let connection = try PostgresConnection(url: fixtureURL)
        _ = try connection.execute("DROP DATABASE \(name) WITH (FORCE)")
        _ = try connection.execute("CREATE DATABASE \(name)")
    }

    /// The `--remote` arguments of a participant's API.
    nonisolated func api(_ participant: String) -> [String] {
        ["--remote", "127.0.0.1:\(participantPorts[participant]!)", "--plaintext"]
    }

    /// Starts node `name` from `name.yaml` and waits for its ready line.
    func start(_ name: String) async throws {
        let process = try WeftProcess(["run", "-c", "\(name).yaml", "--migrate"], directory: directory.path)
        processes[name] = process
        guard let ready = await process.nextLine(), ready.hasPrefix("node \(name) ("), ready.contains("listening on") else {
            throw TestError("node \(name) did not start: \(process.standardError.suffix(3000))")
        }
    }

    /// SIGKILL — no draining, no goodbye — and the wait for the process to be gone.
    func kill(_ name: String) async {
        guard let process = processes[name] else { return }
        process.signal(SIGKILL)
        let status = await process.exitStatus()
        #expect(process.process.terminationReason == .uncaughtSignal && status == SIGKILL, "\(name) was not killed: \(status)")
        killedOutput[name, default: ""] += process.standardError
        processes[name] = nil
    }

    /// Standard error of node `name` so far (the killed incarnations' too).
    func log(_ name: String) -> String {
        (killedOutput[name] ?? "") + (processes[name]?.standardError ?? "")
    }

    /// Returns once node `name`'s log contains `text`; throws after `limit`. (A log line is
    /// the only sign of some states, so this polls the process's standard error.)
    func awaitLog(_ name: String, containing text: String, within limit: Duration = .seconds(120)) async throws {
        let deadline = ContinuousClock.now + limit
        while !log(name).contains(text) {
            guard ContinuousClock.now < deadline else { throw TestError("\(name) did not log '\(text)' within \(limit)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Writes every node's log so far to a directory of its own (kept after the test) and
    /// returns its path: what a failure message points to.
    func saveLogs() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("weft-crash-logs-\(UUID())").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        for name in Self.participants + ["mediator1", "manager", "sequencer1"] {
            try? log(name).write(toFile: "\(path)/\(name).log", atomically: true, encoding: .utf8)
        }
        return path
    }

    /// Stops every node with SIGTERM (each must exit 0: a restarted node shuts down cleanly too)
    /// and removes the directory.
    func stop(expectCleanExit: Bool = false) async {
        for name in Self.participants + ["mediator1", "manager", "sequencer1"] {
            guard let process = processes[name] else { continue }
            process.signal(SIGTERM)
            let status = await process.exitStatus()
            if expectCleanExit { #expect(status == 0, "\(name) exited \(status): \(process.standardError.suffix(3000))") }
            processes[name] = nil
        }
        directory.remove()
    }
}
