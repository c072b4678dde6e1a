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
    /// IOUs alice keeps before the loss and transfers to bob across it, one after the other.
    static let transfersAcrossTheLoss = 4

    @Test func aParticipantWipedDuringLoadRebuildsItsLedgerFromTheSequencer() async throws {
        try await PostgresFixture.withFixture { fixture in
            try await CrashCluster.withCluster(fixture, showingLogOf: "participant2", drive)
        }
    }

    func drive(_ cluster: CrashCluster) async throws {
        let (alice, bank, bob) = await cluster.parties
        let iou = IOUCommands(packageID: await cluster.packageID)
        let p2Port = cluster.participantPorts["participant2"]!
        let aliceApp = LedgerApplication(
            port: cluster.participantPorts["participant1"]!, applicationID: "alice-app", actAs: [alice], readAs: [alice]
        )
        let bankApp = LedgerApplication(port: p2Port, applicationID: "bank-app", actAs: [bank], readAs: [bank, bob])
        await aliceApp.follow()
        await bankApp.follow()
        defer {
            Task {
                await aliceApp.stop(); await bankApp.stop()
            }
        }
        let chain = IOUChain(iou: iou, aliceApp: aliceApp, bankApp: bankApp, alice: alice, bank: bank, bob: bob)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for number in 0..<Self.chains { group.addTask { _ = try await chain.run(number) } }
            try await group.waitForAll()
        }
        var kept: [String] = []
        for number in 0..<Self.transfersAcrossTheLoss {
            let id = "kept-\(number)"
            try await bankApp.submit(iou.issue("\(50 + number)", from: bank, to: alice), id: id)
            let issued = try await IOUChain.outcome(bankApp, id)
            guard issued.status?.code == 0,
                let transaction = await aliceApp.transaction(issued.transactionID, within: .seconds(60)),
                case .created(let created)? = transaction.events.first?.kind
            else { throw TestError("the IOU \(id) did not reach alice: \(issued)") }
            kept.append(created.contractID)
        }
        let copy = try await LedgerCopy.read(port: p2Port, parties: [bank, bob])
        let aliceCompletionsAtCopy = await aliceApp.completions.count
        #expect(copy.end >= UInt64(Self.chains), "participant2's ledger holds \(copy.end) transactions")

        // participant1 keeps transacting on its own (alice issues herself IOUs) through the loss.
        let load = Task {
            var committed = 0
            for number in 0... {
                if Task.isCancelled { break }
                let id = "own-\(number)"
                // The test cancels this load once it has what it needs; a call under way then
                // ends with CancellationError, which ends the load rather than failing it.
                do {
                    try await aliceApp.submit(iou.issue("1", from: alice, to: alice), id: id)
                } catch where Task.isCancelled {
                    break
                }
                guard let completion = await aliceApp.completion(of: id, within: .seconds(60)) else {
                    if Task.isCancelled { break }
                    throw TestError("no completion of \(id)")
                }
                if completion.status?.code == 0 { committed += 1 }
            }
            return committed
        }
        // Alice transfers her kept IOUs to bob, before, during and after participant2's loss:
        // bob's participant must confirm each (a request sequenced while it is down waits for
        // the replayed participant's confirmation, within the response timeout).
        let transfers = Task {
            var completions: [Weft.V1.Completion] = []
            for (number, contract) in kept.enumerated() {
                let id = "across-\(number)"
                try await aliceApp.submit(iou.transfer(contract, to: bob), id: id)
                completions.append(try await IOUChain.outcome(aliceApp, id))
            }
            return completions
        }

        // The loss: kill -9, the database dropped and created empty; the same configuration and keys.
        await aliceApp.waitForCompletions(aliceCompletionsAtCopy + 2)
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
        let transferred = try await transfers.value.filter { $0.status?.code == 0 }
        load.cancel()
        let ownCommitted = try await load.value
        #expect(ownCommitted > 0, "participant1's load did not go on")
        #expect(await cluster.log("participant2").contains("participant replay started"))

        // Byte for byte what it showed before the loss, up to the copy's ledger end.
        let recovered = try await LedgerCopy.read(port: p2Port, parties: [bank, bob], upTo: copy.end)
        let (sameTransactions, sameTrees) = (recovered.transactions == copy.transactions, recovered.trees == copy.trees)
        #expect(recovered.end == copy.end && recovered.transactions.count == copy.transactions.count)
        #expect(sameTransactions, "the flat transactions differ")
        #expect(sameTrees, "the transaction trees differ")

        // The bank's completions come back from its views: the same commands, transactions,
        // act-as parties and submission ids (the completion offsets are numbered anew).
        let original = await bankApp.completions
        let replayed = try await LedgerCopy.completions(
            port: p2Port, applicationID: "bank-app", parties: [bank], count: original.count)
        func outcome(_ completion: Weft.V1.Completion) -> String {
            [
                completion.commandID, completion.transactionID, completion.submissionID,
                completion.status.map { "\($0.code)" } ?? "none",
            ]
            .joined(separator: " ") + " \(completion.actAs)"
        }
        #expect(original.count == Self.chains + Self.transfersAcrossTheLoss)
        #expect(Set(replayed.map(outcome)) == Set(original.map(outcome)), "the replayed completions differ")

        // It transacts again: the bank issues alice an IOU, committed at the next offset on
        // participant2 and seen by participant1 under the same transaction id.
        let after = LedgerApplication(port: p2Port, applicationID: "bank-app-2", actAs: [bank], readAs: [bank])
        await after.follow()
        defer { Task { await after.stop() } }
        try await after.submit(iou.issue("99", from: bank, to: alice), id: "after-recovery")
        guard let completion = await after.completion(of: "after-recovery", within: .seconds(60)),
            completion.status?.code == 0
        else {
            throw TestError("the recovered participant's command did not commit")
        }
        #expect(completion.offset > 0)
        #expect(try await client.transaction.getLedgerEnd(.init()).offset == copy.end + UInt64(transferred.count) + 1)
        #expect(await aliceApp.transaction(completion.transactionID, within: .seconds(60)) != nil)

        // After the copy, its ledger holds exactly the transactions of its parties the peers
        // committed meanwhile: the transfers to bob that succeeded, and the new issue.
        let now = try await LedgerCopy.read(port: p2Port, parties: [bank, bob])
        let afterCopy = try now.transactions.dropFirst(copy.transactions.count).map {
            try Weft.V1.Transaction(serializedBytes: $0).transactionID
        }
        #expect(
            Set(afterCopy) == Set(transferred.map(\.transactionID) + [completion.transactionID]),
            "transfers committed: \(transferred.count)")
        #expect(!transferred.isEmpty, "no transfer across the loss committed")
        // The bank's application followed participant2's transaction stream across the loss,
        // resuming after the last offset it had: what it holds is what a fresh read shows.
        let last = try Weft.V1.Transaction(serializedBytes: try #require(now.transactions.last)).transactionID
        #expect(await bankApp.transaction(last, within: .seconds(60)) != nil)
        let followed = try await bankApp.transactions.map { try $0.serializedBytes() } == now.transactions
        #expect(followed, "the followed stream differs from a fresh read")
        // The active contracts: the copy's, less those archived after it, plus those created
        // after it; each contract of the copy still active is byte for byte the copy's.
        let copiedIDs = Set(try copy.active.map { try Weft.V1.CreatedEvent(serializedBytes: $0).contractID })
        var expected = copiedIDs
        for bytes in now.transactions.dropFirst(copy.transactions.count) {
            for event in try Weft.V1.Transaction(serializedBytes: bytes).events {
                switch event.kind {
                case .created(let created)?: expected.insert(created.contractID)
                case .archived(let archived)?: expected.remove(archived.contractID)
                case nil: break
                }
            }
        }
        let active = try now.active.map { try Weft.V1.CreatedEvent(serializedBytes: $0) }
        #expect(
            Set(active.map(\.contractID)) == expected, "the active contracts are not the copy's plus what came after")
        let keptBytes = now.active.filter { bytes in copy.active.contains { $0 == bytes } }.count
        let keptIDs = copiedIDs.intersection(active.map(\.contractID)).count
        #expect(
            keptIDs > 0 && keptBytes == keptIDs,
            "a contract of the copy changed its bytes (\(keptBytes) of \(keptIDs) the same)")

        // Consistent with its peer: alice's contracts are the same on both participants.
        let aliceActive = try await LedgerCopy.activeContracts(
            port: cluster.participantPorts["participant1"]!, parties: [alice])
        let bankActive = try await LedgerCopy.activeContracts(port: p2Port, parties: [bank])
        let shared = bankActive.filter { $0.signatories.contains(alice) || $0.observers.contains(alice) }
        #expect(
            Set(shared.map(\.contractID)) == Set(aliceActive.filter { $0.signatories.contains(bank) }.map(\.contractID))
        )
        print(
            "replay: \(copy.end) transactions before the copy, \(transferred.count) transfers across the loss, \(ownCommitted) own transactions of participant1 meanwhile"
        )
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
        for try await response in try client.transaction.getTransactions(
            .init(endInclusive: end, filter: .init(parties: parties)))
        {
            copy.transactions.append(try response.transaction?.serializedBytes() ?? [])
        }
        for try await response in try client.transaction.getTransactionTrees(
            .init(endInclusive: end, filter: .init(parties: parties)))
        {
            copy.trees.append(try response.transaction?.serializedBytes() ?? [])
        }
        copy.active = try await activeContracts(port: port, parties: parties).map { try $0.serializedBytes() }
        return copy
    }

    /// The first `count` completions of `applicationID`'s stream for `parties`, from the
    /// beginning; throws if fewer arrive within 30 s.
    static func completions(port: Int, applicationID: String, parties: [String], count: Int) async throws
        -> [Weft.V1.Completion]
    {
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port, security: .plaintext)
        defer { Task { await client.close() } }
        return try await withThrowingTaskGroup(of: [Weft.V1.Completion]?.self) { group in
            group.addTask {
                var completions: [Weft.V1.Completion] = []
                let request = Weft.V1.CompletionStreamRequest(applicationID: applicationID, parties: parties)
                for try await response in try client.completion.completionStream(request) {
                    if let completion = response.completion { completions.append(completion) }
                    if completions.count >= count { break }
                }
                return completions
            }
            group.addTask {
                try await Task.sleep(for: .seconds(30))  // the deadline, not a synchronization
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            guard let first else { throw TestError("fewer than \(count) completions of \(applicationID) within 30 s") }
            return first
        }
    }

    static func activeContracts(port: Int, parties: [String]) async throws -> [Weft.V1.CreatedEvent] {
        let client = try await RPCClient.connect(host: "127.0.0.1", port: port, security: .plaintext)
        defer { Task { await client.close() } }
        var active: [Weft.V1.CreatedEvent] = []
        for try await response in try client.activeContracts.getActiveContracts(.init(filter: .init(parties: parties)))
        {
            active += response.activeContracts
        }
        return active
    }
}
