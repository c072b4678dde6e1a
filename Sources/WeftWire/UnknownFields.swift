/// Fields a decoder did not recognise, kept so that re-encoding a message
/// written by a newer schema loses nothing.
///
/// Kept as one byte array, each field's number, wire type and data after the
/// previous field's, rather than an array of `UnknownField`s: reading a decoded
/// message copies its unknown fields into Swift, and one array allocation per
/// field made a message of 2-byte unknown fields take 35 times its size again
/// (about 70 bytes a field) on top of the decode tree; this way it takes about
/// twice its size. `fields` builds the `UnknownField`s when asked.
public struct UnknownFields: Hashable, Sendable, CustomReflectable {
    /// Every field in the order read: number (varint), wire type (one byte),
    /// data length (varint), data. The only stored property, so that the
    /// value takes one word in every message's storage, as an array did.
    private var encoded: [UInt8] = []

    /// No fields: what every decoded message without unknown fields holds,
    /// so kept apart from `init(fields:)` and free.
    public init() {}

    public init(fields: [UnknownField]) {
        for field in fields {
            field.data.withUnsafeBytes { append(number: field.number, wireType: field.wireType, data: $0) }
        }
    }

    /// The fields in the order they were read.
    public var fields: [UnknownField] {
        get {
            var result: [UnknownField] = []
            forEach { number, wireType, data in
                result.append(UnknownField(number: number, wireType: wireType, data: [UInt8](data)))
            }
            return result
        }
        set { self = UnknownFields(fields: newValue) }
    }

    public var isEmpty: Bool { encoded.isEmpty }

    public var customMirror: Mirror { Mirror(self, children: ["fields": fields], displayStyle: .struct) }

    /// An empty value with room for `byteCount` bytes of `append`ed fields.
    init(reservingBytes byteCount: Int) { encoded.reserveCapacity(byteCount) }

    /// Bytes `append` adds for field `number` with `dataCount` bytes of data.
    static func appendedBytes(number: UInt32, dataCount: Int) -> Int {
        PackedSize.varint(UInt64(number)) + 1 + PackedSize.varint(UInt64(dataCount)) + dataCount
    }

    /// Adds a field after the others.
    mutating func append(number: UInt32, wireType: UInt8, data: UnsafeRawBufferPointer) {
        Self.appendVarint(UInt64(number), to: &encoded)
        encoded.append(wireType)
        Self.appendVarint(UInt64(data.count), to: &encoded)
        encoded.append(contentsOf: data)
    }

    /// Calls `body` with each field in order; `data` is valid during the call only.
    func forEach(_ body: (_ number: UInt32, _ wireType: UInt8, _ data: UnsafeRawBufferPointer) -> Void) {
        encoded.withUnsafeBytes { bytes in
            var position = 0
            func varint() -> UInt64 {
                var value: UInt64 = 0
                var shift: UInt64 = 0
                while true {
                    let byte = bytes[position]
                    position += 1
                    value |= UInt64(byte & 0x7F) << shift
                    if byte & 0x80 == 0 { return value }
                    shift += 7
                }
            }
            while position < bytes.count {
                let number = UInt32(truncatingIfNeeded: varint())
                let wireType = bytes[position]
                position += 1
                let length = Int(truncatingIfNeeded: varint())
                body(number, wireType, UnsafeRawBufferPointer(rebasing: bytes[position..<position + length]))
                position += length
            }
        }
    }

    private static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }
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
