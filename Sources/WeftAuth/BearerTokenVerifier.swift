import Foundation
public import WeftCrypto

/// A key that may verify bearer tokens, with the one algorithm it verifies.
///
/// Binding each key to its algorithm is what stops algorithm confusion: an
/// attacker who puts `"alg":"HS256"` on a token and HMACs it with an RSA
/// public key (which is public) finds no HS256 key to check it against.
public enum TokenVerificationKey: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// HMAC-SHA256 with a shared secret (at least 32 bytes, RFC 7518 §3.2).
    case hs256(secret: [UInt8], keyID: String? = nil)
    /// RSASSA-PKCS1-v1_5 SHA-256 with an identity provider's public key.
    case rs256(RSAPublicKey, keyID: String? = nil)

    var algorithm: String {
        switch self {
        case .hs256: "HS256"
        case .rs256: "RS256"
        }
    }

    /// The algorithm and key id, never the HS256 secret (whoever has it can mint any token):
    /// a verifier or an authorizer interpolated into a log line or an error prints this.
    public var description: String {
        switch self {
        case .hs256(_, let keyID): "HS256 key\(keyID.map { " \($0)" } ?? "") (secret redacted)"
        case .rs256(_, let keyID): "RS256 key\(keyID.map { " \($0)" } ?? "")"
        }
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .enum) }

    var keyID: String? {
        switch self {
        case .hs256(_, let id), .rs256(_, let id): id
        }
    }

    /// The shortest HS256 secret accepted: RFC 7518 §3.2 wants a key as long as the hash.
    public static let minimumSecretBytes = 32
}

/// What a verified token allows (Canton's Ledger API custom claims,
/// `https://daml.com/ledger-api`).
public struct LedgerClaims: Sendable, Equatable {
    /// Parties the caller may submit commands for (and read as).
    public var actAs: Set<String>
    /// Parties the caller may read as.
    public var readAs: Set<String>
    /// Whether the caller may use the admin services (parties, packages, administration).
    public var admin: Bool
    /// The application the caller is, when the token names one: commands must use it.
    public var applicationID: String?
    /// The token's subject (`sub`), for the audit log.
    public var subject: String?
    /// When the token expires (seconds since the epoch).
    public var expiresAt: Int64

    public init(actAs: Set<String> = [], readAs: Set<String> = [], admin: Bool = false, applicationID: String? = nil, subject: String? = nil, expiresAt: Int64) {
        self.actAs = actAs
        self.readAs = readAs
        self.admin = admin
        self.applicationID = applicationID
        self.subject = subject
        self.expiresAt = expiresAt
    }

    /// Parties the caller may read as: `actAs` ∪ `readAs`.
    public var readable: Set<String> { actAs.union(readAs) }
}

/// The node a verifier works for, which decides what a token's `participantId` claim means.
///
/// Nodes may share one HS256 secret or one identity provider; without `aud` checks, a token
/// minted for one of them verifies on all. `participantId` narrows a token to one
/// participant, so a node that is no participant must refuse it rather than ignore it: a
/// participant's admin token would otherwise be an admin token of the sequencer and the
/// domain manager too.
public enum TokenVerifyingNode: Sendable, Equatable {
    /// No node said (a library use): `participantId` is checked only to be a string.
    case unspecified
    /// The participant with this id: a token that names a participant must name this one.
    case participant(String)
    /// A node that is not a participant, named by its kind for messages ("sequencer",
    /// "domain manager"): a token that names any participant is refused.
    case nonParticipant(String)
}

/// Verifies JWS compact-serialized bearer tokens (RFC 7515, RFC 7519) signed
/// with HS256 or RS256 and reads their Ledger API claims.
///
/// Written on the OpenSSL Weft already links rather than on jwt-kit: jwt-kit
/// brings a second cryptography stack (swift-crypto's BoringSSL) for two
/// algorithms, and verification is a narrow job done strictly here — one
/// algorithm per key, no `none`, no `crit` extensions, `exp` required, sizes
/// bounded before anything is decoded. Tests check it against tokens minted by
/// PyJWT, an independent implementation.
public struct BearerTokenVerifier: Sendable {
    public let keys: [TokenVerificationKey]
    /// The audience the token must name (`aud`), when set: the participant's own id or URL.
    public let audience: String?
    /// The issuer the token must name (`iss`), when set.
    public let issuer: String?
    /// Clock skew tolerated on `exp` and `nbf`.
    public let leewaySeconds: Int64
    /// The node verifying: what a token's `participantId` must be (`TokenVerifyingNode`).
    public let node: TokenVerifyingNode

