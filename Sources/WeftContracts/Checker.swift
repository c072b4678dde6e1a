/// Checks a parsed package (names, types, the rules of docs/contracts.md §3
/// and §4) and compiles it to `Template`s. Stops at the first error, which
/// names the place and says what to write instead.
struct Checker {
    private static let builtinTypeNames = [
        "Party", "Text", "Int", "Decimal", "Bool", "Time", "Unit", "ContractId", "List",
    ]
    static let archiveChoiceName = "Archive"

    private let file: String
    private var templateIndex: [String: Int] = [:]
    private var templateNames: [String] = []
    private var fields: [[Field]] = []
    private var fieldIndexes: [[String: Int]] = []
    private var signatures: [[Signature]] = []
    private var choiceIndexes: [[String: Int]] = []

    /// A choice's interface, known before any body is checked so bodies can
    /// exercise choices of templates declared later.
    private struct Signature {
        let name: String
        let parameters: [Field]
        let parameterIndex: [String: Int]
        let returnType: ValueType
    }

    private init(file: String) { self.file = file }

    static func check(_ syntax: PackageSyntax, file: String) throws(ContractError) -> [Template] {
        var checker = Checker(file: file)
        return try checker.package(syntax)
    }

    // MARK: - Declarations

    private mutating func package(_ syntax: PackageSyntax) throws(ContractError) -> [Template] {
        for template in syntax.templates {
            let name = template.name
            if let existing = templateIndex[name.text] {
                throw .check(
                    name.location,
                    "template \(name.text) is declared twice (first at \(lineColumn(syntax.templates[existing].name.location)))"
                )
            }
            if Self.builtinTypeNames.contains(name.text) {
                throw .check(name.location, "'\(name.text)' is a built-in type; a template needs another name")
            }
            templateIndex[name.text] = templateNames.count
            templateNames.append(name.text)
        }
        for template in syntax.templates {
            var list: [Field] = []
            var index: [String: Int] = [:]
            for field in template.fields {
                if let existing = index[field.name.text] {
                    throw .check(
                        field.name.location,
                        "field '\(field.name.text)' is declared twice in template \(template.name.text) (first at "
                            + "\(lineColumn(template.fields[existing].name.location)))")
                }
                index[field.name.text] = list.count
                list.append(Field(name: field.name.text, type: try type(field.type, allowsRecord: false)))
            }
            fields.append(list)
            fieldIndexes.append(index)
        }
        for (number, template) in syntax.templates.enumerated() {
            var list: [Signature] = []
            var index: [String: Int] = [:]
            for choice in template.choices {
                let name = choice.name
                if name.text == Self.archiveChoiceName {
                    throw .check(
                        name.location,
                        "every template already has the choice Archive (consuming, controlled by the signatories); "
                            + "give this choice another name")
                }
                if let existing = index[name.text] {
                    throw .check(
                        name.location,
                        "choice \(name.text) is declared twice in template \(template.name.text) (first at "
                            + "\(lineColumn(template.choices[existing].name.location)))")
                }
                var parameters: [Field] = []
                var parameterIndex: [String: Int] = [:]
                for parameter in choice.parameters {
                    let parameterName = parameter.name
                    if let existing = parameterIndex[parameterName.text] {
                        throw .check(
                            parameterName.location,
                            "parameter '\(parameterName.text)' is declared twice in choice \(name.text) (first at "
                                + "\(lineColumn(choice.parameters[existing].name.location)))")
                    }
                    if fieldIndexes[number][parameterName.text] != nil {
                        throw .check(
                            parameterName.location,
                            "parameter '\(parameterName.text)' of choice \(name.text) has the name of a field of "
                                + "\(template.name.text); choose another name")
                    }
                    parameterIndex[parameterName.text] = parameters.count
                    parameters.append(
                        Field(name: parameterName.text, type: try type(parameter.type, allowsRecord: false)))
                }
                let returnType =
                    try choice.returnType.map { syntax throws(ContractError) in try type(syntax, allowsRecord: false) }
                    ?? .unit
                index[name.text] = list.count
                list.append(
                    Signature(
                        name: name.text, parameters: parameters, parameterIndex: parameterIndex, returnType: returnType)
                )
            }
            index[Self.archiveChoiceName] = list.count
            list.append(Signature(name: Self.archiveChoiceName, parameters: [], parameterIndex: [:], returnType: .unit))
            signatures.append(list)
            choiceIndexes.append(index)
        }
        var result: [Template] = []
        for (number, template) in syntax.templates.enumerated() {
            result.append(try self.template(template, number))
        }
        return result
    }

