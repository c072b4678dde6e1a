/// The outcome of one statement, copied out of libpq's `PGresult` before `execute` returns.
///
/// Copying costs one allocation per cell, but means no C pointer outlives the call and the
/// result is an ordinary `Sendable` value that can cross task boundaries.
public struct PostgresResult: Sendable, Hashable {
    /// The result columns in order; empty for statements that return no rows.
    public let columns: [PostgresColumn]
    /// The rows, each with one cell per column: `rows[row][column]`.
    public let rows: [[PostgresCell]]
    /// The server's command tag, such as `INSERT 0 1` or `SELECT 3`.
    public let commandTag: String
    /// How many rows an `INSERT`, `UPDATE`, `DELETE`, `MERGE`, `SELECT` or `COPY` touched;
    /// `nil` for statements that do not report a count (such as `CREATE TABLE`).
    public let affectedRowCount: Int?

    public init(
        columns: [PostgresColumn],
        rows: [[PostgresCell]],
        commandTag: String,
        affectedRowCount: Int?
    ) {
        self.columns = columns
        self.rows = rows
        self.commandTag = commandTag
        self.affectedRowCount = affectedRowCount
    }
}

/// One column of a `PostgresResult`.
public struct PostgresColumn: Sendable, Hashable {
    /// The column name (or alias) as the server reported it.
    public let name: String
    /// The column's type OID, such as 17 for `bytea`; it decides which accessors of
    /// `PostgresCell` accept the column's cells.
    public let typeOID: UInt32

    public init(name: String, typeOID: UInt32) {
        self.name = name
        self.typeOID = typeOID
    }
}

/// One value of a result row, in PostgreSQL's binary wire format.
///
/// Results are requested in binary format because that makes `bytea` exact (no hex or
/// escape decoding) and integers cheap. The typed accessors check the column type, so
/// reading an `int4` as a string fails loudly instead of returning raw big-endian bytes.
/// Each returns `nil` for SQL `NULL`.
public struct PostgresCell: Sendable, Hashable {
    /// The column's type OID, as in `PostgresColumn.typeOID`.
    public let typeOID: UInt32
    /// The value exactly as the server sent it in binary format; `nil` for SQL `NULL`.
    public let rawValue: [UInt8]?

    public init(typeOID: UInt32, rawValue: [UInt8]?) {
        self.typeOID = typeOID
        self.rawValue = rawValue
    }

    /// Whether the value is SQL `NULL`.
    public var isNull: Bool { rawValue == nil }

    /// The bytes of a `bytea` value.
    public var bytes: [UInt8]? {
        get throws(PostgresError) {
            try requireType(in: [PostgresTypeOID.bytea], reading: "bytes")
            return rawValue
        }
    }

    /// The text of a `text`, `varchar`, `char(n)`, `name`, `"char"` or `json` value.
    ///
    /// The connection runs with `client_encoding` UTF8, so anything else is a bug worth
    /// an error rather than replacement characters.
    public var string: String? {
        get throws(PostgresError) {
            try requireType(in: PostgresTypeOID.textual, reading: "string")
            guard let rawValue else { return nil }
            guard let text = String(validating: rawValue, as: UTF8.self) else {
                throw PostgresError(
                    code: .decodingFailed,
                    message:
                        "a value of type OID \(typeOID) (\(rawValue.count) bytes) is not valid UTF-8"
                )
            }
            return text
        }
    }

    /// The value of a `smallint`, `integer` or `bigint` column, widened to `Int64`.
    public var int64: Int64? {
        get throws(PostgresError) {
            try requireType(in: PostgresTypeOID.integral, reading: "int64")
            guard let rawValue else { return nil }
            let expectedByteCount: Int
            switch typeOID {
            case PostgresTypeOID.int2: expectedByteCount = 2
            case PostgresTypeOID.int4: expectedByteCount = 4
            default: expectedByteCount = 8
            }
            guard rawValue.count == expectedByteCount else {
                throw PostgresError(
                    code: .decodingFailed,
                    message: "an integer of type \(typeOID) arrived as \(rawValue.count) bytes, "
                        + "expected \(expectedByteCount)"
                )
            }
            // Big-endian two's complement: sign-extend from the first byte.
            var value = Int64(Int8(bitPattern: rawValue[0]))
            for byte in rawValue.dropFirst() {
                value = value << 8 | Int64(byte)
            }
            return value
        }
    }

    /// The value of a `boolean` column.
    public var bool: Bool? {
        get throws(PostgresError) {
            try requireType(in: [PostgresTypeOID.bool], reading: "bool")
            guard let rawValue else { return nil }
            guard rawValue.count == 1 else {
                throw PostgresError(code: .decodingFailed, message: "a boolean arrived as \(rawValue.count) bytes, expected 1")
            }
            return rawValue[0] != 0
        }
    }

    private func requireType(in accepted: Set<UInt32>, reading accessor: String)
        throws(PostgresError)
    {
        guard accepted.contains(typeOID) else {
            throw PostgresError(
                code: .decodingFailed,
                message: "cannot read a value of type OID \(typeOID) with PostgresCell.\(accessor)"
            )
        }
    }
}

/// The type OIDs the bridge knows, from PostgreSQL's `pg_type.dat`; they are fixed forever.
enum PostgresTypeOID {
    static let bool: UInt32 = 16
    static let bytea: UInt32 = 17
    static let char: UInt32 = 18
    static let name: UInt32 = 19
    static let int8: UInt32 = 20
    static let int2: UInt32 = 21
    static let int4: UInt32 = 23
    static let text: UInt32 = 25
    static let json: UInt32 = 114
    static let unknown: UInt32 = 705
    static let bpchar: UInt32 = 1042
    static let varchar: UInt32 = 1043
    static let byteaArray: UInt32 = 1001
    static let textArray: UInt32 = 1009
    static let int8Array: UInt32 = 1016

    /// Types whose binary format is their text in the client encoding.
    static let textual: Set<UInt32> = [char, name, text, json, unknown, bpchar, varchar]
    /// Types whose binary format is a big-endian two's complement integer.
    static let integral: Set<UInt32> = [int2, int4, int8]
}
