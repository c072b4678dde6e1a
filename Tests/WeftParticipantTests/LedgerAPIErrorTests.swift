import Testing
@testable import WeftLedgerAPI
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
}
