// The interpreter on the example packages: the trees it builds, Daml's
// authorization rules, informees and confirming parties, contract ids, and
// the errors it gives.

import Testing
import WeftContracts

/// The create at node `index`.
private func created(_ transaction: Transaction, _ index: Int) throws -> Create {
    guard case .create(let create) = transaction.nodes[index].action else {
        throw ContractError.invalidCommand("node \(index) is not a create")
    }
    return create
}

/// The exercise at node `index`.
private func exercised(_ transaction: Transaction, _ index: Int) throws -> Exercise {
    guard case .exercise(let exercise) = transaction.nodes[index].action else {
        throw ContractError.invalidCommand("node \(index) is not an exercise")
    }
    return exercise
}

/// A compact picture of a tree: one line per node, indented by depth.
private func outline(_ transaction: Transaction) -> [String] {
    transaction.nodes.indices.map { index in
        let node = transaction.nodes[index]
        let indent = String(repeating: "  ", count: transaction.position(of: index).count - 1)
        let informees = node.informees.map { String($0.id.prefix(while: { $0 != ":" })) }.joined(separator: ",")
        let confirming = node.confirmingParties.map { String($0.id.prefix(while: { $0 != ":" })) }.joined(
            separator: ",")
        let what: String
        switch node.action {
        case .create(let create): what = "create \(create.instance.template.name)"
        case .exercise(let exercise):
            what =
                "exercise \(exercise.contract.template.name).\(exercise.choice)\(exercise.consuming ? "" : " (nonconsuming)")"
        case .fetch(let fetch): what = "fetch \(fetch.contract.template.name)"
        }
        return indent + what + " informees=" + informees + " confirming=" + confirming
    }
}

/// The error `body` throws, as a `ContractError`.
private func error(_ body: () throws -> Void) -> ContractError? {
    do {
        try body()
        return nil
    } catch let error as ContractError {
        return error
    } catch {
        return nil
    }
}

@Suite("Interpreter: IOU")
struct IouInterpreterTests {
    @Test("the store keeps each contract's creation seed, which authenticates its data against its id")
    func creationSeeds() throws {
        var ledger = try IouLedger()
        let id = try ledger.issue(bank, alice, "100")
        let creation = try #require(ledger.store.creationSeed(of: id))
        let contract = try #require(ledger.store.contract(id))
        #expect(id.authenticates(contract, seed: creation))
        #expect(ContractID(seed: creation, contract: contract) == id)
        let forged = ContractInstance(
            template: contract.template,
            argument: .record([.party(bank), .party(alice), .text("USD"), decimal("1000")]),
            signatories: contract.signatories, observers: contract.observers)
        #expect(!id.authenticates(forged, seed: creation))
        let transfer = try ledger.interpreter.submit(
            [try ledger.exercise(id, "Transfer", ["newOwner": .party(bob)])], actAs: [alice], seed: seed(50),
            contracts: ledger.store)
        #expect(transfer.inputContracts.map(\.creationSeed) == [creation])
        ledger.store.commit(transfer)
        #expect(ledger.store.creationSeed(of: id) == nil, "archived contracts leave the store with their seeds")
    }

    @Test("a fetch re-run as the root of a transaction: its actors are the authorizers that are stakeholders")
    func fetchAsRoot() throws {
        var ledger = try IouLedger()
        let id = try ledger.issue(bank, alice, "100")
        let fetched = try ledger.interpreter.interpretFetch(
            ledger.iou, contract: id, authorizers: [alice, carol], contracts: ledger.store)
        #expect(outline(fetched) == ["fetch Iou informees=alice,bank confirming=alice,bank"])
        let failure = error {
            _ = try ledger.interpreter.interpretFetch(
                ledger.iou, contract: id, authorizers: [carol], contracts: ledger.store)
        }
        guard case .runtime(.fetchNotAuthorized, let context)? = failure else {
            Issue.record("expected an unauthorized fetch, got \(String(describing: failure))")
            return
        }
        #expect(context.position == [0])
    }

