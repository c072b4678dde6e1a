import CProtobufC
import CWeftWireSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A protobuf message of Weft's schema (`Proto/weft/v1`), as a Swift value.
///
/// Every generated message type conforms. Encoding and decoding go through
/// protobuf-c's pack and unpack, so the bytes are standard protobuf that any
/// other implementation reads and writes.
public protocol WireMessage: Sendable, Hashable {
    /// Fully qualified protobuf name, e.g. `weft.v1.Frame`.
    static var protoMessageName: String { get }

    /// A message with every field at its default value.
    init()

    /// Decodes a message from its protobuf encoding.
    init(serializedBytes bytes: UnsafeRawBufferPointer) throws(WireError)

    /// Decodes a message from its protobuf encoding. A requirement (not only
    /// the extension below) so that generic code, such as the RPC layer's
    /// `Response(serializedBytes:)`, reaches each type's specialized decode
    /// instead of running the extension unspecialized (measured: it doubled
    /// the cost of decoding a small envelope).
    init(serializedBytes bytes: [UInt8]) throws(WireError)

    /// The protobuf encoding of this message.
    ///
    /// Throws only for a string field with a NUL character, which protobuf-c
    /// cannot carry.
    func serializedBytes() throws(WireError) -> [UInt8]

    /// Fields read from the wire that this schema does not know.
    var unknownFields: UnknownFields { get set }
}

extension WireMessage {
    /// Decodes a message from its protobuf encoding.
    public init(serializedBytes bytes: [UInt8]) throws(WireError) {
        // `withUnsafeBytes` cannot forward a typed error, so the result is
        // carried out as a `Result`.
        let result: Result<Self, WireError> = bytes.withUnsafeBytes { buffer in
            do throws(WireError) { return .success(try Self(serializedBytes: buffer)) } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }

    /// Decodes a message from its protobuf encoding.
    public init(serializedBytes bytes: ArraySlice<UInt8>) throws(WireError) {
        let result: Result<Self, WireError> = bytes.withUnsafeBytes { buffer in
            do throws(WireError) { return .success(try Self(serializedBytes: buffer)) } catch {
                return .failure(error)
            }
        }
        self = try result.get()
    }
}

/// The bridge between a generated Swift message and its protobuf-c struct.
/// Internal: no C type appears in WeftWire's public API.
protocol CBackedMessage: WireMessage {
    associatedtype CStruct
    /// Index of this type's shape in `wireShapes`, for the pre-scan.
    static var shapeIndex: Int { get }
    /// Whether a recursive type can be reached from this one, so that its
    /// bytes go through `WireScan`'s depth check before protobuf-c unpacks
    /// them (a constant per type: no look-up in the shape table per decode).
    static var needsScan: Bool { get }
    static func cInit(_ c: UnsafeMutablePointer<CStruct>)
    static func cUnpack(
        _ allocator: UnsafeMutablePointer<ProtobufCAllocator>, _ count: Int, _ bytes: UnsafePointer<UInt8>
    ) -> UnsafeMutablePointer<CStruct>?
    static func cPackedSize(_ c: UnsafePointer<CStruct>) -> Int
    static func cPack(_ c: UnsafePointer<CStruct>, _ out: UnsafeMutablePointer<UInt8>) -> Int
    /// Refuses what protobuf-c accepts but a Swift value cannot hold: strings
    /// with a NUL or invalid UTF-8, unknown fields with an invalid number; then
    /// the same for every submessage. `byteCount` is the size of the whole
    /// input, for error messages. Runs at decode, so that reading a field
    /// later cannot fail.
    static func validate(_ c: UnsafePointer<CStruct>, byteCount: Int) throws(WireError)
    /// A value over a decoded C struct that `validate` accepted. Messages with
    /// strings, bytes, arrays or submessages read their fields on first use;
    /// scalar-only ones copy them at once.
    init(decoded c: UnsafePointer<CStruct>, in tree: DecodedTree)
    /// Builds the C struct for this value in `arena`; nil value of the
    /// result means a string held a NUL (reported by `fill`'s thrown error).
    func fill(_ c: UnsafeMutablePointer<CStruct>, _ arena: borrowing Arena) throws(WireError)
    /// The packed size computed from the Swift fields, for messages of
    /// scalars, strings and bytes once `fill` has accepted them; nil where
    /// protobuf-c's `get_packed_size` must walk the C struct (submessages,
    /// oneofs, unknown fields, a decoded value not yet read).
    var packedSizeOfFields: Int? { get }
}

extension CBackedMessage {
    var packedSizeOfFields: Int? { nil }
}

/// Sizes of protobuf encodings, as protobuf-c computes them.
enum PackedSize {
    /// Bytes of `value` as a varint: 7 bits a byte, at least one byte.
    @inline(__always)
    static func varint(_ value: UInt64) -> Int { (70 &- (value | 1).leadingZeroBitCount) / 7 }

