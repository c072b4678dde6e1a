/// Values written into the YAML files `weft` generates (domain.yaml, the demo's nodes).
enum YAMLText {
    /// `text` as a double-quoted YAML scalar: a password with `"` or `\` in a URL would
    /// otherwise end the string early or turn into another character (`\t`, a tab).
    static func quoted(_ text: String) -> String {
        var quoted = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": quoted += "\\\\"
            case "\"": quoted += "\\\""
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value):
                // C0 and C1 controls and DEL (a YAML reader refuses C1 controls).
                quoted += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            case "\u{2028}", "\u{2029}":
                // Line and paragraph separators, which a reader would fold as line breaks.
                quoted += "\\u" + String(scalar.value, radix: 16)
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return quoted + "\""
    }
}
