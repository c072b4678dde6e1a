import COpenSSL

/// An RSA public key that verifies RSASSA-PKCS1-v1_5 signatures with SHA-256
/// (JWS `RS256`).
///
/// Weft itself signs with Ed25519; RSA is here only because identity providers
/// issue RS256 bearer tokens for the Ledger API (Canton's OAuth2 middleware
/// expects them), and verifying one is all Weft needs.
public struct RSAPublicKey: Sendable {
    let key: PKey
    /// The modulus size in bits.
    public let bits: Int

    /// Smallest modulus accepted: NIST SP 800-131A disallows less than 2048 bits.
    public static let minimumBits = 2048

    /// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, what `openssl rsa -pubout` and identity
    /// providers' key exports give).
    public init(pem: String) throws(CryptoError) {
        ERR_clear_error()
        let bytes = Array(pem.utf8)
        let read: OpaquePointer? = bytes.withUnsafeBufferPointer { buffer in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let read else { throw .invalidPublicKey("not a PEM RSA public key (\(OpenSSL.takeError()))") }
        let key = PKey(takingOwnership: read)
        guard EVP_PKEY_get_base_id(read) == EVP_PKEY_RSA else {
            throw .wrongKeyScheme(expected: "RSA", actual: String(cString: OBJ_nid2sn(EVP_PKEY_get_base_id(read))))
        }
        let bits = Int(EVP_PKEY_get_bits(read))
        guard bits >= Self.minimumBits else { throw .invalidPublicKey("an RSA key of \(bits) bits; at least \(Self.minimumBits) are required") }
        self.key = key
        self.bits = bits
    }

    /// Whether `signature` is this key's RSASSA-PKCS1-v1_5 SHA-256 signature of `message`.
    public func isValidPKCS1SHA256(signature: [UInt8], message: [UInt8]) -> Bool {
        guard signature.count == (bits + 7) / 8 else { return false }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer {
            EVP_MD_CTX_free(context)
            ERR_clear_error()
        }
        guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, key.pointer) == 1 else { return false }
        return EVP_DigestVerify(context, signature, signature.count, message, message.count) == 1
    }
}
