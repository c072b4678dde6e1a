import ArgumentParser
import Foundation
import WeftAuth
import WeftNode

/// `weft token`: signs an HS256 bearer token with a node's shared secret, for development,
/// tests and the demo. Production tokens come from an identity provider (RS256); the node
/// only verifies them.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Sign an HS256 bearer token for the Ledger or admin APIs (development and tests).",
        discussion: """
            Signs with the secret file the node reads as auth.hs256-secret-file, and prints the token.
            Use it with --token, --token-file or WEFT_TOKEN on the remote verbs. Production
            tokens come from your identity provider.
            """)

    @Option(name: .customLong("secret-file"), help: "The node's auth.hs256-secret-file (at least 32 bytes).")
    var secretFile: String

    @Option(name: .customLong("act-as"), help: "A party the token may submit for (and read as); repeat for more.")
    var actAs: [String] = []

    @Option(name: .customLong("read-as"), help: "A party the token may read as; repeat for more.")
    var readAs: [String] = []

    @Flag(help: "Grant the admin claim (party and package management, admin services).")
    var admin = false

    @Option(help: "The token's subject (sub), as the audit log shows the caller.")
    var subject: String?

    @Option(help: "The audience (aud): the node's auth.audience.")
    var audience: String?

    @Option(help: "The issuer (iss): the node's auth.issuer.")
    var issuer: String?

    @Option(name: .customLong("application-id"), help: "Restrict the token to this application id.")
    var applicationID: String?

    @Option(
        name: .customLong("participant-id"),
        help:
            "Restrict the token to this participant (participantId, e.g. participant1::1220…): other participants, sequencers and domain managers refuse it."
    )
    var participantID: String?

    @Option(
        name: .customLong("expires-in"),
        help: "How long the token is valid, e.g. 10m or 1h; a negative value (-1h) makes an expired token for tests.")
    var expiresIn: String = "1h"

    @Option(help: "text (the token alone) or json (the token and its expiry).") var output: OutputFormat = .text

    func run() throws {
        let negative = expiresIn.hasPrefix("-")
        guard let duration = Configuration.parseDuration(negative ? String(expiresIn.dropFirst()) : expiresIn) else {
            throw ValidationError("--expires-in \(expiresIn): expected a duration such as 10m or 1h")
        }
        let secret: [UInt8]
        do {
            secret = try TokenSecretFile.read(secretFile)
        } catch {
            throw ValidationError("cannot read the secret file \(secretFile): \(error.localizedDescription)")
        }
        guard secret.count >= TokenVerificationKey.minimumSecretBytes else {
            throw ValidationError(
                "the secret in \(secretFile) has \(secret.count) bytes; HS256 needs at least \(TokenVerificationKey.minimumSecretBytes)"
            )
        }
        let seconds = duration.components.seconds * (negative ? -1 : 1)
        let expiresAt = Int64(Date().timeIntervalSince1970) + seconds
        let claims = LedgerClaims(
            actAs: Set(actAs), readAs: Set(readAs), admin: admin, applicationID: applicationID, subject: subject,
            expiresAt: expiresAt)
        let token = try HS256TokenIssuer.token(
            claims, secret: secret, audience: audience, issuer: issuer, participantID: participantID)
        switch output {
        case .text: print(token)
        case .json: try printJSON(["token": token, "expires_at": expiresAt])
        }
    }
}
