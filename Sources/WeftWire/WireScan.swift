/// A schema-aware pass over protobuf bytes before protobuf-c unpacks them.
///
/// protobuf-c decodes nested messages recursively with no depth limit, so a
/// few megabytes of nested length prefixes could exhaust the stack. This scan
/// refuses such input before anything is allocated. Only messages that can
/// contain themselves (through any chain of fields) can nest that deep, so only
/// they are scanned, and the scan descends only into the fields that lead to
/// such a message (`wireShapes`, generated). Strings with a NUL byte, which
/// protobuf-c would store silently shortened, are refused after unpacking, where
/// the string's length is known (`CBridge.checkString`).
enum WireScan {
    /// Deepest nesting accepted, as in Google's implementations.
    static let nestingLimit = 100

    /// How the scan treats one field number of a message.
    enum FieldShape: Sendable {
        case skip
        /// A submessage, by its index in `wireShapes`.
        case message(Int)
    }

    /// Field shapes of every message, flattened once into one table so that
    /// the scan touches no reference-counted storage: `offsets[i]..<offsets[i+1]`
    /// are message `i`'s shapes, indexed by field number.
    /// Written once at initialization and only read after, hence `unsafe`.
    nonisolated(unsafe) private static let table: (offsets: UnsafeMutableBufferPointer<Int>, shapes: UnsafeMutableBufferPointer<FieldShape>) = {
        let offsets = UnsafeMutableBufferPointer<Int>.allocate(capacity: wireShapes.count + 1)
        let shapes = UnsafeMutableBufferPointer<FieldShape>.allocate(capacity: wireShapes.map(\.count).reduce(0, +))
        var position = 0
        for (index, fields) in wireShapes.enumerated() {
            offsets[index] = position
            for field in fields {
                (shapes.baseAddress! + position).initialize(to: field)
                position += 1
            }
        }
        offsets[wireShapes.count] = position
        return (offsets, shapes)
    }()

    static func check(_ bytes: UnsafeRawBufferPointer, shape: Int, message: String) throws(WireError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let scanner = Scanner(
            bytes: base.assumingMemoryBound(to: UInt8.self), message: message, total: bytes.count)
        try scanner.scan(from: 0, to: bytes.count, shape: shape, depth: 1)
    }

    private struct Scanner {
        let bytes: UnsafePointer<UInt8>
        let message: String
        let total: Int

        private func malformed() -> WireError { .malformed(message: message, byteCount: total) }

        private func varint(_ position: inout Int, _ end: Int) throws(WireError) -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while position < end, shift < 64 {
                let byte = bytes[position]
                position += 1
                result |= UInt64(byte & 0x7f) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
            }
            throw malformed()
        }

        func scan(from start: Int, to end: Int, shape: Int, depth: Int) throws(WireError) {
            if depth > WireScan.nestingLimit { throw .nestingTooDeep(message: message, limit: WireScan.nestingLimit) }
            let fieldsStart = WireScan.table.offsets[shape]
            let fieldCount = WireScan.table.offsets[shape + 1] - fieldsStart
            let shapes = WireScan.table.shapes.baseAddress! + fieldsStart
            var position = start
            while position < end {
                let tag = try varint(&position, end)
                let number = Int(truncatingIfNeeded: tag >> 3)
                switch tag & 7 {
                case 0: _ = try varint(&position, end)
                case 1: position += 8
                case 5: position += 4
                case 2:
                    let length = try varint(&position, end)
                    guard length <= UInt64(end - position) else { throw malformed() }
                    let fieldEnd = position + Int(length)
                    let fieldShape = number < fieldCount ? shapes[number] : .skip
                    switch fieldShape {
                    case .skip: break
                    case .message(let child):
                        try scan(from: position, to: fieldEnd, shape: child, depth: depth + 1)
                    }
                    position = fieldEnd
                default:
                    // Groups (3, 4) and the undefined types 6 and 7.
                    throw malformed()
                }
                if position > end { throw malformed() }
            }
        }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