    @Test("the issuer issues an IOU: one create, signed by the issuer, seen by both")
    func issue() throws {
        var ledger = try IouLedger()
        let transaction = try ledger.run([try ledger.issueCommand(bank, alice, "100")], actAs: [bank])
        #expect(transaction.roots == [0])
        #expect(outline(transaction) == ["create Iou informees=alice,bank confirming=bank"])
        let create = try created(transaction, 0)
        #expect(create.instance.signatories == [bank])
        #expect(create.instance.observers == [alice])
        #expect(transaction.inputContracts.isEmpty)
        #expect(ledger.store.active[create.contractID] == create.instance)
    }

    @Test("the owner cannot issue an IOU: the create lacks the issuer's authority")
    func issueByOwnerIsUnauthorized() throws {
        var ledger = try IouLedger()
        let failure = error { _ = try ledger.run([try ledger.issueCommand(bank, alice, "100")], actAs: [alice]) }
        #expect(
            failure?.description
                == "in template Iou, at node 0: create of Iou is not authorized: it needs the authority of its "
                + "signatories [bank::1220aa] but only [alice::1220bb] authorize it here (missing: bank::1220aa). At "
                + "the root the authorizers are the submitting parties; inside a choice they are the contract's "
                + "signatories and the choice's controllers")
    }

    @Test("transfer: a consuming exercise whose child creates the new IOU with the issuer's authority")
    func transfer() throws {
        var ledger = try IouLedger()
        let iou = try ledger.issue(bank, alice, "100")
        let transaction = try ledger.run(
            [try ledger.exercise(iou, "Transfer", ["newOwner": .party(bob)])], actAs: [alice])
        #expect(
            outline(transaction) == [
                "exercise Iou.Transfer informees=alice,bank confirming=alice,bank",
                "  create Iou informees=bank,bob confirming=bank",
            ])
        let exercise = try exercised(transaction, 0)
        let newIou = try created(transaction, 1)
        #expect(exercise.actingParties == [alice])
        #expect(exercise.children == [1])
        #expect(exercise.result == .contractID(newIou.contractID))
        #expect(transaction.position(of: 1) == [0, 0])
        #expect(transaction.inputContracts.map(\.id) == [iou])
        #expect(transaction.consumedContracts == [iou])
        #expect(ledger.store.active[iou] == nil)
        #expect(ledger.store.active[newIou.contractID]?.observers == [bob])
    }

    @Test("only the owner may transfer: the wrong controller is named")
    func transferByWrongController() throws {
        var ledger = try IouLedger()
        let iou = try ledger.issue(bank, alice, "100")
        let failure = error {
            _ = try ledger.run([try ledger.exercise(iou, "Transfer", ["newOwner": .party(bob)])], actAs: [bob])
        }
        #expect(
            failure?.description
                == "in template Iou, choice Transfer, at node 0: exercise of Transfer on Iou is not authorized: it needs "
                + "the authority of its controllers [alice::1220bb] but only [bob::1220cc] authorize it here (missing: "
                + "alice::1220bb). At the root the authorizers are the submitting parties; inside a choice they are the "
                + "contract's signatories and the choice's controllers")
    }

    @Test("split: two new IOUs whose amounts add up; the result lists both ids")
    func split() throws {
        var ledger = try IouLedger()
        let iou = try ledger.issue(bank, alice, "100")
        let transaction = try ledger.run(
            [try ledger.exercise(iou, "Split", ["splitAmount": decimal("30.25")])], actAs: [alice])
        #expect(outline(transaction).count == 3)
        let first = try created(transaction, 1)
        let rest = try created(transaction, 2)
        #expect(first.instance.argument == .record([.party(bank), .party(alice), .text("USD"), decimal("30.25")]))
        #expect(rest.instance.argument == .record([.party(bank), .party(alice), .text("USD"), decimal("69.75")]))
        #expect(
            try exercised(transaction, 0).result
                == .list([.contractID(first.contractID), .contractID(rest.contractID)]))
        #expect(first.contractID != rest.contractID)
    }

    @Test("split more than the amount: the assertion's message, template, choice, node and line")
    func splitTooMuch() throws {
        var ledger = try IouLedger()
        let iou = try ledger.issue(bank, alice, "100")
        let failure = error {
            _ = try ledger.run([try ledger.exercise(iou, "Split", ["splitAmount": decimal("100")])], actAs: [alice])
        }
        let location = try exampleLocation("iou.weft", "assert splitAmount")
        #expect(
            failure?.description
                == "in template Iou, choice Split, at node 0 (\(location)): assertion failed: the split amount must be "
                + "more than 0 and less than the amount")
    }

    @Test("merge: fetch the other IOU, archive it, create the sum")
    func merge() throws {
        var ledger = try IouLedger()
        let a = try ledger.issue(bank, alice, "100")
        let b = try ledger.issue(bank, alice, "0.5")
        let transaction = try ledger.run([try ledger.exercise(a, "Merge", ["other": .contractID(b)])], actAs: [alice])
        #expect(
            outline(transaction) == [
                "exercise Iou.Merge informees=alice,bank confirming=alice,bank",
                "  fetch Iou informees=alice,bank confirming=alice,bank",
                "  exercise Iou.Archive informees=alice,bank confirming=bank",
                "  create Iou informees=alice,bank confirming=bank",
            ])
        #expect(
            try created(transaction, 3).instance.argument
                == .record([.party(bank), .party(alice), .text("USD"), decimal("100.5")]))
        #expect(transaction.consumedContracts == [a, b])
        #expect(transaction.inputContracts.map(\.id) == [a, b])
        #expect(ledger.store.active.count == 1)
    }

    @Test("merging an IOU with itself: the consuming exercise archived it first")
    func mergeWithItself() throws {
        var ledger = try IouLedger()
        let a = try ledger.issue(bank, alice, "100")
        let failure = error {
            _ = try ledger.run([try ledger.exercise(a, "Merge", ["other": .contractID(a)])], actAs: [alice])
        }
        let location = try exampleLocation("iou.weft", "let that = fetch other", at: "fetch")
        #expect(
            failure?.description
                == "in template Iou, choice Merge, at node 0.0 (\(location)): contract \(a) was archived earlier in this "
                + "transaction, by the consuming exercise at node 0")
    }

    @Test("spending one IOU twice in one transaction fails at the second command")
    func doubleSpend() throws {
        var ledger = try IouLedger()
        let iou = try ledger.issue(bank, alice, "100")
        let failure = error {
            _ = try ledger.run(
                [
                    try ledger.exercise(iou, "Transfer", ["newOwner": .party(bob)]),
                    try ledger.exercise(iou, "Transfer", ["newOwner": .party(carol)]),
                ], actAs: [alice])
        }
        #expect(
            failure
                == .runtime(
                    .contractConsumed(iou, consumedAt: [0]),
                    RuntimeContext(template: "Iou", choice: "Transfer", position: [1], location: nil)))
    }

    @Test("an archived or unknown contract is not found")
    func unknownContract() throws {
        var ledger = try IouLedger()
        let iou = try ledger.issue(bank, alice, "100")
        _ = try ledger.run([try ledger.exercise(iou, "Transfer", ["newOwner": .party(bob)])], actAs: [alice])
        let failure = error {
            _ = try ledger.run([try ledger.exercise(iou, "Transfer", ["newOwner": .party(bob)])], actAs: [alice])
        }
        #expect(
            failure?.description
                == "in template Iou, choice Transfer, at node 0: contract \(iou) is unknown or no longer active (the "
                + "contract lookup does not have it)")
    }

    @Test("an IOU of zero fails its ensure precondition")
    func precondition() throws {
        var ledger = try IouLedger()
        let failure = error { _ = try ledger.run([try ledger.issueCommand(bank, alice, "0")], actAs: [bank]) }
        #expect(
            failure?.description
                == "in template Iou, at node 0: the ensure precondition of Iou is false for {'bank::1220aa', "
                + "'alice::1220bb', \"USD\", 0.0}")
    }

    @Test("a Decimal overflow names the operation and its source location")
    func decimalOverflow() throws {
        var ledger = try IouLedger()
        let huge = "9999999999999999999999999999"
        let a = try ledger.issue(bank, alice, huge)
        let b = try ledger.issue(bank, alice, huge)
        let failure = error {
            _ = try ledger.run([try ledger.exercise(a, "Merge", ["other": .contractID(b)])], actAs: [alice])
        }
        let plus = try exampleLocation("iou.weft", "amount = amount + that.amount", at: "+ that")
        #expect(
            failure?.description
                == "in template Iou, choice Merge, at node 0 (\(plus)): Decimal overflow in \(huge).0 + \(huge).0")
    }

    @Test("commands that do not fit the package are refused before interpretation")
    func invalidCommands() throws {
        let ledger = try IouLedger()
        let wrongType = Command.create(
            ledger.iou, argument: .record([.party(bank), .party(alice), .text("USD"), .int(5)]))
        #expect(
            error {
                _ = try ledger.interpreter.submit([wrongType], actAs: [bank], seed: seed(1), contracts: ledger.store)
            }
                == .invalidCommand(
                    "the argument of a create of Iou does not fit: field 'amount': expected a Decimal, found 5"))
        let iou = ContractID(hex: String(repeating: "ab", count: 32))!
        let noChoice = Command.exercise(ledger.iou, contract: iou, choice: "Transfr", argument: .record([]))
        #expect(
            error {
                _ = try ledger.interpreter.submit([noChoice], actAs: [alice], seed: seed(1), contracts: ledger.store)
            }
                == .invalidCommand(
                    "template Iou has no choice 'Transfr'; did you mean 'Transfer'? (its choices: Transfer, Split, Merge, Archive)"
                ))
        #expect(
            error { _ = try ledger.package.record("Iou", ["issuer": .party(bank)]) }
                == .invalidCommand("template Iou needs field 'owner'"))
        #expect(
            error { _ = try Party("alice smith") }
                == .invalidParty(
                    id: "alice smith", reason: "a party id has only ASCII letters, digits and ':', '_', '-', '.'"))
    }

    @Test("contract ids derive from the seed: same seed same ids, other seed other ids")
    func contractIDs() throws {
        let ledger = try IouLedger()
        let command = try ledger.issueCommand(bank, alice, "1")
        let a = try ledger.interpreter.submit(
            [command, command], actAs: [bank], seed: seed(7), contracts: ledger.store)
        let b = try ledger.interpreter.submit(
            [command, command], actAs: [bank], seed: seed(7), contracts: ledger.store)
        let c = try ledger.interpreter.submit(
            [command, command], actAs: [bank], seed: seed(8), contracts: ledger.store)
        let ids = { (t: Transaction) in try [created(t, 0).contractID, created(t, 1).contractID] }
        #expect(try ids(a) == ids(b))
        #expect(try ids(a)[0] != ids(a)[1], "two identical creates at different positions get different ids")
        #expect(try Set(ids(a)).isDisjoint(with: ids(c)))
        #expect(a.nodes[0].seed != a.nodes[1].seed)
    }
}