    private func reference(_ index: Int) -> TemplateRef { TemplateRef(index: index, name: templateNames[index]) }

    private func template(_ syntax: TemplateSyntax, _ number: Int) throws(ContractError) -> Template {
        let name = syntax.name.text
        guard let signatoryClause = syntax.signatories.first else {
            throw .check(
                syntax.name.location,
                "template \(name) has no 'signatory' clause; every contract needs at least one signatory")
        }
        if syntax.signatories.count > 1 {
            throw .check(
                syntax.signatories[1][0].location,
                "template \(name) has a second 'signatory' clause; list every signatory in one: 'signatory a, b;'")
        }
        if syntax.observers.count > 1 {
            throw .check(
                syntax.observers[1][0].location,
                "template \(name) has a second 'observer' clause; list every observer in one: 'observer a, b;'")
        }
        if syntax.ensures.count > 1 {
            throw .check(
                syntax.ensures[1].location,
                "template \(name) has a second 'ensure' clause; join the conditions with '&&'")
        }
        let scope = Scope(template: number)
        let signatories = try partyCodes(signatoryClause, scope, "a signatory")
        let observers = try partyCodes(syntax.observers.first ?? [], scope, "an observer")
        let ensure = try syntax.ensures.first.map { expression throws(ContractError) in
            try check(expression, scope, against: .bool, "the 'ensure' condition of \(name)")
        }
        var choices: [Choice] = []
        for (choiceNumber, choice) in syntax.choices.enumerated() {
            choices.append(try self.choice(choice, signatures[number][choiceNumber], template: number))
        }
        choices.append(
            Choice(
                name: Self.archiveChoiceName, consuming: true, parameters: [], returnType: .unit,
                location: syntax.location, controllers: signatories, observers: [], body: [], localCount: 0))
        return Template(
            name: name, fields: fields[number], choices: choices, location: syntax.location, signatories: signatories,
            observers: observers, ensure: ensure, fieldIndex: fieldIndexes[number], choiceIndex: choiceIndexes[number])
    }

    private func choice(_ syntax: ChoiceSyntax, _ signature: Signature, template: Int) throws(ContractError) -> Choice {
        var scope = Scope(template: template)
        for (index, parameter) in signature.parameters.enumerated() {
            scope.parameters[parameter.name] = (index, parameter.type, syntax.parameters[index].name.location)
        }
        let controllers = try partyCodes(syntax.controllers, scope, "a controller")
        let observers = try partyCodes(syntax.observers, scope, "a choice observer")
        var steps: [Step] = []
        var returned = false
        for statement in syntax.body {
            if returned {
                throw .check(statement.location, "nothing may follow 'return': the choice ends there")
            }
            switch statement.kind {
            case .bind(let name, let annotation, let computation):
                let annotated = try annotation.map { syntax throws(ContractError) in
                    try type(syntax, allowsRecord: true)
                }
                let (operation, found) = try self.computation(computation, scope, expected: annotated)
                if let annotated, found != annotated {
                    throw mismatch(computation, "'let \(name.text)'", expected: annotated, found: found)
                }
                if name.text == "_" {
                    steps.append(.perform(operation))
                    continue
                }
                try checkFresh(name, scope)
                let slot = scope.localCount
                scope.locals[name.text] = (slot, found, name.location)
                scope.localCount += 1
                steps.append(.bind(slot, operation))
            case .perform(let update):
                steps.append(.perform(try self.update(update, scope).0))
            case .assert(let condition, let message):
                let code = try check(condition, scope, against: .bool, "the condition of 'assert'")
                steps.append(.assert(code, message ?? CanonicalForm.expression(condition), statement.location))
            case .return(let computation):
                let (operation, found) = try self.computation(computation, scope, expected: signature.returnType)
                if found != signature.returnType {
                    throw mismatch(
                        computation, "the result of choice \(signature.name) (declared '\(signature.returnType)')",
                        expected: signature.returnType, found: found)
                }
                steps.append(.return(operation))
                returned = true
            }
        }
        if !returned, signature.returnType != .unit {
            throw .check(
                syntax.closingLocation,
                "choice \(signature.name) must end with 'return' and \(article(signature.returnType)) (its declared result "
                    + "type); a choice without a result type returns nothing")
        }
        return Choice(
            name: signature.name, consuming: syntax.consuming, parameters: signature.parameters,
            returnType: signature.returnType, location: syntax.location, controllers: controllers,
            observers: observers, body: steps, localCount: scope.localCount)
    }

