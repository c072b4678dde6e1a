/// Prints a parsed package in its canonical form: one layout, no comments,
/// only the parentheses precedence needs, ASCII-only literals. The package
/// id hashes this text, so reformatting a package never changes its id,
/// and the canonical form parses back to itself.
enum CanonicalForm {
    static func package(_ syntax: PackageSyntax) -> String {
        var out = "package \(syntax.name.text);\n"
        for template in syntax.templates {
            out += "\ntemplate \(template.name.text) {\n"
            for field in template.fields { out += "    \(field.name.text): \(type(field.type));\n" }
            for clause in template.signatories { out += "    signatory \(list(clause));\n" }
            for clause in template.observers { out += "    observer \(list(clause));\n" }
            for condition in template.ensures { out += "    ensure \(expression(condition));\n" }
            for choice in template.choices {
                out += "\n    \(choice.consuming ? "" : "nonconsuming ")choice \(choice.name.text)("
                out += choice.parameters.map { "\($0.name.text): \(type($0.type))" }.joined(separator: ", ") + ")"
                if let result = choice.returnType, !(result.name.text == "Unit" && result.arguments.isEmpty) {
                    out += ": \(type(result))"
                }
                out += "\n        controller \(list(choice.controllers))\n"
                if !choice.observers.isEmpty { out += "        observer \(list(choice.observers))\n" }
                out += "    {\n"
                for statement in choice.body { out += "        \(self.statement(statement))\n" }
                out += "    }\n"
            }
            out += "}\n"
        }
        return out
    }

    static func type(_ syntax: TypeSyntax) -> String {
        syntax.arguments.isEmpty
            ? syntax.name.text : syntax.name.text + "<" + syntax.arguments.map(type).joined(separator: ", ") + ">"
    }

    private static func list(_ expressions: [Expression]) -> String {
        expressions.map { expression($0) }.joined(separator: ", ")
    }

    private static func statement(_ statement: Statement) -> String {
        switch statement.kind {
        case .bind(let name, let annotation, let value):
            "let \(name.text)\(annotation.map { ": " + type($0) } ?? "") = \(computation(value));"
        case .perform(let update): self.update(update) + ";"
        case .assert(let condition, let message):
            "assert \(expression(condition))\(message.map { ", " + quoted($0) } ?? "");"
        case .return(let value): "return \(computation(value));"
        }
    }

    private static func computation(_ computation: Computation) -> String {
        switch computation {
        case .pure(let value): expression(value)
        case .update(let update): self.update(update)
        }
    }

    private static func update(_ update: Update) -> String {
        switch update.kind {
        case .create(let template, let fields): "create \(template.text) \(assignments(fields))"
        case .createWith(let base, let fields): "create \(expression(base, 7)) with \(assignments(fields))"
        case .exercise(let contract, let choice, let arguments):
            "exercise \(expression(contract, 7)) \(choice.text)"
                + (arguments.isEmpty ? "" : " " + assignments(arguments))
        case .fetch(let contract): "fetch \(expression(contract))"
        case .archive(let contract): "archive \(expression(contract))"
        }
    }

    private static func assignments(_ assignments: [FieldAssignment]) -> String {
        assignments.isEmpty
            ? "{}"
            : "{ " + assignments.map { "\($0.name.text) = \(expression($0.value))" }.joined(separator: ", ") + " }"
    }

    /// `expression` printed where an operator of `precedence` binds it:
    /// 0 at the top, 1–5 the binary operators, 6 a unary operand, 7 the base
    /// of `.field`.
    static func expression(_ expression: Expression, _ precedence: Int = 0) -> String {
        func parenthesized(_ text: String, when condition: Bool) -> String { condition ? "(" + text + ")" : text }
        switch expression.kind {
        case .integer(let value): return parenthesized(String(value), when: value < 0 && precedence >= 6)
        case .decimal(let value): return parenthesized(value.literalText, when: value.units < 0 && precedence >= 6)
        case .text(let value): return quoted(value)
        case .bool(let value): return value ? "true" : "false"
        case .name(let name): return name
        case .this: return "this"
        case .field(let base, let name): return self.expression(base, 7) + "." + name.text
        case .list(let elements): return "[" + elements.map { self.expression($0) }.joined(separator: ", ") + "]"
        case .unary(let op, let operand):
            return parenthesized(op.rawValue + self.expression(operand, 6), when: precedence >= 7)
        case .binary(let op, let left, let right):
            // Left-associative; comparisons do not associate at all.
            let leftText = self.expression(left, op.isComparison ? op.precedence + 1 : op.precedence)
            let text = leftText + " " + op.rawValue + " " + self.expression(right, op.precedence + 1)
            return parenthesized(text, when: op.precedence < precedence)
        case .conditional(let condition, let whenTrue, let whenFalse):
            let text =
                "if " + self.expression(condition) + " then " + self.expression(whenTrue) + " else "
                + self.expression(whenFalse)
            return parenthesized(text, when: precedence > 0)
        }
    }
}
