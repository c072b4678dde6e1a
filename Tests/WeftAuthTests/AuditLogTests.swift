import Foundation
import Logging
import NIOCore
import Testing
import WeftTransport
import WeftWire

@testable import WeftAuth

/// The audit log's file: whole JSON lines, rotated by size, old files dropped.
@Suite struct AuditLogTests {
    func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-audit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    @Test func theFileRotatesBySizeKeepsWholeLinesAndDropsTheOldest() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("audit.log").path
        let file = try RotatingFile(path: path, maximumBytes: 100, keptFiles: 2)
        // 40-byte lines: two fit in 100 bytes, the third starts a new file.
        let lines = (0..<7).map { String(format: "line %02d ", $0) + String(repeating: "x", count: 31) + "\n" }
        #expect(lines.allSatisfy { $0.utf8.count == 40 })
        for line in lines { file.write(Array(line.utf8)) }
        func read(_ suffix: String) throws -> String { try String(contentsOfFile: path + suffix, encoding: .utf8) }
        #expect(try read("") == lines[6])
        #expect(try read(".1") == lines[4] + lines[5])
        #expect(try read(".2") == lines[2] + lines[3])
        #expect(!FileManager.default.fileExists(atPath: path + ".3"))  // lines 0 and 1 are gone: two rotated files kept
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    @Test func reopeningAppendsAndCountsWhatIsThere() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("audit.log").path
        try RotatingFile(path: path, maximumBytes: 100, keptFiles: 1).write(
            Array(String(repeating: "a", count: 79).utf8 + [10]))
        // A restarted node appends; its next line does not fit the 100 bytes and rotates.
        let again = try RotatingFile(path: path, maximumBytes: 100, keptFiles: 1)
        again.write(Array(String(repeating: "b", count: 29).utf8 + [10]))
        #expect(try String(contentsOfFile: path + ".1", encoding: .utf8).hasPrefix("aaa"))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == String(repeating: "b", count: 29) + "\n")
    }

    @Test func anAuditLineIsOneJSONObjectWithTheCallsFields() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("audit.log").path
        let file = try RotatingFile(path: path, maximumBytes: 1 << 20, keptFiles: 1)
        let audit = AuditLog(
            logger: Logger(label: AuditLog.label) { AuditFileLogHandler(label: $0, destination: .file(file)) })
        let context = RPCCallContext(
            method: "/weft.v1.CommandService/Submit",
            metadata: [
                .init(key: "traceparent", value: .textValue("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
            ],
            remoteAddress: try SocketAddress(ipAddress: "10.1.2.3", port: 5000))
        audit.record(
            context, CallRecord(), code: .permissionDenied, errorID: "AUTH_MISSING_CLAIM", elapsed: .milliseconds(3))
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.filter { $0 == "\n" }.count == 1 && text.hasSuffix("\n"))
        let line = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String])
        #expect(line[AuditLogKey.caller] == "anonymous")
        #expect(line[AuditLogKey.method] == "/weft.v1.CommandService/Submit")
        #expect(line[AuditLogKey.code] == "PERMISSION_DENIED" && line[AuditLogKey.errorID] == "AUTH_MISSING_CLAIM")
        #expect(line[AuditLogKey.traceID] == "0af7651916cd43dd8448eb211c80319c")
        #expect(line[AuditLogKey.peer]?.contains("10.1.2.3") == true)
        #expect(line[AuditLogKey.durationMilliseconds] == "3.000")
        #expect(line["logger"] == "weft.audit" && line["level"] == "info" && line["time"] != nil)
    }

    /// A call asking to act as 100 parties of 40 KiB each (under the 4 MiB frame) is refused,
    /// but its audit line is written before the parties are validated: it must stay short, or
    /// about a hundred such calls from any token holder would rotate every earlier line out.
    @Test func aCallAskingForHugePartiesWritesAShortAuditLineThatSaysItWasCut() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("audit.log").path
        let file = try RotatingFile(path: path, maximumBytes: 64 << 20, keptFiles: 1)
        let audit = AuditLog(
            logger: Logger(label: AuditLog.label) { AuditFileLogHandler(label: $0, destination: .file(file)) })
        let secret = Array("a shared secret of at least 32 bytes, for HS256".utf8)
        let authorizer = CallAuthorizer.tokens(try BearerTokenVerifier(keys: [.hs256(secret: secret)]))
        let token = try HS256TokenIssuer.token(
            LedgerClaims(actAs: ["alice::1220aa"], subject: "alice-app", expiresAt: 4_000_000_000), secret: secret)
        let context = RPCCallContext(
            method: "/weft.v1.CommandService/SubmitAndWait",
            metadata: [.init(key: "authorization", value: .textValue("Bearer \(token)"))])
        let parties = (0..<100).map { String(format: "p%03d::", $0) + String(repeating: "x", count: 40 << 10) }
        let record = CallRecord()
        let refusal = CallRecord.$current.withValue(record) { () -> AuthError? in
            do throws(AuthError) {
                try authorizer.requireActAs(parties, context)
                return nil
            } catch {
                return error
            }
        }
        #expect(refusal?.id == "AUTH_MISSING_CLAIM")
        // The refusal's message (logged by the Ledger API) names the party cut short too.
        #expect((refusal?.description.utf8.count ?? .max) < 1024, "\(String(describing: refusal).prefix(300))")
        // Each party is recorded as its first 255 bytes and how many were left out.
        #expect(record.actAs.count == 100)
        let partyBytes = parties[0].utf8.count
        #expect(record.actAs.allSatisfy { $0.hasSuffix("…(+\(partyBytes - 255) bytes)") && $0.utf8.count < 300 })

        audit.record(
            context, record, code: .permissionDenied, errorID: "AUTH_MISSING_CLAIM", elapsed: .milliseconds(1))
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        // At most 16 KiB and its line break; the parties alone, cut to 255 bytes, make 27 KiB.
        #expect(data.count < 32 << 10, "the audit line is \(data.count) bytes")
        #expect(data.count <= (16 << 10) + 1, "the audit line is \(data.count) bytes")
        let line = try #require(try JSONSerialization.jsonObject(with: data) as? [String: String])
        #expect(line["truncated"] == AuditLogKey.actAs)
        #expect(line[AuditLogKey.actAs]?.hasPrefix("p000::xxx") == true)
        #expect(line[AuditLogKey.actAs]?.contains("…(cut ") == true)
        #expect(line[AuditLogKey.caller] == "alice-app" && line[AuditLogKey.code] == "PERMISSION_DENIED")
    }

    /// Whatever its fields, a line written is at most `lineBytesMax` bytes, valid JSON, and
    /// names what was cut; the fields that were short enough are whole.
    @Test func anOverlongLineHasItsLongFieldsCutAndSaysWhich() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("audit.log").path
        let file = try RotatingFile(path: path, maximumBytes: 64 << 20, keptFiles: 1)
        let logger = Logger(label: AuditLog.label) { AuditFileLogHandler(label: $0, destination: .file(file)) }
        // 3-byte characters: a cut at a byte count must back off to a whole character.
        let long = String(repeating: "€", count: 1 << 18)
        logger.info("api call", metadata: ["read_as": "\(long)", "act_as": "\(long)", "caller": "ops"])
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(data.count <= AuditFileLogHandler.lineBytesMax + 1, "the line is \(data.count) bytes")
        let line = try #require(try JSONSerialization.jsonObject(with: data) as? [String: String])
        #expect(line[AuditLogKey.truncated] == "act_as,read_as")
        #expect(line["caller"] == "ops" && line["message"] == "api call")
        let cut = try #require(line["act_as"])
        let kept = try #require(cut.components(separatedBy: "…(cut ").first)
        #expect(!kept.isEmpty && kept.allSatisfy { $0 == "€" })
        #expect(cut.hasSuffix(" of \(3 << 18) bytes)"))

        // A party is cut on a character boundary too, and a party id of normal length is whole.
        #expect(CallRecord.recorded("alice::1220aa") == "alice::1220aa")
        #expect(CallRecord.recorded(String(repeating: "€", count: 100)) == String(repeating: "€", count: 85) + "…(+45 bytes)")
    }

    @Test func statusNamesAreGRPCs() {
        #expect(AuditLog.grpcName(.ok) == "OK")
        #expect(AuditLog.grpcName(.permissionDenied) == "PERMISSION_DENIED")
        #expect(AuditLog.grpcName(.unauthenticated) == "UNAUTHENTICATED")
        #expect(AuditLog.grpcName(.internal) == "INTERNAL")
        #expect(AuditLog.grpcName(.deadlineExceeded) == "DEADLINE_EXCEEDED")
    }

    @Test func loopbackIsThisHostOnly() throws {
        #expect(APIGuard.isLoopback(try SocketAddress(ipAddress: "127.0.0.1", port: 1)))
        #expect(APIGuard.isLoopback(try SocketAddress(ipAddress: "127.8.9.10", port: 1)))
        #expect(APIGuard.isLoopback(try SocketAddress(ipAddress: "::1", port: 1)))
        #expect(!APIGuard.isLoopback(try SocketAddress(ipAddress: "10.0.0.1", port: 1)))
        #expect(!APIGuard.isLoopback(try SocketAddress(ipAddress: "::2", port: 1)))
        #expect(!APIGuard.isLoopback(nil))
    }

    @Test func issuedTokensVerifyAndCarryTheirClaims() throws {
        let secret = Array("a shared secret of at least 32 bytes, for HS256".utf8)
        let claims = LedgerClaims(
            actAs: ["alice::1220aa"], readAs: ["bob::1220bb"], admin: true, applicationID: "app", subject: "me",
            expiresAt: 4_000_000_000)
        let token = try HS256TokenIssuer.token(claims, secret: secret, audience: "p1", issuer: "idp")
        let verified = try BearerTokenVerifier(keys: [.hs256(secret: secret)], audience: "p1", issuer: "idp").verify(
            token, now: 3_999_999_999)
        #expect(verified == claims)
    }

    @Test func adminCallsFromAnotherHostAreRefusedWhenLoopbackOnly() throws {
        let method = "/weft.v1.ParticipantAdministrationService/ConnectDomain"
        let remote = RPCCallContext(
            method: method, remoteAddress: try SocketAddress(ipAddress: "10.0.0.9", port: 40000))
        let local = RPCCallContext(
            method: method, remoteAddress: try SocketAddress(ipAddress: "127.0.0.1", port: 40000))
        let loopbackOnly = APIGuard(authorizer: .open, adminRequiresToken: false, adminLoopbackOnly: true)
        #expect(throws: AuthError.adminNotLoopback(peer: "\(remote.remoteAddress!)", call: method)) {
            try loopbackOnly.checkAdmin(remote)
        }
        try loopbackOnly.checkAdmin(local)
        #expect(AuthError.adminNotLoopback(peer: "x", call: method).rpcError.code == .permissionDenied)

        // With tokens, loopback is not enough: the admin claim is needed too.
        let secret = Array("a shared secret of at least 32 bytes, for HS256".utf8)
        let both = APIGuard(
            authorizer: .tokens(try BearerTokenVerifier(keys: [.hs256(secret: secret)])), adminRequiresToken: true,
            adminLoopbackOnly: true)
        #expect(throws: AuthError.missingToken) { try both.checkAdmin(local) }
        let notAdmin = try HS256TokenIssuer.token(
            LedgerClaims(actAs: ["alice::1220aa"], expiresAt: 4_000_000_000), secret: secret)
        let admin = try HS256TokenIssuer.token(LedgerClaims(admin: true, expiresAt: 4_000_000_000), secret: secret)
        func context(_ token: String, _ address: SocketAddress) -> RPCCallContext {
            RPCCallContext(
                method: method, metadata: [.init(key: "authorization", value: .textValue("Bearer \(token)"))],
                remoteAddress: address)
        }
        #expect(throws: AuthError.missingClaim(claim: "admin", value: nil, call: method)) {
            try both.checkAdmin(context(notAdmin, local.remoteAddress!))
        }
        try both.checkAdmin(context(admin, local.remoteAddress!))
        #expect(throws: AuthError.adminNotLoopback(peer: "\(remote.remoteAddress!)", call: method)) {
            try both.checkAdmin(context(admin, remote.remoteAddress!))
        }
    }
}