    private func checkFresh(_ name: Name, _ scope: Scope) throws(ContractError) {
        let template = templateNames[scope.template]
        if fieldIndexes[scope.template][name.text] != nil {
            throw .check(name.location, "'\(name.text)' is already a field of \(template); choose another name")
        }
        if let parameter = scope.parameters[name.text] {
            throw .check(
                name.location,
                "'\(name.text)' is already a parameter of this choice (at \(lineColumn(parameter.2))); choose another name"
            )
        }
        if let local = scope.locals[name.text] {
            throw .check(
                name.location,
                "'\(name.text)' is already bound by the 'let' at \(lineColumn(local.2)); choose another name")
        }
    }

    // MARK: - Types

    private func type(_ syntax: TypeSyntax, allowsRecord: Bool) throws(ContractError) -> ValueType {
        let name = syntax.name
        func arity(_ count: Int, _ example: String) throws(ContractError) {
            guard syntax.arguments.count == count else {
                throw .check(
                    name.location,
                    count == 0
                        ? "\(name.text) takes no type arguments" : "\(name.text) takes one type argument: \(example)")
            }
        }
        switch name.text {
        case "Party": try arity(0, ""); return .party
        case "Text": try arity(0, ""); return .text
        case "Int": try arity(0, ""); return .int
        case "Decimal": try arity(0, ""); return .decimal
        case "Bool": try arity(0, ""); return .bool
        case "Time": try arity(0, ""); return .time
        case "Unit": try arity(0, ""); return .unit
        case "List":
            try arity(1, "List<Party>")
            return .list(try type(syntax.arguments[0], allowsRecord: allowsRecord))
        case "ContractId":
            try arity(1, "ContractId<Iou>")
            let argument = syntax.arguments[0]
            guard argument.arguments.isEmpty, let index = templateIndex[argument.name.text] else {
                throw .check(
                    argument.name.location,
                    "ContractId<…> takes the name of a template of this package, found '\(argument.name.text)'"
                        + suggestion(argument.name.text, templateNames)
                        + " (its templates: \(templateNames.joined(separator: ", ")))")
            }
            return .contractID(reference(index))
        default:
            if let index = templateIndex[name.text] {
                try arity(0, "")
                guard allowsRecord else {
                    throw .check(
                        name.location,
                        "a field or parameter cannot hold a whole \(name.text) contract; hold its id: ContractId<\(name.text)>"
                    )
                }
                return .record(reference(index))
            }
            throw .check(
                name.location,
                "unknown type '\(name.text)'" + suggestion(name.text, Self.builtinTypeNames + templateNames)
                    + " (the types are Party, Text, Int, Decimal, Bool, Time, ContractId<T>, List<T> and, where a "
                    + "whole contract is meant, the package's template names)")
        }
    }

    // MARK: - Statements

    private func computation(_ computation: Computation, _ scope: Scope, expected: ValueType?) throws(ContractError)
        -> (
            Operation, ValueType
        )
    {
        switch computation {
        case .pure(let expression):
            let (code, type) = try infer(expression, scope, expected: expected)
            return (.pure(code), type)
        case .update(let update):
            return try self.update(update, scope)
        }
    }

