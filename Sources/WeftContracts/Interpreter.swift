/// Bounds on what one transaction may do, so that no package and no command
/// can make interpretation run away (there are no loops, but a choice can
/// exercise a choice on a contract it just created).
public struct InterpreterLimits: Sendable, Equatable {
    /// Most nodes in one transaction.
    public var nodeCountMax = 10_000
    /// Deepest nesting of exercises (a root command is depth 1).
    public var depthMax = 50
    /// Longest list a value may hold.
    public var listLengthMax = 10_000
    /// Longest Text a value may hold, in UTF-8 bytes.
    public var textBytesMax = 65_536
    /// Most work one transaction (or one view re-interpreted) may do, in units: one per
    /// expression evaluated, one per list element and per 16 bytes of Text that an
    /// operation reads or copies (`==`, `in`, ordering, concatenation, the hash of a created
    /// contract, an exercise's argument and result), and one per party in each party set a
    /// node builds (signatories, observers, controllers, choice observers, informees,
    /// confirming parties). The other limits bound each value, not what a few lines can do
    /// with them: doubling a Text into a list of thousands of copies and comparing it again
    /// and again would keep every validator busy for hours, and exercising a choice observed
    /// by 10,000 parties 10,000 times would copy and sort gigabytes of parties.
    public var workMax = 20_000_000
    /// Most units (as `workMax` counts them) in one contract's arguments, one choice's argument
    /// or one choice's result: what views carry and hashes read. Lists of lists of long Texts
    /// stay within `listLengthMax` and `textBytesMax` and still hold terabytes.
    public var valueWeightMax = 1_000_000

    /// The units `value` stands for (see `workMax`), counted until they pass `limit`.
    static func weight(of value: Value, upTo limit: Int) -> Int {
        switch value {  // the usual case, without a stack
        case .list, .record: break
        case .text(let text): return 1 + text.utf8.count / 16
        case .unit, .bool, .int, .decimal, .party, .time, .contractID: return 1
        }
        var total = 0
        var pending = [value]
        while let next = pending.popLast() {
            total += 1
            switch next {
            case .text(let text): total += text.utf8.count / 16
            case .list(let values), .record(let values): pending.append(contentsOf: values)
            case .unit, .bool, .int, .decimal, .party, .time, .contractID: break
            }
            if total > limit { return total }
        }
        return total
    }

    public init() {}
}

/// What an application asks for.
public enum Command: Sendable {
    /// Create a contract; `argument` is the template's record.
    case create(TemplateID, argument: Value)
    /// Exercise `choice` on a contract of the template; `argument` is the
    /// choice's argument record (`Package.arguments(_:_:_:)`).
    case exercise(TemplateID, contract: ContractID, choice: String, argument: Value)
}

/// Interprets commands against a contract lookup, deterministically: the
/// same packages, commands, parties, seed and contracts give the same
/// transaction, to the byte. No clock, no randomness, no I/O.
public struct Interpreter: Sendable {
    public let packages: [Package]
    public let limits: InterpreterLimits
    let packageIndex: [PackageID: Int]

    /// `packages` may not hold two packages with the same id.
    public init(packages: [Package], limits: InterpreterLimits = InterpreterLimits()) {
        self.packages = packages
        self.limits = limits
        var index: [PackageID: Int] = [:]
        for (number, package) in packages.enumerated() { index[package.id] = number }
        packageIndex = index
    }

    /// Interprets `commands` as one transaction submitted by `actAs`. Root
    /// node `i` gets a seed derived from `seed` and `i`.
    public func submit(
        _ commands: [Command], actAs: [Party], seed: TransactionSeed, contracts: some ContractLookup
    ) throws(ContractError) -> Transaction {
        guard !commands.isEmpty else { throw .invalidCommand("a transaction needs at least one command") }
        var run = Run(interpreter: self, lookup: contracts)
        let authorizers = actAs.normalized()
        for (index, command) in commands.enumerated() {
            try run.root(command, index: index, seed: Derivation.rootSeed(seed, index), authorizers: authorizers)
        }
        return run.transaction
    }

