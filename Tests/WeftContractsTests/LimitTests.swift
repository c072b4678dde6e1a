// Limits that keep a package or a command from making a node run out of memory or time, or
// making two participants disagree: error text is bounded, weight is checked before `ensure`,
// Text literals and nested exercise arguments are held to the Text limit, and the party sets
// of every node are charged as work.

import Testing
import WeftContracts

/// The runtime failure `body` throws, or nil when it succeeds.
private func runtimeFailure(_ body: () throws -> Void) throws -> RuntimeFailure? {
    do {
        try body()
        return nil
    } catch let error as ContractError {
        guard case .runtime(let failure, _) = error else { throw error }
        return failure
    }
}

/// The id of the contract a one-create transaction created.
private func createdID(_ transaction: Transaction) throws -> ContractID {
    guard case .create(let create) = transaction.nodes[0].action else {
        throw ContractError.invalidCommand("no create")
    }
    return create.contractID
}

/// `n` copies of `item` joined by `separator`.
private func repeated(_ item: String, _ n: Int, _ separator: String) -> String {
    Array(repeating: item, count: n).joined(separator: separator)
}

/// A 1,000-element list of one Text, built by three lines of code (the elements share one
/// Text in memory), put in a contract whose `ensure` fails for any non-empty list.
private let boxSource = """
    package boxes;
    template Box {
        owner: Party;
        items: List<Text>;
        signatory owner;
        ensure items == [];
    }
    template Maker {
        owner: Party;
        signatory owner;
        nonconsuming choice Build(t: Text): ContractId<Box> controller owner {
            let a = [\(repeated("t", 10, ", "))];
            let b = \(repeated("a", 10, " + "));
            let c = \(repeated("b", 10, " + "));
            return create Box { owner = owner, items = c };
        }
    }
    """

/// The failure of `Maker.Build` with `text` under `limits`, and the error's description.
private func build(_ text: String, limits: InterpreterLimits) throws -> (RuntimeFailure, String)? {
    let package = try Package(source: boxSource, file: "boxes.weft")
    var store = ContractStore()
    let maker = try Interpreter(packages: [package]).submit(
        [.create(try package.templateID("Maker"), argument: try package.record("Maker", ["owner": .party(alice)]))],
        actAs: [alice], seed: seed(1), contracts: store)
    store.commit(maker)
    let command = Command.exercise(
        try package.templateID("Maker"), contract: try createdID(maker), choice: "Build",
        argument: try package.arguments("Maker", "Build", ["t": .text(text)]))
    do {
        _ = try Interpreter(packages: [package], limits: limits).submit(
            [command], actAs: [alice], seed: seed(2), contracts: store)
        return nil
    } catch {
        guard case .runtime(let failure, _) = error else { throw error }
        return (failure, error.description)
    }
}

@Suite("Limits: error text, Text literals, party sets")
struct LimitTests {
    // MARK: - Error text

    /// A contract too heavy to be created must fail on its weight, before `ensure` can put
    /// it in an error message.
    @Test("a contract too heavy to create fails on its weight, not on its ensure")
    func weightBeforeEnsure() throws {
        var limits = InterpreterLimits()
        limits.valueWeightMax = 1_000
        // 1,000 Texts of 64 bytes: 5,001 units.
        let failure = try #require(try build(String(repeating: "x", count: 64), limits: limits))
        guard case .limitExceeded(let message) = failure.0 else {
            Issue.record("expected limit exceeded, got \(failure.0)")
            return
        }
        #expect(message.contains("the arguments of a Box weighs more than 1000 units"), "\(message)")
    }

    /// The reviewer's case, one level smaller: 1,000 Texts of 1,000 bytes weigh 63,001 units,
    /// within the default limits, and would print as a megabyte of error text.
    @Test("an ensure that fails on a large argument prints a bounded part of it")
    func boundedPreconditionText() throws {
        let failure = try #require(try build(String(repeating: "x", count: 1_000), limits: InterpreterLimits()))
        guard case .preconditionFailed(let template, let argument) = failure.0 else {
            Issue.record("expected a failed precondition, got \(failure.0)")
            return
        }
        #expect(template == "Box")
        #expect(argument.description(bytesMax: .max).utf8.count > 1_000_000, "the value itself is whole")
        #expect(failure.1.utf8.count < 10_000, "\(failure.1.utf8.count) bytes")
        #expect(failure.1.contains("the ensure precondition of Box is false for {'alice::1220bb', [\"xxx"))
        // Four Texts whole, a fifth cut, the other 995 counted.
        #expect(failure.1.hasSuffix("xx…\" (1000 bytes), … 995 more]}"), "\(failure.1.suffix(200))")
    }