    private func update(_ update: Update, _ scope: Scope) throws(ContractError) -> (Operation, ValueType) {
        switch update.kind {
        case .create(let name, let assignments):
            guard let template = templateIndex[name.text] else {
                throw .check(
                    name.location, "unknown template '\(name.text)'" + suggestion(name.text, templateNames))
            }
            let codes = try assign(
                assignments, to: fields[template], fieldIndexes[template], scope, owner: "template \(name.text)",
                kind: "field",
                missing: (
                    update.location,
                    "'create \(name.text) { … }' gives every field; copy a record with 'create this with { … }' to change only some"
                ))
            return (
                .create(template: template, fields: codes.map { $0! }, update.location),
                .contractID(reference(template))
            )
        case .createWith(let base, let assignments):
            let (baseCode, baseType) = try infer(base, scope, expected: nil)
            guard case .record(let reference) = baseType else {
                throw .check(
                    base.location,
                    "'create … with' copies a record ('this' or a fetched contract), found \(article(baseType))")
            }
            let template = reference.index
            let given = try assign(
                assignments, to: fields[template], fieldIndexes[template], scope, owner: "template \(reference.name)",
                kind: "field", missing: nil)
            var codes: [Code] = []
            for (index, code) in given.enumerated() {
                if let code {
                    codes.append(code)
                } else if case .this = baseCode {
                    codes.append(.field(index))
                } else {
                    codes.append(.recordField(baseCode, index))
                }
            }
            return (.create(template: template, fields: codes, update.location), .contractID(reference))
        case .exercise(let contract, let choiceName, let assignments):
            let (contractCode, template) = try contractID(contract, scope, "'exercise'")
            guard let choice = choiceIndexes[template.index][choiceName.text] else {
                let names = signatures[template.index].map(\.name)
                throw .check(
                    choiceName.location,
                    "template \(template.name) has no choice '\(choiceName.text)'" + suggestion(choiceName.text, names)
                        + " (its choices: \(names.joined(separator: ", ")))")
            }
            let signature = signatures[template.index][choice]
            let codes = try assign(
                assignments, to: signature.parameters, signature.parameterIndex, scope,
                owner: "choice \(signature.name)", kind: "argument",
                missing: (update.location, "'exercise' gives every argument of the choice"))
            return (
                .exercise(
                    template: template.index, contract: contractCode, choice: choice, arguments: codes.map { $0! },
                    update.location),
                signature.returnType
            )
        case .fetch(let contract):
            let (contractCode, template) = try contractID(contract, scope, "'fetch'")
            return (.fetch(template: template.index, contract: contractCode, update.location), .record(template))
        case .archive(let contract):
            let (contractCode, template) = try contractID(contract, scope, "'archive'")
            let archive = choiceIndexes[template.index][Self.archiveChoiceName]!
            return (
                .exercise(
                    template: template.index, contract: contractCode, choice: archive, arguments: [], update.location),
                .unit
            )
        }
    }

    private func contractID(_ expression: Expression, _ scope: Scope, _ what: String) throws(ContractError) -> (
        Code, TemplateRef
    ) {
        let (code, type) = try infer(expression, scope, expected: nil)
        guard case .contractID(let template) = type else {
            throw .check(expression.location, "\(what) needs a ContractId, found \(article(type))")
        }
        return (code, template)
    }

    /// Checks `name = value` assignments against `fields`; returns one code
    /// per field, nil where none was given (an error, located and explained
    /// by `missing`, when that is set).
    private func assign(
        _ assignments: [FieldAssignment], to fields: [Field], _ index: [String: Int], _ scope: Scope, owner: String,
        kind: String, missing: (SourceLocation, String)?
    ) throws(ContractError) -> [Code?] {
        var codes = [Code?](repeating: nil, count: fields.count)
        for assignment in assignments {
            let name = assignment.name
            guard let position = index[name.text] else {
                throw .check(
                    name.location,
                    "\(owner) has no \(kind) '\(name.text)'" + suggestion(name.text, fields.map(\.name))
                        + (fields.isEmpty
                            ? " (it has none)" : " (its \(kind)s: \(fields.map(\.name).joined(separator: ", ")))"))
            }
            if codes[position] != nil {
                throw .check(name.location, "\(kind) '\(name.text)' is given twice")
            }
            codes[position] = try check(
                assignment.value, scope, against: fields[position].type, "\(kind) '\(name.text)' of \(owner)")
        }
        if let (location, rule) = missing {
            let absent = fields.indices.filter { codes[$0] == nil }.map { "'\(fields[$0].name)'" }
            if !absent.isEmpty {
                throw .check(
                    location,
                    "\(kind) \(absent.joined(separator: ", ")) of \(owner) \(absent.count == 1 ? "is" : "are") missing; "
                        + rule)
            }
        }
        return codes
    }

