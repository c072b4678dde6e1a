import Foundation
public import WeftCrypto

/// Signs HS256 bearer tokens with a shared secret, for development and tests (`weft token`):
/// production tokens come from the identity provider, whose keys the node only verifies.
public enum HS256TokenIssuer {
    /// A compact JWS of `claims` (Canton's Ledger API claims under
    /// `https://daml.com/ledger-api`), with `aud` and `iss` when given.
    public static func token(
        _ claims: LedgerClaims, secret: [UInt8], audience: String? = nil, issuer: String? = nil,
        participantID: String? = nil
    ) throws(CryptoError) -> String {
        var ledger: [String: Any] = [:]
        if !claims.actAs.isEmpty { ledger["actAs"] = claims.actAs.sorted() }
        if !claims.readAs.isEmpty { ledger["readAs"] = claims.readAs.sorted() }
        if claims.admin { ledger["admin"] = true }
        if let application = claims.applicationID { ledger["applicationId"] = application }
        if let participantID { ledger["participantId"] = participantID }
        var payload: [String: Any] = ["exp": claims.expiresAt, BearerTokenVerifier.ledgerAPIClaim: ledger]
        if let subject = claims.subject { payload["sub"] = subject }
        if let audience { payload["aud"] = audience }
        if let issuer { payload["iss"] = issuer }
        return try sign(header: ["alg": "HS256", "typ": "JWT"], payload: payload, secret: secret)
    }

    /// A token of any header and payload, MACed with `secret`: tests use it for tokens a
    /// correct issuer would not make (`alg` lies, extra headers).
    public static func sign(header: [String: Any], payload: [String: Any], secret: [UInt8]) throws(CryptoError)
        -> String
    {
        let signing = encode(json(header)) + "." + encode(json(payload))
        return signing + "." + encode(try HMACSHA256.authenticate(Array(signing.utf8), key: secret))
    }

    /// base64url without padding (RFC 7515 §2).
    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(
            of: "/", with: "_"
        )
        .replacingOccurrences(of: "=", with: "")
    }

    static func json(_ object: [String: Any]) -> [UInt8] {
        // Dictionaries of strings, numbers, booleans and arrays always serialize.
        Array((try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8))
    }
}
