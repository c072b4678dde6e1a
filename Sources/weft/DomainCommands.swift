import ArgumentParser
import Foundation
import WeftCrypto
import WeftNode
import WeftSequencer
import WeftTopology
import WeftTransport
import WeftWire

/// How console verbs reach a node's API: address, the domain's root
/// certificate, and (for admin APIs with mutual TLS) the operator's certificate.
struct RemoteOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The node's API address.", valueName: "host:port"))
    var remote: String

    @OptionGroup var connection: ConnectionOptions

    /// Whether the connection is without TLS.
    var plaintext: Bool { connection.plaintext }

    /// The trace of this command's calls (`ConnectionOptions.trace`).
    static var trace: TraceContext { ConnectionOptions.trace }

    /// A client of the node at `--remote` (see `ConnectionOptions.connect`).
    func connect(withToken: Bool = true) async throws -> RPCClient {
        try await connection.connect(to: remote, withToken: withToken)
    }
}

/// How to reach a node: TLS roots, client certificate, bearer token. Shared by the verbs that
/// take `--remote` and by `weft call`, whose address is an argument.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .customLong("root-cert"), help: "The domain's root certificate (PEM) the node's certificate chains to.")
    var rootCert: String?

    @Option(help: "Your client certificate (PEM), when the node requires mutual TLS.")
    var cert: String?

    @Option(help: "The key of --cert (PEM).")
    var key: String?

    @Flag(help: "Connect without TLS (only to a node started with --plaintext).")
    var plaintext = false

    @Option(help: "A bearer token (JWT) for a node with auth.* configured (other local users can see it in the process list: prefer --token-file or WEFT_TOKEN).")
    var token: String?

    @Option(name: .customLong("token-file"), help: "A file holding the bearer token (JWT), e.g. from your identity provider. Without either option: environment variable WEFT_TOKEN.")
    var tokenFile: String?

    func validate() throws {
        guard plaintext || rootCert != nil else { throw ValidationError("give --root-cert (the domain's ca.pem), or --plaintext for a node started with --plaintext") }
        guard (cert == nil) == (key == nil) else { throw ValidationError("--cert and --key go together") }
        guard token == nil || tokenFile == nil else { throw ValidationError("give --token or --token-file, not both") }
    }

    /// The bearer token to send: --token, --token-file, or WEFT_TOKEN.
    func bearerToken() throws -> String? {
        if let token { return token }
        if let tokenFile {
            guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else { throw ValidationError("cannot read the token file \(tokenFile)") }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return ProcessInfo.processInfo.environment["WEFT_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The trace of this command's calls: the caller's (`TRACEPARENT`, as OpenTelemetry tools
    /// pass it to a child process) or a new one; `--output json` of `weft submit` prints its id,
    /// to follow the transaction through the nodes' logs.
    static let trace: TraceContext = ProcessInfo.processInfo.environment["TRACEPARENT"]
        .flatMap(TraceContext.init(traceparent:))?.childSpan() ?? .newTrace()

    /// A client of the node that sends the bearer token, if any, with every call. A client of a
    /// sequencer's member service passes `withToken: false`: members authenticate there with
    /// a session token of their own in the same `authorization` metadata.
    func connect(to remote: String, withToken: Bool = true) async throws -> RPCClient {
        guard let colon = remote.lastIndex(of: ":"), let port = Int(remote[remote.index(after: colon)...]) else {
            throw ValidationError("\(remote): expected the node's address as host:port")
        }
        let host = String(remote[..<colon])
        let token = withToken ? try bearerToken() : nil
        var metadata: [Weft.V1.MetadataEntry] = token.map { [.init(key: "authorization", value: .textValue("Bearer \($0)"))] } ?? []
        metadata.append(.init(key: "traceparent", value: .textValue(Self.trace.traceparent)))
        let security: RPCSecurity = try plaintext ? .plaintext : .tls(tlsContext(serverHostname: host))
        do {
            return try await RPCClient.connect(host: host, port: port, security: security).withMetadata(metadata)
        } catch let error as RPCError {
            throw error
        } catch {
            // NIO's own error (refused, no route, unknown host) is an RPC failure to the verbs,
            // which report those with their id and exit code 1.
            throw RPCError(
                .unavailable,
                "cannot connect to \(host):\(port): \(error); check that the node runs and listens there (weft health status)",
                errorID: "RPC_CONNECTION_FAILED")
        }
    }

    /// The client's TLS context from --root-cert and --cert/--key. A file that cannot be read
    /// or used is a mistake in the command line, reported as such with the option that named it.
    private func tlsContext(serverHostname host: String) throws -> TLSContext {
        guard let rootCert else {
            throw ValidationError("give --root-cert (the domain's ca.pem), or --plaintext for a node started with --plaintext")
        }
        let roots: String
        do {
            roots = try String(contentsOfFile: rootCert, encoding: .utf8)
        } catch {
            throw ValidationError("cannot read --root-cert \(rootCert): \(error.localizedDescription); give the domain's root certificate (ca.pem)")
        }
        var credentials: TLSCredentials?
        if let cert, let key {
            do {
                credentials = try TLSCredentials.read(certificateAt: cert, keyAt: key)
            } catch {
                throw ValidationError("cannot read --cert \(cert) or --key \(key): \(error)")
            }
        }
        do {
            return try TLSContext(.init(role: .client(serverHostname: host), credentials: credentials, trustRootsPEM: roots))
        } catch {
            let files = "--root-cert \(rootCert)" + (cert.map { ", --cert \($0) and --key \(key ?? "")" } ?? "")
            throw ValidationError("cannot use \(files): \(error)")
        }
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Prints `object` as one line of JSON.
func printJSON(_ object: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

/// `weft keys`: node keys on disk.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", abstract: "Create node keys.", subcommands: [Generate.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a private key FILE (PKCS#8 PEM, mode 0600) and its public key FILE.pub.")

        enum Kind: String, ExpressibleByArgument, CaseIterable { case signing, encryption }

        @Option(help: "Where to write the private key; the public key goes to the same path + .pub.")
        var out: String

        @Option(help: "signing (Ed25519: namespaces, members) or encryption (X25519: participants, mediators).")
        var kind: Kind = .signing

        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() throws {
            let fingerprint: String
            switch kind {
            case .signing:
                let key = try SigningPrivateKey.generate()
                try KeyFile.write(key, to: out)
                try PublicKeyFile.write(PublicKeyFile.line(key.publicKey), to: out + ".pub")
                fingerprint = key.publicKey.fingerprint.description
            case .encryption:
                let key = try EncryptionPrivateKey.generate()
                try KeyFile.write(key, to: out)
                try PublicKeyFile.write(PublicKeyFile.line(key.publicKey), to: out + ".pub")
                fingerprint = key.publicKey.fingerprint.description
            }
            switch output {
            case .text: print("wrote \(out) and \(out).pub (fingerprint \(fingerprint))")
            case .json:
                try printJSON(["private_key_file": out, "public_key_file": out + ".pub", "kind": kind.rawValue, "fingerprint": fingerprint])
            }
        }
    }
}

/// `weft domain-manager …`: the domain owner's console (the seed's `domainManager1.…`).
struct DomainManagerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "domain-manager", abstract: "Administer a domain through its domain manager.",
        subcommands: [SetState.self, Members.self, Parameters.self])

    struct SetState: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-state", abstract: "Allow-list a participant, change its permission or trust, or disable it.")

        enum Permission: String, ExpressibleByArgument, CaseIterable { case submission, confirmation, observation, disabled }
        enum Trust: String, ExpressibleByArgument, CaseIterable { case ordinary, vip }

        @Argument(help: "The participant id, as `weft participant id` prints it (participant1::1220…).")
        var participant: String

        @Option(help: "What the participant may do.")
        var permission: Permission

        @Option(help: "Its trust level: vip participants can confirm alone where the confirmation policy says so. Without it, the participant keeps its level (ordinary for a new one).")
        var trust: Trust?

        @OptionGroup var remote: RemoteOptions
        @Option var output: OutputFormat = .text

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let wirePermission: Weft.V1.ParticipantPermission =
                switch permission {
                case .submission: .submission
                case .confirmation: .confirmation
                case .observation: .observation
                case .disabled: .disabled
                }
            let response = try await client.domainManagerAdministration.setParticipantState(
                .init(participant: participant, permission: wirePermission, trustLevel: trust.map { $0 == .vip ? .vip : .ordinary } ?? .unspecified))
            let at = response.effectiveAt?.microsSinceEpoch ?? 0
            // The level in force now: the one given, or the one it kept.
            let level = try await client.domainManagerAdministration.listMembers(.init()).members
                .first { $0.member == "PAR::" + participant }?.trustLevel
            let trustText = level == .vip ? "vip" : "ordinary"
            switch output {
            case .text: print("\(participant): \(permission.rawValue), \(trustText), in effect after \(SequencingTimestamp(microsSinceEpoch: at))")
            case .json: try printJSON(["participant": participant, "permission": permission.rawValue, "trust": trustText, "effective_at_micros": at])
            }
        }
    }

    struct Members: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the domain's members and participants' permissions.")
        @OptionGroup var remote: RemoteOptions
        @Option var output: OutputFormat = .text

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let members = try await client.domainManagerAdministration.listMembers(.init()).members
            switch output {
            case .text:
                for member in members {
                    let permission = member.role == .participant ? " \(member.permission) \(member.trustLevel)" : ""
                    print("\(member.member)\(permission)\(member.registered ? "" : " (keys not registered yet)")")
                }
            case .json:
                try printJSON(members.map { member in
                    ["member": member.member, "role": "\(member.role)", "permission": "\(member.permission)", "trust": "\(member.trustLevel)", "registered": member.registered] as [String: Any]
                })
            }
        }
    }
}

