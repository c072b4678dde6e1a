import Foundation
import Testing
import WeftTestSupport
import WeftWire

/// Issue 7's crash acceptance: kill -9 a participant, the mediator or the sequencer while
/// transactions are in flight, start it again on the same configuration and database, and
/// check that every command has exactly one outcome, that no transaction is lost or
/// duplicated and that the participants agree.
///
/// Every node is a `weft run` process of its own (`CrashCluster`): one sequencer, the domain
/// manager, the mediator, participant1 hosting alice, participant2 hosting the bank and bob.
/// The test is the application (`LedgerApplication`, one per participant): the bank issues
/// alice IOUs, and alice transfers each one she receives to bob, several commands in flight
/// at once, each with its own command id. The node dies after the bank's k-th completion —
/// an event, not a time — and is started again at once; the applications resume their
/// streams and retry the submissions that got no answer with the same command id.
///
/// The sequencer case restarts the only sequencer (on the same port): members must ride out
/// a domain without any sequencer for a moment, the harder case. Failing over between two
/// sequencer nodes is `FailoverTests`.
@Suite(.serialized, .timeLimit(.minutes(5))) struct CrashTests {
    /// Issues in the stream; each successful one is followed by its transfer.
    static let issues = 30
    /// Issue chains running at once.
    static let concurrency = 5
    /// The bank's completion after which the node dies.
    static let killAfter = 8

    @Test func killingAParticipantMidStream() async throws {
        // participant1 hosts alice: it confirms every issue and submits every transfer (the
        // crash comes after the bank's k-th completion, so transfers are in flight).
        try await run(killing: "participant1")
    }

    @Test func killingTheSubmittingParticipantMidStream() async throws {
        // participant2 hosts the bank and bob: it submits every issue and confirms every transfer.
        try await run(killing: "participant2")
    }

    @Test func killingTheMediatorMidStream() async throws {
        try await run(killing: "mediator1")
    }

    @Test func killingTheSequencerMidStream() async throws {
        try await run(killing: "sequencer1")
    }

    func run(killing victim: String) async throws {
        try await PostgresFixture.withFixture { fixture in
            let cluster = try await CrashCluster.start(fixture)
            do {
                try await drive(cluster, killing: victim)
            } catch {
                let logs = await cluster.saveLogs()
                Issue.record("\(error)\n(every node's log is in \(logs))\n--- \(victim)'s log:\n\(await cluster.log(victim).suffix(3000))")
            }
            await cluster.stop(expectCleanExit: true)
        }
    }

    func drive(_ cluster: CrashCluster, killing victim: String) async throws {
        let (alice, bank, bob) = await cluster.parties
        let iou = IOUCommands(packageID: await cluster.packageID)
        let aliceApp = LedgerApplication(
            port: cluster.participantPorts["participant1"]!, applicationID: "alice-app", actAs: [alice], readAs: [alice])
        let bankApp = LedgerApplication(
            port: cluster.participantPorts["participant2"]!, applicationID: "bank-app", actAs: [bank], readAs: [bank, bob])
        await aliceApp.follow()
        await bankApp.follow()
        defer { Task { await aliceApp.stop(); await bankApp.stop() } }

        let chain = IOUChain(iou: iou, aliceApp: aliceApp, bankApp: bankApp, alice: alice, bank: bank, bob: bob)

        // The crash: once the bank's k-th completion is in, with the other chains in flight.
        let crash = Task {
            await bankApp.waitForCompletions(Self.killAfter)
            await cluster.kill(victim)
            try await cluster.start(victim)
        }
        let submitted = try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in 0..<Self.concurrency {
                group.addTask {
                    var ids: [String] = []
                    for number in stride(from: worker, to: Self.issues, by: Self.concurrency) { ids += try await chain.run(number) }
                    return ids
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        try await crash.value
        // The restarted node takes part in new transactions.
        let after = try await chain.run(Self.issues)
        #expect(after.count == 2, "the issue after the restart did not commit")
        let commands = Set(submitted + after)

        // Exactly one completion per command, in both the live streams and a fresh read — but
        // for submissions lost in the crash: a submission the Ledger API recorded and the killed
        // participant did not completes LEDGER_API_SUBMISSION_LOST after the restart (one per
        // submission), and the application, whose call failed, submitted the command again
        // under a new submission id; that one completes too.
        let live = (await aliceApp.completions) + (await bankApp.completions)
        let fresh = try await aliceApp.reread(completionCount: await aliceApp.completions.count)
        let freshBank = try await bankApp.reread(completionCount: await bankApp.completions.count)
        for completions in [live, fresh.completions + freshBank.completions] {
            let perCommand = Dictionary(grouping: completions, by: \.commandID)
            #expect(Set(perCommand.keys) == commands, "completions for \(Set(perCommand.keys).symmetricDifference(commands).sorted())")
            for (id, list) in perCommand {
                let lost = list.filter { $0.status?.errorID == "LEDGER_API_SUBMISSION_LOST" }
                let decided = list.count - lost.count
                let submissions = Set(list.map(\.submissionID))
                if !(decided == 1 || list.count == 1) || submissions.count != list.count {
                    Issue.record("command \(id) has \(list.count) completions: \(list.map { "\($0.status?.errorID ?? "") \($0.transactionID) \($0.submissionID)" })")
                }
            }
        }
        #expect(fresh.completions.map(\.offset) == (await aliceApp.completions).map(\.offset))
        #expect(freshBank.completions.map(\.offset) == (await bankApp.completions).map(\.offset))
        let succeeded = live.filter { $0.status?.code == 0 }
        let rejected = live.filter { $0.status?.code != 0 }
        for completion in rejected {
            let reasonID = completion.status?.errorID ?? ""
            #expect(!reasonID.isEmpty, "a rejection without a reason id: \(completion)")
        }
        #expect(Set(succeeded.map(\.transactionID)).count == succeeded.count, "two commands with one transaction id")

        // No transaction lost or duplicated: each participant's stream holds exactly the
        // successful commands' transactions (both participants host a stakeholder of each:
        // the bank or bob on participant2, alice on participant1), each once, and no contract
        // is created twice.
        let committed = Set(succeeded.map(\.transactionID))
        for (name, transactions) in [("participant1", fresh.transactions), ("participant2", freshBank.transactions)] {
            let ids = transactions.map(\.transactionID)
            #expect(Set(ids).count == ids.count, "\(name) has a transaction twice")
            #expect(Set(ids) == committed, "\(name): lost \(committed.subtracting(ids).count), unknown \(Set(ids).subtracting(committed).count)")
            #expect(transactions.map(\.offset) == (0..<UInt64(transactions.count)).map { $0 + 1 }, "\(name)'s offsets")
            let created = transactions.flatMap(\.events).compactMap { event -> String? in
                if case .created(let created)? = event.kind { return created.contractID }
                return nil
            }
            #expect(Set(created).count == created.count, "\(name) created a contract twice")
        }

        // The participants agree on every contract they share: alice's IOUs are on both.
        let aliceOnParticipant2 = freshBank.active.filter { $0.observers.contains(alice) || $0.signatories.contains(alice) }
        #expect(Set(fresh.active.map(\.contractID)) == Set(aliceOnParticipant2.map(\.contractID)))
        #expect(
            Dictionary(uniqueKeysWithValues: fresh.active.map { ($0.contractID, $0.createArguments) })
                == Dictionary(uniqueKeysWithValues: aliceOnParticipant2.map { ($0.contractID, $0.createArguments) }))
        // One IOU per committed issue: with alice if its transfer failed, else with bob.
        let issuedCount = succeeded.filter { $0.commandID.hasPrefix("issue-") }.count
        let transferredCount = succeeded.filter { $0.commandID.hasPrefix("transfer-") }.count
        #expect(freshBank.active.count == issuedCount && fresh.active.count == issuedCount - transferredCount)
        print(
            "crash of \(victim): \(commands.count) commands, \(succeeded.count) committed, \(rejected.count) rejected "
                + "(\(rejected.compactMap { $0.status?.errorID }.sorted())), retried submissions \(await aliceApp.retriedSubmissions + bankApp.retriedSubmissions), "
                + "stream resumptions \(await aliceApp.reconnections + bankApp.reconnections)")
    }
}
