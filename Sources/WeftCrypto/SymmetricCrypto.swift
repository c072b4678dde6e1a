import COpenSSL

/// HKDF with SHA-256 (RFC 5869), over `HMACSHA256`.
///
/// Why not OpenSSL's HKDF: its `EVP_PKEY_HKDF` context looks the KDF and the digest up in the
/// provider registry on every call, which cost more than the HMACs themselves (5.3 µs per
/// 44-byte derivation alone, more under contention), and a participant derives keys several
/// times per view it seals or opens. Extract and expand are a few lines over an HMAC whose
/// algorithm is fetched once; RFC 5869's test vectors check them.
public enum HKDF {
    /// Derives `outputBytes` bytes (at most 255 × 32) from `key` (the input keying material).
    public static func sha256(key: [UInt8], salt: [UInt8], info: [UInt8], outputBytes: Int) throws(CryptoError) -> [UInt8] {
        guard outputBytes >= 0, outputBytes <= 255 * HMACSHA256.outputBytes else {
            throw .invalidLength(what: "an HKDF-SHA256 output", expected: 255 * HMACSHA256.outputBytes, actual: outputBytes)
        }
        // Extract: PRK = HMAC(salt, IKM). An empty salt is HMAC's zero key, as RFC 5869 asks.
        let expander = try HMACSHA256.Key(HMACSHA256.authenticate(key, key: salt))
        // Expand: T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i).
        var output: [UInt8] = []
        output.reserveCapacity(outputBytes + HMACSHA256.outputBytes)
        var block: [UInt8] = []
        var counter: UInt8 = 1
        while output.count < outputBytes {
            block = expander.authenticate(block + info + [counter])
            output += block
            counter &+= 1
        }
        return Array(output.prefix(outputBytes))
    }
}

/// AES-256-GCM (NIST SP 800-38D) with a 12-byte nonce and a 16-byte tag,
/// through OpenSSL.
public enum AES256GCM {
    public static let keyBytes = 32
    public static let nonceBytes = 12
    public static let tagBytes = 16

    /// The cipher, fetched once: OpenSSL 3 looks a cipher up in its provider
    /// registry on every init unless it is fetched explicitly.
    nonisolated(unsafe) static let cipher: OpaquePointer = {
        guard let cipher = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil) else {
            fatalError("OpenSSL has no AES-256-GCM: \(OpenSSL.takeError())")
        }
        return cipher
    }()

    /// Encrypts `plaintext`; returns ciphertext followed by the tag.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8], associatedData: [UInt8]) throws(CryptoError)
        -> [UInt8]
    {
        try Key(key).seal(plaintext, nonce: nonce, associatedData: associatedData)
    }

    /// Decrypts ciphertext-and-tag; throws `decryptionFailed` if anything was
    /// altered or the key is wrong.
    public static func open(_ sealed: [UInt8], key: [UInt8], nonce: [UInt8], associatedData: [UInt8]) throws(CryptoError)
        -> [UInt8]
    {
        try Key(key).open(sealed, nonce: nonce, associatedData: associatedData)
    }

    /// A key prepared once (cipher context and key schedule) for several
    /// messages, each with its own nonce. Not for concurrent use.
    public final class Key {
        private let encryption: OpaquePointer
        private let decryption: OpaquePointer

        public init(_ key: [UInt8]) throws(CryptoError) {
            guard key.count == keyBytes else { throw .invalidLength(what: "an AES-256 key", expected: keyBytes, actual: key.count) }
            ERR_clear_error()
            guard let encryption = EVP_CIPHER_CTX_new(), let decryption = EVP_CIPHER_CTX_new() else {
                throw OpenSSL.failure("EVP_CIPHER_CTX_new")
            }
            self.encryption = encryption
            self.decryption = decryption
            guard EVP_EncryptInit_ex2(encryption, cipher, key, nil, nil) == 1,
                EVP_DecryptInit_ex2(decryption, cipher, key, nil, nil) == 1
            else { throw OpenSSL.failure("EVP_CipherInit_ex2(AES-256-GCM)") }
        }

        deinit {
            EVP_CIPHER_CTX_free(encryption)
            EVP_CIPHER_CTX_free(decryption)
        }

        /// Encrypts `plaintext`; returns ciphertext followed by the tag.
        public func seal(_ plaintext: [UInt8], nonce: [UInt8], associatedData: [UInt8]) throws(CryptoError) -> [UInt8] {
            guard nonce.count == nonceBytes else {
                throw .invalidLength(what: "an AES-GCM nonce", expected: nonceBytes, actual: nonce.count)
            }
            let context = encryption
            var length: Int32 = 0
            guard EVP_EncryptInit_ex2(context, nil, nil, nonce, nil) == 1,
                associatedData.isEmpty || EVP_EncryptUpdate(context, nil, &length, associatedData, Int32(associatedData.count)) == 1
            else { throw OpenSSL.failure("AES-256-GCM encrypt init") }
            var failed = false
            let output = [UInt8](unsafeUninitializedCapacity: plaintext.count + tagBytes) { buffer, count in
                let base = buffer.baseAddress!
                var written: Int32 = 0
                var finalBytes: Int32 = 0
                guard plaintext.isEmpty || EVP_EncryptUpdate(context, base, &written, plaintext, Int32(plaintext.count)) == 1,
                    EVP_EncryptFinal_ex(context, base + Int(written), &finalBytes) == 1,
                    EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(tagBytes), base + plaintext.count) == 1
                else {
                    failed = true
                    return
                }
                count = plaintext.count + tagBytes
            }
            if failed { throw OpenSSL.failure("AES-256-GCM encrypt") }
            return output
        }

        /// Decrypts ciphertext-and-tag; throws `decryptionFailed` if anything
        /// was altered or the key is wrong.
        public func open(_ sealed: [UInt8], nonce: [UInt8], associatedData: [UInt8]) throws(CryptoError) -> [UInt8] {
            guard nonce.count == nonceBytes else {
                throw .invalidLength(what: "an AES-GCM nonce", expected: nonceBytes, actual: nonce.count)
            }
            guard sealed.count >= tagBytes else { throw .decryptionFailed }
            let context = decryption
            let ciphertextBytes = sealed.count - tagBytes
            var length: Int32 = 0
            guard EVP_DecryptInit_ex2(context, nil, nil, nonce, nil) == 1,
                associatedData.isEmpty || EVP_DecryptUpdate(context, nil, &length, associatedData, Int32(associatedData.count)) == 1
            else { throw OpenSSL.failure("AES-256-GCM decrypt init") }
            var verified = false
            let output = sealed.withUnsafeBufferPointer { input in
                [UInt8](unsafeUninitializedCapacity: ciphertextBytes) { buffer, count in
                    var written: Int32 = 0
                    var finalBytes: Int32 = 0
                    let tag = UnsafeMutableRawPointer(mutating: input.baseAddress! + ciphertextBytes)
                    guard ciphertextBytes == 0
                        || EVP_DecryptUpdate(context, buffer.baseAddress, &written, input.baseAddress, Int32(ciphertextBytes)) == 1,
                        EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(tagBytes), tag) == 1,
                        EVP_DecryptFinal_ex(context, buffer.baseAddress.map { $0 + Int(written) }, &finalBytes) == 1
                    else { return }
                    verified = true
                    count = ciphertextBytes
                }
            }
            guard verified else {
                ERR_clear_error()
                throw .decryptionFailed
            }
            return output
        }
    }
}
