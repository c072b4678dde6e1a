import ArgumentParser
import Foundation
import WeftCrypto

/// `weft certs`: the domain owner's certificate authority (the seed's "certificate root public
/// cert") and node certificates for sequencers and participants, without openssl incantations.
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Create the domain's root CA and sign TLS certificates for nodes.",
        subcommands: [InitCA.self, Issue.self]
    )

    struct InitCA: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init-ca",
            abstract: "Create a root CA: DIR/ca.pem (hand it to participants) and DIR/ca-key.pem (keep it private).")

        @Option(help: "Common name of the CA, e.g. the domain's name.")
        var name: String

        @Option(help: "Directory to write ca.pem and ca-key.pem into (created if missing).")
        var dir: String

        @Option(help: "Validity in days.")
        var days: Int = 3650

        @Option(help: "text or json.") var output: OutputFormat = .text

        func validate() throws {
            guard days > 0 else { throw ValidationError("--days must be positive") }
        }

        func run() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let ca = try CertificateAuthority.makeRoot(commonName: name, validDays: days)
            try ca.write(certificateTo: dir + "/ca.pem", keyTo: dir + "/ca-key.pem")
            switch output {
            case .text:
                print("wrote \(dir)/ca.pem (the root certificate: give it to every participant's operator)")
                print("wrote \(dir)/ca-key.pem (mode 0600: keep it private, ideally offline)")
            case .json: try printJSON(["certificate": dir + "/ca.pem", "key": dir + "/ca-key.pem", "valid_days": days])
            }
        }
    }

    struct Issue: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "issue",
            abstract: "Sign a node certificate: OUT/NAME.pem and OUT/NAME-key.pem.")

        @Option(name: .customLong("ca-dir"), help: "Directory holding ca.pem and ca-key.pem.")
        var caDir: String

        @Option(help: "Node name, e.g. sequencer1; the certificate's common name and file name.")
        var name: String

        @Option(name: .customLong("host"), help: "A DNS name or IP address the node is reached at (repeatable).")
        var hosts: [String]

        @Option(help: "Directory to write the certificate and key into (created if missing).")
        var out: String

        @Option(help: "Validity in days.")
        var days: Int = 825

        @Option(help: "text or json.") var output: OutputFormat = .text

        func validate() throws {
            guard !hosts.isEmpty else { throw ValidationError("give at least one --host (e.g. --host localhost --host 127.0.0.1)") }
            guard days > 0 else { throw ValidationError("--days must be positive") }
            guard !name.isEmpty, !name.contains("/") else { throw ValidationError("--name must be a plain name, e.g. sequencer1") }
        }

        func run() throws {
            let ca = try TLSCredentials.read(certificateAt: caDir + "/ca.pem", keyAt: caDir + "/ca-key.pem")
            let node = try CertificateAuthority.issue(commonName: name, hostnames: hosts, validDays: days, signedBy: ca)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try node.write(certificateTo: "\(out)/\(name).pem", keyTo: "\(out)/\(name)-key.pem")
            switch output {
            case .text:
                print("wrote \(out)/\(name).pem (valid for \(hosts.joined(separator: ", ")))")
                print("wrote \(out)/\(name)-key.pem (mode 0600)")
            case .json:
                try printJSON(["certificate": "\(out)/\(name).pem", "key": "\(out)/\(name)-key.pem", "hosts": hosts, "valid_days": days])
            }
        }
    }
}
