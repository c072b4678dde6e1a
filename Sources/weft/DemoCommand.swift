import ArgumentParser
import Foundation
import Logging
import WeftCrypto
import WeftStore
import WeftTestSupport

/// The README's main command: Weft as an operator and its applications run it. A domain in one
/// `weft run` process (two sequencer nodes on one PostgreSQL database, the domain manager, the
/// mediator), three participant nodes in processes of their own, onboarded as the seed tells it,
/// and an IOU issue and transfer and a three-party delivery versus payment, each step a `weft`
/// command printed before it runs. Then what each participant sees, what the domain stored
/// (ciphertext only), and where the metrics and logs are.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the demo: a domain (two sequencers, domain manager, mediator), three participants, an IOU and a DvP.",
        discussion: """
            Without --database-url (or WEFT_DATABASE_URL), starts a throw-away PostgreSQL server from the
            system's binaries (scripts/pg-fixture) and removes it afterwards. Every node runs as a `weft run`
            process over real TLS on 127.0.0.1; every step is a `weft` command, printed before it runs.
            Keys, certificates, configurations and the nodes' JSON logs stay in --directory (default: a new
            directory under the temporary directory). Ctrl-C stops every node and removes the throw-away server.
            """
    )

    @Option(
        name: .customLong("database-url"),
        help: "libpq URL of an empty PostgreSQL database to use instead of a throw-away one; the demo creates DB_manager and DB_participant1…3 beside it (its role needs CREATEDB).")
    var databaseURL: String?

    @Option(help: "Where keys, certificates, configurations and logs go (created; default: a new temporary directory).")
    var directory: String?

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .error  // the demo narrates; errors still show
            return handler
        }
        let place = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("weft-demo-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: place, withIntermediateDirectories: true)
        let processes = DemoProcesses()
        let interrupts = InterruptWatch(processes: processes)
        defer { interrupts.cancel() }

        let configured = databaseURL ?? ProcessInfo.processInfo.environment["WEFT_DATABASE_URL"]
        if let configured {
            show("database: \(ConnectionStringRedaction.masked(configured)) (given)")
            try await runDemo(url: configured, directory: place, processes: processes, interrupts: interrupts)
        } else {
            show("database: starting a throw-away PostgreSQL (scripts/pg-fixture) …")
            let fixture = try await PostgresFixture.startThrowAwayServer()
            interrupts.onInterrupt { try? await fixture.stop() }
            show("database: \(fixture.url) in \(fixture.directory ?? "?")")
            do {
                try await runDemo(url: fixture.url, directory: place, processes: processes, interrupts: interrupts)
            } catch {
                await interrupts.waitIfInterrupted()
                await processes.stopAll()
                try? await fixture.stop()
                throw error
            }
            try await fixture.stop()
            show("database: stopped and removed")
        }
    }

    private func runDemo(url: String, directory: String, processes: DemoProcesses, interrupts: InterruptWatch) async throws {
        let demo = try Demo(url: url, directory: directory, processes: processes)
        do {
            try await demo.run()
        } catch {
            // After Ctrl-C the steps fail as the nodes stop: the interrupt's clean-up reports.
            // Any other failure — a step's command refused, or one that could not even run (the
            // database, the executable) — stops every node and says what failed, on stdout with
            // the rest of the story, whether the database is the demo's or given.
            await interrupts.waitIfInterrupted()
            await processes.stopAll()
            show("\ndemo failed: \((error as? DemoError)?.description ?? "\(error)")")
            show("the nodes' logs are in \(directory)/logs")
            throw ExitCode.failure
        }
    }
}

/// A step of the demo that did not do what it should, with what the command said.
struct DemoError: Error, CustomStringConvertible {
    let description: String
}

/// One run of the demo against the PostgreSQL server at `url`.
struct Demo {
    let url: String
    let directory: String
    let processes: DemoProcesses
    let weft: URL
    let examples: URL
    /// The database the sequencers and the mediator share (the URL's); the domain manager and
    /// each participant get a database of their own beside it, named after it.
    let database: String

