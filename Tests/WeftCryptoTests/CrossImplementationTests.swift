import Foundation
import Testing
import WeftCrypto
import WeftTestSupport
import WeftWire

/// Weft's cryptography against an independent Python implementation written
/// from docs/crypto.md alone (clients/python/weft_crypto.py, on the
/// `cryptography` package): Python checks what Weft made (fingerprints,
/// signatures, sealed views, subview seeds) and Weft checks what Python made
/// (a sealed view, a signature, a fingerprint).
@Suite struct CrossImplementationTests {
    @Test func pythonAndWeftInteroperate() async throws {
        let cases = try Cases()
        let run = try await runPython(cases.input)
        #expect(run.status == 0, "python exited with \(run.status):\n\(run.output)")
        #expect(run.output.contains("crypto interop: \(cases.checkCount) passed, 0 failed"), "python output:\n\(run.output)")

        // (a) Python's fingerprints are Weft's, character for character.
        let fingerprints = try array(run.result["fingerprints"], "fingerprints")
        #expect(fingerprints.count == cases.fingerprints.count, "python output:\n\(run.output)")
        for (ours, theirs) in zip(cases.fingerprints, fingerprints) {
            #expect(try string(theirs["fingerprint"], "fingerprint") == ours, "python output:\n\(run.output)")
        }

        // (b) Python recomputed the same purpose hashes and accepted the signatures.
        let signatures = try array(run.result["signatures"], "signatures")
        #expect(signatures.count == cases.purposeHashes.count, "python output:\n\(run.output)")
        for (ours, theirs) in zip(cases.purposeHashes, signatures) {
            #expect(try string(theirs["purpose_hash"], "purpose_hash") == hexString(ours.digest))
            #expect(theirs["signed_by_ok"] as? Bool == true && theirs["valid"] as? Bool == true, "python output:\n\(run.output)")
        }

        // (c) Python opened the views and derived the same subview seed.
        let views = try array(run.result["views"], "views")
        #expect(views.count == cases.seeds.count, "python output:\n\(run.output)")
        for (index, (seed, theirs)) in zip(cases.seeds, views).enumerated() {
            #expect(theirs["ok"] as? Bool == true, "view \(index): python output:\n\(run.output)")
            #expect(theirs["plaintext"] as? String == hexString(cases.plaintexts[index]), "view \(index)")
            #expect(
                theirs["subview_seed_1"] as? String == hexString(try seed.subviewSeed(index: 1).bytes),
                "view \(index): subview seed 1 differs")
        }

