/// Reserved words of the language.
enum Keyword: String, CaseIterable, Sendable {
    case package, template, choice, nonconsuming, controller, observer, signatory, ensure
    case `let`, create, exercise, fetch, archive, assert, `return`, with, this
    case `true`, `false`, `if`, then, `else`, `in`
}

/// Punctuation and operators.
enum Symbol: String, CaseIterable, Sendable {
    case leftBrace = "{", rightBrace = "}", leftParen = "(", rightParen = ")"
    case leftBracket = "[", rightBracket = "]", comma = ",", semicolon = ";", colon = ":", dot = "."
    case equals = "=", equalEqual = "==", notEqual = "!=", less = "<", lessEqual = "<=", greater = ">"
    case greaterEqual = ">=", plus = "+", minus = "-", star = "*", slash = "/", percent = "%", bang = "!"
    case andAnd = "&&", orOr = "||"
}

enum Token: Equatable, Sendable {
    case identifier(String)
    case keyword(Keyword)
    /// The magnitude of an integer literal; 2⁶³ is valid only after `-`.
    case integer(UInt64)
    case decimal(FixedDecimal)
    case text(String)
    case symbol(Symbol)
    case end

    /// How an error message names the token: `'choice'`, `identifier 'foo'`.
    var described: String {
        switch self {
        case .identifier(let name): "identifier '\(name)'"
        case .keyword(let keyword): "'\(keyword.rawValue)'"
        case .integer(let value): "the number \(value)"
        case .decimal(let value): "the number \(value.literalText)"
        case .text(let value): "the text \(quoted(value))"
        case .symbol(let symbol): "'\(symbol.rawValue)'"
        case .end: "the end of the file"
        }
    }
}

struct Lexeme: Sendable {
    var token: Token
    var line: Int
    var column: Int
    /// Just past the lexeme's last character.
    var endLine: Int
    var endColumn: Int
}

/// Turns package text into lexemes with their line and column.
struct Lexer {
    /// Longest identifier, in bytes.
    static let identifierBytesMax = 100

    private let bytes: [UInt8]
    private let file: String
    private var index = 0
    private var line = 1
    private var column = 1

    init(source: String, file: String) {
        bytes = Array(source.utf8)
        self.file = file
    }

    static func tokenize(_ source: String, file: String) throws(ContractError) -> [Lexeme] {
        var lexer = Lexer(source: source, file: file)
        var lexemes: [Lexeme] = []
        while true {
            let lexeme = try lexer.next()
            lexemes.append(lexeme)
            if lexeme.token == .end { return lexemes }
        }
    }

    private func error(_ message: String, line: Int? = nil, column: Int? = nil) -> ContractError {
        .syntax(SourceLocation(file: file, line: line ?? self.line, column: column ?? self.column), message)
    }

    private func peek(_ offset: Int = 0) -> UInt8? {
        index + offset < bytes.count ? bytes[index + offset] : nil
    }

    /// Moves past one byte; columns count Unicode scalars, so UTF-8
    /// continuation bytes do not advance the column.
    private mutating func advance() {
        let byte = bytes[index]
        index += 1
        if byte == UInt8(ascii: "\n") {
            line += 1
            column = 1
        } else if byte & 0xC0 != 0x80 {
            column += 1
        }
    }

    private mutating func skipTrivia() {
        while let byte = peek() {
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n")
                || byte == UInt8(ascii: "\r")
            {
                advance()
            } else if byte == UInt8(ascii: "/"), peek(1) == UInt8(ascii: "/") {
                while let next = peek(), next != UInt8(ascii: "\n") { advance() }
            } else {
                return
            }
        }
    }

