import CProtobufC
import CWeftWireSupport
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The memory that one decode unpacked its protobuf-c structs into.
///
/// A decoded message does not copy its fields into Swift values at decode:
/// it keeps the C structs protobuf-c unpacked and reads each message's fields
/// the first time one of them is used (`LazyFields`). Bytes that are only
/// passed on (a sequencer forwarding envelopes, a re-encode of an unchanged
/// message) then never become Swift strings and arrays. The decoded message and
/// every submessage read from it hold this tree, so the structs live until the
/// last of them is gone.
///
/// One allocation holds the object and a first block sized for the input;
/// larger trees chain overflow blocks (`Arena.LimitedHeader`), freed in `deinit`.
/// Its allocator hands out no more than the decode's memory budget
/// (`DecodeLimits`): past it, it refuses and the decode fails.
///
/// Each thread keeps one tree that no value reads any more, for its next
/// decode (`CWeftWireSupport`): the storage of a decoded message that dies
/// holding the last reference to its tree hands it to the thread's cache
/// (`recycle`) instead of freeing it, and the next decode on that thread
/// rewinds it instead of allocating. Decoding a message, using it and dropping
/// it, the nodes' usual pattern, then allocates no tree and touches its
/// reference count only with plain loads and stores. A decode while the
/// cache is empty (the previous value still alive) allocates, as before.
final class DecodedTree: ManagedBuffer<Arena.LimitedHeader, UInt8> {
    /// Trees with a first block larger than this are not kept for reuse, so
    /// that a thread does not hold on to the memory of one large message.
    static let reusableBytes = 64 * 1024

    /// A tree with room for what unpacking `byteCount` bytes usually takes:
    /// protobuf-c's structs, arrays and string copies are two to three times
    /// the wire size for Weft's messages; more chains a block, up to the
    /// decode's memory budget, `memoryBytesPerInputByte` for each input byte
    /// (`DecodeLimits`).
    static func make(
        forInputBytes byteCount: Int, memoryBytesPerInputByte: Int = DecodeLimits.memoryBytesPerInputByte
    ) -> DecodedTree {
        makeOwned(forInputBytes: byteCount, memoryBytesPerInputByte: memoryBytesPerInputByte).takeRetainedValue()
    }

    /// `make`, as one reference owned by the caller: handing it on to a
    /// `DecodedSource` then costs no retain and release of the tree.
    @inline(__always)
    static func makeOwned(forInputBytes byteCount: Int, memoryBytesPerInputByte: Int) -> Unmanaged<DecodedTree> {
        let capacity = 256 + 3 * byteCount
        let limit = DecodeLimits.memoryBudgetBytes(forInputBytes: byteCount, perInputByte: memoryBytesPerInputByte)
        if capacity <= reusableBytes, let cachedPointer = weft_decode_tree_take() {
            // Only `recycle` fills the cache, with a tree nothing else references.
            let cached = Unmanaged<DecodedTree>.fromOpaque(cachedPointer)
            if cached._withUnsafeGuaranteedRef({ $0.rewind(fitting: capacity, limitBytes: limit) }) { return cached }
            cached.release()
        }
        return .passRetained(fresh(capacity: capacity, limitBytes: limit))
    }

    /// Gives up the reference `owner` holds: the tree goes to this thread's
    /// cache if that was its last reference, else the reference is released.
    static func recycle(_ owner: Unmanaged<DecodedTree>) {
        var tree = owner.takeRetainedValue()
        guard isKnownUniquelyReferenced(&tree) else { return }
        // Other threads' last reads of the tree come before their releases; this
        // orders them before its reuse here.
        atomicMemoryFence(ordering: .acquiring)
        let firstBlockBytes = tree.withUnsafeMutablePointerToHeader { header in
            // A cached tree keeps its first block only: the overflow blocks of a
            // large decode are not held until the thread's next one. The cursor
            // left in a freed block is never used: a cached tree is rewound
            // before its next decode (`makeOwned`).
            Arena.freeOverflow(header)
            return header.pointee.arena.firstBlockBytes
        }
        guard firstBlockBytes <= reusableBytes else { return }
        weft_decode_tree_give(Unmanaged.passRetained(consume tree).toOpaque(), releaseCachedTree)
    }

    private static func fresh(capacity: Int, limitBytes: Int) -> DecodedTree {
        // The block starts after the header, aligned up: `alignment` spare bytes cover that.
        let buffer = DecodedTree.create(minimumCapacity: capacity + Arena.alignment) { buffer in
            buffer.withUnsafeMutablePointerToElements { elements in
                let start = UnsafeMutableRawPointer(elements).alignedUp(toMultipleOf: Arena.alignment)
                return Arena.LimitedHeader(firstBlockAt: start, bytes: capacity, limitBytes: limitBytes)
            }
        }
        return unsafeDowncast(buffer, to: DecodedTree.self)
    }

