// Session keys (docs/crypto.md §6.1): a sender wraps one session key per recipient set and
// reuses it for a while; a recipient unwraps it once. Every reuse and every refusal is checked
// here, on a clock the tests move themselves.

import Synchronization
import Testing
import WeftWire

@testable import WeftCrypto

/// A clock that moves only when told to.
private final class ManualClock: Sendable {
    private let current = Mutex(ContinuousClock.now)
    var now: @Sendable () -> ContinuousClock.Instant { { [self] in current.withLock { $0 } } }
    func advance(by duration: Duration) { current.withLock { $0 = $0.advanced(by: duration) } }
}

private func viewHash(_ name: String) -> PurposeHash { PurposeHasher.hash(.transactionView, Array(name.utf8)) }

@Suite("Session keys")
struct SessionKeyTests {
    let alice: EncryptionPrivateKey
    let bob: EncryptionPrivateKey
    let carol: EncryptionPrivateKey

    init() throws {
        alice = try .generate()
        bob = try .generate()
        carol = try .generate()
    }

    @Test("views for the same recipients share one wrapped session key; each recipient opens each view")
    func viewsShareASession() throws {
        let sessions = OutgoingSessionKeys()
        let recipients = [alice.publicKey, bob.publicKey]
        let first = try ViewEncryption.seal(Array("view one".utf8), viewHash: viewHash("one"), recipients: recipients, sessions: sessions)
        let second = try ViewEncryption.seal(Array("view two".utf8), viewHash: viewHash("two"), recipients: recipients, sessions: sessions)
        #expect(sessions.generated == 1)
        let firstSession = try #require(first.message.sessionSealedSeed)
        let secondSession = try #require(second.message.sessionSealedSeed)
        #expect(first.message.wrappedSeeds.isEmpty)
        #expect(firstSession.wrappedSessionKeys == secondSession.wrappedSessionKeys)
        #expect(firstSession.wrappedSessionKeys.map(\.recipientKey) == recipients.map(\.fingerprint.description))
        #expect(firstSession.sealedSeed.count == 12 + 32 + 16)
        #expect(firstSession.sealedSeed != secondSession.sealedSeed)
        #expect(ViewEncryption.recipientKeys(of: first.message) == recipients.map(\.fingerprint.description))

        let received = IncomingSessionKeys()
        for recipient in [alice, bob] {
            #expect(try ViewEncryption.seed(of: first.message, with: recipient, sessions: received) == first.seed)
            #expect(try ViewEncryption.open(second.message, with: recipient, sessions: received) == Array("view two".utf8))
            // Without a cache as well: the message alone is enough.
            #expect(try ViewEncryption.open(first.message, with: recipient) == Array("view one".utf8))
        }
        // One unwrap per recipient; the second view of each was a hit.
        #expect(received.unwrapped == 2)
        #expect(received.count == 2)
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(first.message, with: carol, sessions: received) }

        // The message survives its wire form.
        let decoded = try Weft.V1.EncryptedViewMessage(serializedBytes: first.message.serializedBytes())
        #expect(try ViewEncryption.open(decoded, with: bob, sessions: IncomingSessionKeys()) == Array("view one".utf8))
    }

    @Test("another recipient list, another order or a recipient's new key starts another session")
    func recipientsChoseTheSession() throws {
        let sessions = OutgoingSessionKeys()
        let both = try sessions.key(for: [alice.publicKey, bob.publicKey])
        #expect(try sessions.key(for: [alice.publicKey, bob.publicKey]).wrapped == both.wrapped)
        let reversed = try sessions.key(for: [bob.publicKey, alice.publicKey])
        let aliceAlone = try sessions.key(for: [alice.publicKey])
        let bobsNewKey = try EncryptionPrivateKey.generate()
        let rotated = try sessions.key(for: [alice.publicKey, bobsNewKey.publicKey])
        #expect(sessions.generated == 4)
        for other in [reversed, aliceAlone, rotated] {
            #expect(other.wrapped.first?.ciphertext != both.wrapped.first?.ciphertext)
        }
        // Bob's old key cannot open what is sealed for his new one.
        let sealed = try ViewEncryption.seal([7], viewHash: viewHash("v"), recipients: [alice.publicKey, bobsNewKey.publicKey], sessions: sessions)
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.open(sealed.message, with: bob) }
        #expect(try ViewEncryption.open(sealed.message, with: bobsNewKey) == [7])
    }

    @Test("a sender replaces a session key once its lifetime has passed")
    func senderLifetime() throws {
        let clock = ManualClock()
        let sessions = OutgoingSessionKeys(lifetime: .seconds(10), now: clock.now)
        let first = try sessions.key(for: [alice.publicKey])
        clock.advance(by: .seconds(9))
        #expect(try sessions.key(for: [alice.publicKey]).wrapped == first.wrapped)
        clock.advance(by: .seconds(1))
        let second = try sessions.key(for: [alice.publicKey])
        #expect(second.wrapped != first.wrapped)
        #expect(sessions.generated == 2)
    }

    @Test("a recipient unwraps a session key again once its lifetime has passed")
    func recipientLifetime() throws {
        let clock = ManualClock()
        let received = IncomingSessionKeys(lifetime: .seconds(30), now: clock.now)
        let sealed = try ViewEncryption.seal([1, 2], viewHash: viewHash("v"), recipients: [alice.publicKey], sessions: OutgoingSessionKeys())
        _ = try ViewEncryption.open(sealed.message, with: alice, sessions: received)
        clock.advance(by: .seconds(29))
        _ = try ViewEncryption.open(sealed.message, with: alice, sessions: received)
        #expect(received.unwrapped == 1)
        clock.advance(by: .seconds(1))
        #expect(try ViewEncryption.open(sealed.message, with: alice, sessions: received) == [1, 2])
        #expect(received.unwrapped == 2)
    }

    @Test("both caches keep at most their capacity")
    func capacity() throws {
        let sessions = OutgoingSessionKeys(capacity: 2)
        let received = IncomingSessionKeys(capacity: 2)
        var keys: [SessionKey] = []
        for recipients in [[alice.publicKey], [alice.publicKey, bob.publicKey], [alice.publicKey, carol.publicKey]] {
            let key = try sessions.key(for: recipients)
            keys.append(key)
            _ = try received.key(of: key.wrapped[0], with: alice)
        }
        #expect(received.count == 2)
        // The oldest went: asking for it again makes a new one, the newest is still there.
        #expect(try sessions.key(for: [alice.publicKey, carol.publicKey]).wrapped == keys[2].wrapped)
        #expect(sessions.generated == 3)
        #expect(try sessions.key(for: [alice.publicKey]).wrapped != keys[0].wrapped)
        #expect(sessions.generated == 4)
    }
}

