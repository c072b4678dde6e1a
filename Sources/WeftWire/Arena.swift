import CProtobufC
import CWeftWireSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A bump allocator for the short-lived C structures of one encode.
///
/// An encode builds a tree of C structs from Swift values that lives only for
/// the call, so it comes from one block released at once: no per-object
/// `malloc`/`free`. `deinit` frees any overflow blocks and hands the first
/// block back to its thread for the next call. A decode uses the same
/// allocation scheme (`Header`, `protobufAllocator`) in a `DecodedTree`, which
/// lives as long as the values read from it: protobuf-c allocates every
/// submessage, string and array separately, and here they share one block,
/// with no chance of leaking a half-built tree when a decode fails halfway.
/// As protobuf-c's `ProtobufCAllocator`, its `free` does nothing.
struct Arena: ~Copyable {
    /// Header at the start of the first block; the C allocator callbacks
    /// reach the arena through it. A `DecodedTree` keeps one too.
    struct Header {
        var cursor: UnsafeMutableRawPointer
        var end: UnsafeMutableRawPointer
        /// Extra blocks, each starting with the pointer to the next.
        var overflow: UnsafeMutableRawPointer?
        var nextBlockBytes: Int
        /// Capacity of the first block, so that a reused arena rewinds to it.
        let firstBlockBytes: Int

        /// An empty arena whose first block of `bytes` bytes starts at `start`.
        init(firstBlockAt start: UnsafeMutableRawPointer, bytes: Int) {
            cursor = start
            end = start + bytes
            overflow = nil
            nextBlockBytes = max(4096, bytes * 2)
            firstBlockBytes = bytes
        }
    }

    static let alignment = 8
    private let header: UnsafeMutablePointer<Header>

    /// Capacity of a thread's reusable first block. Most messages fit; larger
    /// ones chain overflow blocks that are freed after each use.
    private static let blockBytes = 32 * 1024

    init() {
        // One reusable block per thread (`CWeftWireSupport`), so that an encode or
        // decode costs no `malloc` of its own. Encoding and decoding never
        // suspend, so the block is never shared between two tasks; a nested use
        // (none exists today) would find the slot empty and allocate a fresh block.
        if let cached = weft_arena_take_block() {
            header = cached.assumingMemoryBound(to: Header.self)
        } else {
            let headerBytes = (MemoryLayout<Header>.stride + Self.alignment - 1) & ~(Self.alignment - 1)
            guard let block = malloc(headerBytes + Self.blockBytes) else { fatalError("out of memory") }
            header = block.bindMemory(to: Header.self, capacity: 1)
            header.initialize(to: Header(firstBlockAt: block + headerBytes, bytes: Self.blockBytes))
        }
    }

