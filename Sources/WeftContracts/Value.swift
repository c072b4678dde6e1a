/// A value of the contract language: a contract's fields, a choice's
/// arguments and result, anything an expression computes.
///
/// Records are positional: field `i` of a template's record is its `i`-th
/// declared field, so the interpreter never looks a field up by name.
/// `Package.record(_:_:)` builds one from labels.
public enum Value: Sendable, Equatable, CustomStringConvertible {
    case unit
    case bool(Bool)
    /// 64-bit signed; overflow is an error, never a wrap.
    case int(Int64)
    case decimal(FixedDecimal)
    case text(String)
    case party(Party)
    /// Microseconds since 1970-01-01T00:00:00Z.
    case time(Int64)
    case contractID(ContractID)
    case list([Value])
    /// A template's fields (or a choice's arguments) in declaration order.
    case record([Value])

    /// Structural equality; `Text` compares UTF-8 bytes, not Unicode
    /// canonical equivalence, so that every validator agrees.
    public static func == (lhs: Value, rhs: Value) -> Bool {
        switch (lhs, rhs) {
        case (.unit, .unit): true
        case (.bool(let a), .bool(let b)): a == b
        case (.int(let a), .int(let b)): a == b
        case (.decimal(let a), .decimal(let b)): a == b
        case (.text(let a), .text(let b)): a.utf8.elementsEqual(b.utf8)
        case (.party(let a), .party(let b)): a == b
        case (.time(let a), .time(let b)): a == b
        case (.contractID(let a), .contractID(let b)): a == b
        case (.list(let a), .list(let b)), (.record(let a), .record(let b)): a == b
        default: false
        }
    }

    public var description: String {
        switch self {
        case .unit: "()"
        case .bool(let value): value ? "true" : "false"
        case .int(let value): String(value)
        case .decimal(let value): value.literalText
        case .text(let value): quoted(value)
        case .party(let value): "'" + value.id + "'"
        case .time(let value): "time(\(value)µs)"
        case .contractID(let value): "#" + value.description.prefix(12)
        case .list(let values): "[" + values.map(\.description).joined(separator: ", ") + "]"
        case .record(let values): "{" + values.map(\.description).joined(separator: ", ") + "}"
        }
    }

    /// Most bytes of a value that an error message prints (`description(bytesMax:)`).
    ///
    /// Values that pass every `InterpreterLimits` bound can still print as gigabytes: a list
    /// of a thousand copies of one 64 KiB Text holds one Text in memory, and a failing
    /// `ensure` or a malformed command would otherwise spell out every copy.
    public static let errorDescriptionBytesMax = 4_096

    /// `description`, cut once about `bytesMax` bytes are written: a longer Text ends in
    /// `…"` followed by its size, a list or record in `… N more` elements.
    ///
    /// It reads only what it prints, so it costs at most about `bytesMax` whatever the value
    /// holds; the closing brackets and counts it adds take a few bytes per nesting level
    /// beyond `bytesMax`.
    public func description(bytesMax: Int) -> String {
        var writer = BoundedWriter(remaining: bytesMax)
        writer.write(self)
        return writer.output
    }
}

/// Prints values until its budget is spent, then elides the rest (`Value.description(bytesMax:)`).
private struct BoundedWriter {
    var output = ""
    var remaining: Int

    mutating func append(_ text: String) {
        output += text
        remaining -= text.utf8.count
    }

    mutating func write(_ value: Value) {
        switch value {
        case .text(let text): writeText(text)
        case .list(let values): writeElements(values, open: "[", close: "]")
        case .record(let values): writeElements(values, open: "{", close: "}")
        case .unit, .bool, .int, .decimal, .party, .time, .contractID: append(value.description)
        }
    }

    /// The text quoted, up to the budget: escapes can make a scalar print as ten bytes, so
    /// the budget counts what is printed, and a long Text is never copied whole.
    private mutating func writeText(_ text: String) {
        var printed = "\""
        for scalar in text.unicodeScalars {
            var piece = ""
            appendEscaped(scalar, to: &piece)
            guard printed.utf8.count + piece.utf8.count <= remaining else {
                return append(printed + "…\" (\(text.utf8.count) bytes)")
            }
            printed += piece
        }
        append(printed + "\"")
    }

    private mutating func writeElements(_ values: [Value], open: String, close: String) {
        append(open)
        for (index, value) in values.enumerated() {
            if index > 0 { append(", ") }
            guard remaining > 0 else {
                append("… \(values.count - index) more")
                break
            }
            write(value)
        }
        append(close)
    }
}

/// A template of the package a type belongs to: its index there, and its
/// name for messages.
public struct TemplateRef: Hashable, Sendable {
    public let index: Int
    public let name: String
}

/// A type of the contract language.
public indirect enum ValueType: Hashable, Sendable, CustomStringConvertible {
    case unit
    case bool
    case int
    case decimal
    case text
    case party
    case time
    case contractID(TemplateRef)
    case list(ValueType)
    /// The record of a template's fields: what `fetch` returns and `this` is.
    case record(TemplateRef)

    public var description: String {
        switch self {
        case .unit: "Unit"
        case .bool: "Bool"
        case .int: "Int"
        case .decimal: "Decimal"
        case .text: "Text"
        case .party: "Party"
        case .time: "Time"
        case .contractID(let template): "ContractId<\(template.name)>"
        case .list(let element): "List<\(element)>"
        case .record(let template): template.name
        }
    }
}

/// `text` as a language literal, with `\"`, `\\`, `\n`, `\t` and `\u{…}`
/// escapes for everything else outside printable ASCII.
func quoted(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars { appendEscaped(scalar, to: &result) }
    return result + "\""
}

/// `scalar` as it appears inside a language literal (`quoted(_:)`).
private func appendEscaped(_ scalar: Unicode.Scalar, to result: inout String) {
    switch scalar {
    case "\"": result += "\\\""
    case "\\": result += "\\\\"
    case "\n": result += "\\n"
    case "\t": result += "\\t"
    case " "..."~": result.unicodeScalars.append(scalar)
    default: result += "\\u{" + String(scalar.value, radix: 16) + "}"
    }
}
