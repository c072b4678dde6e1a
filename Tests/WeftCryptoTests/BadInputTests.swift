// Bad input: every malformed key, altered ciphertext, misattributed signature
// and malformed identifier is refused with a typed `CryptoError`, never a
// crash and never the plaintext.

import Testing
import WeftWire

@testable import WeftCrypto

/// `bytes` with bit `bit` of byte `index` inverted.
private func flipBit(_ bytes: [UInt8], byte index: Int, bit: Int) -> [UInt8] {
    var copy = bytes
    copy[index] ^= UInt8(1) << UInt8(bit)
    return copy
}

/// A view sealed for `recipient`, with the plaintext and the recipient's key.
private struct SealedView {
    let recipient: EncryptionPrivateKey
    let view: [UInt8]
    let message: Weft.V1.EncryptedViewMessage

    /// A 12-byte view, so the ciphertext is nonce (12) ‖ body (12) ‖ tag (16).
    init(view: [UInt8] = Array("a short view".utf8)) throws {
        recipient = try EncryptionPrivateKey.generate()
        self.view = view
        let viewHash = PurposeHasher.hash(.transactionView, Array("view 0".utf8), view)
        message = try ViewEncryption.seal(view, viewHash: viewHash, seed: ViewSeed.random(), recipients: [recipient.publicKey])
    }
}

// MARK: - View encryption

@Suite("Bad input: view encryption")
struct ViewEncryptionBadInputTests {
    @Test("the unaltered view opens (control for the tests below)")
    func control() throws {
        let sealed = try SealedView()
        #expect(sealed.message.ciphertext.count == 12 + sealed.view.count + 16)
        #expect(sealed.message.wrappedSeeds.count == 1)
        #expect(try ViewEncryption.open(sealed.message, with: sealed.recipient) == sealed.view)
    }

    @Test("a key that is not a recipient")
    func wrongRecipient() throws {
        let sealed = try SealedView()
        let stranger = try EncryptionPrivateKey.generate()
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(sealed.message, with: stranger) }