    private func partyCodes(_ expressions: [Expression], _ scope: Scope, _ what: String) throws(ContractError)
        -> [PartyCode]
    {
        var result: [PartyCode] = []
        for expression in expressions {
            let (code, type) = try infer(expression, scope, expected: isEmptyList(expression) ? .list(.party) : nil)
            switch type {
            case .party: result.append(PartyCode(code: code, isList: false))
            case .list(.party): result.append(PartyCode(code: code, isList: true))
            default:
                throw .check(expression.location, "\(what) must be a Party or a List<Party>, found \(article(type))")
            }
        }
        return result
    }

    // MARK: - Expressions

    private struct Scope {
        let template: Int
        var parameters: [String: (Int, ValueType, SourceLocation)] = [:]
        var locals: [String: (Int, ValueType, SourceLocation)] = [:]
        var localCount = 0

        init(template: Int) { self.template = template }
    }

    private func check(_ expression: Expression, _ scope: Scope, against expected: ValueType, _ what: String)
        throws(ContractError) -> Code
    {
        let (code, found) = try infer(expression, scope, expected: expected)
        guard found == expected else { throw mismatch(.pure(expression), what, expected: expected, found: found) }
        return code
    }

    private func mismatch(_ computation: Computation, _ what: String, expected: ValueType, found: ValueType)
        -> ContractError
    {
        let location: SourceLocation
        var hint = ""
        switch computation {
        case .pure(let expression):
            location = expression.location
            if expected == .decimal, case .integer(let value) = expression.kind {
                hint = "; write \(value).0 for a Decimal"
            }
        case .update(let update):
            location = update.location
        }
        return .check(location, "\(what) must be \(article(expected)), found \(article(found))\(hint)")
    }

    private func isEmptyList(_ expression: Expression) -> Bool {
        if case .list(let elements) = expression.kind { return elements.isEmpty }
        return false
    }

