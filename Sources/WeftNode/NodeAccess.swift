import Foundation
import Logging
import WeftAuth
import WeftCrypto
import WeftTransport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Who may call a node's APIs and where the audit trail goes (`auth.*` and `audit.*`
/// of a participant, sequencer or domain-manager node; docs/operations.md §security).
///
/// Without an `auth` section the APIs are open, as before tokens existed, and the node
/// says so in its log at start; the audit log is written either way.
struct NodeAccess {
    let authorizer: CallAuthorizer
    /// Admin services need a token with the admin claim (`auth.admin-tokens`, default true
    /// when tokens are configured).
    let adminRequiresToken: Bool
    /// Admin services answer only calls from loopback (`auth.admin-loopback-only`).
    let adminLoopbackOnly: Bool
    let audit: AuditLog

    /// The keys this type reads.
    static let keys: Set<String> = [
        "auth.hs256-secret-file", "auth.rs256-public-key-file", "auth.audience", "auth.issuer", "auth.leeway",
        "auth.admin-tokens",
        "auth.admin-loopback-only", "audit.file", "audit.max-file-bytes", "audit.max-files",
    ]

    /// Clock skew tolerated on `exp` and `nbf`: more than minutes would keep an expired
    /// token valid for as long.
    static let leewayRange = Duration.zero...Duration.seconds(600)
    /// An audit file rotates when a line would pass this size; below 64 KiB it would rotate
    /// every few calls.
    static let auditFileBytesRange = (64 << 10)...(64 << 30)
    static let auditFilesRange = 0...1000

    /// Reads the node's access settings. `participantID` is the participant's own id (given
    /// for a participant node only): a token's `participantId` claim must name it there, and
    /// on a sequencer or domain manager a token that names any participant is refused
    /// (`TokenVerifyingNode`), so the node's kind decides, not whether an id was passed.
    init(_ settings: NodeSettings, participantID: String? = nil) throws(ConfigurationError) {
        let section = settings.section
        let node: TokenVerifyingNode
        switch settings.kind {
        case .participant:
            guard let participantID else { preconditionFailure("a participant's NodeAccess needs the participant's id") }
            node = .participant(participantID)
        case .sequencer, .domainManager, .mediator:
            precondition(participantID == nil, "only a participant node has a participant id")
            node = .nonParticipant(settings.kind == .domainManager ? "domain manager" : settings.kind.rawValue)
        }
        func invalid(_ key: String, _ expected: String) -> ConfigurationError {
            .invalid(
                key: section.fullKey(key), value: section.string(key) ?? "", expected: expected,
                source: section.source(of: key) ?? .defaultValue)
        }
        var keys: [TokenVerificationKey] = []
        if let path = section.string("auth.hs256-secret-file") {
            do {
                try SecretFile.requirePrivate(path)
                keys.append(.hs256(secret: try TokenSecretFile.read(path)))
            } catch let refusal as SecretFile.Refusal {
                throw invalid("auth.hs256-secret-file", "a file holding the HS256 secret that only its owner can read (\(refusal))")
            } catch {
                throw invalid(
                    "auth.hs256-secret-file", "a readable file holding the HS256 secret (\(error.localizedDescription))"
                )
            }
        }
        if let path = section.string("auth.rs256-public-key-file") {
            do {
                keys.append(.rs256(try RSAPublicKey(pem: try String(contentsOfFile: path, encoding: .utf8))))
            } catch {
                throw invalid(
                    "auth.rs256-public-key-file",
                    "a PEM RSA public key of at least \(RSAPublicKey.minimumBits) bits (\(error))")
            }
        }
        let tokensConfigured = !keys.isEmpty
        if !tokensConfigured {
            for key in ["auth.audience", "auth.issuer", "auth.leeway", "auth.admin-tokens"]
            where section.string(key) != nil {
                throw invalid(key, "to go with auth.hs256-secret-file or auth.rs256-public-key-file, which are not set")
            }
            authorizer = .open
        } else {
            // Token times are whole seconds (`exp`, `nbf`) and so is the verifier's leeway: a
            // fraction would be dropped without a word (500ms became 0 s), so it is refused.
            let leewayExpected = "a whole number of seconds from 0s to 10m, e.g. 5s"
            let leeway: Duration
            do {
                leeway = try section.duration("auth.leeway", default: .seconds(5), in: Self.leewayRange)
            } catch {
                throw invalid("auth.leeway", leewayExpected)
            }
            guard leeway.components.attoseconds == 0 else { throw invalid("auth.leeway", leewayExpected) }
            do {
                authorizer = .tokens(
                    try BearerTokenVerifier(
                        keys: keys, audience: section.string("auth.audience"), issuer: section.string("auth.issuer"),
                        leewaySeconds: leeway.components.seconds, node: node))
            } catch {
                throw invalid(
                    section.string("auth.hs256-secret-file") != nil
                        ? "auth.hs256-secret-file" : "auth.rs256-public-key-file", "\(error)")
            }
        }
        adminRequiresToken = try section.bool("auth.admin-tokens", default: tokensConfigured)
        adminLoopbackOnly = try section.bool("auth.admin-loopback-only", default: false)

        var audit = Logger(label: AuditLog.label)
        if let file = section.string("audit.file") {
            if file == "stdout" {
                audit = Logger(label: AuditLog.label) { label in
                    AuditFileLogHandler(label: label, destination: .standardOutput)
                }
            } else {
                let maximumBytes = try section.bytes("audit.max-file-bytes", default: 64 << 20, in: Self.auditFileBytesRange)
                let keptFiles = try section.int("audit.max-files", default: 5, in: Self.auditFilesRange)
                let rotating: RotatingFile
                do {
                    rotating = try RotatingFile(path: file, maximumBytes: maximumBytes, keptFiles: keptFiles)
                } catch {
                    throw invalid("audit.file", "a file the node can create and append to, or stdout (\(error))")
                }
                audit = Logger(label: AuditLog.label) { label in
                    AuditFileLogHandler(label: label, destination: .file(rotating))
                }
            }
        }
        // Audit lines are kept whatever level the operational log runs at (WEFT_LOG_LEVEL).
        audit.logLevel = .info
        audit[metadataKey: "node"] = "\(settings.name)"
        self.audit = AuditLog(logger: audit)
    }