    /// Longest token accepted, before any decoding (tokens are headers; 16 KiB is generous).
    public static let maximumTokenBytes = 16 * 1024
    /// The claims object Canton's Ledger API reads.
    public static let ledgerAPIClaim = "https://daml.com/ledger-api"

    public init(
        keys: [TokenVerificationKey], audience: String? = nil, issuer: String? = nil, leewaySeconds: Int64 = 5,
        node: TokenVerifyingNode = .unspecified
    ) throws(AuthError) {
        guard !keys.isEmpty else { throw .configuration("no verification key: give an HS256 secret or an RS256 public key") }
        for case .hs256(let secret, _) in keys where secret.count < TokenVerificationKey.minimumSecretBytes {
            throw .configuration("an HS256 secret of \(secret.count) bytes; at least \(TokenVerificationKey.minimumSecretBytes) are required")
        }
        self.keys = keys
        self.audience = audience
        self.issuer = issuer
        self.leewaySeconds = max(0, leewaySeconds)
        self.node = node
    }

    /// The claims of `token` if it verifies at `now` (seconds since the epoch).
    public func verify(_ token: String) throws(AuthError) -> LedgerClaims {
        try verify(token, now: Int64(Date().timeIntervalSince1970))
    }

    /// The claims of `token` if it verifies at `now` (seconds since the epoch).
    public func verify(_ token: String, now: Int64) throws(AuthError) -> LedgerClaims {
        guard token.utf8.count <= Self.maximumTokenBytes else {
            throw .malformed("the token is \(token.utf8.count) bytes; at most \(Self.maximumTokenBytes) are accepted")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw .malformed("a JWS has three dot-separated parts; this has \(parts.count)") }
        guard let headerBytes = Base64URL.decode(parts[0]) else { throw .malformed("the header is not base64url") }
        guard let payloadBytes = Base64URL.decode(parts[1]) else { throw .malformed("the payload is not base64url") }
        guard let signature = Base64URL.decode(parts[2]) else { throw .malformed("the signature is not base64url") }
        let header = try Self.object(headerBytes, "header")

        guard let algorithm = header["alg"] as? String else { throw .malformed("the header has no alg") }
        guard header["crit"] == nil else { throw .malformed("the header lists critical extensions (crit), which this verifier does not implement") }
        let keyID = header["kid"] as? String
        let candidates = keys.filter { $0.algorithm == algorithm && (keyID == nil || $0.keyID == nil || $0.keyID == keyID) }
        guard !candidates.isEmpty else {
            if keys.contains(where: { $0.algorithm == algorithm }), let keyID { throw .unknownKey(keyID) }
            throw .algorithmNotAllowed(algorithm, allowed: Set(keys.map(\.algorithm)).sorted())
        }
        let signedBytes = Array(parts[0].utf8) + [UInt8(ascii: ".")] + Array(parts[1].utf8)
        guard candidates.contains(where: { Self.verifies($0, signature: signature, message: signedBytes) }) else { throw .badSignature }

        // Only a token whose signature holds has its claims read.
        let payload = try Self.object(payloadBytes, "payload")
        guard let expiry = Self.integer(payload["exp"]) else { throw .malformed("the token has no expiry (exp); tokens without one are refused") }
        guard now <= expiry + leewaySeconds else { throw .expired(at: expiry) }
        // A present nbf must be a NumericDate: skipping one that is not (a string, a boolean, out
        // of range) would make a token valid earlier than its issuer meant, as exp is refused.
        if let value = payload["nbf"] {
            guard let notBefore = Self.integer(value) else {
                throw .malformed("nbf must be a NumericDate (seconds since the epoch, a JSON number)")
            }
            guard now + leewaySeconds >= notBefore else { throw .notYetValid(from: notBefore) }
        }
        if let issuer {
            guard payload["iss"] as? String == issuer else { throw .wrongIssuer(expected: issuer, actual: payload["iss"] as? String) }
        }
        if let audience {
            let audiences = (payload["aud"] as? String).map { [$0] } ?? (payload["aud"] as? [Any])?.compactMap { $0 as? String } ?? []
            guard audiences.contains(audience) else { throw .wrongAudience(expected: audience, actual: audiences) }
        }
        let ledger = payload[Self.ledgerAPIClaim] as? [String: Any] ?? [:]
        // A participantId of another JSON type must not pass for "no participant named".
        var named: String?
        if let value = ledger["participantId"] {
            guard let text = value as? String else {
                throw .malformed("\(Self.ledgerAPIClaim).participantId must be a string (a participant id)")
            }
            named = text
        }
        if let named {
            switch node {
            case .unspecified: break
            case .participant(let participantID):
                guard named == participantID else { throw .wrongParticipant(expected: participantID, actual: named) }
            case .nonParticipant(let kind):
                throw .participantTokenOnOtherNode(participant: named, node: kind)
            }
        }
        // admin must be a JSON boolean: Foundation gives numbers and booleans alike as NSNumber,
        // and `as? Bool` turns a 1 into true (on Linux), so `"admin": 1` would grant admin.
        var admin = false
        if let value = ledger["admin"] {
            guard let flag = Self.boolean(value) else {
                throw .malformed("\(Self.ledgerAPIClaim).admin must be true or false")
            }
            admin = flag
        }
        func parties(_ key: String) throws(AuthError) -> Set<String> {
            guard let value = ledger[key] else { return [] }
            guard let list = value as? [Any], list.allSatisfy({ $0 is String }) else { throw .malformed("\(Self.ledgerAPIClaim).\(key) must be a list of party ids") }
            return Set(list.compactMap { $0 as? String })
        }
        // A token bound to one application must stay bound: an `applicationId` of another type
        // (a number, a list) would otherwise read as absent, i.e. any application.
        var applicationID: String?
        if let value = ledger["applicationId"] {
            guard let text = value as? String else {
                throw .malformed("\(Self.ledgerAPIClaim).applicationId must be a string")
            }
            applicationID = text
        }
        return LedgerClaims(
            actAs: try parties("actAs"), readAs: try parties("readAs"), admin: admin,
            applicationID: applicationID, subject: payload["sub"] as? String, expiresAt: expiry)
    }