    deinit {
        Self.freeOverflow(header)
        // Reset to the start of the first block and hand it back to the thread.
        let block = UnsafeMutableRawPointer(header)
        let headerBytes = (MemoryLayout<Header>.stride + Self.alignment - 1) & ~(Self.alignment - 1)
        header.pointee = Header(firstBlockAt: block + headerBytes, bytes: Self.blockBytes)
        if weft_arena_give_block(block) == 0 { free(block) }
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

    /// A copy of `bytes` in the arena (nil when empty). `releasenone`: see
    /// `allocate`.
    @_effects(releasenone)
    func copy(_ bytes: [UInt8]) -> UnsafeMutablePointer<UInt8>? {
        guard !bytes.isEmpty else { return nil }
        let target = allocate(UInt8.self, count: bytes.count)
        bytes.withUnsafeBufferPointer { target.update(from: $0.baseAddress!, count: $0.count) }
        return target
    }

    /// `string` NUL-terminated: in place when its storage already is
    /// (`terminatedStorage`), else a copy in the arena; nil if it contains a NUL
    /// (which protobuf-c could not represent). Reads the string's UTF-8 in place (no
    /// copy of the `String` itself, hence no retain on the common path).
    /// `releasenone`: see `allocate`.
    @_effects(releasenone)
    func cString(_ string: String) -> UnsafeMutablePointer<CChar>? {
        if let inPlace = Self.terminatedStorage(string) {
            return memchr(inPlace, 0, string.utf8.count) == nil ? inPlace : nil
        }
        let header = self.header
        let fast: UnsafeMutablePointer<CChar>?? = string.utf8.withContiguousStorageIfAvailable { source in
            let count = source.count
            let target = Self.allocate(header, count + 1).assumingMemoryBound(to: CChar.self)
            if count > 0, let base = source.baseAddress {
                if memchr(base, 0, count) != nil { return nil }
                UnsafeMutableRawPointer(target).copyMemory(from: base, byteCount: count)
            }
            target[count] = 0
            return target
        }
        if let fast { return fast }
        // A string without contiguous UTF-8 (bridged storage; not seen on Linux).
        let utf8 = string.utf8
        let target = allocate(CChar.self, count: utf8.count + 1)
        var index = 0
        for byte in utf8 {
            if byte == 0 { return nil }
            target[index] = CChar(bitPattern: byte)
            index += 1
        }
        target[index] = 0
        return target
    }

    /// The string's own UTF-8 storage, when it is NUL-terminated; nil for a
    /// string that must be copied.
    ///
    /// On Linux a string longer than 15 bytes (never stored inline in the
    /// `String` value) is native, its UTF-8 in a buffer the standard library
    /// always ends with a NUL (that is what lets `withCString` hand it out
    /// without a copy), or a literal, stored as a C string. The terminator is
    /// checked all the same; asking `withCString` instead cost a retain and a
    /// release of the string per field. Elsewhere (bridged Cocoa strings may
    /// not end with a NUL) strings are copied. The pointer outlives the closure,
    /// sound for the same reason as `CBridge.binary`: the string is a field of
    /// the message being encoded, borrowed for the whole encode, and its storage
    /// changes only when the string is mutated.
    @inline(__always)
    static func terminatedStorage(_ string: String) -> UnsafeMutablePointer<CChar>? {
        #if os(Linux)
            let utf8 = string.utf8
            guard utf8.count > 15 else { return nil }
            let storage = utf8.withContiguousStorageIfAvailable { UnsafeRawPointer($0.baseAddress) }
            guard let storage, let base = storage, base.load(fromByteOffset: utf8.count, as: UInt8.self) == 0 else {
                return nil
            }
            return UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: CChar.self))
        #else
            return nil
        #endif
    }

    /// This arena as protobuf-c's allocator. Valid while the arena lives.
    ///
    /// Each allocation is preceded by its size (one word), so that a decoded
    /// string's length is known without trusting its NUL terminator: protobuf-c
    /// allocates `length + 1` bytes for a string of `length` bytes
    /// (`protobufAllocationSize`).
    var protobufAllocator: ProtobufCAllocator { Self.protobufAllocator(header) }

    /// protobuf-c's allocator over the arena that `header` heads.
    static func protobufAllocator(_ header: UnsafeMutablePointer<Header>) -> ProtobufCAllocator {
        ProtobufCAllocator(
            alloc: { data, size in
                let block = Arena.allocate(data!.assumingMemoryBound(to: Header.self), size + Arena.alignment)
                block.storeBytes(of: size, as: Int.self)
                return block + Arena.alignment
            },
            free: { _, _ in },
            allocator_data: UnsafeMutableRawPointer(header))
    }

    /// Empties the arena that `header` heads: frees its overflow blocks and
    /// moves the cursor back to `start`, the beginning of its first block.
    static func rewind(_ header: UnsafeMutablePointer<Header>, to start: UnsafeMutableRawPointer) {
        freeOverflow(header)
        header.pointee = Header(firstBlockAt: start, bytes: header.pointee.firstBlockBytes)
    }

    /// Frees the overflow blocks of the arena that `header` heads.
    static func freeOverflow(_ header: UnsafeMutablePointer<Header>) {
        var overflow = header.pointee.overflow
        while let block = overflow {
            overflow = block.load(as: UnsafeMutableRawPointer?.self)
            free(block)
        }
        header.pointee.overflow = nil
    }

    /// The size protobuf-c asked for when it allocated `pointer` from
    /// `protobufAllocator`. Only for such pointers.
    @inline(__always)
    static func protobufAllocationSize(_ pointer: UnsafeRawPointer) -> Int {
        (pointer - alignment).load(as: Int.self)
    }

    /// Bumps the cursor; a separate function for a new block keeps this
    /// inlined into every caller. `releasenone`: no Swift object is released
    /// here, which lets the optimizer drop the retain and release around a
    /// field's value that `fill` copies into the arena.
    @inline(__always) @_effects(releasenone)
    static func allocate(_ header: UnsafeMutablePointer<Header>, _ byteCount: Int) -> UnsafeMutableRawPointer {
        let size = (byteCount &+ (alignment - 1)) & ~(alignment - 1)
        let cursor = header.pointee.cursor
        if header.pointee.end - cursor >= size {
            header.pointee.cursor = cursor + size
            return cursor
        }
        return allocateBlock(header, size)
    }

    @inline(never) @_effects(releasenone)
    private static func allocateBlock(_ header: UnsafeMutablePointer<Header>, _ size: Int) -> UnsafeMutableRawPointer {
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