        // Relabelling the wrapped seed with the stranger's fingerprint does not
        // help: the seed was wrapped for another key.
        var relabelled = sealed.message
        relabelled.wrappedSeeds[0].recipientKey = stranger.publicKey.fingerprint.description
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(relabelled, with: stranger) }
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(relabelled, with: sealed.recipient) }
    }

    @Test("one flipped bit anywhere in the ciphertext: nonce, body or tag")
    func ciphertextBitFlips() throws {
        let sealed = try SealedView()
        let ciphertext = sealed.message.ciphertext
        for index in ciphertext.indices {
            for bit in 0..<8 {
                var altered = sealed.message
                altered.ciphertext = flipBit(ciphertext, byte: index, bit: bit)
                let region = index < 12 ? "nonce" : index >= ciphertext.count - 16 ? "tag" : "body"
                #expect(throws: CryptoError.decryptionFailed, "bit \(bit) of byte \(index) (\(region))") {
                    try ViewEncryption.open(altered, with: sealed.recipient)
                }
            }
        }
    }

    @Test("one flipped bit in the view hash (the associated data)")
    func viewHashBitFlips() throws {
        let sealed = try SealedView()
        #expect(sealed.message.viewHash.count == 32)
        for index in sealed.message.viewHash.indices {
            for bit in [0, 7] {
                var altered = sealed.message
                altered.viewHash = flipBit(sealed.message.viewHash, byte: index, bit: bit)
                #expect(throws: CryptoError.decryptionFailed, "bit \(bit) of view hash byte \(index)") {
                    try ViewEncryption.open(altered, with: sealed.recipient)
                }
            }
        }
        var emptied = sealed.message
        emptied.viewHash = []
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(emptied, with: sealed.recipient) }
    }

    @Test("one flipped bit in the wrapped seed's ciphertext")
    func wrappedSeedCiphertextBitFlips() throws {
        let sealed = try SealedView()
        let wrapped = sealed.message.wrappedSeeds[0].ciphertext
        #expect(wrapped.count == ViewSeed.byteCount + 16)
        for index in wrapped.indices {
            for bit in [0, 4, 7] {
                var altered = sealed.message
                altered.wrappedSeeds[0].ciphertext = flipBit(wrapped, byte: index, bit: bit)
                #expect(throws: CryptoError.decryptionFailed, "bit \(bit) of wrapped seed byte \(index)") {
                    try ViewEncryption.open(altered, with: sealed.recipient)
                }
            }
        }
        for length in [0, 15, 16, wrapped.count - 1] {
            var truncated = sealed.message
            truncated.wrappedSeeds[0].ciphertext = Array(wrapped.prefix(length))
            #expect(throws: CryptoError.decryptionFailed, "wrapped seed cut to \(length) bytes") {
                try ViewEncryption.open(truncated, with: sealed.recipient)
            }
        }
    }

    @Test("one flipped bit in the wrapped seed's ephemeral public key")
    func ephemeralKeyBitFlips() throws {
        let sealed = try SealedView()
        let ephemeral = sealed.message.wrappedSeeds[0].ephemeralPublicKey
        #expect(ephemeral.count == 32)
        // Every bit, including bit 255, which X25519 ignores: the ephemeral key
        // is also bound through the HKDF salt. Some flips may give a point
        // OpenSSL refuses; any CryptoError will do, the plaintext never.
        for index in ephemeral.indices {
            for bit in 0..<8 {
                var altered = sealed.message
                altered.wrappedSeeds[0].ephemeralPublicKey = flipBit(ephemeral, byte: index, bit: bit)
                #expect(throws: CryptoError.self, "bit \(bit) of ephemeral key byte \(index)") {
                    try ViewEncryption.open(altered, with: sealed.recipient)
                }
            }
        }
        // A low-order ephemeral key (the all-zero u-coordinate) is refused too.
        var lowOrder = sealed.message
        lowOrder.wrappedSeeds[0].ephemeralPublicKey = [UInt8](repeating: 0, count: 32)
        #expect(throws: CryptoError.self) { try ViewEncryption.open(lowOrder, with: sealed.recipient) }
        // And one of the wrong length.
        var short = sealed.message
        short.wrappedSeeds[0].ephemeralPublicKey = Array(ephemeral.dropLast())
        #expect(throws: CryptoError.invalidLength(what: "an X25519 public key", expected: 32, actual: 31)) {
            try ViewEncryption.open(short, with: sealed.recipient)
        }
    }

    @Test("a wrapped seed of another scheme")
    func wrappedSeedScheme() throws {
        let sealed = try SealedView()
        var altered = sealed.message
        altered.wrappedSeeds[0].scheme = .unspecified
        let error = #expect(throws: CryptoError.self) { try ViewEncryption.open(altered, with: sealed.recipient) }
        guard case .wrongKeyScheme? = error else {
            Issue.record("expected wrongKeyScheme, got \(String(describing: error))")
            return
        }
    }

    @Test("truncated ciphertext", arguments: [0, 11, 12, 27, 28, 39])
    func truncatedCiphertext(_ length: Int) throws {
        let sealed = try SealedView()
        #expect(length < sealed.message.ciphertext.count)
        var truncated = sealed.message
        truncated.ciphertext = Array(sealed.message.ciphertext.prefix(length))
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(truncated, with: sealed.recipient) }
    }

    @Test("an empty view: every flipped bit of nonce and tag")
    func emptyView() throws {
        let sealed = try SealedView(view: [])
        #expect(try ViewEncryption.open(sealed.message, with: sealed.recipient) == [])
        let ciphertext = sealed.message.ciphertext
        #expect(ciphertext.count == 28)
        for index in ciphertext.indices {
            for bit in 0..<8 {
                var altered = sealed.message
                altered.ciphertext = flipBit(ciphertext, byte: index, bit: bit)
                #expect(throws: CryptoError.decryptionFailed, "bit \(bit) of byte \(index)") {
                    try ViewEncryption.open(altered, with: sealed.recipient)
                }
            }
        }
    }
}

// MARK: - Keys

