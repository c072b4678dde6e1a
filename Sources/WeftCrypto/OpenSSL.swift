import COpenSSL
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Small helpers at the OpenSSL boundary: error text, the CSPRNG, and owners
/// of the EVP objects used here (each frees its pointer exactly once). `package`
/// members are shared with WeftTransport, which wraps libssl.
package enum OpenSSL {
    /// The oldest error on this thread's OpenSSL error queue, as text, and a
    /// cleared queue (so a later call never sees a stale error).
    package static func takeError() -> String {
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

    /// Whether `text` is an IPv4 or IPv6 address (rather than a DNS name).
    package static func isIPAddress(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// `count` bytes from OpenSSL's CSPRNG (`RAND_bytes`).
    package static func randomBytes(_ count: Int) throws(CryptoError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard count == 0 || RAND_bytes(&bytes, Int32(count)) == 1 else { throw failure("RAND_bytes") }
        return bytes
    }
}

/// Owns an `EVP_PKEY`, and one initialized operation context for it.
///
/// Initializing an OpenSSL 3 operation (`EVP_DigestSignInit`,
/// `EVP_PKEY_derive_init`) looks the algorithm up in the provider registry;
/// `openssl speed` does it once per key, and so does this: the context is
/// kept and reused. A thread that finds it taken by another makes a fresh one
/// rather than wait.
final class PKey: @unchecked Sendable {
    // The key is immutable after creation; OpenSSL's EVP_PKEY is safe for
    // concurrent use by operations that do not change it. The cached context
    // is only touched by the thread that took it out of the mutex.
    let pointer: OpaquePointer
    /// The kind of context cached, which says how to free it.
    enum ContextKind: Sendable {
        /// An `EVP_MD_CTX` (Ed25519 sign or verify).
        case digest
        /// An `EVP_PKEY_CTX` (X25519 derive).
        case pkey

        func free(_ context: OpaquePointer) {
            switch self {
            case .digest: EVP_MD_CTX_free(context)
            case .pkey: EVP_PKEY_CTX_free(context)
            }
        }
    }

    /// An OpenSSL context pointer moving between threads through the mutex;
    /// only the thread that took it out uses it.
    private struct Handle: @unchecked Sendable {
        let pointer: OpaquePointer
        let kind: ContextKind
    }
    private let cachedContext = Mutex<Handle?>(nil)

    init(takingOwnership pointer: OpaquePointer) { self.pointer = pointer }

    deinit {
        if let context = cachedContext.withLock({ $0 }) { context.kind.free(context.pointer) }
        EVP_PKEY_free(pointer)
    }

    /// Runs `body` with this key's initialized operation context of `kind`:
    /// the cached one if free, else a new one from `make`. A context `body`
    /// leaves unusable (it throws) is freed, not cached.
    func withContext<R>(
        _ kind: ContextKind, make: () throws(CryptoError) -> OpaquePointer,
        _ body: (OpaquePointer) throws(CryptoError) -> R
    ) throws(CryptoError) -> R {
        let cached = cachedContext.withLock { slot -> Handle? in
            defer { slot = nil }
            return slot
        }
        let context: OpaquePointer
        if let cached, cached.kind == kind {
            context = cached.pointer
        } else {
            if let cached { cached.kind.free(cached.pointer) }
            context = try make()
        }
        let result: R
        do throws(CryptoError) {
            result = try body(context)
        } catch {
            kind.free(context)
            throw error
        }
        let handle = Handle(pointer: context, kind: kind)
        let displaced = cachedContext.withLock { slot -> Handle? in
            if slot == nil {
                slot = handle
                return nil
            }
            return handle
        }
        if let displaced { displaced.kind.free(displaced.pointer) }
        return result
    }

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

/// OpenSSL's process-wide state.
public enum OpenSSLProcess {
    /// Keeps OpenSSL's global state until the process is gone: no clean-up handler at exit.
    ///
    /// A node that returns from `main` after draining may still have tasks on other threads
    /// inside libcrypto (a sequencer's readers hashing, a signer); OpenSSL's default `atexit`
    /// clean-up frees the state they use under them, and the process dies with SIGSEGV instead
    /// of exiting 0 (seen on a sequencer stopped with SIGTERM). Call it first thing in `main`,
    /// before OpenSSL initializes otherwise.
    public static func keepStateUntilExit() {
        _ = OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
    }
}
