import Foundation
import Testing
import WeftTestSupport

/// A participant node run with `weft run` and `auth.*` / `audit.*` configured: its admin
/// service needs the admin claim, its Ledger API a token, and every call leaves a line in
/// the audit file; the CLI mints the tokens (`weft token`) and sends them.
@Suite(.timeLimit(.minutes(5))) struct SecuredParticipantTests {
    @Test func theParticipantsAdminServiceNeedsAnAdminTokenAndEveryCallIsAudited() async throws {
        try await PostgresFixture.withFixture { fixture in
            let directory = try NodeDirectory()
            defer { directory.remove() }
            let dir = directory.path
            try directory.write("secret", "a development secret of at least 32 bytes\n")
            // A secret only its owner can read: the node refuses others (docs/operations.md §5).
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir + "/secret")
            try directory.write(
                "participant1.yaml",
                """
                nodes:
                  participant1:
                    kind: participant
                    listen: 127.0.0.1:0
                    tls: { plaintext: true }
                    database: { url: \(fixture.url) }
                    auth:
                      hs256-secret-file: secret
                      audience: participant1
                    audit:
                      file: audit.log
                """)
            let node = try WeftProcess(["run", "-c", "participant1.yaml", "--migrate"], directory: dir)
            let ready = try #require(await node.nextLine(), "\(node.standardError)")
            let port = try #require(Int(ready.split(separator: ":").last ?? ""), "\(ready)")
            let api = ["--remote", "127.0.0.1:\(port)", "--plaintext"]
            func weft(_ arguments: [String]) async throws -> (Int32, String, String) {
                try await WeftProcess.run(arguments, directory: dir)
            }
            func token(_ extra: [String]) async throws -> String {
                let (status, output, error) = try await weft(
                    ["token", "--secret-file", "secret", "--audience", "participant1"] + extra)
                #expect(status == 0, "\(error)")
                return output.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let admin = try await token(["--admin", "--subject", "operator"])
            let application = try await token(["--act-as", "alice::1220aa", "--subject", "alice-app"])

            let (anonymous, _, anonymousError) = try await weft(["participant", "domains"] + api)
            #expect(anonymous != 0 && anonymousError.contains("AUTH_TOKEN_MISSING"), "\(anonymousError)")
            let (notAdmin, _, notAdminError) = try await weft(["participant", "domains", "--token", application] + api)
            #expect(
                notAdmin != 0 && notAdminError.contains("AUTH_MISSING_CLAIM")
                    && notAdminError.contains("needs claim admin"), "\(notAdminError)")
            let (granted, _, grantedError) = try await weft(["participant", "domains", "--token", admin] + api)
            #expect(granted == 0, "\(grantedError)")
            // The Ledger API checks the token before it says the participant is not connected yet.
            let (noToken, _, noTokenError) = try await weft(["ledger-end"] + api)
            #expect(noToken == 1 && noTokenError.contains("AUTH_TOKEN_MISSING"), "\(noTokenError)")
            let (unconnected, _, unconnectedError) = try await weft(["ledger-end", "--token", application] + api)
            #expect(unconnected == 1 && unconnectedError.contains("PARTICIPANT_NOT_CONNECTED"), "\(unconnectedError)")

            node.signal(SIGTERM)
            #expect(await node.exitStatus() == 0, "\(node.standardError.suffix(4000))")
            #expect(!node.standardError.contains("UNAUTHENTICATED: any client"), "tokens are configured: no warning")

            let lines = try String(contentsOfFile: dir + "/audit.log", encoding: .utf8).split(separator: "\n").map {
                line in
                try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], "\(line)")
            }
            let domains = "/weft.v1.ParticipantAdministrationService/ListDomainConnections"
            let end = "/weft.v1.TransactionService/GetLedgerEnd"
            #expect(
                lines.map { $0["caller"] } == [
                    "unauthenticated", "alice-app", "operator", "unauthenticated", "alice-app",
                ], "\(lines)")
            #expect(lines.map { $0["method"] } == [domains, domains, domains, end, end])
            #expect(
                lines.map { $0["code"] } == [
                    "UNAUTHENTICATED", "PERMISSION_DENIED", "OK", "UNAUTHENTICATED", "UNAVAILABLE",
                ])
            #expect(
                lines.map { $0["error_id"] } == [
                    "AUTH_TOKEN_MISSING", "AUTH_MISSING_CLAIM", "", "AUTH_TOKEN_MISSING", "PARTICIPANT_NOT_CONNECTED",
                ])
            #expect(
                lines.allSatisfy { $0["logger"] == "weft.audit" && $0["node"] == "participant1" && $0["admin"] != nil })
        }
    }

    @Test func aNodeWithoutAuthSaysItsAPIsAreUnauthenticated() async throws {
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
                    database: { url: \(fixture.url) }
                    auth: { audience: participant1 }
                """)
            // An audience without a key is a mistake the node refuses at start.
            let (refused, _, refusal) = try await WeftProcess.run(
                ["run", "-c", "participant1.yaml", "--migrate"], directory: directory.path)
            #expect(
                refused != 0 && refusal.contains("auth.audience") && refusal.contains("auth.hs256-secret-file"),
                "\(refusal)")

            try directory.write(
                "participant1.yaml",
                """
                nodes:
                  participant1:
                    kind: participant
                    listen: 127.0.0.1:0
                    tls: { plaintext: true }
                    database: { url: \(fixture.url) }
                """)
            let node = try WeftProcess(["run", "-c", "participant1.yaml", "--migrate"], directory: directory.path)
            let ready = try #require(await node.nextLine(), "\(node.standardError)")
            #expect(ready.hasPrefix("node participant1"))
            node.signal(SIGTERM)
            #expect(await node.exitStatus() == 0)
            #expect(
                node.standardError.contains("the node's APIs are UNAUTHENTICATED"), "\(node.standardError.suffix(4000))"
            )
        }
    }
}
