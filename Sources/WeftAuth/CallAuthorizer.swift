public import WeftTransport

/// Decides, per call, what the caller may do: the service providers of the
/// Ledger API and the admin APIs ask it before they act.
///
/// `.open` is for a node without token verification configured (a local demo,
/// or an API bound to loopback behind mutual TLS): every call may do
/// everything, and the node logs that at start.
public enum CallAuthorizer: Sendable {
    case open
    case tokens(BearerTokenVerifier)

    /// The caller's claims; for `.open`, claims that allow everything.
    public func claims(_ context: RPCCallContext) throws(AuthError) -> LedgerClaims? {
        guard case .tokens(let verifier) = self else { return nil }
        guard let header = context["authorization"] else { throw .missingToken }
        let prefix = "bearer "
        guard header.count > prefix.count, header.prefix(prefix.count).lowercased() == prefix else {
            throw .malformed("the authorization metadata must be `Bearer <token>`")
        }
        return try verifier.verify(String(header.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces))
    }

    /// Throws unless the caller may submit for every party of `parties`.
    public func requireActAs(_ parties: some Sequence<String>, _ context: RPCCallContext) throws(AuthError) {
        guard let claims = try claims(context) else { return }
        for party in parties where !claims.actAs.contains(party) {
            throw .missingClaim(claim: "actAs", value: party, call: context.method)
        }
    }

    /// Throws unless the caller may read as every party of `parties`.
    public func requireReadAs(_ parties: some Sequence<String>, _ context: RPCCallContext) throws(AuthError) {
        guard let claims = try claims(context) else { return }
        for party in parties where !claims.readable.contains(party) {
            throw .missingClaim(claim: "readAs or actAs", value: party, call: context.method)
        }
    }

    /// Throws unless the caller is an administrator.
    public func requireAdmin(_ context: RPCCallContext) throws(AuthError) {
        guard let claims = try claims(context) else { return }
        guard claims.admin else { throw .missingClaim(claim: "admin", value: nil, call: context.method) }
    }

    /// Throws unless the caller holds any valid token (calls that reveal nothing party-specific,
    /// such as the ledger end).
    public func requireAuthenticated(_ context: RPCCallContext) throws(AuthError) {
        _ = try claims(context)
    }
}