@Suite("Interpreter: propose and accept")
struct ProposeAcceptTests {
    let package: Package
    let interpreter: Interpreter

    init() throws {
        package = try examplePackage("propose-accept.weft")
        interpreter = Interpreter(packages: [package])
    }

    func proposal() throws -> Command {
        .create(
            try package.templateID("Proposal"),
            argument: try package.record(
                "Proposal",
                [
                    "proposer": .party(alice), "counterparty": .party(bob), "terms": .text("one bicycle"),
                    "price": decimal("250"),
                ]))
    }

    @Test("accepting a proposal creates an agreement signed by both")
    func accept() throws {
        var store = ContractStore()
        let proposed = try interpreter.submit([try proposal()], actAs: [alice], seed: seed(1), contracts: store)
        store.commit(proposed)
        let proposalID = try created(proposed, 0).contractID
        let accept = Command.exercise(
            try package.templateID("Proposal"), contract: proposalID, choice: "Accept", argument: .record([]))
        let accepted = try interpreter.submit([accept], actAs: [bob], seed: seed(2), contracts: store)
        #expect(
            outline(accepted) == [
                "exercise Proposal.Accept informees=alice,bob confirming=alice,bob",
                "  create Agreement informees=alice,bob confirming=alice,bob",
            ])
        let agreement = try created(accepted, 1)
        #expect(agreement.instance.signatories == [alice, bob])
        #expect(agreement.instance.observers == [])
        #expect(try exercised(accepted, 0).result == .contractID(agreement.contractID))
    }

    @Test("nobody signs an agreement alone")
    func agreementNeedsBoth() throws {
        let create = Command.create(
            try package.templateID("Agreement"),
            argument: try package.record(
                "Agreement",
                ["first": .party(alice), "second": .party(bob), "terms": .text("x"), "price": decimal("1")]))
        let failure = error {
            _ = try interpreter.submit([create], actAs: [alice], seed: seed(1), contracts: ContractStore())
        }
        guard
            case .runtime(.missingAuthorization(_, .signatories, let required, _, let missing), let context)? = failure
        else {
            Issue.record("expected missing authorization, got \(String(describing: failure))")
            return
        }
        #expect(required == [alice, bob])
        #expect(missing == [bob])
        #expect(context == RuntimeContext(template: "Agreement", choice: nil, position: [0], location: nil))
    }

    @Test("a proposal cannot be accepted by the proposer")
    func proposerCannotAccept() throws {
        var store = ContractStore()
        let proposed = try interpreter.submit([try proposal()], actAs: [alice], seed: seed(1), contracts: store)
        store.commit(proposed)
        let accept = Command.exercise(
            try package.templateID("Proposal"), contract: try created(proposed, 0).contractID, choice: "Accept",
            argument: .record([]))
        let failure = error { _ = try interpreter.submit([accept], actAs: [alice], seed: seed(2), contracts: store) }
        guard case .runtime(.missingAuthorization(_, .controllers, _, _, let missing), _)? = failure else {
            Issue.record("expected missing authorization, got \(String(describing: failure))")
            return
        }
        #expect(missing == [bob])
    }

    @Test("an IOU is not a proposal: the wrong template is named")
    func wrongTemplate() throws {
        var ledger = try IouLedger()
        let iou = try ledger.issue(bank, alice, "5")
        let interpreter = Interpreter(packages: [ledger.package, package])
        let accept = Command.exercise(
            try package.templateID("Proposal"), contract: iou, choice: "Accept", argument: .record([]))
        let failure = error {
            _ = try interpreter.submit([accept], actAs: [bob], seed: seed(2), contracts: ledger.store)
        }
        #expect(
            failure?.description
                == "in template Proposal, choice Accept, at node 0: contract \(iou) is an Iou (package "
                + "\(ledger.package.id)), not a Proposal")
    }
}