    /// Interprets one command as the root of a transaction with an explicit
    /// node seed and authorizers: how a validator re-interprets a view from
    /// its action description.
    public func interpret(
        _ command: Command, nodeSeed: NodeSeed, authorizers: [Party], contracts: some ContractLookup
    ) throws(ContractError) -> Transaction {
        var run = Run(interpreter: self, lookup: contracts)
        try run.root(command, index: 0, seed: nodeSeed, authorizers: authorizers.normalized())
        return run.transaction
    }

    /// Fetches `contract` as the root of a transaction with explicit
    /// authorizers: how a validator re-interprets a view whose root action
    /// is a fetch (there is no fetch command).
    public func interpretFetch(
        _ template: TemplateID, contract: ContractID, authorizers: [Party], contracts: some ContractLookup
    ) throws(ContractError) -> Transaction {
        var run = Run(interpreter: self, lookup: contracts)
        try run.rootFetch(template, contract, authorizers: authorizers.normalized())
        return run.transaction
    }
}

/// The work an interpretation has done so far (`InterpreterLimits.workMax`): a reference,
/// as the expressions that spend it are evaluated by non-mutating methods.
private final class WorkMeter {
    var used = 0
}

/// The state of one interpretation.
private struct Run<Lookup: ContractLookup> {
    let interpreter: Interpreter
    let lookup: Lookup
    let work = WorkMeter()
    var nodes: [Node] = []
    var roots: [Int] = []
    var inputs: [InputContract] = []
    /// Position of the node being processed.
    var path: [Int] = []
    /// Contracts archived so far, with the consuming exercise's node.
    var consumedBy: [ContractID: Int] = [:]
    /// Contracts created or read so far, resolved to their template.
    var known: [ContractID: Known] = [:]
    /// Whose code runs: for error messages.
    var code = CodeContext(package: 0, template: 0, choice: nil)

    struct Known {
        let contract: ContractInstance
        let package: Int
        let template: Int
        let fields: [Value]
    }

    struct CodeContext {
        var package: Int
        var template: Int
        var choice: Int?
    }

    /// The fields, arguments and `let` slots expressions read.
    struct Frame {
        var fields: [Value]
        var arguments: [Value]
        var locals: [Value]
    }

    init(interpreter: Interpreter, lookup: Lookup) {
        self.interpreter = interpreter
        self.lookup = lookup
    }

    var transaction: Transaction { Transaction(nodes: nodes, roots: roots, inputContracts: inputs) }

    private var limits: InterpreterLimits { interpreter.limits }

    private func template(_ package: Int, _ template: Int) -> Template {
        interpreter.packages[package].templates[template]
    }

    private func failure(_ failure: RuntimeFailure, at location: SourceLocation?) -> ContractError {
        let template = self.template(code.package, code.template)
        return .runtime(
            failure,
            RuntimeContext(
                template: template.name, choice: code.choice.map { template.choices[$0].name }, position: path,
                location: location))
    }

    private func internalError(_ message: String) -> ContractError { failure(.internalError(message), at: nil) }

    // MARK: - Commands

    mutating func root(_ command: Command, index: Int, seed: NodeSeed, authorizers: [Party]) throws(ContractError) {
        path = [index]
        switch command {
        case .create(let templateID, let argument):
            let (package, template) = try indexes(of: templateID)
            let templateInfo = self.template(package, template)
            guard case .record(let fields) = argument else {
                throw .invalidCommand(
                    "the argument of a create of \(templateID.name) must be a record, found \(printed(argument))")
            }
            if let problem = mismatch(fields, templateInfo.fields, package) {
                throw .invalidCommand("the argument of a create of \(templateID.name) does not fit: \(problem)")
            }
            code = CodeContext(package: package, template: template, choice: nil)
            let (_, node) = try create(
                package, template, fields, seed: seed, authorizers: authorizers, parent: nil, childIndex: index,
                location: nil)
            roots.append(node)
        case .exercise(let templateID, let contract, let choiceName, let argument):
            let (package, template) = try indexes(of: templateID)
            let templateInfo = self.template(package, template)
            guard let choice = templateInfo.choice(named: choiceName) else {
                let names = templateInfo.choices.map(\.name)
                throw .invalidCommand(
                    "template \(templateID.name) has no choice '\(choiceName)'" + suggestion(choiceName, names)
                        + " (its choices: \(names.joined(separator: ", ")))")
            }
            guard case .record(let arguments) = argument else {
                throw .invalidCommand(
                    "the argument of choice \(choiceName) must be a record, found \(printed(argument))")
            }
            if let problem = mismatch(arguments, templateInfo.choices[choice].parameters, package) {
                throw .invalidCommand(
                    "the argument of choice \(choiceName) of \(templateID.name) does not fit: \(problem)")
            }
            code = CodeContext(package: package, template: template, choice: choice)
            let (_, node) = try exercise(
                package, template, contract, choice, arguments, seed: seed, authorizers: authorizers, parent: nil,
                childIndex: index, location: nil)
            roots.append(node)
        }
    }

