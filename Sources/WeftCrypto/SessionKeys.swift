import Synchronization
public import WeftWire

/// A secret a sender shares with one set of recipient participants for a short time, so that it
/// wraps it once per recipient instead of wrapping every view's seed (DESIGN.md §4,
/// docs/crypto.md §6.1). Its 32 random bytes are what is wrapped; the AES-256-GCM key that seals
/// seeds is derived from them with HKDF, so the wrapped bytes are never a key themselves.
public struct SessionKey: Sendable {
    /// HKDF-SHA256(random bytes, salt: empty, info: "weft/session-key/v1").
    private let key: [UInt8]
    /// The random bytes wrapped for each recipient key, in the recipients' order (empty on the
    /// receiving side, which has no use for the other recipients' wraps).
    public let wrapped: [Weft.V1.WrappedKey]

    static let randomBytes = 32
    static let info = Array("weft/session-key/v1".utf8)

    /// A fresh session key for `recipients`: random bytes from OpenSSL's CSPRNG, wrapped for each.
    public static func generate(for recipients: [EncryptionPublicKey]) throws(CryptoError) -> SessionKey {
        let randomness = try OpenSSL.randomBytes(randomBytes)
        var wrapped: [Weft.V1.WrappedKey] = []
        wrapped.reserveCapacity(recipients.count)
        for recipient in recipients { wrapped.append(try ECIES.wrap(randomness, for: recipient)) }
        return try SessionKey(randomness: randomness, wrapped: wrapped)
    }

    /// The session key `wrapped` holds for `key`'s owner. Throws `decryptionFailed` if it is not
    /// for this key, was altered, or does not hold 32 bytes.
    public static func unwrap(_ wrapped: Weft.V1.WrappedKey, with key: EncryptionPrivateKey) throws(CryptoError) -> SessionKey {
        let randomness = try ECIES.unwrap(wrapped, with: key)
        guard randomness.count == randomBytes else { throw .decryptionFailed }
        return try SessionKey(randomness: randomness, wrapped: [])
    }

    /// A session key from its random bytes (for test vectors; senders use `generate`).
    init(randomness: [UInt8], wrapped: [Weft.V1.WrappedKey]) throws(CryptoError) {
        guard randomness.count == Self.randomBytes else {
            throw .invalidLength(what: "a session key", expected: Self.randomBytes, actual: randomness.count)
        }
        self.key = try HKDF.sha256(key: randomness, salt: [], info: Self.info, outputBytes: AES256GCM.keyBytes)
        self.wrapped = wrapped
    }

    /// `nonce ‖ AES-256-GCM(key, nonce, seed, aad: view hash)` with a random 12-byte nonce: the
    /// view hash binds the sealed seed to its view, so it cannot be moved to another.
    public func seal(_ seed: ViewSeed, viewHash: [UInt8]) throws(CryptoError) -> [UInt8] {
        let nonce = try OpenSSL.randomBytes(AES256GCM.nonceBytes)
        return try seal(seed, viewHash: viewHash, nonce: nonce)
    }

    /// `seal` with a given nonce (for test vectors: a nonce must never repeat under one key).
    func seal(_ seed: ViewSeed, viewHash: [UInt8], nonce: [UInt8]) throws(CryptoError) -> [UInt8] {
        nonce + (try AES256GCM.seal(seed.bytes, key: key, nonce: nonce, associatedData: viewHash))
    }

    /// The seed `sealed` holds for the view with `viewHash`; `decryptionFailed` if anything differs.
    public func open(_ sealed: [UInt8], viewHash: [UInt8]) throws(CryptoError) -> ViewSeed {
        guard sealed.count == AES256GCM.nonceBytes + ViewSeed.byteCount + AES256GCM.tagBytes else { throw .decryptionFailed }
        let nonce = Array(sealed[..<AES256GCM.nonceBytes])
        return try ViewSeed(
            bytes: AES256GCM.open(Array(sealed[AES256GCM.nonceBytes...]), key: key, nonce: nonce, associatedData: viewHash))
    }
}

/// A sender's session keys, one per list of recipient keys, each used for at most `lifetime`
/// from its creation and then replaced by a fresh one. A recipient's new key is another list,
/// so a key change starts a new session at once (DESIGN.md §4).
///
/// The trade-off is Canton's: a session key that leaks opens every view sealed under it, all
/// of them for the same recipients and within `lifetime`, against one public-key wrap per
/// recipient and view saved.
public final class OutgoingSessionKeys: Sendable {
    /// How long a sender uses one session key: seconds, as Canton's session key caches do.
    public static let defaultLifetime: Duration = .seconds(10)
    /// The longest lifetime allowed: even at 100,000 views a second, a session key then seals
    /// fewer than 2³² seeds, the bound for random nonces under one AES-GCM key (docs/crypto.md §7).
    public static let maximumLifetime: Duration = .seconds(3600)

