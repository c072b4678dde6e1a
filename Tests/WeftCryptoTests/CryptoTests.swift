import Foundation
import Testing
import WeftCrypto
import WeftTestSupport
import WeftWire

/// Behaviour of Weft's own schemes, built on the primitives that
/// KnownAnswerTests checks against the standards.
@Suite struct CryptoTests {
    @Test func signAndVerifyAPurposeHash() throws {
        let key = try SigningPrivateKey.generate()
        var hasher = PurposeHasher(.topologyTransaction)
        hasher.append("participant1::1220ab")
        hasher.append(UInt64(7))
        let hash = hasher.finalize()
        let signature = try key.sign(hash)
        #expect(signature.scheme == .ed25519)
        #expect(signature.signedBy == key.publicKey.fingerprint.description)
        #expect(signature.signature.count == 64)
        try key.publicKey.verify(signature, over: hash)
        // The same fields under another purpose give another hash: the signature does not carry over.
        var other = PurposeHasher(.submissionRequest)
        other.append("participant1::1220ab")
        other.append(UInt64(7))
        let otherHash = other.finalize()
        #expect(otherHash.digest != hash.digest)
        #expect(throws: CryptoError.invalidSignature) { try key.publicKey.verify(signature, over: otherHash) }
    }

    @Test func purposeHashingIsLengthPrefixed() {
        // Field boundaries are part of the hash: ["ab", "c"] ≠ ["a", "bc"].
        let a = PurposeHasher.hash(.merkleTreeNode, Array("ab".utf8), Array("c".utf8))
        let b = PurposeHasher.hash(.merkleTreeNode, Array("a".utf8), Array("bc".utf8))
        #expect(a != b)
        // And it is SHA-256 over: purpose id (4 bytes BE), then each field as length (4 bytes BE) + bytes.
        let expected = SHA256.hash([0, 0, 0, 6] + [0, 0, 0, 2] + Array("ab".utf8) + [0, 0, 0, 1] + Array("c".utf8))
        #expect(a.digest == expected)
    }

    @Test func fingerprintIsMultihashOfThePurposeHash() throws {
        let key = try SigningPrivateKey(rawRepresentation: Array(repeating: 1, count: 32)).publicKey
        let text = key.fingerprint.description
        #expect(text.hasPrefix("1220") && text.count == 68)
        let expected = SHA256.hash([0, 0, 0, 1] + [0, 0, 0, 8] + [0, 0, 0, 0, 0, 0, 0, 1] + [0, 0, 0, 32] + key.rawRepresentation)
        #expect(key.fingerprint.digest == expected)
        #expect(try Fingerprint(parsing: text) == key.fingerprint)
        // An X25519 key with the same bytes has another fingerprint: the scheme is hashed.
        let x = try EncryptionPublicKey(rawRepresentation: key.rawRepresentation)
        #expect(x.fingerprint != key.fingerprint)
    }

    @Test func identifiersRoundTrip() throws {
        let namespace = try SigningPrivateKey.generate().publicKey.fingerprint
        let participant = try UniqueIdentifier(name: "participant1", namespace: namespace)
        #expect(try UniqueIdentifier(parsing: participant.description) == participant)
        let member = MemberID(role: .participant, identifier: participant)
        #expect(member.description == "PAR::participant1::" + namespace.description)
        #expect(try MemberID(parsing: member.description) == member)
        #expect(try MemberID(parsing: "MED::mediator1::" + namespace.description).role == .mediator)
    }

