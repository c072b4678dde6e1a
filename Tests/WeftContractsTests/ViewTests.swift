// Cutting transactions into views: which actions each view holds, its
// informees, confirming parties and threshold under both policies, its
// inputs and outputs, and determinism to the byte.

import Testing
import WeftContracts

private func scenario(_ name: String) -> Scenario { Scenario.all.first { $0.name == name }! }

@Suite("Views")
struct ViewTests {
    @Test("DvP: each leg is a subview of its own informees; the bank and the custodian each see one leg")
    func dvpViews() throws {
        let views = try scenario("dvp: settle, bank and custodian apart").views()
        #expect(
            outline(views) == [
                "0 exercise Offer.Settle, create Settlement | informees=alice,bob confirming=alice,bob threshold=2",
                "  0.0 fetch Cash | informees=alice,bank confirming=alice,bank threshold=2",
                "  0.1 fetch Security | informees=bob,csd confirming=bob,csd threshold=2",
                "  0.2 exercise Cash.Transfer | informees=alice,bank confirming=alice,bank threshold=2",
                "    0.2.0 create Cash | informees=bank,bob confirming=bank threshold=1",
                "  0.3 exercise Security.Deliver | informees=bob,csd confirming=bob,csd threshold=2",
                "    0.3.0 create Security | informees=alice,csd confirming=csd threshold=1",
            ])
        #expect(views.rootViews == [0])
        #expect(views.parents == [nil, 0, 0, 0, 3, 0, 5])
        #expect(views.subviews == [[1, 2, 3, 5], [], [], [4], [], [6], []])
        #expect(views.viewsFor(party: bank) == [1, 3, 4])
        #expect(views.viewsFor(party: custodian) == [2, 5, 6])
        #expect(views.viewsFor(party: alice) == Array(0..<7))
        #expect(views.viewsFor(party: carol) == [])

        let nodes = views.transaction.nodes
        let settle = views.views[0].participantData
        guard case .exercise(let offer, _, "Settle", _, [bob], _, true) = settle.action,
            case .exercise(let exercise) = nodes[0].action
        else {
            Issue.record("the root view's action is not the seller's Settle: \(settle.action)")
            return
        }
        #expect(offer == exercise.contractID)
        #expect(settle.coreInputs.map(\.id) == [offer])
        #expect(settle.coreInputs.map(\.consumed) == [true])
        guard case .create(let settlement) = nodes[7].action else { throw ContractError.invalidCommand("node 7") }
        #expect(settle.createdCore.map(\.id) == [settlement.contractID])
        #expect(settle.requiredAuthorizers == [bob])