    /// An int32 or enum: a negative one is sign-extended to 10 bytes.
    @inline(__always)
    static func int32(_ value: Int32) -> Int { value < 0 ? 10 : varint(UInt64(value)) }

    /// sint32 and sint64's ZigZag encoding.
    @inline(__always)
    static func zigzag(_ value: Int64) -> UInt64 { UInt64(bitPattern: (value &<< 1) ^ (value >> 63)) }

    /// A length prefix and the `count` bytes it announces.
    @inline(__always)
    static func lengthDelimited(_ count: Int) -> Int { varint(UInt64(count)) &+ count }
}

extension CBackedMessage {
    /// Shared implementation of `init(serializedBytes:)`; the unpack may take
    /// `memoryBytesPerInputByte` for each input byte (`DecodeLimits`).
    static func decode(
        _ bytes: UnsafeRawBufferPointer, memoryBytesPerInputByte: Int = DecodeLimits.memoryBytesPerInputByte
    ) throws(WireError) -> Self {
        let source = try unpackChecked(bytes, memoryBytesPerInputByte: memoryBytesPerInputByte)
        // The value takes its own reference where it keeps the tree; a
        // scalar-only one has copied its fields and the tree goes back to the cache.
        defer { source.release() }
        return Self(decoded: source.pointer, in: source.tree)
    }

    /// The depth pre-scan where the schema needs it, protobuf-c's unpack and
    /// `validate`: the checked C struct, with one reference to the tree it was
    /// unpacked into, or the error (the tree then given up). The unpack may
    /// take `memoryBytesPerInputByte` for each byte of `bytes` (`DecodeLimits`).
    static func unpackChecked(
        _ bytes: UnsafeRawBufferPointer, memoryBytesPerInputByte: Int = DecodeLimits.memoryBytesPerInputByte
    ) throws(WireError) -> DecodedSource<CStruct> {
        if needsScan {
            try WireScan.check(bytes, shape: shapeIndex, message: protoMessageName)
        }
        // Every allocation of the unpack comes from one tree sized for the
        // input, kept by the value and released when the last value reading
        // it is gone.
        let tree = DecodedTree.makeOwned(forInputBytes: bytes.count, memoryBytesPerInputByte: memoryBytesPerInputByte)
        var allocator = tree._withUnsafeGuaranteedRef { $0.protobufAllocator }
        let base =
            bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
            ?? UnsafeRawPointer(bitPattern: 1)!.assumingMemoryBound(to: UInt8.self)
        do throws(WireError) {
            guard let c = cUnpack(&allocator, bytes.count, base) else {
                throw tree._withUnsafeGuaranteedRef { tree -> WireError in
                    tree.refusedOverLimit
                        ? .decodeBudgetExceeded(message: protoMessageName, budgetBytes: tree.limitBytes)
                        : .malformed(message: protoMessageName, byteCount: bytes.count)
                }
            }
            try validate(c, byteCount: bytes.count)
            return DecodedSource(owning: tree, pointer: c)
        } catch {
            DecodedTree.recycle(tree)
            throw error
        }
    }

