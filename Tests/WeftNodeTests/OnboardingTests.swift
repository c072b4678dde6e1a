import Foundation
import Testing
import WeftCrypto
import WeftStore
import WeftTestSupport

/// The seed's onboarding, typed as an operator types it: the domain owner runs a
/// sequencer and a domain manager; a participant prints its id, is refused until the
/// owner allow-lists it with set-state, then connects with connect-multi and the root
/// certificate.
@Suite(.timeLimit(.minutes(3))) struct OnboardingTests {
    /// A free TCP port on loopback (bound and released at once).
    static func freePort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @Test func theSeedsOnboardingWithTheCLI() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            let dir = directory.path
            func weft(_ arguments: String...) async throws -> (Int32, String, String) {
                try await WeftProcess.run(arguments, directory: dir)
            }
            // The domain owner's keys and certificates.
            for key in ["domain-namespace", "manager", "sequencer", "mediator"] {
                let (status, _, error) = try await weft("keys", "generate", "--out", "keys-\(key).pem")
                #expect(status == 0, "\(error)")
            }
            let (encryption, _, encryptionError) = try await weft("keys", "generate", "--kind", "encryption", "--out", "keys-mediator-encryption.pem")
            #expect(encryption == 0, "\(encryptionError)")
            let (issued, _, issueError) = try await weft("certs", "issue", "--ca-dir", "certs", "--name", "operator", "--host", "localhost", "--out", "certs")
            #expect(issued == 0, "\(issueError)")
            let namespaceKey = try KeyFile.readSigningKey(at: dir + "/keys-domain-namespace.pem")
            let domainID = "domain1::\(namespaceKey.publicKey.fingerprint)"
            // The domain manager keeps its own database.
            _ = try PostgresConnection(url: fixture.url).execute("CREATE DATABASE manager")
            let managerURL = fixture.url.replacingOccurrences(of: "/weft", with: "/manager")
            let sequencerPort = try Self.freePort()
            try directory.write("domain.yaml", """
                nodes:
                  sequencer1:
                    kind: sequencer
                    listen: 127.0.0.1:\(sequencerPort)
                    domain: \(domainID)
                    signing-key: keys-sequencer.pem
                    tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem }
                    database: { url: \(fixture.url) }
                  manager:
                    kind: domain-manager
                    listen: 127.0.0.1:0
                    domain: domain1
                    namespace-key: keys-domain-namespace.pem
                    signing-key: keys-manager.pem
                    sequencers:
                      addresses: [127.0.0.1:\(sequencerPort)]
                      root-cert: certs/ca.pem
                    bootstrap:
                      sequencer-key: keys-sequencer.pem.pub
                      mediator-key: keys-mediator.pem.pub
                      mediator-encryption-key: keys-mediator-encryption.pem.pub
                    tls: { certificate: certs/sequencer1.pem, key: certs/sequencer1-key.pem, client-roots: certs/ca.pem }
                    database: { url: \(managerURL) }
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
            let domain = try WeftProcess(["run", "-c", "domain.yaml", "--migrate"], directory: dir)
            var managerPort = 0
            var mediatorReady = false
            for _ in 0..<3 {
                let line = try #require(await domain.nextLine(), "\(domain.standardError)")
                if line.contains("domain manager") { managerPort = Int(line.split(separator: ":").last ?? "") ?? 0 }
                if line.hasPrefix("node mediator1 (mediator MED::\(domainID))") { mediatorReady = true }
            }
            #expect(managerPort > 0)
            #expect(mediatorReady)  // started with the domain, before the domain manager bootstrapped it

            // The participant's operator.
            try directory.write("participant.yaml", """
                nodes:
                  participant1:
                    kind: participant
                    listen: 127.0.0.1:0
                    tls: { plaintext: true }
                """)
            let (_, idLine, idError) = try await weft("participant", "id", "-c", "participant.yaml")
            let participant = idLine.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(participant.hasPrefix("participant1::1220"), "\(idError)")
            // Not allow-listed yet: refused with what to ask for.
            let (refused, _, refusal) = try await weft(
                "participant", "connect-multi", "mydomain", "127.0.0.1:\(sequencerPort)", "--root-cert", "certs/ca.pem", "-c", "participant.yaml")
            #expect(refused != 0)
            #expect(refusal.contains("is not allow-listed on \(domainID)") && refusal.contains("weft domain-manager set-state \(participant)"), "\(refusal)")

            // The domain owner allow-lists it (admin API with mutual TLS).
            let admin = ["--remote", "localhost:\(managerPort)", "--root-cert", "certs/ca.pem", "--cert", "certs/operator.pem", "--key", "certs/operator-key.pem"]
            let (allowed, allowedOutput, allowedError) = try await WeftProcess.run(
                ["domain-manager", "set-state", participant, "--permission", "submission"] + admin, directory: dir)
            #expect(allowed == 0, "\(allowedError)\ndomain log:\n\(domain.standardError.suffix(4000))")
            #expect(allowedOutput.contains("\(participant): submission, ordinary, in effect from"), "\(allowedOutput)")
            // Without the operator's certificate the admin API refuses the connection.
            let (anonymous, _, _) = try await WeftProcess.run(
                ["domain-manager", "members", "--remote", "localhost:\(managerPort)", "--root-cert", "certs/ca.pem"], directory: dir)
            #expect(anonymous != 0)

            // Now the participant connects and authenticates.
            let (connected, connectedOutput, connectedError) = try await weft(
                "participant", "connect-multi", "mydomain", "127.0.0.1:\(sequencerPort)", "--root-cert", "certs/ca.pem", "-c", "participant.yaml")
            #expect(connected == 0, "\(connectedError)")
            #expect(connectedOutput.contains("PAR::\(participant) is a member of \(domainID) (mydomain) and authenticated at 127.0.0.1:\(sequencerPort)"), "\(connectedOutput)")
            // The domain manager lists it, keys registered.
            let (_, members, membersError) = try await WeftProcess.run(["domain-manager", "members", "--output", "json"] + admin, directory: dir)
            #expect(members.contains(#""member":"PAR::\#(participant)""#) && members.contains(#""registered":true"#), "\(members) \(membersError)")

            // The domain parameters: shown, changed (signed and broadcast), shown again.
            let (changed, _, changeError) = try await WeftProcess.run(
                ["domain-manager", "parameters", "--set", "participant-response-timeout=45s"] + admin, directory: dir)
            #expect(changed == 0, "\(changeError)")
            let (_, parameters, _) = try await WeftProcess.run(["domain-manager", "parameters", "--output", "json"] + admin, directory: dir)
            #expect(parameters.contains(#""participant-response-timeout-micros":45000000"#), "\(parameters)")

            domain.signal(SIGTERM)
            #expect(await domain.exitStatus() == 0, "\(domain.standardError)")
        }
    }
}
