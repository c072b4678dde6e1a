/// Fields a decoder did not recognise, kept so that re-encoding a message
/// written by a newer schema loses nothing.
public struct UnknownFields: Hashable, Sendable {
    /// The fields in the order they were read.
    public var fields: [UnknownField]

    public init(fields: [UnknownField] = []) { self.fields = fields }

    public var isEmpty: Bool { fields.isEmpty }
}

/// One unrecognised field: its number, wire type and encoded value.
public struct UnknownField: Hashable, Sendable {
    /// The field number.
    public var number: UInt32
    /// The protobuf wire type (0 varint, 1 fixed64, 2 length-delimited,
    /// 5 fixed32).
    public var wireType: UInt8
    /// The value as encoded after the tag (for wire type 2 including its
    /// length prefix: protobuf-c keeps the bytes as they were on the wire).
    public var data: [UInt8]

    public init(number: UInt32, wireType: UInt8, data: [UInt8]) {
        self.number = number
        self.wireType = wireType
        self.data = data
    }
}
