/// A recursive-descent parser for package text (grammar: docs/contracts.md
/// §2). It stops at the first error and says what it expected and what it
/// found there.
struct Parser {
    /// Deepest nesting of expressions, so that hostile input cannot exhaust
    /// the stack.
    static let nestingDepthMax = 64
    /// Most links of operator and field chains on one path of an expression's tree (`a + b +
    /// c` is two). Each link is a level of the tree, which everything after the parser walks
    /// recursively on a task's stack (a debug build overflowed at ~500 levels); counted apart
    /// from `nestingDepthMax`, so that a long condition of `&&`s still loads.
    static let chainLinksMax = 200

    private var lexemes: [Lexeme]
    private var position = 0
    private let file: String
    private var depth = 0
    /// Chain links on the path being parsed (`chainLink`).
    private var chainLinks = 0

    private init(lexemes: [Lexeme], file: String) {
        self.lexemes = lexemes
        self.file = file
    }

    static func parse(_ source: String, file: String) throws(ContractError) -> PackageSyntax {
        var parser = Parser(lexemes: try Lexer.tokenize(source, file: file), file: file)
        return try parser.package()
    }

    // MARK: - Tokens

    private var current: Lexeme { lexemes[position] }
    private var token: Token { lexemes[position].token }
    private var location: SourceLocation { location(of: current) }

    private func location(of lexeme: Lexeme) -> SourceLocation {
        SourceLocation(file: file, line: lexeme.line, column: lexeme.column)
    }

    /// Just after the previous token: where a missing `;` belongs.
    private var afterPrevious: SourceLocation {
        guard position > 0 else { return location }
        let previous = lexemes[position - 1]
        return SourceLocation(file: file, line: previous.endLine, column: previous.endColumn)
    }

    private mutating func advance() {
        if position < lexemes.count - 1 { position += 1 }
    }

    private func peek(_ offset: Int) -> Token {
        lexemes[min(position + offset, lexemes.count - 1)].token
    }

    private func error(_ expected: String, at location: SourceLocation? = nil) -> ContractError {
        .syntax(location ?? self.location, "expected \(expected), found \(token.described)")
    }

    private mutating func accept(_ symbol: Symbol) -> Bool {
        guard token == .symbol(symbol) else { return false }
        advance()
        return true
    }

    private mutating func accept(_ keyword: Keyword) -> Bool {
        guard token == .keyword(keyword) else { return false }
        advance()
        return true
    }

    private mutating func expect(_ symbol: Symbol, _ context: String) throws(ContractError) {
        guard accept(symbol) else { throw error("'\(symbol.rawValue)' \(context)") }
    }

    /// `;` ends declarations and statements; a missing one is reported just
    /// after the token it should follow.
    private mutating func expectSemicolon(_ context: String) throws(ContractError) {
        guard accept(.semicolon) else {
            throw .syntax(
                afterPrevious,
                "expected ';' \(context), found \(token.described) at \(current.line):\(current.column)")
        }
    }

    private mutating func name(_ what: String) throws(ContractError) -> Name {
        if case .identifier(let text) = token {
            let name = Name(text: text, location: location)
            advance()
            return name
        }
        if case .keyword(let keyword) = token {
            throw .syntax(location, "expected \(what), found '\(keyword.rawValue)', which is a reserved word")
        }
        throw error(what)
    }

    // MARK: - Declarations

    private mutating func package() throws(ContractError) -> PackageSyntax {
        guard accept(.package) else { throw error("'package' and the package name at the start of the file") }
        let packageName = try name("the package name after 'package'")
        try expectSemicolon("after the package name")
        var templates: [TemplateSyntax] = []
        while token != .end {
            guard token == .keyword(.template) else { throw error("'template' or the end of the file") }
            templates.append(try template())
        }
        return PackageSyntax(name: packageName, templates: templates)
    }

