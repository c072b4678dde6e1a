import COpenSSL

/// HMAC-SHA256 (RFC 2104, FIPS 198-1) through OpenSSL's `EVP_MAC`.
///
/// Weft derives the salts of a transaction's Merkle tree with it, one per
/// node, from one seed per transaction (DESIGN.md §7): many MACs under one
/// key, so `Key` prepares the key once and each MAC costs two SHA-256
/// compressions plus the message.
public enum HMACSHA256 {
    /// Bytes of a MAC.
    public static let outputBytes = 32

    /// The MAC algorithm, fetched once: OpenSSL 3 looks an algorithm up in its
    /// provider registry on every use unless it is fetched explicitly.
    nonisolated(unsafe) static let mac: OpaquePointer = {
        guard let mac = EVP_MAC_fetch(nil, "HMAC", nil) else {
            fatalError("OpenSSL has no HMAC: \(OpenSSL.takeError())")
        }
        return mac
    }()

    /// The MAC of `message` under `key` (any length; RFC 2104 hashes keys
    /// longer than 64 bytes first).
    public static func authenticate(_ message: [UInt8], key: [UInt8]) throws(CryptoError) -> [UInt8] {
        try Key(key).authenticate(message)
    }

    /// A key prepared once (its inner and outer pads hashed) for many
    /// messages. Not for concurrent use: one context, reset per message.
    public final class Key {
        private let context: OpaquePointer

        public init(_ key: [UInt8]) throws(CryptoError) {
            ERR_clear_error()
            guard let context = EVP_MAC_CTX_new(HMACSHA256.mac) else { throw OpenSSL.failure("EVP_MAC_CTX_new(HMAC)") }
            self.context = context
            // OSSL_PARAM keeps both pointers: both strings must outlive the init.
            let initialized = "digest".withCString { parameter in
                "SHA256".withCString { digest in
                    var parameters = [
                        OSSL_PARAM_construct_utf8_string(parameter, UnsafeMutablePointer(mutating: digest), 0),
                        OSSL_PARAM_construct_end(),
                    ]
                    // A zero-length key is legal HMAC; OpenSSL wants a non-null pointer for it.
                    let storage = key.isEmpty ? [0] : key
                    return storage.withUnsafeBufferPointer {
                        EVP_MAC_init(context, $0.baseAddress, key.count, &parameters)
                    }
                }
            }
            guard initialized == 1 else { throw OpenSSL.failure("EVP_MAC_init(HMAC-SHA256)") }
        }

        deinit { EVP_MAC_CTX_free(context) }

        /// The MAC of `message`.
        public func authenticate(_ message: [UInt8]) -> [UInt8] {
            message.withUnsafeBytes { authenticate($0) }
        }

        /// The MAC of the bytes in `message`.
        public func authenticate(_ message: UnsafeRawBufferPointer) -> [UInt8] {
            var output = [UInt8](repeating: 0, count: HMACSHA256.outputBytes)
            var length = 0
            // A null key re-initializes with the key already set, reusing its
            // prepared pads.
            guard EVP_MAC_init(context, nil, 0, nil) == 1,
                message.isEmpty
                    || EVP_MAC_update(context, message.baseAddress!.assumingMemoryBound(to: UInt8.self), message.count)
                        == 1,
                EVP_MAC_final(context, &output, &length, output.count) == 1, length == HMACSHA256.outputBytes
            else {
                fatalError("OpenSSL HMAC-SHA256 failed: \(OpenSSL.takeError())")
            }
            return output
        }
    }
}
