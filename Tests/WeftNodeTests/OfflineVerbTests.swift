import Foundation
import Testing
import WeftTestSupport

/// The verbs an operator runs before any node serves — keys, certificates, a participant's id,
/// development tokens, database migrations — as the operator runs them: `--output json` parsed,
/// and a bad argument refused with the usage status.
@Suite(.timeLimit(.minutes(5))) struct OfflineVerbTests {
    func json(_ output: String) -> [[String: Any]] {
        output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test func keysCertificatesIDsAndTokensAnswerInJSONAndRefuseBadArguments() async throws {
        let directory = try NodeDirectory()
        defer { directory.remove() }
        let dir = directory.path
        func weft(_ arguments: [String]) async throws -> (Int32, String, String) {
            try await WeftProcess.run(arguments, directory: dir)
        }

        let key = try await weft(["keys", "generate", "--kind", "encryption", "--out", "member-enc.pem", "--output", "json"])
        let keyJSON = try #require(json(key.1).first, "\(key)")
        #expect(keyJSON["kind"] as? String == "encryption" && keyJSON["public_key_file"] as? String == "member-enc.pem.pub")
        #expect((keyJSON["fingerprint"] as? String)?.hasPrefix("1220") == true)
        #expect(FileManager.default.fileExists(atPath: dir + "/member-enc.pem.pub"))
        #expect(try await weft(["keys", "generate", "--kind", "rsa", "--out", "x.pem"]).0 == 64)

        let ca = try await weft(["certs", "init-ca", "--name", "domain1", "--dir", "ca2", "--output", "json"])
        #expect(json(ca.1).first?["certificate"] as? String == "ca2/ca.pem", "\(ca)")
        let issued = try await weft(
            ["certs", "issue", "--ca-dir", "ca2", "--name", "node1", "--host", "localhost", "--out", "ca2", "--output", "json"])
        #expect(json(issued.1).first?["hosts"] as? [String] == ["localhost"], "\(issued)")
        #expect(try await weft(["certs", "issue", "--ca-dir", "ca2", "--name", "node1", "--out", "ca2"]).0 == 64)  // no --host
        #expect(try await weft(["certs", "init-ca", "--name", "d", "--dir", "ca3", "--days", "0"]).0 == 64)

        try directory.write(
            "participant1.yaml",
            """
            nodes:
              participant1:
                kind: participant
                listen: 127.0.0.1:0
                tls: { plaintext: true }
                database: { url: "postgresql://nobody@127.0.0.1:1/none" }
            """)
        let id = try await weft(["participant", "id", "-c", "participant1.yaml", "--output", "json"])
        let idJSON = try #require(json(id.1).first, "\(id)")
        let text = try await weft(["participant", "id", "-c", "participant1.yaml"])
        #expect(idJSON["participant"] as? String == text.1.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect((idJSON["participant"] as? String)?.hasSuffix(idJSON["namespace_fingerprint"] as? String ?? "-") == true)
        #expect(try await weft(["participant", "id", "-c", "participant1.yaml", "--output", "xml"]).0 == 64)

        try String(repeating: "s", count: 40).write(toFile: dir + "/secret", atomically: true, encoding: .utf8)
        let token = try await weft(["token", "--secret-file", "secret", "--act-as", "alice::1220ab", "--expires-in", "10m", "--output", "json"])
        let tokenJSON = try #require(json(token.1).first, "\(token)")
        #expect((tokenJSON["token"] as? String)?.split(separator: ".").count == 3)
        let expiresAt = try #require(tokenJSON["expires_at"] as? Int)
        #expect(abs(expiresAt - Int(Date().timeIntervalSince1970) - 600) < 60)
        #expect(try await weft(["token", "--secret-file", "secret", "--expires-in", "soon"]).0 == 64)
    }

    @Test func dbStatusAndMigrateAnswerInJSON() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            try directory.write(
                "participant1.yaml",
                """
                nodes:
                  participant1:
                    kind: participant
                    listen: 127.0.0.1:0
                    tls: { plaintext: true }
                    database: { url: "\(fixture.url)" }
                """)
            func weft(_ arguments: [String]) async throws -> (Int32, String, String) {
                try await WeftProcess.run(arguments, directory: directory.path)
            }
            let before = try await weft(["db", "status", "-c", "participant1.yaml", "--output", "json"])
            let pending = json(before.1)
            #expect(before.0 == 0 && pending.contains { $0["component"] as? String == "participant" }, "\(before)")
            #expect(pending.allSatisfy { ($0["applied"] as? [Int])?.isEmpty == true && !(($0["pending"] as? [Any]) ?? []).isEmpty })
            let migrated = try await weft(["db", "migrate", "-c", "participant1.yaml", "--output", "json"])
            #expect(json(migrated.1).allSatisfy { !(($0["applied"] as? [Int]) ?? []).isEmpty }, "\(migrated)")
            let after = try await weft(["db", "status", "-c", "participant1.yaml", "--output", "json"])
            #expect(json(after.1).allSatisfy { (($0["pending"] as? [Any]) ?? [1]).isEmpty }, "\(after)")
            #expect(try await weft(["db", "status", "-c", "participant1.yaml", "--node", "nobody"]).0 == 64)
        }
    }
}
