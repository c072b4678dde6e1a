import Foundation
import Testing
import WeftContracts
import WeftCrypto
@_spi(Testing) import WeftParticipant
import WeftStore
import WeftTestSupport

/// Recovery by replay (docs/operator-guide.md, "Recovery"): a participant that lost its
/// database but kept its keys starts on an empty one and rebuilds its ledger from its
/// sequencer stream. The process-level acceptance test (wipe during load, `weft run`) is
/// `WeftNodeTests.ReplayProcessTests`; these check the participant core on one domain.
extension OnAThirdRealDomain {
    @Suite(.timeLimit(.minutes(5))) struct ReplayTests {
        /// A database of its own on the fixture's server for the participant's second life.
        static func emptyDatabase(_ fixture: PostgresFixture, _ name: String) throws -> String {
            _ = try PostgresConnection(url: fixture.url).execute("CREATE DATABASE \(name)")
            return fixture.url.replacingOccurrences(of: "/weft", with: "/\(name)")
        }

        @Test func aParticipantThatLostItsDatabaseReplaysTheSameLedgerWaitingForItsPackage() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p1, p2, alice, bob, bank) = (domain.p1, domain.p2, domain.alice, domain.bob, domain.bank)
                // participant2 submits the issues (the bank's) and confirms the transfers to bob.
                for number in 0..<3 {
                    let iou = try await domain.issued("\(number + 1)", to: alice, command: "issue-\(number)")
                    let transfer = try await p1.submit(
                        [try domain.transfer(iou, to: bob)], actAs: [alice],
                        command: CommandKey(applicationID: "alice-app", commandID: "transfer-\(number)"))
                    guard case .succeeded = transfer else {
                        Issue.record("transfer \(number) did not commit: \(transfer)")
                        return
                    }
                }
                _ = try await domain.issued("10", to: bank, command: "kept-by-the-bank")
                let end = await p2.ledgerEndOffset
                #expect(end == 7)
                let before = (
                    bank: try await p2.transactions(of: bank), bob: try await p2.transactions(of: bob),
                    trees: try await p2.transactionTrees(after: 0, upTo: end),
                    active: try await p2.activeContracts(of: [bank, bob]).contracts.map(\.contract)
                )
                let firstIssue = CommandKey(applicationID: "bank-app", commandID: "issue-0")
                let original = try #require(try await p2.command(firstIssue, actAs: [bank]))
                await p2.stop()

                // The loss: participant2 comes back with its keys on an empty database.
                let url = try Self.emptyDatabase(fixture, "participant2_recovered")
                let store = ParticipantStore(database: PostgresDatabase(url: url), participant: domain.members[1].id)
                try await store.migrate()
                let recovered = try await DomainHarness.startNode(
                    domain.members[1], store: store, url: url, endpoint: domain.endpoint, domain: domain.domain)
                // Without the package, it stops at the first approved transaction rather than
                // commit it without its tree; the upload lets it go on.
                #expect(await recovered.awaitPackageWait() == [try domain.package.id])
                #expect(await recovered.ledgerEndOffset == 0)
                try await recovered.upload(packageSource: domain.iouSource, file: "iou.weft")
                let summary = try await recovered.waitForReplay()
                #expect(summary?.transactions == end, "\(String(describing: summary))")
                #expect(await recovered.missingPackages.isEmpty)

                // The same ledger: offsets, ids, events, command ids, trees, contracts.
                #expect(try await recovered.transactions(of: bank) == before.bank)
                #expect(try await recovered.transactions(of: bob) == before.bob)
                #expect(try await recovered.transactionTrees(after: 0, upTo: end) == before.trees)
                #expect(
                    try await recovered.activeContracts(of: [bank, bob]).contracts.map(\.contract) == before.active)
                #expect(
                    before.bank.filter { !$0.commandID.isEmpty }.count == 4, "the bank's own commands keep their ids")

                // Its own commands keep their completions and stay deduplicated: the bank's
                // application retrying a command from before the loss gets the first outcome.
                let restored = try #require(try await recovered.command(firstIssue, actAs: [bank]))
                #expect(restored.state == .succeeded && restored.transactionID == original.transactionID)
                #expect(
                    restored.ledgerOffset == original.ledgerOffset && restored.submissionID == original.submissionID)
                #expect(restored.deduplicateUntil > Int64(Date().timeIntervalSince1970 * 1_000_000))
                let retried = try await recovered.submit(
                    [try domain.issue("1", to: alice)], actAs: [bank], command: firstIssue)
                guard case .duplicate = retried else {
                    Issue.record("a command from before the loss was not deduplicated: \(retried)")
                    return
                }

                // And it goes on: the bank issues bob an IOU at the next offset.
                let next = try await recovered.submit(
                    [try domain.issue("20", to: bob)], actAs: [bank],
                    command: CommandKey(applicationID: "bank-app", commandID: "after-recovery"))
                guard case .succeeded(_, let offset) = next else {
                    Issue.record("the recovered participant's command did not commit: \(next)")
                    return
                }
                #expect(offset == end + 1)
                await recovered.stop()
                await domain.stop()
            }
        }

        @Test func replayFromAPrunedSequencerFailsNamingTheRepairProcedure() async throws {
            try await PostgresFixture.withFixture { fixture in
                let domain = try await DomainHarness.start(url: fixture.url)
                let (p2, bank) = (domain.p2, domain.bank)
                _ = try await domain.issued("1", to: bank, command: "before-prune")
                let recordTime = try #require(try await p2.transactions(of: bank).last?.recordTime)
                await p2.stop()
                // The operator forces a prune past what participant2 acknowledged (it never does).
                let pruned = try await domain.sequencer.prune(upToInclusive: recordTime.microsSinceEpoch, force: true)
                #expect(pruned.membersCutOff.contains(domain.members[1].member.description))

                let url = try Self.emptyDatabase(fixture, "participant2_recovered")
                let store = ParticipantStore(database: PostgresDatabase(url: url), participant: domain.members[1].id)
                try await store.migrate()
                let recovered = try await DomainHarness.startNode(
                    domain.members[1], store: store, url: url, endpoint: domain.endpoint, domain: domain.domain,
                    ready: false)
                do {
                    let summary = try await recovered.waitForReplay()
                    Issue.record("replay from a pruned stream finished: \(String(describing: summary))")
                } catch let error as ParticipantRecoveryError {
                    guard case .eventsPruned(let counter, _) = error else {
                        Issue.record("not the pruned error: \(error)")
                        return
                    }
                    #expect(counter == 0)
                    #expect(error.id == "PARTICIPANT_EVENTS_PRUNED")
                    #expect(error.description.contains("repair from peers"), "\(error)")
                }
                #expect(await recovered.ledgerEndOffset == 0)
                await recovered.stop()
                await domain.stop()
            }
        }
    }
}
