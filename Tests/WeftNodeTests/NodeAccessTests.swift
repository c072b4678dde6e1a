import Foundation
import NIOCore
import Testing
import WeftAuth
import WeftLedgerAPI
import WeftWire

@testable import WeftNode
@testable import WeftTransport

/// `auth.*` and `audit.*` of a node: what they turn on, and the mistakes refused at start.
@Suite struct NodeAccessTests {
    func settings(_ extra: [String: String], directory: String, kind: String = "sequencer") throws -> NodeSettings {
        var configuration = Configuration()
        var base = ["kind": kind, "listen": "127.0.0.1:0", "tls.plaintext": "true", "signing-key": "k.pem"]
        if kind != "participant" { base["domain"] = "d::1220aa" }
        for (key, value) in base.merging(extra, uniquingKeysWith: { $1 }) {
            configuration.set("nodes.s1.\(key)", value)
        }
        return try NodeSettings(name: "s1", section: configuration.section("nodes.s1"))
    }

    /// Writes `text` to `path` with mode 0600, as an operator must for a secret.
    func writePrivate(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    }

    func temporaryDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-access-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return directory
    }

    /// The HS256 secret and the domain manager's admin token are refused, naming the key and
    /// the file, when others can read them, as key files are: either lets a reader act as admin.
    @Test func aSecretOrTokenFileOthersCanReadIsRefused() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secret = directory + "/secret"
        try writePrivate("0123456789abcdef0123456789abcdef", to: secret)
        _ = try NodeAccess(try settings(["auth.hs256-secret-file": secret], directory: directory))
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: secret)
        let error = #expect(throws: ConfigurationError.self) {
            try NodeAccess(try settings(["auth.hs256-secret-file": secret], directory: directory))
        }
        let text = error.map { "\($0)" } ?? ""
        #expect(text.contains("nodes.s1.auth.hs256-secret-file") && text.contains("chmod 600 \(secret)"), "\(text)")

        let token = directory + "/manager-token"
        try writePrivate("a.b.c", to: token)
        var manager = Configuration()
        manager.set("sequencers.addresses.0", "127.0.0.1:4401")
        manager.set("sequencers.token-file", token)
        _ = try SequencerEndpoints(manager, key: "sequencers")
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: token)
        let refused = #expect(throws: ConfigurationError.self) { try SequencerEndpoints(manager, key: "sequencers") }
        let reason = refused.map { "\($0)" } ?? ""
        #expect(reason.contains("sequencers.token-file") && reason.contains("mode 0640"), "\(reason)")
        #expect(throws: SecretFile.Refusal.self) { try SecretFile.text(token) }  // also at each connect
    }

    /// `auth.leeway` is whole seconds (tokens' times are) and bounded; the audit file limits
    /// are bounded; each bad value is refused naming its key.
    @Test func leewayAndAuditLimitsOutsideTheirRangeAreRefusedNamingTheKey() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secret = directory + "/secret"
        try writePrivate("0123456789abcdef0123456789abcdef", to: secret)
        let bad: [(key: String, value: String)] = [
            ("auth.leeway", "500ms"),  // became 0 s without a word
            ("auth.leeway", "1500ms"),
            ("auth.leeway", "1h"),
            ("auth.leeway", "9999999999999h"),
            ("audit.max-file-bytes", "0"),
            ("audit.max-file-bytes", "1KiB"),
            ("audit.max-files", "-1"),
            ("audit.max-files", "100000"),
        ]
        for (key, value) in bad {
            let extra = ["auth.hs256-secret-file": secret, "audit.file": directory + "/audit.log", key: value]
            let error = #expect(throws: ConfigurationError.self, "\(key)=\(value)") {
                try NodeAccess(try settings(extra, directory: directory))
            }
            guard case .invalid(let named, let shown, let expected, _)? = error else {
                Issue.record("\(key)=\(value): \(String(describing: error))")
                continue
            }
            #expect(named == "nodes.s1.\(key)" && shown == value && expected.contains(" from "), "\(key)=\(value): \(expected)")
        }
        let whole = try NodeAccess(try settings(["auth.hs256-secret-file": secret, "auth.leeway": "2000ms"], directory: directory))
        guard case .tokens(let verifier) = whole.authorizer else {
            Issue.record("expected token verification")
            return
        }
        #expect(verifier.leewaySeconds == 2)
    }

    /// One HS256 secret shared by all nodes, no auth.audience: participant1's admin token
    /// (admin + participantId) is an admin token on participant1 only. The sequencer and the
    /// domain manager refuse it, saying whose token it is, instead of taking it as theirs.
    @Test func aParticipantsAdminTokenIsRefusedBySequencerAndDomainManager() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secret = directory + "/secret"
        let secretText = "0123456789abcdef0123456789abcdef"
        try writePrivate(secretText, to: secret)
        let participant1 = "participant1::1220aa"
        let participantAdmin = try HS256TokenIssuer.token(
            LedgerClaims(admin: true, expiresAt: 4_000_000_000), secret: Array(secretText.utf8),
            participantID: participant1)
        let nodeAdmin = try HS256TokenIssuer.token(
            LedgerClaims(admin: true, expiresAt: 4_000_000_000), secret: Array(secretText.utf8))
        func verifier(_ access: NodeAccess) -> BearerTokenVerifier? {
            if case .tokens(let verifier) = access.authorizer { verifier } else { nil }
        }

        for (kind, name) in [("sequencer", "sequencer"), ("domain-manager", "domain manager")] {
            let access = try NodeAccess(
                try settings(["auth.hs256-secret-file": secret], directory: directory, kind: kind))
            let node = try #require(verifier(access))
            do {
                let claims = try node.verify(participantAdmin, now: 3_999_999_999)
                Issue.record("\(kind) accepted participant1's token (admin: \(claims.admin))")
            } catch {
                #expect(error.id == "AUTH_PARTICIPANT_TOKEN", "\(kind): \(error)")
                #expect(
                    error.description.contains("a token for participant \(participant1) is not valid on this \(name) node"),
                    "\(error)")
            }
            // Its own admin token, without participantId, is accepted.
            #expect(try node.verify(nodeAdmin, now: 3_999_999_999).admin, "\(kind)")
        }

        let onParticipant1 = try #require(
            verifier(
                try NodeAccess(
                    try settings(["auth.hs256-secret-file": secret], directory: directory, kind: "participant"),
                    participantID: participant1)))
        #expect(try onParticipant1.verify(participantAdmin, now: 3_999_999_999).admin)
        let onParticipant2 = try #require(
            verifier(
                try NodeAccess(
                    try settings(["auth.hs256-secret-file": secret], directory: directory, kind: "participant"),
                    participantID: "participant2::1220bb")))
        #expect(throws: AuthError.wrongParticipant(expected: "participant2::1220bb", actual: participant1)) {
            try onParticipant2.verify(participantAdmin, now: 3_999_999_999)
        }
    }

    /// Tokens without auth.audience are accepted from any node sharing the key: the node
    /// says so at start; with an audience it does not.
    @Test func tokensWithoutAnAudienceAreWarnedAboutAtStart() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let secret = directory + "/secret"
        try writePrivate("0123456789abcdef0123456789abcdef", to: secret)
        let without = try NodeAccess(try settings(["auth.hs256-secret-file": secret], directory: directory))
        #expect(without.startWarnings.contains(where: { $0.contains("without auth.audience") }), "\(without.startWarnings)")
        let with = try NodeAccess(
            try settings(["auth.hs256-secret-file": secret, "auth.audience": "s1"], directory: directory))
        #expect(with.startWarnings.isEmpty, "\(with.startWarnings)")
        let open = try NodeAccess(try settings([:], directory: directory))
        #expect(open.startWarnings.count == 1 && open.startWarnings[0].contains("UNAUTHENTICATED"))
    }

    @Test func noAuthSectionIsOpenAndKeysTurnTokensOn() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-access-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let open = try NodeAccess(try settings([:], directory: directory))
        #expect(!open.authorizer.requiresTokens && !open.adminRequiresToken && !open.adminLoopbackOnly)

        let secret = directory + "/secret"
        try writePrivate("0123456789abcdef0123456789abcdef\n", to: secret)
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
        try writePrivate("short", to: secret)
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

    /// `auth.admin-loopback-only` keeps all administration on the node's host: the Ledger API's
    /// methods that need the admin claim (allocating parties, uploading packages) are refused
    /// from another host as the admin services are (an admin token worked for them from anywhere);
    /// the Ledger API's other methods are not.
    @Test func theLedgerAPIsAdminMethodsAreLoopbackOnlyToo() async throws {
        let access = try NodeAccess(
            try settings(["auth.admin-loopback-only": "true"], directory: "/tmp", kind: "participant"), participantID: "participant1::1220aa")
        var router = RPCRouter()
        router.register(Weft.V1.PartyManagementService.allocateParty) { _, _ in .init() }
        router.register(Weft.V1.PackageManagementService.uploadPackage) { _, _ in .init() }
        router.register(Weft.V1.PackageManagementService.listPackages) { _, _ in .init() }
        access.install(
            on: &router, adminPaths: [], auditedPaths: Set(router.paths), adminClaimPaths: Set(LedgerAPI.adminMethods.map(\.path)),
            logger: .init(label: "test"))
        func call(_ path: String, from ip: String) async throws {
            let (payloads, requests) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
            requests.yield([])
            requests.finish()
            let context = RPCCallContext(method: path, remoteAddress: try SocketAddress(ipAddress: ip, port: 40000))
            _ = try await router.routes[path]!.handler(.init(payloads: payloads, consumed: { _ in }), { _ in }, context)
        }
        for method in [Weft.V1.PartyManagementService.allocateParty.path, Weft.V1.PackageManagementService.uploadPackage.path] {
            await #expect {
                try await call(method, from: "10.0.0.9")
            } throws: { error in
                (error as? RPCError)?.code == .permissionDenied && (error as? RPCError)?.errorID == "AUTH_ADMIN_LOOPBACK_ONLY"
            }
            try await call(method, from: "127.0.0.1")
        }
        try await call(Weft.V1.PackageManagementService.listPackages.path, from: "10.0.0.9")
    }
}