    /// Guards `adminPaths` and audits `auditedPaths` on `router`; logs at start what is open.
    /// `adminClaimPaths`: audited methods whose handlers require the admin claim (held to
    /// `auth.admin-loopback-only` as the admin services are).
    func install(
        on router: inout RPCRouter, adminPaths: Set<String>, auditedPaths: Set<String>, adminClaimPaths: Set<String> = [],
        logger: Logger
    ) {
        APIGuard(
            authorizer: authorizer, adminRequiresToken: adminRequiresToken, adminLoopbackOnly: adminLoopbackOnly,
            audit: audit
        )
        .install(on: &router, adminPaths: adminPaths, auditedPaths: auditedPaths, adminClaimPaths: adminClaimPaths)
        for warning in startWarnings {
            logger.warning("\(warning)", metadata: ["admin_loopback_only": "\(adminLoopbackOnly)"])
        }
    }

    /// What the node logs at start about access that is more open than it may look.
    var startWarnings: [String] {
        guard case .tokens(let verifier) = authorizer else {
            return [
                "the node's APIs are UNAUTHENTICATED: any client that passes TLS may call them; set auth.hs256-secret-file or auth.rs256-public-key-file (docs/operations.md §security)"
            ]
        }
        var warnings: [String] = []
        if !adminRequiresToken {
            warnings.append("admin services accept calls without an admin token (auth.admin-tokens: false)")
        }
        // Without an audience, any token signed with this node's key is taken here: with a key
        // shared by several nodes (one HS256 secret, one identity provider), a token minted for
        // another node, its admin token included, works on this one.
        if verifier.audience == nil {
            warnings.append(
                "tokens are checked without auth.audience: this node accepts every token signed with its key, also those meant for other nodes that share the key; set auth.audience to this node's name (docs/operations.md §security)"
            )
        }
        return warnings
    }
}

/// Files that hold a secret other than a key (the HS256 secret, a bearer token) are refused
/// when its group or others may read them, as `KeyFile` refuses key files: whoever reads the
/// HS256 secret can sign admin tokens, and whoever reads a token can use it.
enum SecretFile {
    /// Why a secret file is refused, naming the file and what to do.
    struct Refusal: Error, CustomStringConvertible {
        let description: String
    }

    /// Throws unless `path` can be opened and neither its group nor others may read or write it.
    static func requirePrivate(_ path: String) throws(Refusal) {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Refusal(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw Refusal(description: "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        let mode = status.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw Refusal(
                description: "\(path) has mode 0\(String(mode, radix: 8)): its group or others can read the secret; run chmod 600 \(path)")
        }
    }

    /// The file's text, once `requirePrivate` accepts it.
    static func text(_ path: String) throws -> String {
        try requirePrivate(path)
        return try String(contentsOfFile: path, encoding: .utf8)
    }
}