    mutating func rootFetch(_ templateID: TemplateID, _ id: ContractID, authorizers: [Party]) throws(ContractError) {
        path = [0]
        let (package, template) = try indexes(of: templateID)
        code = CodeContext(package: package, template: template, choice: nil)
        let (_, node) = try fetch(
            package, template, id, authorizers: authorizers, parent: nil, childIndex: 0, location: nil)
        roots.append(node)
    }

    private func indexes(of id: TemplateID) throws(ContractError) -> (Int, Int) {
        guard let package = interpreter.packageIndex[id.package] else {
            throw .invalidCommand("package \(id.package) is not loaded; upload it before using template \(id.name)")
        }
        guard let template = interpreter.packages[package].template(named: id.name) else {
            let names = interpreter.packages[package].templates.map(\.name)
            throw .invalidCommand(
                "package \(interpreter.packages[package].name) has no template '\(id.name)'"
                    + suggestion(id.name, names))
        }
        return (package, template)
    }

    /// Why `values` do not fit `fields`, or nil when they do.
    private func mismatch(_ values: [Value], _ fields: [Field], _ package: Int) -> String? {
        guard values.count == fields.count else {
            return
                "it has \(values.count) fields, expected \(fields.count) (\(fields.map(\.name).joined(separator: ", ")))"
        }
        for (value, field) in zip(values, fields) {
            if let problem = mismatch(value, field.type, package) { return "field '\(field.name)': \(problem)" }
        }
        return nil
    }

    private func mismatch(_ value: Value, _ type: ValueType, _ package: Int) -> String? {
        switch (value, type) {
        case (.unit, .unit), (.bool, .bool), (.int, .int), (.decimal, .decimal), (.party, .party), (.time, .time),
            (.contractID, .contractID):
            return nil
        case (.text(let text), .text):
            return text.utf8.count <= limits.textBytesMax ? nil : "the Text has more than \(limits.textBytesMax) bytes"
        case (.list(let elements), .list(let element)):
            guard elements.count <= limits.listLengthMax else {
                return "the list has more than \(limits.listLengthMax) elements"
            }
            for (index, item) in elements.enumerated() {
                if let problem = mismatch(item, element, package) { return "element \(index): \(problem)" }
            }
            return nil
        case (.record(let fields), .record(let template)):
            return mismatch(fields, self.template(package, template.index).fields, package)
        default:
            return "expected a \(type), found \(printed(value))"
        }
    }

    // MARK: - Actions

    /// Spends `units` of the transaction's work (`InterpreterLimits.workMax`).
    private func spend(_ units: Int, at location: SourceLocation?) throws(ContractError) {
        work.used += units
        guard work.used <= limits.workMax else {
            throw failure(
                .limitExceeded(
                    "a transaction does at most \(limits.workMax) units of work (expressions evaluated, list elements "
                        + "and 16-byte pieces of Text read or copied, parties in party sets); this one does more"),
                at: location)
        }
    }

    /// Spends the weight of `value` (what hashing or copying it reads), refused past
    /// `valueWeightMax` for one value; `what` names it in the error.
    private func spendWeight(of value: Value, _ what: String, at location: SourceLocation?) throws(ContractError) {
        let weight = InterpreterLimits.weight(of: value, upTo: limits.valueWeightMax)
        guard weight <= limits.valueWeightMax else {
            throw failure(
                .limitExceeded("\(what) weighs more than \(limits.valueWeightMax) units (list elements and 16-byte pieces of Text)"),
                at: location)
        }
        try spend(weight, at: location)
    }