    private mutating func template() throws(ContractError) -> TemplateSyntax {
        let start = location
        advance()
        let templateName = try name("the template name after 'template'")
        try expect(.leftBrace, "to open template \(templateName.text)")
        var result = TemplateSyntax(
            name: templateName, fields: [], signatories: [], observers: [], ensures: [], choices: [],
            location: start, closingLocation: start)
        while true {
            switch token {
            case .identifier:
                let fieldName = try name("a field name")
                try expect(.colon, "and the field's type after the field name '\(fieldName.text)'")
                let type = try type()
                try expectSemicolon("after the type of field '\(fieldName.text)'")
                result.fields.append(FieldSyntax(name: fieldName, type: type))
            case .keyword(.signatory):
                advance()
                result.signatories.append(try expressionList())
                try expectSemicolon("after the signatories")
            case .keyword(.observer):
                advance()
                result.observers.append(try expressionList())
                try expectSemicolon("after the observers")
            case .keyword(.ensure):
                advance()
                result.ensures.append(try expression())
                try expectSemicolon("after the ensure condition")
            case .keyword(.choice), .keyword(.nonconsuming):
                result.choices.append(try choice())
            case .symbol(.rightBrace):
                result.closingLocation = location
                advance()
                return result
            case .keyword(let keyword) where peek(1) == .symbol(.colon):
                throw .syntax(location, "'\(keyword.rawValue)' is a reserved word and cannot name a field")
            default:
                throw error(
                    "a field ('name: Type;'), 'signatory', 'observer', 'ensure', 'choice', 'nonconsuming choice' "
                        + "or '}' in template \(templateName.text)")
            }
        }
    }

    private mutating func choice() throws(ContractError) -> ChoiceSyntax {
        let start = location
        let consuming = !accept(.nonconsuming)
        guard accept(.choice) else { throw error("'choice' after 'nonconsuming'") }
        let choiceName = try name("the choice name after 'choice'")
        try expect(
            .leftParen, "and the choice's parameters after its name, e.g. 'choice \(choiceName.text)(newOwner: Party)'")
        var parameters: [FieldSyntax] = []
        while !accept(.rightParen) {
            let parameterName = try name("a parameter name or ')'")
            try expect(.colon, "and the parameter's type after the parameter name '\(parameterName.text)'")
            parameters.append(FieldSyntax(name: parameterName, type: try type()))
            if !accept(.comma) {
                try expect(.rightParen, "or ',' after the parameter '\(parameterName.text)'")
                break
            }
        }
        var returnType: TypeSyntax?
        if accept(.colon) { returnType = try type() }
        guard accept(.controller) else {
            throw error("'controller' and the parties who may exercise choice \(choiceName.text)")
        }
        let controllers = try expressionList()
        var observers: [Expression] = []
        if accept(.observer) { observers = try expressionList() }
        try expect(.leftBrace, "to open the body of choice \(choiceName.text)")
        var body: [Statement] = []
        while token != .symbol(.rightBrace) { body.append(try statement()) }
        let closing = location
        advance()
        return ChoiceSyntax(
            name: choiceName, consuming: consuming, parameters: parameters, returnType: returnType,
            controllers: controllers, observers: observers, body: body, location: start, closingLocation: closing)
    }

    private mutating func type() throws(ContractError) -> TypeSyntax {
        let typeName = try name("a type (Party, Text, Int, Decimal, Bool, Time, ContractId<T>, List<T>)")
        var arguments: [TypeSyntax] = []
        if accept(.less) {
            try nest()
            defer { depth -= 1 }
            arguments.append(try type())
            while accept(.comma) { arguments.append(try type()) }
            if token == .symbol(.greaterEqual) {
                // `List<Int>= […]`: the lexer read `>=`; keep the `=`.
                lexemes[position].token = .symbol(.equals)
                lexemes[position].column += 1
            } else {
                try expect(.greater, "to close the type arguments of \(typeName.text)")
            }
        }
        return TypeSyntax(name: typeName, arguments: arguments)
    }

    // MARK: - Statements

