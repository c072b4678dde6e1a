import Foundation
import Testing
import WeftAuth
import WeftCrypto
import WeftTestSupport
import WeftTransport
import WeftWire

/// The verifier against tokens minted by PyJWT (an independent implementation),
/// good ones and each way a token can be wrong.
@Suite struct BearerTokenTests {
    static let secret = Array("a shared secret of at least 32 bytes, for HS256".utf8)

    /// Tokens and keys made once by Python.
    struct Minted: Decodable {
        let now: Int64
        let rsaPublicKey: String
        let smallRSAPublicKey: String
        let tokens: [String: String]

        func verifier(node: TokenVerifyingNode = .unspecified) throws -> BearerTokenVerifier {
            try BearerTokenVerifier(
                keys: [.hs256(secret: secret), .rs256(try RSAPublicKey(pem: rsaPublicKey), keyID: "k1")],
                audience: "participant1", issuer: "https://idp.example.com", node: node)
        }

        func token(_ name: String) -> String { tokens[name]! }
    }

    /// The tokens, minted by the first test that asks and shared by the rest. A task, not a
    /// lazily initialized `static let`: a static's initializer cannot await, so it would wait for
    /// Python (about a second of imports and RSA key generation) on a concurrency pool thread,
    /// and every other test asking meanwhile would block on it too.
    static func minted() async throws -> Minted { try await minting.value }

    private static let minting = Task { try await mint() }

