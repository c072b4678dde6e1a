import Testing
import WeftStore
import WeftTransport
@testable import WeftSequencer

/// What a member is told when the sequencer's store or its own view of the members fails it:
/// codes that say whether to retry (UNAVAILABLE) or to ask the operator (PERMISSION_DENIED),
/// never INTERNAL, which members do not retry.
@Suite struct SequencerErrorMappingTests {
    func mapped(_ error: any Error) async -> RPCError? {
        do {
            _ = try await SequencerServiceProvider.databaseErrorsAsUnavailable { () async throws -> Int in throw error }
            return nil
        } catch {
            return error as? RPCError
        }
    }

    @Test func aDatabaseFailureIsUnavailable() async {
        let error = await mapped(PostgresError(code: .connectionLost, message: "server closed the connection"))
        #expect(error?.code == .unavailable && error?.errorID == "SEQUENCER_DATABASE_UNAVAILABLE")
    }

    @Test func aMemberThisNodeHasNotRegisteredIsNotAllowed() async {
        let error = await mapped(SequencerError.unknownSender("PAR::participant9::1220aa"))
        #expect(error?.code == .permissionDenied && error?.errorID == "SEQUENCER_MEMBER_NOT_ALLOWED")
        #expect(error?.message.contains("allow-list") == true)
    }
}
