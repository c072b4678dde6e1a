// What the checker compiles a package to, and the interpreter runs: names
// resolved to indexes, operators to typed operations, so that interpreting
// does no string lookups and no type dispatch beyond matching a value.

/// A field of a template or a parameter of a choice.
public struct Field: Sendable, Hashable {
    public let name: String
    public let type: ValueType
}

/// A checked template: its fields, and its choices (the implicit `Archive`
/// last).
public struct Template: Sendable {
    public let name: String
    public let fields: [Field]
    public let choices: [Choice]
    public let location: SourceLocation
    let signatories: [PartyCode]
    let observers: [PartyCode]
    let ensure: Code?
    let fieldIndex: [String: Int]
    let choiceIndex: [String: Int]

    /// The index of `name` in `choices`.
    public func choice(named name: String) -> Int? { choiceIndex[name] }
}

/// A checked choice.
public struct Choice: Sendable {
    public let name: String
    public let consuming: Bool
    public let parameters: [Field]
    public let returnType: ValueType
    public let location: SourceLocation
    let controllers: [PartyCode]
    let observers: [PartyCode]
    let body: [Step]
    /// How many `let` slots the body needs.
    let localCount: Int
}

/// A signatory, observer or controller expression: one Party or a list.
struct PartyCode: Sendable {
    let code: Code
    let isList: Bool
}

/// A compiled expression.
indirect enum Code: Sendable {
    case constant(Value)
    /// A field of the contract (or of the record being created).
    case field(Int)
    /// A choice argument.
    case argument(Int)
    /// A `let` slot.
    case local(Int)
    /// The contract's record.
    case this
    case recordField(Code, Int)
    case list([Code])
    case not(Code)
    case negateInt(Code, SourceLocation)
    case negateDecimal(Code)
    case arithmetic(Arithmetic, Code, Code, SourceLocation)
    case equal(Code, Code)
    case notEqual(Code, Code)
    case compare(Comparison, Code, Code)
    case member(Code, Code)
    case and(Code, Code)
    case or(Code, Code)
    case conditional(Code, Code, Code)
}

enum Arithmetic: Sendable {
    case addInt, subtractInt, multiplyInt, divideInt, remainderInt
    case addDecimal, subtractDecimal, multiplyDecimal, divideDecimal
    case concatenateText, concatenateList

    var symbol: String {
        switch self {
        case .addInt, .addDecimal, .concatenateText, .concatenateList: "+"
        case .subtractInt, .subtractDecimal: "-"
        case .multiplyInt, .multiplyDecimal: "*"
        case .divideInt, .divideDecimal: "/"
        case .remainderInt: "%"
        }
    }
}

enum Comparison: Sendable {
    case less, lessEqual, greater, greaterEqual
}

/// A compiled statement of a choice body.
enum Step: Sendable {
    case bind(Int, Operation)
    case perform(Operation)
    case assert(Code, String, SourceLocation)
    case `return`(Operation)
}

/// What a statement computes: a pure value or a ledger action. Template
/// indexes are within the choice's own package.
enum Operation: Sendable {
    case pure(Code)
    case create(template: Int, fields: [Code], SourceLocation)
    case exercise(template: Int, contract: Code, choice: Int, arguments: [Code], SourceLocation)
    case fetch(template: Int, contract: Code, SourceLocation)
}