extension DomainManagerCommand {
    struct Parameters: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the domain parameters, or change some of them (each --set is signed and broadcast to all members).")

        @OptionGroup var remote: RemoteOptions
        @Option var output: OutputFormat = .text
        @Option(name: .customLong("set"), help: ArgumentHelp(
            "Change a parameter: participant-response-timeout, reconciliation-interval, ledger-time-record-time-tolerance, mediator-deduplication-timeout (stored, not used yet), authentication-token-lifetime, mediator-reaction-timeout (durations, e.g. 30s) or max-request-size (bytes).",
            valueName: "name=value"))
        var changes: [String] = []

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            var parameters = try await client.domainManagerAdministration.getDomainParameters(.init()).parameters ?? .init()
            if !changes.isEmpty {
                for change in changes {
                    let parts = change.split(separator: "=", maxSplits: 1).map(String.init)
                    guard parts.count == 2 else { throw ValidationError("--set \(change): expected name=value") }
                    let micros = Configuration.parseDuration(parts[1]).map { Int64($0.components.seconds) * 1_000_000 + $0.components.attoseconds / 1_000_000_000_000 }
                    func duration() throws -> Weft.V1.Duration {
                        guard let micros, micros > 0 else { throw ValidationError("--set \(change): expected a positive duration such as 30s") }
                        return .init(micros: micros)
                    }
                    switch parts[0] {
                    case "participant-response-timeout": parameters.participantResponseTimeout = try duration()
                    case "reconciliation-interval": parameters.reconciliationInterval = try duration()
                    case "ledger-time-record-time-tolerance": parameters.ledgerTimeRecordTimeTolerance = try duration()
                    case "mediator-deduplication-timeout": parameters.mediatorDeduplicationTimeout = try duration()
                    case "authentication-token-lifetime": parameters.authenticationTokenLifetime = try duration()
                    case "mediator-reaction-timeout": parameters.mediatorReactionTimeout = try duration()
                    case "max-request-size":
                        guard let bytes = Configuration.parseBytes(parts[1]), bytes > 0, bytes <= Int(UInt32.max) else { throw ValidationError("--set \(change): expected a size") }
                        parameters.maxRequestSizeBytes = UInt32(bytes)
                    default: throw ValidationError("--set \(change): unknown parameter \(parts[0])")
                    }
                }
                _ = try await client.domainManagerAdministration.setDomainParameters(.init(parameters: parameters))
            }
            let fields: [(String, Any)] = [
                ("participant-response-timeout-micros", parameters.participantResponseTimeout?.micros ?? 0),
                ("reconciliation-interval-micros", parameters.reconciliationInterval?.micros ?? 0),
                ("max-request-size-bytes", parameters.maxRequestSizeBytes),
                ("ledger-time-record-time-tolerance-micros", parameters.ledgerTimeRecordTimeTolerance?.micros ?? 0),
                ("mediator-deduplication-timeout-micros", parameters.mediatorDeduplicationTimeout?.micros ?? 0),
                ("authentication-token-lifetime-micros", parameters.authenticationTokenLifetime?.micros ?? 0),
                // 0: unset, no decision time (a domain created before the parameter existed).
                ("mediator-reaction-timeout-micros", parameters.mediatorReactionTimeout?.micros ?? 0),
            ]
            switch output {
            case .text: for (name, value) in fields { print("\(name): \(value)") }
            case .json: try printJSON(Dictionary(uniqueKeysWithValues: fields))
            }
        }
    }
}

