import CProtobufC

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A bump allocator for the short-lived C structures of one encode or decode.
///
/// protobuf-c allocates every submessage, string and array of a decoded
/// message separately; an encode must build a tree of C structs from Swift
/// values. Both live only for one call, so they come from one block that is
/// freed at once: no per-object `malloc`/`free`, and no chance of leaking a
/// half-built tree when a decode fails halfway. Used as protobuf-c's
/// `ProtobufCAllocator`, its `free` does nothing; `deinit` releases everything.
struct Arena: ~Copyable {
    /// Header at the start of the first block; the C allocator callbacks
    /// reach the arena through it.
    private struct Header {
        var cursor: UnsafeMutableRawPointer
        var end: UnsafeMutableRawPointer
        /// Extra blocks, each starting with the pointer to the next.
        var overflow: UnsafeMutableRawPointer?
        var nextBlockBytes: Int
    }

    private static let alignment = 8
    private let header: UnsafeMutablePointer<Header>

    /// - Parameter capacityBytes: expected total size; more is allocated on
    ///   demand, so this is a hint, not a limit.
    init(capacityBytes: Int) {
        let capacity = max(capacityBytes, 256)
        let headerBytes = (MemoryLayout<Header>.stride + Self.alignment - 1) & ~(Self.alignment - 1)
        guard let block = malloc(headerBytes + capacity) else { fatalError("out of memory") }
        header = block.bindMemory(to: Header.self, capacity: 1)
        header.initialize(
            to: Header(
                cursor: block + headerBytes, end: block + headerBytes + capacity, overflow: nil,
                nextBlockBytes: capacity * 2))
    }

    deinit {
        var overflow = header.pointee.overflow
        while let block = overflow {
            overflow = block.load(as: UnsafeMutableRawPointer?.self)
            free(block)
        }
        free(UnsafeMutableRawPointer(header))
    }

    /// Uninitialized memory for `byteCount` bytes, 8-byte aligned.
    func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
        Self.allocate(header, byteCount)
    }

    /// Uninitialized memory for `count` values of `T`.
    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        precondition(MemoryLayout<T>.alignment <= Self.alignment)
        return allocate(byteCount: MemoryLayout<T>.stride * count).bindMemory(to: T.self, capacity: count)
    }

    /// A copy of `bytes` in the arena (nil when empty).
    func copy(_ bytes: [UInt8]) -> UnsafeMutablePointer<UInt8>? {
        guard !bytes.isEmpty else { return nil }
        let target = allocate(UInt8.self, count: bytes.count)
        bytes.withUnsafeBufferPointer { target.update(from: $0.baseAddress!, count: $0.count) }
        return target
    }

    /// A NUL-terminated copy of `string`, or nil if it contains a NUL (which
    /// protobuf-c could not represent).
    func cString(_ string: String) -> UnsafeMutablePointer<CChar>? {
        let utf8 = string.utf8
        let target = allocate(CChar.self, count: utf8.count + 1)
        let fast: Bool? = utf8.withContiguousStorageIfAvailable { source in
            guard let base = source.baseAddress, source.count > 0 else { return true }
            if memchr(base, 0, source.count) != nil { return false }
            UnsafeMutableRawPointer(target).copyMemory(from: base, byteCount: source.count)
            return true
        }
        if let fast {
            guard fast else { return nil }
        } else {
            var index = 0
            for byte in utf8 {
                if byte == 0 { return nil }
                target[index] = CChar(bitPattern: byte)
                index += 1
            }
        }
        target[utf8.count] = 0
        return target
    }

    /// This arena as protobuf-c's allocator. Valid while the arena lives.
    var protobufAllocator: ProtobufCAllocator {
        ProtobufCAllocator(
            alloc: { data, size in
                Arena.allocate(data!.assumingMemoryBound(to: Header.self), size)
            },
            free: { _, _ in },
            allocator_data: UnsafeMutableRawPointer(header))
    }

    private static func allocate(_ header: UnsafeMutablePointer<Header>, _ byteCount: Int) -> UnsafeMutableRawPointer {
        let size = (byteCount + alignment - 1) & ~(alignment - 1)
        let cursor = header.pointee.cursor
        if header.pointee.end - cursor >= size {
            header.pointee.cursor = cursor + size
            return cursor
        }
        // A new block at least twice the previous; its first word links the list.
        let blockBytes = max(size, header.pointee.nextBlockBytes)
        guard let block = malloc(alignment + blockBytes) else { fatalError("out of memory") }
        block.storeBytes(of: header.pointee.overflow, as: UnsafeMutableRawPointer?.self)
        header.pointee.overflow = block
        header.pointee.nextBlockBytes = blockBytes * 2
        let start = block + alignment
        header.pointee.cursor = start + size
        header.pointee.end = start + blockBytes
        return start
    }
}
