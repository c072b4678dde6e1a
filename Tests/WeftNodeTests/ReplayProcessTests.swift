import Foundation
import Testing
import WeftTestSupport
import WeftTransport
import WeftWire

/// Issue 10's recovery by replay, as an operator does it (docs/operator-guide.md, "Recovery:
/// replay from the sequencer"): participant2 (the bank and bob) is killed with SIGKILL while
/// participant1 keeps transacting, its database is dropped and created empty, and it is
/// started again with the same configuration and keys; the operator connects it to the domain
/// again and uploads its package. It replays its sequencer stream from counter 0 and its
/// Ledger API shows, byte for byte, the transactions, trees and active contracts it showed
/// before; then it transacts again.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ReplayProcessTests {
    /// IOU chains (the bank issues alice an IOU, alice transfers it to bob) before the loss.
    static let chains = 8

    @Test func aParticipantWipedDuringLoadRebuildsItsLedgerFromTheSequencer() async throws {
        try await PostgresFixture.withFixture { fixture in
            let cluster = try await CrashCluster.start(fixture)
            do {
                try await drive(cluster)
            } catch {
                let logs = await cluster.saveLogs()
                Issue.record("\(error)\n(every node's log is in \(logs))\n--- participant2's log:\n\(await cluster.log("participant2").suffix(3000))")
            }
            await cluster.stop(expectCleanExit: true)
        }
    }

    func drive(_ cluster: CrashCluster) async throws {
        let (alice, bank, bob) = await cluster.parties
        let iou = IOUCommands(packageID: await cluster.packageID)
        let p2Port = cluster.participantPorts["participant2"]!
        let aliceApp = LedgerApplication(
            port: cluster.participantPorts["participant1"]!, applicationID: "alice-app", actAs: [alice], readAs: [alice])
        let bankApp = LedgerApplication(port: p2Port, applicationID: "bank-app", actAs: [bank], readAs: [bank, bob])
        await aliceApp.follow()
        await bankApp.follow()
        defer { Task { await aliceApp.stop(); await bankApp.stop() } }
        let chain = IOUChain(iou: iou, aliceApp: aliceApp, bankApp: bankApp, alice: alice, bank: bank, bob: bob)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for number in 0..<Self.chains { group.addTask { _ = try await chain.run(number) } }
            try await group.waitForAll()
        }
        let copy = try await LedgerCopy.read(port: p2Port, parties: [bank, bob])
        #expect(copy.end >= UInt64(Self.chains), "participant2's ledger holds \(copy.end) transactions")

        // participant1 keeps transacting on its own (alice issues herself IOUs) through the loss.
        let load = Task {
            var committed = 0
            for number in 0... {
                if Task.isCancelled { break }
                let id = "own-\(number)"
                try await aliceApp.submit(iou.issue("1", from: alice, to: alice), id: id)
                guard let completion = await aliceApp.completion(of: id, within: .seconds(60)) else { throw TestError("no completion of \(id)") }
                if completion.status?.code == 0 { committed += 1 }
            }
            return committed
        }

        // The loss: kill -9, the database dropped and created empty; the same configuration and keys.
        await aliceApp.waitForCompletions(Self.chains + 2)
        await cluster.kill("participant2")
        try await cluster.wipeDatabase("participant2")
        try await cluster.start("participant2")
        try await cluster.connect("participant2")
        // Its first approved transaction needs the IOU package, which went with the database:
        // it waits for it, says so, and commits nothing meanwhile.
        try await cluster.awaitLog("participant2", containing: "PARTICIPANT_PACKAGE_MISSING")
        let client = try await RPCClient.connect(host: "127.0.0.1", port: p2Port, security: .plaintext)
        defer { Task { await client.close() } }
        #expect(try await client.transaction.getLedgerEnd(.init()).offset == 0)
        #expect(try await cluster.uploadPackage("participant2") == (await cluster.packageID))
        try await cluster.awaitLog("participant2", containing: "participant replay finished")
        load.cancel()
        let ownCommitted = try await load.value
        #expect(ownCommitted > 0, "participant1's load did not go on")
        #expect(await cluster.log("participant2").contains("participant replay started"))

        // Byte for byte what it showed before the loss.
        let recovered = try await LedgerCopy.read(port: p2Port, parties: [bank, bob], upTo: copy.end)
        #expect(recovered.end == copy.end)
        #expect(recovered.transactions == copy.transactions, "the flat transactions differ")
        #expect(recovered.trees == copy.trees, "the transaction trees differ")
        #expect(recovered.active == copy.active, "the active contracts differ")

        // It transacts again: the bank issues alice an IOU, committed at the next offset on
        // participant2 and seen by participant1 under the same transaction id.
        let after = LedgerApplication(port: p2Port, applicationID: "bank-app-2", actAs: [bank], readAs: [bank])
        await after.follow()
        defer { Task { await after.stop() } }
        try await after.submit(iou.issue("99", from: bank, to: alice), id: "after-recovery")
        guard let completion = await after.completion(of: "after-recovery", within: .seconds(60)), completion.status?.code == 0 else {
            throw TestError("the recovered participant's command did not commit")
        }
        #expect(completion.offset > 0)
        #expect(try await client.transaction.getLedgerEnd(.init()).offset == copy.end + 1)
        #expect(await aliceApp.transaction(completion.transactionID, within: .seconds(60)) != nil)

        // Consistent with its peer: alice's contracts are the same on both participants.
        let aliceActive = try await LedgerCopy.activeContracts(port: cluster.participantPorts["participant1"]!, parties: [alice])
        let bankActive = try await LedgerCopy.activeContracts(port: p2Port, parties: [bank])
        let shared = bankActive.filter { $0.signatories.contains(alice) || $0.observers.contains(alice) }
        #expect(Set(shared.map(\.contractID)) == Set(aliceActive.filter { $0.signatories.contains(bank) }.map(\.contractID)))
        print("replay: \(copy.end) transactions before the loss, \(ownCommitted) committed by participant1 meanwhile")
    }
}

