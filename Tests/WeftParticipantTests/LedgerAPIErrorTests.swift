import Testing
@testable import WeftLedgerAPI
import WeftStore
import WeftTransport

/// What an application is told when a call the participant made to its domain on its behalf
/// failed: a code that says whether to retry, wait for the operator, or give up, and the
/// domain's error id.
@Suite struct LedgerAPIErrorTests {
    @Test(arguments: [
        (StatusCode.unavailable, StatusCode.unavailable), (.deadlineExceeded, .unavailable), (.resourceExhausted, .unavailable),
        (.permissionDenied, .failedPrecondition), (.unauthenticated, .failedPrecondition), (.failedPrecondition, .failedPrecondition),
        (.invalidArgument, .internal), (.notFound, .internal), (.alreadyExists, .internal),
    ])
    func aDomainCallsFailureKeepsItsIDAndSaysWhatToDo(domain: StatusCode, application: StatusCode) {
        let mapped = LedgerAPIError.from(RPCError(domain, "refused for a reason", errorID: "SEQUENCER_SOMETHING"))
        #expect(mapped.code == application)
        #expect(mapped.id == "SEQUENCER_SOMETHING")
        #expect(mapped.message.contains("refused for a reason"))
    }

    @Test func aDomainCallsFailureWithoutAnIDGetsOne() {
        #expect(LedgerAPIError.from(RPCError(.unavailable, "gone", errorID: "")).id == "LEDGER_API_DOMAIN_CALL_FAILED")
    }

    /// A database that cannot be reached for now (a restart, a failover) is UNAVAILABLE, which
    /// clients retry; any other database failure stays INTERNAL.
    @Test func aDatabaseOutOfReachIsUnavailableAndOtherDatabaseFailuresInternal() {
        for transient in [
            PostgresError(code: .connectionLost, message: "server closed the connection"),
            PostgresError(code: .queryFailed, sqlState: "57P01", message: "terminating connection due to administrator command"),
            PostgresError(code: .queryFailed, sqlState: "40001", message: "could not serialize access"),
        ] {
            let mapped = LedgerAPIError.from(transient)
            #expect(mapped.code == .unavailable && mapped.id == "LEDGER_API_DATABASE_UNAVAILABLE", "\(transient)")
            #expect(mapped.message.contains("retry"))
        }
        let broken = LedgerAPIError.from(PostgresError(code: .queryFailed, sqlState: "42P01", message: "relation does not exist"))
        #expect(broken.code == .internal && broken.id == "LEDGER_API_INTERNAL")
    }
}
