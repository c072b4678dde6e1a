import Testing
import WeftCrypto

/// Values holding secrets print and reflect without them: a `"\(value)"` in a log line or an
/// error, or a `dump`, would otherwise write the secret.
struct SecretDescriptionTests {
    /// Everything Swift offers to turn `value` into text.
    func everyRendering(_ value: Any) -> String {
        var dumped = ""
        dump(value, to: &dumped)
        return "\(value)" + String(reflecting: value) + dumped
    }

    /// `bytes` in the forms a rendering could show them: Swift's array of numbers, hex.
    func spellings(_ bytes: [UInt8]) -> [String] {
        ["\(bytes)", bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()]
    }

    @Test func secretsAreNotPrinted() throws {
        let root = try CertificateAuthority.makeRoot(commonName: "test")
        let rendered = everyRendering(root)
        #expect(!rendered.contains("PRIVATE KEY") && !rendered.contains(String(root.privateKeyPEM.split(separator: "\n")[1])), "\(rendered)")

        let seed = try ViewSeed.random()
        for spelling in spellings(seed.bytes) { #expect(!everyRendering(seed).contains(spelling)) }

        let recipient = try EncryptionPrivateKey.generate()
        let session = try SessionKey.generate(for: [recipient.publicKey])
        #expect(everyRendering(session).contains("redacted"), "\(everyRendering(session))")

        let signing = try SigningPrivateKey.generate()
        let signingText = everyRendering(signing)
        #expect(signingText.contains("redacted") && signingText.contains(signing.publicKey.fingerprint.description), "\(signingText)")
        #expect(everyRendering(recipient).contains("redacted"))
    }
}
