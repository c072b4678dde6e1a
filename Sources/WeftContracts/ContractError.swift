/// A place in a package's source text: 1-based line and column (in Unicode
/// scalars).
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `file:line:column`, as compilers print it.
    public var description: String { "\(file):\(line):\(column)" }
}

/// Everything that can go wrong in WeftContracts: a package that does not
/// parse or check, a command that does not fit the package, and a
/// transaction that fails while it is interpreted.
public enum ContractError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The package text does not follow the grammar (docs/contracts.md §2).
    case syntax(SourceLocation, String)
    /// The package parses but is not well formed or well typed.
    case check(SourceLocation, String)
    /// A party id that is not one.
    case invalidParty(id: String, reason: String)
    /// A command or a value that does not fit the loaded packages (unknown
    /// package, template or choice; an argument of the wrong shape).
    case invalidCommand(String)
    /// Interpretation failed: what, and where.
    case runtime(RuntimeFailure, RuntimeContext)

    public var description: String {
        switch self {
        case .syntax(let location, let message), .check(let location, let message):
            "\(location): error: \(message)"
        case .invalidParty(let id, let reason): "invalid party '\(id)': \(reason)"
        case .invalidCommand(let message): "invalid command: \(message)"
        case .runtime(let failure, let context): "\(context): \(failure)"
        }
    }
}

/// Where interpretation failed: the template and choice being run, the
/// node's position in the transaction tree, and the source location of the
/// failing statement or expression when there is one.
public struct RuntimeContext: Equatable, Sendable, CustomStringConvertible {
    /// The template whose code (or contract) was being processed.
    public let template: String
    /// The choice whose body was running; nil for a create at the root.
    public let choice: String?
    /// Child indexes from the root command down to the failing node:
    /// `[1, 0]` is the first child of the second command.
    public let position: [Int]
    public let location: SourceLocation?

    public init(template: String, choice: String?, position: [Int], location: SourceLocation?) {
        self.template = template
        self.choice = choice
        self.position = position
        self.location = location
    }

    public var description: String {
        var text = "in template \(template)"
        if let choice { text += ", choice \(choice)" }
        text += ", at node \(positionText(position))"
        if let location { text += " (\(location))" }
        return text
    }
}

/// A node position as text: `0.2.1`.
func positionText(_ position: [Int]) -> String { position.map(String.init).joined(separator: ".") }

/// Why interpretation failed.
public enum RuntimeFailure: Equatable, Sendable, CustomStringConvertible {
    /// Whose authority an action needs.
    public enum Requirement: String, Sendable {
        case signatories
        case controllers
    }

    /// A create or exercise lacks the authority of some of the parties it
    /// needs (`missing`).
    case missingAuthorization(
        action: String, requirement: Requirement, required: [Party], authorizers: [Party], missing: [Party])
    /// A fetch by parties none of whom is a stakeholder of the contract.
    case fetchNotAuthorized(template: String, stakeholders: [Party], authorizers: [Party])
    /// A contract whose signatory expressions produced no party.
    case noSignatories(template: String)
    /// An exercise whose controller expressions produced no party.
    case noControllers(choice: String)
    /// A contract whose `ensure` is false. Its description prints at most about
    /// `Value.errorDescriptionBytesMax` bytes of `argument`, which can be far larger.
    case preconditionFailed(template: String, argument: Value)
    /// An `assert` whose condition is false.
    case assertionFailed(String)
    /// Overflow, division by zero.
    case arithmetic(String)
    /// A list, text or transaction grew past an `InterpreterLimits` bound.
    case limitExceeded(String)
    /// The lookup does not know the contract as active.
    case unknownContract(ContractID)
    /// A consuming exercise earlier in this transaction archived it.
    case contractConsumed(ContractID, consumedAt: [Int])
    /// The contract is of another template than the code expects.
    case wrongTemplate(ContractID, expected: String, actual: TemplateID)
    /// The lookup returned a contract that does not fit its template.
    case inconsistentContract(ContractID, String)
    /// A value of the wrong type reached an operation: a bug in the checker,
    /// reported instead of crashing the node.
    case internalError(String)

    public var description: String {
        switch self {
        case .missingAuthorization(let action, let requirement, let required, let authorizers, let missing):
            "\(action) is not authorized: it needs the authority of its \(requirement.rawValue) \(partyList(required)) "
                + "but only \(partyList(authorizers)) authorize it here (missing: \(partyNames(missing))). "
                + "At the root the "
                + "authorizers are the submitting parties; inside a choice they are the contract's signatories "
                + "and the choice's controllers"
        case .fetchNotAuthorized(let template, let stakeholders, let authorizers):
            "fetch of \(template) is not authorized: none of its stakeholders \(partyList(stakeholders)) is among the "
                + "authorizers \(partyList(authorizers))"
        case .noSignatories(let template): "a contract of \(template) would have no signatories"
        case .noControllers(let choice): "choice \(choice) has no controllers for this contract and argument"
        case .preconditionFailed(let template, let argument):
            "the ensure precondition of \(template) is false for "
                + argument.description(bytesMax: Value.errorDescriptionBytesMax)
        case .assertionFailed(let message): "assertion failed: \(message)"
        case .arithmetic(let message): message
        case .limitExceeded(let message): "limit exceeded: \(message)"
        case .unknownContract(let id):
            "contract \(id) is unknown or no longer active (the contract lookup does not have it)"
        case .contractConsumed(let id, let position):
            "contract \(id) was archived earlier in this transaction, by the consuming exercise at node "
                + positionText(position)
        case .wrongTemplate(let id, let expected, let actual):
            "contract \(id) is \(withArticle(actual.name)) (package \(actual.package)), not \(withArticle(expected))"
        case .inconsistentContract(let id, let reason): "contract \(id) from the lookup is inconsistent: \(reason)"
        case .internalError(let message): "internal error (the checker let an ill-typed program through): \(message)"
        }
    }
}

/// `name` after "a" or "an", by its first letter.
private func withArticle(_ name: String) -> String {
    ("AEIOUaeiou".contains(name.first ?? "x") ? "an " : "a ") + name
}

/// `parties` in brackets for an error message, cut after about `Value.errorDescriptionBytesMax`
/// bytes: a contract's signatories and observers can be tens of thousands of parties.
func partyList(_ parties: [Party]) -> String { "[" + partyNames(parties) + "]" }

/// The ids of `parties` separated by commas, cut as `partyList(_:)` is.
private func partyNames(_ parties: [Party]) -> String {
    var text = ""
    for (index, party) in parties.enumerated() {
        if index > 0 { text += ", " }
        guard text.utf8.count < Value.errorDescriptionBytesMax else {
            text += "… \(parties.count - index) more"
            break
        }
        text += party.id
    }
    return text
}