@Suite("Bad input: session keys")
struct SessionKeyBadInputTests {
    let recipient: EncryptionPrivateKey
    let message: Weft.V1.EncryptedViewMessage
    let view = Array("a session view".utf8)

    init() throws {
        recipient = try .generate()
        message = try ViewEncryption.seal(view, viewHash: viewHash("v"), recipients: [recipient.publicKey], sessions: OutgoingSessionKeys())
            .message
    }

    /// Opens `altered` with a fresh cache and with one that already holds the unaltered session key.
    func expectRefused(_ altered: Weft.V1.EncryptedViewMessage, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(throws: CryptoError.decryptionFailed, sourceLocation: sourceLocation) {
            try ViewEncryption.open(altered, with: recipient, sessions: IncomingSessionKeys())
        }
        let warm = IncomingSessionKeys()
        #expect(try ViewEncryption.open(message, with: recipient, sessions: warm) == view, sourceLocation: sourceLocation)
        #expect(throws: CryptoError.decryptionFailed, sourceLocation: sourceLocation) {
            try ViewEncryption.open(altered, with: recipient, sessions: warm)
        }
    }

    @Test("every bit of the sealed seed, the wrapped session key and its ephemeral key is checked")
    func alteredBits() throws {
        let session = try #require(message.sessionSealedSeed)
        for index in session.sealedSeed.indices {
            var altered = message
            altered.sessionSealedSeed!.sealedSeed[index] ^= 0x04
            try expectRefused(altered)
        }
        // Also with the unaltered wrap's key cached: the cache must not answer for altered bytes.
        for index in session.wrappedSessionKeys[0].ciphertext.indices {
            var altered = message
            altered.sessionSealedSeed!.wrappedSessionKeys[0].ciphertext[index] ^= 0x80
            try expectRefused(altered)
        }
        for index in session.wrappedSessionKeys[0].ephemeralPublicKey.indices {
            var altered = message
            altered.sessionSealedSeed!.wrappedSessionKeys[0].ephemeralPublicKey[index] ^= 0x01
            try expectRefused(altered)
        }
        var truncated = message
        truncated.sessionSealedSeed!.sealedSeed.removeLast()
        try expectRefused(truncated)
    }

    @Test("a sealed seed moved to another view, or one sealed under another session key behind a known wrap, does not open")
    func movedOrSwapped() throws {
        var moved = message
        moved.viewHash = viewHash("another view").digest
        try expectRefused(moved)
        // The seed alone, not only the view: the sealed seed is bound to the view hash itself.
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.seed(of: moved, with: recipient) }
        let warm = IncomingSessionKeys()
        _ = try ViewEncryption.seed(of: message, with: recipient, sessions: warm)
        #expect(throws: CryptoError.decryptionFailed) { try ViewEncryption.seed(of: moved, with: recipient, sessions: warm) }

        // Another session key's sealed seed under this session's wrap: the cache, holding this
        // wrap's key, must not take the other seed for this one.
        let other = try ViewEncryption.seal(view, viewHash: viewHash("v"), recipients: [recipient.publicKey], sessions: OutgoingSessionKeys())
        var swapped = message
        swapped.sessionSealedSeed!.sealedSeed = other.message.sessionSealedSeed!.sealedSeed
        try expectRefused(swapped)
    }

    @Test("a seed carried both ways, or neither, or a session key of the wrong length, is refused")
    func malformedShapes() throws {
        var both = message
        both.wrappedSeeds = [try ECIES.wrap(ViewSeed.random().bytes, for: recipient.publicKey)]
        try expectRefused(both)
        var neither = message
        neither.sessionSealedSeed = nil
        try expectRefused(neither)
        var noneForMe = message
        noneForMe.sessionSealedSeed!.wrappedSessionKeys = []
        try expectRefused(noneForMe)

        var short = message
        short.sessionSealedSeed!.wrappedSessionKeys = [try ECIES.wrap(Array(repeating: 9, count: 31), for: recipient.publicKey)]
        try expectRefused(short)
        var wrongScheme = message
        wrongScheme.sessionSealedSeed!.wrappedSessionKeys[0].scheme = .unspecified
        let warm = IncomingSessionKeys()
        _ = try ViewEncryption.open(message, with: recipient, sessions: warm)
        for sessions in [IncomingSessionKeys(), warm] {
            let error = #expect(throws: CryptoError.self) { try ViewEncryption.open(wrongScheme, with: recipient, sessions: sessions) }
            guard case .wrongKeyScheme? = error else {
                Issue.record("expected wrongKeyScheme, got \(String(describing: error))")
                continue
            }
        }
    }
}