    private let entries: Mutex<AgingCache<[String]>>
    private let generatedCount = Atomic<Int>(0)
    private let now: @Sendable () -> ContinuousClock.Instant

    /// `now` is the clock the lifetime is measured on (a test's own, to age keys without waiting).
    public init(
        lifetime: Duration = OutgoingSessionKeys.defaultLifetime, capacity: Int = 256,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        precondition(lifetime <= Self.maximumLifetime, "a session key's lifetime is at most \(Self.maximumLifetime)")
        entries = Mutex(AgingCache(lifetime: lifetime, capacity: capacity))
        self.now = now
    }

    /// The session key for `recipients` in this order: the current one while it is younger than
    /// the lifetime, otherwise a new one (wrapped outside the lock: two senders that miss at
    /// the same time both make one, and the later replaces the earlier).
    public func key(for recipients: [EncryptionPublicKey]) throws(CryptoError) -> SessionKey {
        let names = recipients.map(\.fingerprint.description)
        let start = now()
        if let key = entries.withLock({ $0.key(names, at: start) }) { return key }
        let key = try SessionKey.generate(for: recipients)
        generatedCount.add(1, ordering: .relaxed)
        entries.withLock { $0.insert(key, for: names, at: start) }
        return key
    }

    /// Session keys made so far: each cost one wrap per recipient.
    public var generated: Int { generatedCount.load(ordering: .relaxed) }
}

/// A recipient's session keys, unwrapped once and then found again by the exact bytes of their
/// wrap, for `lifetime` after it was first unwrapped. An entry is made only by a successful
/// unwrap of those bytes, so a message cannot bring a key in under another wrap's name; one that
/// names a known wrap but seals its seed with another key fails to open, as it would uncached.
public final class IncomingSessionKeys: Sendable {
    /// Longer than a sender uses a key, so that views delivered a little late still hit.
    public static let defaultLifetime: Duration = .seconds(30)

    private struct WrapID: Hashable {
        let recipientKey: String
        let ephemeralPublicKey: [UInt8]
        let ciphertext: [UInt8]
    }

    private let entries: Mutex<AgingCache<WrapID>>
    private let unwrapCount = Atomic<Int>(0)
    private let now: @Sendable () -> ContinuousClock.Instant

    public init(
        lifetime: Duration = IncomingSessionKeys.defaultLifetime, capacity: Int = 1024,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        entries = Mutex(AgingCache(lifetime: lifetime, capacity: capacity))
        self.now = now
    }

    /// The session key `wrapped` holds for `key`'s owner, unwrapped unless it was recently.
    public func key(of wrapped: Weft.V1.WrappedKey, with key: EncryptionPrivateKey) throws(CryptoError) -> SessionKey {
        guard wrapped.scheme == .eciesX25519HkdfSha256Aes256Gcm, wrapped.recipientKey == key.publicKey.fingerprint.description
        else { return try SessionKey.unwrap(wrapped, with: key) }
        let id = WrapID(
            recipientKey: wrapped.recipientKey, ephemeralPublicKey: wrapped.ephemeralPublicKey, ciphertext: wrapped.ciphertext)
        let start = now()
        if let session = entries.withLock({ $0.key(id, at: start) }) { return session }
        let session = try SessionKey.unwrap(wrapped, with: key)
        unwrapCount.add(1, ordering: .relaxed)
        entries.withLock { $0.insert(session, for: id, at: start) }
        return session
    }

    /// Session keys held.
    public var count: Int { entries.withLock { $0.count } }
    /// Session keys unwrapped so far (each a public-key operation); the other lookups were hits.
    public var unwrapped: Int { unwrapCount.load(ordering: .relaxed) }
}

/// Session keys by a name, each for `lifetime` after it was added, at most `capacity` of them:
/// when full, the expired go, and then the oldest. Guarded by its owner's mutex.
private struct AgingCache<Name: Hashable>: ~Copyable {
    private var entries: [Name: (key: SessionKey, added: ContinuousClock.Instant)] = [:]
    let lifetime: Duration
    let capacity: Int

    init(lifetime: Duration, capacity: Int) {
        self.lifetime = lifetime
        self.capacity = max(1, capacity)
    }

    var count: Int { entries.count }

    /// The key under `name`, unless it is older than the lifetime at `now`.
    func key(_ name: Name, at now: ContinuousClock.Instant) -> SessionKey? {
        guard let entry = entries[name], entry.added.duration(to: now) < lifetime else { return nil }
        return entry.key
    }

    mutating func insert(_ key: SessionKey, for name: Name, at now: ContinuousClock.Instant) {
        if entries.count >= capacity, entries[name] == nil {
            entries = entries.filter { $0.value.added.duration(to: now) < lifetime }
            if entries.count >= capacity, let oldest = entries.min(by: { $0.value.added < $1.value.added }) {
                entries[oldest.key] = nil
            }
        }
        entries[name] = (key, now)
    }
}
