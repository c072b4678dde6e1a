import WeftCrypto
import WeftTopology
import WeftTransport
import WeftWire

/// Member authentication (docs/sequencer.md §4): a member asks for a
/// challenge, signs it with a signing key registered for it in the topology,
/// and gets a session token bound to the connection it authenticated on. Every
/// other call carries `authorization: Bearer <token>`.
///
/// Binding the token to the connection makes a stolen token useless from any
/// other connection, so submissions need no signature of their own (one
/// Ed25519 verification per session instead of one per submission).
actor SequencerAuthenticator {
    struct Session {
        let member: String
        let connectionID: UInt64
        let expires: Int64
        /// The fingerprint of the key that signed the challenge: the session ends when that key
        /// is no longer registered for the member (a stolen key revoked), not an hour later.
        let key: String
    }

    private let topology: SequencerTopology
    private var challenges: [[UInt8]: (member: String, expires: Int64)] = [:]
    /// The challenges in the order they were issued, which is the order they expire in (one
    /// lifetime for all): expired ones are dropped from the front, so issuing one costs the
    /// same however many are outstanding. `expiringFrom` is the first not yet dropped.
    private var expiring: [(nonce: [UInt8], expires: Int64)] = []
    private var expiringFrom = 0
    private var sessions: [[UInt8]: Session] = [:]
    /// How long a challenge may be answered (µs).
    let challengeLifetime: Int64
    /// Most challenges outstanding at once: GetChallenge needs no token, so without a bound
    /// anyone could make the sequencer hold a challenge per call for a minute.
    let outstandingChallengesMax: Int
    /// Challenges issued and neither answered nor dropped.
    var outstandingChallenges: Int { challenges.count }
    static let defaultTokenLifetime: Int64 = 3_600_000_000

    /// Bounds the topology catch-ups for members not known as active (`activeMember`).
    let unauthenticatedWork: UnauthenticatedWorkLimit

    init(
        topology: SequencerTopology, challengeLifetime: Int64 = 60_000_000, outstandingChallengesMax: Int = 10_000,
        unauthenticatedWork: UnauthenticatedWorkLimit = .init()
    ) {
        self.topology = topology
        self.unauthenticatedWork = unauthenticatedWork
        self.challengeLifetime = challengeLifetime
        self.outstandingChallengesMax = outstandingChallengesMax
    }

    /// The hash a member signs to authenticate: purpose-tagged (domain, member, nonce).
    static func challengeHash(domain: String, member: String, nonce: [UInt8]) -> PurposeHash {
        var hasher = PurposeHasher(.authenticationChallenge)
        hasher.append(domain)
        hasher.append(member)
        hasher.append(nonce)
        return hasher.finalize()
    }

    /// A member that may authenticate: active in the topology now.
    private func activeMember(_ name: String) async throws -> (MemberID, [SigningPublicKey]) {
        guard let member = try? MemberID(parsing: name) else {
            throw RPCError(.invalidArgument, "'\(name.prefix(120))' is not a member id such as PAR::participant1::1220…", errorID: "SEQUENCER_BAD_MEMBER_ID")
        }
        var snapshot = await topology.snapshot()
        // Perhaps onboarded through another sequencer node a moment ago: catch up before
        // refusing, so that a refusal is never just this node lagging. Beyond the bound on work
        // for callers without a token (a flood of names that are no members would otherwise
        // cost a watermark write each), by waiting for the writers' heartbeats instead.
        if !snapshot.isActive(member) {
            await topology.catchUp(advancing: unauthenticatedWork.take())
            snapshot = await topology.snapshot()
        }
        guard snapshot.isActive(member) else {
            throw RPCError(
                .permissionDenied,
                "\(name) is not an active member of this domain: ask the domain operator to allow-list it (weft domain-manager set-state) and make sure its keys are registered",
                errorID: "SEQUENCER_MEMBER_NOT_ALLOWED")
        }
        return (member, snapshot.signingKeys(of: member))
    }

    func challenge(for member: String) async throws -> Weft.V1.GetChallengeResponse {
        let (_, keys) = try await activeMember(member)
        prune()
        // At the bound the oldest unanswered challenge goes (answered ones are gone already):
        // a flood of calls then costs its own challenges, not every member's authentication,
        // unless it issues the bound's worth within the moments a member takes to answer.
        while challenges.count >= outstandingChallengesMax, expiringFrom < expiring.count {
            challenges[expiring[expiringFrom].nonce] = nil
            expiringFrom += 1
        }
        let nonce = try OpenSSL.randomBytes(32)
        let expires = SequencerWriter.now() + challengeLifetime
        challenges[nonce] = (member, expires)
        expiring.append((nonce, expires))
        return .init(nonce: nonce, keyFingerprints: keys.map(\.fingerprint.description), expiresAt: .init(microsSinceEpoch: expires))
    }

    func authenticate(_ request: Weft.V1.AuthenticateRequest, connectionID: UInt64) async throws -> Weft.V1.AuthenticateResponse {
        let (_, keys) = try await activeMember(request.member)
        guard let challenge = challenges.removeValue(forKey: request.nonce), challenge.member == request.member,
            challenge.expires > SequencerWriter.now()
        else {
            throw RPCError(.unauthenticated, "unknown, used or expired challenge; ask for a new one (GetChallenge)", errorID: "SEQUENCER_BAD_CHALLENGE")
        }
        guard let signature = request.signature, let key = keys.first(where: { $0.fingerprint.description == signature.signedBy }) else {
            throw RPCError(.unauthenticated, "the challenge must be signed by one of the member's registered signing keys", errorID: "SEQUENCER_UNKNOWN_KEY")
        }
        let domain = topology.domain.description
        do {
            try key.verify(signature, over: Self.challengeHash(domain: domain, member: request.member, nonce: request.nonce))
        } catch {
            throw RPCError(.unauthenticated, "the challenge signature does not verify with key \(key.fingerprint)", errorID: "SEQUENCER_BAD_SIGNATURE")
        }
        let lifetime = await topology.snapshot().domainParameters?.authenticationTokenLifetime?.micros ?? Self.defaultTokenLifetime
        let token = try OpenSSL.randomBytes(32)
        let expires = SequencerWriter.now() + max(lifetime, 1_000_000)
        sessions[token] = Session(member: request.member, connectionID: connectionID, expires: expires, key: key.fingerprint.description)
        return .init(token: token, expiresAt: .init(microsSinceEpoch: expires))
    }

    /// The member a call is made by: its token must be live, on this connection, and the member still active.
    func member(of context: RPCCallContext) async throws -> String {
        try await session(of: context).member
    }

    /// The session a call is made in, checked as `member(of:)` says: a subscription needs its
    /// expiry and key too, to end when either does.
    func session(of context: RPCCallContext) async throws -> Session {
        guard let header = context["authorization"], header.hasPrefix("Bearer "),
            let token = bytes(hex: String(header.dropFirst("Bearer ".count))), !token.isEmpty
        else {
            throw RPCError(.unauthenticated, "this call needs `authorization: Bearer <token>`; authenticate first (GetChallenge, Authenticate)", errorID: "SEQUENCER_NO_TOKEN")
        }
        guard let session = sessions[token] else {
            throw RPCError(.unauthenticated, "unknown token; authenticate again", errorID: "SEQUENCER_UNKNOWN_TOKEN")
        }
        guard session.expires > SequencerWriter.now() else {
            sessions[token] = nil
            throw RPCError(.unauthenticated, "the token expired; authenticate again", errorID: "SEQUENCER_TOKEN_EXPIRED")
        }
        guard session.connectionID == context.connectionID else {
            throw RPCError(.unauthenticated, "this token belongs to another connection; authenticate on this one", errorID: "SEQUENCER_TOKEN_WRONG_CONNECTION")
        }
        let (_, keys) = try await activeMember(session.member)
        guard keys.contains(where: { $0.fingerprint.description == session.key }) else {
            sessions[token] = nil
            throw RPCError(
                .unauthenticated,
                "the key this session authenticated with (\(session.key)) is no longer registered for \(session.member); authenticate again with a registered key",
                errorID: "SEQUENCER_KEY_REPLACED")
        }
        return session
    }

    private func prune() {
        let now = SequencerWriter.now()
        while expiringFrom < expiring.count, expiring[expiringFrom].expires <= now {
            challenges[expiring[expiringFrom].nonce] = nil  // unless answered already
            expiringFrom += 1
        }
        if expiringFrom > 1_024, expiringFrom * 2 > expiring.count {
            expiring.removeFirst(expiringFrom)
            expiringFrom = 0
        }
        if sessions.count > 10_000 { sessions = sessions.filter { $0.value.expires > now } }
    }
}