    private static func mint() async throws -> Minted {
        let script = #"""
            import base64, hashlib, hmac, json, sys, time
            import jwt
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
            secret = sys.argv[1].encode()
            now = int(time.time())
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
            def pem(k):
                return k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            ledger = {"actAs": ["Alice::1220aa"], "readAs": ["Bob::1220bb"], "applicationId": "iou-app"}
            good = {"sub": "app-alice", "aud": "participant1", "iss": "https://idp.example.com", "exp": now + 3600,
                    "https://daml.com/ledger-api": ledger}
            def hs(claims, headers=None, key=secret):
                return jwt.encode(claims, key, algorithm="HS256", headers=headers)
            def b64(data):
                return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
            def raw(header, claims, key):
                signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
                return signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())
            tokens = {
                "hs_good": hs(good),
                "rs_good": jwt.encode(good, key, algorithm="RS256", headers={"kid": "k1"}),
                "rs_unknown_kid": jwt.encode(good, key, algorithm="RS256", headers={"kid": "k2"}),
                "rs_other_key": jwt.encode(good, rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm="RS256"),
                "hs_admin": hs({**good, "https://daml.com/ledger-api": {"admin": True}}),
                "hs_expired": hs({**good, "exp": now - 3600}),
                "hs_not_yet": hs({**good, "nbf": now + 3600}),
                "hs_no_exp": hs({k: v for k, v in good.items() if k != "exp"}),
                "hs_wrong_audience": hs({**good, "aud": "participant2"}),
                "hs_audience_list": hs({**good, "aud": ["someone-else", "participant1"]}),
                "hs_wrong_issuer": hs({**good, "iss": "https://evil.example.com"}),
                "hs_other_secret": hs(good, key=b"another secret, also at least 32 bytes long"),
                "hs_wrong_participant": hs({**good, "https://daml.com/ledger-api": {**ledger, "participantId": "participant9"}}),
                "hs_right_participant": hs({**good, "https://daml.com/ledger-api": {**ledger, "participantId": "participant1"}}),
                "hs_crit": raw({"alg": "HS256", "typ": "JWT", "crit": ["exp"]}, good, secret),
                "hs_bad_parties": hs({**good, "https://daml.com/ledger-api": {"actAs": "Alice::1220aa"}}),
                "none": b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + b64(json.dumps(good).encode()) + ".",
                # Algorithm confusion: HS256 with the (public) RSA key as the HMAC secret.
                "confusion": raw({"alg": "HS256", "typ": "JWT"}, good, pem(key).encode()),
                # A participant's admin token, with no audience: one secret shared by all nodes.
                "hs_participant_admin": hs({"sub": "ops", "exp": now + 3600,
                                            "https://daml.com/ledger-api": {"participantId": "participant1::1220aa", "admin": True}}),
                "hs_plain_admin": hs({"sub": "ops", "exp": now + 3600, "https://daml.com/ledger-api": {"admin": True}}),
                # Claims of the wrong JSON type, written by hand (an issuer's library may refuse them).
                "hs_nbf_string": raw({"alg": "HS256", "typ": "JWT"}, {**good, "nbf": "yesterday"}, secret),
                "hs_nbf_bool": raw({"alg": "HS256", "typ": "JWT"}, {**good, "nbf": True}, secret),
                "hs_nbf_huge": raw({"alg": "HS256", "typ": "JWT"}, {**good, "nbf": 1e300}, secret),
                "hs_nbf_null": raw({"alg": "HS256", "typ": "JWT"}, {**good, "nbf": None}, secret),
                "hs_nbf_past": raw({"alg": "HS256", "typ": "JWT"}, {**good, "nbf": now - 60}, secret),
                "hs_participant_number": raw({"alg": "HS256", "typ": "JWT"},
                                             {**good, "https://daml.com/ledger-api": {**ledger, "participantId": 1}}, secret),
                "hs_admin_one": raw({"alg": "HS256", "typ": "JWT"}, {**good, "https://daml.com/ledger-api": {"admin": 1}}, secret),
                "hs_admin_string": raw({"alg": "HS256", "typ": "JWT"}, {**good, "https://daml.com/ledger-api": {"admin": "true"}}, secret),
                "hs_application_number": raw({"alg": "HS256", "typ": "JWT"}, {**good, "https://daml.com/ledger-api": {**ledger, "applicationId": 42}}, secret),
                "hs_application_list": raw({"alg": "HS256", "typ": "JWT"}, {**good, "https://daml.com/ledger-api": {**ledger, "applicationId": ["iou-app"]}}, secret),
                "hs_application_null": raw({"alg": "HS256", "typ": "JWT"}, {**good, "https://daml.com/ledger-api": {**ledger, "applicationId": None}}, secret),
                "hs_admin_false": raw({"alg": "HS256", "typ": "JWT"}, {**good, "https://daml.com/ledger-api": {"admin": False}}, secret),
            }
            print(json.dumps({"now": now, "rsaPublicKey": pem(key), "smallRSAPublicKey": pem(small), "tokens": tokens}))
            """#
        let outcome = try await TestSubprocess.run(["python3", "-c", script, String(decoding: secret, as: UTF8.self)])
        guard outcome.status == 0 else {
            throw MintingFailed(
                description: "minting tokens with PyJWT failed (scripts/install-deps installs pyjwt):\n\(outcome.error)")
        }
        return try JSONDecoder().decode(Minted.self, from: Data(outcome.output.utf8))
    }

    private struct MintingFailed: Error, CustomStringConvertible {
        let description: String
    }

    @Test func hs256AndRS256TokensFromPyJWTVerifyWithTheirClaims() async throws {
        let minted = try await Self.minted()
        let verifier = try minted.verifier()
        for name in ["hs_good", "rs_good", "hs_audience_list"] {
            let claims = try verifier.verify(minted.token(name), now: minted.now)
            #expect(claims.actAs == ["Alice::1220aa"], "\(name)")
            #expect(claims.readAs == ["Bob::1220bb"], "\(name)")
            #expect(claims.readable == ["Alice::1220aa", "Bob::1220bb"], "\(name)")
            #expect(!claims.admin, "\(name)")
            #expect(claims.applicationID == "iou-app", "\(name)")
            #expect(claims.subject == "app-alice", "\(name)")
            #expect(claims.expiresAt == minted.now + 3600, "\(name)")
        }
        #expect(try verifier.verify(minted.token("hs_admin"), now: minted.now).admin)
        #expect(try minted.verifier(node: .participant("participant1")).verify(minted.token("hs_right_participant"), now: minted.now).actAs == ["Alice::1220aa"])
    }

    @Test func everyBadTokenIsRefusedWithItsReason() async throws {
        let minted = try await Self.minted()
        let verifier = try minted.verifier(node: .participant("participant1"))
        let now = minted.now
        func refusal(_ token: String) -> String? {
            do {
                _ = try verifier.verify(token, now: now)
                return nil
            } catch {
                return error.id
            }
        }
        let expected: [String: String] = [
            "hs_expired": "AUTH_TOKEN_EXPIRED", "hs_not_yet": "AUTH_TOKEN_NOT_YET_VALID", "hs_no_exp": "AUTH_TOKEN_MALFORMED",
            "hs_wrong_audience": "AUTH_WRONG_AUDIENCE", "hs_wrong_issuer": "AUTH_WRONG_ISSUER", "hs_other_secret": "AUTH_BAD_SIGNATURE",
            "rs_other_key": "AUTH_BAD_SIGNATURE", "rs_unknown_kid": "AUTH_UNKNOWN_KEY", "hs_wrong_participant": "AUTH_WRONG_PARTICIPANT",
            "hs_crit": "AUTH_TOKEN_MALFORMED", "hs_bad_parties": "AUTH_TOKEN_MALFORMED", "none": "AUTH_ALGORITHM_NOT_ALLOWED",
            "confusion": "AUTH_BAD_SIGNATURE",
            // A claim of the wrong JSON type is refused, not skipped or read loosely.
            "hs_nbf_string": "AUTH_TOKEN_MALFORMED", "hs_nbf_bool": "AUTH_TOKEN_MALFORMED",
            "hs_nbf_huge": "AUTH_TOKEN_MALFORMED", "hs_nbf_null": "AUTH_TOKEN_MALFORMED",
            "hs_participant_number": "AUTH_TOKEN_MALFORMED", "hs_admin_one": "AUTH_TOKEN_MALFORMED",
            "hs_admin_string": "AUTH_TOKEN_MALFORMED",
            // Not a string: read as absent, it would let the token act for any application.
            "hs_application_number": "AUTH_TOKEN_MALFORMED", "hs_application_list": "AUTH_TOKEN_MALFORMED",
            "hs_application_null": "AUTH_TOKEN_MALFORMED",
        ]
        for (name, id) in expected { #expect(refusal(minted.token(name)) == id, "\(name)") }

        // Altered after signing: one character of the payload, of the signature.
        let good = minted.token("hs_good")
        var parts = good.split(separator: ".").map(String.init)
        let payload = Array(parts[1])
        parts[1] = String(payload.prefix(10)) + (payload[10] == "A" ? "B" : "A") + String(payload.dropFirst(11))
        #expect(refusal(parts.joined(separator: ".")) == "AUTH_BAD_SIGNATURE")
        let signature = Array(good.split(separator: ".")[2])
        #expect(refusal(good.split(separator: ".")[0...1].joined(separator: ".") + "." + String(signature.reversed())) == "AUTH_BAD_SIGNATURE")
        // Not a token at all.
        for garbage in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", String(repeating: "A", count: 20_000)] {
            #expect(refusal(garbage) == "AUTH_TOKEN_MALFORMED", "\(garbage.prefix(20))")
        }
        // The leeway is 5 s: a token expired 4 s ago still passes, 6 s ago does not.
        #expect(throws: AuthError.expired(at: now + 3600)) { try verifier.verify(good, now: now + 3606) }
        #expect(try verifier.verify(good, now: now + 3604).actAs == ["Alice::1220aa"])
    }

    /// Claims of the right type still verify: a past nbf, `admin: false`.
    @Test func wellTypedOptionalClaimsVerify() async throws {
        let minted = try await Self.minted()
        let verifier = try minted.verifier(node: .participant("participant1"))
        #expect(try verifier.verify(minted.token("hs_nbf_past"), now: minted.now).actAs == ["Alice::1220aa"])
        #expect(try !verifier.verify(minted.token("hs_admin_false"), now: minted.now).admin)
    }

    /// One secret shared by every node and no audience: a participant's admin token verifies
    /// on its participant only; a sequencer or domain manager refuses it as a token for
    /// another node rather than take it as its own admin token.
    @Test func aParticipantsAdminTokenIsRefusedByNodesThatAreNotParticipants() async throws {
        let minted = try await Self.minted()
        let token = minted.token("hs_participant_admin")
        let now = minted.now
        func verifier(_ node: TokenVerifyingNode) throws -> BearerTokenVerifier {
            try BearerTokenVerifier(keys: [.hs256(secret: Self.secret)], node: node)
        }
        #expect(try verifier(.participant("participant1::1220aa")).verify(token, now: now).admin)
        #expect(throws: AuthError.wrongParticipant(expected: "participant2::1220bb", actual: "participant1::1220aa")) {
            try verifier(.participant("participant2::1220bb")).verify(token, now: now)
        }
        for kind in ["sequencer", "domain manager"] {
            let refusal = AuthError.participantTokenOnOtherNode(participant: "participant1::1220aa", node: kind)
            #expect(throws: refusal) { try verifier(.nonParticipant(kind)).verify(token, now: now) }
            #expect(refusal.rpcError.code == .unauthenticated && refusal.id == "AUTH_PARTICIPANT_TOKEN")
            #expect(refusal.description.contains("a token for participant participant1::1220aa is not valid on this \(kind) node"))
            // The node's own admin token, without participantId, still works there.
            #expect(try verifier(.nonParticipant(kind)).verify(minted.token("hs_plain_admin"), now: now).admin)
        }
    }

    @Test func weakKeysAreRefusedAtConfiguration() async throws {
        let minted = try await Self.minted()
        #expect(throws: CryptoError.self) { try RSAPublicKey(pem: minted.smallRSAPublicKey) }
        #expect(throws: CryptoError.self) { try RSAPublicKey(pem: "-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----\n") }
        #expect(throws: AuthError.self) { try BearerTokenVerifier(keys: [.hs256(secret: Array("short".utf8))]) }
        #expect(throws: AuthError.self) { try BearerTokenVerifier(keys: []) }
    }

    @Test func callsNeedTheClaimsTheirPartiesNeed() async throws {
        let minted = try await Self.minted()
        let authorizer = CallAuthorizer.tokens(try minted.verifier())
        func context(_ token: String?) -> RPCCallContext {
            RPCCallContext(
                method: "/weft.v1.CommandService/Submit",
                metadata: token.map { [Weft.V1.MetadataEntry(key: "authorization", value: .textValue("Bearer \($0)"))] } ?? [])
        }
        let alice = context(minted.token("rs_good"))
        #expect(throws: Never.self) { try authorizer.requireActAs(["Alice::1220aa"], alice) }
        #expect(throws: Never.self) { try authorizer.requireReadAs(["Alice::1220aa", "Bob::1220bb"], alice) }
        #expect(throws: AuthError.missingClaim(claim: "actAs", value: "Bob::1220bb", call: "/weft.v1.CommandService/Submit")) {
            try authorizer.requireActAs(["Alice::1220aa", "Bob::1220bb"], alice)
        }
        #expect(throws: AuthError.missingClaim(claim: "admin", value: nil, call: "/weft.v1.CommandService/Submit")) { try authorizer.requireAdmin(alice) }
        #expect(throws: AuthError.missingToken) { try authorizer.requireAuthenticated(context(nil)) }
        let refused = AuthError.missingClaim(claim: "actAs", value: "Bob::1220bb", call: "/weft.v1.CommandService/Submit").rpcError
        #expect(refused.code == .permissionDenied && refused.message.contains("actAs") && refused.message.contains("Bob::1220bb"))
        #expect(AuthError.missingToken.rpcError.code == .unauthenticated)
        // Without verification configured, everything is allowed.
        #expect(throws: Never.self) { try CallAuthorizer.open.requireAdmin(context(nil)) }
    }
}
