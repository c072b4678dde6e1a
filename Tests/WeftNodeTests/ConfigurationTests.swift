import Foundation
import Logging
import Testing
import WeftParticipant
@testable import WeftNode

/// The three configuration layers and their error messages.
@Suite struct ConfigurationTests {
    static let yaml = """
        nodes:
          sequencer1:
            kind: sequencer
            listen: 127.0.0.1:4401
            tls:
              certificate: certs/s1.pem
              key: certs/s1-key.pem
            database:
              url: postgresql://weft@127.0.0.1:5432/weft
            rpc:
              max-frame-bytes: 8MiB
              idle-timeout: 90s
        """

    func file(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("weft-config-\(UUID()).yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func environmentOverridesTheFileAndSetOverridesBoth() throws {
        let path = try file(Self.yaml)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let configuration = try Configuration.load(
            file: path,
            environment: ["WEFT_NODES__SEQUENCER1__LISTEN": "0.0.0.0:5501", "WEFT_NODES__SEQUENCER1__RPC__MAX_FRAME_BYTES": "2MiB", "HOME": "/root", "WEFT_LOG_LEVEL": "debug", "WEFT_TOKEN": "t"],
            overrides: ["nodes.sequencer1.listen=127.0.0.1:6601"])
        let node = try #require(try NodeRunner.nodes(in: configuration).first)
        #expect(node.listenHost == "127.0.0.1" && node.listenPort == 6601)  // --set wins
        #expect(node.rpc.maximumFrameBytes == 2 << 20)  // the environment beats the file
        #expect(node.rpc.idleTimeout == .seconds(90))  // the file beats the default
        #expect(node.rpc.maximumConcurrentStreams == 100)  // the default
        #expect(configuration.source(of: "nodes.sequencer1.listen") == .commandLine)
        #expect(configuration.source(of: "nodes.sequencer1.rpc.max-frame-bytes") == .environment("WEFT_NODES__SEQUENCER1__RPC__MAX_FRAME_BYTES"))
        #expect(configuration.source(of: "nodes.sequencer1.kind") == .file(path))
    }

    @Test func errorsNameTheKeyTheValueAndWhereItCameFrom() throws {
        let path = try file(Self.yaml)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bad = try Configuration.load(file: path, environment: ["WEFT_NODES__SEQUENCER1__RPC__IDLE_TIMEOUT": "soon"], overrides: [])
        #expect(throws: ConfigurationError.invalid(
            key: "nodes.sequencer1.rpc.idle-timeout", value: "soon", expected: "a duration from 1s to 24h, e.g. 5m, or off for never",
            source: .environment("WEFT_NODES__SEQUENCER1__RPC__IDLE_TIMEOUT"))) { try NodeRunner.nodes(in: bad) }
        let typo = try Configuration.load(file: path, environment: [:], overrides: ["nodes.sequencer1.databse.url=x"])
        #expect(throws: ConfigurationError.unknownKeys(["nodes.sequencer1.databse.url"])) { try NodeRunner.nodes(in: typo) }
        let missing = try Configuration.load(file: path, environment: [:], overrides: ["nodes.sequencer1.tls.key="])
        #expect(throws: ConfigurationError.missing(key: "nodes.sequencer1.tls.key")) { try NodeRunner.nodes(in: missing) }
        #expect(ConfigurationError.missing(key: "nodes.sequencer1.tls.key").description.contains("WEFT_NODES__SEQUENCER1__TLS__KEY"))
        #expect(throws: ConfigurationError.badOverride("listen")) { try Configuration.load(file: nil, environment: [:], overrides: ["listen"]) }
        let broken = try file("nodes: [unclosed")
        defer { try? FileManager.default.removeItem(atPath: broken) }
        #expect {
            try Configuration.load(file: broken, environment: [:], overrides: [])
        } throws: { error in
            guard case .invalidYAML(.file(broken), _)? = error as? ConfigurationError else { return false }
            return true
        }
    }

    @Test func plaintextMustBeAskedForAndTLS12Too() throws {
        let plain = try Configuration.load(
            file: nil, environment: [:], overrides: ["nodes.s.kind=sequencer", "nodes.s.listen=127.0.0.1:1", "nodes.s.tls.plaintext=true"])
        guard case .plaintext = try NodeRunner.nodes(in: plain)[0].security else { Issue.record("expected plaintext"); return }
        let noTLS = try Configuration.load(file: nil, environment: [:], overrides: ["nodes.s.kind=sequencer", "nodes.s.listen=127.0.0.1:1"])
        #expect(throws: ConfigurationError.missing(key: "nodes.s.tls.certificate")) { try NodeRunner.nodes(in: noTLS) }
        let tls12 = try Configuration.load(
            file: nil, environment: [:],
            overrides: ["nodes.s.kind=sequencer", "nodes.s.listen=127.0.0.1:1", "nodes.s.tls.certificate=c", "nodes.s.tls.key=k", "nodes.s.tls.minimum-version=1.2"])
        guard case .tls(_, _, _, _, .v1_2) = try NodeRunner.nodes(in: tls12)[0].security else { Issue.record("expected TLS 1.2 allowed"); return }
    }

    @Test func aMediatorNodeReadsItsKeysAndRefusesOthers() throws {
        let mediator = [
            "nodes.m.kind=mediator", "nodes.m.listen=127.0.0.1:1", "nodes.m.tls.plaintext=true", "nodes.m.domain=domain1::1220ab",
            "nodes.m.signing-key=keys/mediator.pem", "nodes.m.sequencer-key=keys/sequencer.pub", "nodes.m.sequencers.addresses.0=127.0.0.1:4401",
            "nodes.m.sequencers.root-cert=certs/ca.pem",
        ]
        let good = try Configuration.load(file: nil, environment: [:], overrides: mediator)
        #expect(try NodeRunner.nodes(in: good).map(\.kind) == [.mediator])
        let typo = try Configuration.load(file: nil, environment: [:], overrides: mediator + ["nodes.m.sequencer-keys=x"])
        #expect(throws: ConfigurationError.unknownKeys(["nodes.m.sequencer-keys"])) { try NodeRunner.nodes(in: typo) }
        // A domain manager's bootstrap keys are not a mediator's.
        let foreign = try Configuration.load(file: nil, environment: [:], overrides: mediator + ["nodes.m.bootstrap.mediator-key=x"])
        #expect(throws: ConfigurationError.unknownKeys(["nodes.m.bootstrap.mediator-key"])) { try NodeRunner.nodes(in: foreign) }
    }

    /// A list in the file is replaced by one from the environment or `--set` (one
    /// comma-separated value), as any other key of the file is: the node reads the operator's
    /// override, not the file's items.
    @Test func aListFromTheEnvironmentOrSetReplacesTheFilesList() throws {
        let path = try file(
            """
            nodes:
              m:
                kind: mediator
                listen: 127.0.0.1:1
                tls:
                  plaintext: true
                sequencers:
                  addresses:
                    - a.example.com:4401
                    - b.example.com:4401
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        func addresses(_ configuration: Configuration) throws -> [String] {
            try SequencerEndpoints(configuration.section("nodes.m"), key: "sequencers").addresses.map { "\($0.host):\($0.port)" }
        }
        let variable = "WEFT_NODES__M__SEQUENCERS__ADDRESSES"
        let fromFile = try Configuration.load(file: path, environment: [:], overrides: [])
        #expect(try addresses(fromFile) == ["a.example.com:4401", "b.example.com:4401"])
        let fromEnvironment = try Configuration.load(file: path, environment: [variable: "c.example.com:1, d.example.com:2"], overrides: [])
        #expect(try addresses(fromEnvironment) == ["c.example.com:1", "d.example.com:2"])
        #expect(try NodeRunner.nodes(in: fromEnvironment).map(\.kind) == [.mediator])  // the plain key is a known one
        let fromSet = try Configuration.load(
            file: path, environment: [variable: "c.example.com:1"], overrides: ["nodes.m.sequencers.addresses=e.example.com:3"])
        #expect(try addresses(fromSet) == ["e.example.com:3"])
        // A bad address names where it was set: the variable, not the file's first item.
        let bad = try Configuration.load(file: path, environment: [variable: "c.example.com"], overrides: [])
        #expect(throws: ConfigurationError.invalid(
            key: "nodes.m.sequencers.addresses", value: "c.example.com", expected: "host:port", source: .environment(variable))
        ) { try addresses(bad) }
    }

    /// A list key admits its items, not every key that begins with its name: a typo such as
    /// `sequencers.addresses-backup` is reported, not silently ignored.
    @Test func aTypoThatBeginsLikeAListKeyIsAnUnknownKey() throws {
        let mediator = [
            "nodes.m.kind=mediator", "nodes.m.listen=127.0.0.1:1", "nodes.m.tls.plaintext=true", "nodes.m.sequencers.addresses.0=127.0.0.1:4401",
        ]
        #expect(try NodeRunner.nodes(in: try Configuration.load(file: nil, environment: [:], overrides: mediator)).count == 1)
        let typo = try Configuration.load(
            file: nil, environment: [:], overrides: mediator + ["nodes.m.sequencers.addresses-backup=127.0.0.1:4402"])
        #expect(throws: ConfigurationError.unknownKeys(["nodes.m.sequencers.addresses-backup"])) { try NodeRunner.nodes(in: typo) }
    }

    @Test func aParticipantsSessionKeyLifetimeIsReadAndBounded() throws {
        let participant = ["nodes.p.kind=participant", "nodes.p.listen=127.0.0.1:1", "nodes.p.tls.plaintext=true"]
        func configuration(_ extra: [String]) throws -> ParticipantConfiguration {
            try ParticipantDaemon.configuration(try NodeRunner.nodes(in: try Configuration.load(file: nil, environment: [:], overrides: participant + extra))[0])
        }
        #expect(try configuration([]).viewSessionKeyLifetime == .seconds(10))
        #expect(try configuration(["nodes.p.view-session-key-lifetime=0s"]).viewSessionKeyLifetime == .zero)
        #expect(try configuration(["nodes.p.view-session-key-lifetime=1m"]).viewSessionKeyLifetime == .seconds(60))
        #expect(throws: ConfigurationError.invalid(
            key: "nodes.p.view-session-key-lifetime", value: "2h", expected: "a duration of at most 1h (0s: every view's seed wrapped for each recipient)",
            source: .commandLine)) { try configuration(["nodes.p.view-session-key-lifetime=2h"]) }
    }

    @Test func sizesAndDurationsParse() {
        #expect(Configuration.parseBytes("4MiB") == 4 << 20)
        #expect(Configuration.parseBytes("16 KiB") == 16 << 10)
        #expect(Configuration.parseBytes("1000") == 1000)
        #expect(Configuration.parseBytes("-1") == nil)
        #expect(Configuration.parseDuration("250ms") == .milliseconds(250))
        #expect(Configuration.parseDuration("10s") == .seconds(10))
        #expect(Configuration.parseDuration("2m") == .seconds(120))
        #expect(Configuration.parseDuration("500us") == .microseconds(500))
        #expect(Configuration.parseDuration("10") == nil)
        // Past 64 bits: refused, not a trap on overflow.
        #expect(Configuration.parseDuration("9999999999999h") == nil)
        #expect(Configuration.parseBytes("9999999999999GiB") == nil)
    }

    /// A sequencer node's settings with `extra` keys, as `--set` would give them.
    func node(_ extra: [String: String]) throws(ConfigurationError) -> NodeSettings {
        var configuration = Configuration()
        for (key, value) in ["kind": "sequencer", "listen": "127.0.0.1:1", "tls.plaintext": "true"].merging(extra, uniquingKeysWith: { $1 }) {
            configuration.set("nodes.s.\(key)", value)
        }
        return try NodeSettings(name: "s", section: configuration.section("nodes.s"))
    }

    /// Values that parse but would trap the node, close every connection or be changed
    /// silently are refused at start, naming the key and the range to write instead.
    @Test func everyNumberAndDurationOutsideItsRangeIsRefusedNamingTheKey() throws {
        let bad: [(key: String, value: String)] = [
            ("database.max-connections", "0"),  // PostgresDatabase traps on 0
            ("database.max-connections", "-1"),
            ("rpc.idle-timeout", "0s"),  // GOAWAY to every connection at once
            ("rpc.keepalive-interval", "0s"),
            ("rpc.keepalive-timeout", "0s"),  // every connection closed at its first ping
            ("rpc.handshake-timeout", "0s"),
            ("drain-timeout", "9999999999999h"),  // overflowed into a trap
            ("drain-timeout", "2h"),
            ("rpc.stream-window-bytes", "16KiB"),  // was raised to 64 KiB without a word
            ("rpc.max-frame-bytes", "32"),  // left a negative message size
            ("rpc.max-frame-bytes", "8GiB"),  // past the decoder's 4 GiB length prefix
            ("rpc.max-concurrent-streams", "0"),
            ("rpc.max-connections", "0"),
            ("rpc.max-connections-per-address", "0"),  // every connection refused
            ("rpc.max-metadata-bytes", "0"),
        ]
        for (key, value) in bad {
            let error = #expect(throws: ConfigurationError.self, "\(key)=\(value)") { try node([key: value]) }
            guard case .invalid(let named, let shown, let expected, .commandLine)? = error else {
                Issue.record("\(key)=\(value): \(String(describing: error))")
                continue
            }
            #expect(named == "nodes.s.\(key)" && shown == value, "\(named) = \(shown)")
            #expect(expected.contains(" from ") && expected.contains(" to "), "\(key)=\(value): \(expected)")
        }
        #expect(throws: ConfigurationError.invalid(
            key: "nodes.s.database.max-connections", value: "0", expected: "an integer from 1 to 1024, e.g. 8", source: .commandLine)) {
            try node(["database.max-connections": "0"])
        }
        // The bounds themselves are accepted, and off turns the optional timers off.
        let edges = try node([
            "rpc.stream-window-bytes": "64KiB", "rpc.max-frame-bytes": "16KiB", "database.max-connections": "1", "drain-timeout": "0s",
            "rpc.idle-timeout": "off", "rpc.keepalive-interval": "OFF", "rpc.max-connections-per-address": "7",
        ])
        #expect(edges.rpc.maximumConnectionsPerAddress == 7)
        #expect(edges.rpc.streamWindowBytes == 64 << 10 && edges.rpc.maximumFrameBytes == 16 << 10)
        #expect(edges.databaseConnections == 1 && edges.drainTimeout == .zero)
        #expect(edges.rpc.idleTimeout == nil && edges.rpc.keepaliveInterval == nil)
        #expect(throws: ConfigurationError.self) { try node(["rpc.keepalive-timeout": "off"]) }  // no "never" for it
    }

    /// `WEFT_LOG_LEVEL` in any case, `warn` for warning; a name it does not know gets a
    /// warning listing the accepted ones instead of passing for the default.
    @Test func logLevelNamesAreForgivingAndTyposAreReported() {
        #expect(JSONLogHandler.level(named: "WARN") == .warning)
        #expect(JSONLogHandler.level(named: "warn") == .warning)
        #expect(JSONLogHandler.level(named: "Debug") == .debug)
        #expect(JSONLogHandler.level(named: "verbose") == nil)
        #expect(JSONLogHandler.unknownLevelWarning("debug") == nil)
        let warning = JSONLogHandler.unknownLevelWarning("verbose") ?? ""
        #expect(warning.contains("WEFT_LOG_LEVEL=verbose"), "\(warning)")
        #expect(warning.contains("trace, debug, info, notice, warning, error, critical"), "\(warning)")
    }
}
