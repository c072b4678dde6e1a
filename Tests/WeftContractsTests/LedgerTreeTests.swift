import Testing
import WeftWire

@testable import WeftContracts

/// Transaction trees as a participant builds them from the views it received: the same events,
/// with the same ids, as the whole transaction shows the same parties.
@Suite struct LedgerTreeTests {
    /// The tree events `parties` witness, built as their participant does: from the views
    /// revealed to them, each top view re-interpreted.
    func fromViews(_ scenario: Scenario, _ parties: [Party]) throws -> [Weft.V1.TreeEvent] {
        let views = try MerkleTree.revealedViews(in: scenario.views().blinded(for: parties))
        let positions = Set(views.map(\.position))
        let interpreter = Interpreter(packages: [scenario.package])
        let lookup = ModelConformance.declaredInputs(of: views)
        var transactions: [Transaction] = []
        for view in views {
            if let parent = view.parentPosition, positions.contains(parent) { continue }
            transactions.append(try ModelConformance.reinterpret(view: view, interpreter: interpreter, contracts: lookup))
        }
        return LedgerTree.events(
            of: transactions, transactionID: "tx", packages: [scenario.package], sees: parties.contains)
    }

    func id(_ event: Weft.V1.TreeEvent) -> String {
        switch event.kind {
        case .created(let created)?: created.eventID
        case .exercised(let exercised)?: exercised.eventID
        case nil: ""
        }
    }

    @Test("DvP: each party's tree from its views is its part of the whole transaction's tree")
    func dvpTreesFromViewsMatchTheWholeTransaction() throws {
        let scenario = Scenario.all.first { $0.name == "dvp: settle, bank and custodian apart" }!
        let nodes = scenario.transaction.nodes
        func eventID(_ index: Int) -> String { LedgerTree.eventID(transactionID: "tx", seed: nodes[index].seed!) }
        let everyone = [alice, bob, bank, custodian]
        let whole = LedgerTree.events(
            of: [scenario.transaction], transactionID: "tx", packages: [scenario.package], sees: everyone.contains)
        // Nodes: 0 Settle (offer), 1 fetch Cash, 2 fetch Security, 3 Transfer (cash), 4 new cash,
        // 5 Deliver (security), 6 new security, 7 Settlement. Fetches are no events.
        #expect(whole.map(id) == [0, 3, 4, 5, 6, 7].map(eventID))
        #expect(Set(whole.map(id)).count == 6)

        for party in everyone {
            let own = try fromViews(scenario, [party])
            let expected = LedgerTree.project(whole, to: [party.id])
            let got = LedgerTree.project(own, to: [party.id])
            #expect(got.events == expected.events, "\(party)")
            #expect(got.roots == expected.roots, "\(party)")
        }
        // The bank witnesses the cash leg only: the Transfer, a root for it, and the new cash.
        let bankTree = LedgerTree.project(whole, to: [bank.id])
        #expect(bankTree.roots == [eventID(3)])
        #expect(bankTree.events.map(id) == [eventID(3), eventID(4)])
        guard case .exercised(let transfer)? = bankTree.events.first?.kind else {
            Issue.record("the bank's root is not the Transfer: \(bankTree)")
            return
        }
        #expect(transfer.choice == "Transfer" && transfer.consuming && transfer.childEventIDs == [eventID(4)])
        #expect(transfer.witnessParties == [bank.id])
        // The seller exercised Settle: its tree hangs from that root, except the cash it is paid
        // with, created under the buyer's Transfer, which the seller does not witness: a root too.
        let sellerTree = LedgerTree.project(whole, to: [bob.id])
        #expect(sellerTree.roots == [eventID(0), eventID(4)])
        #expect(sellerTree.events.map(id) == [0, 4, 5, 7].map(eventID))
    }

    @Test func eventIDsDependOnTheSeedAndRevealNothingOfIt() throws {
        let scenario = Scenario.all.first { $0.name == "dvp: settle, one bank" }!
        let seeds = scenario.transaction.nodes.compactMap(\.seed)
        let ids = seeds.map { LedgerTree.eventID(transactionID: "tx", seed: $0) }
        #expect(Set(ids).count == seeds.count)
        for (seed, id) in zip(seeds, ids) {
            #expect(id.count == "tx:".count + 24)
            #expect(!seed.description.contains(String(id.dropFirst(3))))
        }
    }
}
