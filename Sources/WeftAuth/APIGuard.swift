import Foundation
public import NIOCore
public import WeftTransport

/// Guards a node's API methods: every call of the guarded paths is authorized (admin
/// services here; for the Ledger API the token is verified here and the claims checked in
/// its handlers, which know the parties a request names) and leaves one line in the audit
/// log, whatever its outcome.
///
/// Installed on the router as an interceptor (`RPCRouter.intercept`), so a method cannot
/// be served without its audit line, and a refusal at any stage — no token, a bad one,
/// a missing claim, a handler's own error — is recorded with the status the caller got.
public struct APIGuard: Sendable {
    public let authorizer: CallAuthorizer
    /// Whether admin calls need a token with the admin claim (when `authorizer` verifies tokens).
    public let adminRequiresToken: Bool
    /// Whether admin calls are refused unless they come from loopback (or a Unix socket).
    public let adminLoopbackOnly: Bool
    public let audit: AuditLog

    public init(
        authorizer: CallAuthorizer, adminRequiresToken: Bool = true, adminLoopbackOnly: Bool = false,
        audit: AuditLog = AuditLog()
    ) {
        self.authorizer = authorizer
        self.adminRequiresToken = adminRequiresToken
        self.adminLoopbackOnly = adminLoopbackOnly
        self.audit = audit
    }

    /// Wraps the routes of `adminPaths` (admin services: each call needs admin rights) and
    /// `auditedPaths` (authorized by their handlers) on `router`. `adminClaimPaths`, among the
    /// audited ones, need the admin claim in their handlers (the Ledger API's AllocateParty,
    /// ListKnownParties, UploadPackage): they are held to `adminLoopbackOnly` too, so that an
    /// operator who keeps administration on the node's host keeps all of it there.
    public func install(
        on router: inout RPCRouter, adminPaths: Set<String>, auditedPaths: Set<String>, adminClaimPaths: Set<String> = []
    ) {
        let guardian = self
        router.intercept(adminPaths.union(auditedPaths)) { context, kind, proceed in
            let record = CallRecord()
            let started = ContinuousClock.now
            do {
                try await CallRecord.$current.withValue(record) {
                    if adminPaths.contains(context.method) {
                        try guardian.checkAdmin(context)
                    } else {
                        if adminClaimPaths.contains(context.method) { try guardian.checkAdminHost(context) }
                        // Every audited call needs a valid token before its handler runs (which
                        // then checks the claims its request needs): none can forget it.
                        try guardian.authorizer.requireAuthenticated(context)
                    }
                    // A stream lives no longer than its token, as in Canton; a unary call (a
                    // submission under way) is not cut short.
                    if kind != .unary, let expiry = record.expiresAt, case .tokens(let verifier) = guardian.authorizer {
                        try await Self.run(proceed, until: expiry + verifier.leewaySeconds)
                    } else {
                        try await proceed()
                    }
                }
                guardian.audit.record(context, record, code: .ok, errorID: "", elapsed: ContinuousClock.now - started)
            } catch {
                let status = Self.status(of: error)
                guardian.audit.record(
                    context, record, code: status.code, errorID: status.errorID, elapsed: ContinuousClock.now - started)
                if let error = error as? AuthError { throw error.rpcError }
                throw error
            }
        }
    }

    /// Runs `proceed` until it ends or `expiry` (seconds since the epoch) passes, whichever
    /// comes first; then the call ends with UNAUTHENTICATED / AUTH_TOKEN_EXPIRED and the
    /// client must reopen it with a fresh token.
    static func run(_ proceed: @escaping @Sendable () async throws -> Void, until expiry: Int64) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await proceed() }
            group.addTask {
                let remaining = expiry - Int64(Date().timeIntervalSince1970)
                try await Task.sleep(for: .seconds(max(remaining, 0)))
                throw AuthError.expired(at: expiry)
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Admin rights: from loopback if so configured, with the admin claim if tokens are on.
    func checkAdmin(_ context: RPCCallContext) throws(AuthError) {
        try checkAdminHost(context)
        if adminRequiresToken {
            try authorizer.requireAdmin(context)
        } else {
            CallRecord.current?.noteAdmin()
        }
    }

    /// An admin call's origin: refused from another host if so configured.
    func checkAdminHost(_ context: RPCCallContext) throws(AuthError) {
        if adminLoopbackOnly, !Self.isLoopback(context.remoteAddress) {
            throw .adminNotLoopback(
                peer: context.remoteAddress.map { "\($0)" } ?? "an unknown address", call: context.method)
        }
    }

    /// Whether `address` is on this host: 127.0.0.0/8, ::1 (also IPv4-mapped), a Unix socket.
    public static func isLoopback(_ address: SocketAddress?) -> Bool {
        guard let address else { return false }
        if case .unixDomainSocket = address { return true }
        guard let ip = address.ipAddress else { return false }
        return ip.hasPrefix("127.") || ip == "::1" || ip.lowercased().hasPrefix("::ffff:127.")
    }

    /// The status a failed call goes out with, as the server maps it (RPCServerHandler).
    static func status(of error: any Error) -> (code: StatusCode, errorID: String) {
        switch error {
        case let error as RPCError: (error.code, error.errorID)
        case let error as AuthError: (error.rpcError.code, error.id)
        case is CancellationError: (.cancelled, "RPC_CANCELLED")
        default: (.internal, "")
        }
    }
}