    private mutating func statement() throws(ContractError) -> Statement {
        let start = location
        switch token {
        case .keyword(.let):
            advance()
            let variable = try name("a name after 'let'")
            var type: TypeSyntax?
            if accept(.colon) { type = try self.type() }
            try expect(.equals, "after 'let \(variable.text)'")
            let value = try computation()
            try expectSemicolon("after the 'let' statement")
            return Statement(kind: .bind(variable, type, value), location: start)
        case .keyword(.create), .keyword(.exercise), .keyword(.fetch), .keyword(.archive):
            let update = try update()
            try expectSemicolon("after the statement")
            return Statement(kind: .perform(update), location: start)
        case .keyword(.assert):
            advance()
            let condition = try expression()
            var message: String?
            if accept(.comma) {
                guard case .text(let text) = token else { throw error("a text message after 'assert condition,'") }
                message = text
                advance()
            }
            try expectSemicolon("after the assertion")
            return Statement(kind: .assert(condition, message), location: start)
        case .keyword(.return):
            advance()
            let value = try computation()
            try expectSemicolon("after the returned value")
            return Statement(kind: .return(value), location: start)
        default:
            throw error("a statement ('let', 'create', 'exercise', 'fetch', 'archive', 'assert', 'return') or '}'")
        }
    }

    private mutating func computation() throws(ContractError) -> Computation {
        switch token {
        case .keyword(.create), .keyword(.exercise), .keyword(.fetch), .keyword(.archive): .update(try update())
        default: .pure(try expression())
        }
    }

    private mutating func update() throws(ContractError) -> Update {
        let start = location
        switch token {
        case .keyword(.create):
            advance()
            if case .identifier = token, peek(1) == .symbol(.leftBrace) {
                let templateName = try name("a template name")
                return Update(kind: .create(templateName, try assignments("field")), location: start)
            }
            let base = try expression()
            guard accept(.with) else {
                throw error("'with { field = value, … }' after the record to copy (or write 'create Template { … }')")
            }
            return Update(kind: .createWith(base, try assignments("field")), location: start)
        case .keyword(.exercise):
            advance()
            let contract = try expression()
            let choiceName = try name("the choice name after the contract id in 'exercise'")
            let arguments = token == .symbol(.leftBrace) ? try assignments("argument") : []
            return Update(kind: .exercise(contract, choiceName, arguments), location: start)
        case .keyword(.fetch):
            advance()
            return Update(kind: .fetch(try expression()), location: start)
        default:
            advance()
            return Update(kind: .archive(try expression()), location: start)
        }
    }

    /// `{ name = value, … }`, trailing comma allowed.
    private mutating func assignments(_ what: String) throws(ContractError) -> [FieldAssignment] {
        try expect(.leftBrace, "to open the \(what)s")
        var result: [FieldAssignment] = []
        while !accept(.rightBrace) {
            let assigned = try name("a \(what) name or '}'")
            try expect(.equals, "after the \(what) name '\(assigned.text)'")
            result.append(FieldAssignment(name: assigned, value: try expression()))
            if !accept(.comma) {
                try expect(.rightBrace, "or ',' after the value of \(what) '\(assigned.text)'")
                break
            }
        }
        return result
    }

    // MARK: - Expressions

    private mutating func nest() throws(ContractError) {
        depth += 1
        guard depth <= Self.nestingDepthMax else {
            throw .syntax(location, "this is nested too deeply (at most \(Self.nestingDepthMax) levels)")
        }
    }

    /// One more link of a left-associative chain (`a + b + c`, `x.f.g`): each builds a level
    /// of the tree, and everything after the parser recurses once per level (the checker, the
    /// interpreter, the canonical form), so chains are bounded too (`chainLinksMax`, summed over
    /// the nesting levels of the path); `links` is how many the caller gives back.
    private mutating func chainLink(_ links: inout Int) throws(ContractError) {
        chainLinks += 1
        links += 1
        guard chainLinks <= Self.chainLinksMax else {
            throw .syntax(
                location,
                "this expression is nested too deeply: a chain of more than \(Self.chainLinksMax) operators or "
                    + "fields; split it with let")
        }
    }

    /// One or more expressions separated by commas (signatories, observers,
    /// controllers).
    private mutating func expressionList() throws(ContractError) -> [Expression] {
        var result = [try expression()]
        while accept(.comma) { result.append(try expression()) }
        return result
    }

    mutating func expression() throws(ContractError) -> Expression {
        try nest()
        defer { depth -= 1 }
        return try binary(minimumPrecedence: 1)
    }

