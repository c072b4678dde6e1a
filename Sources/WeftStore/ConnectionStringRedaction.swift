/// Removes passwords from text that may quote a libpq connection string.
///
/// libpq echoes the whole URI in some parse errors (an unclosed `[` in an IPv6 host, an
/// unexpected character), and error messages end up in logs, so every message derived
/// from a connection attempt passes through here before it reaches a `PostgresError`.
package enum ConnectionStringRedaction {
    static let mask = "***"

    /// Returns `message` with the connection string and each password in it masked.
    static func redact(_ message: String, connectionString: String) -> String {
        var result = message
        let connectionSecrets = secrets(in: connectionString)
        if !connectionSecrets.isEmpty {
            result = result.replacingAll(connectionString, with: masked(connectionString))
        }
        // Longest first, so a password that contains another is masked whole.
        for secret in connectionSecrets.sorted(by: { $0.count > $1.count }) {
            result = result.replacingAll(secret, with: mask)
        }
        return result
    }

    /// Returns `connectionString` with every password masked.
    package static func masked(_ connectionString: String) -> String {
        var result = connectionString
        for secret in secrets(in: connectionString).sorted(by: { $0.count > $1.count }) {
            result = result.replacingAll(secret, with: mask)
        }
        return result
    }

    /// The passwords in a URI (`postgresql://user:secret@host`, `?password=secret`) or a
    /// key/value string (`password=secret`, `password = 'se cret'`), raw and decoded.
    static func secrets(in connectionString: String) -> [String] {
        var found: [String] = []
        let text = Substring(connectionString)

        // The URI user-info: libpq reads up to the first "@" or "/" after the scheme.
        for scheme in ["postgresql://", "postgres://"] where text.hasPrefix(scheme) {
            let afterScheme = text.dropFirst(scheme.count)
            let authority = afterScheme.prefix { $0 != "/" && $0 != "@" }
            let end = afterScheme.index(afterScheme.startIndex, offsetBy: authority.count)
            if end < afterScheme.endIndex, afterScheme[end] == "@",
                let colon = authority.firstIndex(of: ":")
            {
                found.append(String(authority[authority.index(after: colon)...]))
            }
        }

        // `password=` as a URI query parameter or a key/value pair.
        var rest = text
        while let keyword = rest.firstRange(of: "password") {
            var cursor = rest[keyword.upperBound...].drop { $0 == " " || $0 == "\t" }
            rest = rest[keyword.upperBound...]
            guard cursor.first == "=" else { continue }
            cursor = cursor.dropFirst().drop { $0 == " " || $0 == "\t" }
            if cursor.first == "'" {
                // Quoted key/value: up to the next unescaped quote; mask both spellings.
                let quoted = cursor.dropFirst()
                var value = ""
                var end = quoted.endIndex
                var escaped = false
                for index in quoted.indices {
                    let character = quoted[index]
                    if escaped {
                        value.append(character)
                        escaped = false
                    } else if character == "\\" {
                        escaped = true
                    } else if character == "'" {
                        end = index
                        break
                    } else {
                        value.append(character)
                    }
                }
                found.append(String(quoted[..<end]))
                found.append(value)
            } else {
                found.append(String(cursor.prefix { $0 != " " && $0 != "\t" && $0 != "&" }))
            }
        }

        var secrets: [String] = []
        for secret in found where !secret.isEmpty {
            secrets.append(secret)
            if let decoded = percentDecoded(secret), decoded != secret, !decoded.isEmpty {
                secrets.append(decoded)
            }
        }
        return secrets
    }

    private static func percentDecoded(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8.makeIterator()
        while let byte = utf8.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = utf8.next().flatMap(hexValue), let low = utf8.next().flatMap(hexValue)
            else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension String {
    fileprivate func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }
}
