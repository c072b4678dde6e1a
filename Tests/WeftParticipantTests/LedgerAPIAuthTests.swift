import Foundation
import Logging
import Testing
import WeftAuth
import WeftLedgerAPI
import WeftTestSupport
import WeftTransport
import WeftWire

/// The secured Ledger API (issue 8, item 3): a participant's Ledger API over TLS on loopback
/// with HS256 token verification and the audit log in a file, as a node configures it
/// (`auth.*`, `audit.file`). Each refusal of the acceptance gets its status, its error id and
/// a message naming what is missing, and leaves an audit line; so does every granted call.
extension LedgerAPITests {
    static let audience = "weft-test-participant2"
    static let secret = Array("the participant's HS256 secret, 32 bytes or more".utf8)

    /// A token for `claims` from the test's "identity provider".
    static func token(
        actAs: [String] = [], readAs: [String] = [], admin: Bool = false, subject: String,
        expiresIn seconds: Int64 = 3600,
        secret: [UInt8] = secret, audience: String = audience
    ) throws -> String {
        try HS256TokenIssuer.token(
            LedgerClaims(
                actAs: Set(actAs), readAs: Set(readAs), admin: admin, subject: subject,
                expiresAt: Int64(Date().timeIntervalSince1970) + seconds),
            secret: secret, audience: audience)
    }

    static func bearer(_ token: String) -> [Weft.V1.MetadataEntry] {
        [.init(key: "authorization", value: .textValue("Bearer \(token)"))]
    }