    private func checkNodeCount(_ location: SourceLocation?) throws(ContractError) {
        guard nodes.count < limits.nodeCountMax else {
            throw failure(.limitExceeded("a transaction has at most \(limits.nodeCountMax) nodes"), at: location)
        }
    }

    private mutating func create(
        _ package: Int, _ template: Int, _ fields: [Value], seed: NodeSeed, authorizers: [Party], parent: Int?,
        childIndex: Int, location: SourceLocation?
    ) throws(ContractError) -> (ContractID, Int) {
        try checkNodeCount(location)
        let templateInfo = self.template(package, template)
        // The weight and the value limits come first: what fails them is never hashed, stored
        // or put in the error of a false `ensure` (code can build a list of a thousand copies
        // of one Text in three lines, which would print as gigabytes).
        try spendWeight(of: .record(fields), "the arguments of a \(templateInfo.name)", at: location)
        // Within the limits every value read from a command or a stored contract keeps: a
        // Text literal under the package's bound can still pass a smaller `textBytesMax`,
        // and the contract could then never be used.
        if let problem = mismatch(fields, templateInfo.fields, package) {
            throw failure(.limitExceeded("a \(templateInfo.name) cannot be created: \(problem)"), at: location)
        }
        let frame = Frame(fields: fields, arguments: [], locals: [])
        if let ensure = templateInfo.ensure {
            guard try bool(ensure, frame) else {
                throw failure(.preconditionFailed(template: templateInfo.name, argument: .record(fields)), at: location)
            }
        }
        let signatories = try parties(templateInfo.signatories, frame)
        guard !signatories.isEmpty else { throw failure(.noSignatories(template: templateInfo.name), at: location) }
        let observers = try parties(templateInfo.observers, frame).subtracting(signatories)
        let missing = signatories.subtracting(authorizers)
        guard missing.isEmpty else {
            throw failure(
                .missingAuthorization(
                    action: "create of \(templateInfo.name)", requirement: .signatories, required: signatories,
                    authorizers: authorizers, missing: missing),
                at: location)
        }
        let contract = ContractInstance(
            template: TemplateID(package: interpreter.packages[package].id, name: templateInfo.name),
            argument: .record(fields), signatories: signatories, observers: observers)
        let informees = contract.stakeholders
        try spend(informees.count, at: location)
        let id = Derivation.contractID(seed, contract)
        known[id] = Known(contract: contract, package: package, template: template, fields: fields)
        nodes.append(
            Node(
                action: .create(Create(contractID: id, instance: contract)), seed: seed, parent: parent,
                childIndex: childIndex, informees: informees, confirmingParties: signatories))
        return (id, nodes.count - 1)
    }