    /// Empties the tree for another decode that needs `capacity` bytes, to
    /// which its allocator hands out at most `limitBytes`; false (and nothing
    /// changed) if its first block is smaller.
    @inline(__always)
    private func rewind(fitting capacity: Int, limitBytes: Int) -> Bool {
        withUnsafeMutablePointers { header, elements in
            guard header.pointee.arena.firstBlockBytes >= capacity else { return false }
            Arena.rewind(
                header, to: UnsafeMutableRawPointer(elements).alignedUp(toMultipleOf: Arena.alignment),
                limitBytes: limitBytes)
            return true
        }
    }

    /// protobuf-c's allocator over this tree; valid while the tree lives.
    var protobufAllocator: ProtobufCAllocator {
        withUnsafeMutablePointerToHeader { Arena.protobufAllocator($0) }
    }

    /// The decode's memory budget: the most its allocator hands out.
    var limitBytes: Int { withUnsafeMutablePointerToHeader { $0.pointee.usedBytesLimit } }

    /// Whether the allocator refused an allocation for the budget: then the
    /// unpack that failed was over it, not malformed.
    var refusedOverLimit: Bool { withUnsafeMutablePointerToHeader { $0.pointee.refusedOverLimit } }

    deinit {
        withUnsafeMutablePointerToHeader { Arena.freeOverflow($0) }
    }
}

/// Releases the tree reference a thread's cache held (a C function pointer
/// for `weft_decode_tree_give`, also called when the thread exits).
private func releaseCachedTree(_ pointer: UnsafeMutableRawPointer?) {
    guard let pointer else { return }
    Unmanaged<DecodedTree>.fromOpaque(pointer).release()
}

/// A decoded C struct and the tree that keeps it alive. Neither the structs
/// nor the tree's allocation header are written after the decode returns, nor
/// rewound for reuse while any source holds the tree, so sharing them between
/// threads is safe (`ManagedBuffer` itself is not `Sendable`, hence unchecked).
///
/// The storage of a decoded message holds one, and with it one reference to
/// the tree, given up in the storage's `deinit` (`release`). The reference is
/// unmanaged so that the last one can go to the thread's cache of trees
/// (`DecodedTree.recycle`) rather than to `swift_release`. Copies of a source
/// (`unread`) own nothing and are used only while their storage lives.
struct DecodedSource<CStruct>: @unchecked Sendable {
    let owner: Unmanaged<DecodedTree>
    let pointer: UnsafePointer<CStruct>

    /// A source that owns a new reference to `tree`.
    init(tree: DecodedTree, pointer: UnsafePointer<CStruct>) {
        owner = .passRetained(tree)
        self.pointer = pointer
    }

    /// A source that takes over the reference `owner` stands for.
    init(owning owner: Unmanaged<DecodedTree>, pointer: UnsafePointer<CStruct>) {
        self.owner = owner
        self.pointer = pointer
    }

    /// The tree, for reading submessages while the owning storage lives.
    var tree: DecodedTree { owner.takeUnretainedValue() }

    /// Gives up the reference; only the owning storage's `deinit` calls this.
    func release() { DecodedTree.recycle(owner) }
}

/// Whether a decoded message's storage has read its fields from the C struct
/// yet; reading happens once, by whichever thread asks first.
///
/// A value type shared between tasks can be read from two threads at once, so
/// the first read is under a lock; every later read is one atomic load.
struct LazyFields: ~Copyable, Sendable {
    private let ready: Atomic<Bool>
    private let lock = Mutex(())

    /// Storage built from Swift values: nothing to read.
    init() { ready = Atomic(true) }

    /// Storage of a decoded message: fields still in the C struct.
    init(pending: Void) { ready = Atomic(false) }

    @inline(__always)
    var isReady: Bool { ready.load(ordering: .acquiring) }

    /// Fields to be read again from a new C struct: only for a storage that
    /// nothing else references (`StoragePool`).
    @inline(__always)
    func markPending() { ready.store(false, ordering: .relaxed) }

    /// Runs `read` once, unless the fields are already read.
    @inline(never)
    func readOnce(_ read: () -> Void) {
        lock.withLock { _ in
            guard !ready.load(ordering: .relaxed) else { return }
            read()
            ready.store(true, ordering: .releasing)
        }
    }
}