    /// The audit file's lines, each a JSON object.
    static func auditLines(_ path: String) throws -> [[String: String]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
            try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], "not a JSON line: \(line)"
            )
        }
    }

    @Test func theLedgerAPIRefusesCallsWithoutTheRightTokenAndAuditsEveryCall() async throws {
        #expect(
            FileManager.default.isExecutableFile(atPath: WeftRun.executable.path), "build the weft executable first")
        try await PostgresFixture.withFixture { fixture in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "weft-auth-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let auditPath = directory.appendingPathComponent("audit.log").path
            let audit = try RotatingFile(path: auditPath, maximumBytes: 1 << 20, keptFiles: 2)
            let guardian = APIGuard(
                authorizer: .tokens(
                    try BearerTokenVerifier(keys: [.hs256(secret: Self.secret)], audience: Self.audience, leewaySeconds: 0)),
                audit: AuditLog(
                    logger: Logger(label: AuditLog.label) { AuditFileLogHandler(label: $0, destination: .file(audit)) })
            )

            let harness = try await DomainHarness.start(url: fixture.url)
            let api = try await LedgerAPIEndpoint.start(harness, 1, guardian: guardian)
            let (alice, bob, bank) = (harness.alice.id, harness.bob.id, harness.bank.id)
            let packageID = try #require(try await harness.nodes[1].storedPackages().first).id.description
            let iou = IOUCommands(packageID: packageID)
            func submit(_ id: String, _ metadata: [Weft.V1.MetadataEntry]) async throws -> Weft.V1.SubmitAndWaitResponse
            {
                try await api.client.command.submitAndWait(
                    .init(
                        commands: iou.commands(
                            iou.issue("5", from: bank, to: bob), actAs: bank, application: "bank-app", id: id)),
                    metadata: metadata)
            }

            // 1. No token: UNAUTHENTICATED, and the message says how to send one.
            let none = await rpcError { _ = try await submit("no-token", []) }
            #expect(none?.code == .unauthenticated && none?.errorID == "AUTH_TOKEN_MISSING")
            #expect(none?.message.contains("authorization: Bearer") == true)

            // 2. An expired token (beyond the 5 s leeway).
            let expired = await rpcError {
                _ = try await submit(
                    "expired", Self.bearer(try Self.token(actAs: [bank], subject: "bank-ops", expiresIn: -60)))
            }
            #expect(expired?.code == .unauthenticated && expired?.errorID == "AUTH_TOKEN_EXPIRED")
            #expect(expired?.message.contains("expired") == true)

            // 3. A valid token for another party: PERMISSION_DENIED naming the claim and the party.
            let other = await rpcError {
                _ = try await submit("other-party", Self.bearer(try Self.token(actAs: [alice], subject: "alice-app")))
            }
            #expect(other?.code == .permissionDenied && other?.errorID == "AUTH_MISSING_CLAIM")
            #expect(other?.message.contains("actAs") == true && other?.message.contains(bank) == true)

            // 4. A token signed with another key.
            let forged = await rpcError {
                _ = try await submit(
                    "wrong-key",
                    Self.bearer(
                        try Self.token(
                            actAs: [bank], subject: "mallory",
                            secret: Array("another secret of at least 32 bytes!!".utf8))))
            }
            #expect(forged?.code == .unauthenticated && forged?.errorID == "AUTH_BAD_SIGNATURE")

            // 5. `alg: none`: no signature at all.
            let payload =
                #"{"sub":"mallory","aud":"\#(Self.audience)","exp":\#(Int64(Date().timeIntervalSince1970) + 3600),"https://daml.com/ledger-api":{"actAs":["\#(bank)"]}}"#
            let unsigned =
                HS256TokenIssuer.encode(Array(#"{"alg":"none","typ":"JWT"}"#.utf8)) + "."
                + HS256TokenIssuer.encode(Array(payload.utf8)) + "."
            let algNone = await rpcError { _ = try await submit("alg-none", Self.bearer(unsigned)) }
            #expect(algNone?.code == .unauthenticated && algNone?.errorID == "AUTH_ALGORITHM_NOT_ALLOWED")
            #expect(algNone?.message.contains("none") == true)

            // None of them submitted anything; the bank's own token does.
            let bankToken = try Self.token(actAs: [bank], subject: "bank-ops")
            let granted = try await submit("granted", Self.bearer(bankToken))
            #expect(granted.offset == 1)

            // Reading needs readAs or actAs for every party of the filter.
            let read = await rpcError {
                for try await _ in try api.client.activeContracts.getActiveContracts(
                    .init(filter: .init(parties: [bob])), metadata: Self.bearer(bankToken))
                {}
            }
            #expect(
                read?.code == .permissionDenied && read?.message.contains(bob) == true
                    && read?.message.contains("readAs") == true)
            var bobsContracts = 0
            for try await response in try api.client.activeContracts.getActiveContracts(
                .init(filter: .init(parties: [bob])),
                metadata: Self.bearer(try Self.token(readAs: [bob], subject: "bob-viewer")))
            {
                bobsContracts += response.activeContracts.count
            }
            #expect(bobsContracts == 1)

            // Party management and package uploads are admin calls; listing packages is not.
            let listed = try await api.client.packageManagement.listPackages(.init(), metadata: Self.bearer(bankToken))
            #expect(!listed.packages.isEmpty)
            let notAdmin = await rpcError {
                _ = try await api.client.partyManagement.listKnownParties(.init(), metadata: Self.bearer(bankToken))
            }
            #expect(notAdmin?.code == .permissionDenied && notAdmin?.errorID == "AUTH_MISSING_CLAIM")
            #expect(notAdmin?.message.contains("needs claim admin") == true)
            let adminToken = try Self.token(admin: true, subject: "participant-admin")
            let parties = try await api.client.partyManagement.listKnownParties(
                .init(), metadata: Self.bearer(adminToken))
            #expect(parties.partyDetails.map(\.party).contains(bank))
            // A token for another audience (another participant) is refused too.
            let elsewhere = await rpcError {
                _ = try await api.client.packageManagement.listPackages(
                    .init(),
                    metadata: Self.bearer(
                        try Self.token(admin: true, subject: "participant-admin", audience: "participant9")))
            }
            #expect(elsewhere?.code == .unauthenticated && elsewhere?.errorID == "AUTH_WRONG_AUDIENCE")

            // The audit file: one line per call, in order, with caller, method, parties and outcome.
            let lines = try Self.auditLines(auditPath)
            let expected: [(caller: String, method: String, code: String, errorID: String)] = [
                ("unauthenticated", "/weft.v1.CommandService/SubmitAndWait", "UNAUTHENTICATED", "AUTH_TOKEN_MISSING"),
                ("unauthenticated", "/weft.v1.CommandService/SubmitAndWait", "UNAUTHENTICATED", "AUTH_TOKEN_EXPIRED"),
                ("alice-app", "/weft.v1.CommandService/SubmitAndWait", "PERMISSION_DENIED", "AUTH_MISSING_CLAIM"),
                ("unauthenticated", "/weft.v1.CommandService/SubmitAndWait", "UNAUTHENTICATED", "AUTH_BAD_SIGNATURE"),
                (
                    "unauthenticated", "/weft.v1.CommandService/SubmitAndWait", "UNAUTHENTICATED",
                    "AUTH_ALGORITHM_NOT_ALLOWED"
                ),
                ("bank-ops", "/weft.v1.CommandService/SubmitAndWait", "OK", ""),
                (
                    "bank-ops", "/weft.v1.ActiveContractsService/GetActiveContracts", "PERMISSION_DENIED",
                    "AUTH_MISSING_CLAIM"
                ),
                ("bob-viewer", "/weft.v1.ActiveContractsService/GetActiveContracts", "OK", ""),
                ("bank-ops", "/weft.v1.PackageManagementService/ListPackages", "OK", ""),
                (
                    "bank-ops", "/weft.v1.PartyManagementService/ListKnownParties", "PERMISSION_DENIED",
                    "AUTH_MISSING_CLAIM"
                ),
                ("participant-admin", "/weft.v1.PartyManagementService/ListKnownParties", "OK", ""),
                (
                    "unauthenticated", "/weft.v1.PackageManagementService/ListPackages", "UNAUTHENTICATED",
                    "AUTH_WRONG_AUDIENCE"
                ),
            ]
            #expect(lines.count == expected.count, "\(lines)")
            for (line, want) in zip(lines, expected) {
                #expect(line[AuditLogKey.caller] == want.caller, "\(line)")
                #expect(line[AuditLogKey.method] == want.method, "\(line)")
                #expect(line[AuditLogKey.code] == want.code, "\(line)")
                #expect(line[AuditLogKey.errorID] == want.errorID, "\(line)")
                #expect(line["logger"] == AuditLog.label && line["message"] == AuditLog.message)
                #expect(line[AuditLogKey.peer]?.contains("127.0.0.1") == true, "\(line)")
            }
            #expect(lines.first?[AuditLogKey.actAs] == "")  // refused before the request was read
            #expect(lines.dropFirst(2).first?[AuditLogKey.actAs] == bank)  // what the call asked for, though refused
            #expect(lines.dropFirst(6).first?[AuditLogKey.readAs] == bob)
            #expect(lines.dropFirst(10).first?[AuditLogKey.admin] == "true")

            // The CLI: `weft token` signs with the secret file; the remote verbs send --token,
            // --token-file or WEFT_TOKEN.
            let secretFile = directory.appendingPathComponent("secret").path
            try (String(decoding: Self.secret, as: UTF8.self) + "\n").write(
                toFile: secretFile, atomically: true, encoding: .utf8)
            let rootFile = directory.appendingPathComponent("root.pem").path
            try api.rootPEM.write(toFile: rootFile, atomically: true, encoding: .utf8)
            let remote = ["--remote", "127.0.0.1:\(api.server.port)", "--root-cert", rootFile]
            let minted = try await WeftRun.run(
                [
                    "token", "--secret-file", secretFile, "--act-as", bank, "--audience", Self.audience, "--subject",
                    "cli-user",
                ])
            #expect(minted.status == 0, "\(minted.errors)")
            let cliToken = minted.output.trimmingCharacters(in: .whitespacesAndNewlines)
            let end = try await WeftRun.run(["ledger-end", "--token", cliToken] + remote)
            #expect(
                end.status == 0 && end.output.trimmingCharacters(in: .whitespacesAndNewlines) == "1", "\(end.errors)")
            let tokenFile = directory.appendingPathComponent("token").path
            try cliToken.write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let acs = try await WeftRun.run(
                ["acs", "--party", bank, "--token-file", tokenFile, "--output", "json"] + remote)
            // The bank's contract, then the offset the set is valid at.
            #expect(acs.status == 0 && acs.jsonLines.count == 2, "\(acs.errors)")
            #expect(acs.jsonLines.last?["offset"] as? Int == 1, "\(acs.output)")
            // A template named without its package id is found with an application's token.
            let byName = try await WeftRun.run(
                ["acs", "--party", bank, "--template", "Iou", "--token-file", tokenFile, "--output", "json"] + remote)
            #expect(byName.status == 0 && byName.jsonLines.count == 2, "\(byName.errors)")
            let viaEnvironment = try await TestSubprocess.run(
                [WeftRun.executable.path, "ledger-end"] + remote,
                environment: ProcessInfo.processInfo.environment.merging(["WEFT_TOKEN": cliToken]) { $1 })
            #expect(viaEnvironment.status == 0, "\(viaEnvironment.error)")
            let noToken = try await WeftRun.run(["ledger-end"] + remote)
            #expect(noToken.status == 1 && noToken.errors.contains("AUTH_TOKEN_MISSING"), "\(noToken.errors)")
            let notAdminCLI = try await WeftRun.run(["party", "list", "--token", cliToken] + remote)
            #expect(
                notAdminCLI.status == 1 && notAdminCLI.errors.contains("needs claim admin"), "\(notAdminCLI.errors)")
            let cliLines = try Self.auditLines(auditPath).dropFirst(expected.count)
            #expect(
                cliLines.map { $0[AuditLogKey.caller] } == [
                    // ledger-end, acs, acs --template (ListPackages, then the contracts), ledger-end
                    // with WEFT_TOKEN, ledger-end without a token, party list
                    "cli-user", "cli-user", "cli-user", "cli-user", "cli-user", "unauthenticated", "cli-user",
                ])

            // A stream lives no longer than its token: it delivers, then ends when the token expires.
            let shortLived = try Self.token(actAs: [bank], subject: "short-lived", expiresIn: 3)
            var received = 0
            let ended = await rpcError {
                for try await _ in try api.client.transaction.getTransactions(
                    .init(filter: .init(parties: [bank])), metadata: Self.bearer(shortLived))
                {
                    received += 1
                }
            }
            #expect(received == 1)
            #expect(ended?.code == .unauthenticated && ended?.errorID == "AUTH_TOKEN_EXPIRED", "\(String(describing: ended))")
            let last = try Self.auditLines(auditPath).last
            #expect(last?[AuditLogKey.caller] == "short-lived" && last?[AuditLogKey.errorID] == "AUTH_TOKEN_EXPIRED")
            #expect(last?[AuditLogKey.method] == "/weft.v1.TransactionService/GetTransactions")

            await api.stop()
            await harness.stop()
        }
    }
}
