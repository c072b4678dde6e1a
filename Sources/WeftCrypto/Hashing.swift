import COpenSSL
public import WeftWire

/// SHA-256 through OpenSSL.
public enum SHA256 {
    /// The 32-byte digest of `bytes`.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeBufferPointer { buffer in
            _ = COpenSSL.SHA256(buffer.baseAddress, buffer.count, &digest)
        }
        return digest
    }
}

/// A SHA-256 digest computed for one purpose (`weft.v1.HashPurpose`).
///
/// Signatures are always over a `PurposeHash`, never over raw bytes, so
/// bytes signed for one purpose can never be passed off as another: the
/// purpose is the first thing hashed.
public struct PurposeHash: Hashable, Sendable, CustomStringConvertible {
    /// What the hash is for.
    public let purpose: Weft.V1.HashPurpose
    /// The 32 digest bytes.
    public let digest: [UInt8]

    /// A hash received from elsewhere (e.g. a view hash in a message).
    public init(purpose: Weft.V1.HashPurpose, digest: [UInt8]) throws(CryptoError) {
        guard digest.count == 32 else { throw .invalidLength(what: "a SHA-256 digest", expected: 32, actual: digest.count) }
        self.purpose = purpose
        self.digest = digest
    }

    fileprivate init(unchecked purpose: Weft.V1.HashPurpose, _ digest: [UInt8]) {
        self.purpose = purpose
        self.digest = digest
    }

    public var description: String { "\(purpose):" + hex(digest) }
}

/// Builds a `PurposeHash`: SHA-256 over the purpose id as 4 big-endian bytes,
/// then each field as a 4-byte big-endian length followed by its bytes
/// (docs/crypto.md, "Purpose-tagged hashing").
public struct PurposeHasher: ~Copyable {
    private let context: OpaquePointer
    private let purpose: Weft.V1.HashPurpose

    public init(_ purpose: Weft.V1.HashPurpose) {
        precondition(purpose != .unspecified, "a hash needs a purpose")
        guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex2(context, Self.sha256, nil) == 1 else {
            fatalError("OpenSSL cannot initialize SHA-256: \(OpenSSL.takeError())")
        }
        self.context = context
        self.purpose = purpose
        var id = UInt32(bitPattern: purpose.rawValue).bigEndian
        withUnsafeBytes(of: &id) { _ = EVP_DigestUpdate(context, $0.baseAddress, 4) }
    }

    deinit { EVP_MD_CTX_free(context) }

    /// SHA-256, fetched once: OpenSSL 3 otherwise looks the digest up in its provider on every
    /// initialization, which cost more than hashing a small field.
    nonisolated(unsafe) static let sha256: OpaquePointer = {
        guard let digest = EVP_MD_fetch(nil, "SHA256", nil) else {
            fatalError("OpenSSL has no SHA256: \(OpenSSL.takeError())")
        }
        return digest
    }()

    /// Appends one field: its length, then its bytes.
    public mutating func append(_ bytes: [UInt8]) {
        var length = UInt32(bytes.count).bigEndian
        withUnsafeBytes(of: &length) { _ = EVP_DigestUpdate(context, $0.baseAddress, 4) }
        bytes.withUnsafeBufferPointer { _ = EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
    }

    /// Appends a string field as its UTF-8 bytes.
    public mutating func append(_ string: String) { append(Array(string.utf8)) }

    /// Appends an integer field as 8 big-endian bytes.
    public mutating func append(_ value: UInt64) {
        append(withUnsafeBytes(of: value.bigEndian) { Array($0) })
    }

    /// Appends a signed integer field as 8 big-endian bytes (two's complement).
    public mutating func append(_ value: Int64) { append(UInt64(bitPattern: value)) }

    /// The hash of everything appended.
    public consuming func finalize() -> PurposeHash {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &digest, &length) == 1, length == 32 else {
            fatalError("OpenSSL SHA-256 failed: \(OpenSSL.takeError())")
        }
        return PurposeHash(unchecked: purpose, digest)
    }

    /// The hash of `fields` for `purpose`, in one call.
    public static func hash(_ purpose: Weft.V1.HashPurpose, _ fields: [UInt8]...) -> PurposeHash {
        var hasher = PurposeHasher(purpose)
        for field in fields { hasher.append(field) }
        return hasher.finalize()
    }
}

/// Lower-case hex digits of `bytes`.
package func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var result = [UInt8]()
    result.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        result.append(digits[Int(byte >> 4)])
        result.append(digits[Int(byte & 0x0F)])
    }
    return String(decoding: result, as: UTF8.self)
}

/// The bytes of an even-length string of hex digits (either case); nil if it is not one.
package func bytes(hex text: String) -> [UInt8]? {
    let digits = Array(text.utf8)
    guard digits.count % 2 == 0 else { return nil }
    func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(digits.count / 2)
    for index in stride(from: 0, to: digits.count, by: 2) {
        guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
        bytes.append(high << 4 | low)
    }
    return bytes
}
