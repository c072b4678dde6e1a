import COpenSSL
public import WeftWire

/// The fingerprint of a public key: SHA-256 over the key's scheme and raw
/// bytes under `HASH_PURPOSE_PUBLIC_KEY_FINGERPRINT`, written `1220` (the
/// multihash prefix of a 32-byte SHA-256) followed by 64 lower-case hex digits.
public struct Fingerprint: Hashable, Sendable, CustomStringConvertible {
    /// The 32-byte digest.
    public let digest: [UInt8]

    public static let prefix = "1220"
    public static let textLength = 68

    init(of key: Weft.V1.PublicKey) {
        var hasher = PurposeHasher(.publicKeyFingerprint)
        hasher.append(UInt64(UInt32(bitPattern: key.scheme.rawValue)))
        hasher.append(key.key)
        digest = hasher.finalize().digest
    }

    /// Parses `1220` + 64 lower-case hex digits, saying exactly what is wrong.
    public init(parsing text: String) throws(CryptoError) {
        let characters = Array(text.utf8)
        guard characters.count == Self.textLength else {
            throw .invalidFingerprint("'\(text.prefix(80))' has \(characters.count) characters; a fingerprint has \(Self.textLength) (1220 and 64 hex digits)")
        }
        guard text.hasPrefix(Self.prefix) else {
            throw .invalidFingerprint("'\(text)' does not start with 1220 (SHA-256 multihash)")
        }
        var digest: [UInt8] = []
        digest.reserveCapacity(32)
        var index = 4
        while index < characters.count {
            guard let high = Self.hexValue(characters[index]), let low = Self.hexValue(characters[index + 1]) else {
                let bad = Self.hexValue(characters[index]) == nil ? index : index + 1
                throw .invalidFingerprint("'\(text)' has \(Character(UnicodeScalar(characters[bad]))) at position \(bad + 1); only 0-9 and a-f are allowed")
            }
            digest.append(high << 4 | low)
            index += 2
        }
        self.digest = digest
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return character - UInt8(ascii: "a") + 10
        default: return nil
        }
    }

    public var description: String { Self.prefix + hex(digest) }
}

/// An Ed25519 public key: verifies signatures and identifies its owner.
///
/// The OpenSSL key object and the fingerprint are made once, when the key is
/// created (which also refuses bytes OpenSSL does not accept as a key), not on
/// every verification.
public struct SigningPublicKey: Hashable, Sendable {
    /// The 32 raw key bytes (RFC 8032).
    public let rawRepresentation: [UInt8]
    /// Its fingerprint (docs/crypto.md §3).
    public let fingerprint: Fingerprint
    let key: PKey

    public init(rawRepresentation: [UInt8]) throws(CryptoError) {
        guard rawRepresentation.count == 32 else {
            throw .invalidLength(what: "an Ed25519 public key", expected: 32, actual: rawRepresentation.count)
        }
        guard !Self.hasSmallOrder(rawRepresentation) else {
            throw .invalidPublicKey(
                "an Ed25519 public key of small order (a point of the curve's 8-torsion), for which one signature verifies "
                    + "for every message; generate a key pair (weft keys generate)")
        }
        self.rawRepresentation = rawRepresentation
        key = try PKey.publicKey(EVP_PKEY_ED25519, rawRepresentation)
        fingerprint = Fingerprint(of: .init(scheme: .ed25519, purpose: .signing, key: rawRepresentation))
    }