    private mutating func exercise(
        _ package: Int, _ template: Int, _ id: ContractID, _ choice: Int, _ arguments: [Value], seed: NodeSeed,
        authorizers: [Party], parent: Int?, childIndex: Int, location: SourceLocation?
    ) throws(ContractError) -> (Value, Int) {
        try checkNodeCount(location)
        guard path.count <= limits.depthMax else {
            throw failure(.limitExceeded("exercises nest at most \(limits.depthMax) deep"), at: location)
        }
        let contract = try resolve(id, package, template, location)
        let templateInfo = self.template(package, template)
        let choiceInfo = templateInfo.choices[choice]
        try spendWeight(of: .record(arguments), "the argument of \(choiceInfo.name)", at: location)
        // A participant that sees only this exercise re-interprets it as a root command, whose
        // argument must fit (`root`); the submitter refuses what that participant would, or the
        // two disagree on one transaction. Root arguments were checked already.
        if parent != nil, let problem = mismatch(arguments, choiceInfo.parameters, package) {
            throw failure(
                .limitExceeded("the argument of \(choiceInfo.name) does not fit: \(problem)"), at: location)
        }
        var frame = Frame(
            fields: contract.fields, arguments: arguments,
            locals: [Value](repeating: .unit, count: choiceInfo.localCount))
        let actors = try parties(choiceInfo.controllers, frame)
        guard !actors.isEmpty else { throw failure(.noControllers(choice: choiceInfo.name), at: location) }
        let missing = actors.subtracting(authorizers)
        guard missing.isEmpty else {
            throw failure(
                .missingAuthorization(
                    action: "exercise of \(choiceInfo.name) on \(templateInfo.name)", requirement: .controllers,
                    required: actors, authorizers: authorizers, missing: missing),
                at: location)
        }
        let choiceObservers = try parties(choiceInfo.observers, frame)
        let signatories = contract.contract.signatories
        let index = nodes.count
        if choiceInfo.consuming { consumedBy[id] = index }
        let informees = (choiceInfo.consuming ? contract.contract.stakeholders : signatories).union(actors)
            .union(choiceObservers)
        let confirmingParties = signatories.union(actors)
        try spend(informees.count + confirmingParties.count, at: location)
        nodes.append(
            Node(
                action: .exercise(
                    Exercise(
                        contractID: id, contract: contract.contract, choice: choiceInfo.name,
                        argument: .record(arguments), actingParties: actors, consuming: choiceInfo.consuming,
                        choiceObservers: choiceObservers, children: [], result: .unit)),
                seed: seed, parent: parent, childIndex: childIndex, informees: informees,
                confirmingParties: confirmingParties))

        let caller = code
        code = CodeContext(package: package, template: template, choice: choice)
        var children: [Int] = []
        let result = try body(
            choiceInfo, &frame, seed: seed, authorizers: confirmingParties, parent: index, children: &children)
        code = caller
        try spendWeight(of: result, "the result of \(choiceInfo.name)", at: location)
        guard case .exercise(var exercise) = nodes[index].action else { throw internalError("lost exercise node") }
        exercise.children = children
        exercise.result = result
        nodes[index].action = .exercise(exercise)
        return (result, index)
    }

    private mutating func fetch(
        _ package: Int, _ template: Int, _ id: ContractID, authorizers: [Party], parent: Int?, childIndex: Int,
        location: SourceLocation?
    ) throws(ContractError) -> (Value, Int) {
        try checkNodeCount(location)
        let contract = try resolve(id, package, template, location)
        let stakeholders = contract.contract.stakeholders
        try spend(stakeholders.count, at: location)
        let actors = authorizers.intersection(stakeholders)
        guard !actors.isEmpty else {
            throw failure(
                .fetchNotAuthorized(
                    template: self.template(package, template).name, stakeholders: stakeholders,
                    authorizers: authorizers),
                at: location)
        }
        let informees = contract.contract.signatories.union(actors)
        try spend(informees.count, at: location)
        nodes.append(
            Node(
                action: .fetch(Fetch(contractID: id, contract: contract.contract, actingParties: actors)), seed: nil,
                parent: parent, childIndex: childIndex, informees: informees, confirmingParties: informees))
        return (.record(contract.fields), nodes.count - 1)
    }

    /// The contract `id`, which the code expects to be of `template`:
    /// created earlier in this transaction, or read from the lookup and
    /// checked against its template.
    private mutating func resolve(_ id: ContractID, _ package: Int, _ template: Int, _ location: SourceLocation?)
        throws(ContractError) -> Known
    {
        if let consumer = consumedBy[id] {
            throw failure(.contractConsumed(id, consumedAt: transaction.position(of: consumer)), at: location)
        }
        let templateInfo = self.template(package, template)
        if let contract = known[id] {
            guard contract.package == package, contract.template == template else {
                throw failure(
                    .wrongTemplate(id, expected: templateInfo.name, actual: contract.contract.template), at: location)
            }
            return contract
        }
        guard let stored = lookup.contract(id) else { throw failure(.unknownContract(id), at: location) }
        guard stored.template == TemplateID(package: interpreter.packages[package].id, name: templateInfo.name) else {
            throw failure(.wrongTemplate(id, expected: templateInfo.name, actual: stored.template), at: location)
        }
        guard case .record(let fields) = stored.argument else {
            throw failure(.inconsistentContract(id, "its argument is not a record"), at: location)
        }
        if let problem = mismatch(fields, templateInfo.fields, package) {
            throw failure(
                .inconsistentContract(id, "its argument does not fit \(templateInfo.name): \(problem)"), at: location)
        }
        let frame = Frame(fields: fields, arguments: [], locals: [])
        let signatories = try parties(templateInfo.signatories, frame)
        let observers = try parties(templateInfo.observers, frame).subtracting(signatories)
        try spend(stored.signatories.count + stored.observers.count, at: location)
        guard stored.signatories.normalized() == signatories,
            stored.observers.normalized().subtracting(signatories) == observers
        else {
            throw failure(
                .inconsistentContract(
                    id,
                    "its stakeholders (signatories \(partyList(stored.signatories)), observers "
                        + "\(partyList(stored.observers))) are not the ones its template computes "
                        + "(\(partyList(signatories)), \(partyList(observers)))"),
                at: location)
        }
        let contract = Known(
            contract: ContractInstance(
                template: stored.template, argument: stored.argument, signatories: signatories, observers: observers),
            package: package, template: template, fields: fields)
        known[id] = contract
        inputs.append(InputContract(id: id, contract: contract.contract, creationSeed: lookup.creationSeed(of: id)))
        return contract
    }

