import Foundation
import Testing
import WeftCrypto
import WeftTestSupport
import WeftTransport
import WeftWire

/// `weft run` as an operator runs it: a real process, a real database, real TLS.
@Suite(.timeLimit(.minutes(5))) struct RunTests {
    static func configuration(databaseURL: String, domain: String) -> String {
        """
        nodes:
          sequencer1:
            kind: sequencer
            domain: \(domain)
            signing-key: sequencer-key.pem
            listen: 127.0.0.1:0
            metrics:
              listen: 127.0.0.1:0
            drain-timeout: 1s
            tls:
              certificate: certs/sequencer1.pem
              key: certs/sequencer1-key.pem
            database:
              url: \(databaseURL)
        """
    }

    @Test func pendingMigrationsThenMigrateServeAndDrainOnSIGTERM() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            try directory.write("nodes.yaml", Self.configuration(databaseURL: fixture.url, domain: directory.domainID))

            // A fresh database: the node refuses to start and says what to do.
            let (refused, _, refusal) = try await WeftProcess.run(["run", "-c", "nodes.yaml"], directory: directory.path)
            #expect(refused == 1)
            #expect(refusal.contains("schema needs migrations 1, 2, 3, 4, 5, 6, 7; run `weft db migrate`"), "\(refusal)")

            let (_, pending, _) = try await WeftProcess.run(["db", "status", "-c", "nodes.yaml"], directory: directory.path)
            #expect(pending.contains("sequencer: applied none; pending 1 (members, writers, events, deliveries), 2 (prune points), 3 (topology snapshot sent), 4 (signed blocks), 5 (batches of a few KiB stay in the row), 6 (writer incarnations), 7 (prune points by time)"), "\(pending)")
            #expect(pending.contains("topology: applied none; pending 1"), "\(pending)")
            let (migrated, applied, _) = try await WeftProcess.run(["db", "migrate", "-c", "nodes.yaml"], directory: directory.path)
            #expect(migrated == 0 && applied.contains("sequencer: applied 1, 2, 3, 4, 5, 6, 7") && applied.contains("topology: applied 1"), "\(applied)")
            let (_, current, _) = try await WeftProcess.run(["db", "status", "-c", "nodes.yaml"], directory: directory.path)
            #expect(current.contains("sequencer: applied 1, 2, 3, 4, 5, 6, 7; pending none"), "\(current)")

            // Now it serves: health over TLS with the domain's root.
            let node = try WeftProcess(["run", "-c", "nodes.yaml", "--tls-keylog", "keys.txt"], directory: directory.path)
            let ready = try #require(await node.nextLine())
            #expect(ready.hasPrefix("node sequencer1 (sequencer 0) listening on 127.0.0.1:"), "\(ready)")
            let port = try #require(Int(ready.split(separator: ":").last?.split(separator: ",").first ?? ""))
            let metricsPort = try #require(Int(ready.split(separator: " ").last ?? ""), "\(ready)")
            let tls = try TLSContext(.init(role: .client(serverHostname: "localhost"), trustRootsPEM: directory.ca.certificatePEM))
            let client = try await RPCClient.connect(host: "127.0.0.1", port: port, security: .tls(tls))
            #expect(try await client.health.check(.init()).status == .serving)
            // The key log has the session's secrets (NSS format) and the node said it writes them.
            let keyLog = try String(contentsOfFile: directory.path + "/keys.txt", encoding: .utf8)
            #expect(keyLog.contains("SERVER_TRAFFIC_SECRET_0 ") && keyLog.contains("CLIENT_TRAFFIC_SECRET_0 "))
            #expect(node.standardError.contains("writing TLS session secrets"))
            // The node's /metrics counts the calls just made; /health says it serves.
            let scrape = try await HTTPScrape.fetch("http://127.0.0.1:\(metricsPort)/metrics", parse: true)
            #expect(HTTPScrape.value(scrape.samples, "weft_rpc_server_calls_total", ["method": "/weft.v1.HealthService/Check", "code": "OK"]) == 1)
            #expect(try await HTTPScrape.fetch("http://127.0.0.1:\(metricsPort)/health").status == 200)
            // The console's health verbs against the running node, over TLS with the root certificate.
            let remote = ["--remote", "127.0.0.1:\(port)", "--root-cert", "certs/ca.pem"]
            let (healthy, status, _) = try await WeftProcess.run(["health", "status"] + remote + ["--output", "json"], directory: directory.path)
            #expect(healthy == 0 && status.contains(#""status":"SERVING""#), "\(status)")
            let (pinged, ping, _) = try await WeftProcess.run(["health", "ping", "--count", "3"] + remote, directory: directory.path)
            #expect(pinged == 0 && ping.contains("(TLS)") && ping.contains("3 calls: min "), "\(ping)")
            let (unknown, _, unknownError) = try await WeftProcess.run(["health", "status", "--service", "weft.v1.Nothing"] + remote, directory: directory.path)
            #expect(unknown == 1 && unknownError.contains("HEALTH_UNKNOWN_SERVICE"), "\(unknownError)")
            var watch = try client.health.watch(.init()).makeAsyncIterator()
            #expect(try await watch.next()?.status == .serving)

            // SIGTERM: the node reports NOT_SERVING, drains (the watch never ends by itself, so it is
            // cut at the 1 s drain timeout) and exits 0.
            node.signal(SIGTERM)
            let update = try await watch.next()
            #expect(update?.status == .notServing && update?.detail == "shutting down")
            await #expect(throws: RPCError.self) { _ = try await watch.next() }
            #expect(await node.exitStatus() == 0)
            #expect(node.standardError.contains(#""message":"draining""#), "\(node.standardError)")
            #expect(node.standardError.contains(#""message":"stopped""#), "\(node.standardError)")
            // Every log line is one JSON object.
            for line in node.standardError.split(separator: "\n") {
                #expect(line.hasPrefix("{\"time\":\"") && line.hasSuffix("}"), "\(line)")
            }
        }
    }

    @Test func configPrintShowsSourcesAndRedactsSecrets() async throws {
        let directory = try NodeDirectory()
        defer { directory.remove() }
        try directory.write("nodes.yaml", Self.configuration(databaseURL: "postgresql://weft:hunter2@db.example.com/weft", domain: directory.domainID))
        let (status, output, _) = try await WeftProcess.run(
            ["config", "print", "-c", "nodes.yaml", "--redacted", "--set", "nodes.sequencer1.drain-timeout=3s"], directory: directory.path,
            environment: ["WEFT_NODES__SEQUENCER1__SEQUENCER_NODE": "7"])
        #expect(status == 0)
        #expect(!output.contains("hunter2"), "\(output)")
        #expect(output.contains("nodes.sequencer1.database.url: postgresql://weft:***@db.example.com/weft  # in nodes.yaml"), "\(output)")
        #expect(output.contains("nodes.sequencer1.drain-timeout: 3s  # in --set"), "\(output)")
        #expect(output.contains("nodes.sequencer1.sequencer-node: 7  # in environment variable WEFT_NODES__SEQUENCER1__SEQUENCER_NODE"), "\(output)")
        let (_, plain, _) = try await WeftProcess.run(["config", "print", "-c", "nodes.yaml", "--output", "json"], directory: directory.path)
        #expect(plain.contains("hunter2"), "without --redacted the value is shown as configured")
    }

    @Test func aBadConfigurationIsAUsageErrorThatNamesTheKey() async throws {
        let directory = try NodeDirectory()
        defer { directory.remove() }
        try directory.write("nodes.yaml", Self.configuration(databaseURL: "postgresql://nobody@127.0.0.1:1/none", domain: directory.domainID))
        let (status, _, error) = try await WeftProcess.run(
            ["run", "-c", "nodes.yaml", "--set", "nodes.sequencer1.rpc.idle-timeout=later"], directory: directory.path)
        #expect(status == 64, "\(error)")  // EX_USAGE, as for any bad argument
        #expect(error.contains("configuration key nodes.sequencer1.rpc.idle-timeout = 'later' (in --set): expected a duration"), "\(error)")
        // A sequencer's own key, read as what it is (docs/operations.md).
        let (notBoolean, _, notBooleanError) = try await WeftProcess.run(
            ["run", "-c", "nodes.yaml", "--set", "nodes.sequencer1.honor-omit-receipt=sometimes"], directory: directory.path)
        #expect(notBoolean == 64, "\(notBooleanError)")
        #expect(
            notBooleanError.contains("configuration key nodes.sequencer1.honor-omit-receipt = 'sometimes' (in --set): expected true or false"),
            "\(notBooleanError)")
        // An unreachable database: exit 1 with libpq's reason.
        let (unreachable, _, reason) = try await WeftProcess.run(["run", "-c", "nodes.yaml"], directory: directory.path)
        #expect(unreachable == 1)
        #expect(reason.contains("could not connect to PostgreSQL"), "\(reason)")
        // A key file others can read: refused as the node starts, a usage error naming the file
        // (64), and the line to alert on, as for any node that cannot start (there was none).
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: directory.path + "/sequencer-key.pem")
        let (readable, _, readableError) = try await WeftProcess.run(["run", "-c", "nodes.yaml"], directory: directory.path)
        #expect(readable == 64, "\(readableError)")
        #expect(readableError.contains("weft run failed") && readableError.contains("sequencer-key.pem"), "\(readableError)")
    }
}
