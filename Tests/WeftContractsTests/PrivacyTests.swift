// Privacy: for every party, the views it receives hold exactly the actions it
// is an informee of and their consequences (Daml's projection), and the tree
// it is shown carries nothing of the rest but hashes — checked on every
// scenario, on random IOU workflows, and on the DvP by name.

import Testing
import WeftContracts
import WeftWire

/// Node indexes of `index`'s subtree: it and its descendants.
private func subtree(_ transaction: Transaction, _ index: Int) -> [Int] {
    let position = transaction.position(of: index)
    return transaction.nodes.indices.filter { transaction.position(of: $0).starts(with: position) }
}

/// What a view shows that a hash would not: contract ids (as on the wire),
/// parties, texts.
private func secrets(of view: View) -> Set<String> {
    var result = Set(view.commonData.informees.map(\.id))
    func add(_ value: Value) {
        switch value {
        case .text(let text): result.insert(text)
        case .party(let party): result.insert(party.id)
        case .contractID(let id): result.insert(id.description)
        case .list(let values), .record(let values): values.forEach(add)
        default: break
        }
    }
    let data = view.participantData
    result.insert(data.action.contractID.description)
    if case .exercise(_, _, let choice, let argument, _, _, _) = data.action {
        result.insert(choice)
        add(argument)
    }
    for input in data.coreInputs {
        result.insert(input.id.description)
        add(input.contract.argument)
    }
    for output in data.createdCore {
        result.insert(output.id.description)
        add(output.contract.argument)
    }
    return result
}

private func contains(_ bytes: [UInt8], _ text: String) -> Bool {
    let needle = Array(text.utf8)
    guard !needle.isEmpty, needle.count <= bytes.count else { return false }
    return (0...(bytes.count - needle.count)).contains { bytes[$0..<($0 + needle.count)].elementsEqual(needle) }
}

/// Checks what `party` is shown of `views`, and returns the bytes of its tree.
@discardableResult
private func checkPrivacy(_ views: TransactionViews, for party: Party, _ context: String) throws -> [UInt8] {
    let transaction = views.transaction
    var expected = Set<Int>()
    for (index, node) in transaction.nodes.enumerated() where node.informees.contains(party) {
        expected.formUnion(subtree(transaction, index))
    }
    let visible = views.viewsFor(party: party)
    #expect(Set(visible.flatMap { views.coreNodes[$0] }) == expected, "\(context): \(party) sees other actions")
    // Each visible view's actions all have this party as an informee, or are
    // consequences of one that has.
    for index in visible {
        #expect(
            views.views[index].commonData.informees.contains(party)
                || views.ancestors(of: index).contains { views.views[$0].commonData.informees.contains(party) })
    }

    let tree = views.blinded(for: [party])
    #expect(try MerkleTree.rootHash(of: tree) == views.rootHash)
    #expect(try MerkleTree.revealedViews(in: tree) == visible.map { views.views[$0] })
    let bytes = try tree.serializedBytes()
    var shown = Set<String>()
    for index in visible { shown.formUnion(secrets(of: views.views[index])) }
    if case .unblinded? = tree.submitterMetadata?.node { shown.formUnion(views.metadata.submitter.actAs.map(\.id)) }
    let hidden = Set(views.views.indices).subtracting(visible)
    for index in hidden {
        for secret in secrets(of: views.views[index]).subtracting(shown) {
            let leaked = contains(bytes, secret)
            #expect(!leaked, "\(context): \(party)'s tree shows '\(secret)' of view \(index)")
        }
    }
    return bytes
}

@Suite("Privacy")
struct PrivacyTests {
    @Test("every party sees exactly the actions it is an informee of and their consequences", arguments: Scenario.all)
    func scenarios(scenario: Scenario) throws {
        let views = try scenario.views()
        for party in scenario.parties + [carol, dave] { try checkPrivacy(views, for: party, scenario.name) }
        // The mediator learns who is involved, never what they do.
        let informeeTree = try views.informeeTree().serializedBytes()
        let informees = Set(views.views.flatMap { $0.commonData.informees.map(\.id) })
        for view in views.views {
            for secret in secrets(of: view).subtracting(informees) {
                let leaked = contains(informeeTree, secret)
                #expect(!leaked, "\(scenario.name): the informee tree shows '\(secret)'")
            }
        }
    }

