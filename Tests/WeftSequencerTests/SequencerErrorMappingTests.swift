import Testing
import WeftStore
import WeftTestSupport
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

/// GetChallenge needs no token: the challenges a sequencer holds are bounded, and expired ones
/// are dropped in the order they were issued.
@Suite(.timeLimit(.minutes(2))) struct ChallengeBoundTests {
    @Test func outstandingChallengesAreBoundedAndExpiredOnesMakeRoom() async throws {
        try await PostgresFixture.withFixture { fixture in
            var domain = try TestDomain()
            let node = try await ServiceTests.Node.start(fixture.url, domain: &domain)
            let manager = domain.managerMember.description
            let bounded = SequencerAuthenticator(topology: node.topology, outstandingChallengesMax: 3)
            for _ in 0..<3 { _ = try await bounded.challenge(for: manager) }
            do {
                _ = try await bounded.challenge(for: manager)
                Issue.record("a fourth challenge was issued")
            } catch let error as RPCError {
                #expect(error.code == .resourceExhausted && error.errorID == "SEQUENCER_TOO_MANY_CHALLENGES")
            }
            // Challenges that expire as they are issued never fill the bound.
            let expiring = SequencerAuthenticator(topology: node.topology, challengeLifetime: 0, outstandingChallengesMax: 3)
            for _ in 0..<10 { _ = try await expiring.challenge(for: manager) }
            await node.stop()
        }
    }
}