    mutating func next() throws(ContractError) -> Lexeme {
        skipTrivia()
        let startLine = line
        let startColumn = column
        func lexeme(_ token: Token) -> Lexeme {
            Lexeme(token: token, line: startLine, column: startColumn, endLine: line, endColumn: column)
        }
        guard let byte = peek() else { return lexeme(.end) }

        if isLetter(byte) || byte == UInt8(ascii: "_") {
            let start = index
            while let next = peek(), isLetter(next) || isDigit(next) || next == UInt8(ascii: "_") { advance() }
            guard index - start <= Self.identifierBytesMax else {
                throw error(
                    "an identifier has at most \(Self.identifierBytesMax) characters", line: startLine,
                    column: startColumn)
            }
            let name = String(decoding: bytes[start..<index], as: UTF8.self)
            return lexeme(Keyword(rawValue: name).map(Token.keyword) ?? .identifier(name))
        }
        if isDigit(byte) { return lexeme(try number(line: startLine, column: startColumn)) }
        if byte == UInt8(ascii: "\"") { return lexeme(.text(try text(line: startLine, column: startColumn))) }

        // Two-character symbols first.
        if let second = peek(1) {
            let pair = String(decoding: [byte, second], as: UTF8.self)
            if let symbol = Symbol(rawValue: pair) {
                advance()
                advance()
                return lexeme(.symbol(symbol))
            }
        }
        if byte < 0x80, let symbol = Symbol(rawValue: String(UnicodeScalar(byte))) {
            advance()
            return lexeme(.symbol(symbol))
        }
        if byte == UInt8(ascii: "&") || byte == UInt8(ascii: "|") {
            let character = String(UnicodeScalar(byte))
            throw error("unexpected character '\(character)'; did you mean '\(character)\(character)'?")
        }
        throw error("unexpected character \(describe(scalarAt: index))")
    }

    private func describe(scalarAt start: Int) -> String {
        var end = start + 1
        while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end += 1 }
        let text = String(decoding: bytes[start..<end], as: UTF8.self)
        guard let scalar = text.unicodeScalars.first else { return "(invalid UTF-8)" }
        return "'\(text)' (U+\(String(scalar.value, radix: 16, uppercase: true)))"
    }

    private mutating func number(line: Int, column: Int) throws(ContractError) -> Token {
        let start = index
        while let next = peek(), isDigit(next) { advance() }
        if peek() == UInt8(ascii: "."), let after = peek(1), isDigit(after) {
            advance()
            let fractionStart = index
            while let next = peek(), isDigit(next) { advance() }
            if index - fractionStart > FixedDecimal.scale {
                throw error(
                    "a Decimal has at most \(FixedDecimal.scale) digits after the point", line: line, column: column)
            }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            guard let value = FixedDecimal(text) else {
                throw error(
                    "the Decimal \(text) is out of range (at most 28 digits before the point)", line: line,
                    column: column)
            }
            return .decimal(value)
        }
        if let next = peek(), isLetter(next) || next == UInt8(ascii: "_") {
            throw error("a number must not run into a name; put a space or an operator between them")
        }
        var value: UInt64 = 0
        for digit in bytes[start..<index] {
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            guard !overflow1, !overflow2, sum <= UInt64(Int64.max) + 1 else {
                throw error(
                    "the Int \(String(decoding: bytes[start..<index], as: UTF8.self)) is out of range "
                        + "(an Int is 64 bits: -9223372036854775808 to 9223372036854775807)", line: line, column: column
                )
            }
            value = sum
        }
        return .integer(value)
    }

    private mutating func text(line: Int, column: Int) throws(ContractError) -> String {
        advance()  // the opening quote
        var result: [UInt8] = []
        while true {
            guard let byte = peek(), byte != UInt8(ascii: "\n") else {
                throw error("this text has no closing '\"' on its line", line: line, column: column)
            }
            if byte == UInt8(ascii: "\"") {
                advance()
                return String(decoding: result, as: UTF8.self)
            }
            guard byte == UInt8(ascii: "\\") else {
                result.append(byte)
                advance()
                continue
            }
            let escapeLine = self.line
            let escapeColumn = self.column
            advance()
            switch peek() {
            case UInt8(ascii: "\""): result.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): result.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "n"): result.append(UInt8(ascii: "\n"))
            case UInt8(ascii: "t"): result.append(UInt8(ascii: "\t"))
            case UInt8(ascii: "u") where peek(1) == UInt8(ascii: "{"):
                advance()
                advance()
                var value: UInt32 = 0
                var digits = 0
                while let next = peek(), let digit = hexDigit(next), digits < 6 {
                    value = value << 4 | UInt32(digit)
                    digits += 1
                    advance()
                }
                guard digits > 0, peek() == UInt8(ascii: "}"), let scalar = Unicode.Scalar(value) else {
                    throw error(
                        "expected 1 to 6 hex digits and '}' in a \\u{…} escape naming a Unicode scalar",
                        line: escapeLine, column: escapeColumn)
                }
                result.append(contentsOf: String(scalar).utf8)
            default:
                throw error(
                    "unknown escape; the escapes are \\\" \\\\ \\n \\t and \\u{…}", line: escapeLine,
                    column: escapeColumn)
            }
            advance()
        }
    }
}

private func isLetter(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
}

private func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }

private func hexDigit(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}
