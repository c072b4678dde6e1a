import Foundation
public import WeftCrypto

/// A participant's identity on disk: its display name and three keys — the
/// namespace key its id is the fingerprint of, the signing key it
/// authenticates and confirms with, the encryption key its views are wrapped
/// for. `weft participant id` and the participant node read the same files, so
/// the id printed for the domain operator is the one the node runs as.
public struct ParticipantKeys: Sendable {
    public let name: String
    public let namespace: SigningPrivateKey
    public let signing: SigningPrivateKey
    public let encryption: EncryptionPrivateKey

    /// `name::1220…`.
    public var id: UniqueIdentifier {
        get throws { try UniqueIdentifier(name: name, namespace: namespace.publicKey.fingerprint) }
    }

    /// Reads the keys of node `node` (its section of the configuration: `name`,
    /// `namespace-key`, `signing-key`, `encryption-key`, by default under `keys/`),
    /// creating any that does not exist yet (mode 0600): a participant's identity is
    /// made on first use, as Canton's is.
    public static func load(node: String, section: Configuration) throws -> ParticipantKeys {
        func path(_ key: String) -> String { section.string(key, default: "keys/\(node)-\(key).pem") }
        func makeDirectory(for path: String) throws {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        }
        func signingKey(_ key: String) throws -> SigningPrivateKey {
            let file = path(key)
            if FileManager.default.fileExists(atPath: file) { return try KeyFile.readSigningKey(at: file) }
            try makeDirectory(for: file)
            let created = try SigningPrivateKey.generate()
            try KeyFile.write(created, to: file)
            return created
        }
        let encryptionFile = path("encryption-key")
        let encryption: EncryptionPrivateKey
        if FileManager.default.fileExists(atPath: encryptionFile) {
            encryption = try KeyFile.readEncryptionKey(at: encryptionFile)
        } else {
            try makeDirectory(for: encryptionFile)
            encryption = try EncryptionPrivateKey.generate()
            try KeyFile.write(encryption, to: encryptionFile)
        }
        return ParticipantKeys(
            name: section.string("name", default: node), namespace: try signingKey("namespace-key"), signing: try signingKey("signing-key"),
            encryption: encryption)
    }
}
