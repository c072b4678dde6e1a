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
/// released at once: no per-object `malloc`/`free`, and no chance of leaking a
/// half-built tree when a decode fails halfway. Used as protobuf-c's
/// `ProtobufCAllocator`, its `free` does nothing. `deinit` frees any overflow
/// blocks and hands the first block back to its thread for the next call.
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

    /// Capacity of a thread's reusable first block. Most messages fit; larger
    /// ones chain overflow blocks that are freed after each use.
    private static let blockBytes = 32 * 1024

    /// One reusable block per thread, so that an encode or decode costs no
    /// `malloc` of its own. Encoding and decoding never suspend, so the block
    /// is never shared between two tasks; a nested use (none exists today)
    /// would find the slot empty and allocate a fresh block.
    private static let cacheKey: pthread_key_t = {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { block in free(block) }
        precondition(status == 0, "pthread_key_create failed: \(status)")
        return key
    }()

    init() {
        let key = Self.cacheKey
        if let cached = pthread_getspecific(key) {
            pthread_setspecific(key, nil)
            header = cached.assumingMemoryBound(to: Header.self)
        } else {
            let headerBytes = (MemoryLayout<Header>.stride + Self.alignment - 1) & ~(Self.alignment - 1)
            guard let block = malloc(headerBytes + Self.blockBytes) else { fatalError("out of memory") }
            header = block.bindMemory(to: Header.self, capacity: 1)
            header.initialize(
                to: Header(
                    cursor: block + headerBytes, end: block + headerBytes + Self.blockBytes, overflow: nil,
                    nextBlockBytes: Self.blockBytes * 2))
        }
    }

    deinit {
        var overflow = header.pointee.overflow
        while let block = overflow {
            overflow = block.load(as: UnsafeMutableRawPointer?.self)
            free(block)
        }
        // Reset to the start of the first block and hand it back to the thread.
        let block = UnsafeMutableRawPointer(header)
        let headerBytes = (MemoryLayout<Header>.stride + Self.alignment - 1) & ~(Self.alignment - 1)
        header.pointee = Header(
            cursor: block + headerBytes, end: block + headerBytes + Self.blockBytes, overflow: nil,
            nextBlockBytes: Self.blockBytes * 2)
        let key = Self.cacheKey
        if pthread_getspecific(key) == nil {
            pthread_setspecific(key, block)
        } else {
            free(block)
        }
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
