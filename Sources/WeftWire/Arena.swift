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
/// allocation scheme (`LimitedHeader`, `protobufAllocator`) in a `DecodedTree`,
/// which lives as long as the values read from it: protobuf-c allocates every
/// submessage, string and array separately, and here they share one block,
/// with no chance of leaking a half-built tree when a decode fails halfway,
/// and no more than the decode's memory budget (`DecodeLimits`) is handed out.
/// As protobuf-c's `ProtobufCAllocator`, its `free` does nothing.
struct Arena: ~Copyable {
    /// Header at the start of the first block. A `DecodedTree` keeps one too,
    /// in its `LimitedHeader`, through which protobuf-c's allocator callbacks
    /// reach it.
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

    /// The header of a decode's tree: an arena's, and the count of what
    /// `protobufAllocator` hands out, which stops at the decode's memory
    /// budget. Kept apart from `Header`, which an encode's arena resets on
    /// every call, so that encoding pays nothing for it.
    struct LimitedHeader {
        var arena: Header
        /// Start of the block the cursor is in.
        var blockStart: UnsafeMutableRawPointer
        /// Bytes handed out before that block: in the blocks the cursor left
        /// and in blocks of their own (`allocateBlockWithinLimit`).
        var usedBytesBeforeBlock: Int
        /// Most bytes `protobufAllocator` hands out.
        let usedBytesLimit: Int
        /// Whether `protobufAllocator` refused an allocation for the limit.
        var refusedOverLimit: Bool

        /// An empty arena whose first block of `bytes` bytes starts at `start`,
        /// from which `protobufAllocator` hands out at most `limitBytes` (or
        /// the first block, if that is larger).
        init(firstBlockAt start: UnsafeMutableRawPointer, bytes: Int, limitBytes: Int) {
            arena = Header(firstBlockAt: start, bytes: bytes)
            blockStart = start
            usedBytesBeforeBlock = 0
            usedBytesLimit = max(limitBytes, bytes)
            refusedOverLimit = false
        }

        /// Bytes handed out so far, alignment and size words included.
        var usedBytes: Int { usedBytesBeforeBlock + (arena.cursor - blockStart) }
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

    /// protobuf-c's allocator over the arena that `header` heads. Valid while
    /// the arena lives.
    ///
    /// Each allocation is preceded by its size (one word), so that a decoded
    /// string's length is known without trusting its NUL terminator: protobuf-c
    /// allocates `length + 1` bytes for a string of `length` bytes
    /// (`protobufAllocationSize`). It returns NULL rather than hand out more
    /// than `usedBytesLimit`; protobuf-c's unpack then fails (it checks every
    /// allocation), and the decode reports the limit (`refusedOverLimit`).
    static func protobufAllocator(_ header: UnsafeMutablePointer<LimitedHeader>) -> ProtobufCAllocator {
        ProtobufCAllocator(
            alloc: { data, size in Arena.protobufAllocate(data!.assumingMemoryBound(to: LimitedHeader.self), size) },
            free: { _, _ in },
            allocator_data: UnsafeMutableRawPointer(header))
    }

    /// One allocation of `protobufAllocator`: `size` bytes after a word holding
    /// `size`, or nil past the limit. The bump and the size word inline, as
    /// before there was a limit: the room left in the current block is never
    /// more than the limit leaves, so that it needs checking only when that
    /// room has run out. That is a call whose result is returned as it is:
    /// checking the result here cost register saves on every allocation
    /// (callgrind, decoding a batch of 100 envelopes).
    @inline(__always)
    static func protobufAllocate(_ header: UnsafeMutablePointer<LimitedHeader>, _ size: Int) -> UnsafeMutableRawPointer?
    {
        let bytes = (size &+ alignment &+ (alignment - 1)) & ~(alignment - 1)
        let cursor = header.pointee.arena.cursor
        // Unsigned: a size so large that `bytes` wrapped negative goes to the slow path, which
        // refuses it (none that protobuf-c asks for: its sizes follow the input's; sizes within
        // 15 of 2^64 wrap to 0 or 8 and are not caught here).
        if UInt(bitPattern: header.pointee.arena.end - cursor) >= UInt(bitPattern: bytes) {
            header.pointee.arena.cursor = cursor + bytes
            cursor.storeBytes(of: size, as: Int.self)
            return cursor + alignment
        }
        return protobufAllocateInNewBlock(header, size)
    }