        // (d) Weft opens the view Python sealed for Weft's key.
        let python = try dictionary(run.result["python"], "python")
        var message = Weft.V1.EncryptedViewMessage()
        message.viewHash = try bytes(python["view_hash"], "python.view_hash")
        message.ciphertext = try bytes(python["ciphertext"], "python.ciphertext")
        message.wrappedSeeds = try array(python["wrapped"], "python.wrapped").map { wrapped in
            Weft.V1.WrappedKey(
                scheme: .init(rawValue: Int32(try integer(wrapped["scheme"], "wrapped.scheme"))),
                recipientKey: try string(wrapped["recipient_key"], "wrapped.recipient_key"),
                ephemeralPublicKey: try bytes(wrapped["ephemeral_public_key"], "wrapped.ephemeral_public_key"),
                ciphertext: try bytes(wrapped["ciphertext"], "wrapped.ciphertext"))
        }
        #expect(message.viewHash == cases.task.viewHash.digest)
        #expect(message.wrappedSeeds.count == 1)
        #expect(message.wrappedSeeds.first?.scheme == .eciesX25519HkdfSha256Aes256Gcm)
        #expect(message.wrappedSeeds.first?.recipientKey == cases.weftRecipient.publicKey.fingerprint.description)
        #expect(message.ciphertext.count == 12 + cases.task.plaintext.count + 16)
        #expect(try ViewEncryption.open(message, with: cases.weftRecipient) == cases.task.plaintext)
        // The view hash is the associated data: another one does not open.
        var rebound = message
        rebound.viewHash[0] ^= 0x01
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(rebound, with: cases.weftRecipient) }
        // Nor does the view open for a key it was not wrapped for.
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(message, with: cases.pythonRecipient) }

        // (e) Weft opens the view Python sealed with its seed under a session key.
        let pythonSession = try dictionary(python["session"], "python.session")
        var inSession = Weft.V1.EncryptedViewMessage()
        inSession.viewHash = message.viewHash
        inSession.ciphertext = try bytes(pythonSession["ciphertext"], "python.session.ciphertext")
        inSession.sessionSealedSeed = .init(
            wrappedSessionKeys: try array(pythonSession["wrapped"], "python.session.wrapped").map { wrapped in
                Weft.V1.WrappedKey(
                    scheme: .init(rawValue: Int32(try integer(wrapped["scheme"], "wrapped.scheme"))),
                    recipientKey: try string(wrapped["recipient_key"], "wrapped.recipient_key"),
                    ephemeralPublicKey: try bytes(wrapped["ephemeral_public_key"], "wrapped.ephemeral_public_key"),
                    ciphertext: try bytes(wrapped["ciphertext"], "wrapped.ciphertext"))
            },
            sealedSeed: try bytes(pythonSession["sealed_seed"], "python.session.sealed_seed"))
        #expect(inSession.sessionSealedSeed?.sealedSeed.count == 12 + 32 + 16)
        #expect(try ViewEncryption.open(inSession, with: cases.weftRecipient, sessions: IncomingSessionKeys()) == cases.task.plaintext)
        // The sealed seed itself is bound to the view hash.
        var sessionRebound = inSession
        sessionRebound.viewHash[0] ^= 0x01
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.seed(of: sessionRebound, with: cases.weftRecipient) }

        // Weft verifies Python's signature over the purpose hash Weft builds itself.
        let publicKey = try SigningPublicKey(rawRepresentation: try bytes(python["public_key"], "python.public_key"))
        let signatureFields = try dictionary(python["signature"], "python.signature")
        let signature = Weft.V1.Signature(
            scheme: .init(rawValue: Int32(try integer(signatureFields["scheme"], "signature.scheme"))),
            signedBy: try string(signatureFields["signed_by"], "signature.signed_by"),
            signature: try bytes(signatureFields["signature"], "signature.signature"))
        #expect(try string(python["fingerprint"], "python.fingerprint") == publicKey.fingerprint.description)
        #expect(signature.signedBy == publicKey.fingerprint.description)
        try publicKey.verify(signature, over: cases.task.hash(cases.task.purpose))
        // Not for another purpose over the same fields…
        #expect(throws: CryptoError.invalidSignature) {
            try publicKey.verify(signature, over: cases.task.hash(.confirmationResult))
        }
        // …and not with one bit flipped.
        for byte in [0, 31, 63] {
            var flipped = signature
            flipped.signature[byte] ^= 0x04
            #expect(throws: CryptoError.invalidSignature) { try publicKey.verify(flipped, over: cases.task.hash(cases.task.purpose)) }
        }
    }

    /// The Python checker is not a rubber stamp: altered inputs make it fail,
    /// so the exit status 0 above means something.
    @Test func pythonRejectsAlteredInputs() async throws {
        let cases = try Cases()
        var input = cases.input
        var fingerprints = input["fingerprints"] as! [[String: Any]]
        fingerprints[0]["fingerprint"] = Cases.flipHexBit(fingerprints[0]["fingerprint"] as! String, at: 20)
        input["fingerprints"] = fingerprints
        var signatures = input["signatures"] as! [[String: Any]]
        signatures[1]["signature"] = Cases.flipHexBit(signatures[1]["signature"] as! String, at: 5)
        input["signatures"] = signatures
        var views = input["views"] as! [[String: Any]]
        views[0]["view_hash"] = Cases.flipHexBit(views[0]["view_hash"] as! String, at: 0)
        views[1]["ciphertext"] = Cases.flipHexBit(views[1]["ciphertext"] as! String, at: 30)
        var session = views[2]["session"] as! [String: Any]
        session["sealed_seed"] = Cases.flipHexBit(session["sealed_seed"] as! String, at: 40)
        views[2]["session"] = session
        input["views"] = views
        let run = try await runPython(input)
        #expect(run.status == 1, "python output:\n\(run.output)")
        #expect(run.output.contains("crypto interop: \(cases.checkCount - 5) passed, 5 failed"), "python output:\n\(run.output)")
    }
}

/// The cases Weft writes for Python, and what it needs to check the answers.
private struct Cases {
    struct Task {
        let plaintext: [UInt8]
        let viewHash: PurposeHash
        let purpose: Weft.V1.HashPurpose
        let name = "participant1::1220abcd"
        let counter: UInt64 = 42
        func hash(_ purpose: Weft.V1.HashPurpose) -> PurposeHash {
            var hasher = PurposeHasher(purpose)
            hasher.append(name)
            hasher.append(counter)
            return hasher.finalize()
        }
        var fieldsHex: [String] { [hexString(Array(name.utf8)), hexString(u64be(counter))] }
    }

