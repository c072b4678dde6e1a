/// Why a cryptographic operation or a parse failed. Every case says what was
/// wrong in words an operator can act on; none carries secret material.
public enum CryptoError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A key, signature, seed or digest has the wrong number of bytes.
    case invalidLength(what: String, expected: Int, actual: Int)
    /// A key of another algorithm or purpose than the operation needs.
    case wrongKeyScheme(expected: String, actual: String)
    /// The signature does not verify with the given key over the given hash.
    case invalidSignature
    /// Decryption failed: wrong key, or ciphertext, tag, associated data or
    /// wrapped key altered. Deliberately not more specific.
    case decryptionFailed
    /// An X25519 agreement produced the all-zero secret (a low-order public key).
    case invalidPublicKey(String)
    /// A fingerprint string is malformed.
    case invalidFingerprint(String)
    /// A unique identifier (`name::fingerprint`) is malformed.
    case invalidIdentifier(String)
    /// A key file is readable by others than its owner.
    case keyFilePermissions(path: String, mode: String)
    /// A key file could not be read or written.
    case keyFile(path: String, reason: String)
    /// OpenSSL reported an error in `function`.
    case openSSL(function: String, reason: String)

    public var description: String {
        switch self {
        case .invalidLength(let what, let expected, let actual):
            return "\(what) must be \(expected) bytes, not \(actual)"
        case .wrongKeyScheme(let expected, let actual):
            return "expected a \(expected) key, got a \(actual) key"
        case .invalidSignature:
            return "signature does not verify"
        case .decryptionFailed:
            return "decryption failed (wrong key, or the data was altered)"
        case .invalidPublicKey(let reason):
            return "invalid public key: \(reason)"
        case .invalidFingerprint(let reason):
            return "invalid fingerprint: \(reason)"
        case .invalidIdentifier(let reason):
            return "invalid identifier: \(reason)"
        case .keyFilePermissions(let path, let mode):
            return "key file \(path) has mode \(mode) and others may read it; run `chmod 600 \(path)`"
        case .keyFile(let path, let reason):
            return "key file \(path): \(reason)"
        case .openSSL(let function, let reason):
            return "OpenSSL \(function) failed: \(reason)"
        }
    }
}