    /// The encodings of the points of small order (the identity, the point of order 2, those of
    /// orders 4 and 8) and the non-canonical encodings of y = 0 and y = 1 (p and p + 1), without
    /// the sign bit. OpenSSL accepts them as keys, and with the identity `(R, S) = ([S]B, S)`
    /// verifies for any message, so their owner could later disown what it signed.
    private static let smallOrderEncodings: [[UInt8]] = [
        [UInt8](repeating: 0, count: 32),
        [1] + [UInt8](repeating: 0, count: 31),
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
            0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
            0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
        ],
        [0xec] + [UInt8](repeating: 0xff, count: 30) + [0x7f],
        [0xed] + [UInt8](repeating: 0xff, count: 30) + [0x7f],
        [0xee] + [UInt8](repeating: 0xff, count: 30) + [0x7f],
    ]

    /// Whether `key` encodes a point of small order (sign bit ignored).
    static func hasSmallOrder(_ key: [UInt8]) -> Bool {
        var unsigned = key
        unsigned[31] &= 0x7f
        return smallOrderEncodings.contains(unsigned)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.rawRepresentation == rhs.rawRepresentation }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawRepresentation) }

    /// From the wire form; refuses keys of another scheme.
    public init(_ key: Weft.V1.PublicKey) throws(CryptoError) {
        guard key.scheme == .ed25519 else { throw .wrongKeyScheme(expected: "Ed25519", actual: "\(key.scheme)") }
        try self.init(rawRepresentation: key.key)
    }

    /// The wire form, for the given purpose (namespace or signing).
    public func wire(purpose: Weft.V1.KeyPurpose = .signing) -> Weft.V1.PublicKey {
        .init(scheme: .ed25519, purpose: purpose, key: rawRepresentation)
    }

    /// Verifies `signature` over `hash`; throws `invalidSignature` if it does
    /// not verify, names another signer, or has the wrong length.
    public func verify(_ signature: Weft.V1.Signature, over hash: PurposeHash) throws(CryptoError) {
        guard signature.scheme == .ed25519 else { throw .wrongKeyScheme(expected: "Ed25519", actual: "\(signature.scheme)") }
        guard signature.signedBy == fingerprint.description, signature.signature.count == 64 else { throw .invalidSignature }
        guard isValid(signature: signature.signature, bytes: Self.signedBytes(hash)) else { throw .invalidSignature }
    }

    /// Plain Ed25519 verification of `bytes`; Weft verifies only purpose
    /// hashes (`verify(_:over:)`), this exists for the RFC 8032 test vectors.
    func isValid(signature: [UInt8], bytes: [UInt8]) -> Bool {
        guard signature.count == 64 else { return false }
        let verified = try? key.withContext(.digest, make: { () throws(CryptoError) -> OpaquePointer in
            guard let context = EVP_MD_CTX_new() else { throw OpenSSL.failure("EVP_MD_CTX_new") }
            guard EVP_DigestVerifyInit(context, nil, nil, nil, key.pointer) == 1 else {
                EVP_MD_CTX_free(context)
                throw OpenSSL.failure("EVP_DigestVerifyInit")
            }
            return context
        }) { (context) throws(CryptoError) -> Bool in
            // An EdDSA context verifies one message per call and stays usable.
            let result = EVP_DigestVerify(context, signature, 64, bytes, bytes.count)
            ERR_clear_error()
            return result == 1
        }
        return verified == true
    }

    /// What Ed25519 signs: the 32-byte digest. The purpose is bound already,
    /// as the first thing hashed.
    static func signedBytes(_ hash: PurposeHash) -> [UInt8] { hash.digest }
}

/// An Ed25519 private key.
public struct SigningPrivateKey: Sendable {
    let key: PKey
    /// Its public key.
    public let publicKey: SigningPublicKey

    /// A new key from OpenSSL's CSPRNG.
    public static func generate() throws(CryptoError) -> SigningPrivateKey {
        try SigningPrivateKey(key: PKey.generate(EVP_PKEY_ED25519, "Ed25519"))
    }

    /// From the 32-byte seed of RFC 8032.
    public init(rawRepresentation: [UInt8]) throws(CryptoError) {
        guard rawRepresentation.count == 32 else {
            throw .invalidLength(what: "an Ed25519 private key", expected: 32, actual: rawRepresentation.count)
        }
        try self.init(key: PKey.privateKey(EVP_PKEY_ED25519, rawRepresentation))
    }

    init(key: PKey) throws(CryptoError) {
        self.key = key
        publicKey = try SigningPublicKey(rawRepresentation: key.rawPublicKey())
        signedBy = publicKey.fingerprint.description
    }

    /// The fingerprint text every signature of this key carries.
    let signedBy: String

    /// The 32-byte seed. Secret: for key files only.
    public var rawRepresentation: [UInt8] { get throws(CryptoError) { try key.rawPrivateKey() } }

    /// Signs `hash`; the signature carries this key's fingerprint.
    public func sign(_ hash: PurposeHash) throws(CryptoError) -> Weft.V1.Signature {
        .init(scheme: .ed25519, signedBy: signedBy, signature: try sign(bytes: SigningPublicKey.signedBytes(hash)))
    }

    /// Plain Ed25519 over `bytes`; Weft signs only purpose hashes (`sign(_:)`),
    /// this exists for the RFC 8032 test vectors.
    func sign(bytes: [UInt8]) throws(CryptoError) -> [UInt8] {
        ERR_clear_error()
        let pkey = key
        return try key.withContext(.digest, make: { () throws(CryptoError) -> OpaquePointer in
            guard let context = EVP_MD_CTX_new() else { throw OpenSSL.failure("EVP_MD_CTX_new") }
            guard EVP_DigestSignInit(context, nil, nil, nil, pkey.pointer) == 1 else {
                EVP_MD_CTX_free(context)
                throw OpenSSL.failure("EVP_DigestSignInit")
            }
            return context
        }) { (context) throws(CryptoError) -> [UInt8] in
            var signature = [UInt8](repeating: 0, count: 64)
            var length = 64
            guard EVP_DigestSign(context, &signature, &length, bytes, bytes.count) == 1, length == 64 else {
                throw OpenSSL.failure("EVP_DigestSign(Ed25519)")
            }
            return signature
        }
    }
}

