public import WeftWire

/// The 32-byte random seed of one view. The view's key is derived from it,
/// and so are its subviews' seeds, so the recipients of a view can open its
/// subviews without another wrap (docs/crypto.md, "View encryption").
public struct ViewSeed: Hashable, Sendable {
    public let bytes: [UInt8]

    public static let byteCount = 32
    static let viewKeyInfo = Array("weft/view-key/v1".utf8)
    static let subviewSeedInfo = Array("weft/subview-seed/v1".utf8)

    public init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidLength(what: "a view seed", expected: Self.byteCount, actual: bytes.count)
        }
        self.bytes = bytes
    }

    /// A fresh seed from OpenSSL's CSPRNG.
    public static func random() throws(CryptoError) -> ViewSeed {
        try ViewSeed(bytes: OpenSSL.randomBytes(byteCount))
    }

    /// The AES-256-GCM key of the view: HKDF-SHA256(seed, salt: empty,
    /// info: "weft/view-key/v1").
    public func viewKey() throws(CryptoError) -> [UInt8] {
        try HKDF.sha256(key: bytes, salt: [], info: Self.viewKeyInfo, outputBytes: AES256GCM.keyBytes)
    }

    /// The seed of subview `index` (0-based, in the view's order):
    /// HKDF-SHA256(seed, salt: empty, info: "weft/subview-seed/v1" ‖ index as 4 big-endian bytes).
    public func subviewSeed(index: UInt32) throws(CryptoError) -> ViewSeed {
        let info = Self.subviewSeedInfo + withUnsafeBytes(of: index.bigEndian) { Array($0) }
        return try ViewSeed(bytes: HKDF.sha256(key: bytes, salt: [], info: info, outputBytes: Self.byteCount))
    }
}

/// Wraps a secret for one X25519 key: ECIES with an ephemeral X25519 key,
/// HKDF-SHA256 and AES-256-GCM (`KEY_WRAP_SCHEME_ECIES_X25519_HKDF_SHA256_AES256_GCM`).
public enum ECIES {
    static let info = Array("weft/ecies-wrap/v1".utf8)

    public static func wrap(_ secret: [UInt8], for recipient: EncryptionPublicKey) throws(CryptoError) -> Weft.V1.WrappedKey {
        let ephemeral = try EncryptionPrivateKey.generate()
        let (key, nonce) = try derive(
            ephemeral.sharedSecret(with: recipient), ephemeral: ephemeral.publicKey, recipient: recipient)
        return .init(
            scheme: .eciesX25519HkdfSha256Aes256Gcm, recipientKey: recipient.fingerprint.description,
            ephemeralPublicKey: ephemeral.publicKey.rawRepresentation,
            ciphertext: try AES256GCM.seal(secret, key: key, nonce: nonce, associatedData: []))
    }

    public static func unwrap(_ wrapped: Weft.V1.WrappedKey, with key: EncryptionPrivateKey) throws(CryptoError) -> [UInt8] {
        guard wrapped.scheme == .eciesX25519HkdfSha256Aes256Gcm else {
            throw .wrongKeyScheme(expected: "ECIES-X25519-HKDF-SHA256-AES256-GCM", actual: "\(wrapped.scheme)")
        }
        guard wrapped.recipientKey == key.publicKey.fingerprint.description else { throw .decryptionFailed }
        let ephemeral = try EncryptionPublicKey(rawRepresentation: wrapped.ephemeralPublicKey)
        let shared: [UInt8]
        do throws(CryptoError) { shared = try key.sharedSecret(with: ephemeral) } catch { throw .decryptionFailed }
        let (wrapKey, nonce) = try derive(shared, ephemeral: ephemeral, recipient: key.publicKey)
        return try AES256GCM.open(wrapped.ciphertext, key: wrapKey, nonce: nonce, associatedData: [])
    }

    /// Key and nonce: HKDF-SHA256(shared secret, salt: ephemeral public ‖
    /// recipient public, info: "weft/ecies-wrap/v1"), 44 bytes split 32 + 12.
    /// The key is used once (fresh ephemeral key), so a derived nonce is safe.
    private static func derive(_ shared: [UInt8], ephemeral: EncryptionPublicKey, recipient: EncryptionPublicKey)
        throws(CryptoError) -> (key: [UInt8], nonce: [UInt8])
    {
        let output = try HKDF.sha256(
            key: shared, salt: ephemeral.rawRepresentation + recipient.rawRepresentation, info: info,
            outputBytes: AES256GCM.keyBytes + AES256GCM.nonceBytes)
        return (Array(output[..<AES256GCM.keyBytes]), Array(output[AES256GCM.keyBytes...]))
    }
}

/// Seals a view for its recipients and opens it again (DESIGN.md §4).
public enum ViewEncryption {
    /// Encrypts `view` (a serialized `ViewTree`) under `seed`, with the view
    /// hash as associated data, and wraps the seed for each recipient. Fills
    /// `view_hash`, `ciphertext` and `wrapped_seeds`; the caller sets the rest.
    public static func seal(
        _ view: [UInt8], viewHash: PurposeHash, seed: ViewSeed, recipients: [EncryptionPublicKey]
    ) throws(CryptoError) -> Weft.V1.EncryptedViewMessage {
        var message = Weft.V1.EncryptedViewMessage()
        message.viewHash = viewHash.digest
        message.ciphertext = try seal(view, viewHash: viewHash.digest, seed: seed)
        for recipient in recipients { message.wrappedSeeds.append(try ECIES.wrap(seed.bytes, for: recipient)) }
        return message
    }

