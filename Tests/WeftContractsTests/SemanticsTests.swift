// The language's semantics, one rule at a time, on a laboratory package:
// arithmetic and its errors, comparisons, lists, informees of non-consuming
// exercises and choice observers, fetch authorization, limits and contracts
// from the lookup that do not fit their template.

import Testing
import WeftContracts

private let labSource = """
    package lab;

    template Lab {
        owner: Party;
        watchers: List<Party>;

        signatory owner;
        observer watchers;

        nonconsuming choice Add(a: Int, b: Int): Int controller owner { return a + b; }
        nonconsuming choice Multiply(a: Int, b: Int): Int controller owner { return a * b; }
        nonconsuming choice Divide(a: Int, b: Int): List<Int> controller owner { return [a / b, a % b]; }
        nonconsuming choice Negate(a: Int): Int controller owner { return -a; }
        nonconsuming choice Decimals(a: Decimal, b: Decimal): List<Decimal>
            controller owner
        {
            return [a + b, a - b, a * b, a / b];
        }
        nonconsuming choice Order(a: Text, b: Text): List<Bool> controller owner { return [a < b, a == b, a >= b]; }
        nonconsuming choice Times(a: Time, b: Time): Bool controller owner { return a < b; }
        nonconsuming choice Member(p: Party): Bool controller owner { return p in watchers; }
        nonconsuming choice Pick(c: Bool, a: Int, b: Int): Int controller owner { return if c then a else b; }
        nonconsuming choice Lazy(a: Int): Bool controller owner { return a == 0 || 10 / a > 1; }
        nonconsuming choice Join(xs: List<Int>, t: Text): List<Int> controller owner {
            assert t + t != "", "never empty";
            return xs + xs;
        }
        nonconsuming choice Tell(p: Party) controller owner observer p {}
        nonconsuming choice Peek(other: ContractId<Lab>): Party controller owner {
            let lab = fetch other;
            return lab.owner;
        }
        choice Recurse() controller owner {
            let next = create this with {};
            exercise next Recurse;
        }
        nonconsuming choice Spawn(n: Int) controller owner {
            create Lab { owner = owner, watchers = [] };
            create Lab { owner = owner, watchers = [] };
            create Lab { owner = owner, watchers = [] };
        }
    }

    template Club {
        members: List<Party>;
        signatory members;
    }
    """

private struct Lab {
    let package: Package
    let interpreter: Interpreter
    var store = ContractStore()
    let lab: ContractID

    init(limits: InterpreterLimits = InterpreterLimits(), owner: Party = alice, watchers: [Party] = [bob]) throws {
        package = try Package(source: labSource, file: "lab.weft")
        interpreter = Interpreter(packages: [package], limits: limits)
        let create = Command.create(
            try package.templateID("Lab"),
            argument: try package.record("Lab", ["owner": .party(owner), "watchers": .list(watchers.map(Value.party))]))
        let transaction = try interpreter.submit([create], actAs: [owner], seed: seed(1), contracts: store)
        store.commit(transaction)
        guard case .create(let created) = transaction.nodes[0].action else {
            throw ContractError.invalidCommand("no create")
        }
        lab = created.contractID
    }

    func run(_ choice: String, _ arguments: KeyValuePairs<String, Value> = [:], on contract: ContractID? = nil)
        throws -> Transaction
    {
        let command = Command.exercise(
            try package.templateID("Lab"), contract: contract ?? lab, choice: choice,
            argument: try package.arguments("Lab", choice, arguments))
        return try interpreter.submit([command], actAs: [alice], seed: seed(2), contracts: store)
    }

    func result(_ choice: String, _ arguments: KeyValuePairs<String, Value> = [:]) throws -> Value {
        guard case .exercise(let exercise) = try run(choice, arguments).nodes[0].action else { return .unit }
        return exercise.result
    }

    /// The runtime failure `choice` stops with, and its source location.
    func failure(_ choice: String, _ arguments: KeyValuePairs<String, Value> = [:]) -> (RuntimeFailure, String)? {
        do {
            _ = try run(choice, arguments)
            return nil
        } catch let error as ContractError {
            guard case .runtime(let failure, let context) = error else { return nil }
            return (failure, context.location.map { "\($0.line):\($0.column)" } ?? "-")
        } catch {
            return nil
        }
    }
}