    /// Lists that share their elements cost nothing to hold and everything to print in full.
    @Test("a bounded description elides Text, list elements and records past its budget")
    func boundedDescription() {
        let text = Value.text(String(repeating: "x", count: 65_536))
        // 10,000 × 10,000 × 64 KiB printed: 6.5 TB. Held: one Text and two arrays.
        let huge = Value.record([
            .party(alice), .list(Array(repeating: .list(Array(repeating: text, count: 10_000)), count: 10_000)),
        ])
        let description = huge.description(bytesMax: 4_096)
        #expect(description.utf8.count < 5_000, "\(description.utf8.count) bytes")
        #expect(description.hasPrefix("{'alice::1220bb', [[\"xxxx"))
        #expect(description.contains("xx…\" (65536 bytes)"), "\(description.suffix(200))")
        #expect(description.hasSuffix(", … 9999 more], … 9999 more]}"), "\(description.suffix(200))")
        #expect(Value.list([.int(1), .text("ab")]).description(bytesMax: 100) == "[1, \"ab\"]")
        #expect(
            Value.list([.int(1), .text("ab")]).description(bytesMax: 100)
                == Value.list([.int(1), .text("ab")]).description)
    }

    @Test("a command argument of the wrong shape is printed bounded")
    func boundedCommandText() throws {
        let package = try Package(source: boxSource, file: "boxes.weft")
        let huge = Value.list(Array(repeating: .text(String(repeating: "y", count: 1_000)), count: 1_000))
        do {
            _ = try Interpreter(packages: [package]).submit(
                [.create(try package.templateID("Box"), argument: huge)], actAs: [alice], seed: seed(1),
                contracts: ContractStore())
            Issue.record("a list is no record")
        } catch {
            guard case .invalidCommand = error else { throw error }
            #expect(error.description.utf8.count < 10_000, "\(error.description.utf8.count) bytes")
        }
    }

    // MARK: - Nested exercise arguments

    /// A participant that sees only the nested exercise re-interprets it as a root command,
    /// whose argument must fit the choice's parameters; the submitter must refuse what it
    /// would refuse, or the two disagree about one transaction.
    @Test("a nested exercise's argument past the Text limit fails at the submitter as at the root")
    func nestedArgumentsFitLikeRootArguments() throws {
        // The literal fits the package (at most 65,536 bytes) but not these limits.
        let source = """
            package relay;
            template Speaker {
                owner: Party;
                signatory owner;
                nonconsuming choice Say(t: Text): Int controller owner { return 0; }
                nonconsuming choice Relay(n: ContractId<Speaker>): Int controller owner {
                    return exercise n Say { t = "\(String(repeating: "x", count: 200))" };
                }
            }
            """
        let package = try Package(source: source, file: "relay.weft")
        var limits = InterpreterLimits()
        limits.textBytesMax = 100
        let interpreter = Interpreter(packages: [package], limits: limits)
        var store = ContractStore()
        let speaker = try interpreter.submit(
            [
                .create(
                    try package.templateID("Speaker"), argument: try package.record("Speaker", ["owner": .party(alice)])
                )
            ],
            actAs: [alice], seed: seed(1), contracts: store)
        store.commit(speaker)
        let id = try createdID(speaker)
        let template = try package.templateID("Speaker")
        let submitter = try runtimeFailure {
            _ = try interpreter.submit(
                [
                    .exercise(
                        template, contract: id, choice: "Relay",
                        argument: try package.arguments("Speaker", "Relay", ["n": .contractID(id)]))
                ],
                actAs: [alice], seed: seed(2), contracts: store)
        }
        #expect(
            submitter
                == .limitExceeded("the argument of Say does not fit: field 't': the Text has more than 100 bytes"),
            "\(String(describing: submitter))")
        // What a participant that receives only the exercise of Say does with it.
        #expect(
            throws: ContractError.invalidCommand(
                "the argument of choice Say of Speaker does not fit: field 't': the Text has more than 100 bytes")
        ) {
            _ = try interpreter.interpret(
                .exercise(
                    template, contract: id, choice: "Say",
                    argument: try package.arguments("Speaker", "Say", ["t": .text(String(repeating: "x", count: 200))])),
                nodeSeed: NodeSeed(Digest32([UInt8](repeating: 7, count: 32))!), authorizers: [alice], contracts: store)
        }
    }

    // MARK: - Party sets

    /// 100 exercises told to 1,000 parties each: about 5 expressions apiece, and 100,000
    /// parties gathered, sorted and merged.
    @Test("the party sets of every node are charged as work")
    func partySetsCostWork() throws {
        let source = """
            package fan;
            template Hub {
                owner: Party;
                watchers: List<Party>;
                signatory owner;
                nonconsuming choice Ping() controller owner observer watchers {}
            }
            template Fan {
                owner: Party;
                hub: ContractId<Hub>;
                signatory owner;
                nonconsuming choice Go() controller owner {
                    \(repeated("exercise hub Ping;", 100, "\n"))
                }
            }
            """
        let package = try Package(source: source, file: "fan.weft")
        let watchers = (0..<1_000).map { Value.party(party("watcher\($0)::1220ee")) }
        var store = ContractStore()
        let hub = try Interpreter(packages: [package]).submit(
            [
                .create(
                    try package.templateID("Hub"),
                    argument: try package.record("Hub", ["owner": .party(alice), "watchers": .list(watchers)]))
            ],
            actAs: [alice], seed: seed(1), contracts: store)
        store.commit(hub)
        let fan = try Interpreter(packages: [package]).submit(
            [
                .create(
                    try package.templateID("Fan"),
                    argument: try package.record(
                        "Fan", ["owner": .party(alice), "hub": .contractID(try createdID(hub))]))
            ],
            actAs: [alice], seed: seed(2), contracts: store)
        store.commit(fan)
        let go = Command.exercise(
            try package.templateID("Fan"), contract: try createdID(fan), choice: "Go",
            argument: try package.arguments("Fan", "Go", [:]))
        let pinged = try Interpreter(packages: [package]).submit([go], actAs: [alice], seed: seed(3), contracts: store)
        #expect(pinged.nodes.count == 101)
        #expect(pinged.nodes[1].informees.count == 1_001)
        var limits = InterpreterLimits()
        limits.workMax = 5_000
        let failure = try runtimeFailure {
            _ = try Interpreter(packages: [package], limits: limits).submit(
                [go], actAs: [alice], seed: seed(3), contracts: store)
        }
        guard case .limitExceeded(let message)? = failure else {
            Issue.record("expected limit exceeded, got \(String(describing: failure))")
            return
        }
        #expect(message.contains("at most 5000 units of work"), "\(message)")
    }
}
