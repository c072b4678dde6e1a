import Foundation
import NIOCore
import Testing
import WeftCrypto
@_spi(Testing) import WeftDomainManager
import WeftTestSupport
import WeftTopology
import WeftTransport
import WeftWire
@testable import WeftNode

/// The domain manager's changes, on a real sequencer process: one at a time, each with the
/// next serial; what an operator leaves out is kept; what would stop the domain is refused.
@Suite(.timeLimit(.minutes(5))) struct DomainManagerChangeTests {
    @Test func changesMadeTogetherApplyInTurnAndOmittedTrustIsKept() async throws {
        try await PostgresFixture.withFixture { fixture in
            let domain = try await FailoverTests.Domain.start(fixture, sequencerCount: 1)
            let manager = domain.manager
            let carol = try UniqueIdentifier(name: "carol", namespace: try SigningPrivateKey.generate().publicKey.fingerprint)
            _ = try await manager.change([.participantState(carol, permission: .submission, trustLevel: .vip)])
            // Two changes of one mapping at once: before, both took the same serial and the
            // second was refused everywhere, its caller told after 30 s that it did not come back.
            async let first = manager.change([.participantState(carol, permission: .confirmation, trustLevel: .vip)])
            async let second = manager.change([.participantState(carol, permission: .observation, trustLevel: .vip)])
            let (firstAt, secondAt) = try await (first, second)
            #expect(firstAt != secondAt)
            let serials = await manager.transactions(asOf: nil).filter { $0.key == (try? TopologyMappingKey(.participantState(carol, permission: .submission), domain: manager.domain)) }
                .map(\.serial)
            #expect(serials == [1, 2, 3])
            // Each change's time is its own, and it is in force after it.
            let last = max(firstAt, secondAt)
            #expect(await manager.transactions(asOf: last.adding(micros: 1)).contains { $0.serial == 3 })

            // Set-state without a trust level keeps the VIP's.
            let admin = DomainManagerAdministration(manager: manager)
            let context = RPCCallContext(
                method: "/weft.v1.DomainManagerAdministrationService/SetParticipantState", metadata: [],
                remoteAddress: try SocketAddress(ipAddress: "127.0.0.1", port: 5000))
            _ = try await admin.setParticipantState(
                .init(participant: carol.description, permission: .submission, trustLevel: .unspecified), context: context)
            #expect(await manager.snapshot().participantState(carol)?.trustLevel == .vip)
            #expect(await manager.snapshot().participantState(carol)?.permission == .submission)

            // … read when its turn comes: a demotion queued before it stays (the trust level was
            // read when the call came, before the demotion applied, and written back after it).
            let queued = await manager.changesStarted
            let demotion = Task { try await manager.change([.participantState(carol, permission: .submission, trustLevel: .ordinary)]) }
            while await manager.changesStarted == queued { await Task.yield() }
            _ = try await admin.setParticipantState(
                .init(participant: carol.description, permission: .confirmation, trustLevel: .unspecified), context: context)
            _ = try await demotion.value
            #expect(await manager.snapshot().participantState(carol)?.trustLevel == .ordinary)
            #expect(await manager.snapshot().participantState(carol)?.permission == .confirmation)

            // A max request size too small for the domain's own traffic is refused.
            var parameters = try #require(await manager.snapshot().domainParameters)
            parameters.maxRequestSizeBytes = 1
            await #expect(throws: RPCError.self) {
                _ = try await admin.setDomainParameters(.init(parameters: parameters), context: context)
            }
            do {
                _ = try await admin.setDomainParameters(.init(parameters: parameters), context: context)
            } catch let error as RPCError {
                #expect(error.code == .invalidArgument && error.errorID == "DOMAIN_MANAGER_MAX_REQUEST_SIZE_TOO_SMALL")
            }
            // Set below the floor all the same (not through the admin API): the domain manager's
            // next change still gets through, and the limit can be raised again.
            let previousLimit = parameters.maxRequestSizeBytes
            parameters.maxRequestSizeBytes = 100
            _ = try await manager.change([.parameters(parameters, of: manager.domain)])
            _ = try await manager.change([.participantState(carol, permission: .confirmation)])
            parameters.maxRequestSizeBytes = previousLimit
            _ = try await manager.change([.parameters(parameters, of: manager.domain)])
            #expect(await manager.snapshot().domainParameters?.maxRequestSizeBytes == previousLimit)
            await domain.stop()
        }
    }
}