@Suite("Bad input: keys")
struct KeyBadInputTests {
    @Test("keys of the wrong length", arguments: [0, 31, 33, 64])
    func wrongLength(_ count: Int) {
        let bytes = [UInt8](repeating: 0x42, count: count)
        #expect(throws: CryptoError.invalidLength(what: "an Ed25519 public key", expected: 32, actual: count)) {
            try SigningPublicKey(rawRepresentation: bytes)
        }
        #expect(throws: CryptoError.invalidLength(what: "an Ed25519 private key", expected: 32, actual: count)) {
            try SigningPrivateKey(rawRepresentation: bytes)
        }
        #expect(throws: CryptoError.invalidLength(what: "an X25519 public key", expected: 32, actual: count)) {
            try EncryptionPublicKey(rawRepresentation: bytes)
        }
        #expect(throws: CryptoError.invalidLength(what: "an X25519 private key", expected: 32, actual: count)) {
            try EncryptionPrivateKey(rawRepresentation: bytes)
        }
        #expect(throws: CryptoError.invalidLength(what: "an Ed25519 public key", expected: 32, actual: count)) {
            try SigningPublicKey(Weft.V1.PublicKey(scheme: .ed25519, purpose: .signing, key: bytes))
        }
        #expect(throws: CryptoError.invalidLength(what: "a view seed", expected: 32, actual: count)) {
            try ViewSeed(bytes: bytes)
        }
        #expect(throws: CryptoError.invalidLength(what: "a SHA-256 digest", expected: 32, actual: count)) {
            try PurposeHash(purpose: .transactionView, digest: bytes)
        }
    }

    @Test("a wire key of the wrong scheme")
    func wrongScheme() throws {
        let x25519 = try EncryptionPrivateKey.generate().publicKey
        let ed25519 = try SigningPrivateKey.generate().publicKey
        // Right length, wrong algorithm: refused by scheme, not by length.
        let error = #expect(throws: CryptoError.self) { try SigningPublicKey(x25519.wire) }
        guard case .wrongKeyScheme(let expected, _)? = error else {
            Issue.record("expected wrongKeyScheme, got \(String(describing: error))")
            return
        }
        #expect(expected == "Ed25519")
        let reverse = #expect(throws: CryptoError.self) { try EncryptionPublicKey(ed25519.wire()) }
        guard case .wrongKeyScheme(let expectedX, _)? = reverse else {
            Issue.record("expected wrongKeyScheme, got \(String(describing: reverse))")
            return
        }
        #expect(expectedX == "X25519")
        #expect(throws: CryptoError.self) {
            try SigningPublicKey(Weft.V1.PublicKey(scheme: .unspecified, purpose: .signing, key: ed25519.rawRepresentation))
        }
        // The right scheme is accepted (control).
        #expect(try SigningPublicKey(ed25519.wire()) == ed25519)
        #expect(try EncryptionPublicKey(x25519.wire) == x25519)
    }

    /// Low-order X25519 points: u = 0, u = 1, and a point of order 8
    /// (e0eb7a7c…b800, from the list of small-order points known to Curve25519
    /// libraries). Each makes the shared secret all zeros (RFC 7748 §6.1).
    @Test(
        "an X25519 low-order public key",
        arguments: [
            [UInt8](repeating: 0, count: 32),
            [1] + [UInt8](repeating: 0, count: 31),
            [
                0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a,
                0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00,
            ] as [UInt8],
        ])
    func lowOrderPublicKey(_ point: [UInt8]) throws {
        let key = try EncryptionPrivateKey.generate()
        let peer = try EncryptionPublicKey(rawRepresentation: point)
        let error = #expect(throws: CryptoError.self) { try key.sharedSecret(with: peer) }
        guard case .invalidPublicKey? = error else {
            Issue.record("expected invalidPublicKey, got \(String(describing: error))")
            return
        }
    }

    /// Every Ed25519 point of small order (computed as [L]P for random points P: the 8-torsion),
    /// and p, p + 1 (non-canonical y = 0, 1): with the identity as a key, `([S]B, S)` verifies
    /// for every message. Refused as keys; a generated key is accepted.
    @Test(
        "an Ed25519 public key of small order",
        arguments: [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000000000000080",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
            "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
            "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ])
    func smallOrderSigningKey(_ hex: String) throws {
        let bytes = stride(from: 0, to: hex.count, by: 2).map { offset in
            UInt8(hex.dropFirst(offset).prefix(2), radix: 16)!
        }
        let error = #expect(throws: CryptoError.self) { try SigningPublicKey(rawRepresentation: bytes) }
        guard case .invalidPublicKey? = error else {
            Issue.record("expected invalidPublicKey, got \(String(describing: error))")
            return
        }
        _ = try SigningPublicKey(rawRepresentation: try SigningPrivateKey.generate().publicKey.rawRepresentation)
    }
}

// MARK: - Signatures

@Suite("Bad input: signatures")
struct SignatureBadInputTests {
    let key: SigningPrivateKey
    let other: SigningPrivateKey
    let hash = PurposeHasher.hash(.topologyTransaction, Array("namespace delegation".utf8), [0, 1, 2])

    init() throws {
        key = try SigningPrivateKey.generate()
        other = try SigningPrivateKey.generate()
    }

    @Test("the key's own signature verifies (control)")
    func control() throws {
        let signature = try key.sign(hash)
        #expect(signature.signedBy == key.publicKey.fingerprint.description)
        #expect(signature.signature.count == 64)
        try key.publicKey.verify(signature, over: hash)
    }

    @Test("a signature by another key")
    func otherKey() throws {
        let signature = try other.sign(hash)
        #expect(throws: CryptoError.invalidSignature) { try key.publicKey.verify(signature, over: hash) }
    }

    @Test("another key's signature attributed to the verifier (forged signedBy)")
    func forgedAttribution() throws {
        var signature = try other.sign(hash)
        signature.signedBy = key.publicKey.fingerprint.description
        #expect(throws: CryptoError.invalidSignature) { try key.publicKey.verify(signature, over: hash) }
        // And the real signer does not accept it under the forged name either.
        #expect(throws: CryptoError.invalidSignature) { try other.publicKey.verify(signature, over: hash) }
    }

    @Test("the same fields hashed for another purpose")
    func otherPurpose() throws {
        let fields = Array("namespace delegation".utf8)
        let topology = PurposeHasher.hash(.topologyTransaction, fields)
        let submission = PurposeHasher.hash(.submissionRequest, fields)
        #expect(topology.digest != submission.digest)
        let signature = try key.sign(topology)
        try key.publicKey.verify(signature, over: topology)
        #expect(throws: CryptoError.invalidSignature) { try key.publicKey.verify(signature, over: submission) }
    }

    @Test("altered signatures")
    func alteredSignatures() throws {
        let signature = try key.sign(hash)
        for index in [0, 31, 32, 63] {
            var altered = signature
            altered.signature = flipBit(signature.signature, byte: index, bit: 1)
            #expect(throws: CryptoError.invalidSignature, "byte \(index)") { try key.publicKey.verify(altered, over: hash) }
        }
        for length in [0, 63, 65] {
            var resized = signature
            resized.signature = Array((signature.signature + [0]).prefix(length))
            #expect(throws: CryptoError.invalidSignature, "\(length) bytes") { try key.publicKey.verify(resized, over: hash) }
        }
        var unsigned = signature
        unsigned.signedBy = ""
        #expect(throws: CryptoError.invalidSignature) { try key.publicKey.verify(unsigned, over: hash) }
        var otherScheme = signature
        otherScheme.scheme = .unspecified
        #expect(throws: CryptoError.self) { try key.publicKey.verify(otherScheme, over: hash) }
    }
}

// MARK: - Fingerprints and identifiers

/// Asserts that `parse` throws the `CryptoError` case `expected` picks out,
/// with a reason containing `substring`.
private func expectParseError(
    _ text: String, _ substring: String, case extract: (CryptoError) -> String?, kind: String,
    sourceLocation: SourceLocation = #_sourceLocation, _ parse: (String) throws -> Void
) {
    let error = #expect(throws: CryptoError.self, "parsing '\(text)'", sourceLocation: sourceLocation) { try parse(text) }
    guard let error else { return }
    guard let reason = extract(error) else {
        Issue.record("parsing '\(text)': expected \(kind), got \(error)", sourceLocation: sourceLocation)
        return
    }
    #expect(reason.contains(substring), "reason: \(reason)", sourceLocation: sourceLocation)
    #expect(error.description.contains(reason), sourceLocation: sourceLocation)
}

private let digestHex = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
private let goodFingerprint = "1220" + digestHex
private let upperCaseFingerprint = "1220" + digestHex.uppercased()
private let upperCaseFirstFingerprint = "1220A" + String(digestHex.dropFirst())
private let nonHexFingerprint = "1220" + String(digestHex.prefix(10)) + "g" + String(digestHex.dropFirst(11))
private let nonHexLastFingerprint = "1220" + String(digestHex.prefix(63)) + "-"

@Suite("Bad input: fingerprints and identifiers")
struct IdentifierBadInputTests {
    @Test("well-formed text parses and prints back (control)")
    func control() throws {
        #expect(try Fingerprint(parsing: goodFingerprint).description == goodFingerprint)
        let identifier = try UniqueIdentifier(parsing: "participant1::" + goodFingerprint)
        #expect(identifier.name == "participant1")
        #expect(identifier.description == "participant1::" + goodFingerprint)
        let member = try MemberID(parsing: "PAR::participant1::" + goodFingerprint)
        #expect(member.role == .participant)
        #expect(member.description == "PAR::participant1::" + goodFingerprint)
    }

    @Test(
        "malformed fingerprints",
        arguments: [
            ("", "has 0 characters"),
            ("1220abc", "has 7 characters"),
            (goodFingerprint + "0", "has 69 characters"),
            ("1221" + digestHex, "does not start with 1220"),
            ("abcd" + digestHex, "does not start with 1220"),
            (upperCaseFingerprint, "has E at position 6"),
            (upperCaseFirstFingerprint, "has A at position 5"),
            (nonHexFingerprint, "has g at position 15"),
            (nonHexLastFingerprint, "has - at position 68"),
        ])
    func fingerprint(_ text: String, _ substring: String) {
        expectParseError(text, substring, case: { if case .invalidFingerprint(let r) = $0 { r } else { nil } }, kind: "invalidFingerprint") {
            _ = try Fingerprint(parsing: $0)
        }
    }

    @Test(
        "malformed unique identifiers",
        arguments: [
            ("participant1", "has no '::'"),
            ("participant1:" + goodFingerprint, "has no '::'"),
            ("::" + goodFingerprint, "has an empty name"),
            ("alice bob::" + goodFingerprint, "at position 6"),
            ("ali$ce::" + goodFingerprint, "has $ at position 4"),
            ("élise::" + goodFingerprint, "a non-ASCII character at position 1"),
            (String(repeating: "a", count: 101) + "::" + goodFingerprint, "has 101 characters; at most 100"),
            ("alice::bob::" + goodFingerprint, "more than one '::'"),
            ("alice::", "has 0 characters"),
            ("alice::1220abc", "has 7 characters"),
            ("alice::" + upperCaseFingerprint, "position 6"),
        ])
    func uniqueIdentifier(_ text: String, _ substring: String) {
        expectParseError(text, substring, case: { if case .invalidIdentifier(let r) = $0 { r } else { nil } }, kind: "invalidIdentifier") {
            _ = try UniqueIdentifier(parsing: $0)
        }
    }

    @Test(
        "malformed member ids",
        arguments: [
            ("", "does not start with PAR::, MED::, SEQ:: or DOM::"),
            ("participant1::" + goodFingerprint, "does not start with PAR::"),
            ("XYZ::participant1::" + goodFingerprint, "does not start with PAR::"),
            ("par::participant1::" + goodFingerprint, "does not start with PAR::"),
            ("PAR:participant1::" + goodFingerprint, "does not start with PAR::"),
            ("PAR::" + goodFingerprint, "has no '::'"),
            ("MED::::" + goodFingerprint, "has an empty name"),
            ("SEQ::seq#1::" + goodFingerprint, "has # at position 4"),
            ("DOM::domain::1220", "has 4 characters"),
        ])
    func memberID(_ text: String, _ substring: String) {
        expectParseError(text, substring, case: { if case .invalidIdentifier(let r) = $0 { r } else { nil } }, kind: "invalidIdentifier") {
            _ = try MemberID(parsing: $0)
        }
    }

    @Test("a name of a valid identifier is checked on construction too")
    func constructedName() throws {
        let namespace = try Fingerprint(parsing: goodFingerprint)
        #expect(throws: CryptoError.self) { try UniqueIdentifier(name: "", namespace: namespace) }
        #expect(throws: CryptoError.self) { try UniqueIdentifier(name: "a::b", namespace: namespace) }
        #expect(try UniqueIdentifier(name: "a-b_c.d", namespace: namespace).description == "a-b_c.d::" + goodFingerprint)
    }
}
