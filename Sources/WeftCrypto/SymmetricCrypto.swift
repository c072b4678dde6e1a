import COpenSSL

/// HKDF with SHA-256 (RFC 5869), through OpenSSL.
public enum HKDF {
    /// Derives `outputBytes` bytes from `key` (the input keying material).
    public static func sha256(key: [UInt8], salt: [UInt8], info: [UInt8], outputBytes: Int) throws(CryptoError) -> [UInt8] {
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nil) else { throw OpenSSL.failure("EVP_PKEY_CTX_new_id(HKDF)") }
        defer { EVP_PKEY_CTX_free(context) }
        var output = [UInt8](repeating: 0, count: outputBytes)
        var length = outputBytes
        guard EVP_PKEY_derive_init(context) == 1,
            EVP_PKEY_CTX_set_hkdf_md(context, EVP_sha256()) == 1,
            EVP_PKEY_CTX_set1_hkdf_salt(context, salt, Int32(salt.count)) == 1,
            EVP_PKEY_CTX_set1_hkdf_key(context, key, Int32(key.count)) == 1,
            EVP_PKEY_CTX_add1_hkdf_info(context, info, Int32(info.count)) == 1,
            EVP_PKEY_derive(context, &output, &length) == 1, length == outputBytes
        else { throw OpenSSL.failure("HKDF-SHA256") }
        return output
    }
}

/// AES-256-GCM (NIST SP 800-38D) with a 12-byte nonce and a 16-byte tag,
/// through OpenSSL.
public enum AES256GCM {
    public static let keyBytes = 32
    public static let nonceBytes = 12
    public static let tagBytes = 16

    /// Encrypts `plaintext`; returns ciphertext followed by the tag.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8], associatedData: [UInt8]) throws(CryptoError)
        -> [UInt8]
    {
        try check(key: key, nonce: nonce)
        ERR_clear_error()
        guard let context = EVP_CIPHER_CTX_new() else { throw OpenSSL.failure("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }
        var output = [UInt8](repeating: 0, count: plaintext.count + tagBytes)
        var length: Int32 = 0
        var total = 0
        guard EVP_EncryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(nonceBytes), nil) == 1,
            EVP_EncryptInit_ex(context, nil, nil, key, nonce) == 1,
            associatedData.isEmpty || EVP_EncryptUpdate(context, nil, &length, associatedData, Int32(associatedData.count)) == 1
        else { throw OpenSSL.failure("AES-256-GCM encrypt init") }
        if !plaintext.isEmpty {
            guard EVP_EncryptUpdate(context, &output, &length, plaintext, Int32(plaintext.count)) == 1 else {
                throw OpenSSL.failure("EVP_EncryptUpdate")
            }
            total = Int(length)
        }
        let finished: Bool = output.withUnsafeMutableBufferPointer { buffer in
            EVP_EncryptFinal_ex(context, buffer.baseAddress! + total, &length) == 1
                && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, Int32(tagBytes), buffer.baseAddress! + plaintext.count) == 1
        }
        guard finished else { throw OpenSSL.failure("AES-256-GCM encrypt final") }
        return output
    }

    /// Decrypts ciphertext-and-tag; throws `decryptionFailed` if anything was
    /// altered or the key is wrong.
    public static func open(_ sealed: [UInt8], key: [UInt8], nonce: [UInt8], associatedData: [UInt8]) throws(CryptoError)
        -> [UInt8]
    {
        try check(key: key, nonce: nonce)
        guard sealed.count >= tagBytes else { throw .decryptionFailed }
        ERR_clear_error()
        guard let context = EVP_CIPHER_CTX_new() else { throw OpenSSL.failure("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }
        let ciphertextBytes = sealed.count - tagBytes
        var tag = Array(sealed[ciphertextBytes...])
        var output = [UInt8](repeating: 0, count: max(ciphertextBytes, 1))
        var length: Int32 = 0
        guard EVP_DecryptInit_ex(context, EVP_aes_256_gcm(), nil, nil, nil) == 1,
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_IVLEN, Int32(nonceBytes), nil) == 1,
            EVP_DecryptInit_ex(context, nil, nil, key, nonce) == 1,
            associatedData.isEmpty || EVP_DecryptUpdate(context, nil, &length, associatedData, Int32(associatedData.count)) == 1
        else { throw OpenSSL.failure("AES-256-GCM decrypt init") }
        if ciphertextBytes > 0 {
            guard EVP_DecryptUpdate(context, &output, &length, sealed, Int32(ciphertextBytes)) == 1 else {
                ERR_clear_error()
                throw .decryptionFailed
            }
        }
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_SET_TAG, Int32(tagBytes), &tag) == 1 else {
            throw OpenSSL.failure("EVP_CTRL_GCM_SET_TAG")
        }
        var finalLength: Int32 = 0
        let verified: Bool = output.withUnsafeMutableBufferPointer { buffer in
            EVP_DecryptFinal_ex(context, buffer.baseAddress! + Int(ciphertextBytes > 0 ? length : 0), &finalLength) == 1
        }
        guard verified else {
            ERR_clear_error()
            throw .decryptionFailed
        }
        return Array(output.prefix(ciphertextBytes))
    }

    private static func check(key: [UInt8], nonce: [UInt8]) throws(CryptoError) {
        guard key.count == keyBytes else { throw .invalidLength(what: "an AES-256 key", expected: keyBytes, actual: key.count) }
        guard nonce.count == nonceBytes else {
            throw .invalidLength(what: "an AES-GCM nonce", expected: nonceBytes, actual: nonce.count)
        }
    }
}
