/// A query parameter, sent to the server separately from the SQL text.
///
/// Parameters never become part of the statement string, so no value can change what a
/// statement means: that is the whole defence against SQL injection, and it only holds if
/// every value goes through here.
public enum PostgresValue: Sendable, Hashable {
    /// Sent in text format with no declared type, so the server infers the type from the
    /// statement (a `text`, `varchar` or even `bigint` column all accept it).
    ///
    /// PostgreSQL text cannot hold a zero byte; `execute` rejects such a string rather
    /// than let libpq silently cut it short.
    case text(String)
    /// Sent in binary format as `bytea`, so every byte value, zero included, arrives as is.
    case bytes([UInt8])
    /// Sent in binary format as `int8`.
    case int64(Int64)
    /// SQL `NULL`.
    case null
    /// A one-dimensional `int8[]`, sent in binary; a `nil` element is `NULL`.
    ///
    /// Arrays let one statement with a fixed text carry any number of rows
    /// (`INSERT … SELECT * FROM unnest($1::int8[], $2::text[], …)`), where a multi-row
    /// `VALUES` list would be a new text, parsed and planned anew, for every row count.
    case int64Array([Int64?])
    /// A one-dimensional `text[]`, sent in binary (UTF-8); a `nil` element is `NULL`.
    /// Like `.text`, an element cannot hold a zero byte.
    case textArray([String?])
    /// A one-dimensional `bytea[]`, sent in binary; a `nil` element is `NULL`.
    case bytesArray([[UInt8]?])
}