    private func infer(_ expression: Expression, _ scope: Scope, expected: ValueType?) throws(ContractError) -> (
        Code, ValueType
    ) {
        let location = expression.location
        switch expression.kind {
        case .integer(let value): return (.constant(.int(value)), .int)
        case .decimal(let value): return (.constant(.decimal(value)), .decimal)
        case .text(let value): return (.constant(.text(value)), .text)
        case .bool(let value): return (.constant(.bool(value)), .bool)
        case .this: return (.this, .record(reference(scope.template)))
        case .name(let name):
            if let local = scope.locals[name] { return (.local(local.0), local.1) }
            if let parameter = scope.parameters[name] { return (.argument(parameter.0), parameter.1) }
            if let field = fieldIndexes[scope.template][name] {
                return (.field(field), fields[scope.template][field].type)
            }
            let candidates =
                Array(scope.locals.keys) + Array(scope.parameters.keys) + fields[scope.template].map(\.name)
            throw .check(
                location,
                "unknown name '\(name)'" + suggestion(name, candidates)
                    + " (in scope: \(candidates.sorted().joined(separator: ", ")))")
        case .field(let base, let name):
            let (baseCode, baseType) = try infer(base, scope, expected: nil)
            guard case .record(let template) = baseType else {
                if case .contractID(let template) = baseType {
                    throw .check(
                        name.location,
                        "'.\(name.text)' reads a field of a record, but this is a ContractId<\(template.name)>; fetch "
                            + "the contract first: 'let c = fetch cid;'")
                }
                throw .check(
                    name.location,
                    "only records ('this' or a fetched contract) have fields; this is \(article(baseType))")
            }
            guard let index = fieldIndexes[template.index][name.text] else {
                let names = fields[template.index].map(\.name)
                throw .check(
                    name.location,
                    "\(template.name) has no field '\(name.text)'" + suggestion(name.text, names)
                        + " (its fields: \(names.joined(separator: ", ")))")
            }
            if case .this = baseCode { return (.field(index), fields[template.index][index].type) }
            return (.recordField(baseCode, index), fields[template.index][index].type)
        case .list(let elements):
            if case .list(let element) = expected {
                var codes: [Code] = []
                for item in elements { codes.append(try check(item, scope, against: element, "a list element")) }
                return (.list(codes), .list(element))
            }
            guard let first = elements.first else {
                throw .check(
                    location,
                    "the element type of this empty list is unknown here; annotate it: 'let xs: List<Party> = [];'")
            }
            let (firstCode, element) = try infer(first, scope, expected: nil)
            var codes = [firstCode]
            for item in elements.dropFirst() {
                codes.append(try check(item, scope, against: element, "every element of this list (like the first)"))
            }
            return (.list(codes), .list(element))
        case .unary(.not, let operand):
            return (.not(try check(operand, scope, against: .bool, "the operand of '!'")), .bool)
        case .unary(.negate, let operand):
            let (code, type) = try infer(operand, scope, expected: nil)
            switch type {
            case .int: return (.negateInt(code, location), .int)
            case .decimal: return (.negateDecimal(code), .decimal)
            default: throw .check(location, "'-' negates an Int or a Decimal, found \(article(type))")
            }
        case .conditional(let condition, let whenTrue, let whenFalse):
            let conditionCode = try check(condition, scope, against: .bool, "the condition of 'if'")
            let (trueCode, trueType, falseCode, falseType) = try operands(
                whenTrue, whenFalse, scope, expected: expected)
            guard trueType == falseType else {
                throw .check(
                    whenFalse.location,
                    "both branches of 'if' must have the same type; 'then' is \(article(trueType)), 'else' \(article(falseType))"
                )
            }
            return (.conditional(conditionCode, trueCode, falseCode), trueType)
        case .binary(let op, let left, let right):
            return try binary(op, left, right, scope, location)
        }
    }

    /// Infers two expressions that must share a type; an empty list takes
    /// its type from the other side.
    private func operands(_ left: Expression, _ right: Expression, _ scope: Scope, expected: ValueType?)
        throws(ContractError) -> (Code, ValueType, Code, ValueType)
    {
        if isEmptyList(left), !isEmptyList(right), expected == nil {
            let (rightCode, rightType) = try infer(right, scope, expected: nil)
            let (leftCode, leftType) = try infer(left, scope, expected: rightType)
            return (leftCode, leftType, rightCode, rightType)
        }
        let (leftCode, leftType) = try infer(left, scope, expected: expected)
        let (rightCode, rightType) = try infer(right, scope, expected: leftType)
        return (leftCode, leftType, rightCode, rightType)
    }