/// `weft participant …`: a participant operator's console.
struct ParticipantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "participant", abstract: "A participant's identity and domain connections.", subcommands: [Identity.self, ConnectMulti.self, Domains.self])

    /// A participant's keys, from its configuration: created on first use.
    /// The participant node's keys (`ParticipantKeys`), found by node name.
    enum Keys {
        static func load(_ options: ConfigurationOptions, node: String?) throws -> ParticipantKeys {
            let configuration = try options.load()
            let names = configuration.children(of: "nodes").filter { configuration.string("nodes.\($0).kind") == "participant" }
            guard let name = node ?? (names.count == 1 ? names[0] : nil) else {
                throw ValidationError("name the participant node with --node (the configuration has \(names.count) participant nodes)")
            }
            return try ParticipantKeys.load(node: name, section: configuration.section("nodes.\(name)"))
        }
    }

    struct Identity: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "id", abstract: "Print the participant's id (creating its keys on first use), to give to the domain operator.")
        @OptionGroup var options: ConfigurationOptions
        @Option(help: "The participant node (nodes.<name>); default: the only one.")
        var node: String?

        @Option(help: "text or json.") var output: OutputFormat = .text

        func run() throws {
            let keys = try Keys.load(options, node: node)
            let id = try keys.id
            switch output {
            case .text: print(id)
            case .json:
                try printJSON([
                    "participant": id.description, "namespace_fingerprint": keys.namespace.publicKey.fingerprint.description,
                    "signing_fingerprint": keys.signing.publicKey.fingerprint.description,
                    "encryption_fingerprint": keys.encryption.publicKey.fingerprint.description,
                ])
            }
        }
    }

    struct ConnectMulti: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "connect-multi",
            abstract: "Connect the participant to a domain through its sequencers (the seed's connect_multi).",
            discussion: """
                The domain operator must have allow-listed the participant first (weft domain-manager set-state).
                With --remote, the running participant node connects, keeps the connection in its database and
                processes the domain's stream from then on (and after restarts). Without it, the participant's
                identity is registered from here (its keys from -c) and authentication is checked at each sequencer.
                """)

        @Argument(help: "A local name for the domain, e.g. mydomain.")
        var alias: String
        @Argument(help: ArgumentHelp("The domain's sequencers.", valueName: "host:port"))
        var sequencers: [String]
        @Option(name: .customLong("root-cert"), help: "The domain's root certificate (the provider's ca.pem).")
        var rootCert: String?
        @Flag(help: "Connect without TLS (only to sequencers started with --plaintext).")
        var plaintext = false
        @OptionGroup var options: ConfigurationOptions
        @Option(help: "The participant node (nodes.<name>); default: the only one.")
        var node: String?
        @Option(help: ArgumentHelp("The running participant node's API address: it makes and keeps the connection.", valueName: "host:port"))
        var remote: String?
        @Option(name: .customLong("remote-root-cert"), help: "The root certificate of the participant node's TLS certificate (default: --root-cert).")
        var remoteRootCert: String?
        @Flag(name: .customLong("remote-plaintext"), help: "Reach the participant node without TLS (a node started with --plaintext).")
        var remotePlaintext = false
        @Option(help: "A bearer token with the admin claim for the participant node (--remote); default: WEFT_TOKEN.")
        var token: String?
        @Option(name: .customLong("token-file"), help: "A file holding that token.")
        var tokenFile: String?
        @Flag(help: "Connect without processing the domain's stream, to import the peers' snapshots first (weft repair import-acs); needs --remote.")
        var repair = false
        @Option var output: OutputFormat = .text

        func validate() throws {
            guard !repair || remote != nil else {
                throw ValidationError("--repair holds a running participant node for its repair: give its API address with --remote")
            }
        }

        func run() async throws {
            if let remote { return try await connectRemotely(remote) }
            let keys = try Keys.load(options, node: node)
            let id = try keys.id
            let member = MemberID(role: .participant, identifier: id)
            var connected: [[String: Any]] = []
            for sequencer in sequencers {
                let client = try await RemoteOptions.parse(["--remote", sequencer] + (rootCert.map { ["--root-cert", $0] } ?? []) + (plaintext ? ["--plaintext"] : []))
                    .connect(withToken: false)
                defer { Task { await client.close() } }
                let info = try await client.sequencer.getDomainInfo(.init())
                let domain = try UniqueIdentifier(parsing: info.domain)
                let identity = try SignedTopologyTransaction.participantIdentity(
                    id, namespaceKey: keys.namespace, signingKey: keys.signing.publicKey, encryptionKey: keys.encryption.publicKey, domain: domain
                ).map(\.wire)
                _ = try await client.sequencer.onboard(.init(participant: id.description, identity: identity))
                _ = try await SequencerClient.authenticate(client, member: member.description, key: keys.signing, domain: info.domain, sequencerKeys: [])
                connected.append(["sequencer": sequencer, "domain": info.domain])
                if output == .text { print("\(member) is a member of \(info.domain) (\(alias)) and authenticated at \(sequencer)") }
            }
            if output == .json { try printJSON(["participant": member.description, "alias": alias, "connections": connected]) }
        }

        /// Asks the participant node to connect (`ParticipantAdministrationService/ConnectDomain`).
        func connectRemotely(_ remote: String) async throws {
            let nodeRoot = remoteRootCert ?? rootCert
            let client = try await RemoteOptions.parse(
                ["--remote", remote] + (nodeRoot.map { ["--root-cert", $0] } ?? []) + (remotePlaintext ? ["--plaintext"] : [])
                    + (token.map { ["--token", $0] } ?? []) + (tokenFile.map { ["--token-file", $0] } ?? [])
            ).connect()
            defer { Task { await client.close() } }
            let rootPEM = try rootCert.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? ""
            let urls = sequencers.map { plaintext ? "http://\($0)" : "https://\($0)" }
            let participant = try await client.participantAdministration.getParticipantID(.init()).participant
            let response = try await client.participantAdministration.connectDomain(
                .init(alias: alias, sequencerURLs: urls, rootCertificatePem: rootPEM, repair: repair), timeout: .seconds(120))
            switch output {
            case .json:
                try printJSON(
                    ["participant": participant, "alias": alias, "domain": response.domain, "sequencers": urls, "held_for_repair": repair] as [String: Any])
            case .text:
                print("\(participant) is connected to \(response.domain) (\(alias)) through \(urls.joined(separator: ", "))")
                if repair {
                    print("held for repair: import the peers' snapshots with weft repair import-acs FILE… --remote \(remote)")
                }
            }
        }
    }

    struct Domains: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "domains", abstract: "List the running participant node's domain connections.")
        @OptionGroup var remote: RemoteOptions
        @Option var output: OutputFormat = .text

        func run() async throws {
            let client = try await remote.connect()
            defer { Task { await client.close() } }
            let connections = try await client.participantAdministration.listDomainConnections(.init()).connections
            switch output {
            case .json:
                try printJSON(
                    connections.map {
                        [
                            "alias": $0.alias, "domain": $0.domain, "sequencers": $0.sequencerURLs, "connected": $0.connected,
                            "held_for_repair": $0.heldForRepair,
                        ] as [String: Any]
                    })
            case .text:
                if connections.isEmpty { print("no domain connections; connect with weft participant connect-multi … --remote \(remote.remote)") }
                for connection in connections {
                    let state = connection.heldForRepair
                        ? "held for repair: import the peers' snapshots with weft repair import-acs"
                        : connection.connected ? "connected" : "not connected"
                    print("\(connection.alias): \(connection.domain) via \(connection.sequencerURLs.joined(separator: ", ")) (\(state))")
                }
            }
        }
    }
}
