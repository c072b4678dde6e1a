/// A failure reported by PostgreSQL, by libpq, or by the bridge itself.
///
/// One struct rather than an enum with payloads, so callers can match on `code` and the
/// SQLSTATE without caring which layer noticed the problem, and so fields can be added
/// without breaking them.
public struct PostgresError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Code: Sendable, Hashable {
        /// The connection could not be established: bad URL, server down, wrong credentials.
        case connectionFailed
        /// The connection broke while a statement was running; it cannot be used again.
        case connectionLost
        /// The server rejected the statement; `sqlState` says why.
        case queryFailed
        /// A parameter cannot be sent as given (for example a string with a zero byte).
        case invalidParameter
        /// The server answered with something `execute` does not handle (such as `COPY`).
        case unsupportedResult
        /// A result cell could not be read as the requested Swift type.
        case decodingFailed
    }

    /// What kind of failure this is.
    public var code: Code
    /// The five-character SQLSTATE from the server, such as `42601` (syntax error) or
    /// `23505` (unique violation); `nil` when the server did not report one.
    public var sqlState: String?
    /// A one-line, human-readable explanation, free of passwords.
    public var message: String
    /// The server's DETAIL field, when it sent one.
    ///
    /// Kept out of `description` on purpose: for constraint violations it quotes row
    /// values (`Key (id)=(42) already exists.`), and errors end up in logs.
    public var detail: String?
    /// The server's HINT field, when it sent one.
    public var hint: String?

    public init(
        code: Code,
        sqlState: String? = nil,
        message: String,
        detail: String? = nil,
        hint: String? = nil
    ) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
    }

    public var description: String {
        var text = "PostgresError(\(code)"
        if let sqlState {
            text += ", SQLSTATE \(sqlState)"
        }
        text += "): \(message)"
        if let hint {
            text += " (hint: \(hint))"
        }
        return text
    }
}
