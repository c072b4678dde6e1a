// The syntax tree the parser builds and the checker reads. Every node keeps
// the location of its first token for error messages; the canonical form is
// printed from this tree (CanonicalForm.swift).

/// A name as written, with where it was written.
struct Name: Sendable {
    var text: String
    var location: SourceLocation
}

struct PackageSyntax: Sendable {
    var name: Name
    var templates: [TemplateSyntax]
}

struct TemplateSyntax: Sendable {
    var name: Name
    var fields: [FieldSyntax]
    /// Each clause as written; the checker requires exactly one signatory
    /// clause and at most one observer and ensure clause.
    var signatories: [[Expression]]
    var observers: [[Expression]]
    var ensures: [Expression]
    var choices: [ChoiceSyntax]
    var location: SourceLocation
    var closingLocation: SourceLocation
}

struct FieldSyntax: Sendable {
    var name: Name
    var type: TypeSyntax
}

struct ChoiceSyntax: Sendable {
    var name: Name
    var consuming: Bool
    var parameters: [FieldSyntax]
    var returnType: TypeSyntax?
    var controllers: [Expression]
    var observers: [Expression]
    var body: [Statement]
    var location: SourceLocation
    var closingLocation: SourceLocation
}

/// `Party`, `ContractId<Iou>`, `List<List<Int>>`.
struct TypeSyntax: Sendable {
    var name: Name
    var arguments: [TypeSyntax]
}

struct Expression: Sendable {
    indirect enum Kind: Sendable {
        case integer(Int64)
        case decimal(FixedDecimal)
        case text(String)
        case bool(Bool)
        case name(String)
        case this
        case field(Expression, Name)
        case list([Expression])
        case unary(UnaryOperator, Expression)
        case binary(BinaryOperator, Expression, Expression)
        case conditional(Expression, Expression, Expression)
    }

    var kind: Kind
    var location: SourceLocation
}

enum UnaryOperator: String, Sendable {
    case not = "!"
    case negate = "-"
}

enum BinaryOperator: String, Sendable {
    case or = "||", and = "&&"
    case equal = "==", notEqual = "!=", less = "<", lessEqual = "<=", greater = ">", greaterEqual = ">="
    case member = "in"
    case add = "+", subtract = "-", multiply = "*", divide = "/", remainder = "%"

    /// Binding strength: higher binds tighter.
    var precedence: Int {
        switch self {
        case .or: 1
        case .and: 2
        case .equal, .notEqual, .less, .lessEqual, .greater, .greaterEqual, .member: 3
        case .add, .subtract: 4
        case .multiply, .divide, .remainder: 5
        }
    }

    /// Comparisons do not chain: `a < b < c` is an error, not `(a < b) < c`.
    var isComparison: Bool { precedence == 3 }
}

/// `name = expression` in a record or an argument list.
struct FieldAssignment: Sendable {
    var name: Name
    var value: Expression
}

/// An action on the ledger; only statements contain them, so expressions
/// stay pure.
struct Update: Sendable {
    enum Kind: Sendable {
        /// `create Iou { issuer = …, … }`: every field.
        case create(Name, [FieldAssignment])
        /// `create this with { owner = newOwner }`: a record and changes.
        case createWith(Expression, [FieldAssignment])
        /// `exercise cid Transfer { newOwner = bob }`.
        case exercise(Expression, Name, [FieldAssignment])
        case fetch(Expression)
        case archive(Expression)
    }

    var kind: Kind
    var location: SourceLocation
}

/// The right-hand side of `let` and `return`.
enum Computation: Sendable {
    case pure(Expression)
    case update(Update)
}

struct Statement: Sendable {
    enum Kind: Sendable {
        case bind(Name, TypeSyntax?, Computation)
        case perform(Update)
        case assert(Expression, String?)
        case `return`(Computation)
    }

    var kind: Kind
    var location: SourceLocation
}