/// What a participant's Ledger API shows some parties, serialized: the flat transactions and
/// trees up to the ledger end, and the active contracts.
struct LedgerCopy: Equatable {
    var end: UInt64
    var transactions: [[UInt8]]
    var trees: [[UInt8]]
    var active: [[UInt8]]

    /// Reads it now (up to `upTo` instead of the ledger end when given).
    static func read(port: Int, parties: [String], upTo: UInt64? = nil) async throws -> LedgerCopy {
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port, security: .plaintext)
        defer { Task { await client.close() } }
        var end = upTo ?? 0
        if upTo == nil { end = try await client.transaction.getLedgerEnd(.init()).offset }
        var copy = LedgerCopy(end: end, transactions: [], trees: [], active: [])
        guard end > 0 else { return copy }
        for try await response in try client.transaction.getTransactions(.init(endInclusive: end, filter: .init(parties: parties))) {
            copy.transactions.append(try response.transaction?.serializedBytes() ?? [])
        }
        for try await response in try client.transaction.getTransactionTrees(.init(endInclusive: end, filter: .init(parties: parties))) {
            copy.trees.append(try response.transaction?.serializedBytes() ?? [])
        }
        copy.active = try await activeContracts(port: port, parties: parties).map { try $0.serializedBytes() }
        return copy
    }

    static func activeContracts(port: Int, parties: [String]) async throws -> [Weft.V1.CreatedEvent] {
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port, security: .plaintext)
        defer { Task { await client.close() } }
        var active: [Weft.V1.CreatedEvent] = []
        for try await response in try client.activeContracts.getActiveContracts(.init(filter: .init(parties: parties))) {
            active += response.activeContracts
        }
        return active
    }
}