    private var binaryOperator: BinaryOperator? {
        switch token {
        case .symbol(let symbol): BinaryOperator(rawValue: symbol.rawValue)
        case .keyword(.in): .member
        default: nil
        }
    }

    private mutating func binary(minimumPrecedence: Int) throws(ContractError) -> Expression {
        var left = try unary()
        var links = 0
        defer { chainLinks -= links }
        while let op = binaryOperator, op.precedence >= minimumPrecedence {
            try chainLink(&links)
            let operatorLocation = location
            advance()
            let right = try binary(minimumPrecedence: op.precedence + 1)
            if op.isComparison, let next = binaryOperator, next.isComparison {
                throw .syntax(
                    location,
                    "comparisons do not chain; write '(a \(op.rawValue) b) && (b \(next.rawValue) c)' or add parentheses"
                )
            }
            left = Expression(kind: .binary(op, left, right), location: operatorLocation)
        }
        return left
    }

    private mutating func unary() throws(ContractError) -> Expression {
        let start = location
        if accept(.bang) {
            try nest()
            defer { depth -= 1 }
            return Expression(kind: .unary(.not, try unary()), location: start)
        }
        if accept(.minus) {
            // A minus before a number is part of the literal, so that
            // -9223372036854775808 is an Int.
            switch token {
            case .integer(let magnitude):
                advance()
                return try postfix(
                    Expression(kind: .integer(Int64(truncatingIfNeeded: 0 &- magnitude)), location: start))
            case .decimal(let value):
                advance()
                return try postfix(Expression(kind: .decimal(value.negated()), location: start))
            default:
                try nest()
                defer { depth -= 1 }
                return Expression(kind: .unary(.negate, try unary()), location: start)
            }
        }
        return try postfix(try primary())
    }

    private mutating func postfix(_ base: Expression) throws(ContractError) -> Expression {
        var result = base
        var links = 0
        defer { chainLinks -= links }
        while token == .symbol(.dot) {
            try chainLink(&links)
            let dot = location
            advance()
            let field = try name("a field name after '.'")
            result = Expression(kind: .field(result, field), location: dot)
        }
        return result
    }

    private mutating func primary() throws(ContractError) -> Expression {
        let start = location
        switch token {
        case .integer(let magnitude):
            guard magnitude <= UInt64(Int64.max) else {
                throw .syntax(start, "the Int \(magnitude) is out of range (the largest Int is 9223372036854775807)")
            }
            advance()
            return Expression(kind: .integer(Int64(magnitude)), location: start)
        case .decimal(let value):
            advance()
            return Expression(kind: .decimal(value), location: start)
        case .text(let value):
            advance()
            return Expression(kind: .text(value), location: start)
        case .keyword(.true), .keyword(.false):
            let value = token == .keyword(.true)
            advance()
            return Expression(kind: .bool(value), location: start)
        case .keyword(.this):
            advance()
            return Expression(kind: .this, location: start)
        case .identifier(let name):
            advance()
            return Expression(kind: .name(name), location: start)
        case .symbol(.leftParen):
            advance()
            let inner = try expression()
            try expect(.rightParen, "to close the '(' at \(start.line):\(start.column)")
            return inner
        case .symbol(.leftBracket):
            advance()
            var elements: [Expression] = []
            while !accept(.rightBracket) {
                elements.append(try expression())
                if !accept(.comma) {
                    try expect(.rightBracket, "or ',' in the list")
                    break
                }
            }
            return Expression(kind: .list(elements), location: start)
        case .keyword(.if):
            advance()
            let condition = try expression()
            guard accept(.then) else { throw error("'then' after the condition of 'if'") }
            let whenTrue = try expression()
            guard accept(.else) else { throw error("'else' after the 'then' branch ('if' always has both branches)") }
            let whenFalse = try expression()
            return Expression(kind: .conditional(condition, whenTrue, whenFalse), location: start)
        case .keyword(.create), .keyword(.exercise), .keyword(.fetch), .keyword(.archive):
            throw .syntax(
                start,
                "'\(token.described.dropFirst().dropLast())' is an action, not an expression; bind its result "
                    + "first: 'let x = \(token.described.dropFirst().dropLast()) …;'")
        default:
            throw error("an expression")
        }
    }
}