    // MARK: - Choice bodies

    private mutating func body(
        _ choice: Choice, _ frame: inout Frame, seed: NodeSeed, authorizers: [Party], parent: Int,
        children: inout [Int]
    ) throws(ContractError) -> Value {
        for step in choice.body {
            switch step {
            case .bind(let slot, let operation):
                frame.locals[slot] = try perform(
                    operation, frame, seed: seed, authorizers: authorizers, parent: parent, children: &children)
            case .perform(let operation):
                _ = try perform(
                    operation, frame, seed: seed, authorizers: authorizers, parent: parent, children: &children)
            case .assert(let condition, let message, let location):
                guard try bool(condition, frame) else { throw failure(.assertionFailed(message), at: location) }
            case .return(let operation):
                return try perform(
                    operation, frame, seed: seed, authorizers: authorizers, parent: parent, children: &children)
            }
        }
        return .unit
    }

    private mutating func perform(
        _ operation: Operation, _ frame: Frame, seed: NodeSeed, authorizers: [Party], parent: Int,
        children: inout [Int]
    ) throws(ContractError) -> Value {
        let childIndex = children.count
        switch operation {
        case .pure(let expression):
            return try eval(expression, frame)
        case .create(let template, let fieldCodes, let location):
            var fields: [Value] = []
            fields.reserveCapacity(fieldCodes.count)
            for fieldCode in fieldCodes { fields.append(try eval(fieldCode, frame)) }
            path.append(childIndex)
            defer { path.removeLast() }
            let (id, node) = try create(
                code.package, template, fields, seed: Derivation.childSeed(seed, childIndex), authorizers: authorizers,
                parent: parent, childIndex: childIndex, location: location)
            children.append(node)
            return .contractID(id)
        case .exercise(let template, let contractCode, let choice, let argumentCodes, let location):
            let id = try contractID(contractCode, frame)
            var arguments: [Value] = []
            arguments.reserveCapacity(argumentCodes.count)
            for argumentCode in argumentCodes { arguments.append(try eval(argumentCode, frame)) }
            path.append(childIndex)
            defer { path.removeLast() }
            let (result, node) = try exercise(
                code.package, template, id, choice, arguments, seed: Derivation.childSeed(seed, childIndex),
                authorizers: authorizers, parent: parent, childIndex: childIndex, location: location)
            children.append(node)
            return result
        case .fetch(let template, let contractCode, let location):
            let id = try contractID(contractCode, frame)
            path.append(childIndex)
            defer { path.removeLast() }
            let (value, node) = try fetch(
                code.package, template, id, authorizers: authorizers, parent: parent, childIndex: childIndex,
                location: location)
            children.append(node)
            return value
        }
    }

    // MARK: - Expressions

