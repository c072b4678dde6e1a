import CProtobufC

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The same message as raw protobuf-c sees it, for benchmarks that compare
/// the Swift layer with direct C calls (`weft-bench wire`).
///
/// It builds the message's C struct once, then packs it and unpacks bytes the
/// way a C program would: `get_packed_size`, `malloc`, `pack`, `free`; and
/// `unpack` with protobuf-c's default allocator, then `free_unpacked`. Not API:
/// only the benchmark uses it.
@_spi(Benchmarks)
public final class ProtobufCBaseline: @unchecked Sendable {
    private let arena: Arena
    private let message: UnsafeMutablePointer<ProtobufCMessage>
    private let descriptor: UnsafePointer<ProtobufCMessageDescriptor>

    public init<M: WireMessage>(_ value: M) throws(WireError) {
        guard let backed = value as? any CBackedMessage else { preconditionFailure("\(M.self) is not generated") }
        arena = Arena()
        message = try Self.build(backed, arena)
        descriptor = message.pointee.descriptor
    }

    private static func build<B: CBackedMessage>(_ value: B, _ arena: borrowing Arena) throws(WireError)
        -> UnsafeMutablePointer<ProtobufCMessage>
    {
        UnsafeMutableRawPointer(try B.makeC(value, arena)).assumingMemoryBound(to: ProtobufCMessage.self)
    }

    /// Packs the prebuilt struct into a fresh `malloc`ed buffer and frees it;
    /// returns the byte count.
    public func packOnce() -> Int {
        let size = protobuf_c_message_get_packed_size(message)
        let buffer = malloc(max(size, 1))!.assumingMemoryBound(to: UInt8.self)
        let written = protobuf_c_message_pack(message, buffer)
        free(buffer)
        return written
    }

    /// Unpacks `bytes` into a decode tree, as the Swift layer's decode does,
    /// and releases the tree; returns whether unpacking succeeded. The part of
    /// a Swift decode that is protobuf-c's.
    public func unpackIntoArenaOnce(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let tree = DecodedTree.make(forInputBytes: bytes.count)
        var allocator = tree.protobufAllocator
        let unpacked = protobuf_c_message_unpack(
            descriptor, &allocator, bytes.count, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)) != nil
        // Back to the thread's cache, as a decoded value's storage does when it dies.
        DecodedTree.recycle(.passRetained(tree))
        return unpacked
    }

    /// Unpacks `bytes` with protobuf-c's default allocator and frees the
    /// result; returns whether unpacking succeeded.
    public func unpackOnce(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard
            let decoded = protobuf_c_message_unpack(
                descriptor, nil, bytes.count, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
        else { return false }
        protobuf_c_message_free_unpacked(decoded, nil)
        return true
    }
}
