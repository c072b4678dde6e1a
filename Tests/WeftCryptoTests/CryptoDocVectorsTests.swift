import Foundation
import Testing
@testable import WeftCrypto
import WeftWire

/// The test vectors of docs/crypto.md §9 (from an independent Python
/// implementation of the document) hold for Weft, so the document stays true.
@Suite struct CryptoDocVectorsTests {
    func vectors() throws -> [String: [UInt8]] {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            url.deleteLastPathComponent()
        }
        let doc = try String(contentsOf: url.appendingPathComponent("docs/crypto.md"), encoding: .utf8)
        let block = try #require(
            doc.components(separatedBy: "<!-- crypto-vectors:begin -->").last?.components(separatedBy: "<!-- crypto-vectors:end -->").first)
        var result: [String: [UInt8]] = [:]
        for line in block.split(separator: "\n") where line.contains(": ") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            result[parts[0]] = parts[1].hasPrefix("1220") || parts[1].count < 4 ? Array(parts[1].utf8) : try bytes(parts[1])
        }
        return result
    }

    func bytes(_ hex: String) throws -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(try #require(UInt8(hex[index..<next], radix: 16)))
            index = next
        }
        return result
    }

    func text(_ value: [UInt8]?) -> String { String(decoding: value ?? [], as: UTF8.self) }

    @Test func documentVectorsHoldForWeft() throws {
        let v = try vectors()
        #expect(v.count == 27)
        #expect(PurposeHasher.hash(.merkleTreeNode, Array("ab".utf8), Array("c".utf8)).digest == v["purpose-hash"])

        let signing = try SigningPrivateKey(rawRepresentation: try #require(v["ed25519-private"]))
        #expect(signing.publicKey.rawRepresentation == v["ed25519-public"])
        #expect(signing.publicKey.fingerprint.description == text(v["ed25519-fingerprint"]))
        var hasher = PurposeHasher(.submissionRequest)
        hasher.append("weft")
        hasher.append(UInt64(42))
        let hash = hasher.finalize()
        #expect(text(v["signature-purpose"]) == "3")
        // Ed25519 is deterministic: Weft's signature is the document's, byte for byte.
        #expect(try signing.sign(hash).signature == v["signature"])

        let x25519 = try EncryptionPrivateKey(rawRepresentation: try #require(v["x25519-private"]))
        #expect(x25519.publicKey.rawRepresentation == v["x25519-public"])
        #expect(x25519.publicKey.fingerprint.description == text(v["x25519-fingerprint"]))

        let seed = try ViewSeed(bytes: try #require(v["seed"]))
        #expect(try seed.viewKey() == v["view-key"])
        #expect(try seed.subviewSeed(index: 1).bytes == v["subview-seed-1"])
        let message = Weft.V1.EncryptedViewMessage(viewHash: try #require(v["view-hash"]), ciphertext: try #require(v["view-ciphertext"]))
        #expect(try ViewEncryption.open(message, seed: seed) == v["view-plaintext"])

        let ephemeral = try EncryptionPrivateKey(rawRepresentation: try #require(v["ephemeral-private"]))
        #expect(ephemeral.publicKey.rawRepresentation == v["ephemeral-public"])
        let wrapped = Weft.V1.WrappedKey(
            scheme: .eciesX25519HkdfSha256Aes256Gcm, recipientKey: x25519.publicKey.fingerprint.description,
            ephemeralPublicKey: try #require(v["ephemeral-public"]), ciphertext: try #require(v["wrapped-seed"]))
        #expect(try ECIES.unwrap(wrapped, with: x25519) == seed.bytes)
        // The intermediate key and nonce: the seed encrypted with them is the wrapped seed.
        #expect(try AES256GCM.seal(seed.bytes, key: try #require(v["wrap-key"]), nonce: try #require(v["wrap-nonce"]), associatedData: []) == v["wrapped-seed"])

        // §6.1: the seed sealed under a session key.
        let randomness = try #require(v["session-randomness"])
        #expect(try HKDF.sha256(key: randomness, salt: [], info: Array("weft/session-key/v1".utf8), outputBytes: 32) == v["session-key"])
        let sessionEphemeral = try EncryptionPrivateKey(rawRepresentation: try #require(v["session-ephemeral-private"]))
        #expect(sessionEphemeral.publicKey.rawRepresentation == v["session-ephemeral-public"])
        let wrappedSession = Weft.V1.WrappedKey(
            scheme: .eciesX25519HkdfSha256Aes256Gcm, recipientKey: x25519.publicKey.fingerprint.description,
            ephemeralPublicKey: try #require(v["session-ephemeral-public"]), ciphertext: try #require(v["wrapped-session-key"]))
        let session = try SessionKey(randomness: randomness, wrapped: [wrappedSession])
        #expect(try session.seal(seed, viewHash: try #require(v["view-hash"]), nonce: try #require(v["seed-nonce"])) == v["sealed-seed"])
        var inSession = message
        inSession.sessionSealedSeed = .init(wrappedSessionKeys: [wrappedSession], sealedSeed: try #require(v["sealed-seed"]))
        #expect(try ViewEncryption.seed(of: inSession, with: x25519) == seed)
        #expect(try ViewEncryption.open(inSession, with: x25519, sessions: IncomingSessionKeys()) == v["view-plaintext"])
    }
}
