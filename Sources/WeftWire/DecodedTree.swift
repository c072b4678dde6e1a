import CProtobufC
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
/// larger trees chain overflow blocks (`Arena.Header`), freed in `deinit`.
final class DecodedTree: ManagedBuffer<Arena.Header, UInt8> {
    /// A tree with room for what unpacking `byteCount` bytes usually takes:
    /// protobuf-c's structs, arrays and string copies are two to three times
    /// the wire size for Weft's messages; more chains a block.
    static func make(forInputBytes byteCount: Int) -> DecodedTree {
        let capacity = 256 + 3 * byteCount
        // The block starts after the header, aligned up: `alignment` spare bytes cover that.
        let buffer = DecodedTree.create(minimumCapacity: capacity + Arena.alignment) { buffer in
            buffer.withUnsafeMutablePointerToElements { elements in
                let start = UnsafeMutableRawPointer(elements).alignedUp(toMultipleOf: Arena.alignment)
                return Arena.Header(
                    cursor: start, end: start + capacity, overflow: nil, nextBlockBytes: max(4096, capacity * 2))
            }
        }
        return unsafeDowncast(buffer, to: DecodedTree.self)
    }

    /// protobuf-c's allocator over this tree; valid while the tree lives.
    var protobufAllocator: ProtobufCAllocator {
        withUnsafeMutablePointerToHeader { Arena.protobufAllocator($0) }
    }

    deinit {
        withUnsafeMutablePointerToHeader { Arena.freeOverflow($0) }
    }
}

/// A decoded C struct and the tree that keeps it alive. Neither the structs
/// nor the tree's allocation header are written after the decode returns, so
/// sharing them between threads is safe (`ManagedBuffer` itself is not
/// `Sendable`, hence unchecked).
struct DecodedSource<CStruct>: @unchecked Sendable {
    let tree: DecodedTree
    let pointer: UnsafePointer<CStruct>
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