    /// Shared implementation of `init(serializedBytes: [UInt8])`, specialized
    /// for each generated type (a protocol extension called from another
    /// module would run unspecialized).
    static func decode(_ bytes: [UInt8]) throws(WireError) -> Self {
        let result: Result<Self, WireError> = bytes.withUnsafeBytes { buffer in
            do throws(WireError) { return .success(try decode(buffer)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Shared implementation of `serializedBytes()`.
    func encode() throws(WireError) -> [UInt8] {
        let arena = Arena()
        let c = arena.allocate(CStruct.self, count: 1)
        Self.cInit(c)
        try fill(c, arena)
        // `fill` has refused strings with a NUL, so a string's UTF-8 count is
        // the `strlen` protobuf-c sizes it by.
        let size = packedSizeOfFields ?? Self.cPackedSize(c)
        assert(size == Self.cPackedSize(c), "\(Self.protoMessageName): packedSizeOfFields disagrees with protobuf-c")
        guard size > 0 else { return [] }
        // Packing into the arena and copying out beats packing straight into
        // `Array(unsafeUninitializedCapacity:)` or `Array(repeating:count:)`:
        // both look up the array storage's generic metadata on every call on
        // Linux (callgrind: ~180 more instructions for a 198-byte envelope).
        let scratch = arena.allocate(UInt8.self, count: size)
        let written = Self.cPack(c, scratch)
        precondition(written == size, "protobuf-c packed \(written) bytes of \(Self.protoMessageName), not \(size)")
        return [UInt8](UnsafeBufferPointer(start: scratch, count: written))
    }

    /// A decoded submessage, as a freshly built C struct for `fill`.
    static func makeC(_ value: Self, _ arena: borrowing Arena) throws(WireError) -> UnsafeMutablePointer<CStruct> {
        let c = arena.allocate(CStruct.self, count: 1)
        cInit(c)
        try value.fill(c, arena)
        return c
    }
}

// MARK: - Helpers the generated code calls for each field kind.

enum CBridge {
    /// protobuf-c may not see NULL as an element of a repeated string field,
    /// and skips a oneof member that points at its own shared "" (the member
    /// would be lost): this "" is another one.
    @inline(__always)
    static var emptyCString: UnsafeMutablePointer<CChar> { weft_empty_c_string() }

    /// Checks a string protobuf-c unpacked into a decode tree. Its length
    /// comes from the tree (protobuf-c allocates `length + 1` bytes and copies
    /// the wire bytes), so a NUL inside it, which C would read as the end, is
    /// refused rather than silently shortening the value. An absent field is
    /// protobuf-c's shared empty string, not tree memory.
    @inline(__always)
    static func checkString(_ c: UnsafePointer<CChar>?, _ message: String, _ field: Int32) throws(WireError) {
        guard let c, c != weft_protobuf_c_empty_string() else { return }
        let length = Arena.protobufAllocationSize(c) - 1
        guard length > 0 else { return }
        guard strlen(c) == length else { throw .embeddedNUL(message: message, fieldNumber: field) }
        let bytes = UnsafeRawPointer(c)
        if isASCII(bytes, length) { return }
        guard String(validatingCString: c) != nil else { throw .invalidUTF8(message: message) }
    }

    /// Whether `count` bytes are all below 0x80: 32 at a time, then eight at a
    /// time (wrapping index arithmetic: `count` is a buffer's size, far from
    /// overflowing, and the overflow checks were a third of the loop).
    @inline(__always)
    static func isASCII(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        var index = 0
        var high: UInt64 = 0
        while index &+ 32 <= count {
            high |= bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                | bytes.loadUnaligned(fromByteOffset: index &+ 8, as: UInt64.self)
                | bytes.loadUnaligned(fromByteOffset: index &+ 16, as: UInt64.self)
                | bytes.loadUnaligned(fromByteOffset: index &+ 24, as: UInt64.self)
            index &+= 32
        }
        while index &+ 8 <= count {
            high |= bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
            index &+= 8
        }
        // The last partial word as one load that overlaps the previous one.
        if index < count, count >= 8 {
            high |= bytes.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
            index = count
        }
        while index < count {
            high |= UInt64(bytes.load(fromByteOffset: index, as: UInt8.self))
            index += 1
        }
        return high & 0x8080_8080_8080_8080 == 0
    }

    /// A string that `checkString` accepted, as a Swift value.
    @inline(__always)
    static func string(_ c: UnsafePointer<CChar>?) -> String {
        guard let c, c != weft_protobuf_c_empty_string() else { return "" }
        let length = Arena.protobufAllocationSize(c) - 1
        guard length > 0 else { return "" }
        return String(
            decoding: UnsafeBufferPointer(start: UnsafeRawPointer(c).assumingMemoryBound(to: UInt8.self), count: length),
            as: UTF8.self)
    }

    static func cString(
        _ value: String, _ arena: borrowing Arena, _ message: String, _ field: Int32
    ) throws(WireError) -> UnsafeMutablePointer<CChar>? {
        if value.isEmpty { return nil }
        guard let c = arena.cString(value) else { throw .embeddedNUL(message: message, fieldNumber: field) }
        return c
    }

    /// `Array(UnsafeBufferPointer)`, measured: on Linux it is about twice as
    /// fast as `Array(unsafeUninitializedCapacity:)`, which reaches the
    /// runtime's generic metadata cache on every call.
    @inline(__always)
    static func bytes(_ c: ProtobufCBinaryData) -> [UInt8] {
        guard c.len > 0, let data = c.data else { return [] }
        return [UInt8](UnsafeBufferPointer(start: data, count: c.len))
    }

    /// A bytes field for `fill`, pointing into the array's own buffer rather
    /// than a copy in the arena. The pointer outlives `withUnsafeBufferPointer`,
    /// which is sound here because of how `encode` uses it: the array is a field
    /// of the message being encoded (or an element or oneof payload of one),
    /// that message is borrowed for the whole encode, and a Swift array's
    /// buffer moves or changes only when the array is mutated, which a borrowed
    /// value cannot be; the C struct is dropped before `encode` returns.
    @inline(__always)
    static func binary(_ value: [UInt8]) -> ProtobufCBinaryData {
        guard !value.isEmpty else { return ProtobufCBinaryData(len: 0, data: nil) }
        return value.withUnsafeBufferPointer {
            ProtobufCBinaryData(len: $0.count, data: UnsafeMutablePointer(mutating: $0.baseAddress))
        }
    }

    /// Copies a C array of `count` elements into a Swift array. Reserving and
    /// appending is measurably faster here than `unsafeUninitializedCapacity`.
    @inline(__always)
    static func array<C, S>(_ pointer: UnsafeMutablePointer<C>?, _ count: Int, _ transform: (C) -> S) -> [S] {
        guard count > 0, let pointer else { return [] }
        var result: [S] = []
        result.reserveCapacity(count)
        for index in 0..<count { result.append(transform(pointer[index])) }
        return result
    }

    /// The elements of a repeated field's array for `cArray`, in the array's
    /// own buffer. The pointer outlives `withUnsafeBufferPointer`, sound for the
    /// reason given at `binary`. Passing the array itself, or reading it inside
    /// `withUnsafeBufferPointer` around the loop, made the optimizer copy it out
    /// of the message's storage: a retain and a release (two atomic operations)
    /// per repeated field, as the arena calls in the loop might have changed it.
    @inline(__always)
    static func elements<S>(_ values: [S]) -> UnsafeBufferPointer<S> {
        values.withUnsafeBufferPointer { $0 }
    }

    /// A C array in the arena holding `values` transformed.
    ///
    /// `values[index]` on an array would hand `transform` a copy, one retain
    /// and release of every reference the element holds (measured: about a
    /// third of encoding a batch of envelopes); read from the buffer, it is
    /// borrowed.
    @inline(__always)
    static func cArray<S, C>(
        _ values: UnsafeBufferPointer<S>, _ arena: borrowing Arena, _ transform: (S) throws(WireError) -> C
    ) throws(WireError) -> UnsafeMutablePointer<C>? {
        guard !values.isEmpty else { return nil }
        let target = arena.allocate(C.self, count: values.count)
        for index in values.indices { (target + index).initialize(to: try transform(values[index])) }
        return target
    }

    /// Checks the unknown fields protobuf-c kept. Field number 0 is invalid
    /// protobuf, but protobuf-c accepts it when the tag is a non-minimal varint
    /// (`80 00`) and then cannot read its own re-encoding, so it is refused here.
    @inline(__always)
    static func checkUnknownFields(_ base: ProtobufCMessage, _ message: String, _ byteCount: Int) throws(WireError) {
        guard base.n_unknown_fields > 0 else { return }
        try checkKeptUnknownFields(base, message, byteCount)
    }

    @inline(never)
    private static func checkKeptUnknownFields(_ base: ProtobufCMessage, _ message: String, _ byteCount: Int)
        throws(WireError)
    {
        guard let fields = base.unknown_fields else { return }
        for index in 0..<Int(base.n_unknown_fields) {
            // Likewise a number above protobuf's largest (2^29 - 1), which protobuf-c reads from a
            // 5-byte tag: Google's parsers refuse it, and JSON (`"@unknown"`) could not carry it.
            let tag = fields[index].tag
            guard tag != 0, tag <= 536_870_911 else { throw .malformed(message: message, byteCount: byteCount) }
        }
    }

    /// The unknown fields protobuf-c kept, once `checkUnknownFields` accepted them.
    @inline(__always)
    static func unknownFields(_ base: ProtobufCMessage) -> UnknownFields {
        guard base.n_unknown_fields > 0 else { return UnknownFields() }
        return keptUnknownFields(base)
    }

    @inline(never)
    private static func keptUnknownFields(_ base: ProtobufCMessage) -> UnknownFields {
        guard let fields = base.unknown_fields else { return UnknownFields() }
        let count = Int(base.n_unknown_fields)
        var byteCount = 0
        for index in 0..<count {
            byteCount += UnknownFields.appendedBytes(number: fields[index].tag, dataCount: fields[index].len)
        }
        var result = UnknownFields(reservingBytes: byteCount)
        for index in 0..<count {
            let field = fields[index]
            result.append(
                number: field.tag, wireType: UInt8(truncatingIfNeeded: field.wire_type.rawValue),
                data: UnsafeRawBufferPointer(start: field.data, count: field.len))
        }
        return result
    }

    @inline(__always)
    static func setUnknownFields(_ fields: UnknownFields, _ base: inout ProtobufCMessage, _ arena: borrowing Arena) {
        guard !fields.isEmpty else { return }
        setKeptUnknownFields(fields, &base, arena)
    }

    @inline(never) @_effects(releasenone)
    private static func setKeptUnknownFields(
        _ fields: UnknownFields, _ base: inout ProtobufCMessage, _ arena: borrowing Arena
    ) {
        var count = 0
        var dataBytes = 0
        fields.forEach { _, _, data in
            count += 1
            dataBytes += data.count
        }
        let target = arena.allocate(ProtobufCMessageUnknownField.self, count: count)
        let copies = arena.allocate(UInt8.self, count: dataBytes)
        var index = 0
        var offset = 0
        fields.forEach { number, wireType, data in
            var copy: UnsafeMutablePointer<UInt8>?
            if let source = data.baseAddress, data.count > 0 {
                copy = copies + offset
                UnsafeMutableRawPointer(copies + offset).copyMemory(from: source, byteCount: data.count)
            }
            (target + index).initialize(
                to: ProtobufCMessageUnknownField(
                    tag: number, wire_type: .init(rawValue: .init(wireType)), len: data.count, data: copy))
            index += 1
            offset += data.count
        }
        base.n_unknown_fields = UInt32(count)
        base.unknown_fields = target
    }
}
