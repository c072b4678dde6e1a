import ArgumentParser
import Foundation
import Logging
import WeftNode
import WeftObservability

/// Options every command that reads a node configuration shares.
struct ConfigurationOptions: ParsableArguments {
    @Option(name: [.customShort("c"), .customLong("config")], help: "The YAML configuration file (also WEFT_CONFIG).")
    var file: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a configuration key (repeatable), e.g. --set nodes.sequencer1.listen=0.0.0.0:4401.", valueName: "key=value"))
    var overrides: [String] = []

    func load() throws -> Configuration {
        let environment = ProcessInfo.processInfo.environment
        return try Configuration.load(file: file ?? environment["WEFT_CONFIG"], environment: environment, overrides: overrides)
    }
}

/// `weft run -c nodes.yaml`: the daemon.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run every node the configuration defines, until SIGTERM or Ctrl-C.",
        discussion: """
            Configuration comes from the YAML file, then WEFT_* environment variables, then --set.
            On SIGTERM each node stops accepting calls (GOAWAY), lets open calls finish within its
            drain-timeout, and the process exits 0. A node that cannot start (database unreachable,
            migrations pending, bad TLS files) stops the others and the exit status is 1.
            docs/operations.md lists every key.
            """)

    @OptionGroup var options: ConfigurationOptions

    @Flag(help: "Apply pending database migrations at start instead of refusing to start.")
    var migrate = false

    @Option(name: .customLong("tls-keylog"), help: ArgumentHelp(
        "Append every node's TLS session secrets to FILE (NSS key log, for Wireshark; docs/debugging.md). Anyone with the file can read the traffic.",
        valueName: "file"))
    var tlsKeyLog: String?

    @Flag(help: "Serve WITHOUT TLS (no encryption, no authentication): for local experiments only; logged as a warning.")
    var plaintext = false

    func run() async throws {
        JSONLogHandler.bootstrap()
        // Before any node starts: a metric created before the backend is installed counts into
        // swift-metrics' no-op backend for good, and a node may count before its /metrics
        // endpoint starts, or have none.
        WeftMetrics.bootstrap()
        let logger = Logger(label: "weft")
        let nodes: [NodeSettings]
        do {
            var configuration = try options.load()
            for node in configuration.children(of: "nodes") {
                if let tlsKeyLog { configuration.set("nodes.\(node).tls.keylog", tlsKeyLog) }
                if plaintext { configuration.set("nodes.\(node).tls.plaintext", "true") }
            }
            nodes = try NodeRunner.nodes(in: configuration, migrate: migrate)
        } catch let error as ConfigurationError {
            // The line to alert on, as for a node that cannot start below.
            logger.critical("weft run failed", metadata: ["error": "\(error)"])
            throw ValidationError(error.description)
        }
        if let tlsKeyLog {
            logger.warning("--tls-keylog: writing TLS session secrets; anyone who reads the file can decrypt this process's traffic", metadata: ["key_log": "\(tlsKeyLog)"])
        }
        do {
            try await NodeRunner.run(nodes, logger: logger) { line in
                // Unbuffered: scripts and tests wait for this line to know the node serves.
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            }
        } catch let error as ConfigurationError {
            // A value, or a file it names (a key others can read), that a node refuses as it
            // starts: a usage error like one found while parsing (64, naming the key), and the
            // JSON line to alert on, as for any node that cannot start.
            logger.critical("weft run failed", metadata: ["error": "\(error)"])
            throw ValidationError(error.description)
        } catch {
            logger.critical("weft run failed", metadata: ["error": "\(error)"])
            FileHandle.standardError.write(Data("weft run: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// `weft db status|migrate`: a node's schema.
struct DatabaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Show or apply a node's database migrations.", subcommands: [Status.self, Migrate.self])

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show each component's applied and pending migrations.")
        @OptionGroup var options: ConfigurationOptions
        @Option(help: "The node (nodes.<name>) whose database to inspect; default: the only node.")
        var node: String?

        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            let settings = try DatabaseCommand.node(options, node)
            for status in try await NodeMigrations.status(settings) {
                switch output {
                case .text: print(status.line)
                case .json:
                    try printJSON([
                        "component": status.component, "applied": status.applied,
                        "pending": status.pending.map { ["version": $0.version, "name": $0.name] as [String: Any] },
                    ])
                }
            }
        }
    }

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Apply pending migrations (take a backup first).")
        @OptionGroup var options: ConfigurationOptions
        @Option(help: "The node (nodes.<name>) whose database to migrate; default: the only node.")
        var node: String?

        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() async throws {
            let settings = try DatabaseCommand.node(options, node)
            for (component, applied) in try await NodeMigrations.migrate(settings) {
                switch output {
                case .text: print("\(component): applied \(applied.isEmpty ? "nothing (already current)" : applied.map(String.init).joined(separator: ", "))")
                case .json: try printJSON(["component": component, "applied": applied])
                }
            }
        }
    }

    static func node(_ options: ConfigurationOptions, _ name: String?) throws -> NodeSettings {
        let nodes: [NodeSettings]
        do {
            nodes = try NodeRunner.nodes(in: try options.load())
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
        if let name {
            guard let node = nodes.first(where: { $0.name == name }) else {
                throw ValidationError("no node \(name) in the configuration; it defines \(nodes.map(\.name).joined(separator: ", "))")
            }
            return node
        }
        guard nodes.count == 1 else { throw ValidationError("the configuration defines \(nodes.count) nodes; name one with --node") }
        return nodes[0]
    }
}
