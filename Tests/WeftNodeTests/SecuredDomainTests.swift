import Foundation
import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport

/// A domain run with `weft run` whose sequencer and domain manager verify bearer tokens on
/// their admin services: the domain manager bootstraps the sequencer with its own admin token
/// (`sequencers.token-file`), the operator needs one (and the client certificate) for the
/// domain manager, and both nodes audit every admin call.
@Suite(.timeLimit(.minutes(5))) struct SecuredDomainTests {
    @Test func theDomainsAdminServicesNeedAdminTokensAndAuditEveryCall() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            let dir = directory.path
            func weft(_ arguments: [String]) async throws -> (Int32, String, String) {
                try await WeftProcess.run(arguments, directory: dir)
            }
            for key in ["domain-namespace", "manager", "sequencer", "mediator"] {
                let (status, _, error) = try await weft(["keys", "generate", "--out", "keys-\(key).pem"])
                #expect(status == 0, "\(error)")
            }
            _ = try await weft(["keys", "generate", "--kind", "encryption", "--out", "keys-mediator-encryption.pem"])
            _ = try await weft([
                "certs", "issue", "--ca-dir", "certs", "--name", "operator", "--host", "localhost", "--out", "certs",
            ])
            try directory.write("secret", "the domain's admin token secret, 32 bytes or more\n")
            // Secrets only their owner can read: a node refuses others (docs/operations.md §5).
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir + "/secret")
            func token(_ subject: String, admin: Bool = true) async throws -> String {
                let (status, output, error) = try await weft(
                    ["token", "--secret-file", "secret", "--subject", subject] + (admin ? ["--admin"] : []))
                #expect(status == 0, "\(error)")
                return output.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            try directory.write("manager-token", try await token("domain-manager"))
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir + "/manager-token")
            let operatorToken = try await token("operator")
            let participantToken = try await token("someone", admin: false)

            let namespaceKey = try KeyFile.readSigningKey(at: dir + "/keys-domain-namespace.pem")
            let domainID = "domain1::\(namespaceKey.publicKey.fingerprint)"
            _ = try PostgresConnection(url: fixture.url).execute("CREATE DATABASE manager")
            let sequencerPort = try ProcessDomain.freePort()
            try directory.write(
                "domain.yaml",
                """
                nodes:
                  sequencer1:
                    kind: sequencer
                    listen: 127.0.0.1:\(sequencerPort)
                    domain: \(domainID)
                    signing-key: keys-sequencer.pem
                    tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem }
                    database: { url: \(fixture.url) }
                    auth: { hs256-secret-file: secret }
                    audit: { file: sequencer-audit.log }
                  manager:
                    kind: domain-manager
                    listen: 127.0.0.1:0
                    domain: domain1
                    namespace-key: keys-domain-namespace.pem
                    signing-key: keys-manager.pem
                    sequencers:
                      addresses: [127.0.0.1:\(sequencerPort)]
                      root-cert: certs/ca.pem
                      token-file: manager-token
                    bootstrap:
                      sequencer-key: keys-sequencer.pem.pub
                      mediator-key: keys-mediator.pem.pub
                      mediator-encryption-key: keys-mediator-encryption.pem.pub
                    tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem, client-roots: certs/ca.pem }
                    database: { url: \(ProcessDomain.databaseURL(fixture.url, "manager")) }
                    auth: { hs256-secret-file: secret }
                    audit: { file: manager-audit.log }
                  mediator1:
                    kind: mediator
                    listen: 127.0.0.1:0
                    domain: \(domainID)
                    signing-key: keys-mediator.pem
                    sequencer-key: keys-sequencer.pem.pub
                    sequencers:
                      addresses: [127.0.0.1:\(sequencerPort)]
                      root-cert: certs/ca.pem
                    tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem }
                    database: { url: \(fixture.url) }
                """)
            let process = try WeftProcess(["run", "-c", "domain.yaml", "--migrate"], directory: dir)
            var managerPort = 0
            for _ in 0..<3 {
                let line = try #require(await process.nextLine(), "\(process.standardError.suffix(4000))")
                if line.contains("domain manager") { managerPort = Int(line.split(separator: ":").last ?? "") ?? 0 }
            }
            #expect(managerPort > 0)
            let admin = [
                "--remote", "localhost:\(managerPort)", "--root-cert", "certs/ca.pem", "--cert", "certs/operator.pem",
                "--key",
                "certs/operator-key.pem",
            ]
            let (noToken, _, noTokenError) = try await weft(["domain-manager", "members"] + admin)
            #expect(noToken != 0 && noTokenError.contains("AUTH_TOKEN_MISSING"), "\(noTokenError)")
            let (notAdmin, _, notAdminError) = try await weft(
                ["domain-manager", "members", "--token", participantToken] + admin)
            #expect(notAdmin != 0 && notAdminError.contains("needs claim admin"), "\(notAdminError)")
            let (members, membersOutput, membersError) = try await weft(
                ["domain-manager", "members", "--token", operatorToken] + admin)
            #expect(members == 0 && membersOutput.contains("SEQ::"), "\(membersError)")
            process.signal(SIGTERM)
            #expect(await process.exitStatus() == 0, "\(process.standardError.suffix(4000))")

            func audit(_ file: String) throws -> [[String: String]] {
                try String(contentsOfFile: dir + "/" + file, encoding: .utf8).split(separator: "\n").map { line in
                    try #require(
                        try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], "\(line)")
                }
            }
            // The bootstrap's InitializeSequencer, with the domain manager's token.
            let sequencer = try audit("sequencer-audit.log")
            #expect(
                sequencer.map { $0["method"] } == ["/weft.v1.SequencerAdministrationService/InitializeSequencer"],
                "\(sequencer)")
            #expect(
                sequencer.first?["caller"] == "domain-manager" && sequencer.first?["code"] == "OK"
                    && sequencer.first?["admin"] == "true")
            let manager = try audit("manager-audit.log")
            #expect(manager.map { $0["caller"] } == ["unauthenticated", "someone", "operator"], "\(manager)")
            #expect(manager.map { $0["code"] } == ["UNAUTHENTICATED", "PERMISSION_DENIED", "OK"])
            #expect(
                manager.allSatisfy {
                    $0["method"] == "/weft.v1.DomainManagerAdministrationService/ListMembers" && $0["node"] == "manager"
                })
        }
    }
}
