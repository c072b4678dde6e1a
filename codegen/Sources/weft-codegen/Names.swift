// How protobuf-c names the C side of a schema, and how Weft names the Swift
// side. The C rules mirror protoc-c 1.4's c_helpers.cc; a mismatch shows up as
// a compile error in the generated Swift, never as silent misbehaviour.

enum CNames {
    /// protoc-c appends `_` to field names that are C or C++ keywords.
    static let keywords: Set<String> = [
        "NULL", "alignas", "alignof", "and", "and_eq", "asm", "auto", "bitand", "bitor", "bool",
        "break", "case", "catch", "char", "class", "compl", "const", "constexpr", "const_cast",
        "continue", "decltype", "default", "delete", "do", "double", "dynamic_cast", "else",
        "enum", "explicit", "export", "extern", "false", "float", "for", "friend", "goto", "if",
        "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "not_eq",
        "nullptr", "operator", "or", "or_eq", "private", "protected", "public", "register",
        "reinterpret_cast", "return", "short", "signed", "sizeof", "static", "static_assert",
        "static_cast", "struct", "switch", "template", "this", "thread_local", "throw", "true",
        "try", "typedef", "typeid", "typename", "union", "unsigned", "using", "virtual", "void",
        "volatile", "wchar_t", "while", "xor", "xor_eq",
    ]

    /// `weft.v1.FrameOpen` → `Weft__V1__FrameOpen`.
    static func structName(_ fullName: String) -> String {
        fullName.split(separator: ".").map { part in
            part.prefix(1).uppercased() + part.dropFirst()
        }.joined(separator: "__")
    }

    /// `weft.v1.FrameOpen` → `weft__v1__frame_open` (prefix of the
    /// generated functions, e.g. `weft__v1__frame_open__pack`).
    static func functionPrefix(_ fullName: String) -> String {
        fullName.split(separator: ".").map { camelToLower(String($0)) }.joined(separator: "__")
    }

    static func fieldName(_ name: String) -> String {
        let lower = name.lowercased()
        return keywords.contains(lower) ? lower + "_" : lower
    }

    static func camelToLower(_ name: String) -> String {
        var result = ""
        for (index, character) in name.enumerated() {
            if character.isUppercase {
                if index > 0 { result.append("_") }
                result.append(character.lowercased())
            } else {
                result.append(character)
            }
        }
        return result
    }
}

enum SwiftNames {
    static let keywords: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import",
        "init", "inout", "internal", "let", "operator", "private", "precedencegroup",
        "protocol", "public", "rethrows", "static", "struct", "subscript", "typealias", "var",
        "break", "case", "catch", "continue", "default", "defer", "do", "else", "fallthrough",
        "for", "guard", "if", "in", "repeat", "return", "throw", "switch", "where", "while", "as",
        "Any", "false", "is", "nil", "self", "Self", "super", "throws", "true", "try", "Type",
    ]

    /// Words written in capitals inside a name, as Swift's API guidelines ask.
    static let initialisms: [String: String] = ["id": "ID", "ids": "IDs", "url": "URL", "urls": "URLs"]

    /// `stream_id` → `streamID`, `sequencer_urls` → `sequencerURLs`.
    static func lowerCamel(_ snake: String) -> String {
        let parts = snake.split(separator: "_").map(String.init)
        var result = ""
        for (index, part) in parts.enumerated() {
            if index == 0 {
                result += part
            } else if let initialism = initialisms[part] {
                result += initialism
            } else {
                result += part.prefix(1).uppercased() + part.dropFirst()
            }
        }
        return result
    }

    /// `node` → `Node`, `half_close` → `HalfClose`.
    static func upperCamel(_ snake: String) -> String {
        let camel = lowerCamel(snake)
        return camel.prefix(1).uppercased() + camel.dropFirst()
    }

    /// An identifier safe to declare and to use after a dot.
    static func escaped(_ name: String) -> String {
        keywords.contains(name) ? "`\(name)`" : name
    }

    /// Enum value `SERVING_STATUS_NOT_SERVING` of `ServingStatus` → `notServing`.
    static func enumCase(_ valueName: String, enumName: String) -> String {
        let prefix = CNames.camelToLower(enumName).uppercased() + "_"
        let stripped = valueName.hasPrefix(prefix) ? String(valueName.dropFirst(prefix.count)) : valueName
        var name = lowerCamel(stripped.lowercased())
        if let first = name.first, first.isNumber { name = "_" + name }
        return name
    }
}