    /// Seals `view` under a fresh random seed for `recipients`. Returns the
    /// message and the seed, from which the view's subviews' seeds derive.
    public static func seal(_ view: [UInt8], viewHash: PurposeHash, recipients: [EncryptionPublicKey]) throws(CryptoError)
        -> (message: Weft.V1.EncryptedViewMessage, seed: ViewSeed)
    {
        let seed = try ViewSeed.random()
        return (try seal(view, viewHash: viewHash, seed: seed, recipients: recipients), seed)
    }

    /// Seals `view` under a fresh random seed, and the seed under the session key `sessions`
    /// holds for `recipients` (docs/crypto.md §6.1): no public-key operation while the session
    /// lasts. Fills `view_hash`, `ciphertext` and `session_sealed_seed`.
    public static func seal(
        _ view: [UInt8], viewHash: PurposeHash, recipients: [EncryptionPublicKey], sessions: OutgoingSessionKeys
    ) throws(CryptoError) -> (message: Weft.V1.EncryptedViewMessage, seed: ViewSeed) {
        let seed = try ViewSeed.random()
        let session = try sessions.key(for: recipients)
        var message = Weft.V1.EncryptedViewMessage()
        message.viewHash = viewHash.digest
        message.ciphertext = try seal(view, viewHash: viewHash.digest, seed: seed)
        message.sessionSealedSeed = .init(
            wrappedSessionKeys: session.wrapped, sealedSeed: try session.seal(seed, viewHash: viewHash.digest))
        return (message, seed)
    }

    /// `nonce ‖ AES-256-GCM(view key, nonce, view, aad: view hash)`, with a
    /// random 12-byte nonce.
    static func seal(_ view: [UInt8], viewHash: [UInt8], seed: ViewSeed) throws(CryptoError) -> [UInt8] {
        let nonce = try OpenSSL.randomBytes(AES256GCM.nonceBytes)
        return nonce + (try AES256GCM.seal(view, key: seed.viewKey(), nonce: nonce, associatedData: viewHash))
    }

    /// The view's seed, unwrapped with the recipient's key, or opened with the session key
    /// wrapped for it (found in `sessions` when it was unwrapped recently). Throws
    /// `decryptionFailed` if nothing is wrapped for this key, anything was altered, or the
    /// message carries the seed both ways or neither.
    public static func seed(
        of message: Weft.V1.EncryptedViewMessage, with key: EncryptionPrivateKey, sessions: IncomingSessionKeys? = nil
    ) throws(CryptoError) -> ViewSeed {
        let fingerprint = key.publicKey.fingerprint.description
        switch (message.wrappedSeeds.isEmpty, message.sessionSealedSeed) {
        case (false, nil):
            guard let wrapped = message.wrappedSeeds.first(where: { $0.recipientKey == fingerprint }) else {
                throw .decryptionFailed
            }
            return try ViewSeed(bytes: ECIES.unwrap(wrapped, with: key))
        case (true, let sealed?):
            guard let wrapped = sealed.wrappedSessionKeys.first(where: { $0.recipientKey == fingerprint }) else {
                throw .decryptionFailed
            }
            let session = if let sessions { try sessions.key(of: wrapped, with: key) } else { try SessionKey.unwrap(wrapped, with: key) }
            return try session.open(sealed.sealedSeed, viewHash: message.viewHash)
        default:
            throw .decryptionFailed
        }
    }

    /// The plaintext view, for a recipient holding its private key.
    public static func open(
        _ message: Weft.V1.EncryptedViewMessage, with key: EncryptionPrivateKey, sessions: IncomingSessionKeys? = nil
    ) throws(CryptoError) -> [UInt8] {
        try open(message, seed: seed(of: message, with: key, sessions: sessions))
    }

    /// The fingerprints of the keys the message's seed (or session key) is wrapped for.
    public static func recipientKeys(of message: Weft.V1.EncryptedViewMessage) -> [String] {
        (message.sessionSealedSeed?.wrappedSessionKeys ?? message.wrappedSeeds).map(\.recipientKey)
    }

    /// The plaintext view, given its seed (e.g. a subview's, derived from its
    /// parent's).
    public static func open(_ message: Weft.V1.EncryptedViewMessage, seed: ViewSeed) throws(CryptoError) -> [UInt8] {
        guard message.ciphertext.count >= AES256GCM.nonceBytes + AES256GCM.tagBytes else { throw .decryptionFailed }
        let nonce = Array(message.ciphertext[..<AES256GCM.nonceBytes])
        let sealed = Array(message.ciphertext[AES256GCM.nonceBytes...])
        return try AES256GCM.open(sealed, key: seed.viewKey(), nonce: nonce, associatedData: message.viewHash)
    }
}
