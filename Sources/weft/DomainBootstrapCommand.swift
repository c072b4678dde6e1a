import ArgumentParser
import Foundation
import WeftCrypto
import WeftNode
import WeftStore

/// `weft domain bootstrap`: the domain owner's material in one step — the root certificate and
/// node certificates, the domain namespace key and the nodes' keys, and `domain.yaml` with the
/// sequencer nodes, the domain manager and the mediator. `weft run -c domain.yaml --migrate`
/// then starts them, and the domain manager signs the genesis and initializes the sequencers
/// (docs/operations.md §3 lists the same steps one by one).
struct DomainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "domain", abstract: "Prepare a domain (the domain owner's bootstrap).", subcommands: [Bootstrap.self])

    struct Bootstrap: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new domain's certificates, keys and domain.yaml (sequencers, domain manager, mediator).",
            discussion: """
                Writes into --dir: certs/ca.pem (give it to every participant's operator), certs/ca-key.pem
                (keep it offline), a certificate per node and certs/operator.pem (the admin client certificate),
                keys/ (the domain namespace key, the sequencers', domain manager's and mediator's keys) and
                domain.yaml. Then: create the domain manager's database and run
                  weft run -c domain.yaml --migrate
                Refuses to overwrite anything already there.
                """)

        @Option(help: "The domain's name; its id is NAME::<fingerprint of the namespace key>.")
        var name: String = "domain1"

        @Option(help: "Directory to write into (created if missing).")
        var dir: String = "."

        @Option(help: "Number of sequencer nodes (1–32), all on --database-url.")
        var sequencers: Int = 1

        @Option(name: .customLong("database-url"), help: "libpq URL of the database the sequencers and the mediator share.")
        var databaseURL: String

        @Option(
            name: .customLong("manager-database-url"),
            help: "libpq URL of the domain manager's own database (default: --database-url with its database name + _manager).")
        var managerDatabaseURL: String?

        @Option(name: .customLong("host"), help: "A DNS name or IP address the nodes are reached at (repeatable; default localhost and 127.0.0.1).")
        var hosts: [String] = []

        @Option(name: .customLong("base-port"), help: "The domain manager listens on it, sequencer n on base-port + n, the mediator on base-port + 100.")
        var basePort: Int = 4400

        @Option(help: "text or json.") var output: OutputFormat = .text

        func validate() throws {
            guard (1...32).contains(sequencers) else { throw ValidationError("--sequencers must be 1 to 32") }
            guard (1...65_000).contains(basePort), basePort + 100 <= 65_535 else { throw ValidationError("--base-port must leave room for +100") }
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw ValidationError("--name must be letters, digits, - and _")
            }
            guard managerDatabase != nil else {
                throw ValidationError("--database-url \(databaseURL) has no database name to derive the manager's from; give --manager-database-url")
            }
        }

        var managerDatabase: String? {
            if let managerDatabaseURL { return managerDatabaseURL }
            guard var components = URLComponents(string: databaseURL), let database = components.path.split(separator: "/").last else {
                return nil
            }
            components.path = "/\(database)_manager"
            return components.string
        }

        func run() throws {
            let hosts = self.hosts.isEmpty ? ["localhost", "127.0.0.1"] : self.hosts
            let sequencerNames = (1...sequencers).map { "sequencer\($0)" }
            let nodes = sequencerNames + ["domain-manager", "mediator1", "operator"]
            var files = ["certs/ca.pem", "certs/ca-key.pem", "domain.yaml"]
            files += nodes.flatMap { ["certs/\($0).pem", "certs/\($0)-key.pem"] }
            let keyNames = ["domain-namespace", "domain-manager", "sequencers", "mediator", "mediator-encryption"]
            files += keyNames.flatMap { ["keys/\($0).pem", "keys/\($0).pem.pub"] }
            let existing = files.filter { FileManager.default.fileExists(atPath: dir + "/" + $0) }
            guard existing.isEmpty else {
                throw BootstrapRefused(
                    description: "\(dir) already holds \(existing.joined(separator: ", ")); bootstrap into an empty directory (nothing was written)")
            }
            for sub in ["certs", "keys"] {
                try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
            }
            let ca = try CertificateAuthority.makeRoot(commonName: name)
            try ca.write(certificateTo: dir + "/certs/ca.pem", keyTo: dir + "/certs/ca-key.pem")
            for node in nodes {
                let certificate = try CertificateAuthority.issue(commonName: node, hostnames: hosts, signedBy: ca)
                try certificate.write(certificateTo: "\(dir)/certs/\(node).pem", keyTo: "\(dir)/certs/\(node)-key.pem")
            }
            var namespaceFingerprint = ""
            for key in keyNames {
                let path = "\(dir)/keys/\(key).pem"
                if key == "mediator-encryption" {
                    let encryption = try EncryptionPrivateKey.generate()
                    try KeyFile.write(encryption, to: path)
                    try PublicKeyFile.write(PublicKeyFile.line(encryption.publicKey), to: path + ".pub")
                } else {
                    let signing = try SigningPrivateKey.generate()
                    try KeyFile.write(signing, to: path)
                    try PublicKeyFile.write(PublicKeyFile.line(signing.publicKey), to: path + ".pub")
                    if key == "domain-namespace" { namespaceFingerprint = signing.publicKey.fingerprint.description }
                }
            }
            let domainID = "\(name)::\(namespaceFingerprint)"
            let addresses = sequencerNames.indices.map { "\(hosts[0]):\(basePort + 1 + $0)" }
            var yaml = "# Written by `weft domain bootstrap`; start with: weft run -c domain.yaml --migrate\nnodes:\n"
            for (index, sequencer) in sequencerNames.enumerated() {
                yaml += """
                      \(sequencer):
                        kind: sequencer
                        listen: 0.0.0.0:\(basePort + 1 + index)
                        sequencer-node: \(index)
                        domain: \(domainID)
                        signing-key: keys/sequencers.pem
                        tls: { certificate: certs/\(sequencer).pem, key: certs/\(sequencer)-key.pem }
                        database: { url: \(YAMLText.quoted(databaseURL)) }

                    """
            }
            yaml += """
                  domain-manager:
                    kind: domain-manager
                    listen: 0.0.0.0:\(basePort)
                    domain: \(name)
                    namespace-key: keys/domain-namespace.pem
                    signing-key: keys/domain-manager.pem
                    sequencers:
                      addresses: [\(addresses.joined(separator: ", "))]
                      root-cert: certs/ca.pem
                    bootstrap:
                      sequencer-key: keys/sequencers.pem.pub
                      mediator-key: keys/mediator.pem.pub
                      mediator-encryption-key: keys/mediator-encryption.pem.pub
                    tls: { certificate: certs/domain-manager.pem, key: certs/domain-manager-key.pem, client-roots: certs/ca.pem }
                    database: { url: \(YAMLText.quoted(managerDatabase ?? "")) }
                  mediator1:
                    kind: mediator
                    listen: 0.0.0.0:\(basePort + 100)
                    domain: \(domainID)
                    signing-key: keys/mediator.pem
                    sequencer-key: keys/sequencers.pem.pub
                    sequencers:
                      addresses: [\(addresses.joined(separator: ", "))]
                      root-cert: certs/ca.pem
                    tls: { certificate: certs/mediator1.pem, key: certs/mediator1-key.pem }
                    database: { url: \(YAMLText.quoted(databaseURL)) }

                """
            // The database URLs may carry passwords: readable by the owner only, as the keys.
            guard FileManager.default.createFile(atPath: dir + "/domain.yaml", contents: Data(yaml.utf8), attributes: [.posixPermissions: 0o600])
            else {
                throw BootstrapRefused(description: "cannot write \(dir)/domain.yaml (check the directory's permissions and free space)")
            }
            switch output {
            case .text:
                print("domain \(domainID)")
                print("wrote \(files.count) files into \(dir): certs/ca.pem (give it to every participant's operator), keys/, domain.yaml")
                print(
                    "next: create the domain manager's database (\(ConnectionStringRedaction.masked(managerDatabase ?? ""))), "
                        + "then weft run -c domain.yaml --migrate")
            case .json:
                try printJSON([
                    "domain": domainID, "config": dir + "/domain.yaml", "root_certificate": dir + "/certs/ca.pem",
                    "sequencers": addresses, "domain_manager": "\(hosts[0]):\(basePort)", "files": files.sorted(),
                ])
            }
        }
    }
}

/// A bootstrap that would overwrite a domain's files: exit status 1, nothing written.
struct BootstrapRefused: Error, CustomStringConvertible {
    let description: String
}