    private static func verifies(_ key: TokenVerificationKey, signature: [UInt8], message: [UInt8]) -> Bool {
        switch key {
        case .hs256(let secret, _):
            guard signature.count == HMACSHA256.outputBytes, let expected = try? HMACSHA256.authenticate(message, key: secret) else { return false }
            // Constant time: how much of a MAC matched must not leak.
            return zip(expected, signature).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
        case .rs256(let publicKey, _):
            return publicKey.isValidPKCS1SHA256(signature: signature, message: message)
        }
    }

    private static func object(_ bytes: [UInt8], _ part: String) throws(AuthError) -> [String: Any] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw .malformed("the \(part) is not a JSON object")
        }
        return object
    }

    /// A NumericDate (RFC 7519 §2): JSON numbers, possibly fractional; not booleans.
    private static func integer(_ value: Any?) -> Int64? {
        // `value is Bool` would not do: on Linux it holds for the numbers 0 and 1 as well.
        guard let value, boolean(value) == nil, let number = value as? NSNumber else { return nil }
        let double = number.doubleValue
        guard double.isFinite, abs(double) < 1e15 else { return nil }
        return Int64(double.rounded(.down))
    }

    /// The value of a JSON `true` or `false` as JSONSerialization gives it; nil for anything
    /// else, the numbers 1 and 0 included.
    ///
    /// Both Foundations give `true` and `false` as the two shared boolean NSNumbers (the
    /// ones `NSNumber(value: true)` and `NSNumber(value: false)` return), and a JSON number as
    /// another NSNumber; `as? Bool` cannot tell them apart: it takes any NSNumber equal to 1 or 0.
    static func boolean(_ value: Any) -> Bool? {
        // A Foundation that gives plain Swift values: a Bool is a JSON boolean.
        if type(of: value) == Bool.self { return value as? Bool }
        guard let number = value as? NSNumber else { return nil }
        if number === NSNumber(value: true) { return true }
        if number === NSNumber(value: false) { return false }
        return nil
    }
}

/// base64url without padding (RFC 7515 §2).
enum Base64URL {
    static func decode(_ text: Substring) -> [UInt8]? {
        guard text.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || ($0 < 128 && isalnum(Int32($0)) != 0) }) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        switch base64.utf8.count % 4 {
        case 0: break
        case 2: base64 += "=="
        case 3: base64 += "="
        default: return nil
        }
        return Data(base64Encoded: base64).map { [UInt8]($0) }
    }
}