    var input: [String: Any] = [:]
    var fingerprints: [String] = []
    var purposeHashes: [PurposeHash] = []
    var seeds: [ViewSeed] = []
    var plaintexts: [[UInt8]] = []
    let weftRecipient: EncryptionPrivateKey
    let pythonRecipient: EncryptionPrivateKey
    let task: Task
    /// Checks Python counts: one per fingerprint, two per signature, one per view.
    var checkCount: Int { fingerprints.count + 2 * purposeHashes.count + seeds.count }

    init() throws {
        let signer1 = try SigningPrivateKey.generate()
        let signer2 = try SigningPrivateKey(rawRepresentation: Array(repeating: 7, count: 32))
        weftRecipient = try EncryptionPrivateKey.generate()
        pythonRecipient = try EncryptionPrivateKey.generate()

        // (a) Fingerprints of an Ed25519 and X25519 key, and of a fixed Ed25519 key.
        var fingerprintCases: [[String: Any]] = []
        for (scheme, raw, fingerprint) in [
            (1, signer1.publicKey.rawRepresentation, signer1.publicKey.fingerprint.description),
            (2, weftRecipient.publicKey.rawRepresentation, weftRecipient.publicKey.fingerprint.description),
            (1, signer2.publicKey.rawRepresentation, signer2.publicKey.fingerprint.description),
        ] {
            fingerprints.append(fingerprint)
            fingerprintCases.append(["scheme": scheme, "public_key": hexString(raw), "fingerprint": fingerprint])
        }

        // (b) Signatures: Weft hashes typed fields with PurposeHasher; Python
        // gets the field bytes as docs/crypto.md §2 encodes them.
        var signatureCases: [[String: Any]] = []
        var hashes: [PurposeHash] = []
        func addSignature(_ key: SigningPrivateKey, _ hasher: consuming PurposeHasher, _ fields: [[UInt8]], _ purpose: Int32) throws {
            let hash = hasher.finalize()
            hashes.append(hash)
            let signature = try key.sign(hash)
            signatureCases.append([
                "purpose": Int(purpose), "fields": fields.map(hexString), "public_key": hexString(key.publicKey.rawRepresentation),
                "signed_by": signature.signedBy, "signature": hexString(signature.signature),
            ])
        }
        var topology = PurposeHasher(.topologyTransaction)
        topology.append("participant1::1220ab")
        topology.append(UInt64(7))
        try addSignature(signer1, topology, [Array("participant1::1220ab".utf8), u64be(7)], 2)
        let blob = randomBytes(50)
        var submission = PurposeHasher(.submissionRequest)
        submission.append(blob)
        submission.append(Int64(-5))
        submission.append([UInt8]())
        submission.append("é✓")
        try addSignature(signer1, submission, [blob, u64be(UInt64(bitPattern: -5)), [], Array("é✓".utf8)], 3)
        let root = randomBytes(32)
        var rootHash = PurposeHasher(.rootHash)
        rootHash.append(root)
        try addSignature(signer2, rootHash, [root], 16)
        purposeHashes = hashes

        // (c) Views: one for two recipients (Python holds the second key), one empty, and two
        // whose seeds are sealed under one session key (docs/crypto.md §6.1).
        var viewCases: [[String: Any]] = []
        let sessions = OutgoingSessionKeys()
        for (plaintext, recipients, inSession) in [
            (randomBytes(300), [weftRecipient.publicKey, pythonRecipient.publicKey], false),
            ([UInt8](), [pythonRecipient.publicKey], false),
            (randomBytes(120), [weftRecipient.publicKey, pythonRecipient.publicKey], true),
            (randomBytes(80), [weftRecipient.publicKey, pythonRecipient.publicKey], true),
        ] {
            let viewHash = try PurposeHash(purpose: .transactionView, digest: randomBytes(32))
            let message: Weft.V1.EncryptedViewMessage
            if inSession {
                let sealed = try ViewEncryption.seal(plaintext, viewHash: viewHash, recipients: recipients, sessions: sessions)
                message = sealed.message
                seeds.append(sealed.seed)
            } else {
                let seed = try ViewSeed.random()
                message = try ViewEncryption.seal(plaintext, viewHash: viewHash, seed: seed, recipients: recipients)
                seeds.append(seed)
            }
            plaintexts.append(plaintext)
            var viewCase: [String: Any] = [
                "recipient_private_key": hexString(try pythonRecipient.rawRepresentation),
                "view_hash": hexString(message.viewHash), "ciphertext": hexString(message.ciphertext),
                "plaintext": hexString(plaintext),
            ]
            if let session = message.sessionSealedSeed {
                viewCase["session"] = ["wrapped": Self.json(session.wrappedSessionKeys), "sealed_seed": hexString(session.sealedSeed)]
            } else {
                viewCase["wrapped"] = Self.json(message.wrappedSeeds)
            }
            viewCases.append(viewCase)
        }
        #expect(sessions.generated == 1)

        // (d) What Python makes for Weft.
        task = Task(
            plaintext: randomBytes(200), viewHash: try PurposeHash(purpose: .transactionView, digest: randomBytes(32)),
            purpose: .confirmationResponse)
        input = [
            "fingerprints": fingerprintCases, "signatures": signatureCases, "views": viewCases,
            "python_tasks": [
                "recipient_public_key": hexString(weftRecipient.publicKey.rawRepresentation),
                "plaintext": hexString(task.plaintext), "view_hash": hexString(task.viewHash.digest),
                "purpose": Int(task.purpose.rawValue), "fields": task.fieldsHex,
            ] as [String: Any],
        ]
    }

