import Synchronization
public import WeftTransport

/// Decides, per call, what the caller may do: the service providers of the
/// Ledger API and the admin APIs ask it before they act.
///
/// `.open` is for a node without token verification configured (a local demo,
/// or an API bound to loopback behind mutual TLS): every call may do
/// everything, and the node logs that at start.
///
/// Inside a call guarded by `APIGuard`, the token is verified once and what each
/// check asked for is noted in the call's `CallRecord` for its audit line.
public enum CallAuthorizer: Sendable {
    case open
    case tokens(BearerTokenVerifier)

    /// Whether calls need a token.
    public var requiresTokens: Bool {
        if case .tokens = self { true } else { false }
    }

    /// The caller's claims; nil for `.open`, where every call may do everything.
    public func claims(_ context: RPCCallContext) throws(AuthError) -> LedgerClaims? {
        guard case .tokens(let verifier) = self else { return nil }
        if let record = CallRecord.current {
            return try record.claims { () throws(AuthError) in try Self.verify(context, verifier) }.get()
        }
        return try Self.verify(context, verifier)
    }

    private static func verify(_ context: RPCCallContext, _ verifier: BearerTokenVerifier) throws(AuthError)
        -> LedgerClaims
    {
        guard let header = context["authorization"] else { throw .missingToken }
        let prefix = "bearer "
        guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix else {
            throw .malformed("the authorization metadata must be `Bearer <token>`")
        }
        return try verifier.verify(String(header.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces))
    }

    /// Throws unless the caller may submit for every party of `parties`.
    public func requireActAs(_ parties: some Sequence<String>, _ context: RPCCallContext) throws(AuthError) {
        let parties = Array(parties)
        CallRecord.current?.note(actAs: parties)
        guard let claims = try claims(context) else { return }
        for party in parties where !claims.actAs.contains(party) {
            throw .missingClaim(claim: "actAs", value: CallRecord.recorded(party), call: context.method)
        }
    }

    /// Throws unless the caller may read as every party of `parties`.
    public func requireReadAs(_ parties: some Sequence<String>, _ context: RPCCallContext) throws(AuthError) {
        let parties = Array(parties)
        CallRecord.current?.note(readAs: parties)
        guard let claims = try claims(context) else { return }
        for party in parties where !claims.readable.contains(party) {
            throw .missingClaim(claim: "readAs or actAs", value: CallRecord.recorded(party), call: context.method)
        }
    }

    /// Throws unless the token lets the caller use `applicationID` (a token naming an
    /// application is for that application only, as in Canton).
    public func requireApplication(_ applicationID: String, _ context: RPCCallContext) throws(AuthError) {
        guard let claims = try claims(context), let allowed = claims.applicationID else { return }
        guard allowed == applicationID else {
            throw .missingClaim(claim: "applicationId", value: applicationID, call: context.method)
        }
    }

    /// Throws unless the caller is an administrator.
    public func requireAdmin(_ context: RPCCallContext) throws(AuthError) {
        CallRecord.current?.noteAdmin()
        guard let claims = try claims(context) else { return }
        guard claims.admin else { throw .missingClaim(claim: "admin", value: nil, call: context.method) }
    }

    /// Throws unless the caller holds any valid token (calls that reveal nothing party-specific,
    /// such as the ledger end).
    public func requireAuthenticated(_ context: RPCCallContext) throws(AuthError) {
        _ = try claims(context)
    }
}

/// What the authorization of one call found, for its audit line: `APIGuard` binds one
/// to each call it guards (`current`), `CallAuthorizer` fills it as the handler checks,
/// and the guard reads it when the call ends.
public final class CallRecord: Sendable {
    /// The record of the call the current task serves, if a guard bound one.
    @TaskLocal public static var current: CallRecord?

    struct State {
        var verified: Result<LedgerClaims, AuthError>?
        var actAs: Set<String> = []
        var readAs: Set<String> = []
        var admin = false
    }

    private let state = Mutex(State())

    public init() {}

    /// The token's verification, done once per call whatever the number of checks.
    func claims(_ verify: () throws(AuthError) -> LedgerClaims) -> Result<LedgerClaims, AuthError> {
        if let verified = state.withLock({ $0.verified }) { return verified }
        let result: Result<LedgerClaims, AuthError>
        do throws(AuthError) {
            result = .success(try verify())
        } catch {
            result = .failure(error)
        }
        state.withLock { $0.verified = result }
        return result
    }

    /// Notes the parties a call asks to act as, each as `recorded` gives it.
    func note(actAs parties: [String]) {
        let recorded = parties.map(Self.recorded)
        state.withLock { $0.actAs.formUnion(recorded) }
    }

    /// Notes the parties a call asks to read as, each as `recorded` gives it.
    func note(readAs parties: [String]) {
        let recorded = parties.map(Self.recorded)
        state.withLock { $0.readAs.formUnion(recorded) }
    }

    func noteAdmin() { state.withLock { $0.admin = true } }

    /// The longest party id recorded whole, in UTF-8 bytes: the Ledger API's longest id
    /// (`idBytesMax`, 255 by default).
    public static let recordedPartyBytesMax = 255

    /// `party` as the audit line records it: whole up to `recordedPartyBytesMax` bytes, else
    /// its start and how many bytes were left out, `…(+N bytes)`.
    ///
    /// Parties are noted before they are validated (a refused call is audited with what it
    /// asked for), so a caller with any valid token could otherwise send 100 parties of 40 KiB
    /// and write a 4 MiB audit line per call, rotating earlier lines out of the audit file.
    public static func recorded(_ party: String) -> String {
        let bytes = party.utf8.count
        guard bytes > recordedPartyBytesMax else { return party }
        let kept = party.utf8Prefix(maximumBytes: recordedPartyBytesMax)
        return kept + "…(+\(bytes - kept.utf8.count) bytes)"
    }

    /// The verified token's subject; nil when no token was verified.
    public var subject: String? {
        state.withLock { state in
            guard case .success(let claims)? = state.verified else { return nil }
            return claims.subject ?? "(token without sub)"
        }
    }

    /// Whether a token was presented and refused.
    public var tokenRefused: Bool {
        state.withLock { state in
            if case .failure? = state.verified { return true }
            return false
        }
    }

    /// The parties the call asked to act as, sorted.
    public var actAs: [String] { state.withLock { $0.actAs.sorted() } }
    /// The parties the call asked to read as, sorted.
    public var readAs: [String] { state.withLock { $0.readAs.sorted() } }
    /// Whether the call asked for the admin claim.
    public var admin: Bool { state.withLock { $0.admin } }

    /// When the verified token expires (seconds since the epoch); nil when none was verified.
    public var expiresAt: Int64? {
        state.withLock { state in
            guard case .success(let claims)? = state.verified else { return nil }
            return claims.expiresAt
        }
    }
}

extension String {
    /// The longest prefix of at most `maximumBytes` UTF-8 bytes that ends between two
    /// Unicode scalars (a cut inside a scalar would make the text invalid UTF-8).
    func utf8Prefix(maximumBytes: Int) -> String {
        guard utf8.count > maximumBytes else { return self }
        var end = utf8.index(utf8.startIndex, offsetBy: max(0, maximumBytes))
        while end > utf8.startIndex, String.Index(end, within: unicodeScalars) == nil {
            end = utf8.index(before: end)
        }
        return String(decoding: utf8[..<end], as: UTF8.self)
    }
}