    private func binary(
        _ op: BinaryOperator, _ left: Expression, _ right: Expression, _ scope: Scope, _ location: SourceLocation
    )
        throws(ContractError) -> (Code, ValueType)
    {
        switch op {
        case .and, .or:
            let leftCode = try check(left, scope, against: .bool, "the left side of '\(op.rawValue)'")
            let rightCode = try check(right, scope, against: .bool, "the right side of '\(op.rawValue)'")
            return (op == .and ? .and(leftCode, rightCode) : .or(leftCode, rightCode), .bool)
        case .member:
            if isEmptyList(left) {
                let (rightCode, rightType) = try infer(right, scope, expected: nil)
                guard case .list(let element) = rightType else {
                    throw .check(right.location, "'in' needs a list on its right, found \(article(rightType))")
                }
                return (.member(try check(left, scope, against: element, "the left side of 'in'"), rightCode), .bool)
            }
            let (leftCode, leftType) = try infer(left, scope, expected: nil)
            let (rightCode, rightType) = try infer(right, scope, expected: .list(leftType))
            guard rightType == .list(leftType) else {
                throw .check(
                    right.location,
                    "'in' looks for \(article(leftType)) in a List<\(leftType)>, found \(article(rightType)) on its right"
                )
            }
            return (.member(leftCode, rightCode), .bool)
        default:
            break
        }
        let (leftCode, leftType, rightCode, rightType) = try operands(left, right, scope, expected: nil)
        guard leftType == rightType else {
            var hint = ""
            if leftType == .decimal, case .integer(let value) = right.kind { hint = "; write \(value).0 for a Decimal" }
            if rightType == .decimal, case .integer(let value) = left.kind { hint = "; write \(value).0 for a Decimal" }
            throw .check(
                location,
                "'\(op.rawValue)' needs two values of one type, found \(article(leftType)) and \(article(rightType))\(hint)"
            )
        }
        let type = leftType
        switch op {
        case .equal: return (.equal(leftCode, rightCode), .bool)
        case .notEqual: return (.notEqual(leftCode, rightCode), .bool)
        case .less, .lessEqual, .greater, .greaterEqual:
            switch type {
            case .int, .decimal, .text, .time, .party: break
            default:
                throw .check(location, "'\(op.rawValue)' orders Int, Decimal, Text, Time or Party values, not \(type)")
            }
            let comparison: Comparison =
                switch op {
                case .less: .less
                case .lessEqual: .lessEqual
                case .greater: .greater
                default: .greaterEqual
                }
            return (.compare(comparison, leftCode, rightCode), .bool)
        case .add:
            let operation: Arithmetic
            switch type {
            case .int: operation = .addInt
            case .decimal: operation = .addDecimal
            case .text: operation = .concatenateText
            case .list: operation = .concatenateList
            default: throw .check(location, "'+' adds Int or Decimal values and joins Text or lists, not \(type)")
            }
            return (.arithmetic(operation, leftCode, rightCode, location), type)
        case .subtract, .multiply, .divide:
            let operation: Arithmetic
            switch (op, type) {
            case (.subtract, .int): operation = .subtractInt
            case (.subtract, .decimal): operation = .subtractDecimal
            case (.multiply, .int): operation = .multiplyInt
            case (.multiply, .decimal): operation = .multiplyDecimal
            case (.divide, .int): operation = .divideInt
            case (.divide, .decimal): operation = .divideDecimal
            default: throw .check(location, "'\(op.rawValue)' works on Int or Decimal values, not \(type)")
            }
            return (.arithmetic(operation, leftCode, rightCode, location), type)
        case .remainder:
            guard type == .int else { throw .check(location, "'%' works on Int values only, not \(type)") }
            return (.arithmetic(.remainderInt, leftCode, rightCode, location), .int)
        case .and, .or, .member:
            preconditionFailure("handled above")
        }
    }

    private func lineColumn(_ location: SourceLocation) -> String { "\(location.line):\(location.column)" }
}

/// `type` with its indefinite article: "an Int", "a Party".
func article(_ type: ValueType) -> String { (type == .int ? "an " : "a ") + type.description }

/// `; did you mean 'x'?` when one of `candidates` is a likely typo of
/// `name`, else nothing.
func suggestion(_ name: String, _ candidates: [String]) -> String {
    let target = Array(name.unicodeScalars)
    var best: (String, Int)?
    for candidate in Set(candidates) where candidate != name {
        let distance = editDistance(target, Array(candidate.unicodeScalars))
        if distance <= max(1, target.count / 3),
            distance < best?.1 ?? Int.max || (distance == best?.1 && candidate < best!.0)
        {
            best = (candidate, distance)
        }
    }
    return best.map { "; did you mean '\($0.0)'?" } ?? ""
}

private func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
    var previous = Array(0...b.count)
    for (i, x) in a.enumerated() {
        var current = [i + 1] + [Int](repeating: 0, count: b.count)
        for (j, y) in b.enumerated() {
            current[j + 1] = min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