    static func json(_ wrapped: [Weft.V1.WrappedKey]) -> [[String: Any]] {
        wrapped.map {
            [
                "scheme": Int($0.scheme.rawValue), "recipient_key": $0.recipientKey,
                "ephemeral_public_key": hexString($0.ephemeralPublicKey), "ciphertext": hexString($0.ciphertext),
            ]
        }
    }

    /// `hex` with bit 0 of the digit at `index` flipped (still lower-case hex).
    static func flipHexBit(_ hex: String, at index: Int) -> String {
        var characters = Array(hex)
        let digits = Array("0123456789abcdef")
        let value = digits.firstIndex(of: characters[index])!
        characters[index] = digits[value ^ 1]
        return String(characters)
    }
}

// MARK: - Running the Python side

private struct PythonRun {
    let status: Int32
    let output: String
    let result: [String: Any]
}

private func repositoryRoot() -> URL {
    var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
        let parent = directory.deletingLastPathComponent()
        precondition(parent.path != directory.path, "no Package.swift above \(#filePath)")
        directory = parent
    }
    return directory
}

/// Writes `input` to IN.json, runs `weft_crypto.py check IN.json OUT.json`
/// (off the concurrency pool, `TestSubprocess`) and reads OUT.json (empty if Python wrote none).
private func runPython(_ input: [String: Any]) async throws -> PythonRun {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-crypto-xi-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let inURL = directory.appendingPathComponent("IN.json")
    let outURL = directory.appendingPathComponent("OUT.json")
    try JSONSerialization.data(withJSONObject: input, options: [.prettyPrinted, .sortedKeys]).write(to: inURL)

    let script = repositoryRoot().appendingPathComponent("clients/python/weft_crypto.py").path
    let outcome = try await TestSubprocess.run(["python3", script, "check", inURL.path, outURL.path], mergingError: true)

    var result: [String: Any] = [:]
    if let data = try? Data(contentsOf: outURL) {
        result = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }
    return PythonRun(status: outcome.status, output: outcome.output, result: result)
}

// MARK: - Helpers

private struct MissingField: Error, CustomStringConvertible {
    let description: String
}

private func dictionary(_ value: Any?, _ name: String) throws -> [String: Any] {
    guard let value = value as? [String: Any] else { throw MissingField(description: "OUT.json: \(name) missing or not an object") }
    return value
}

private func array(_ value: Any?, _ name: String) throws -> [[String: Any]] {
    guard let value = value as? [[String: Any]] else { throw MissingField(description: "OUT.json: \(name) missing or not a list") }
    return value
}

private func string(_ value: Any?, _ name: String) throws -> String {
    guard let value = value as? String else { throw MissingField(description: "OUT.json: \(name) missing or not a string") }
    return value
}

private func integer(_ value: Any?, _ name: String) throws -> Int {
    guard let value = value as? Int else { throw MissingField(description: "OUT.json: \(name) missing or not an integer") }
    return value
}

private func bytes(_ value: Any?, _ name: String) throws -> [UInt8] {
    let text = try string(value, name)
    let digits = Array(text.utf8)
    guard digits.count % 2 == 0 else { throw MissingField(description: "OUT.json: \(name) has an odd number of hex digits") }
    var result: [UInt8] = []
    result.reserveCapacity(digits.count / 2)
    for index in stride(from: 0, to: digits.count, by: 2) {
        guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else {
            throw MissingField(description: "OUT.json: \(name) is not hex")
        }
        result.append(byte)
    }
    return result
}

private func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

private func u64be(_ value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) }
}

private func randomBytes(_ count: Int) -> [UInt8] {
    (0..<count).map { _ in UInt8.random(in: 0...255) }
}
