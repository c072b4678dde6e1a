// Transactions of every example package, and of a test package that
// exercises the corners of view decomposition, for the view, Merkle tree,
// conformance and privacy tests.

import Testing
import WeftContracts

let custodian = party("csd::1220ee")
let dave = party("dave::1220ff")

/// A ledger of one package: runs commands with fresh seeds and commits them.
struct Ledger {
    let package: Package
    let interpreter: Interpreter
    var store = ContractStore()
    var nextSeed: UInt8 = 100

    init(_ package: Package) {
        self.package = package
        interpreter = Interpreter(packages: [package])
    }

    init(file: String) throws { self.init(try examplePackage(file)) }

    func createCommand(_ template: String, _ fields: KeyValuePairs<String, Value>) throws -> Command {
        .create(try package.templateID(template), argument: try package.record(template, fields))
    }

    func exerciseCommand(
        _ template: String, _ id: ContractID, _ choice: String, _ arguments: KeyValuePairs<String, Value> = [:]
    ) throws -> Command {
        .exercise(
            try package.templateID(template), contract: id, choice: choice,
            argument: try package.arguments(template, choice, arguments))
    }

    /// Runs `commands` and commits the result.
    mutating func run(_ commands: [Command], actAs: [Party]) throws -> (Transaction, TransactionSeed) {
        let transactionSeed = seed(nextSeed)
        nextSeed &+= 1
        let transaction = try interpreter.submit(commands, actAs: actAs, seed: transactionSeed, contracts: store)
        store.commit(transaction)
        return (transaction, transactionSeed)
    }

    /// Creates one contract and returns its id.
    mutating func create(_ template: String, _ fields: KeyValuePairs<String, Value>, actAs: [Party]) throws
        -> ContractID
    {
        let (transaction, _) = try run([try createCommand(template, fields)], actAs: actAs)
        guard case .create(let create) = transaction.nodes[0].action else { fatalError("not a create") }
        return create.contractID
    }

    /// A scenario of `commands`, interpreted but not committed.
    func scenario(_ name: String, _ commands: [Command], actAs: [Party], seedByte: UInt8 = 9) throws -> Scenario {
        let transactionSeed = seed(seedByte)
        return Scenario(
            name: name, package: package,
            transaction: try interpreter.submit(commands, actAs: actAs, seed: transactionSeed, contracts: store),
            seed: transactionSeed, actAs: actAs, contracts: store)
    }
}

/// One transaction to cut into views, with what it was interpreted from.
struct Scenario: Sendable, CustomTestStringConvertible {
    let name: String
    let package: Package
    let transaction: Transaction
    let seed: TransactionSeed
    let actAs: [Party]
    /// The active contracts it was interpreted against.
    let contracts: ContractStore

    var testDescription: String { name }

    var metadata: TransactionMetadata {
        TransactionMetadata(
            submitter: SubmitterMetadata(
                actAs: actAs, submittingParticipant: "participant1::1220ab", commandID: "command-" + name,
                applicationID: "tests", submissionID: "submission-1", maxSequencingTime: 1_800_000_000_000_000,
                deduplicationPeriod: 600_000_000),
            common: CommonMetadata(
                domain: "domain1::1220ff", mediator: "MED::mediator1::1220ff", uuid: Array(0..<16)),
            participant: ParticipantMetadata(
                ledgerTime: 1_700_000_000_000_000, submissionTime: 1_700_000_000_000_001, workflowID: "workflow"))
    }

    func views(policy: ConfirmationPolicy = .signatory) throws -> TransactionViews {
        try TransactionViews(transaction, seed: seed, metadata: metadata, policy: policy, packages: [package])
    }

    /// Every party the transaction's nodes name as an informee.
    var parties: [Party] {
        Array(Set(transaction.nodes.flatMap(\.informees))).sorted()
    }

    static let tokensSource = """
        package tokens;

        // An operator sees every token its accounts mint and burn, though
        // tokens themselves are signed by their owners alone: the mint is a
        // subview (informees: the owner), the burn is in the account's view
        // (informees: owner and operator, a choice observer).
        template Account {
            owner: Party;
            operator: Party;
            signatory owner, operator;

            nonconsuming choice MintAndBurn(amount: Int)
                controller owner
            {
                let token = create Token { owner = owner, operator = operator, amount = amount };
                exercise token Burn;
            }
        }

        template Token {
            owner: Party;
            operator: Party;
            amount: Int;
            signatory owner;
            ensure amount > 0;

            choice Burn()
                controller owner
                observer operator
            {
            }
        }
        """

    /// Transactions of every example package and of the tokens package.
    static let all: [Scenario] = {
        do {
            return try iou() + proposals() + dvp() + tokens()
        } catch {
            fatalError("the scenarios do not run: \(error)")
        }
    }()