    @inline(never)
    private static func protobufAllocateInNewBlock(_ header: UnsafeMutablePointer<LimitedHeader>, _ size: Int)
        -> UnsafeMutableRawPointer?
    {
        let bytes = (size &+ alignment &+ (alignment - 1)) & ~(alignment - 1)
        guard size >= 0, bytes > size else {
            header.pointee.refusedOverLimit = true
            return nil
        }
        guard let block = allocateBlockWithinLimit(header, bytes) else { return nil }
        block.storeBytes(of: size, as: Int.self)
        return block + alignment
    }

    /// `size` bytes (aligned) in a new block, or nil where the bytes handed
    /// out would pass `usedBytesLimit`.
    ///
    /// The blocks hold about half again the limit at worst (a block left for one
    /// of its own keeps the room it had unused): an allocation of
    /// at least an eighth of the next block's size gets a block of its own
    /// (protobuf-c's arrays for long repeated fields, its scan of a message's
    /// fields), so a block the cursor leaves is at least three quarters used.
    private static func allocateBlockWithinLimit(_ header: UnsafeMutablePointer<LimitedHeader>, _ size: Int)
        -> UnsafeMutableRawPointer?
    {
        let usedBytes = header.pointee.usedBytes
        let availableBytes = header.pointee.usedBytesLimit - usedBytes
        guard size <= availableBytes else {
            header.pointee.refusedOverLimit = true
            return nil
        }
        let nextBlockBytes = header.pointee.arena.nextBlockBytes
        let ownBlock = size >= nextBlockBytes / 8
        // Not less than `size`, which is below both.
        let blockBytes = ownBlock ? size : min(nextBlockBytes, availableBytes)
        guard let block = malloc(alignment + blockBytes) else { fatalError("out of memory") }
        // Its first word links the list.
        block.storeBytes(of: header.pointee.arena.overflow, as: UnsafeMutableRawPointer?.self)
        header.pointee.arena.overflow = block
        let start = block + alignment
        if ownBlock {
            // A block of its own; the cursor stays where it is, with no more
            // room than the limit now leaves.
            header.pointee.usedBytesBeforeBlock += size
            let leftBytes = availableBytes - size
            if header.pointee.arena.end - header.pointee.arena.cursor > leftBytes {
                header.pointee.arena.end = header.pointee.arena.cursor + leftBytes
            }
        } else {
            // The cursor moves on; the last block the limit allows may be
            // smaller than twice the previous.
            header.pointee.usedBytesBeforeBlock = usedBytes
            header.pointee.blockStart = start
            header.pointee.arena.cursor = start + size
            header.pointee.arena.end = start + blockBytes
            header.pointee.arena.nextBlockBytes = blockBytes * 2
        }
        return start
    }

    /// Empties the arena that `header` heads for a decode to which
    /// `protobufAllocator` hands out at most `limitBytes`: frees its overflow
    /// blocks and moves the cursor back to `start`, the beginning of its first block.
    @inline(__always)
    static func rewind(
        _ header: UnsafeMutablePointer<LimitedHeader>, to start: UnsafeMutableRawPointer, limitBytes: Int
    ) {
        freeOverflow(header)
        header.pointee = LimitedHeader(
            firstBlockAt: start, bytes: header.pointee.arena.firstBlockBytes, limitBytes: limitBytes)
    }

    /// Frees the overflow blocks of the decode's arena that `header` heads.
    static func freeOverflow(_ header: UnsafeMutablePointer<LimitedHeader>) {
        freeOverflow(header.pointer(to: \.arena)!)
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