@Suite("Interpreter: delivery versus payment")
struct DvpTests {
    let package: Package
    let interpreter: Interpreter
    var store = ContractStore()
    var cash: ContractID!
    var security: ContractID!
    var offer: ContractID!

    init() throws {
        package = try examplePackage("dvp.weft")
        interpreter = Interpreter(packages: [package])
        cash = try create(
            "Cash", ["bank": .party(bank), "owner": .party(alice), "amount": decimal("1000")], by: [bank], seed: 1)
        security = try create(
            "Security",
            ["custodian": .party(bank), "holder": .party(bob), "isin": .text("XS0000000001"), "quantity": .int(10)],
            by: [bank], seed: 2)
        offer = try makeOffer(price: "1000", payment: cash)
    }

    mutating func create(_ template: String, _ fields: KeyValuePairs<String, Value>, by: [Party], seed byte: UInt8)
        throws
        -> ContractID
    {
        let command = Command.create(try package.templateID(template), argument: try package.record(template, fields))
        let transaction = try interpreter.submit([command], actAs: by, seed: seed(byte), contracts: store)
        store.commit(transaction)
        return try created(transaction, 0).contractID
    }

    mutating func makeOffer(price: String, payment: ContractID) throws -> ContractID {
        try create(
            "Offer",
            [
                "buyer": .party(alice), "seller": .party(bob), "bank": .party(bank), "custodian": .party(bank),
                "isin": .text("XS0000000001"), "quantity": .int(10), "price": decimal(price),
                "payment": .contractID(payment),
            ], by: [alice], seed: 3)
    }