    static func iou() throws -> [Scenario] {
        var ledger = try Ledger(file: "iou.weft")
        func issue(_ owner: Party, _ amount: String) throws -> Command {
            try ledger.createCommand(
                "Iou",
                ["issuer": .party(bank), "owner": .party(owner), "currency": .text("USD"), "amount": decimal(amount)])
        }
        let first = try ledger.create(
            "Iou",
            ["issuer": .party(bank), "owner": .party(alice), "currency": .text("USD"), "amount": decimal("100")],
            actAs: [bank])
        let second = try ledger.create(
            "Iou",
            ["issuer": .party(bank), "owner": .party(alice), "currency": .text("USD"), "amount": decimal("25.5")],
            actAs: [bank])
        // The id of a root create depends only on the seed and its index, so
        // a later command of the same transaction can name it.
        let issued = try ledger.scenario("iou: issue", [try issue(carol, "7")], actAs: [bank], seedByte: 21)
        guard case .create(let fresh) = issued.transaction.nodes[0].action else { fatalError("not a create") }
        return [
            issued,
            try ledger.scenario(
                "iou: transfer", [try ledger.exerciseCommand("Iou", first, "Transfer", ["newOwner": .party(bob)])],
                actAs: [alice]),
            try ledger.scenario(
                "iou: split", [try ledger.exerciseCommand("Iou", first, "Split", ["splitAmount": decimal("30")])],
                actAs: [alice]),
            try ledger.scenario(
                "iou: merge", [try ledger.exerciseCommand("Iou", first, "Merge", ["other": .contractID(second)])],
                actAs: [alice]),
            try ledger.scenario(
                "iou: issue and transfer in one transaction",
                [
                    try issue(carol, "7"),
                    try ledger.exerciseCommand("Iou", fresh.contractID, "Transfer", ["newOwner": .party(alice)]),
                ], actAs: [bank, carol], seedByte: 21),
        ]
    }

    static func proposals() throws -> [Scenario] {
        var ledger = try Ledger(file: "propose-accept.weft")
        let proposalFields: KeyValuePairs<String, Value> = [
            "proposer": .party(alice), "counterparty": .party(bob), "terms": .text("paint the house"),
            "price": decimal("1200.50"),
        ]
        let proposal = try ledger.create("Proposal", proposalFields, actAs: [alice])
        let agreement = try ledger.create(
            "Agreement",
            ["first": .party(alice), "second": .party(bob), "terms": .text("mow the lawn"), "price": decimal("40")],
            actAs: [alice, bob])
        return [
            try ledger.scenario(
                "proposals: propose", [try ledger.createCommand("Proposal", proposalFields)], actAs: [alice]),
            try ledger.scenario(
                "proposals: accept", [try ledger.exerciseCommand("Proposal", proposal, "Accept")], actAs: [bob]),
            try ledger.scenario(
                "proposals: reject",
                [try ledger.exerciseCommand("Proposal", proposal, "Reject", ["reason": .text("too dear")])],
                actAs: [bob]),
            try ledger.scenario(
                "proposals: terminate",
                [try ledger.exerciseCommand("Agreement", agreement, "Terminate", ["by": .party(bob)])], actAs: [bob]),
        ]
    }

    /// The settlement of docs/contracts.md §5, with the custodian apart from
    /// the bank or the bank keeping both.
    static func dvp() throws -> [Scenario] {
        try [
            dvp(custodian: custodian, name: "dvp: settle, bank and custodian apart"),
            dvp(custodian: bank, name: "dvp: settle, one bank"),
        ]
    }

    static func dvp(custodian: Party, name: String) throws -> Scenario {
        var ledger = try Ledger(file: "dvp.weft")
        let cash = try ledger.create(
            "Cash", ["bank": .party(bank), "owner": .party(alice), "amount": decimal("1000")], actAs: [bank])
        let security = try ledger.create(
            "Security",
            [
                "custodian": .party(custodian), "holder": .party(bob), "isin": .text("XS0000000001"),
                "quantity": .int(10),
            ], actAs: [custodian])
        let offer = try ledger.create(
            "Offer",
            [
                "buyer": .party(alice), "seller": .party(bob), "bank": .party(bank), "custodian": .party(custodian),
                "isin": .text("XS0000000001"), "quantity": .int(10), "price": decimal("1000"),
                "payment": .contractID(cash),
            ], actAs: [alice])
        return try ledger.scenario(
            name, [try ledger.exerciseCommand("Offer", offer, "Settle", ["delivery": .contractID(security)])],
            actAs: [bob])
    }

    static func tokens() throws -> [Scenario] {
        var ledger = Ledger(try Package(source: tokensSource, file: "tokens.weft"))
        let account = try ledger.create(
            "Account", ["owner": .party(alice), "operator": .party(bank)], actAs: [alice, bank])
        return [
            try ledger.scenario(
                "tokens: mint in a subview, burn in the core",
                [try ledger.exerciseCommand("Account", account, "MintAndBurn", ["amount": .int(5)])], actAs: [alice])
        ]
    }
}

/// `name` of a party without its fingerprint (`alice::1220bb` → `alice`).
func short(_ party: Party) -> String { String(party.id.prefix { $0 != ":" }) }

/// A compact picture of views: one line per view, indented by depth.
func outline(_ views: TransactionViews) -> [String] {
    views.views.indices.map { index in
        let view = views.views[index]
        let indent = String(repeating: "  ", count: view.position.count - 1)
        let nodes = views.coreNodes[index].map { node -> String in
            switch views.transaction.nodes[node].action {
            case .create(let create): "create \(create.instance.template.name)"
            case .exercise(let exercise): "exercise \(exercise.contract.template.name).\(exercise.choice)"
            case .fetch(let fetch): "fetch \(fetch.contract.template.name)"
            }
        }
        return indent + view.position.map(String.init).joined(separator: ".") + " "
            + nodes.joined(separator: ", ") + " | informees="
            + view.commonData.informees.map(short).joined(
                separator: ",") + " confirming=" + view.commonData.confirmingParties.map(short).joined(separator: ",")
            + " threshold=\(view.commonData.threshold)"
    }
}
