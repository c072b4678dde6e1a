// Property tests over generated commands and programs, each from a fixed
// seed so a failure reproduces: interpreting the same commands with the same
// inputs and seed gives byte-identical trees — also on a validator that
// loaded the package from its canonical form — and the ledger model's
// invariants hold on every tree.

import Testing
import WeftContracts

private func attempt(_ body: () throws(ContractError) -> Transaction) -> Result<Transaction, ContractError> {
    do throws(ContractError) {
        return .success(try body())
    } catch {
        return .failure(error)
    }
}

private func randomSeed(_ random: inout SeededGenerator) -> TransactionSeed {
    TransactionSeed((0..<32).map { _ in UInt8.random(in: 0...255, using: &random) })!
}

/// The ledger model's invariants on one tree.
private func checkInvariants(_ transaction: Transaction) {
    for (index, node) in transaction.nodes.enumerated() {
        #expect(!node.informees.isEmpty)
        #expect(node.confirmingParties.allSatisfy { node.informees.contains($0) }, "confirming parties are informees")
        #expect(node.informees == node.informees.sorted(), "party sets are sorted")
        switch node.action {
        case .create(let create):
            #expect(node.informees == create.instance.stakeholders)
            #expect(node.confirmingParties == create.instance.signatories)
        case .exercise(let exercise):
            #expect(exercise.actingParties.allSatisfy { node.informees.contains($0) })
            for child in exercise.children { #expect(transaction.nodes[child].parent == index) }
        case .fetch(let fetch):
            #expect(!fetch.actingParties.isEmpty)
        }
    }
}

private func amount(_ contract: ContractInstance) -> FixedDecimal {
    guard case .record(let fields) = contract.argument, case .decimal(let value) = fields[3] else { return .zero }
    return value
}

@Suite("Determinism and invariants (property tests)")
struct DeterminismTests {
    /// A random command (or two or three) on the current IOU ledger; often
    /// one that must fail: wrong submitter, bad amount, double spend.
    private func generate(_ random: inout SeededGenerator, _ ledger: IouLedger) throws -> ([Command], [Party]) {
        let parties = [bank, alice, bob, carol]
        let active = ledger.store.active.sorted { $0.key < $1.key }
        func someParty() -> Party { parties.randomElement(using: &random)! }
        func someAmount(below limit: Int) -> String {
            "\(Int.random(in: 0..<limit, using: &random)).\(Int.random(in: 0..<100, using: &random))"
        }
        var commands: [Command] = []
        var actAs: [Party] = []
        let count = Int.random(in: 0..<10, using: &random) < 8 ? 1 : Int.random(in: 2...3, using: &random)
        for _ in 0..<count {
            let roll = Int.random(in: 0..<100, using: &random)
            guard roll >= 25, let (id, contract) = active.randomElement(using: &random) else {
                let issuer = someParty()
                commands.append(try ledger.issueCommand(issuer, someParty(), someAmount(below: 1_000)))
                actAs.append(Int.random(in: 0..<10, using: &random) == 0 ? someParty() : issuer)
                continue
            }
            guard case .record(let fields) = contract.argument, case .party(let issuer) = fields[0],
                case .party(let owner) = fields[1]
            else { continue }
            let submitter = Int.random(in: 0..<10, using: &random) == 0 ? someParty() : owner
            switch roll {
            case 25..<50:
                commands.append(try ledger.exercise(id, "Transfer", ["newOwner": .party(someParty())]))
                actAs.append(submitter)
            case 50..<70:
                commands.append(try ledger.exercise(id, "Split", ["splitAmount": decimal(someAmount(below: 600))]))
                actAs.append(submitter)
            case 70..<90:
                let other = active.randomElement(using: &random)!.key
                commands.append(try ledger.exercise(id, "Merge", ["other": .contractID(other)]))
                actAs.append(submitter)
            default:
                commands.append(try ledger.exercise(id, "Archive", [:]))
                actAs.append(Int.random(in: 0..<10, using: &random) == 0 ? someParty() : issuer)
            }
        }
        return (commands, actAs)
    }

    @Test(
        "IOU workflows: identical trees on every run and on a validator; invariants; amounts conserved",
        arguments: [1, 2, 3, 4] as [UInt64])
    func iouWorkflows(generatorSeed: UInt64) throws {
        var random = SeededGenerator(seed: generatorSeed)
        var ledger = try IouLedger()
        let uploaded = try Package(source: ledger.package.canonicalForm, file: "uploaded.weft")
        #expect(uploaded.id == ledger.package.id)
        let validator = Interpreter(packages: [uploaded])
        var seen = Set<ContractID>()
        var successes = 0
        var failures = 0
        var total = FixedDecimal.zero
        for _ in 0..<150 {
            let (commands, actAs) = try generate(&random, ledger)
            let transactionSeed = randomSeed(&random)
            let store = ledger.store
            let first = attempt { () throws(ContractError) in
                try ledger.interpreter.submit(commands, actAs: actAs, seed: transactionSeed, contracts: store)
            }
            let second = attempt { () throws(ContractError) in
                try Interpreter(packages: [ledger.package]).submit(
                    commands, actAs: actAs, seed: transactionSeed, contracts: store)
            }
            let third = attempt { () throws(ContractError) in
                try validator.submit(commands, actAs: actAs, seed: transactionSeed, contracts: store)
            }
            switch (first, second, third) {
            case (.success(let a), .success(let b), .success(let c)):
                #expect(a == b)
                #expect(a.canonicalBytes == b.canonicalBytes)
                #expect(a.canonicalBytes == c.canonicalBytes)
                checkInvariants(a)
                for (id, _, _) in a.createdContracts {
                    #expect(!seen.contains(id), "contract ids never repeat")
                    seen.insert(id)
                }
                for node in a.nodes where node.parent == nil {
                    switch node.action {
                    case .create(let create): total = total.adding(amount(create.instance))!
                    case .exercise(let exercise) where exercise.choice == "Archive":
                        total = total.subtracting(amount(exercise.contract))!
                    default: break
                    }
                }
                ledger.store.commit(a)
                let held = ledger.store.active.values.reduce(FixedDecimal.zero) { $0.adding(amount($1))! }
                #expect(held == total, "transfers, splits and merges conserve the amount")
                successes += 1
            case (.failure(let a), .failure(let b), .failure(let c)):
                #expect(a == b)
                guard case .runtime(let failureA, let contextA) = a, case .runtime(let failureC, let contextC) = c
                else {
                    #expect(a == c)
                    continue
                }
                #expect(failureA == failureC)
                #expect(contextA.position == contextC.position)
                failures += 1
            default:
                Issue.record("runs disagree: \(first), \(second), \(third)")
            }
        }
        #expect(successes >= 40)
        #expect(failures >= 10)
    }

    @Test("different seeds give different contract ids for the same command", arguments: [5, 6] as [UInt64])
    func seedsSeparateIDs(generatorSeed: UInt64) throws {
        var random = SeededGenerator(seed: generatorSeed)
        let ledger = try IouLedger()
        var ids = Set<ContractID>()
        for _ in 0..<100 {
            let transaction = try ledger.interpreter.submit(
                [try ledger.issueCommand(bank, alice, "1")], actAs: [bank], seed: randomSeed(&random),
                contracts: ledger.store)
            guard case .create(let create) = transaction.nodes[0].action else { continue }
            ids.insert(create.contractID)
        }
        #expect(ids.count == 100)
    }

    // MARK: - Generated programs

    /// A random Int expression over `a`, `b`, `c`, fully parenthesized, and
    /// its reference value (nil for an overflow or a division by zero,
    /// which the interpreter must report as an arithmetic error).
    private indirect enum Expr {
        case literal(Int64)
        case variable(Int)
        case negate(Expr)
        case binary(String, Expr, Expr)
        case conditional(Condition, Expr, Expr)
    }

    private indirect enum Condition {
        case compare(String, Expr, Expr)
        case not(Condition)
        case logic(String, Condition, Condition)
    }

    private func expr(_ random: inout SeededGenerator, depth: Int) -> Expr {
        let roll = Int.random(in: 0..<(depth == 0 ? 2 : 10), using: &random)
        switch roll {
        case 0:
            let literals: [Int64] = [0, 1, -1, 2, 7, -13, 100, Int64.max, Int64.min, 1 << 62, -(1 << 31)]
            return .literal(literals.randomElement(using: &random)!)
        case 1: return .variable(Int.random(in: 0..<3, using: &random))
        case 2: return .negate(expr(&random, depth: depth - 1))
        case 3:
            return .conditional(
                condition(&random, depth: depth - 1), expr(&random, depth: depth - 1), expr(&random, depth: depth - 1))
        default:
            let op = ["+", "-", "*", "/", "%"].randomElement(using: &random)!
            return .binary(op, expr(&random, depth: depth - 1), expr(&random, depth: depth - 1))
        }
    }

    private func condition(_ random: inout SeededGenerator, depth: Int) -> Condition {
        switch Int.random(in: 0..<(depth == 0 ? 1 : 4), using: &random) {
        case 0, 1:
            let op = ["==", "!=", "<", "<=", ">", ">="].randomElement(using: &random)!
            return .compare(op, expr(&random, depth: max(depth - 1, 0)), expr(&random, depth: max(depth - 1, 0)))
        case 2: return .not(condition(&random, depth: depth - 1))
        default:
            return .logic(
                ["&&", "||"].randomElement(using: &random)!, condition(&random, depth: depth - 1),
                condition(&random, depth: depth - 1))
        }
    }

    private func source(_ expr: Expr) -> String {
        switch expr {
        case .literal(let value): return value < 0 ? "(\(value))" : "\(value)"
        case .variable(let index): return ["a", "b", "c"][index]
        case .negate(let operand): return "(-\(source(operand)))"
        case .binary(let op, let left, let right): return "(\(source(left)) \(op) \(source(right)))"
        case .conditional(let condition, let then, let otherwise):
            return "(if \(source(condition)) then \(source(then)) else \(source(otherwise)))"
        }
    }

    private func source(_ condition: Condition) -> String {
        switch condition {
        case .compare(let op, let left, let right): return "(\(source(left)) \(op) \(source(right)))"
        case .not(let operand): return "(!\(source(operand)))"
        case .logic(let op, let left, let right): return "(\(source(left)) \(op) \(source(right)))"
        }
    }

    private func evaluate(_ expr: Expr, _ variables: [Int64]) -> Int64? {
        switch expr {
        case .literal(let value): return value
        case .variable(let index): return variables[index]
        case .negate(let operand):
            guard let value = evaluate(operand, variables), value != .min else { return nil }
            return -value
        case .binary(let op, let left, let right):
            guard let x = evaluate(left, variables), let y = evaluate(right, variables) else { return nil }
            let (value, overflow): (Int64, Bool)
            switch op {
            case "+": (value, overflow) = x.addingReportingOverflow(y)
            case "-": (value, overflow) = x.subtractingReportingOverflow(y)
            case "*": (value, overflow) = x.multipliedReportingOverflow(by: y)
            case "/":
                guard y != 0 else { return nil }
                (value, overflow) = x.dividedReportingOverflow(by: y)
            default:
                guard y != 0 else { return nil }
                (value, overflow) = (x.remainderReportingOverflow(dividingBy: y).partialValue, false)
            }
            return overflow ? nil : value
        case .conditional(let condition, let then, let otherwise):
            guard let flag = evaluate(condition, variables) else { return nil }
            return evaluate(flag ? then : otherwise, variables)
        }
    }

    private func evaluate(_ condition: Condition, _ variables: [Int64]) -> Bool? {
        switch condition {
        case .compare(let op, let left, let right):
            guard let x = evaluate(left, variables), let y = evaluate(right, variables) else { return nil }
            switch op {
            case "==": return x == y
            case "!=": return x != y
            case "<": return x < y
            case "<=": return x <= y
            case ">": return x > y
            default: return x >= y
            }
        case .not(let operand): return evaluate(operand, variables).map { !$0 }
        case .logic(let op, let left, let right):
            guard let x = evaluate(left, variables) else { return nil }
            if op == "&&" ? !x : x { return x }
            return evaluate(right, variables)
        }
    }

    @Test(
        "generated programs compute what exact arithmetic says; the canonical form keeps the id",
        arguments: [11, 12, 13] as [UInt64])
    func generatedPrograms(generatorSeed: UInt64) throws {
        var random = SeededGenerator(seed: generatorSeed)
        var arithmeticErrors = 0
        for _ in 0..<60 {
            let program = expr(&random, depth: 4)
            let text = """
                package generated;
                template E {
                    owner: Party;
                    signatory owner;
                    nonconsuming choice Eval(a: Int, b: Int, c: Int): Int controller owner { return \(source(program)); }
                }
                """
            let package = try Package(source: text, file: "generated.weft")
            let canonical = try Package(source: package.canonicalForm, file: "canonical.weft")
            #expect(canonical.id == package.id, "\(source(program))")
            #expect(canonical.canonicalForm == package.canonicalForm)

            let interpreter = Interpreter(packages: [package])
            var store = ContractStore()
            let created = try interpreter.submit(
                [.create(try package.templateID("E"), argument: .record([.party(alice)]))], actAs: [alice],
                seed: seed(1),
                contracts: store)
            store.commit(created)
            guard case .create(let contract) = created.nodes[0].action else { continue }
            for _ in 0..<5 {
                let variables = (0..<3).map { _ in
                    [Int64.random(in: -20...20, using: &random), Int64.max, Int64.min, 1 << 40].randomElement(
                        using: &random)!
                }
                let command = Command.exercise(
                    try package.templateID("E"), contract: contract.contractID, choice: "Eval",
                    argument: .record(variables.map(Value.int)))
                let transactionSeed = randomSeed(&random)
                let first = attempt { () throws(ContractError) in
                    try interpreter.submit([command], actAs: [alice], seed: transactionSeed, contracts: store)
                }
                let second = attempt { () throws(ContractError) in
                    try Interpreter(packages: [canonical]).submit(
                        [command], actAs: [alice], seed: transactionSeed, contracts: store)
                }
                switch (first, second, evaluate(program, variables)) {
                case (.success(let a), .success(let b), let expected?):
                    #expect(a.canonicalBytes == b.canonicalBytes)
                    guard case .exercise(let exercise) = a.nodes[0].action else { continue }
                    #expect(exercise.result == .int(expected), "\(source(program)) with \(variables)")
                case (
                    .failure(.runtime(.arithmetic(let message), _)), .failure(.runtime(.arithmetic(let again), _)), nil
                ):
                    #expect(message == again)
                    arithmeticErrors += 1
                default:
                    Issue.record(
                        "\(source(program)) with \(variables): \(first) vs \(second) vs \(String(describing: evaluate(program, variables)))"
                    )
                }
            }
        }
        #expect(arithmeticErrors > 0)
    }
}