    func settle(_ offer: ContractID, delivery: ContractID) throws -> Command {
        .exercise(
            try package.templateID("Offer"), contract: offer, choice: "Settle",
            argument: try package.arguments("Offer", "Settle", ["delivery": .contractID(delivery)]))
    }

    @Test("settlement nests exercises whose informees differ: the bank never sees the offer")
    func settle() throws {
        let transaction = try interpreter.submit(
            [try settle(offer, delivery: security)], actAs: [bob], seed: seed(9), contracts: store)
        #expect(
            outline(transaction) == [
                "exercise Offer.Settle informees=alice,bob confirming=alice,bob",
                "  fetch Cash informees=alice,bank confirming=alice,bank",
                "  fetch Security informees=bank,bob confirming=bank,bob",
                "  exercise Cash.Transfer informees=alice,bank confirming=alice,bank",
                "    create Cash informees=bank,bob confirming=bank",
                "  exercise Security.Deliver informees=bank,bob confirming=bank,bob",
                "    create Security informees=alice,bank confirming=bank",
                "  create Settlement informees=alice,bob confirming=alice,bob",
            ])
        #expect(!transaction.nodes[0].informees.contains(bank))
        #expect(transaction.position(of: 6) == [0, 3, 0])
        #expect(transaction.inputContracts.map(\.id) == [offer, cash, security])
        #expect(Set(transaction.consumedContracts) == [offer, cash, security])
        let settlement = try created(transaction, 7)
        let paid = try created(transaction, 4).contractID
        let delivered = try created(transaction, 6).contractID
        #expect(
            settlement.instance.argument
                == .record([.party(alice), .party(bob), .contractID(paid), .contractID(delivered)]))
        #expect(settlement.instance.signatories == [alice, bob])
    }

    @Test("a subview re-interpreted alone, from its node seed, gives the same action and contract ids")
    func reinterpretSubview() throws {
        let transaction = try interpreter.submit(
            [try settle(offer, delivery: security)], actAs: [bob], seed: seed(9), contracts: store)
        let transfer = try exercised(transaction, 3)
        var inputs = ContractStore()
        for input in transaction.inputContracts { inputs.insert(input.id, input.contract) }
        let command = Command.exercise(
            transfer.contract.template, contract: transfer.contractID, choice: transfer.choice,
            argument: transfer.argument)
        let again = try interpreter.interpret(
            command, nodeSeed: try #require(transaction.nodes[3].seed), authorizers: [alice, bob], contracts: inputs)
        #expect(again.canonicalBytes(ofNode: 0) == transaction.canonicalBytes(ofNode: 3))
        #expect(try created(again, 1) == created(transaction, 4))
    }

    @Test("settling with cash that is not the price: the assertion names Offer, Settle and the line")
    func wrongPrice() throws {
        var dvp = self
        let cheap = try dvp.makeOffer(price: "999", payment: cash)
        let failure = error {
            _ = try dvp.interpreter.submit(
                [try dvp.settle(cheap, delivery: security)], actAs: [bob], seed: seed(9), contracts: dvp.store)
        }
        let location = try exampleLocation("dvp.weft", "assert cash.bank")
        #expect(
            failure?.description
                == "in template Offer, choice Settle, at node 0 (\(location)): assertion failed: the allocated cash is "
                + "not the price, held by the buyer at the bank")
    }

    @Test("an offer that points at a security instead of cash: wrong template at the fetch")
    func wrongTemplateInsideAChoice() throws {
        var dvp = self
        let confused = try dvp.makeOffer(price: "1000", payment: security)
        let failure = error {
            _ = try dvp.interpreter.submit(
                [try dvp.settle(confused, delivery: security)], actAs: [bob], seed: seed(9), contracts: dvp.store)
        }
        guard case .runtime(.wrongTemplate(let id, let expected, let actual), let context)? = failure else {
            Issue.record("expected a wrong template error, got \(String(describing: failure))")
            return
        }
        #expect(id == security)
        #expect(expected == "Cash")
        #expect(actual.name == "Security")
        #expect(context.template == "Offer")
        #expect(context.choice == "Settle")
        #expect(context.position == [0, 0])
        #expect(
            context.location?.description == (try exampleLocation("dvp.weft", "let cash = fetch payment", at: "fetch")))
    }

    @Test("a third party cannot settle: Settle's controller is the seller")
    func strangerCannotSettle() throws {
        let failure = error {
            _ = try interpreter.submit(
                [try settle(offer, delivery: security)], actAs: [carol], seed: seed(9), contracts: store)
        }
        guard case .runtime(.missingAuthorization(let action, .controllers, _, _, let missing), _)? = failure else {
            Issue.record("expected missing authorization, got \(String(describing: failure))")
            return
        }
        #expect(action == "exercise of Settle on Offer")
        #expect(missing == [bob])
    }
}
