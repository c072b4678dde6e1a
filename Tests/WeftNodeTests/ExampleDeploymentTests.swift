import Foundation
import Testing
import WeftTestSupport

/// The deployments in `examples/`, run as their READMEs say: the example copied to a temporary
/// directory, its README's `sh` blocks run by bash with `weft` on PATH and the fixture's server
/// in the `PG*` variables (setup: databases, keys, certificates; onboard: id, set-state,
/// connect-multi; use: a package, parties and an IOU), its `weft run` lines started as
/// processes. The only change is the port numbers: each example port becomes a free one, in
/// the YAML files and the commands alike, because other tests run beside these.
///
/// The demo (`weft demo`, DemoTests) is a fifth deployment of its own: two sequencer nodes
/// shared by three participants, written by the demo rather than read from `examples/`.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ExampleDeploymentTests {
    @Test func allInOneProcess() async throws {
        try await PostgresFixture.withFixture { fixture in
            let example = try ExampleDeployment("all-in-one", fixture: fixture)
            defer { example.remove() }
            try await example.run("setup")
            let nodes = try await example.start()
            defer { ExampleDeployment.kill(nodes) }
            #expect(nodes.count == 1 && nodes[0].ready.count == 4, "\(nodes.map(\.ready))")
            try await example.run("onboard")
            let use = try await example.run("use")
            #expect(use.contains("committed ") && use.contains("  Iou  "), "\(use)")
            #expect(use.split(separator: "\n").last == "1", "ledger end after one transaction: \(use)")
            try await ExampleDeployment.stop(nodes)
        }
    }

    /// Also the acceptance check of the metrics: each node kind in a process of its own, so each
    /// `/metrics` is that node's, and `promtool check metrics` accepts every one.
    @Test func oneProcessPerNodeAndPromtoolAcceptsEveryNodesMetrics() async throws {
        try await PostgresFixture.withFixture { fixture in
            let example = try ExampleDeployment("process-per-node", fixture: fixture)
            defer { example.remove() }
            try await example.run("setup")
            let nodes = try await example.start()
            defer { ExampleDeployment.kill(nodes) }
            #expect(nodes.map(\.ready.count) == [1, 1, 1, 1], "\(nodes.map(\.ready))")
            try await example.run("onboard")
            let use = try await example.run("use")
            #expect(use.contains("committed "), "\(use)")
            #expect(use.split(separator: "\n").last == "1", "ledger end after one transaction: \(use)")

            let promtool = try #require(
                ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
                    FileManager.default.isExecutableFile(atPath: $0)
                },
                "promtool is missing: run scripts/install-deps (it installs the Debian package prometheus)")
            var kinds: Set<String> = []
            for node in nodes {
                let line = try #require(node.ready.first)
                let kind = try #require(
                    ["sequencer", "domain manager", "mediator", "participant"].first { line.contains("(\($0) ") },
                    "\(line)")
                kinds.insert(kind)
                // A call to the node, so that its registry has something to show (the operator's
                // certificate, for the domain manager's mutual TLS).
                let api = try #require(ExampleDeployment.apiPort(line), "\(line)")
                _ = try await example.weft(
                    [
                        "health", "status", "--remote", "localhost:\(api)", "--root-cert", "certs/ca.pem", "--cert",
                        "certs/operator.pem", "--key", "certs/operator-key.pem",
                    ])
                let metricsPort = try #require(ExampleDeployment.metricsPort(line), "\(line)")
                let scrape = try await HTTPScrape.fetch("http://127.0.0.1:\(metricsPort)/metrics")
                #expect(scrape.status == 200)
                #expect(
                    scrape.body.contains("# HELP weft_rpc_server_calls_total ")
                        && scrape.body.contains(#"method="/weft.v1.HealthService/Check""#), "\(kind): \(scrape.body)")
                // What each kind counted of the one transaction ("use" committed it).
                let counted: [String: String] = [
                    "sequencer": #"weft_sequencer_submissions_total{outcome="sequenced"}"#,
                    "mediator": #"weft_mediator_verdicts_total{outcome="approved"}"#,
                    "participant": #"weft_participant_requests_total{outcome="approved"}"#,
                ]
                if let series = counted[kind] {
                    let value = scrape.body.split(separator: "\n").first { $0.hasPrefix(series + " ") }
                        .flatMap { Double($0.split(separator: " ").last ?? "") }
                    #expect((value ?? 0) >= 1, "\(kind): \(series) in \(scrape.body)")
                }
                let file = example.directory + "/metrics-\(metricsPort).txt"
                try scrape.body.write(toFile: file, atomically: true, encoding: .utf8)
                let check = try await TestSubprocess.run(["bash", "-c", "\(promtool) check metrics < \(file)"])
                #expect(
                    check.status == 0, "promtool check metrics on the \(kind)'s /metrics: \(check.output)\(check.error)"
                )
            }
            #expect(kinds == ["sequencer", "domain manager", "mediator", "participant"])
            try await ExampleDeployment.stop(nodes)
        }
    }

    @Test func twoParticipantsOnOneSharedSequencer() async throws {
        try await PostgresFixture.withFixture { fixture in
            let example = try ExampleDeployment("shared-sequencer", fixture: fixture)
            defer { example.remove() }
            try await example.run("setup")
            let nodes = try await example.start()
            defer { ExampleDeployment.kill(nodes) }
            let onboard = try await example.run("onboard")
            let shared = try #require(example.ports[4401])
            #expect(
                onboard.components(separatedBy: "(mydomain) through https://127.0.0.1:\(shared)\n").count == 3,
                "\(onboard)")
            try await example.expectIOUReachesAlice(
                try await example.run("use"), participant2: try #require(example.ports[4502]))
            try await ExampleDeployment.stop(nodes)
        }
    }

    @Test func aSequencerNodePerParticipant() async throws {
        try await PostgresFixture.withFixture { fixture in
            let example = try ExampleDeployment("sequencer-per-participant", fixture: fixture)
            defer { example.remove() }
            try await example.run("setup")
            let nodes = try await example.start()
            defer { ExampleDeployment.kill(nodes) }
            #expect(
                nodes[0].ready.count == 4 && nodes[0].ready.contains { $0.contains("(sequencer 1)") },
                "\(nodes[0].ready)")
            let onboard = try await example.run("onboard")
            // Each participant is connected through its own sequencer node, and only through it.
            let (first, second) = (try #require(example.ports[4401]), try #require(example.ports[4402]))
            let lines = onboard.split(separator: "\n")
            #expect(
                lines.contains { $0.hasPrefix("participant1::") && $0.hasSuffix("through https://127.0.0.1:\(first)") },
                "\(onboard)")
            #expect(
                lines.contains {
                    $0.hasPrefix("participant2::") && $0.hasSuffix("through https://127.0.0.1:\(second)")
                }, "\(onboard)")
            #expect(
                lines.contains { $0.hasPrefix("mydomain: ") && $0.contains("via https://127.0.0.1:\(first) ") },
                "\(onboard)")
            #expect(
                lines.contains { $0.hasPrefix("mydomain: ") && $0.contains("via https://127.0.0.1:\(second) ") },
                "\(onboard)")
            try await example.expectIOUReachesAlice(
                try await example.run("use"), participant2: try #require(example.ports[4502]))
            try await ExampleDeployment.stop(nodes)
        }
    }
}