    @Test("DvP: the bank sees nothing of the security leg, the custodian nothing of the cash leg, neither the offer")
    func dvp() throws {
        let scenario = Scenario.all.first { $0.name == "dvp: settle, bank and custodian apart" }!
        let views = try scenario.views()
        let nodes = views.transaction.nodes
        func id(_ index: Int) -> String {
            switch nodes[index].action {
            case .create(let create): create.contractID.description
            case .exercise(let exercise): exercise.contractID.description
            case .fetch(let fetch): fetch.contractID.description
            }
        }
        // Nodes: 0 Settle (offer), 1 fetch Cash, 2 fetch Security,
        // 3 Transfer (cash), 4 new cash, 5 Deliver (security), 6 new security, 7 Settlement.
        let bankTree = try checkPrivacy(views, for: bank, "dvp")
        for secret in [custodian.id, "XS0000000001", id(0), id(2), id(6), id(7)] {
            let leaked = contains(bankTree, secret)
            #expect(!leaked, "the bank's tree shows '\(secret)'")
        }
        for secret in [id(1), id(4)] {
            let shown = contains(bankTree, secret)
            #expect(shown)
        }
        let custodianTree = try checkPrivacy(views, for: custodian, "dvp")
        for secret in [bank.id, id(0), id(1), id(4), id(7)] {
            let leaked = contains(custodianTree, secret)
            #expect(!leaked, "the custodian's tree shows '\(secret)'")
        }
        for secret in ["XS0000000001", id(2), id(6)] {
            let shown = contains(custodianTree, secret)
            #expect(shown)
        }
        // The bank's tree: the cash views revealed, the rest as hashes that
        // still lead to the root.
        let bankViews = try MerkleTree.revealedViews(in: views.blinded(for: [bank])).map(\.position)
        #expect(bankViews == [[0, 0], [0, 2], [0, 2, 0]])
        let buyerViews = try MerkleTree.revealedViews(in: views.blinded(for: [alice])).map(\.position)
        #expect(buyerViews.count == 7)
    }

    @Test("random IOU workflows: every party's views are its projection", arguments: [31, 32, 33] as [UInt64])
    func randomWorkflows(generatorSeed: UInt64) throws {
        var random = SeededGenerator(seed: generatorSeed)
        var ledger = try Ledger(file: "iou.weft")
        let parties = [bank, alice, bob, carol]
        for owner in parties.dropFirst() {
            _ = try ledger.create(
                "Iou",
                ["issuer": .party(bank), "owner": .party(owner), "currency": .text("USD"), "amount": decimal("1000")],
                actAs: [bank])
        }
        var checked = 0
        for round in 0..<100 {
            let active = ledger.store.active.sorted { $0.key < $1.key }
            var commands: [Command] = []
            var actAs: [Party] = []
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let (id, contract) = active.randomElement(using: &random)!
                guard case .record(let fields) = contract.argument, case .party(let owner) = fields[1] else { continue }
                actAs.append(owner)
                switch Int.random(in: 0..<4, using: &random) {
                case 0:
                    commands.append(
                        try ledger.exerciseCommand(
                            "Iou", id, "Transfer", ["newOwner": .party(parties.randomElement(using: &random)!)]))
                case 1:
                    commands.append(try ledger.exerciseCommand("Iou", id, "Split", ["splitAmount": decimal("1.5")]))
                case 2:
                    let other = active.randomElement(using: &random)!.key
                    commands.append(try ledger.exerciseCommand("Iou", id, "Merge", ["other": .contractID(other)]))
                default:
                    commands.append(
                        try ledger.createCommand(
                            "Iou",
                            [
                                "issuer": .party(owner), "owner": .party(parties.randomElement(using: &random)!),
                                "currency": .text("EUR\(round)X"), "amount": decimal("3"),
                            ]))
                }
            }
            guard let scenario = try? ledger.scenario("random \(round)", commands, actAs: actAs, seedByte: UInt8(round))
            else { continue }
            let views = try scenario.views()
            for party in parties { try checkPrivacy(views, for: party, "round \(round)") }
            ledger.store.commit(scenario.transaction)
            checked += 1
        }
        #expect(checked >= 30, "too few of the random transactions ran")
    }
}
