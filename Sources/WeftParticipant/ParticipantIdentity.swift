public import WeftCrypto
import WeftWire

/// Who a participant is and the keys it acts with: its id (`name::fingerprint` of its namespace
/// key), the signing key of its confirmation responses, root hash signatures and sequencer
/// authentication, and the encryption key its views are wrapped for. The keys must be the ones
/// its onboarding registered in the topology, or nobody can verify or reach it.
public struct ParticipantIdentity: Sendable {
    public let id: UniqueIdentifier
    public let signingKey: SigningPrivateKey
    public let encryptionKey: EncryptionPrivateKey

    public init(id: UniqueIdentifier, signingKey: SigningPrivateKey, encryptionKey: EncryptionPrivateKey) {
        self.id = id
        self.signingKey = signingKey
        self.encryptionKey = encryptionKey
    }

    /// The participant as a member of the domain.
    public var member: MemberID { MemberID(role: .participant, identifier: id) }
}
