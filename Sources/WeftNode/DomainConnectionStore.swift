import WeftCrypto
import WeftStore
import WeftWire

/// A participant's domain connection as its operator made it (`connect-multi`):
/// kept in the participant's database so that the node reconnects after a
/// restart without being told again.
struct DomainConnectionSettings: Sendable, Equatable {
    var alias: String
    var domain: String
    /// As given: `https://host:port`, `host:port` (TLS), or `http://host:port` (plaintext).
    var sequencerURLs: [String]
    /// The domain's root certificate the sequencers' TLS certificates chain to.
    var rootCertificatePEM: String
    /// The sequencers' signing keys, pinned at connect (`GetDomainInfo` over TLS) and checked
    /// against the topology the participant is sent.
    var sequencerKeys: [SigningPublicKey]
    /// Connected for repair (`connect-multi --repair`): the node does not process the domain's
    /// stream until its peers' snapshots are imported; kept so that a restart before the
    /// import stays held, cleared when the import finished.
    var heldForRepair = false
}

/// The table behind `DomainConnectionSettings` (component `participant-domains`).
struct DomainConnectionStore: Sendable {
    static let migrator = Migrator(component: "participant-domains", migrations: [
        Migration(
            1, "create participant_domain_connections",
            """
            CREATE TABLE participant_domain_connections (
                participant    text   NOT NULL,
                alias          text   NOT NULL,
                domain         text   NOT NULL,
                sequencer_urls text[] NOT NULL,
                root_cert_pem  text   NOT NULL,
                sequencer_keys bytea  NOT NULL,
                PRIMARY KEY (participant, alias)
            );
            COMMENT ON TABLE participant_domain_connections IS
                'Domains a participant node connects to at start (weft participant connect-multi); sequencer_keys is a serialized weft.v1.GetDomainInfoResponse holding the pinned keys.';
            """),
        Migration(
            2, "add participant_domain_connections.held_for_repair",
            """
            ALTER TABLE participant_domain_connections ADD COLUMN held_for_repair boolean NOT NULL DEFAULT false;
            COMMENT ON COLUMN participant_domain_connections.held_for_repair IS
                'Connected for repair (weft participant connect-multi --repair): the stream is not processed until weft repair import-acs finished.';
            """),
    ])

    let database: PostgresDatabase
    let participant: String

    func load() async throws -> [DomainConnectionSettings] {
        let rows = try await database.withConnection { connection in
            try connection.execute(
                "SELECT alias, domain, array_to_string(sequencer_urls, E'\\n'), root_cert_pem, sequencer_keys, held_for_repair FROM participant_domain_connections WHERE participant = $1 ORDER BY alias",
                [.text(participant)]
            ).rows
        }
        return try rows.map { row in
            let keys = try Weft.V1.GetDomainInfoResponse(serializedBytes: try row[4].bytes ?? [])
            return DomainConnectionSettings(
                alias: try row[0].string ?? "", domain: try row[1].string ?? "",
                sequencerURLs: (try row[2].string ?? "").split(separator: "\n").map(String.init), rootCertificatePEM: try row[3].string ?? "",
                sequencerKeys: try keys.sequencerKeys.map { try SigningPublicKey($0) }, heldForRepair: try row[5].bool ?? false)
        }
    }

    func save(_ settings: DomainConnectionSettings) async throws {
        try await database.withConnection { try Self.save(settings, participant: participant, on: $0) }
    }

    /// The repair import finished: the node processes the domain's stream from now on, also
    /// after a restart.
    func releaseFromRepair(alias: String) async throws {
        _ = try await database.withConnection { connection in
            try connection.execute(
                "UPDATE participant_domain_connections SET held_for_repair = false WHERE participant = $1 AND alias = $2",
                [.text(participant), .text(alias)])
        }
    }

    func remove(alias: String) async throws {
        try await database.withConnection { try Self.remove(alias: alias, participant: participant, on: $0) }
    }

    /// `save` inside the caller's transaction (a domain migration swaps connections atomically).
    static func save(_ settings: DomainConnectionSettings, participant: String, on connection: PostgresConnection) throws {
        let keys = Weft.V1.GetDomainInfoResponse(domain: settings.domain, sequencerKeys: settings.sequencerKeys.map { $0.wire() })
        _ = try connection.execute(
            """
            INSERT INTO participant_domain_connections (participant, alias, domain, sequencer_urls, root_cert_pem, sequencer_keys, held_for_repair)
            VALUES ($1, $2, $3, string_to_array($4, E'\\n'), $5, $6, $7)
            ON CONFLICT (participant, alias) DO UPDATE
            SET domain = EXCLUDED.domain, sequencer_urls = EXCLUDED.sequencer_urls, root_cert_pem = EXCLUDED.root_cert_pem,
                sequencer_keys = EXCLUDED.sequencer_keys, held_for_repair = EXCLUDED.held_for_repair
            """,
            [.text(participant), .text(settings.alias), .text(settings.domain), .text(settings.sequencerURLs.joined(separator: "\n")),
             .text(settings.rootCertificatePEM), .bytes(try keys.serializedBytes()), .text(settings.heldForRepair ? "true" : "false")])
    }

    /// `remove` inside the caller's transaction.
    static func remove(alias: String, participant: String, on connection: PostgresConnection) throws {
        _ = try connection.execute(
            "DELETE FROM participant_domain_connections WHERE participant = $1 AND alias = $2", [.text(participant), .text(alias)])
    }
}
