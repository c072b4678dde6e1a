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

    /// Callers are authenticated, so active in the topology: a member this node has not
    /// registered yet is a wait, not a refusal.
    @Test func aMemberThisNodeHasNotRegisteredYetIsUnavailable() async {
        let error = await mapped(SequencerError.unknownSender("PAR::participant9::1220aa"))
        #expect(error?.code == .unavailable && error?.errorID == "SEQUENCER_MEMBER_NOT_REGISTERED")
        #expect(error?.message.contains("retry") == true)
    }
}

/// GetChallenge needs no token: the challenges a sequencer holds are bounded (the oldest go
/// first), and expired ones are dropped in the order they were issued.
@Suite(.timeLimit(.minutes(2))) struct ChallengeBoundTests {
    @Test func outstandingChallengesAreBoundedAndTheOldestGoFirst() async throws {
        try await PostgresFixture.withFixture { fixture in
            var domain = try TestDomain()
            let node = try await ServiceTests.Node.start(fixture.url, domain: &domain)
            let manager = domain.managerMember.description
            let bounded = SequencerAuthenticator(topology: node.topology, outstandingChallengesMax: 3)
            for _ in 0..<10 { _ = try await bounded.challenge(for: manager) }
            #expect(await bounded.outstandingChallenges == 3)
            // Challenges that expire as they are issued are dropped before the bound is reached.
            let expiring = SequencerAuthenticator(topology: node.topology, challengeLifetime: 0, outstandingChallengesMax: 3)
            for _ in 0..<10 { _ = try await expiring.challenge(for: manager) }
            #expect(await expiring.outstandingChallenges <= 1)
            await node.stop()
        }
    }
}