/// One example deployment copied to a temporary directory, with its ports replaced by free ones.
struct ExampleDeployment {
    let name: String
    /// Holds the example's directory and a copy of `examples/packages` beside it (the READMEs
    /// upload `../packages/iou.weft`).
    let root: String
    var directory: String { root + "/" + name }
    let readme: String
    /// Example port → the free port used instead.
    let ports: [Int: Int]
    /// What the README's commands run with: `weft` on PATH, the fixture's server in `PG*`.
    let environment: [String: String]

    /// A `weft run` process and the lines it printed when its nodes served.
    struct Node {
        let process: WeftProcess
        let ready: [String]
    }

    static var repository: URL {
        var root = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) {
            root.deleteLastPathComponent()
        }
        return root
    }

    init(_ name: String, fixture: PostgresFixture) throws {
        self.name = name
        root = FileManager.default.temporaryDirectory.appendingPathComponent("weft-example-\(UUID())").path
        let files = FileManager.default
        try files.createDirectory(atPath: root, withIntermediateDirectories: true)
        let examples = Self.repository.appendingPathComponent("examples")
        try files.copyItem(atPath: examples.appendingPathComponent(name).path, toPath: root + "/" + name)
        try files.copyItem(atPath: examples.appendingPathComponent("packages").path, toPath: root + "/packages")

        let yamlFiles = try files.contentsOfDirectory(atPath: root + "/" + name).filter { $0.hasSuffix(".yaml") }
        var ports: [Int: Int] = [:]
        for file in yamlFiles {
            let text = try String(contentsOfFile: root + "/" + name + "/" + file, encoding: .utf8)
            for match in text.matches(of: #/127\.0\.0\.1:(\d+)/#) {
                let port = Int(match.1)!
                if ports[port] == nil { ports[port] = try Self.unusedPort(besides: Set(ports.values)) }
            }
        }
        self.ports = ports
        for file in yamlFiles {
            let path = root + "/" + name + "/" + file
            try Self.remap(try String(contentsOfFile: path, encoding: .utf8), ports).write(
                toFile: path, atomically: true, encoding: .utf8)
        }
        readme = try String(contentsOfFile: root + "/" + name + "/README.md", encoding: .utf8)

        let server = try #require(URLComponents(string: fixture.url))
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] =
            WeftProcess.executable.deletingLastPathComponent().path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["PGHOST"] = server.host ?? "127.0.0.1"
        environment["PGPORT"] = String(server.port ?? 5432)
        environment["PGUSER"] = server.user ?? "postgres"
        if let password = server.password {
            environment["PGPASSWORD"] = password
        } else {
            environment["PGPASSWORD"] = nil
        }
        environment["PGDATABASE"] = nil
        self.environment = environment
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }

    /// A port below the kernel's ephemeral range that nothing listens on now (`LoopbackPort`).
    static func unusedPort(besides taken: Set<Int>) throws -> Int {
        try LoopbackPort.unused(besides: taken)
    }

    /// `text` with every `:<example port>` replaced by `:<free port>`.
    static func remap(_ text: String, _ ports: [Int: Int]) -> String {
        text.replacing(#/:(\d{4})(?!\d)/#) { match in
            ports[Int(match.1)!].map { ":\($0)" } ?? String(match.0)
        }
    }

    /// The `sh` block after `<!-- test: marker` in the README, ports remapped.
    func block(_ marker: String) throws -> String {
        let start = try #require(
            readme.range(of: "<!-- test: \(marker)"), "\(name)/README.md has no block marked \(marker)")
        let rest = readme[start.upperBound...]
        let open = try #require(rest.range(of: "```sh\n"), "\(name)/README.md: no sh block after the \(marker) marker")
        let close = try #require(rest[open.upperBound...].range(of: "```"))
        return Self.remap(String(rest[open.upperBound..<close.lowerBound]), ports)
    }

    /// Runs the README's block `marker` with bash (`-euo pipefail`) in the example's directory;
    /// expects exit 0 and returns its standard output.
    @discardableResult
    func run(_ marker: String) async throws -> String {
        let script = "cd '\(directory)'\n" + (try block(marker))
        let outcome = try await TestSubprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], environment: environment)
        #expect(
            outcome.status == 0,
            "\(name) \(marker) block exited \(outcome.status):\n\(outcome.output)\n\(outcome.error)")
        return outcome.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `weft arguments…` in the example's directory; expects exit 0, returns standard output.
    @discardableResult
    func weft(_ arguments: [String]) async throws -> String {
        let (status, output, error) = try await WeftProcess.run(
            arguments, directory: directory, environment: environment)
        #expect(status == 0, "weft \(arguments.joined(separator: " ")): \(error)")
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Starts each `weft run …` line of the README's run block, in order, each once all the
    /// nodes of its file printed their ready lines.
    func start() async throws -> [Node] {
        var nodes: [Node] = []
        for line in try block("run").split(separator: "\n") where line.hasPrefix("weft run ") {
            let arguments = line.split(separator: " ").dropFirst().map(String.init)
            let file = try #require(arguments.firstIndex(of: "-c").map { arguments[$0 + 1] }, "\(line)")
            let configuration = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
            let count = configuration.split(separator: "\n").filter { $0.hasPrefix("    kind: ") }.count
            let process = try WeftProcess(arguments, directory: directory, environment: environment)
            var ready: [String] = []
            for _ in 0..<count {
                guard let next = await process.nextLine() else { break }
                ready.append(next)
            }
            nodes.append(Node(process: process, ready: ready))
            try #require(
                ready.count == count && ready.allSatisfy { $0.hasPrefix("node ") },
                "\(line): \(ready)\n\(process.standardError.suffix(3000))")
        }
        return nodes
    }

    /// SIGTERM to every process at once; each drains and exits 0.
    static func stop(_ nodes: [Node]) async throws {
        for node in nodes { node.process.signal(SIGTERM) }
        for node in nodes {
            #expect(
                await node.process.exitStatus() == 0,
                "\(node.ready.first ?? ""): \(node.process.standardError.suffix(3000))")
        }
    }

    /// After a failed expectation: nothing is left running.
    static func kill(_ nodes: [Node]) {
        for node in nodes where node.process.process.isRunning { node.process.signal(SIGKILL) }
    }

    /// The metrics port in a ready line (`…, metrics on port 9401`).
    static func metricsPort(_ line: String) -> Int? {
        line.range(of: "metrics on port ").flatMap { Int(line[$0.upperBound...].prefix { $0.isNumber }) }
    }

    /// The API port in a ready line (`… listening on 127.0.0.1:4401, …`).
    static func apiPort(_ line: String) -> Int? {
        line.range(of: "listening on 127.0.0.1:").flatMap { Int(line[$0.upperBound...].prefix { $0.isNumber }) }
    }

    /// The use block of the two-participant examples: the bank's IOU to alice, committed by
    /// participant1, reaches alice's participant2. Participant2 commits on the same verdict
    /// from its own stream, possibly just after `weft submit` returned: asked again until it
    /// shows (each `weft acs` is a process start, so the number of attempts bounds the wait).
    func expectIOUReachesAlice(_ use: String, participant2: Int) async throws {
        #expect(use.contains("committed "), "\(use)")
        let aliceLine = try #require(use.split(separator: "\n").first { $0.hasPrefix("alice is ") }, "\(use)")
        let alice = String(aliceLine.dropFirst("alice is ".count))
        // What the README's own `weft acs` printed, then asked again while the IOU is not there.
        var contracts = use.components(separatedBy: aliceLine).last ?? ""
        for _ in 0..<50 where !contracts.contains("  Iou  ") {
            contracts = try await weft([
                "acs", "--party", alice, "--remote", "localhost:\(participant2)", "--root-cert", "certs/ca.pem",
            ])
        }
        #expect(contracts.contains("  Iou  ") && contracts.contains(#""owner":{"party":"\#(alice)"}"#), "\(contracts)")
    }
}
