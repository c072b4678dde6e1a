import Foundation
import Logging
import NIOCore
import WeftCrypto
import WeftStore
public import WeftTransport

/// What every node kind reads from its configuration section
/// (`nodes.<name>.*`; docs/operations.md lists the keys).
public struct NodeSettings: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case sequencer
        case domainManager = "domain-manager"
        case mediator
        case participant
    }

    public let name: String
    public let kind: Kind
    /// `host:port` the node's RPC server listens on.
    public let listenHost: String
    public let listenPort: Int
    public let security: Security
    public let rpc: RPCConfiguration
    /// libpq URL; empty means the `PG*` environment variables.
    public let databaseURL: String
    public let databaseConnections: Int
    /// Apply pending migrations at start instead of refusing to start.
    public let migrate: Bool
    /// Time to let open calls finish on SIGTERM.
    public let drainTimeout: Duration
    /// Where `/metrics` and `/health` are served over plain HTTP (`metrics.listen`,
    /// host:port); nil when the node serves none.
    public let metricsListen: (host: String, port: Int)?
    /// The rest of the node's section, for the kind's own keys.
    public let section: Configuration

    /// The TLS settings, or plaintext when explicitly asked for.
    public enum Security: Sendable {
        case tls(certificate: String, key: String, clientRoots: String?, keyLog: String?, minimumVersion: TLSVersion)
        case plaintext
    }

    /// Keys every node understands (beyond them, each kind lists its own).
    static let commonKeys: Set<String> = [
        "kind", "listen", "tls.certificate", "tls.key", "tls.client-roots", "tls.keylog", "tls.plaintext", "tls.minimum-version",
        "database.url", "database.max-connections", "database.migrate", "drain-timeout", "metrics.listen",
        "rpc.max-frame-bytes", "rpc.max-concurrent-streams", "rpc.max-connections", "rpc.max-connections-per-address", "rpc.max-metadata-bytes", "rpc.stream-window-bytes",
        "rpc.handshake-timeout", "rpc.idle-timeout", "rpc.keepalive-interval", "rpc.keepalive-timeout",
    ]

    public init(name: String, section: Configuration, migrateOverride: Bool = false) throws(ConfigurationError) {
        self.name = name
        self.section = section
        let kindText = try section.required("kind")
        guard let kind = Kind(rawValue: kindText) else { throw .unknownNodeKind(node: name, kind: kindText) }
        self.kind = kind
        (listenHost, listenPort) = try Self.address(section, "listen", example: "127.0.0.1:4401")
        metricsListen = section.string("metrics.listen") == nil ? nil : try Self.address(section, "metrics.listen", example: "127.0.0.1:9401")
        if try section.bool("tls.plaintext", default: false) {
            security = .plaintext
        } else {
            let versionText = section.string("tls.minimum-version", default: "1.3")
            let version: TLSVersion
            switch versionText {
            case "1.3": version = .v1_3
            case "1.2": version = .v1_2
            default:
                throw .invalid(key: section.fullKey("tls.minimum-version"), value: versionText, expected: "1.3 (default) or 1.2", source: section.source(of: "tls.minimum-version") ?? .defaultValue)
            }
            security = .tls(
                certificate: try section.required("tls.certificate"), key: try section.required("tls.key"),
                clientRoots: section.string("tls.client-roots"), keyLog: section.string("tls.keylog"), minimumVersion: version)
        }
        var rpc = RPCConfiguration()
        rpc.maximumFrameBytes = try section.bytes("rpc.max-frame-bytes", default: rpc.maximumFrameBytes, in: Limits.frameBytes)
        rpc.maximumConcurrentStreams = try section.int("rpc.max-concurrent-streams", default: rpc.maximumConcurrentStreams, in: Limits.concurrentStreams)
        rpc.maximumConnections = try section.int("rpc.max-connections", default: rpc.maximumConnections, in: Limits.connections)
        rpc.maximumConnectionsPerAddress = try section.int(
            "rpc.max-connections-per-address", default: rpc.maximumConnectionsPerAddress, in: Limits.connections)
        rpc.maximumMetadataBytes = try section.bytes("rpc.max-metadata-bytes", default: rpc.maximumMetadataBytes, in: Limits.metadataBytes)
        rpc.streamWindowBytes = try section.bytes("rpc.stream-window-bytes", default: rpc.streamWindowBytes, in: Limits.streamWindowBytes)
        rpc.handshakeTimeout = TimeAmount(try section.duration("rpc.handshake-timeout", default: .seconds(10), in: Limits.handshakeTimeout))
        rpc.idleTimeout = try section.durationOrOff("rpc.idle-timeout", default: .seconds(300), in: Limits.idleTimeout).map { TimeAmount($0) }
        rpc.keepaliveInterval = try section.durationOrOff("rpc.keepalive-interval", default: .seconds(30), in: Limits.keepaliveInterval)
            .map { TimeAmount($0) }
        rpc.keepaliveTimeout = TimeAmount(try section.duration("rpc.keepalive-timeout", default: .seconds(10), in: Limits.keepaliveTimeout))
        self.rpc = rpc
        databaseURL = section.string("database.url", default: "")
        databaseConnections = try section.int("database.max-connections", default: 8, in: Limits.databaseConnections)
        let configuredMigrate = try section.bool("database.migrate", default: false)
        migrate = migrateOverride || configuredMigrate
        drainTimeout = try section.duration("drain-timeout", default: .seconds(10), in: Limits.drainTimeout)
        try checkKeys(kindKeys: Self.kindKeys[kind] ?? [])
    }

    /// What each numeric key accepts (docs/operations.md §1 lists the same). A value outside
    /// is refused at start: below, the node traps (0 database connections), closes every
    /// connection at once (a 0 s idle or keepalive timeout) or cannot carry a message (a frame
    /// smaller than its own header); above, a duration overflows when turned into nanoseconds
    /// and a count or size asks for more threads or memory than a machine has.
    enum Limits {
        /// A frame's own fields take up to 32 bytes and a call's metadata up to 16 KiB by
        /// default; the decoder takes at most 4 GiB (its length prefix), and a frame is
        /// buffered whole before it is decoded.
        static let frameBytes = (16 << 10)...(1 << 30)
        static let concurrentStreams = 1...10_000
        static let connections = 1...1_000_000
        static let metadataBytes = (1 << 10)...(1 << 20)
        /// Every stream starts with a 64 KiB window (FlowControl.initialWindowBytes): a
        /// smaller receive window cannot be granted.
        static let streamWindowBytes = FlowControl.initialWindowBytes...(1 << 30)
        static let handshakeTimeout = Duration.milliseconds(100)...Duration.seconds(300)
        static let idleTimeout = Duration.seconds(1)...Duration.seconds(24 * 3600)
        static let keepaliveInterval = Duration.seconds(1)...Duration.seconds(24 * 3600)
        static let keepaliveTimeout = Duration.seconds(1)...Duration.seconds(3600)
        /// PostgresDatabase starts one thread per connection, at once.
        static let databaseConnections = 1...1024
        static let drainTimeout = Duration.zero...Duration.seconds(3600)
    }

    /// A `host:port` value of `key`.
    private static func address(_ section: Configuration, _ key: String, example: String) throws(ConfigurationError) -> (host: String, port: Int) {
        let text = try section.required(key)
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw .invalid(key: section.fullKey(key), value: text, expected: "host:port, e.g. \(example)", source: section.source(of: key) ?? .defaultValue)
        }
        return (String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }

    /// Keys each kind reads beyond the common ones.
    static let kindKeys: [Kind: Set<String>] = [
        .sequencer: Set(["sequencer-node", "heartbeat-interval", "offline-after", "group-commit-spacing", "honor-omit-receipt", "domain", "signing-key"]).union(NodeAccess.keys),
        .participant: Set(["name", "namespace-key", "signing-key", "encryption-key", "view-session-key-lifetime"]).union(NodeAccess.keys),
        .mediator: ["domain", "signing-key", "sequencer-key", "sequencers.root-cert"],
        .domainManager: Set([
            "domain", "namespace-key", "signing-key", "sequencers.root-cert", "sequencers.token-file", "bootstrap.sequencer-key",
            "bootstrap.mediator-key", "bootstrap.mediator-encryption-key",
        ]).union(NodeAccess.keys),
    ]

    /// Refuses keys neither common nor the kind's own (`kindKeys`).
    func checkKeys(kindKeys: Set<String>) throws(ConfigurationError) {
        let unknown = section.unknownKeys(known: Self.commonKeys.union(kindKeys), knownPrefixes: [.domainManager, .mediator].contains(kind) ? ["sequencers.addresses"] : [])
        guard unknown.isEmpty else { throw .unknownKeys(unknown.map { section.fullKey($0) }) }
    }

    /// The server side of this node's TLS (or plaintext).
    func serverSecurity() throws -> RPCSecurity {
        switch security {
        case .plaintext:
            return .plaintext
        case .tls(let certificate, let key, let clientRoots, let keyLog, let minimumVersion):
            let credentials = try TLSCredentials.read(certificateAt: certificate, keyAt: key)
            var configuration = TLSConfiguration(
                role: .server(requireClientCertificate: clientRoots != nil), credentials: credentials,
                trustRootsPEM: try clientRoots.map { try String(contentsOfFile: $0, encoding: .utf8) }, keyLogPath: keyLog)
            configuration.minimumVersion = minimumVersion
            return .tls(try TLSContext(configuration))
        }
    }
}
