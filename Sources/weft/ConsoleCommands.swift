import ArgumentParser
import Foundation
import WeftNode
import WeftStore
import WeftTransport
import WeftWire

/// `weft config print`: the configuration as the nodes would see it.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Show the effective configuration.", subcommands: [Print.self])

    struct Print: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every key with its value and where it came from (file, WEFT_* variable, --set).",
            discussion: """
                The same merge `weft run` does: the YAML file, then WEFT_* environment variables, then
                --set. With --redacted (what to paste into a ticket), passwords in database URLs and
                keys that name a password, secret or token are masked.
                """)

        @OptionGroup var options: ConfigurationOptions

        @Flag(help: "Mask passwords and secrets.")
        var redacted = false

        @Option(help: "text (key: value  # source) or json.")
        var output: OutputFormat = .text

        func run() throws {
            let configuration: Configuration
            do {
                configuration = try options.load()
            } catch let error as ConfigurationError {
                throw ValidationError(error.description)
            }
            let entries = configuration.entries.sorted { $0.key < $1.key }.map { key, entry in
                (key: key, value: redacted ? Self.redact(key: key, value: entry.value) : entry.value, source: entry.source.description)
            }
            switch output {
            case .json:
                try printJSON(Dictionary(uniqueKeysWithValues: entries.map { ($0.key, ["value": $0.value, "source": $0.source]) }))
            case .text:
                for entry in entries { print("\(entry.key): \(entry.value)  # \(entry.source)") }
            }
        }

        /// The value `weft config print --redacted` shows for `key`.
        static func redact(key: String, value: String) -> String {
            let last = key.split(separator: ".").last.map(String.init)?.lowercased() ?? ""
            if ["password", "secret", "token"].contains(where: { last.contains($0) }) { return "***" }
            if key.hasSuffix("database.url") || value.hasPrefix("postgres://") || value.hasPrefix("postgresql://") {
                return ConnectionStringRedaction.masked(value)
            }
            return value
        }
    }
}

/// `weft health`: a node's health service, remotely.
struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health", abstract: "Ask a node how it is.", subcommands: [Status.self, Ping.self])

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The node's serving status (weft.v1.HealthService/Check); exit 0 when SERVING, 1 otherwise.")

        @OptionGroup var remote: RemoteOptions

        @Option(help: "A service's own status (e.g. weft.v1.SequencerService) instead of the node's.")
        var service: String = ""

        @Option(help: "text or json.")
        var output: OutputFormat = .text

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let response = try await client.health.check(.init(service: service), timeout: .seconds(10))
            let status = Self.name(response.status)
            switch output {
            case .json: try printJSON(["status": status, "detail": response.detail, "service": service])
            case .text: print(response.detail.isEmpty ? status : "\(status): \(response.detail)")
            }
            if response.status != .serving { throw ExitCode(1) }
        }

        static func name(_ status: Weft.V1.ServingStatus) -> String {
            switch status {
            case .serving: "SERVING"
            case .notServing: "NOT_SERVING"
            default: "UNKNOWN"
            }
        }
    }

    struct Ping: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Round trips to the node over one connection: connect time and call latency.")

        @OptionGroup var remote: RemoteOptions

        @Option(help: "How many calls.")
        var count: Int = 5

        @Option(help: "text or json.")
        var output: OutputFormat = .text

        func validate() throws {
            guard count > 0 else { throw ValidationError("--count must be at least 1") }
        }

        func run() async throws {
            let clock = ContinuousClock()
            let start = clock.now
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let connected = clock.now - start
            var rtts: [Double] = []
            for _ in 0..<count {
                let before = clock.now
                _ = try await client.health.check(.init(), timeout: .seconds(10))
                rtts.append(Self.milliseconds(clock.now - before))
            }
            let sorted = rtts.sorted()
            let summary: [String: Any] = [
                "connect_ms": Self.milliseconds(connected), "calls": count,
                "min_ms": sorted.first!, "median_ms": sorted[sorted.count / 2], "max_ms": sorted.last!,
            ]
            switch output {
            case .json: try printJSON(summary)
            case .text:
                print("connected to \(remote.remote) in \(Self.format(Self.milliseconds(connected))) ms (\(remote.plaintext ? "plaintext" : "TLS"))")
                for (index, rtt) in rtts.enumerated() { print("call \(index + 1): \(Self.format(rtt)) ms") }
                print("\(count) calls: min \(Self.format(sorted.first!)) / median \(Self.format(sorted[sorted.count / 2])) / max \(Self.format(sorted.last!)) ms")
            }
        }

        static func milliseconds(_ duration: Duration) -> Double {
            let (seconds, attoseconds) = duration.components
            return Double(seconds) * 1000 + Double(attoseconds) / 1e15
        }

        static func format(_ milliseconds: Double) -> String { String(format: "%.3f", milliseconds) }
    }
}