/// An X25519 public key: the recipient side of view-seed encryption. Like
/// `SigningPublicKey`, it makes its OpenSSL key and fingerprint once.
public struct EncryptionPublicKey: Hashable, Sendable {
    /// The 32 raw key bytes (RFC 7748).
    public let rawRepresentation: [UInt8]
    /// Its fingerprint (docs/crypto.md §3).
    public let fingerprint: Fingerprint
    let key: PKey

    public init(rawRepresentation: [UInt8]) throws(CryptoError) {
        guard rawRepresentation.count == 32 else {
            throw .invalidLength(what: "an X25519 public key", expected: 32, actual: rawRepresentation.count)
        }
        self.rawRepresentation = rawRepresentation
        key = try PKey.publicKey(EVP_PKEY_X25519, rawRepresentation)
        fingerprint = Fingerprint(of: .init(scheme: .x25519, purpose: .encryption, key: rawRepresentation))
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.rawRepresentation == rhs.rawRepresentation }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawRepresentation) }

    /// From the wire form; refuses keys of another scheme.
    public init(_ key: Weft.V1.PublicKey) throws(CryptoError) {
        guard key.scheme == .x25519 else { throw .wrongKeyScheme(expected: "X25519", actual: "\(key.scheme)") }
        try self.init(rawRepresentation: key.key)
    }

    public var wire: Weft.V1.PublicKey { .init(scheme: .x25519, purpose: .encryption, key: rawRepresentation) }
}

/// An X25519 private key.
public struct EncryptionPrivateKey: Sendable {
    let key: PKey
    /// Its public key.
    public let publicKey: EncryptionPublicKey

    /// A new key from OpenSSL's CSPRNG.
    public static func generate() throws(CryptoError) -> EncryptionPrivateKey {
        try EncryptionPrivateKey(key: PKey.generate(EVP_PKEY_X25519, "X25519"))
    }

    /// From its 32 raw bytes (RFC 7748).
    public init(rawRepresentation: [UInt8]) throws(CryptoError) {
        guard rawRepresentation.count == 32 else {
            throw .invalidLength(what: "an X25519 private key", expected: 32, actual: rawRepresentation.count)
        }
        try self.init(key: PKey.privateKey(EVP_PKEY_X25519, rawRepresentation))
    }

    init(key: PKey) throws(CryptoError) {
        self.key = key
        publicKey = try EncryptionPublicKey(rawRepresentation: key.rawPublicKey())
    }

    /// The 32 raw bytes. Secret: for key files only.
    public var rawRepresentation: [UInt8] { get throws(CryptoError) { try key.rawPrivateKey() } }

    /// The X25519 shared secret with `peer`; refuses the all-zero result of a
    /// low-order public key (RFC 7748 §6.1).
    public func sharedSecret(with peer: EncryptionPublicKey) throws(CryptoError) -> [UInt8] {
        ERR_clear_error()
        let pkey = key
        let secret = try key.withContext(.pkey, make: { () throws(CryptoError) -> OpaquePointer in
            guard let context = EVP_PKEY_CTX_new(pkey.pointer, nil) else { throw OpenSSL.failure("EVP_PKEY_CTX_new") }
            guard EVP_PKEY_derive_init(context) == 1 else {
                EVP_PKEY_CTX_free(context)
                throw OpenSSL.failure("EVP_PKEY_derive_init(X25519)")
            }
            return context
        }) { (context) throws(CryptoError) -> [UInt8] in
            var secret = [UInt8](repeating: 0, count: 32)
            var length = 32
            // No peer validation by OpenSSL: the all-zero check below is X25519's (RFC 7748 §6.1).
            guard EVP_PKEY_derive_set_peer_ex(context, peer.key.pointer, 0) == 1 else {
                throw OpenSSL.failure("EVP_PKEY_derive_set_peer(X25519)")
            }
            guard EVP_PKEY_derive(context, &secret, &length) == 1, length == 32 else {
                ERR_clear_error()
                throw .invalidPublicKey("X25519 agreement failed (a low-order point?)")
            }
            return secret
        }
        guard secret.contains(where: { $0 != 0 }) else { throw .invalidPublicKey("X25519 agreement gave the all-zero secret") }
        return secret
    }
}