    /// The parties `codes` give, as a set: one unit of work per party gathered, as each is
    /// copied and sorted (a party list can hold `listLengthMax` parties, and one expression
    /// names it).
    private func parties(_ codes: [PartyCode], _ frame: Frame) throws(ContractError) -> [Party] {
        var result: [Party] = []
        for partyCode in codes {
            switch try eval(partyCode.code, frame) {
            case .party(let party): result.append(party)
            case .list(let values):
                try spend(values.count, at: nil)
                for value in values {
                    guard case .party(let party) = value else { throw internalError("a non-party in a party list") }
                    result.append(party)
                }
            default: throw internalError("a party expression gave no party")
            }
        }
        return result.normalized()
    }

    private func bool(_ code: Code, _ frame: Frame) throws(ContractError) -> Bool {
        guard case .bool(let value) = try eval(code, frame) else { throw internalError("expected a Bool") }
        return value
    }

    private func contractID(_ code: Code, _ frame: Frame) throws(ContractError) -> ContractID {
        guard case .contractID(let id) = try eval(code, frame) else { throw internalError("expected a ContractId") }
        return id
    }

    private func eval(_ code: Code, _ frame: Frame) throws(ContractError) -> Value {
        try spend(1, at: nil)
        switch code {
        case .constant(let value): return value
        case .field(let index): return frame.fields[index]
        case .argument(let index): return frame.arguments[index]
        case .local(let index): return frame.locals[index]
        case .this: return .record(frame.fields)
        case .recordField(let base, let index):
            guard case .record(let fields) = try eval(base, frame) else { throw internalError("expected a record") }
            return fields[index]
        case .list(let elements):
            guard elements.count <= limits.listLengthMax else {
                throw failure(.limitExceeded("a list has at most \(limits.listLengthMax) elements"), at: nil)
            }
            var values: [Value] = []
            values.reserveCapacity(elements.count)
            for element in elements { values.append(try eval(element, frame)) }
            return .list(values)
        case .not(let operand):
            return .bool(!(try bool(operand, frame)))
        case .negateInt(let operand, let location):
            guard case .int(let value) = try eval(operand, frame) else { throw internalError("expected an Int") }
            guard value != .min else { throw failure(.arithmetic("Int overflow in -(\(value))"), at: location) }
            return .int(-value)
        case .negateDecimal(let operand):
            guard case .decimal(let value) = try eval(operand, frame) else { throw internalError("expected a Decimal") }
            return .decimal(value.negated())
        case .arithmetic(let operation, let left, let right, let location):
            return try arithmetic(operation, try eval(left, frame), try eval(right, frame), location)
        case .equal(let left, let right):
            let (a, b) = (try eval(left, frame), try eval(right, frame))
            try spendComparing(a, b)
            return .bool(a == b)
        case .notEqual(let left, let right):
            let (a, b) = (try eval(left, frame), try eval(right, frame))
            try spendComparing(a, b)
            return .bool(a != b)
        case .compare(let comparison, let left, let right):
            let a = try eval(left, frame)
            let b = try eval(right, frame)
            try spendComparing(a, b)
            return switch comparison {
            case .less: .bool(try less(a, b))
            case .lessEqual: .bool(!(try less(b, a)))
            case .greater: .bool(try less(b, a))
            case .greaterEqual: .bool(!(try less(a, b)))
            }
        case .member(let element, let list):
            let value = try eval(element, frame)
            guard case .list(let values) = try eval(list, frame) else { throw internalError("expected a list") }
            // Each element compared costs what comparing `value` does, at most.
            let each = InterpreterLimits.weight(of: value, upTo: limits.workMax)
            let (total, overflow) = each.multipliedReportingOverflow(by: max(values.count, 1))
            try spend(overflow ? limits.workMax + 1 : total, at: nil)
            return .bool(values.contains(value))
        case .and(let left, let right):
            guard try bool(left, frame) else { return .bool(false) }
            return .bool(try bool(right, frame))
        case .or(let left, let right):
            if try bool(left, frame) { return .bool(true) }
            return .bool(try bool(right, frame))
        case .conditional(let condition, let whenTrue, let whenFalse):
            if try bool(condition, frame) { return try eval(whenTrue, frame) }
            return try eval(whenFalse, frame)
        }
    }