    init(url: String, directory: String, processes: DemoProcesses) throws {
        self.url = url
        self.directory = directory
        self.processes = processes
        weft = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        guard let examples = Self.findExamples() else {
            throw DemoError(description: "examples/packages (iou.weft, dvp.weft) not found: run the demo from the repository (scripts/demo)")
        }
        self.examples = examples
        guard let components = URLComponents(string: url), let name = components.path.split(separator: "/").last,
            name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
        else {
            throw DemoError(description: "the demo needs a postgresql://…/DATABASE URL whose database name is letters, digits and _")
        }
        database = String(name)
    }

    /// `examples/packages` of the repository: from the working directory up, or from the
    /// executable's directory up (the build directory is inside the repository).
    static func findExamples() -> URL? {
        for start in [URL(fileURLWithPath: FileManager.default.currentDirectoryPath), URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()] {
            var directory = start
            for _ in 0..<8 {
                let candidate = directory.appendingPathComponent("examples/packages")
                if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("iou.weft").path) { return candidate }
                directory.deleteLastPathComponent()
            }
        }
        return nil
    }

    func step(_ text: String) { show("\n== " + text) }
    func say(_ text: String) { show("   " + text) }

    /// The URL of database `name` beside the demo's.
    func databaseURL(_ name: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.path = "/" + name
        return components.string ?? url
    }

    /// Runs `weft arguments…` in the demo's directory, printing it first; its standard output.
    @discardableResult
    func run(_ arguments: [String], quiet: Bool = false, expectFailure: Bool = false) async throws -> String {
        if !quiet { say("$ weft " + Self.shortened(arguments.joined(separator: " "))) }
        let outcome = try await DemoProcesses.runToEnd(weft, arguments, directory: directory)
        if expectFailure {
            guard outcome.status != 0 else {
                throw DemoError(description: "`weft \(arguments.joined(separator: " "))` succeeded, but should have been refused")
            }
            return outcome.error
        }
        guard outcome.status == 0 else {
            throw DemoError(
                description: "`weft \(arguments.joined(separator: " "))` exited \(outcome.status): \(outcome.error.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return outcome.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Ids as a person reads them: `alice::1220ab12…` instead of 68 hex digits.
    static func shortened(_ text: String) -> String {
        var result = ""
        var rest = Substring(text.split(separator: " ", omittingEmptySubsequences: false).map { word in
            word.count > 96 && word.allSatisfy(\.isHexDigit) ? word.prefix(24) + "…(\(word.count / 2) bytes)" : word
        }.joined(separator: " "))
        while let range = rest.range(of: "::1220") {
            result += rest[..<range.upperBound]
            rest = rest[range.upperBound...]
            let hex = rest.prefix { $0.isHexDigit }
            if hex.count > 8 {
                result += hex.prefix(6) + "…"
                rest = rest.dropFirst(hex.count)
            }
        }
        return result + rest
    }

    /// Writes a file of the demo's directory, the owner's only: node configurations carry the
    /// database URL, which may hold a password.
    func write(_ name: String, _ text: String) throws {
        guard FileManager.default.createFile(atPath: directory + "/" + name, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw DemoError(description: "cannot write \(directory)/\(name) (check the directory's permissions and free space)")
        }
    }

    /// The contract ids of `template` in `weft acs --output json` lines.
    static func contracts(_ output: String, template: String) -> [String] {
        output.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                object["template"] as? String == template
            else { return nil }
            return object["contract_id"] as? String
        }
    }

    /// The created_event_blobs of `template` in `weft acs --output json` lines.
    static func blobs(_ output: String, template: String) -> [String] {
        output.split(separator: "\n").compactMap { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                object["template"] as? String == template
            else { return nil }
            return object["created_event_blob"] as? String
        }
    }

    func run() async throws {
        show("working directory: \(directory) (keys, certificates, configurations, logs)")
        for sub in ["logs", "keys"] { try FileManager.default.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true) }

        step("1. The domain owner creates the domain's root certificate, node certificates and keys")
        try await run(["certs", "init-ca", "--name", "domain1", "--dir", "certs"])
        for node in ["sequencer1", "sequencer2", "domain-manager", "mediator1", "operator", "participant1", "participant2", "participant3"] {
            try await run(["certs", "issue", "--ca-dir", "certs", "--name", node, "--host", "localhost", "--host", "127.0.0.1", "--out", "certs"], quiet: node != "sequencer1")
        }
        say("(and the same for sequencer2, domain-manager, mediator1, the operator's client certificate and, for this demo, the participants' nodes)")
        for key in ["domain-namespace", "domain-manager", "sequencers", "mediator"] {
            try await run(["keys", "generate", "--out", "keys/\(key).pem"], quiet: key != "domain-namespace")
        }
        try await run(["keys", "generate", "--kind", "encryption", "--out", "keys/mediator-encryption.pem"], quiet: true)
        say("(and keys for the domain manager, the sequencers and the mediator)")
        let namespaceKey = try KeyFile.readSigningKey(at: directory + "/keys/domain-namespace.pem")
        let domainID = "domain1::\(namespaceKey.publicKey.fingerprint)"
        say("the domain's id: \(Self.shortened(domainID))")

        step("2. The domain starts: two sequencer nodes on one PostgreSQL database, the domain manager, the mediator")
        let setup = try PostgresConnection(url: url)
        for name in ["manager", "participant1", "participant2", "participant3"] {
            let full = "\(database)_\(name)"
            if try setup.execute("SELECT 1 FROM pg_database WHERE datname = $1", [.text(full)]).rows.isEmpty {
                _ = try setup.execute("CREATE DATABASE \"\(full)\"")
            }
        }
        let first = try LoopbackPort.unused()
        let sequencerPorts = [first, try LoopbackPort.unused(besides: [first])]
        let sequencerAddresses = sequencerPorts.map { "127.0.0.1:\($0)" }
        let sequencers = sequencerPorts.indices.map { index in
            """
              sequencer\(index + 1):
                kind: sequencer
                listen: \(sequencerAddresses[index])
                sequencer-node: \(index)
                domain: \(domainID)
                signing-key: keys/sequencers.pem
                tls: { certificate: certs/sequencer\(index + 1).pem, key: certs/sequencer\(index + 1)-key.pem }
                database: { url: \(YAMLText.quoted(url)) }
                metrics: { listen: 127.0.0.1:0 }
            """
        }.joined(separator: "\n")
        try write(
            "domain.yaml",
            """
            nodes:
            \(sequencers)
              domain-manager:
                kind: domain-manager
                listen: 127.0.0.1:0
                domain: domain1
                namespace-key: keys/domain-namespace.pem
                signing-key: keys/domain-manager.pem
                sequencers:
                  addresses: [\(sequencerAddresses.joined(separator: ", "))]
                  root-cert: certs/ca.pem
                bootstrap:
                  sequencer-key: keys/sequencers.pem.pub
                  mediator-key: keys/mediator.pem.pub
                  mediator-encryption-key: keys/mediator-encryption.pem.pub
                tls: { certificate: certs/domain-manager.pem, key: certs/domain-manager-key.pem, client-roots: certs/ca.pem }
                database: { url: \(YAMLText.quoted(databaseURL("\(database)_manager"))) }
                metrics: { listen: 127.0.0.1:0 }
              mediator1:
                kind: mediator
                listen: 127.0.0.1:0
                domain: \(domainID)
                signing-key: keys/mediator.pem
                sequencer-key: keys/sequencers.pem.pub
                sequencers:
                  addresses: [\(sequencerAddresses.joined(separator: ", "))]
                  root-cert: certs/ca.pem
                tls: { certificate: certs/mediator1.pem, key: certs/mediator1-key.pem }
                database: { url: \(YAMLText.quoted(url)) }
                metrics: { listen: 127.0.0.1:0 }
            """)
        say("$ weft run -c domain.yaml --migrate        (logs: logs/domain.jsonl)")
        let domain = try await processes.start(weft, ["run", "-c", "domain.yaml", "--migrate"], directory: directory, log: directory + "/logs/domain.jsonl")
        var ready: [String] = []
        for _ in 0..<4 {
            guard let line = await domain.nextLine() else {
                throw DemoError(description: "the domain's `weft run` stopped: see logs/domain.jsonl")
            }
            ready.append(line)
            say("  " + Self.shortened(line))
        }
        guard let managerLine = ready.first(where: { $0.contains("domain manager") }),
            let managerPort = Self.port(in: managerLine)
        else { throw DemoError(description: "the domain manager did not say where it listens: \(ready)") }
        let admin = ["--remote", "localhost:\(managerPort)", "--root-cert", "certs/ca.pem", "--cert", "certs/operator.pem", "--key", "certs/operator-key.pem"]
        var metrics: [(node: String, port: Int)] = ready.compactMap { line in
            guard let name = line.split(separator: " ").dropFirst().first, let range = line.range(of: "metrics on port ") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber }).map { (String(name), $0) }
        }

        step("3. Three participants join, as the seed tells it: id, allow-list, connect-multi with the root certificate")
        var apis: [[String]] = []
        var ids: [String] = []
        for number in 1...3 {
            let name = "participant\(number)"
            try write(
                "\(name).yaml",
                """
                nodes:
                  \(name):
                    kind: participant
                    listen: 127.0.0.1:0
                    tls: { certificate: certs/\(name).pem, key: certs/\(name)-key.pem }
                    database: { url: \(YAMLText.quoted(databaseURL("\(database)_\(name)"))) }
                    metrics: { listen: 127.0.0.1:0 }
                """)
            let id = try await run(["participant", "id", "-c", "\(name).yaml"])
            say("  \(Self.shortened(id))")
            ids.append(id)
            say("$ weft run -c \(name).yaml --migrate        (logs: logs/\(name).jsonl)")
            let node = try await processes.start(weft, ["run", "-c", "\(name).yaml", "--migrate"], directory: directory, log: directory + "/logs/\(name).jsonl")
            guard let line = await node.nextLine(), let port = Self.port(in: line) else {
                throw DemoError(description: "\(name) did not start: see logs/\(name).jsonl")
            }
            if let range = line.range(of: "metrics on port "), let metricsPort = Int(line[range.upperBound...].prefix { $0.isNumber }) {
                metrics.append((name, metricsPort))
            }
            let api = ["--remote", "localhost:\(port)", "--root-cert", "certs/ca.pem"]
            apis.append(api)
            // The seed: participant1 asks first and is refused; each then connects to both sequencers.
            let sequencersInOrder = number == 2 ? sequencerAddresses.reversed() : sequencerAddresses
            let connect = ["participant", "connect-multi", "mydomain"] + sequencersInOrder + ["--root-cert", "certs/ca.pem", "--remote", "localhost:\(port)"]
            if number == 1 {
                let refusal = try await run(connect, expectFailure: true)
                say("  refused before the domain owner allow-lists it: \(Self.shortened(refusal.trimmingCharacters(in: .whitespacesAndNewlines)))")
            }
            try await run(["domain-manager", "set-state", id, "--permission", "submission", "--trust", "ordinary"] + admin)
            try await run(connect)
        }
        say("$ weft domain-manager members …")
        let members = try await run(["domain-manager", "members"] + admin, quiet: true)
        for line in members.split(separator: "\n") { say("  " + Self.shortened(String(line))) }

        step("4. Each participant's operator uploads the example packages; parties are allocated")
        for (number, api) in apis.enumerated() {
            for file in ["iou.weft", "dvp.weft"] {
                try await run(["package", "upload", examples.appendingPathComponent(file).path] + api, quiet: number > 0 || file != "iou.weft")
            }
        }
        say("(iou.weft and dvp.weft on all three participants)")
        let alice = try await run(["party", "allocate", "alice", "--display-name", "Alice (buyer)"] + apis[0])
        let bob = try await run(["party", "allocate", "bob", "--display-name", "Bob (seller)"] + apis[1])
        let bank = try await run(["party", "allocate", "bank", "--display-name", "The bank"] + apis[2])
        let custodian = try await run(["party", "allocate", "custodian", "--display-name", "The securities depository"] + apis[2])
        say("alice on participant1, bob on participant2, the bank and the custodian on participant3")

        // A marker in the contracts' data: it must never appear in the domain's tables.
        let marker = "DEMO-\(UInt64.random(in: 1...UInt64.max))"
        step("5. An IOU: the bank issues 100 USD to alice; alice transfers it to bob")
        try await run(
            ["submit", "create", "--template", "Iou", "--act-as", bank, "--command-id", "issue-iou", "--arguments",
             #"{"issuer": {"party": "\#(bank)"}, "owner": {"party": "\#(alice)"}, "currency": "USD \#(marker)", "amount": {"decimal": "100.0"}}"#]
                + apis[2])
        let iou = Self.contracts(try await run(["acs", "--party", alice, "--output", "json"] + apis[0], quiet: true), template: "Iou")
        guard let iouID = iou.first else { throw DemoError(description: "alice's participant does not show the IOU") }
        try await run(
            ["submit", "exercise", "--template", "Iou", "--contract", iouID, "--choice", "Transfer", "--act-as", alice,
             "--command-id", "transfer-iou", "--arguments", #"{"newOwner": {"party": "\#(bob)"}}"#] + apis[0])

        step("6. Delivery versus payment among alice, bob and the bank/custodian on three participants")
        try await run(
            ["submit", "create", "--template", "Cash", "--act-as", bank, "--command-id", "cash", "--arguments",
             #"{"bank": {"party": "\#(bank)"}, "owner": {"party": "\#(alice)"}, "amount": {"decimal": "1000.0"}}"#] + apis[2])
        try await run(
            ["submit", "create", "--template", "Security", "--act-as", custodian, "--command-id", "security", "--arguments",
             #"{"custodian": {"party": "\#(custodian)"}, "holder": {"party": "\#(bob)"}, "isin": "XS-\#(marker)", "quantity": 10}"#] + apis[2])
        let aliceContracts = try await run(["acs", "--party", alice, "--output", "json"] + apis[0], quiet: true)
        let cash = Self.contracts(aliceContracts, template: "Cash")
        let security = Self.contracts(try await run(["acs", "--party", bob, "--output", "json"] + apis[1], quiet: true), template: "Security")
        guard let cashID = cash.first, let securityID = security.first else {
            throw DemoError(description: "the cash (\(cash)) or the security (\(security)) did not reach its owner's participant")
        }
        try await run(
            ["submit", "create", "--template", "Offer", "--act-as", alice, "--command-id", "offer", "--arguments",
             #"{"buyer": {"party": "\#(alice)"}, "seller": {"party": "\#(bob)"}, "bank": {"party": "\#(bank)"}, "custodian": {"party": "\#(custodian)"}, "isin": "XS-\#(marker)", "quantity": 10, "price": {"decimal": "1000.0"}, "payment": {"contract": "\#(cashID)"}}"#]
                + apis[0])
        let offers = Self.contracts(try await run(["acs", "--party", bob, "--output", "json"] + apis[1], quiet: true), template: "Offer")
        guard let offerID = offers.first else { throw DemoError(description: "bob's participant does not show alice's offer") }
        // Settle fetches the cash, which only alice's and the bank's participants store: alice's
        // application hands it to bob's (explicit disclosure), as her participant gave it out.
        guard let cashBlob = Self.blobs(aliceContracts, template: "Cash").first else {
            throw DemoError(description: "alice's participant gave no created_event_blob for the cash")
        }
        say("alice's application hands bob's the cash contract (its created_event_blob from `weft acs --output json`)")
        try await run(
            ["submit", "exercise", "--template", "Offer", "--contract", offerID, "--choice", "Settle", "--act-as", bob,
             "--command-id", "settle", "--arguments", #"{"delivery": {"contract": "\#(securityID)"}}"#, "--disclose", cashBlob] + apis[1])

        step("7. What each participant sees")
        let hosted: [(participant: String, parties: [(String, String)])] = [
            ("participant1", [("alice", alice)]), ("participant2", [("bob", bob)]),
            ("participant3", [("bank", bank), ("custodian", custodian)]),
        ]
        for (index, entry) in hosted.enumerated() {
            show("\n   -- \(entry.participant)")
            for (name, party) in entry.parties {
                say("\(name)'s active contracts:")
                for line in try await run(["acs", "--party", party] + apis[index], quiet: true).split(separator: "\n") {
                    say("  " + Self.shortened(String(line)))
                }
            }
            say("its transactions, as trees (what its parties witnessed of each):")
            let parties = entry.parties.flatMap { ["--party", $0.1] }
            for line in try await run(["transactions", "--tree"] + parties + apis[index], quiet: true).split(separator: "\n") {
                say("  " + Self.shortened(String(line)))
            }
        }

        step("8. What the domain stored in PostgreSQL: ciphertext only")
        let tables = try setup.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1"
        ).rows.compactMap { try $0[0].string }
        let hexMarker = marker.utf8.map { String(format: "%02x", $0) }.joined()
        let base64Marker = Data(marker.utf8).base64EncodedString().dropLast(4)
        var leaks: [String] = []
        var counts: [String] = []
        for table in tables where table.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) {
            let text = try setup.execute("SELECT coalesce(string_agg(t::text, ' '), '') FROM \"\(table)\" t").rows[0][0].string ?? ""
            if text.contains(marker) || text.contains(hexMarker) || text.contains(base64Marker) { leaks.append(table) }
            if table == "sequencer_events" || table.hasPrefix("mediator_") {
                counts.append("\(table): \(try setup.execute("SELECT count(*) FROM \"\(table)\"").rows[0][0].int64 ?? 0) rows")
            }
        }
        say(counts.joined(separator: ", "))
        say("the marker \(marker) (in the IOU's currency and the security's ISIN) appears in the domain's \(tables.count) tables: "
            + (leaks.isEmpty ? "nowhere (as text, hex or base64) — the domain holds ciphertext only" : "IN \(leaks.joined(separator: ", ")) (a bug!)"))
        let participantHasIt = try PostgresConnection(url: databaseURL("\(database)_participant2"))
            .execute("SELECT count(*) FROM participant_contracts WHERE position($1 IN encode(contract, 'escape')) > 0", [.text(marker)]).rows[0][0].int64 ?? 0
        say("participant2's own database has it in \(participantHasIt) of bob's contracts: participants decrypt what concerns them")
        if let row = try setup.execute("SELECT encode(substring(batch from 1 for 48), 'hex'), length(batch) FROM sequencer_events WHERE batch IS NOT NULL ORDER BY ts DESC LIMIT 1").rows.first {
            say("the last stored event's batch (\(try row[1].int64 ?? 0) bytes) begins: \(try row[0].string ?? "")…")
        }
        guard leaks.isEmpty else { throw DemoError(description: "plaintext reached the domain's tables: \(leaks)") }

        step("9. Metrics and logs")
        for (node, port) in metrics {
            say("\(node): http://127.0.0.1:\(port)/metrics and /health")
        }
        let health = try await run(["health", "status", "--remote", "localhost:\(sequencerPorts[0])", "--root-cert", "certs/ca.pem"])
        for line in health.split(separator: "\n") { say("  " + line) }
        say("JSON logs (one event per line, trace_id on each line of a call): \(directory)/logs/")

        step("10. Stopping every node (SIGTERM: drain, then exit)")
        let stopped = await processes.stopAll()
        for (name, status) in stopped { say("\(name) exited \(status)") }
        guard stopped.allSatisfy({ $0.status == 0 }) else {
            throw DemoError(description: "a node did not stop cleanly: \(stopped)")
        }
    }

    static func port(in line: String) -> Int? {
        guard let range = line.range(of: " listening on ") else { return nil }
        let address = line[range.upperBound...].prefix { $0 != "," && $0 != " " }
        return address.split(separator: ":").last.flatMap { Int($0) }
    }
}
