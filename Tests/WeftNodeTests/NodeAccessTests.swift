import Foundation
import Testing
import WeftAuth

@testable import WeftNode

/// `auth.*` and `audit.*` of a node: what they turn on, and the mistakes refused at start.
@Suite struct NodeAccessTests {
    func settings(_ extra: [String: String], directory: String) throws -> NodeSettings {
        var configuration = Configuration()
        let base = [
            "kind": "sequencer", "listen": "127.0.0.1:0", "tls.plaintext": "true", "domain": "d::1220aa",
            "signing-key": "k.pem",
        ]
        for (key, value) in base.merging(extra, uniquingKeysWith: { $1 }) {
            configuration.set("nodes.s1.\(key)", value)
        }
        return try NodeSettings(name: "s1", section: configuration.section("nodes.s1"))
    }

    @Test func noAuthSectionIsOpenAndKeysTurnTokensOn() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-access-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let open = try NodeAccess(try settings([:], directory: directory))
        #expect(!open.authorizer.requiresTokens && !open.adminRequiresToken && !open.adminLoopbackOnly)

        let secret = directory + "/secret"
        try "0123456789abcdef0123456789abcdef\n".write(toFile: secret, atomically: true, encoding: .utf8)
        let tokens = try NodeAccess(
            try settings(
                [
                    "auth.hs256-secret-file": secret, "auth.audience": "s1", "auth.leeway": "30s",
                    "auth.admin-loopback-only": "true",
                    "audit.file": directory + "/audit.log", "audit.max-files": "2",
                ], directory: directory))
        #expect(tokens.adminRequiresToken && tokens.adminLoopbackOnly)
        guard case .tokens(let verifier) = tokens.authorizer else {
            Issue.record("expected token verification")
            return
        }
        #expect(verifier.audience == "s1" && verifier.leewaySeconds == 30)
        #expect(FileManager.default.fileExists(atPath: directory + "/audit.log"))
        // The trailing line break is not part of the secret: a token signed with the 32 bytes verifies.
        let token = try HS256TokenIssuer.token(
            LedgerClaims(admin: true, expiresAt: 4_000_000_000), secret: Array("0123456789abcdef0123456789abcdef".utf8),
            audience: "s1")
        #expect(try verifier.verify(token, now: 3_999_999_999).admin)

        // Half-configured or wrong: refused at start, naming the key.
        #expect(throws: ConfigurationError.self) {
            try NodeAccess(try settings(["auth.audience": "s1"], directory: directory))
        }
        #expect(throws: ConfigurationError.self) {
            try NodeAccess(try settings(["auth.hs256-secret-file": directory + "/missing"], directory: directory))
        }
        try "short".write(toFile: secret, atomically: true, encoding: .utf8)
        do {
            _ = try NodeAccess(try settings(["auth.hs256-secret-file": secret], directory: directory))
            Issue.record("a 5-byte secret was accepted")
        } catch {
            #expect(
                "\(error)".contains("nodes.s1.auth.hs256-secret-file") && "\(error)".contains("at least 32"), "\(error)"
            )
        }
        #expect(throws: ConfigurationError.self) {
            try NodeAccess(try settings(["auth.rs256-public-key-file": secret], directory: directory))
        }
        #expect(throws: ConfigurationError.self) {
            try NodeAccess(try settings(["audit.file": directory + "/no-such-dir/audit.log"], directory: directory))
        }
        #expect(throws: ConfigurationError.self) {
            try NodeAccess(
                try settings(["audit.max-files": "-1", "audit.file": directory + "/a"], directory: directory))
        }
        // A mediator serves no API to protect: the keys are unknown there.
        var mediator = Configuration()
        for (key, value) in [
            "kind": "mediator", "listen": "127.0.0.1:0", "tls.plaintext": "true", "auth.audience": "m",
        ] {
            mediator.set("nodes.m.\(key)", value)
        }
        #expect(throws: ConfigurationError.unknownKeys(["nodes.m.auth.audience"])) {
            try NodeSettings(name: "m", section: mediator.section("nodes.m"))
        }
    }
}