    /// Spends what comparing `a` and `b` reads, at most: the lighter of the two.
    private func spendComparing(_ a: Value, _ b: Value) throws(ContractError) {
        let remaining = max(limits.workMax - work.used, 0)
        try spend(
            min(InterpreterLimits.weight(of: a, upTo: remaining), InterpreterLimits.weight(of: b, upTo: remaining)), at: nil)
    }

    private func less(_ a: Value, _ b: Value) throws(ContractError) -> Bool {
        switch (a, b) {
        case (.int(let x), .int(let y)), (.time(let x), .time(let y)): return x < y
        case (.decimal(let x), .decimal(let y)): return x < y
        case (.text(let x), .text(let y)): return x.utf8.lexicographicallyPrecedes(y.utf8)
        case (.party(let x), .party(let y)): return x < y
        default: throw internalError("cannot order \(printed(a)) and \(printed(b))")
        }
    }

    private func arithmetic(_ operation: Arithmetic, _ a: Value, _ b: Value, _ location: SourceLocation)
        throws(ContractError) -> Value
    {
        func overflow(_ kind: String) -> ContractError {
            failure(.arithmetic("\(kind) overflow in \(printed(a)) \(operation.symbol) \(printed(b))"), at: location)
        }
        func divisionByZero() -> ContractError {
            failure(.arithmetic("division by zero in \(printed(a)) \(operation.symbol) \(printed(b))"), at: location)
        }
        switch (operation, a, b) {
        case (.addInt, .int(let x), .int(let y)):
            let (result, overflowed) = x.addingReportingOverflow(y)
            guard !overflowed else { throw overflow("Int") }
            return .int(result)
        case (.subtractInt, .int(let x), .int(let y)):
            let (result, overflowed) = x.subtractingReportingOverflow(y)
            guard !overflowed else { throw overflow("Int") }
            return .int(result)
        case (.multiplyInt, .int(let x), .int(let y)):
            let (result, overflowed) = x.multipliedReportingOverflow(by: y)
            guard !overflowed else { throw overflow("Int") }
            return .int(result)
        case (.divideInt, .int(let x), .int(let y)):
            guard y != 0 else { throw divisionByZero() }
            let (result, overflowed) = x.dividedReportingOverflow(by: y)
            guard !overflowed else { throw overflow("Int") }
            return .int(result)
        case (.remainderInt, .int(let x), .int(let y)):
            guard y != 0 else { throw divisionByZero() }
            // Int.min % -1 overflows in the machine, but its value is 0.
            return .int(x.remainderReportingOverflow(dividingBy: y).partialValue)
        case (.addDecimal, .decimal(let x), .decimal(let y)):
            guard let result = x.adding(y) else { throw overflow("Decimal") }
            return .decimal(result)
        case (.subtractDecimal, .decimal(let x), .decimal(let y)):
            guard let result = x.subtracting(y) else { throw overflow("Decimal") }
            return .decimal(result)
        case (.multiplyDecimal, .decimal(let x), .decimal(let y)):
            guard let result = x.multiplying(by: y) else { throw overflow("Decimal") }
            return .decimal(result)
        case (.divideDecimal, .decimal(let x), .decimal(let y)):
            guard y != .zero else { throw divisionByZero() }
            guard let result = x.dividing(by: y) else { throw overflow("Decimal") }
            return .decimal(result)
        case (.concatenateText, .text(let x), .text(let y)):
            guard x.utf8.count + y.utf8.count <= limits.textBytesMax else {
                throw failure(.limitExceeded("a Text has at most \(limits.textBytesMax) bytes"), at: location)
            }
            try spend((x.utf8.count + y.utf8.count) / 16, at: location)
            return .text(x + y)
        case (.concatenateList, .list(let x), .list(let y)):
            guard x.count + y.count <= limits.listLengthMax else {
                throw failure(.limitExceeded("a list has at most \(limits.listLengthMax) elements"), at: location)
            }
            try spend(x.count + y.count, at: location)
            return .list(x + y)
        default:
            throw internalError("\(operation) on \(printed(a)) and \(printed(b))")
        }
    }
}

/// `value` for an error message: at most about `Value.errorDescriptionBytesMax` bytes of it.
private func printed(_ value: Value) -> String { value.description(bytesMax: Value.errorDescriptionBytesMax) }