@Suite("Language semantics")
struct SemanticsTests {
    @Test("Int arithmetic is exact and every overflow is an error at its operator")
    func intArithmetic() throws {
        let lab = try Lab()
        #expect(try lab.result("Add", ["a": .int(2), "b": .int(40)]) == .int(42))
        #expect(
            lab.failure("Add", ["a": .int(.max), "b": .int(1)])! == (
                .arithmetic("Int overflow in 9223372036854775807 + 1"), "10:78"
            ))
        #expect(
            lab.failure("Multiply", ["a": .int(1 << 32), "b": .int(1 << 31)])!.0
                == .arithmetic("Int overflow in 4294967296 * 2147483648"))
        #expect(lab.failure("Negate", ["a": .int(.min)])!.0 == .arithmetic("Int overflow in -(-9223372036854775808)"))
        #expect(
            lab.failure("Divide", ["a": .int(.min), "b": .int(-1)])!.0
                == .arithmetic("Int overflow in -9223372036854775808 / -1"))
        #expect(lab.failure("Divide", ["a": .int(1), "b": .int(0)])!.0 == .arithmetic("division by zero in 1 / 0"))
        #expect(
            try lab.result("Divide", ["a": .int(-7), "b": .int(2)]) == .list([.int(-3), .int(-1)]),
            "truncates toward zero")
    }

    @Test("Decimal arithmetic: 10 digits, rounding half to even, errors for overflow and division by zero")
    func decimalArithmetic() throws {
        let lab = try Lab()
        #expect(
            try lab.result("Decimals", ["a": decimal("1"), "b": decimal("3")])
                == .list([decimal("4"), decimal("-2"), decimal("3"), decimal("0.3333333333")]))
        #expect(
            try lab.result("Decimals", ["a": decimal("2"), "b": decimal("3")])
                == .list([decimal("5"), decimal("-1"), decimal("6"), decimal("0.6666666667")]))
        // 0.0000000001 × 0.5 = 0.00000000005: a tie, rounded to the even 0.
        #expect(
            try lab.result("Decimals", ["a": decimal("0.0000000001"), "b": decimal("0.5")])
                == .list([decimal("0.5000000001"), decimal("-0.4999999999"), decimal("0"), decimal("0.0000000002")]))
        #expect(
            try lab.result("Decimals", ["a": decimal("0.0000000003"), "b": decimal("0.5")]).description.contains(
                "0.0000000002"))
        #expect(
            lab.failure("Decimals", ["a": decimal("1"), "b": decimal("0")])!.0
                == .arithmetic("division by zero in 1.0 / 0.0"))
        let big = "10000000000000000000"
        #expect(
            lab.failure("Decimals", ["a": decimal(big), "b": decimal(big)])!.0
                == .arithmetic("Decimal overflow in \(big).0 * \(big).0"))
    }

    @Test("Text orders by UTF-8 bytes, Time by instant; membership and if")
    func comparisons() throws {
        let lab = try Lab()
        #expect(
            try lab.result("Order", ["a": .text("Zebra"), "b": .text("apple")])
                == .list([.bool(true), .bool(false), .bool(false)]))
        // U+00E9 precomposed and e + U+0301 are canonically equivalent but
        // different bytes: the language compares bytes.
        #expect(
            try lab.result("Order", ["a": .text("\u{E9}"), "b": .text("e\u{301}")])
                == .list([.bool(false), .bool(false), .bool(true)]))
        #expect(try lab.result("Times", ["a": .time(-1), "b": .time(0)]) == .bool(true))
        #expect(try lab.result("Member", ["p": .party(bob)]) == .bool(true))
        #expect(try lab.result("Member", ["p": .party(carol)]) == .bool(false))
        #expect(try lab.result("Pick", ["c": .bool(false), "a": .int(1), "b": .int(2)]) == .int(2))
        #expect(try lab.result("Lazy", ["a": .int(0)]) == .bool(true), "'||' does not evaluate its right side")
    }

    @Test("informees: a non-consuming exercise leaves out observers; choice observers are told")
    func informees() throws {
        let lab = try Lab(watchers: [bob])
        #expect(try lab.run("Member", ["p": .party(bob)]).nodes[0].informees == [alice])
        #expect(try lab.run("Tell", ["p": .party(carol)]).nodes[0].informees == [alice, carol])
        #expect(try lab.run("Tell", ["p": .party(carol)]).nodes[0].confirmingParties == [alice])
        let archive = try lab.run("Archive")
        #expect(archive.nodes[0].informees == [alice, bob], "a consuming exercise tells every stakeholder")
    }

    @Test("a fetch needs a stakeholder among the authorizers")
    func fetchAuthorization() throws {
        var lab = try Lab()
        let create = Command.create(
            try lab.package.templateID("Lab"),
            argument: try lab.package.record("Lab", ["owner": .party(bob), "watchers": .list([])]))
        let created = try lab.interpreter.submit([create], actAs: [bob], seed: seed(3), contracts: lab.store)
        lab.store.commit(created)
        guard case .create(let bobsLab) = created.nodes[0].action else { return }
        #expect(
            throws: ContractError.runtime(
                .fetchNotAuthorized(template: "Lab", stakeholders: [bob], authorizers: [alice]),
                RuntimeContext(
                    template: "Lab", choice: "Peek", position: [0, 0],
                    location: SourceLocation(file: "lab.weft", line: 30, column: 19)))
        ) {
            _ = try lab.run("Peek", ["other": .contractID(bobsLab.contractID)])
        }
        let peek = try lab.run("Peek", ["other": .contractID(lab.lab)])
        guard case .fetch(let fetch) = peek.nodes[1].action else { throw ContractError.invalidCommand("no fetch") }
        #expect(fetch.actingParties == [alice])
    }

    @Test("a contract with no signatories cannot exist")
    func noSignatories() throws {
        let lab = try Lab()
        let club = Command.create(
            try lab.package.templateID("Club"), argument: try lab.package.record("Club", ["members": .list([])]))
        #expect(
            throws: ContractError.runtime(
                .noSignatories(template: "Club"),
                RuntimeContext(template: "Club", choice: nil, position: [0], location: nil))
        ) {
            _ = try lab.interpreter.submit([club], actAs: [alice], seed: seed(3), contracts: lab.store)
        }
    }

    @Test("limits: exercise depth, node count, list length")
    func limits() throws {
        let deep = try Lab()
        let recursion = deep.failure("Recurse")
        #expect(recursion?.0 == .limitExceeded("exercises nest at most 50 deep"))
        var small = InterpreterLimits()
        small.nodeCountMax = 3
        small.listLengthMax = 4
        let lab = try Lab(limits: small)
        #expect(lab.failure("Spawn", ["n": .int(3)])?.0 == .limitExceeded("a transaction has at most 3 nodes"))
        #expect(
            try lab.result("Join", ["xs": .list([.int(1), .int(2)]), "t": .text("a")])
                == .list([.int(1), .int(2), .int(1), .int(2)]))
        #expect(
            lab.failure("Join", ["xs": .list([.int(1), .int(2), .int(3)]), "t": .text("a")])?.0
                == .limitExceeded("a list has at most 4 elements"))
    }

    /// What a few lines can make a validator do is bounded too: work (expressions, elements
    /// and Text read or copied) per transaction, weight per value, limits on literals.
    @Test("limits: work per transaction, weight per value, literals within the value limits")
    func workLimits() throws {
        let source = """
            package heavy;
            template Heavy {
                owner: Party;
                signatory owner;
                nonconsuming choice Search(t: Text): Bool controller owner {
                    let l1 = [t, t];
                    let l2 = l1 + l1;
                    let l3 = l2 + l2;
                    let l4 = l3 + l3;
                    let l5 = l4 + l4;
                    let l6 = l5 + l5;
                    let l7 = l6 + l6;
                    let l8 = l7 + l7;
                    return t in l8;
                }
                nonconsuming choice Keep(xs: List<Text>): ContractId<Box> controller owner {
                    return create Box { owner = owner, items = [xs, xs, xs, xs] };
                }
                nonconsuming choice Literal(): ContractId<Box> controller owner {
                    return create Box { owner = owner, items = [["LITERAL"]] };
                }
            }
            template Box {
                owner: Party;
                items: List<List<Text>>;
                signatory owner;
            }
            """.replacingOccurrences(of: "LITERAL", with: String(repeating: "x", count: 200))
        let package = try Package(source: source, file: "heavy.weft")
        var limits = InterpreterLimits()
        limits.workMax = 1_000
        limits.valueWeightMax = 1_000
        var store = ContractStore()
        let heavy = try Interpreter(packages: [package]).submit(
            [.create(try package.templateID("Heavy"), argument: try package.record("Heavy", ["owner": .party(alice)]))],
            actAs: [alice], seed: seed(1), contracts: store)
        store.commit(heavy)
        guard case .create(let created) = heavy.nodes[0].action else { throw ContractError.invalidCommand("no create") }
        func failure(_ limits: InterpreterLimits, _ choice: String, _ arguments: KeyValuePairs<String, Value> = [:]) throws
            -> RuntimeFailure?
        {
            let command = Command.exercise(
                try package.templateID("Heavy"), contract: created.contractID, choice: choice,
                argument: try package.arguments("Heavy", choice, arguments))
            do {
                _ = try Interpreter(packages: [package], limits: limits).submit(
                    [command], actAs: [alice], seed: seed(2), contracts: store)
                return nil
            } catch {
                guard case .runtime(let failure, _) = error else { throw error }
                return failure
            }
        }
        // 256 Texts of 64 bytes, each compared: 256 × 5 units, beyond 1,000; fine by default.
        let text = Value.text(String(repeating: "t", count: 64))
        #expect(try failure(InterpreterLimits(), "Search", ["t": text]) == nil)
        let searched = try failure(limits, "Search", ["t": text])
        #expect(searched?.description.contains("at most 1000 units of work") == true, "\(String(describing: searched))")
        // 50 Texts of 160 bytes (551 units) are a fine argument; four of them in a Box are not.
        let xs = Value.list(Array(repeating: .text(String(repeating: "x", count: 160)), count: 50))
        var weightOnly = InterpreterLimits()
        weightOnly.valueWeightMax = 1_000
        let kept = try failure(weightOnly, "Keep", ["xs": xs])
        #expect(kept?.description.contains("the arguments of a Box weighs more than 1000 units") == true, "\(String(describing: kept))")
        #expect(try failure(InterpreterLimits(), "Keep", ["xs": xs]) == nil)
        // A Text literal longer than a Text may be: the contract could never be used; not created.
        // (Here with a 100-byte limit and a 200-byte literal: a package may hold a longer one.)
        var shortTexts = InterpreterLimits()
        shortTexts.textBytesMax = 100
        let literal = try failure(shortTexts, "Literal")
        #expect(literal?.description.contains("more than 100 bytes") == true, "\(String(describing: literal))")
        #expect(try failure(InterpreterLimits(), "Literal") == nil)
    }

    @Test("a contract from the lookup must fit its template and its stakeholders")
    func inconsistentLookup() throws {
        var lab = try Lab()
        let stored = try #require(lab.store.active[lab.lab])
        lab.store.insert(
            lab.lab,
            ContractInstance(
                template: stored.template, argument: stored.argument, signatories: [alice, carol], observers: [bob]))
        guard case .inconsistentContract(let id, let reason)? = lab.failure("Member", ["p": .party(bob)])?.0 else {
            Issue.record("expected an inconsistent contract")
            return
        }
        #expect(id == lab.lab)
        #expect(reason.contains("stakeholders"))
        lab.store.insert(
            lab.lab,
            ContractInstance(
                template: stored.template, argument: .record([.party(alice)]), signatories: [alice], observers: []))
        guard case .inconsistentContract(_, let shape)? = lab.failure("Member", ["p": .party(bob)])?.0 else {
            Issue.record("expected an inconsistent contract")
            return
        }
        #expect(shape == "its argument does not fit Lab: it has 1 fields, expected 2 (owner, watchers)")
    }
}