        // The cash leg: Transfer consumes the buyer's cash; its create is a
        // subview (the seller and the bank are told of the new cash).
        let transfer = views.views[3].participantData
        guard case .exercise(let cash) = nodes[3].action, case .create(let paid) = nodes[4].action else {
            throw ContractError.invalidCommand("nodes 3, 4")
        }
        let cashSeed = try #require(
            scenario("dvp: settle, bank and custodian apart").contracts.creationSeed(of: cash.contractID))
        #expect(
            transfer.coreInputs == [
                CoreInput(id: cash.contractID, contract: cash.contract, consumed: true, creationSeed: cashSeed)
            ])
        #expect(transfer.coreInputs.allSatisfy { $0.isAuthenticated })
        #expect(transfer.createdCore.isEmpty)
        #expect(
            views.views[4].participantData.createdCore == [
                CreatedContract(
                    id: paid.contractID, contract: paid.instance, consumedInCore: false, creationSeed: nodes[4].seed!)
            ])
        #expect(views.views[4].participantData.action == .create(contract: paid.contractID, seed: nodes[4].seed!))
        #expect(views.views[4].participantData.requiredAuthorizers == [bank])
        // A fetch view: the bank confirms the buyer's cash exists.
        #expect(views.views[1].participantData.action == .fetch(contract: cash.contractID, actors: [alice]))
        #expect(views.views[1].participantData.coreInputs.map(\.consumed) == [false])
    }

    @Test("DvP with one bank for cash and securities: the bank sees both legs, still not the offer")
    func dvpOneBank() throws {
        let views = try scenario("dvp: settle, one bank").views()
        #expect(views.views.count == 7)
        #expect(views.viewsFor(party: bank) == [1, 2, 3, 4, 5, 6])
        #expect(!views.views[0].commonData.informees.contains(bank))
    }

    @Test("IOU: a transfer is two views (the new owner is told of the new IOU); a split is one")
    func iouViews() throws {
        #expect(
            outline(try scenario("iou: transfer").views()) == [
                "0 exercise Iou.Transfer | informees=alice,bank confirming=alice,bank threshold=2",
                "  0.0 create Iou | informees=bank,bob confirming=bank threshold=1",
            ])
        let split = try scenario("iou: split").views()
        #expect(
            outline(split) == [
                "0 exercise Iou.Split, create Iou, create Iou | informees=alice,bank confirming=alice,bank threshold=2"
            ])
        #expect(split.views[0].participantData.createdCore.count == 2)
        #expect(split.views[0].participantData.createdCore.allSatisfy { !$0.consumedInCore })

        let merge = try scenario("iou: merge").views()
        #expect(
            outline(merge) == [
                "0 exercise Iou.Merge, fetch Iou, exercise Iou.Archive, create Iou | informees=alice,bank "
                    + "confirming=alice,bank threshold=2"
            ])
        #expect(merge.views[0].participantData.coreInputs.map(\.consumed) == [true, true])
    }

    @Test("two commands are two root views; the second reads the contract the first creates as an input")
    func twoRoots() throws {
        let views = try scenario("iou: issue and transfer in one transaction").views()
        #expect(
            outline(views) == [
                "0 create Iou | informees=bank,carol confirming=bank threshold=1",
                "1 exercise Iou.Transfer | informees=bank,carol confirming=bank,carol threshold=2",
                "  1.0 create Iou | informees=alice,bank confirming=bank threshold=1",
            ])
        #expect(views.rootViews == [0, 1])
        let issued = views.views[0].participantData.createdCore[0]
        #expect(views.views[1].participantData.coreInputs.map(\.id) == [issued.id])
        #expect(views.index(of: [1, 0]) == 2)
        #expect(views.index(of: [1, 1]) == nil)
        #expect(views.ancestors(of: 2) == [1])
        #expect(views.descendants(of: 1) == [2])
    }

    @Test("a contract created in a subview and archived in the core is listed as such")
    func createdInSubviewArchivedInCore() throws {
        let views = try scenario("tokens: mint in a subview, burn in the core").views()
        #expect(
            outline(views) == [
                "0 exercise Account.MintAndBurn, exercise Token.Burn | informees=alice,bank confirming=alice,bank "
                    + "threshold=2",
                "  0.0 create Token | informees=alice confirming=alice threshold=1",
            ])
        let token = views.views[1].participantData.createdCore[0].id
        #expect(views.views[0].participantData.createdInSubviewArchivedInCore == [token])
        #expect(views.views[0].participantData.coreInputs.map(\.id).contains(token) == false)
    }

    @Test("VIP policy: only informees hosted on a VIP participant confirm, one approval suffices")
    func vipPolicy() throws {
        let transfer = scenario("iou: transfer")
        let views = try transfer.views(policy: .vip(vipHosted: [bank]))
        for view in views.views {
            #expect(view.commonData.confirmingParties == [bank])
            #expect(view.commonData.threshold == 1)
        }
        #expect(views.metadata.common.policy == .vip)
        #expect(views.rootHash != (try transfer.views()).rootHash, "the policy is part of the common metadata")

        let dvp = scenario("dvp: settle, bank and custodian apart")
        #expect(throws: ViewError.noVIPInformee(position: [0], informees: [alice, bob])) {
            try dvp.views(policy: .vip(vipHosted: [bank]))
        }
        let vip = try dvp.views(policy: .vip(vipHosted: [alice, bob, bank, custodian]))
        #expect(vip.views.map(\.commonData.threshold) == [1, 1, 1, 1, 1, 1, 1])
        #expect(vip.views[2].commonData.confirmingParties == [bob, custodian])
    }

    @Test("determinism: the same transaction and seed give byte-identical views and root hash", arguments: Scenario.all)
    func determinism(scenario: Scenario) throws {
        let first = try scenario.views()
        // Interpreted again, by an interpreter that loaded the package from
        // its canonical form, as a validator would.
        let uploaded = try Package(source: scenario.package.canonicalForm, file: "uploaded.weft")
        let again = try Interpreter(packages: [uploaded]).submit(
            scenario.transaction.roots.map { command(for: $0, in: scenario.transaction) }, actAs: scenario.actAs,
            seed: scenario.seed, contracts: scenario.contracts)
        let second = try TransactionViews(
            again, seed: scenario.seed, metadata: scenario.metadata, packages: [scenario.package])
        #expect(first.rootHash == second.rootHash)
        #expect(first.views == second.views)
        #expect(try first.fullTree().serializedBytes() == second.fullTree().serializedBytes())
        for index in first.views.indices {
            #expect(try first.viewTree(index).serializedBytes() == second.viewTree(index).serializedBytes())
        }
        #expect(try first.informeeTree().serializedBytes() == second.informeeTree().serializedBytes())

        // Another seed: other salts everywhere, so another root hash.
        let other = try TransactionViews(
            scenario.transaction, seed: seed(0xEE), metadata: scenario.metadata, packages: [scenario.package])
        #expect(other.rootHash != first.rootHash)
        for (a, b) in zip(first.views, other.views) {
            #expect(a.commonData.salt != b.commonData.salt)
            #expect(a.participantData.salt != b.participantData.salt)
            #expect(a.hash != b.hash)
        }
        #expect(
            Set(first.views.flatMap { [$0.commonData.salt, $0.participantData.salt] }).count == 2 * first.views.count)
    }

    /// The command that root `node` of `transaction` ran.
    private func command(for node: Int, in transaction: Transaction) -> Command {
        switch transaction.nodes[node].action {
        case .create(let create): .create(create.instance.template, argument: create.instance.argument)
        case .exercise(let exercise):
            .exercise(
                exercise.contract.template, contract: exercise.contractID, choice: exercise.choice,
                argument: exercise.argument)
        case .fetch: fatalError("a fetch is never a root")
        }
    }
}