    @Test func viewSealedForTwoRecipientsOpensForEachAndNoOneElse() throws {
        let alice = try EncryptionPrivateKey.generate()
        let bob = try EncryptionPrivateKey.generate()
        let carol = try EncryptionPrivateKey.generate()
        let view = Array("the view: alice pays bob 10".utf8)
        let viewHash = PurposeHasher.hash(.transactionView, view)
        let seed = try ViewSeed.random()
        let message = try ViewEncryption.seal(view, viewHash: viewHash, seed: seed, recipients: [alice.publicKey, bob.publicKey])
        #expect(message.wrappedSeeds.count == 2)
        #expect(message.wrappedSeeds.map(\.recipientKey) == [alice.publicKey.fingerprint.description, bob.publicKey.fingerprint.description])
        #expect(!message.ciphertext.contains(subsequence: view))
        #expect(try ViewEncryption.open(message, with: alice) == view)
        #expect(try ViewEncryption.open(message, with: bob) == view)
        #expect(try ViewEncryption.seed(of: message, with: bob) == seed)
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(message, with: carol) }
        // The message survives the wire.
        let decoded = try Weft.V1.EncryptedViewMessage(serializedBytes: message.serializedBytes())
        #expect(try ViewEncryption.open(decoded, with: alice) == view)
    }

    @Test func sealWithAFreshSeedReturnsTheSeedForSubviews() throws {
        let recipient = try EncryptionPrivateKey.generate()
        let view = Array("view".utf8)
        let (message, seed) = try ViewEncryption.seal(view, viewHash: PurposeHasher.hash(.transactionView, view), recipients: [recipient.publicKey])
        #expect(try ViewEncryption.seed(of: message, with: recipient) == seed)
        #expect(try ViewEncryption.open(message, with: recipient) == view)
    }

    @Test func subviewsOpenWithTheParentsSeed() throws {
        let recipient = try EncryptionPrivateKey.generate()
        let parentSeed = try ViewSeed.random()
        let subview = Array("subview 1".utf8)
        let subviewHash = PurposeHasher.hash(.transactionView, subview)
        // The subview's own recipient set may differ; the parent's recipients derive its seed.
        let sealed = try ViewEncryption.seal(
            subview, viewHash: subviewHash, seed: parentSeed.subviewSeed(index: 1), recipients: [])
        let parentSeedUnwrapped = try ViewSeed(bytes: ECIES.unwrap(ECIES.wrap(parentSeed.bytes, for: recipient.publicKey), with: recipient))
        #expect(try ViewEncryption.open(sealed, seed: parentSeedUnwrapped.subviewSeed(index: 1)) == subview)
        #expect(throws: CryptoError.decryptionFailed) {
            try ViewEncryption.open(sealed, seed: parentSeedUnwrapped.subviewSeed(index: 0))
        }
        #expect(try parentSeed.subviewSeed(index: 0) != parentSeed.subviewSeed(index: 1))
    }

    @Test func nonceAndEphemeralKeyAreFreshEachTime() throws {
        let recipient = try EncryptionPrivateKey.generate()
        let seed = try ViewSeed.random()
        let hash = PurposeHasher.hash(.transactionView, [1])
        let first = try ViewEncryption.seal([1, 2, 3], viewHash: hash, seed: seed, recipients: [recipient.publicKey])
        let second = try ViewEncryption.seal([1, 2, 3], viewHash: hash, seed: seed, recipients: [recipient.publicKey])
        #expect(first.ciphertext.prefix(12) != second.ciphertext.prefix(12))
        #expect(first.wrappedSeeds[0].ephemeralPublicKey != second.wrappedSeeds[0].ephemeralPublicKey)
        #expect(try ViewSeed.random() != ViewSeed.random())
    }

    @Test func keyFilesAreWrittenPrivateAndRefusedWhenReadable() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-keys-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let signing = try SigningPrivateKey.generate()
        let path = directory + "/signing.pem"
        try KeyFile.write(signing, to: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(try KeyFile.readSigningKey(at: path).publicKey == signing.publicKey)
        // Never overwritten.
        #expect(throws: CryptoError.self) { try KeyFile.write(signing, to: path) }
        // A key of the other algorithm is refused by type.
        #expect(throws: CryptoError.self) { try KeyFile.readEncryptionKey(at: path) }
        // Readable by the group: refused, and the error says which file and what to do.
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: path)
        let error = #expect(throws: CryptoError.self) { try KeyFile.readSigningKey(at: path) }
        #expect(error == .keyFilePermissions(path: path, mode: "0640"))
        #expect(error?.description.contains("chmod 600 \(path)") == true)

        let encryption = try EncryptionPrivateKey.generate()
        try KeyFile.write(encryption, to: directory + "/encryption.pem")
        #expect(try KeyFile.readEncryptionKey(at: directory + "/encryption.pem").publicKey == encryption.publicKey)
    }

    @Test func keyFilesAreStandardPKCS8() async throws {
        // `openssl pkey` reads what Weft writes, and writes out the same public key (to a file:
        // TestSubprocess returns output as text, and DER is binary).
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-pkcs8-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let key = try SigningPrivateKey.generate()
        try KeyFile.write(key, to: directory + "/k.pem")
        let outcome = try await TestSubprocess.run([
            "openssl", "pkey", "-in", directory + "/k.pem", "-pubout", "-outform", "DER", "-out", directory + "/k.der",
        ])
        #expect(outcome.status == 0, "\(outcome.error)")
        let der = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/k.der")))
        // SubjectPublicKeyInfo of Ed25519: a 12-byte header, then the 32 raw bytes.
        #expect(Array(der.suffix(32)) == key.publicKey.rawRepresentation)
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence: [UInt8]) -> Bool {
        guard subsequence.count <= count else { return false }
        return (0...(count - subsequence.count)).contains { Array(self[$0..<$0 + subsequence.count]) == subsequence }
    }
}

/// Keys reuse an initialized OpenSSL context (`PKey.withContext`): a failed
/// operation must not spoil it, and threads sharing a key must not share it.
@Suite struct ContextReuseTests {
    @Test func aFailedVerificationDoesNotSpoilTheNext() throws {
        let key = try SigningPrivateKey.generate()
        let hash = PurposeHasher.hash(.submissionRequest, [1, 2, 3])
        let good = try key.sign(hash)
        var bad = good
        bad.signature[10] ^= 0x01
        for _ in 0..<5 {
            #expect(throws: CryptoError.invalidSignature) { try key.publicKey.verify(bad, over: hash) }
            try key.publicKey.verify(good, over: hash)
            #expect(try key.sign(hash) == good)  // Ed25519 is deterministic
        }
        let alice = try EncryptionPrivateKey.generate()
        let bob = try EncryptionPrivateKey.generate()
        let lowOrder = try EncryptionPublicKey(rawRepresentation: Array(repeating: 0, count: 32))
        #expect(throws: CryptoError.self) { try alice.sharedSecret(with: lowOrder) }
        #expect(try alice.sharedSecret(with: bob.publicKey) == bob.sharedSecret(with: alice.publicKey))
    }

    @Test func oneKeyUsedFromManyTasksAtOnce() async throws {
        let key = try SigningPrivateKey.generate()
        let recipient = try EncryptionPrivateKey.generate()
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for task in 0..<16 {
                group.addTask {
                    for round in 0..<50 {
                        let hash = PurposeHasher.hash(.submissionRequest, [UInt8(task), UInt8(round)])
                        try key.publicKey.verify(try key.sign(hash), over: hash)
                        let seed = try ViewSeed.random()
                        guard try ECIES.unwrap(ECIES.wrap(seed.bytes, for: recipient.publicKey), with: recipient) == seed.bytes else {
                            return false
                        }
                    }
                    return true
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results == Array(repeating: true, count: 16))
    }
}
