import ArgumentParser
import Foundation
import WeftTransport
import WeftWire

extension RepairCommand {
    /// `weft repair migrate-domain OLD NEW host:port…`: docs/operator-guide.md §7.3.
    struct MigrateDomain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "migrate-domain",
            abstract: "Move the participant from a domain whose sequencer backend was lost to a new domain.",
            discussion: """
                The new domain's owner must have allow-listed the participant (weft domain-manager set-state). \
                The running participant node (--remote) is onboarded on the new domain, replaces the \
                connection OLD by NEW, keeps its active contracts and ledger (offsets continue), rejects \
                the requests and commands the old domain had not decided (PARTICIPANT_DOMAIN_MIGRATED), \
                hosts its parties on the new domain and processes the new domain's stream. Run it for \
                every participant of the old domain; if it fails half-way, run it again \
                (docs/operator-guide.md §7.3).
                """)

        @Argument(help: "The alias of the domain connection to leave.")
        var old: String
        @Argument(help: "An alias for the new domain's connection.")
        var new: String
        @Argument(help: ArgumentHelp("The new domain's sequencers.", valueName: "host:port"))
        var sequencers: [String]
        @Option(name: .customLong("root-cert"), help: "The new domain's root certificate (its provider's ca.pem).")
        var rootCert: String?
        @Flag(help: "Reach the new domain's sequencers without TLS (only sequencers started with --plaintext).")
        var plaintext = false
        @Option(help: ArgumentHelp("The running participant node's API address.", valueName: "host:port"))
        var remote: String
        @Option(name: .customLong("remote-root-cert"), help: "The root certificate of the participant node's TLS certificate.")
        var remoteRootCert: String?
        @Flag(name: .customLong("remote-plaintext"), help: "Reach the participant node without TLS (a node started with --plaintext).")
        var remotePlaintext = false
        @Option(help: "A bearer token with the admin claim for the participant node; default: WEFT_TOKEN.")
        var token: String?
        @Option(name: .customLong("token-file"), help: "A file holding that token.")
        var tokenFile: String?
        @Option var output: OutputFormat = .text

        func validate() throws {
            guard old != new else { throw ValidationError("give the new domain's connection an alias of its own (not \(old))") }
            guard plaintext || rootCert != nil else {
                throw ValidationError("give the new domain's root certificate (--root-cert ca.pem), or --plaintext")
            }
        }

        func run() async throws {
            let client = try await RemoteOptions.parse(
                ["--remote", remote] + (remoteRootCert.map { ["--root-cert", $0] } ?? []) + (remotePlaintext ? ["--plaintext"] : [])
                    + (token.map { ["--token", $0] } ?? []) + (tokenFile.map { ["--token-file", $0] } ?? [])
            ).connect()
            defer { Task { await client.close() } }
            let rootPEM = try rootCert.map { try String(contentsOfFile: $0, encoding: .utf8) } ?? ""
            let urls = sequencers.map { plaintext ? "http://\($0)" : "https://\($0)" }
            let result = try await client.participantAdministration.migrateDomain(
                .init(fromAlias: old, toAlias: new, sequencerURLs: urls, rootCertificatePem: rootPEM), timeout: .seconds(300))
            switch output {
            case .json:
                try printJSON(
                    [
                        "from_domain": result.fromDomain, "to_domain": result.toDomain, "alias": new,
                        "active_contracts": result.activeContracts, "ledger_end": result.ledgerEnd,
                        "requests_abandoned": result.requestsAbandoned, "commands_rejected": result.commandsRejected,
                        "parties": result.parties, "parties_not_hosted": result.partiesNotHosted, "resumed": result.resumed,
                    ] as [String: Any])
            case .text:
                print("migrated from \(result.fromDomain) to \(result.toDomain) (\(new))" + (result.resumed ? ", finishing an earlier call" : ""))
                print("active contracts: \(result.activeContracts), ledger end: \(result.ledgerEnd)")
                print("rejected as PARTICIPANT_DOMAIN_MIGRATED: \(result.requestsAbandoned) requests, \(result.commandsRejected) commands")
                print("parties hosted on the new domain: \(result.parties.isEmpty ? "none" : result.parties.joined(separator: ", "))")
                if !result.partiesNotHosted.isEmpty {
                    print("not hosted (other namespaces; their owners must host them): \(result.partiesNotHosted.joined(separator: ", "))")
                }
            }
        }
    }
}
