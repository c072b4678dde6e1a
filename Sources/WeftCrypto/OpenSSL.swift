import COpenSSL

/// Small helpers at the OpenSSL boundary: error text, the CSPRNG, and owners
/// of the EVP objects used here (each frees its pointer exactly once).
enum OpenSSL {
    /// The oldest error on this thread's OpenSSL error queue, as text, and a
    /// cleared queue (so a later call never sees a stale error).
    static func takeError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "no detail from OpenSSL" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func failure(_ function: String) -> CryptoError {
        .openSSL(function: function, reason: takeError())
    }

    /// `count` bytes from OpenSSL's CSPRNG (`RAND_bytes`).
    static func randomBytes(_ count: Int) throws(CryptoError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard count == 0 || RAND_bytes(&bytes, Int32(count)) == 1 else { throw failure("RAND_bytes") }
        return bytes
    }
}

/// Owns an `EVP_PKEY`.
final class PKey: @unchecked Sendable {
    // Immutable after creation; OpenSSL's EVP_PKEY is safe for concurrent use
    // by operations that do not change it (sign, verify, derive, export).
    let pointer: OpaquePointer

    init(takingOwnership pointer: OpaquePointer) { self.pointer = pointer }
    deinit { EVP_PKEY_free(pointer) }

    static func generate(_ type: Int32, _ name: String) throws(CryptoError) -> PKey {
        ERR_clear_error()
        guard let context = EVP_PKEY_CTX_new_id(type, nil) else { throw OpenSSL.failure("EVP_PKEY_CTX_new_id(\(name))") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen_init(context) == 1, EVP_PKEY_keygen(context, &key) == 1, let key else {
            throw OpenSSL.failure("EVP_PKEY_keygen(\(name))")
        }
        return PKey(takingOwnership: key)
    }

    static func privateKey(_ type: Int32, _ raw: [UInt8]) throws(CryptoError) -> PKey {
        ERR_clear_error()
        guard let key = EVP_PKEY_new_raw_private_key(type, nil, raw, raw.count) else {
            throw OpenSSL.failure("EVP_PKEY_new_raw_private_key")
        }
        return PKey(takingOwnership: key)
    }

    static func publicKey(_ type: Int32, _ raw: [UInt8]) throws(CryptoError) -> PKey {
        ERR_clear_error()
        guard let key = EVP_PKEY_new_raw_public_key(type, nil, raw, raw.count) else {
            throw OpenSSL.failure("EVP_PKEY_new_raw_public_key")
        }
        return PKey(takingOwnership: key)
    }

    func rawPublicKey() throws(CryptoError) -> [UInt8] {
        var length = 32
        var bytes = [UInt8](repeating: 0, count: length)
        guard EVP_PKEY_get_raw_public_key(pointer, &bytes, &length) == 1, length == 32 else {
            throw OpenSSL.failure("EVP_PKEY_get_raw_public_key")
        }
        return bytes
    }

    func rawPrivateKey() throws(CryptoError) -> [UInt8] {
        var length = 32
        var bytes = [UInt8](repeating: 0, count: length)
        guard EVP_PKEY_get_raw_private_key(pointer, &bytes, &length) == 1, length == 32 else {
            throw OpenSSL.failure("EVP_PKEY_get_raw_private_key")
        }
        return bytes
    }
}
